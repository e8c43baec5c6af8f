//! A small seeded PRNG (SplitMix64) for fuzzers and stress programs: fast,
//! statistically good enough to cover argument spaces, and fully determined by
//! its seed, so a failing run can be replayed from the seed it printed.

use crate::env;

#[derive(Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// An independent stream for worker `index` of a run seeded with `seed`:
    /// each thread gets its own sequence, reproducible from the one seed.
    pub fn stream(seed: u64, index: u64) -> Rng {
        let mut mixer = Rng::new(seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
        Rng::new(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_usize(&mut self) -> usize {
        self.next_u64() as usize
    }

    /// Uniform in `0..n` (`n` > 0), by multiply-and-shift rather than modulo,
    /// which would favour small values.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `0..n` as a usize (`n` > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Index into `weights` chosen with probability proportional to each weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w as u64 {
                return i;
            }
            r -= w as u64;
        }
        weights.len() - 1
    }
}

/// The run's seed: argv[`arg`] if given (decimal or 0x-hex), else the first 8
/// of the kernel's 16 AT_RANDOM bytes. None if the argument is not a number.
pub fn seed_from_arg_or_auxv(arg: usize) -> Option<u64> {
    match env::arg(arg) {
        Some(a) => env::parse_num(a),
        None => Some(env::at_random_u64()),
    }
}
