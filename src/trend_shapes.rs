//! Generated series for the verdict tests and `reports/verdicts.md`, one
//! shape per function, each a pure function of its seed. Included by path
//! from the tests of `src/trend.rs` and from `alloc-probe/examples/verdicts.rs`,
//! so the rates the report quotes come from the series the tests check.

#![allow(dead_code)]

/// splitmix64: tiny, deterministic, good enough to draw test series.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, shape: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ shape.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub const KIB: u64 = 1024;
/// The range of the churn: 0 to 256 KiB of buffers in flight.
pub const CHURN_BYTES: u64 = 256 * KIB;
/// A sampled block's weight in sampled mode.
pub const BLOCK_BYTES: u64 = 64 * KIB;

/// Snapshots one second apart.
pub fn times(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

/// Grows by a fixed amount at every snapshot, 30-100 snapshots.
pub fn plain_leak(seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 1);
    let n = r.range(30, 100) as usize;
    let (base, per_interval) = (r.range(0, 1 << 20), r.range(1, 64) * KIB);
    (0..n as u64).map(|i| base + i * per_interval).collect()
}

/// +96 KiB in one interval out of `k` (at a random phase), flat in
/// between, 30-100 snapshots.
pub fn bursty_leak(seed: u64, k: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 100 + k);
    let n = r.range(30, 100) as usize;
    let (base, phase) = (r.range(0, 1 << 20), r.range(0, k - 1));
    let mut size = base;
    (0..n as u64)
        .map(|i| {
            if i > 0 && i % k == phase {
                size += 96 * KIB;
            }
            size
        })
        .collect()
}

/// 0-256 KiB of buffers in flight (uniform), plus `CHURN_BYTES /
/// divisor` retained per interval (none for `divisor` 0), 60
/// snapshots.
pub fn churn_leak(seed: u64, divisor: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 200 + divisor);
    let retained = CHURN_BYTES.checked_div(divisor).unwrap_or(0);
    (0..60u64).map(|i| i * retained + r.range(0, CHURN_BYTES)).collect()
}

/// Churn whose buffers live for several intervals: each interval
/// keeps 80% of what was in flight and adds a fresh 0-51 KiB, so
/// consecutive sizes are correlated (lag-1 autocorrelation 0.8).
pub fn slow_churn(seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 300);
    let mut level = r.range(0, CHURN_BYTES) as f64;
    (0..60)
        .map(|_| {
            level = 0.8 * level + 0.2 * r.range(0, CHURN_BYTES) as f64;
            level as u64
        })
        .collect()
}

/// Retains a random 0-32 KiB per interval (a cumulative series:
/// its residuals around the trend are a random walk), 30-100 snapshots.
pub fn noisy_leak(seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 700);
    let n = r.range(30, 100);
    let mut size = r.range(0, 1 << 20);
    (0..n)
        .map(|_| {
            size += r.range(0, 32) * KIB;
            size
        })
        .collect()
}

/// Flat, one jump anywhere, flat again, 30-100 snapshots.
pub fn one_time_load(seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 400);
    let n = r.range(30, 100);
    let (base, at, load) = (r.range(0, 1 << 20), r.range(1, n - 1), r.range(1, 64) << 20);
    (0..n).map(|i| if i < at { base } else { base + load }).collect()
}

/// A cache that fills by random amounts over the first 20-50% of
/// 30-100 snapshots, then stays exactly as it is.
pub fn filling_cache(seed: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 500);
    let n = r.range(30, 100) as usize;
    let fill_until = (n as f64 * (0.2 + 0.3 * r.unit())).round() as usize;
    let mut size = r.range(0, 1 << 20);
    (0..n)
        .map(|i| {
            if i > 0 && i <= fill_until {
                size += r.range(0, 64) * KIB;
            }
            size
        })
        .collect()
}

/// Sampled mode: sizes in whole sampled blocks. One block leaked
/// every 3 intervals (random phase), and 0-`churn_blocks` blocks of
/// churn in flight, 30-100 snapshots.
pub fn sampled_leak(seed: u64, churn_blocks: u64) -> Vec<u64> {
    let mut r = Rng::new(seed, 600 + churn_blocks);
    let n = r.range(30, 100);
    let phase = r.range(0, 2);
    let mut leaked = r.range(0, 8);
    (0..n)
        .map(|i| {
            if i > 0 && i % 3 == phase {
                leaked += 1;
            }
            (leaked + r.range(0, churn_blocks)) * BLOCK_BYTES
        })
        .collect()
}

/// Every shape of the report: its name and its series for a seed.
pub type Shape = (&'static str, Box<dyn Fn(u64) -> Vec<u64>>);

pub fn all() -> Vec<Shape> {
    let mut out: Vec<Shape> = vec![("plain leak, +1-64 KiB per snapshot", Box::new(plain_leak))];
    for k in 2..=6 {
        out.push((
            [
                "",
                "",
                "bursty leak, 1 in 2",
                "bursty leak, 1 in 3",
                "bursty leak, 1 in 4",
                "bursty leak, 1 in 5",
                "bursty leak, 1 in 6",
            ][k as usize],
            Box::new(move |s| bursty_leak(s, k)),
        ));
    }
    out.push(("leak under churn, 1/64 of the range per interval", Box::new(|s| churn_leak(s, 64))));
    out.push(("leak under churn, 1/128 of the range per interval", Box::new(|s| churn_leak(s, 128))));
    out.push(("pure churn, uniform 0-256 KiB", Box::new(|s| churn_leak(s, 0))));
    out.push(("slow churn, lag-1 autocorrelation 0.8", Box::new(slow_churn)));
    out.push(("noisy leak, a random 0-32 KiB retained per interval", Box::new(noisy_leak)));
    out.push(("one-time load", Box::new(one_time_load)));
    out.push(("cache filling over the first 20-50%, then flat", Box::new(filling_cache)));
    out.push(("sampled leak: one 64 KiB block every 3 intervals", Box::new(|s| sampled_leak(s, 0))));
    out.push(("sampled leak: the same under 0-3 blocks of churn", Box::new(|s| sampled_leak(s, 3))));
    out
}
