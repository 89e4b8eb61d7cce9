//! Claims: what a text says about an image, in the world's vocabulary, and how many of
//! those statements a scene contradicts.
//!
//! Captions are written from claims ([`super::captions`]), and [`parse`] reads a caption back
//! into claims, so evaluation can check any text against `truth_scene` with
//! [`Claims::mismatches`]: 0 for a correct caption, exactly 1 for a `wrong_attr` one.

use super::scene::Scene;
use super::vocab::{BackgroundKind, Color, Position, Relation, Shape, Size};

/// What a text says about one object. The shape is always named; the rest may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectClaim {
    /// The named shape.
    pub shape: Shape,
    /// The named color, if any.
    pub color: Option<Color>,
    /// The named size, if any.
    pub size: Option<Size>,
    /// The named position, if any.
    pub position: Option<Position>,
}

/// A stated relation between two claimed objects (indices into [`Claims::objects`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationClaim {
    /// The object the sentence is about.
    pub subject: usize,
    /// How it sits relative to `object`.
    pub relation: Relation,
    /// The reference object.
    pub object: usize,
}

/// What a text says about the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackgroundClaim {
    /// The named color, if any.
    pub color: Option<Color>,
    /// The named kind, if any.
    pub kind: Option<BackgroundKind>,
}

/// Everything a text states about an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    /// Objects, in the order the text introduces them.
    pub objects: Vec<ObjectClaim>,
    /// Relations between them.
    pub relations: Vec<RelationClaim>,
    /// The background, if the text mentions it.
    pub background: Option<BackgroundClaim>,
}

impl ObjectClaim {
    /// Statements this claim makes (the shape counts as one).
    fn statements(&self) -> usize {
        1 + usize::from(self.color.is_some())
            + usize::from(self.size.is_some())
            + usize::from(self.position.is_some())
    }
}

impl Claims {
    /// How many statements the claims make: each object's (see [`ObjectClaim`]), each
    /// relation, the background's color and kind.
    pub fn statements(&self) -> usize {
        self.objects
            .iter()
            .map(ObjectClaim::statements)
            .sum::<usize>()
            + self.relations.len()
            + self.background.as_ref().map_or(0, |b| {
                usize::from(b.color.is_some()) + usize::from(b.kind.is_some())
            })
    }

    /// Every statement about the scene: each object with all four attributes, the
    /// background's color and kind, and no relations.
    pub fn full(scene: &Scene) -> Claims {
        Claims {
            objects: scene
                .objects
                .iter()
                .map(|o| ObjectClaim {
                    shape: o.shape,
                    color: Some(o.color),
                    size: Some(o.size),
                    position: Some(o.position),
                })
                .collect(),
            relations: Vec::new(),
            background: Some(BackgroundClaim {
                color: Some(scene.background.color),
                kind: Some(scene.background.kind),
            }),
        }
    }

    /// How many statements the scene contradicts, under the reading that matches claimed
    /// objects to the scene's objects best (each scene object used at most once). An object
    /// the scene has no room for counts every statement it makes.
    pub fn mismatches(&self, scene: &Scene) -> usize {
        let mut background = 0;
        if let Some(claim) = &self.background {
            background += usize::from(claim.color.is_some_and(|c| c != scene.background.color));
            background += usize::from(claim.kind.is_some_and(|k| k != scene.background.kind));
        }
        if self.objects.len() > 8 {
            // Never written by the world; a bound on the search for foreign text.
            return background
                + self
                    .objects
                    .iter()
                    .map(ObjectClaim::statements)
                    .sum::<usize>();
        }
        let mut assignment = vec![None; self.objects.len()];
        let mut best = usize::MAX;
        self.search(scene, 0, &mut assignment, &mut best);
        background + best
    }

    fn search(
        &self,
        scene: &Scene,
        next: usize,
        assignment: &mut Vec<Option<usize>>,
        best: &mut usize,
    ) {
        if next == self.objects.len() {
            *best = (*best).min(self.cost(scene, assignment));
            return;
        }
        for candidate in 0..scene.objects.len() {
            if assignment[..next].contains(&Some(candidate)) {
                continue;
            }
            assignment[next] = Some(candidate);
            self.search(scene, next + 1, assignment, best);
        }
        assignment[next] = None;
        self.search(scene, next + 1, assignment, best);
    }

