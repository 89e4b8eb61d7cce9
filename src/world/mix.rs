//! Alt-text quality classes and the mix a pool draws them from (`--mix`).

use std::fmt;
use std::str::FromStr;

use super::rng::Rng;

/// How an alt-text relates to its image: `truth_quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// True of the image (possibly partial).
    Correct,
    /// True of the image except exactly one attribute.
    WrongAttr,
    /// Web junk about nothing in the image.
    Junk,
    /// Another image's correct caption.
    Mismatch,
    /// NULL, empty or blank.
    Empty,
}

impl Quality {
    /// Every class, in `--mix` order.
    pub const ALL: [Quality; 5] = [
        Quality::Correct,
        Quality::WrongAttr,
        Quality::Junk,
        Quality::Mismatch,
        Quality::Empty,
    ];

    /// The class name, as `truth_quality` and `--mix` write it.
    pub fn word(self) -> &'static str {
        match self {
            Quality::Correct => "correct",
            Quality::WrongAttr => "wrong_attr",
            Quality::Junk => "junk",
            Quality::Mismatch => "mismatch",
            Quality::Empty => "empty",
        }
    }
}

/// Relative weights of the quality classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: [f64; 5],
}

impl Default for Mix {
    /// Roughly a web pool: 40% correct, 20% wrong_attr, 15% junk, 15% mismatch, 10% empty.
    fn default() -> Self {
        Mix {
            weights: [40.0, 20.0, 15.0, 15.0, 10.0],
        }
    }
}

impl Mix {
    /// The share of `quality`, between 0 and 1.
    pub fn share(&self, quality: Quality) -> f64 {
        let total: f64 = self.weights.iter().sum();
        let i = Quality::ALL.iter().position(|q| *q == quality).unwrap_or(0);
        self.weights[i] / total
    }

    /// Draws a class at random.
    pub fn draw(&self, rng: &mut Rng) -> Quality {
        self.at(rng.unit())
    }

    /// The class at `u` in `[0, 1)`, the classes laid out by share.
    pub fn at(&self, u: f64) -> Quality {
        let total: f64 = self.weights.iter().sum();
        let mut x = u * total;
        for (quality, weight) in Quality::ALL.iter().zip(self.weights) {
            if x < weight {
                return *quality;
            }
            x -= weight;
        }
        // Rounding at the top end: the last class with any weight.
        Quality::ALL
            .iter()
            .zip(self.weights)
            .rev()
            .find(|(_, w)| *w > 0.0)
            .map_or(Quality::Correct, |(q, _)| *q)
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `correct=40,wrong_attr=20,junk=15,mismatch=15,empty=10`: weights (fractions or
    /// percentages, normalized by their sum); a class left out gets 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names = Quality::ALL.map(Quality::word).join(", ");
        let mut weights = [0.0; 5];
        let mut given = [false; 5];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("'{part}' is not CLASS=WEIGHT (classes: {names})"));
            };
            let name = name.trim();
            let Some(i) = Quality::ALL.iter().position(|q| q.word() == name) else {
                return Err(format!("unknown class '{name}' (classes: {names})"));
            };
            if given[i] {
                return Err(format!("class '{name}' is given twice"));
            }
            let weight: f64 =
                value.trim().trim_end_matches('%').parse().map_err(|_| {
                    format!("weight of '{name}' is not a number: '{}'", value.trim())
                })?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(format!(
                    "weight of '{name}' must be zero or positive, not {weight}"
                ));
            }
            weights[i] = weight;
            given[i] = true;
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err(format!(
                "the mix needs a positive weight (classes: {names})"
            ));
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Quality::ALL
            .iter()
            .map(|q| format!("{}={:.3}", q.word(), self.share(*q)))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_and_names_mistakes() {
        let mix: Mix = "correct=0.5, junk=50%".parse().expect("valid");
        assert_eq!(mix.share(Quality::Correct), 0.5 / 50.5);
        assert_eq!(mix.share(Quality::Empty), 0.0);
        let err = |s: &str| s.parse::<Mix>().expect_err(s);
        assert!(err("good=1").contains("unknown class 'good'"));
        assert!(err("correct").contains("not CLASS=WEIGHT"));
        assert!(err("correct=x").contains("not a number"));
        assert!(err("correct=-1").contains("zero or positive"));
        assert!(err("correct=1,correct=2").contains("twice"));
        assert!(err("correct=0").contains("positive weight"));
    }

    #[test]
    fn an_even_sequence_hits_the_shares_closely() {
        let mix = Mix::default();
        let mut counts = [0usize; 5];
        for row in 0..1000 {
            let q = mix.at(Rng::even(3, &[1], row));
            counts[Quality::ALL.iter().position(|x| *x == q).unwrap_or(0)] += 1;
        }
        assert_eq!(
            counts.map(|n| (n as f64 / 10.0).round()),
            [40.0, 20.0, 15.0, 15.0, 10.0]
        );
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix = Mix::default();
        let mut rng = Rng::stream(1, &[]);
        let mut counts = [0usize; 5];
        for _ in 0..20_000 {
            let q = mix.draw(&mut rng);
            counts[Quality::ALL.iter().position(|x| *x == q).unwrap_or(0)] += 1;
        }
        for (q, n) in Quality::ALL.iter().zip(counts) {
            let share = n as f64 / 20_000.0;
            assert!((share - mix.share(*q)).abs() < 0.015, "{q:?} {share}");
        }
    }
}
