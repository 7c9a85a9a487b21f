//! A small deterministic random number generator (SplitMix64). Every record draws from its own
//! stream, seeded by the dataset's seed and the record's index, so records can be generated in
//! any order and on any number of threads and still come out the same.

/// SplitMix64's output function: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub struct Rng(u64);

impl Rng {
    /// The stream `stream` of the dataset seeded with `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mix(stream.wrapping_add(0x632b_e59b_d9b4_e019))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by the multiply-shift method.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index into `weights`, drawn in proportion to them (`weights` not all zero).
    pub fn weighted<T>(&mut self, items: &[(T, u32)]) -> usize {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (i, (_, w)) in items.iter().enumerate() {
            let w = u64::from(*w);
            if x < w {
                return i;
            }
            x -= w;
        }
        items.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_and_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(42, 7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "the same stream gives the same numbers");
        assert_ne!(Rng::new(42, 7).next_u64(), Rng::new(42, 8).next_u64());
        assert_ne!(Rng::new(42, 7).next_u64(), Rng::new(43, 7).next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(1, 1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800 && n < 1200), "{seen:?}");
    }
}
