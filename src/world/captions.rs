//! Captions: which claims a caption makes about a scene (all of them, some of them, or all
//! but one made false), and how they are worded as web alt-text.
//!
//! Every caption is written from [`Claims`], so what it says can be checked against the scene
//! with [`Claims::mismatches`]; [`super::claims::parse`] reads the wording back.

use super::claims::{BackgroundClaim, Claims, ObjectClaim, RelationClaim};
use super::rng::Rng;
use super::scene::Scene;
use super::vocab::{BackgroundKind, Color, Position, Relation, Shape, Size};

/// Which kind of statement a change made false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// An object's shape.
    Shape,
    /// An object's color.
    Color,
    /// An object's size.
    Size,
    /// An object's position.
    Position,
    /// A relation between two objects.
    Relation,
    /// The background's color.
    BackgroundColor,
    /// The background's kind.
    BackgroundKind,
}

impl Changed {
    /// The name written in eval tables.
    pub fn word(self) -> &'static str {
        match self {
            Changed::Shape => "shape",
            Changed::Color => "color",
            Changed::Size => "size",
            Changed::Position => "position",
            Changed::Relation => "relation",
            Changed::BackgroundColor => "background color",
            Changed::BackgroundKind => "background kind",
        }
    }
}

/// A statement of a claim set that can be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Shape(usize),
    Color(usize),
    Size(usize),
    Position(usize),
    Relation(usize),
    BackgroundColor,
    BackgroundKind,
}

fn slots(claims: &Claims) -> Vec<Slot> {
    let mut out = Vec::new();
    for (i, o) in claims.objects.iter().enumerate() {
        out.push(Slot::Shape(i));
        if o.color.is_some() {
            out.push(Slot::Color(i));
        }
        if o.size.is_some() {
            out.push(Slot::Size(i));
        }
        if o.position.is_some() {
            out.push(Slot::Position(i));
        }
    }
    out.extend((0..claims.relations.len()).map(Slot::Relation));
    if let Some(bg) = &claims.background {
        if bg.color.is_some() {
            out.push(Slot::BackgroundColor);
        }
        if bg.kind.is_some() {
            out.push(Slot::BackgroundKind);
        }
    }
    out
}

fn other<T: Copy + PartialEq>(rng: &mut Rng, all: &[T], current: T) -> T {
    let choices: Vec<T> = all.iter().copied().filter(|v| *v != current).collect();
    if choices.is_empty() {
        current
    } else {
        rng.pick(&choices)
    }
}

/// Gives the statement in `slot` another value; says what kind of statement it was.
fn change(claims: &mut Claims, slot: Slot, rng: &mut Rng) -> Changed {
    match slot {
        Slot::Shape(i) => {
            let o = &mut claims.objects[i];
            o.shape = other(rng, Shape::ALL, o.shape);
            Changed::Shape
        }
        Slot::Color(i) => {
            let o = &mut claims.objects[i];
            o.color = o.color.map(|c| other(rng, Color::ALL, c));
            Changed::Color
        }
        Slot::Size(i) => {
            let o = &mut claims.objects[i];
            o.size = o.size.map(|s| other(rng, Size::ALL, s));
            Changed::Size
        }
        Slot::Position(i) => {
            let o = &mut claims.objects[i];
            o.position = o.position.map(|p| other(rng, Position::ALL, p));
            Changed::Position
        }
        Slot::Relation(k) => {
            let r = &mut claims.relations[k];
            r.relation = other(rng, Relation::ALL, r.relation);
            Changed::Relation
        }
        Slot::BackgroundColor => {
            if let Some(bg) = &mut claims.background {
                bg.color = bg.color.map(|c| other(rng, Color::ALL, c));
            }
            Changed::BackgroundColor
        }
        Slot::BackgroundKind => {
            if let Some(bg) = &mut claims.background {
                bg.kind = bg.kind.map(|k| other(rng, BackgroundKind::ALL, k));
            }
            Changed::BackgroundKind
        }
    }
}

/// The sure way to make one statement false: the first object gets a shape the scene does
/// not have at all.
fn absent_shape(scene: &Scene, claims: &mut Claims, rng: &mut Rng) -> Changed {
    let absent: Vec<Shape> = Shape::ALL
        .iter()
        .copied()
        .filter(|s| scene.objects.iter().all(|o| o.shape != *s))
        .collect();
    match claims.objects.first_mut() {
        Some(first) if !absent.is_empty() => {
            first.shape = rng.pick(&absent);
            Changed::Shape
        }
        _ => {
            let bg = claims.background.get_or_insert_with(Default::default);
            bg.color = Some(other(rng, Color::ALL, scene.background.color));
            Changed::BackgroundColor
        }
    }
}

