//! Edited captions as hard negatives: a caption with one statement made false, so that the
//! model must read every word of it (NegCLIP's swapped captions, Yuksekgonul et al. 2023).
//!
//! HQ-CLIP's long negative contradicts the long description, but a row whose caption is its
//! short alt-text has no negative of that text's own form: a long text differs from the
//! alt-text in length and style, which a model can learn instead of the content. An edit of
//! the caption itself changes nothing but one statement. The edits, all checked against what
//! the row's annotation says:
//! - **tag swap**: a phrase of the caption that is one of the row's positive tags becomes one
//!   of its negative tags with as many words ("green heart" → "purple triangle", "heart" →
//!   "cross"), so the caption claims something the annotation says is not there;
//! - **binding swap**: two positive-tag phrases "a X" and "b Y" of the caption trade their
//!   first words ("a Y", "b X"), unless the row's positive tags say those hold too;
//! - **opposite**: a spatial or size word becomes its opposite (left ↔ right, top ↔ bottom,
//!   above ↔ below, large ↔ small): an English word list, not one of the world's.
//!
//! One kind is drawn uniformly among those that apply, then one edit of that kind, so that
//! the many opposites of a long caption do not crowd out the rarer swaps.

use crate::world::rng::Rng;

/// Words and the word that states the opposite.
const OPPOSITES: &[(&str, &str)] = &[
    ("left", "right"),
    ("right", "left"),
    ("top", "bottom"),
    ("bottom", "top"),
    ("above", "below"),
    ("below", "above"),
    ("over", "under"),
    ("under", "over"),
    ("beneath", "above"),
    ("upper", "lower"),
    ("lower", "upper"),
    ("large", "small"),
    ("big", "small"),
    ("small", "large"),
    ("little", "big"),
    ("tiny", "large"),
];

