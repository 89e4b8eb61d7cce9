//! Seed annotations: the four HQ-CLIP texts for an image, written from its truth (the role
//! GPT-4o plays in HQ-CLIP): `long_pos`, `long_neg`, `short_pos`, `short_neg`.

use super::captions::{
    Wording, article, background_phrase, capitalize, change_some, full_with_all_relations,
    object_phrase,
};
use super::claims::{Claims, ObjectClaim, parse};
use super::rng::Rng;
use super::scene::Scene;
use super::vocab::{Color, Shape};

/// The four texts of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedTexts {
    /// Every object with its attributes and position, the relations, the background.
    pub long_pos: String,
    /// The same style with 1–3 statements changed, so that it contradicts the image.
    pub long_neg: String,
    /// Tags of what is present.
    pub short_pos: Vec<String>,
    /// Plausible tags of what is absent.
    pub short_neg: Vec<String>,
}

const COUNTS: [&str; 4] = ["no", "one", "two", "three"];

/// The shortest `the …` mention that fits only object `i` among the claims, if any.
fn reference(claims: &Claims, i: usize) -> Option<String> {
    let o = claims.objects.get(i)?;
    let fits = |mention: &ObjectClaim| {
        claims
            .objects
            .iter()
            .filter(|other| {
                other.shape == mention.shape
                    && mention.color.is_none_or(|c| other.color == Some(c))
                    && mention.size.is_none_or(|s| other.size == Some(s))
            })
            .count()
    };
    let mut mention = ObjectClaim {
        shape: o.shape,
        color: o.color,
        size: None,
        position: None,
    };
    let mut with_position = false;
    if fits(&mention) != 1 {
        mention.size = o.size;
        if fits(&mention) != 1 {
            // Same words: the position tells them apart, if it is theirs alone.
            mention.position = o.position;
            let same_place = claims
                .objects
                .iter()
                .filter(|other| {
                    other.shape == o.shape
                        && other.color == o.color
                        && other.size == o.size
                        && other.position == o.position
                })
                .count();
            if o.position.is_none() || same_place != 1 {
                return None;
            }
            with_position = true;
        }
    }
    Some(format!(
        "the {}",
        object_phrase(&mention, &mut Wording::Canonical, false, with_position)
    ))
}

