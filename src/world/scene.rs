//! Scenes: a background and 1–3 non-overlapping objects, each drawn from the vocabulary,
//! plus the exact geometry the renderer needs. `truth_scene` is [`Scene::to_json`].

use serde::Serialize;

use super::rng::Rng;
use super::vocab::{BackgroundKind, Color, Position, Relation, Shape, Size};

/// One object of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Its shape.
    pub shape: Shape,
    /// Its named color.
    pub color: Color,
    /// Small or large.
    pub size: Size,
    /// Where it sits.
    pub position: Position,
    /// Center, as fractions of the image side.
    pub center: (f32, f32),
    /// Radius of the circle the shape is drawn in, as a fraction of the side.
    pub radius: f32,
    /// The exact fill color (the named color, slightly varied).
    pub rgb: [u8; 3],
}

/// A texture's pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Diagonal stripes.
    Stripes,
    /// A grid of dots.
    Dots,
    /// A checkerboard.
    Checks,
}

/// A scene's background.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// Solid, gradient or textured.
    pub kind: BackgroundKind,
    /// Its named color.
    pub color: Color,
    /// The exact base color.
    pub rgb: [u8; 3],
    /// The gradient's direction: one of 8 compass directions.
    pub direction: usize,
    /// The texture's pattern (used when `kind` is textured).
    pub pattern: Pattern,
    /// The texture's period, as a fraction of the side.
    pub period: f32,
}

/// A rendered world's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The background.
    pub background: Background,
    /// 1–3 objects, at distinct positions, not overlapping.
    pub objects: Vec<Object>,
}

/// Radius ranges by size, as fractions of the image side.
fn radius_range(size: Size) -> (f32, f32) {
    match size {
        Size::Small => (0.085, 0.105),
        Size::Large => (0.15, 0.17),
    }
}

/// Room kept between two objects' circles, as a fraction of the side.
const GAP: f32 = 0.012;

fn vary(rgb: [u8; 3], rng: &mut Rng, amount: i32) -> [u8; 3] {
    rgb.map(|c| {
        let delta = rng.below((2 * amount + 1) as usize) as i32 - amount;
        (i32::from(c) + delta).clamp(0, 255) as u8
    })
}

fn overlaps(objects: &[Object]) -> bool {
    objects.iter().enumerate().any(|(i, a)| {
        objects[i + 1..].iter().any(|b| {
            let (dx, dy) = (a.center.0 - b.center.0, a.center.1 - b.center.1);
            (dx * dx + dy * dy).sqrt() < a.radius + b.radius + GAP
        })
    })
}

fn place(object: &mut Object, rng: &mut Rng, jitter: f32) {
    let (ax, ay) = object.position.anchor();
    let margin = object.radius + 0.01;
    let x = (ax + rng.range(-jitter, jitter)).clamp(margin, 1.0 - margin);
    let y = (ay + rng.range(-jitter, jitter)).clamp(margin, 1.0 - margin);
    object.center = (x, y);
}

impl Object {
    fn random(rng: &mut Rng, position: Position) -> Object {
        let shape = rng.pick(Shape::ALL);
        let color = rng.pick(Color::ALL);
        Object::new(rng, shape, color, position)
    }

    fn new(rng: &mut Rng, shape: Shape, color: Color, position: Position) -> Object {
        let size = rng.pick(Size::ALL);
        let (lo, hi) = radius_range(size);
        let radius = rng.range(lo, hi);
        let rgb = vary(color.rgb(), rng, 10);
        Object {
            shape,
            color,
            size,
            position,
            center: position.anchor(),
            radius,
            rgb,
        }
    }

    fn shrink(&mut self, rng: &mut Rng) {
        self.size = Size::Small;
        let (lo, hi) = radius_range(Size::Small);
        self.radius = rng.range(lo, hi);
    }
}

impl Background {
    fn random(rng: &mut Rng, avoid: &[Color]) -> Background {
        let choices: Vec<Color> = Color::ALL
            .iter()
            .copied()
            .filter(|c| !avoid.contains(c))
            .collect();
        let color = rng.pick(&choices);
        Background {
            kind: rng.pick(BackgroundKind::ALL),
            color,
            rgb: vary(color.rgb(), rng, 6),
            direction: rng.below(8),
            pattern: rng.pick(&[Pattern::Stripes, Pattern::Dots, Pattern::Checks]),
            period: rng.range(0.12, 0.2),
        }
    }
}

impl Scene {
    /// A random scene: 1–3 objects (about 40/35/25), each at its own position.
    pub fn random(rng: &mut Rng) -> Scene {
        let count = match rng.below(100) {
            0..40 => 1,
            40..75 => 2,
            _ => 3,
        };
        let mut positions = Position::ALL.to_vec();
        rng.shuffle(&mut positions);
        let objects = positions[..count]
            .iter()
            .map(|&p| Object::random(rng, p))
            .collect();
        Scene::arrange(rng, objects)
    }

    /// A scene with exactly one object of the given shape and color.
    pub fn single(rng: &mut Rng, shape: Shape, color: Color) -> Scene {
        let position = rng.pick(Position::ALL);
        let object = Object::new(rng, shape, color, position);
        Scene::arrange(rng, vec![object])
    }