/// `claims` (true of `scene`) with exactly one statement made false, checked against the
/// scene: no other reading of the changed text fits the image.
pub fn change_one(scene: &Scene, claims: &Claims, rng: &mut Rng) -> (Claims, Changed) {
    let slots = slots(claims);
    if !slots.is_empty() {
        for _ in 0..24 {
            let mut changed = claims.clone();
            let what = change(&mut changed, rng.pick(&slots), rng);
            if changed.mismatches(scene) == 1 {
                return (changed, what);
            }
        }
    }
    let mut changed = claims.clone();
    let what = absent_shape(scene, &mut changed, rng);
    (changed, what)
}

/// `claims` with `count` different statements changed, so that the whole contradicts the
/// scene (at least one statement false).
pub fn change_some(scene: &Scene, claims: &Claims, count: usize, rng: &mut Rng) -> Claims {
    let mut slots = slots(claims);
    for _ in 0..16 {
        rng.shuffle(&mut slots);
        let mut changed = claims.clone();
        for &slot in slots.iter().take(count.max(1)) {
            change(&mut changed, slot, rng);
        }
        if changed.mismatches(scene) >= 1 {
            return changed;
        }
    }
    let mut changed = claims.clone();
    absent_shape(scene, &mut changed, rng);
    changed
}

/// A true relation between scene objects `a` and `b`, if any.
fn true_relation(scene: &Scene, a: usize, b: usize, rng: &mut Rng) -> Option<Relation> {
    let (pa, pb) = (
        scene.objects.get(a)?.position,
        scene.objects.get(b)?.position,
    );
    let holding: Vec<Relation> = Relation::ALL
        .iter()
        .copied()
        .filter(|r| r.holds(pa, pb))
        .collect();
    (!holding.is_empty()).then(|| rng.pick(&holding))
}

/// What a correct alt-text says: often partial (some objects, some attributes), sometimes
/// everything, sometimes a relation or the background.
pub fn partial(scene: &Scene, rng: &mut Rng) -> Claims {
    if rng.chance(0.15) {
        return full_with_relation(scene, rng);
    }
    let n = scene.objects.len();
    let mut chosen: Vec<usize> = (0..n).filter(|_| rng.chance(0.75)).collect();
    if chosen.is_empty() {
        chosen.push(rng.below(n));
    }
    rng.shuffle(&mut chosen);
    let mut relations = Vec::new();
    if chosen.len() >= 2
        && rng.chance(0.35)
        && let Some(relation) = true_relation(scene, chosen[0], chosen[1], rng)
    {
        relations.push(RelationClaim {
            subject: 0,
            relation,
            object: 1,
        });
    }
    let objects = chosen
        .iter()
        .enumerate()
        .filter_map(|(k, &i)| {
            let o = scene.objects.get(i)?;
            let related = relations.iter().any(|r| r.subject == k || r.object == k);
            Some(ObjectClaim {
                shape: o.shape,
                color: rng.chance(0.85).then_some(o.color),
                size: rng.chance(0.45).then_some(o.size),
                position: (!related && rng.chance(0.3)).then_some(o.position),
            })
        })
        .collect();
    let background = rng.chance(0.4).then(|| {
        let mut claim = BackgroundClaim {
            color: rng.chance(0.85).then_some(scene.background.color),
            kind: rng.chance(0.35).then_some(scene.background.kind),
        };
        if claim.color.is_none() && claim.kind.is_none() {
            claim.color = Some(scene.background.color);
        }
        claim
    });
    Claims {
        objects,
        relations,
        background,
    }
}

/// Every object with every attribute and the background; with two or more objects, also one
/// true relation between two of them (whose positions are then left to the relation).
pub fn full_with_relation(scene: &Scene, rng: &mut Rng) -> Claims {
    let mut claims = Claims::full(scene);
    let mut order: Vec<usize> = (0..claims.objects.len()).collect();
    rng.shuffle(&mut order);
    claims.objects = order.iter().map(|&i| claims.objects[i]).collect();
    if order.len() >= 2
        && let Some(relation) = true_relation(scene, order[0], order[1], rng)
    {
        claims.relations.push(RelationClaim {
            subject: 0,
            relation,
            object: 1,
        });
        claims.objects[0].position = None;
        claims.objects[1].position = None;
    }
    claims
}