/// A word of the caption: its byte span and lowercase form.
struct Word {
    start: usize,
    end: usize,
    lower: String,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word {
                    start: s,
                    end: i,
                    lower: text[s..i].to_lowercase(),
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn phrase_words(phrase: &str) -> Vec<String> {
    words(phrase).into_iter().map(|w| w.lower).collect()
}

/// Start indices (in words) where `phrase` occurs in `caption`.
fn occurrences(caption: &[Word], phrase: &[String]) -> Vec<usize> {
    if phrase.is_empty() || phrase.len() > caption.len() {
        return Vec::new();
    }
    (0..=caption.len() - phrase.len())
        .filter(|&i| {
            phrase
                .iter()
                .enumerate()
                .all(|(k, w)| caption[i + k].lower == *w)
        })
        .collect()
}

/// `word` written the way `like` is: capitalized if it is.
fn cased(word: &str, like: &str) -> String {
    let upper = like.chars().next().is_some_and(char::is_uppercase);
    if !upper {
        return word.to_string();
    }
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One edit: caption words `first..first + replaced.len()` become `new` (as many words).
struct Edit {
    first: usize,
    new: Vec<String>,
}

fn apply(text: &str, caption: &[Word], edits: &[Edit]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| e.first);
    for edit in sorted {
        for (k, new) in edit.new.iter().enumerate() {
            let old = &caption[edit.first + k];
            out.push_str(&text[at..old.start]);
            out.push_str(&cased(new, &text[old.start..old.end]));
            at = old.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

fn is_tag(tags: &[Vec<String>], phrase: &[String]) -> bool {
    tags.iter().any(|t| t == phrase)
}

fn tag_swaps(caption: &[Word], pos: &[Vec<String>], neg: &[Vec<String>]) -> Vec<Vec<Edit>> {
    let mut out = Vec::new();
    for p in pos {
        for first in occurrences(caption, p) {
            for n in neg.iter().filter(|n| n.len() == p.len() && !is_tag(pos, n)) {
                out.push(vec![Edit {
                    first,
                    new: n.clone(),
                }]);
            }
        }
    }
    out
}

fn binding_swaps(caption: &[Word], pos: &[Vec<String>]) -> Vec<Vec<Edit>> {
    let pairs: Vec<(usize, &Vec<String>)> = pos
        .iter()
        .filter(|p| p.len() == 2)
        .flat_map(|p| occurrences(caption, p).into_iter().map(move |i| (i, p)))
        .collect();
    let mut out = Vec::new();
    for (a, (i, p)) in pairs.iter().enumerate() {
        for (j, q) in &pairs[a + 1..] {
            let overlap = i.abs_diff(*j) < 2;
            if overlap || p[0] == q[0] || p[1] == q[1] {
                continue;
            }
            let left = vec![q[0].clone(), p[1].clone()];
            let right = vec![p[0].clone(), q[1].clone()];
            if is_tag(pos, &left) || is_tag(pos, &right) {
                continue;
            }
            out.push(vec![
                Edit {
                    first: *i,
                    new: left,
                },
                Edit {
                    first: *j,
                    new: right,
                },
            ]);
        }
    }
    out
}

fn opposites(caption: &[Word]) -> Vec<Vec<Edit>> {
    caption
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            OPPOSITES
                .iter()
                .find(|(word, _)| *word == w.lower)
                .map(|(_, opposite)| {
                    vec![Edit {
                        first: i,
                        new: vec![opposite.to_string()],
                    }]
                })
        })
        .collect()
}

/// `caption` with one statement made false, or None when no edit applies. `positive` and
/// `negative` are the row's tags (either may be empty).
pub fn edited_caption(
    caption: &str,
    positive: &[String],
    negative: &[String],
    rng: &mut Rng,
) -> Option<String> {
    let caption_words = words(caption);
    let pos: Vec<Vec<String>> = positive.iter().map(|t| phrase_words(t)).collect();
    let neg: Vec<Vec<String>> = negative.iter().map(|t| phrase_words(t)).collect();
    let kinds: Vec<Vec<Vec<Edit>>> = [
        tag_swaps(&caption_words, &pos, &neg),
        binding_swaps(&caption_words, &pos),
        opposites(&caption_words),
    ]
    .into_iter()
    .filter(|k| !k.is_empty())
    .collect();
    if kinds.is_empty() {
        return None;
    }
    let kind = &kinds[rng.below(kinds.len())];
    let edits = &kind[rng.below(kind.len())];
    Some(apply(caption, &caption_words, edits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Every edit the caption can get, by drawing many times.
    fn all_edits(caption: &str, pos: &[&str], neg: &[&str]) -> Vec<String> {
        let (pos, neg) = (strings(pos), strings(neg));
        let mut rng = Rng::stream(5, &[1]);
        let mut seen: Vec<String> = (0..400)
            .filter_map(|_| edited_caption(caption, &pos, &neg, &mut rng))
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    #[test]
    fn each_edit_changes_one_statement_and_keeps_the_rest() {
        let edits = all_edits(
            "A green heart above a black hexagon, on pink",
            &["green heart", "black hexagon", "heart"],
            &["red heart", "cross", "green hexagon"],
        );
        let expected = [
            // Tag swaps ("green hexagon" has two words, so it replaces two-word phrases).
            "A red heart above a black hexagon, on pink",
            "A green hexagon above a black hexagon, on pink",
            "A green heart above a red heart, on pink",
            "A green heart above a green hexagon, on pink",
            "A green cross above a black hexagon, on pink",
            // Binding swap.
            "A black heart above a green hexagon, on pink",
            // Opposite.
            "A green heart below a black hexagon, on pink",
        ];
        let mut expected = strings(&expected);
        expected.sort();
        assert_eq!(edits, expected);
    }

    #[test]
    fn casing_follows_the_replaced_words() {
        let edits = all_edits("Black Heart On The Right", &["black heart"], &["red star"]);
        assert!(
            edits.contains(&"Red Star On The Right".to_string()),
            "{edits:?}"
        );
        assert!(
            edits.contains(&"Black Heart On The Left".to_string()),
            "{edits:?}"
        );
    }

    #[test]
    fn swaps_that_would_stay_true_are_not_made() {
        // Both a black heart and a green heart are there: trading colors says nothing false.
        let edits = all_edits(
            "a green heart and a black hexagon",
            &["green heart", "black hexagon", "black heart"],
            &[],
        );
        assert!(edits.is_empty(), "{edits:?}");
        // A negative tag already in the positive list is no negative.
        let edits = all_edits(
            "a green heart",
            &["green heart", "red heart"],
            &["red heart"],
        );
        assert!(edits.is_empty(), "{edits:?}");
    }

    #[test]
    fn a_caption_with_nothing_to_edit_gets_none() {
        assert!(all_edits("Free shipping on all orders", &["green heart"], &["cross"]).is_empty());
        assert!(all_edits("", &[], &[]).is_empty());
    }
}