    fn cost(&self, scene: &Scene, assignment: &[Option<usize>]) -> usize {
        let mut cost = 0;
        for (claim, matched) in self.objects.iter().zip(assignment) {
            cost += match matched.and_then(|i| scene.objects.get(i)) {
                None => claim.statements(),
                Some(o) => {
                    usize::from(claim.shape != o.shape)
                        + usize::from(claim.color.is_some_and(|c| c != o.color))
                        + usize::from(claim.size.is_some_and(|s| s != o.size))
                        + usize::from(claim.position.is_some_and(|p| p != o.position))
                }
            };
        }
        for r in &self.relations {
            let position = |i: usize| {
                assignment
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|j| scene.objects.get(j))
                    .map(|o| o.position)
            };
            let holds = match (position(r.subject), position(r.object)) {
                (Some(s), Some(o)) => r.relation.holds(s, o),
                _ => false,
            };
            cost += usize::from(!holds);
        }
        cost
    }
}

/// A word or phrase of the vocabulary, as the parser sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Size(Size),
    Color(Color),
    Shape(Shape),
    Position(Position),
    Relation(Relation),
    Kind(BackgroundKind),
    Background,
    Definite,
    Indefinite,
    Stop,
}

fn phrase_table() -> Vec<(Vec<&'static str>, Token)> {
    let mut table: Vec<(Vec<&'static str>, Token)> = Vec::new();
    let mut add = |phrases: &'static [&'static str], token: Token| {
        for phrase in phrases {
            table.push((phrase.split(' ').collect(), token));
        }
    };
    for &v in Size::ALL {
        add(v.phrases(), Token::Size(v));
    }
    for &v in Color::ALL {
        add(v.phrases(), Token::Color(v));
    }
    for &v in Shape::ALL {
        add(v.phrases(), Token::Shape(v));
    }
    for &v in Position::ALL {
        add(v.phrases(), Token::Position(v));
    }
    for &v in Relation::ALL {
        add(v.phrases(), Token::Relation(v));
    }
    for &v in BackgroundKind::ALL {
        add(v.phrases(), Token::Kind(v));
    }
    add(&["background", "backdrop"], Token::Background);
    add(&["the"], Token::Definite);
    add(&["a", "an"], Token::Indefinite);
    // Longest phrase first, so "to the left of" wins over "the".
    table.sort_by_key(|(words, _)| std::cmp::Reverse(words.len()));
    table
}