/// Every object and the background, with one true relation for every pair of objects (as
/// long descriptions state them).
pub fn full_with_all_relations(scene: &Scene, rng: &mut Rng) -> Claims {
    let mut claims = Claims::full(scene);
    for a in 0..scene.objects.len() {
        for b in a + 1..scene.objects.len() {
            let (subject, object) = if rng.chance(0.5) { (a, b) } else { (b, a) };
            if let Some(relation) = true_relation(scene, subject, object, rng) {
                claims.relations.push(RelationClaim {
                    subject,
                    relation,
                    object,
                });
            }
        }
    }
    claims
}

/// Chooses how a value is worded: canonical words, or a random phrase.
pub enum Wording<'a> {
    /// The first phrase (positions: the first multi-word phrase).
    Canonical,
    /// A random phrase for each value.
    Varied(&'a mut Rng),
}

impl Wording<'_> {
    /// One of `phrases`: the first, or a random one.
    pub fn pick(&mut self, phrases: &'static [&'static str]) -> &'static str {
        match self {
            Wording::Canonical => phrases[0],
            Wording::Varied(rng) => rng.pick(phrases),
        }
    }

    fn chance(&mut self, p: f64, canonical: bool) -> bool {
        match self {
            Wording::Canonical => canonical,
            Wording::Varied(rng) => rng.chance(p),
        }
    }

    /// A position's phrase: never the bare word ("on the left", not "left").
    pub fn position(&mut self, p: Position) -> &'static str {
        let phrases = p.phrases();
        self.pick(&phrases[1..])
    }

    /// A relation's phrase.
    pub fn relation(&mut self, r: Relation) -> &'static str {
        // "to the left of" reads better than the bare canonical words.
        let sideways = matches!(r, Relation::LeftOf | Relation::RightOf);
        if sideways && matches!(self, Wording::Canonical) {
            r.phrases()[1]
        } else {
            self.pick(r.phrases())
        }
    }
}

/// "a" or "an" for the word that follows.
pub fn article(next: &str) -> &'static str {
    if next.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `[article] [size] [color] shape [position]`.
pub fn object_phrase(
    o: &ObjectClaim,
    wording: &mut Wording,
    with_article: bool,
    with_position: bool,
) -> String {
    let mut words: Vec<&str> = Vec::new();
    if let Some(size) = o.size {
        words.push(wording.pick(size.phrases()));
    }
    if let Some(color) = o.color {
        words.push(wording.pick(color.phrases()));
    }
    words.push(wording.pick(o.shape.phrases()));
    let mut phrase = words.join(" ");
    if with_article {
        phrase = format!("{} {phrase}", article(&phrase));
    }
    if with_position && let Some(p) = o.position {
        phrase = format!("{phrase} {}", wording.position(p));
    }
    phrase
}

/// `[kind] [color] background` (`[color] gradient background`), without an article.
pub fn background_phrase(bg: &BackgroundClaim, wording: &mut Wording) -> String {
    let mut words: Vec<&str> = Vec::new();
    if let Some(color) = bg.color {
        words.push(wording.pick(color.phrases()));
    }
    if let Some(kind) = bg.kind {
        let word = wording.pick(kind.phrases());
        if kind == BackgroundKind::Gradient {
            words.push(word);
        } else {
            words.insert(0, word);
        }
    }
    let noun = wording.pick(&["background", "backdrop"]);
    words.push(noun);
    words.join(" ")
}

/// The objects as one phrase: a relation's two objects first, joined by it.
fn objects_phrase(claims: &Claims, wording: &mut Wording) -> String {
    let relation = claims.relations.first().copied();
    let mut order: Vec<usize> = Vec::new();
    if let Some(r) = relation {
        order.push(r.subject);
        order.push(r.object);
    }
    let rest: Vec<usize> = (0..claims.objects.len())
        .filter(|i| !order.contains(i))
        .collect();
    order.extend(rest);
    let mut phrases = Vec::new();
    for (k, o) in order
        .iter()
        .filter_map(|&i| claims.objects.get(i))
        .enumerate()
    {
        let with_article = k > 0 || wording.chance(0.7, true);
        phrases.push(object_phrase(o, wording, with_article, true));
    }
    let mut parts = phrases.into_iter();
    let mut text = parts.next().unwrap_or_default();
    if let Some(r) = relation
        && let Some(second) = parts.next()
    {
        text = format!("{text} {} {second}", wording.relation(r.relation));
    }
    for part in parts {
        let joiner = match wording {
            Wording::Canonical => " and ",
            Wording::Varied(rng) => rng.pick(&[" and ", " and ", ", ", " with ", " next to "]),
        };
        text = format!("{text}{joiner}{part}");
    }
    text
}

