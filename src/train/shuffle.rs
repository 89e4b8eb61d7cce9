//! A shuffle buffer: rows stream in, and each one out is drawn uniformly from the buffer, so
//! a table larger than memory is shuffled within a window of `capacity` rows.

use crate::world::rng::Rng;

/// A fixed-capacity shuffle buffer.
#[derive(Debug)]
pub struct ShuffleBuffer<T> {
    items: Vec<T>,
    capacity: usize,
}

impl<T> ShuffleBuffer<T> {
    /// A buffer holding up to `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        ShuffleBuffer {
            items: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds `item`; once full, returns a uniformly drawn item it replaces.
    pub fn push(&mut self, item: T, rng: &mut Rng) -> Option<T> {
        if self.items.len() < self.capacity {
            self.items.push(item);
            return None;
        }
        let j = rng.below(self.items.len());
        Some(std::mem::replace(&mut self.items[j], item))
    }

    /// Empties the buffer in random order (the end of an epoch).
    pub fn drain(&mut self, rng: &mut Rng) -> Vec<T> {
        let mut rest = std::mem::take(&mut self.items);
        rng.shuffle(&mut rest);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_comes_out_once_and_order_changes() {
        let mut rng = Rng::stream(1, &[2]);
        let mut buf = ShuffleBuffer::new(16);
        let mut out: Vec<u32> = (0..100).filter_map(|i| buf.push(i, &mut rng)).collect();
        out.extend(buf.drain(&mut rng));
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(out, sorted);
    }
}
