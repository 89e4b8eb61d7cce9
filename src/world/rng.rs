//! The world's random numbers: SplitMix64, in tree, so that a seed means the same pool
//! whatever crate versions the build resolves.
//!
//! Every row draws from its own stream, derived from the seed and a key path such as
//! `[domain, row, purpose]`; rows can therefore be generated in any order, on any number of
//! threads, and come out the same.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The stream for `seed` and a key path (e.g. `[domain, row, purpose]`).
    pub fn stream(seed: u64, keys: &[u64]) -> Rng {
        let mut state = mix(seed.wrapping_add(GOLDEN));
        for &key in keys {
            state = mix(state ^ mix(key.wrapping_add(GOLDEN)));
        }
        Rng { state }
    }

    /// Point `index` of a golden-ratio (Weyl) sequence in `[0, 1)` with a random start: any
    /// run of consecutive indices covers `[0, 1)` evenly, so classes drawn from it hit their
    /// shares closely in every prefix of a table, while each row is still computed alone.
    pub fn even(seed: u64, keys: &[u64], index: u64) -> f64 {
        let start = Rng::stream(seed, keys).next_u64();
        let x = start.wrapping_add(index.wrapping_mul(GOLDEN));
        (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform integer in `0..n` (0 when `n` is 0), without modulo bias worth the name.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniform float in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit() as f32
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_fixed_and_distinct() {
        // Pinned values: a change here changes every generated pool.
        let mut a = Rng::stream(7, &[1, 0]);
        assert_eq!(a.next_u64(), Rng::stream(7, &[1, 0]).next_u64());
        let first = Rng::stream(0, &[]).next_u64();
        assert_eq!(first, 0xa706_dd2f_4d19_7e6f);
        assert_ne!(
            Rng::stream(7, &[1, 0]).next_u64(),
            Rng::stream(7, &[0, 1]).next_u64()
        );
        assert_ne!(
            Rng::stream(7, &[1, 0]).next_u64(),
            Rng::stream(8, &[1, 0]).next_u64()
        );
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::stream(1, &[]);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }
}
