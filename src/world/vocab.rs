//! The world's words: shapes, colors, sizes, positions, relations and background kinds.
//!
//! Each value has one canonical word (what `truth_scene` says) and the phrases captions may
//! use for it (the canonical word first). The caption parser in [`super::claims`] reads the
//! same table, so a phrase added here is understood everywhere.
//!
//! How to add a shape: a variant, its words below, and its outline in [`super::render`].

/// Declares a vocabulary enum with `ALL`, `word()` and `phrases()`.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => [$($phrase:literal),+]),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in a fixed order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical word, as `truth_scene` writes it.
            pub fn word(self) -> &'static str {
                self.phrases()[0]
            }

            /// The phrases captions may use, the canonical word first.
            pub fn phrases(self) -> &'static [&'static str] {
                match self {
                    $($name::$variant => &[$($phrase),+]),+
                }
            }
        }
    };
}

vocabulary!(
    /// The shape of an object.
    Shape {
        /// A filled disc.
        Circle => ["circle", "disc", "disk"],
        /// An axis-aligned square.
        Square => ["square"],
        /// An upward-pointing triangle.
        Triangle => ["triangle"],
        /// A five-pointed star.
        Star => ["star"],
        /// A heart.
        Heart => ["heart"],
        /// A plus sign.
        Cross => ["cross", "plus sign"],
        /// A circle with a hole.
        Ring => ["ring", "donut"],
        /// A rhombus standing on a corner.
        Diamond => ["diamond", "rhombus"],
        /// A regular hexagon.
        Hexagon => ["hexagon"],
    }
);

vocabulary!(
    /// A named color.
    Color {
        /// Red.
        Red => ["red"],
        /// Orange.
        Orange => ["orange"],
        /// Yellow.
        Yellow => ["yellow"],
        /// Green.
        Green => ["green"],
        /// Blue.
        Blue => ["blue"],
        /// Purple.
        Purple => ["purple", "violet"],
        /// Pink.
        Pink => ["pink"],
        /// Brown.
        Brown => ["brown"],
        /// Black.
        Black => ["black"],
        /// White.
        White => ["white"],
        /// Gray.
        Gray => ["gray", "grey"],
    }
);

vocabulary!(
    /// An object's size.
    Size {
        /// About a fifth of the image across.
        Small => ["small", "little", "tiny"],
        /// About a third of the image across.
        Large => ["large", "big"],
    }
);

vocabulary!(
    /// Where an object sits in the image.
    Position {
        /// Middle of the left third.
        Left => ["left", "on the left", "on the left side"],
        /// Middle of the right third.
        Right => ["right", "on the right", "on the right side"],
        /// Middle of the top third.
        Top => ["top", "at the top"],
        /// Middle of the bottom third.
        Bottom => ["bottom", "at the bottom"],
        /// The middle of the image.
        Center => ["center", "in the center", "in the middle"],
    }
);

vocabulary!(
    /// How one object sits relative to another.
    Relation {
        /// The subject is left of the object.
        LeftOf => ["left of", "to the left of"],
        /// The subject is right of the object.
        RightOf => ["right of", "to the right of"],
        /// The subject is above the object.
        Above => ["above", "over"],
        /// The subject is below the object.
        Below => ["below", "under", "beneath"],
    }
);

vocabulary!(
    /// How the background is painted.
    BackgroundKind {
        /// One flat color.
        Solid => ["solid", "plain"],
        /// A linear gradient around the color.
        Gradient => ["gradient"],
        /// Stripes, dots or checks in shades of the color.
        Textured => ["textured", "patterned"],
    }
);

impl Color {
    /// The color's reference sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [214, 39, 40],
            Color::Orange => [245, 130, 32],
            Color::Yellow => [242, 212, 44],
            Color::Green => [44, 160, 64],
            Color::Blue => [36, 92, 212],
            Color::Purple => [128, 58, 180],
            Color::Pink => [240, 128, 184],
            Color::Brown => [128, 80, 42],
            Color::Black => [24, 24, 24],
            Color::White => [246, 246, 246],
            Color::Gray => [128, 128, 128],
        }
    }
}

impl Position {
    /// The position's anchor, as fractions of the image side (x right, y down).
    pub fn anchor(self) -> (f32, f32) {
        match self {
            Position::Left => (0.19, 0.5),
            Position::Right => (0.81, 0.5),
            Position::Top => (0.5, 0.19),
            Position::Bottom => (0.5, 0.81),
            Position::Center => (0.5, 0.5),
        }
    }
}

impl Relation {
    /// Whether an object at `subject` stands in this relation to one at `object`: judged on
    /// the positions' anchors, so it is a fact about the words, not about the jitter.
    pub fn holds(self, subject: Position, object: Position) -> bool {
        let (sx, sy) = subject.anchor();
        let (ox, oy) = object.anchor();
        match self {
            Relation::LeftOf => sx + 0.1 < ox,
            Relation::RightOf => sx > ox + 0.1,
            Relation::Above => sy + 0.1 < oy,
            Relation::Below => sy > oy + 0.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_words_and_no_phrase_means_two_things() {
        assert!(Shape::ALL.len() >= 7);
        assert!(Color::ALL.len() >= 8);
        let mut phrases: Vec<&str> = Vec::new();
        phrases.extend(Shape::ALL.iter().flat_map(|v| v.phrases()));
        phrases.extend(Color::ALL.iter().flat_map(|v| v.phrases()));
        phrases.extend(Size::ALL.iter().flat_map(|v| v.phrases()));
        phrases.extend(Position::ALL.iter().flat_map(|v| v.phrases()));
        phrases.extend(Relation::ALL.iter().flat_map(|v| v.phrases()));
        phrases.extend(BackgroundKind::ALL.iter().flat_map(|v| v.phrases()));
        let mut sorted = phrases.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), phrases.len());
    }

    #[test]
    fn every_pair_of_positions_has_a_relation() {
        for &a in Position::ALL {
            for &b in Position::ALL {
                let any = Relation::ALL.iter().any(|r| r.holds(a, b));
                assert_eq!(any, a != b, "{a:?} {b:?}");
            }
        }
    }
}