/// A long description of some claims, in several sentences.
fn long_text(claims: &Claims, rng: &mut Rng) -> String {
    let mut sentences: Vec<String> = Vec::new();
    let n = claims.objects.len();
    let count = COUNTS.get(n).copied().unwrap_or("several");
    let noun = if n == 1 { "object" } else { "objects" };
    let background = claims
        .background
        .map(|bg| background_phrase(&bg, &mut Wording::Varied(rng)));
    let background_first = rng.chance(0.5);
    let intro = match (rng.below(3), &background) {
        (0, Some(bg)) if background_first => {
            format!("The image shows {count} {noun} on {} {bg}.", article(bg))
        }
        (1, Some(bg)) if background_first => {
            format!(
                "This picture contains {count} {noun} against {} {bg}.",
                article(bg)
            )
        }
        (2, Some(bg)) if background_first => {
            format!("{} {bg} with {count} {noun}.", capitalize(article(bg)))
        }
        _ => format!("The image shows {count} {noun}."),
    };
    let background_said = intro.contains("background") || intro.contains("backdrop");
    sentences.push(intro);
    for o in &claims.objects {
        let mut wording = Wording::Varied(rng);
        let phrase = object_phrase(o, &mut wording, true, false);
        let position = o.position.map(|p| wording.position(p));
        let sentence = match (rng.below(3), position) {
            (0, Some(p)) => format!("{} is {p}.", capitalize(&phrase)),
            (1, Some(p)) => format!("There is {phrase} {p}."),
            (_, Some(p)) => format!("It has {phrase} {p}."),
            (_, None) => format!("There is {phrase}."),
        };
        sentences.push(sentence);
    }
    for r in &claims.relations {
        let (Some(subject), Some(object)) =
            (reference(claims, r.subject), reference(claims, r.object))
        else {
            continue;
        };
        let relation = Wording::Varied(rng).relation(r.relation);
        let verb = rng.pick(&["is", "is", "sits", "appears"]);
        sentences.push(format!(
            "{} {verb} {relation} {object}.",
            capitalize(&subject)
        ));
    }
    if let (Some(bg), false) = (&claims.background, background_said) {
        let mut wording = Wording::Varied(rng);
        let words: Vec<&str> = [
            bg.kind.map(|k| wording.pick(k.phrases())),
            bg.color.map(|c| wording.pick(c.phrases())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let words = words.join(" ");
        sentences.push(format!("The background is {} {words}.", article(&words)));
    }
    sentences.join(" ")
}

fn tag(color: Option<Color>, shape: Shape) -> String {
    match color {
        Some(c) => format!("{} {}", c.word(), shape.word()),
        None => shape.word().to_string(),
    }
}

fn push_unique(tags: &mut Vec<String>, tag: String) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

/// Tags of what the image shows.
pub fn short_pos(scene: &Scene) -> Vec<String> {
    let mut tags = Vec::new();
    for o in &scene.objects {
        push_unique(&mut tags, tag(Some(o.color), o.shape));
    }
    for o in &scene.objects {
        push_unique(&mut tags, tag(None, o.shape));
    }
    for o in &scene.objects {
        push_unique(&mut tags, format!("{} {}", o.size.word(), o.shape.word()));
    }
    push_unique(
        &mut tags,
        format!("{} background", scene.background.color.word()),
    );
    push_unique(
        &mut tags,
        format!("{} background", scene.background.kind.word()),
    );
    tags
}

/// Plausible tags the image contradicts: shapes it lacks, a present shape in a color it
/// does not have, another background color.
pub fn short_neg(scene: &Scene, rng: &mut Rng) -> Vec<String> {
    let mut tags = Vec::new();
    let mut absent: Vec<Shape> = Shape::ALL
        .iter()
        .copied()
        .filter(|s| scene.objects.iter().all(|o| o.shape != *s))
        .collect();
    rng.shuffle(&mut absent);
    for shape in absent.iter().take(2) {
        let color = rng.pick(Color::ALL);
        push_unique(&mut tags, tag(rng.chance(0.5).then_some(color), *shape));
    }
    for o in scene.objects.iter().take(2) {
        let colors: Vec<Color> = Color::ALL
            .iter()
            .copied()
            .filter(|c| {
                !scene
                    .objects
                    .iter()
                    .any(|x| x.shape == o.shape && x.color == *c)
            })
            .collect();
        if !colors.is_empty() {
            push_unique(&mut tags, tag(Some(rng.pick(&colors)), o.shape));
        }
    }
    let colors: Vec<Color> = Color::ALL
        .iter()
        .copied()
        .filter(|c| *c != scene.background.color)
        .collect();
    push_unique(
        &mut tags,
        format!("{} background", rng.pick(&colors).word()),
    );
    tags
}

/// The four texts for a scene.
pub fn seed_texts(scene: &Scene, rng: &mut Rng) -> SeedTexts {
    let claims = full_with_all_relations(scene, rng);
    let long_pos = long_text(&claims, rng);
    let mut long_neg = String::new();
    for attempt in 0..8 {
        let changes = 1 + rng.below(3);
        let changed = change_some(scene, &claims, if attempt < 7 { changes } else { 1 }, rng);
        long_neg = long_text(&changed, rng);
        // The text, not just the claims, must contradict the image: a changed relation
        // between objects the text cannot tell apart would not be written.
        if parse(&long_neg).mismatches(scene) >= 1 {
            break;
        }
    }
    SeedTexts {
        long_pos,
        long_neg,
        short_pos: short_pos(scene),
        short_neg: short_neg(scene, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_read_back_true_and_false() {
        for i in 0..2000 {
            let mut rng = Rng::stream(4, &[i]);
            let scene = Scene::random(&mut rng);
            let texts = seed_texts(&scene, &mut rng);
            let pos = parse(&texts.long_pos);
            assert_eq!(pos.mismatches(&scene), 0, "{}", texts.long_pos);
            assert_eq!(pos.objects.len(), scene.objects.len(), "{}", texts.long_pos);
            let n = scene.objects.len();
            assert_eq!(pos.relations.len(), n * (n - 1) / 2, "{}", texts.long_pos);
            assert!(
                parse(&texts.long_neg).mismatches(&scene) >= 1,
                "{}",
                texts.long_neg
            );
            for tag in &texts.short_pos {
                assert_eq!(parse(tag).mismatches(&scene), 0, "{tag}");
            }
            assert!(texts.short_neg.len() >= 2);
            for tag in &texts.short_neg {
                assert!(parse(tag).mismatches(&scene) >= 1, "{tag}");
            }
        }
    }
}