/// Words, lowercased, with sentence ends (`.`, `!`, `?`, `;`, `|`) as their own items.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            word.extend(ch.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if matches!(ch, '.' | '!' | '?' | ';' | '|') {
            out.push(".".to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn tokens(text: &str) -> Vec<Token> {
    let table = phrase_table();
    let words = words(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "." {
            out.push(Token::Stop);
            i += 1;
            continue;
        }
        let hit = table.iter().find(|(phrase, _)| {
            words.len() - i >= phrase.len() && phrase.iter().zip(&words[i..]).all(|(p, w)| *p == w)
        });
        match hit {
            Some((phrase, token)) => {
                out.push(*token);
                i += phrase.len();
            }
            None => i += 1,
        }
    }
    out
}

/// The parser's state between tokens.
#[derive(Default)]
struct Parser {
    claims: Claims,
    size: Option<Size>,
    color: Option<Color>,
    kind: Option<BackgroundKind>,
    definite: bool,
    last: Option<usize>,
    pending_relation: Option<(usize, Relation)>,
    background_open: bool,
    /// A `the` mention that fits several earlier objects, waiting for a position phrase.
    ambiguous: Option<(ObjectClaim, Vec<usize>)>,
}

impl Parser {
    /// Earlier objects a `the` mention fits.
    fn fits(&self, mention: &ObjectClaim) -> Vec<usize> {
        self.claims
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.shape == mention.shape
                    && mention.color.is_none_or(|c| o.color == Some(c))
                    && mention.size.is_none_or(|s| o.size == Some(s))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The mention is object `index` (or a new object): relate it and make it the last.
    fn mentioned(&mut self, mention: ObjectClaim, index: Option<usize>) {
        let index = index.unwrap_or_else(|| {
            self.claims.objects.push(mention);
            self.claims.objects.len() - 1
        });
        if let Some((subject, relation)) = self.pending_relation.take()
            && subject != index
        {
            self.claims.relations.push(RelationClaim {
                subject,
                relation,
                object: index,
            });
        }
        self.last = Some(index);
    }

    fn token(&mut self, token: Token) {
        if let Some((mention, candidates)) = self.ambiguous.take() {
            if let Token::Position(p) = token {
                let at: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| self.claims.objects[i].position == Some(p))
                    .collect();
                if let [one] = at.as_slice() {
                    self.mentioned(mention, Some(*one));
                    return;
                }
            }
            self.mentioned(mention, None);
        }
        match token {
            Token::Size(s) => self.size = Some(s),
            Token::Color(c) if self.background_open => {
                self.claims
                    .background
                    .get_or_insert_with(Default::default)
                    .color = Some(c);
            }
            Token::Color(c) => self.color = Some(c),
            Token::Kind(k) if self.background_open => {
                self.claims
                    .background
                    .get_or_insert_with(Default::default)
                    .kind = Some(k);
            }
            Token::Kind(k) => self.kind = Some(k),
            Token::Background => {
                if self.color.is_some() || self.kind.is_some() {
                    let claim = self.claims.background.get_or_insert_with(Default::default);
                    claim.color = self.color.take().or(claim.color);
                    claim.kind = self.kind.take().or(claim.kind);
                } else {
                    self.background_open = true;
                }
                self.size = None;
                self.definite = false;
            }
            Token::Shape(shape) => {
                let mention = ObjectClaim {
                    shape,
                    color: self.color.take(),
                    size: self.size.take(),
                    position: None,
                };
                self.kind = None;
                self.background_open = false;
                let definite = std::mem::take(&mut self.definite);
                let fits = if definite {
                    self.fits(&mention)
                } else {
                    Vec::new()
                };
                match fits.as_slice() {
                    [] => self.mentioned(mention, None),
                    [one] => self.mentioned(mention, Some(*one)),
                    _ => self.ambiguous = Some((mention, fits)),
                }
            }
            Token::Position(p) => {
                if let Some(object) = self.last.and_then(|i| self.claims.objects.get_mut(i)) {
                    object.position.get_or_insert(p);
                }
            }
            Token::Relation(r) => {
                if let Some(i) = self.last {
                    self.pending_relation = Some((i, r));
                }
            }
            Token::Definite => self.definite = true,
            Token::Indefinite => self.definite = false,
            Token::Stop => {
                let claims = std::mem::take(&mut self.claims);
                *self = Parser {
                    claims,
                    ..Parser::default()
                };
            }
        }
    }
}

/// Reads a text written in the world's phrasing back into claims.
///
/// The grammar is the one captions, seed texts and eval captions are written in: an object
/// is `[size] [color] SHAPE`, optionally followed by a position phrase; a relation phrase
/// between two objects relates them; `[kind] [color] background` (or `background … color`)
/// describes the background. A `the` mention that fits exactly one earlier object (by its
/// words, or by a position phrase right after it) refers to it. Other words are ignored.
pub fn parse(text: &str) -> Claims {
    let mut parser = Parser::default();
    for token in tokens(text) {
        parser.token(token);
    }
    parser.token(Token::Stop);
    parser.claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_relations_and_backgrounds() {
        let claims = parse(
            "A big red circle to the left of a small grey donut at the top, on a textured blue backdrop",
        );
        assert_eq!(
            claims.objects,
            vec![
                ObjectClaim {
                    shape: Shape::Circle,
                    color: Some(Color::Red),
                    size: Some(Size::Large),
                    position: None,
                },
                ObjectClaim {
                    shape: Shape::Ring,
                    color: Some(Color::Gray),
                    size: Some(Size::Small),
                    position: Some(Position::Top),
                },
            ]
        );
        assert_eq!(
            claims.relations,
            vec![RelationClaim {
                subject: 0,
                relation: Relation::LeftOf,
                object: 1
            }]
        );
        assert_eq!(
            claims.background,
            Some(BackgroundClaim {
                color: Some(Color::Blue),
                kind: Some(BackgroundKind::Textured)
            })
        );
    }

    #[test]
    fn definite_mentions_refer_back() {
        let claims = parse(
            "A red star is on the left. A blue heart is on the right. The red star is left of the blue heart. The background is a plain white.",
        );
        assert_eq!(claims.objects.len(), 2);
        assert_eq!(claims.objects[0].position, Some(Position::Left));
        assert_eq!(claims.relations.len(), 1);
        assert_eq!(
            claims.background,
            Some(BackgroundClaim {
                color: Some(Color::White),
                kind: Some(BackgroundKind::Solid)
            })
        );
    }

    #[test]
    fn a_position_tells_alike_objects_apart() {
        let claims = parse(
            "There is a red star on the left. There is a red star on the right. The red star on the right is to the right of the red star on the left.",
        );
        assert_eq!(claims.objects.len(), 2);
        assert_eq!(
            claims.relations,
            vec![RelationClaim {
                subject: 1,
                relation: Relation::RightOf,
                object: 0
            }]
        );
    }

    #[test]
    fn web_junk_claims_nothing() {
        assert_eq!(parse("IMG_2041.JPG"), Claims::default());
        assert_eq!(parse("Canon EOS 5D Mark III"), Claims::default());
    }
}