/// The canonical caption of some claims: `truth_caption` is this for [`Claims::full`].
pub fn plain(claims: &Claims) -> String {
    let mut wording = Wording::Canonical;
    let objects = objects_phrase(claims, &mut wording);
    match &claims.background {
        Some(bg) => {
            let bg = background_phrase(bg, &mut wording);
            format!("{objects}, on {} {bg}", article(&bg))
        }
        None => objects,
    }
}

const PREFIXES: &[&str] = &[
    "a photo of",
    "an image of",
    "picture of",
    "illustration of",
    "clip art of",
    "a drawing of",
    "vector graphic of",
    "cartoon of",
    "simple icon of",
    "a rendering of",
];

const SUFFIXES: &[&str] = &[
    "stock image",
    "clipart",
    "vector illustration",
    "icon",
    "free download",
    "flat design",
    "sticker",
    "stock vector",
];

/// Web alt-text for some claims: varied templates, synonyms, casing and punctuation.
pub fn alt_text(claims: &Claims, rng: &mut Rng) -> String {
    let mut lead = rng.chance(0.25);
    let text = {
        let mut wording = Wording::Varied(rng);
        let objects = objects_phrase(claims, &mut wording);
        match &claims.background {
            Some(bg) if bg.color.is_some() && lead => {
                let bg = background_phrase(bg, &mut wording);
                format!("{bg} with {objects}")
            }
            Some(bg) => {
                lead = false;
                let phrase = background_phrase(bg, &mut wording);
                let preposition = match &mut wording {
                    Wording::Varied(rng) => rng.pick(&["on", "on", "against"]),
                    Wording::Canonical => "on",
                };
                format!("{objects} {preposition} {} {phrase}", article(&phrase))
            }
            None => {
                lead = false;
                objects
            }
        }
    };
    let mut text = if !lead && rng.chance(0.35) {
        format!("{} {text}", rng.pick(PREFIXES))
    } else {
        text
    };
    if rng.chance(0.2) {
        let sep = rng.pick(&[" - ", " | ", ", "]);
        text = format!("{text}{sep}{}", rng.pick(SUFFIXES));
    }
    let text = match rng.below(20) {
        0..10 => text,
        10..17 => capitalize(&text),
        _ => title_case(&text),
    };
    if rng.chance(0.2) {
        format!("{text}.")
    } else {
        text
    }
}

/// The first letter in upper case.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn title_case(text: &str) -> String {
    text.split(' ')
        .map(capitalize)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::claims::parse;
    use super::*;

    #[test]
    fn alt_text_reads_back_as_its_claims() {
        for i in 0..3000 {
            let mut rng = Rng::stream(5, &[i]);
            let scene = Scene::random(&mut rng);
            let claims = partial(&scene, &mut rng);
            assert_eq!(claims.mismatches(&scene), 0, "{claims:?} vs {scene:?}");
            let text = alt_text(&claims, &mut rng);
            let read = parse(&text);
            assert_eq!(read.mismatches(&scene), 0, "{text:?} -> {read:?}");
            assert_eq!(read.objects.len(), claims.objects.len(), "{text:?}");
            assert_eq!(read.relations.len(), claims.relations.len(), "{text:?}");
            let (wrong, _) = change_one(&scene, &claims, &mut rng);
            let text = alt_text(&wrong, &mut rng);
            assert_eq!(parse(&text).mismatches(&scene), 1, "{text:?}");
        }
    }

    #[test]
    fn plain_caption_states_everything() {
        let mut rng = Rng::stream(2, &[]);
        let scene = Scene::random(&mut rng);
        let text = plain(&Claims::full(&scene));
        let read = parse(&text);
        assert_eq!(read, Claims::full(&scene), "{text}");
    }
}