    /// Jitters the objects around their anchors without overlap, then paints a background in
    /// a color no object has.
    fn arrange(rng: &mut Rng, mut objects: Vec<Object>) -> Scene {
        let mut placed = false;
        for _ in 0..8 {
            for object in &mut objects {
                place(object, rng, 0.03);
            }
            if !overlaps(&objects) {
                placed = true;
                break;
            }
        }
        if !placed {
            for object in &mut objects {
                place(object, rng, 0.0);
            }
            // Only two large objects, one of them in the center, can still touch: the
            // anchors are 0.31 apart and a large radius is up to 0.17.
            let mut i = objects.len();
            while overlaps(&objects) && i > 0 {
                i -= 1;
                objects[i].shrink(rng);
                place(&mut objects[i], rng, 0.0);
            }
        }
        let used: Vec<Color> = objects.iter().map(|o| o.color).collect();
        let background = Background::random(rng, &used);
        Scene {
            background,
            objects,
        }
    }

    /// Every relation that holds between two of the scene's objects, as
    /// `(subject, relation, object)` indices.
    pub fn relations(&self) -> Vec<(usize, Relation, usize)> {
        let mut out = Vec::new();
        for (i, a) in self.objects.iter().enumerate() {
            for (j, b) in self.objects.iter().enumerate() {
                if i == j {
                    continue;
                }
                for &relation in Relation::ALL {
                    if relation.holds(a.position, b.position) {
                        out.push((i, relation, j));
                    }
                }
            }
        }
        out
    }

    /// A scene from `truth_scene` text: the words, with each object at its position's anchor
    /// (enough to check claims against; the exact geometry is not in the JSON).
    pub fn from_json(text: &str) -> std::result::Result<Scene, String> {
        fn word<T: Copy>(
            value: &serde_json::Value,
            key: &str,
            all: &[T],
            name: impl Fn(T) -> &'static str,
        ) -> std::result::Result<T, String> {
            let w = value[key]
                .as_str()
                .ok_or_else(|| format!("truth_scene: '{key}' is missing in {value}"))?;
            all.iter()
                .copied()
                .find(|v| name(*v) == w)
                .ok_or_else(|| format!("truth_scene: unknown {key} '{w}'"))
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("truth_scene is not JSON: {e}"))?;
        let bg = &value["background"];
        let color = word(bg, "color", Color::ALL, Color::word)?;
        let background = Background {
            kind: word(bg, "kind", BackgroundKind::ALL, BackgroundKind::word)?,
            color,
            rgb: color.rgb(),
            direction: 0,
            pattern: Pattern::Stripes,
            period: 0.15,
        };
        let objects = value["objects"]
            .as_array()
            .ok_or("truth_scene: 'objects' is not a list")?
            .iter()
            .map(|o| {
                let color = word(o, "color", Color::ALL, Color::word)?;
                let size = word(o, "size", Size::ALL, Size::word)?;
                let position = word(o, "position", Position::ALL, Position::word)?;
                Ok(Object {
                    shape: word(o, "shape", Shape::ALL, Shape::word)?,
                    color,
                    size,
                    position,
                    center: position.anchor(),
                    radius: radius_range(size).0,
                    rgb: color.rgb(),
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(Scene {
            background,
            objects,
        })
    }

    /// `truth_scene`: the scene in words, as JSON text.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Bg {
            kind: &'static str,
            color: &'static str,
        }
        #[derive(Serialize)]
        struct Obj {
            shape: &'static str,
            color: &'static str,
            size: &'static str,
            position: &'static str,
        }
        #[derive(Serialize)]
        struct Rel {
            subject: usize,
            relation: &'static str,
            object: usize,
        }
        #[derive(Serialize)]
        struct Json {
            background: Bg,
            objects: Vec<Obj>,
            relations: Vec<Rel>,
        }
        let json = Json {
            background: Bg {
                kind: self.background.kind.word(),
                color: self.background.color.word(),
            },
            objects: self
                .objects
                .iter()
                .map(|o| Obj {
                    shape: o.shape.word(),
                    color: o.color.word(),
                    size: o.size.word(),
                    position: o.position.word(),
                })
                .collect(),
            relations: self
                .relations()
                .into_iter()
                .map(|(subject, relation, object)| Rel {
                    subject,
                    relation: relation.word(),
                    object,
                })
                .collect(),
        };
        serde_json::to_string(&json).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_never_overlap_and_keep_the_background_apart() {
        for i in 0..2000 {
            let scene = Scene::random(&mut Rng::stream(3, &[i]));
            assert!((1..=3).contains(&scene.objects.len()));
            assert!(!overlaps(&scene.objects), "{scene:?}");
            for o in &scene.objects {
                assert_ne!(o.color, scene.background.color);
                let (x, y) = o.center;
                assert!(x - o.radius >= 0.0 && x + o.radius <= 1.0, "{o:?}");
                assert!(y - o.radius >= 0.0 && y + o.radius <= 1.0, "{o:?}");
            }
        }
    }

    #[test]
    fn json_uses_the_vocabulary_words() {
        let scene = Scene::random(&mut Rng::stream(1, &[5]));
        let value: serde_json::Value = serde_json::from_str(&scene.to_json()).expect("valid JSON");
        assert_eq!(
            value["objects"][0]["shape"],
            scene.objects[0].shape.word(),
            "{value}"
        );
        assert!(value["relations"].is_array());
        let back = Scene::from_json(&scene.to_json()).expect("reads back");
        assert_eq!(back.to_json(), scene.to_json());
    }
}
