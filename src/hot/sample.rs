//! The sampling countdown for sampled mode.
//!
//! Poisson sampling by bytes, as Go's `MemProfileRate` and jemalloc's
//! `lg_prof_sample`: each thread counts down an exponentially distributed
//! number of bytes with mean `mean_bytes`; the allocation that crosses zero
//! is sampled and a new distance is drawn. A block of `s` bytes is then
//! sampled with probability `1 - exp(-s / mean_bytes)`, whatever came before
//! it, and a snapshot weighs it by the inverse of that probability.
//!
//! The state is `const` thread-locals without destructors, so it works
//! during thread exit too. The countdown's fast path is not here: sampled
//! mode counts a thread's allocated bytes in and down with one compare
//! (`counters::try_alloc`), against a limit no larger than the countdown
//! left, and flushes them off the countdown when it passes the limit
//! (`counters::count_down`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

thread_local! {
    /// Bytes left before the next sample, as of the thread's last flush of
    /// counted bytes; 0 until first drawn (so the first allocation goes to
    /// [`crossed`], which draws it: the fast path needs no "not drawn yet"
    /// test).
    static COUNTDOWN: Cell<i64> = const { Cell::new(0) };
    /// xorshift64* state; 0 until seeded.
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// The seed every thread's generator derives from (set by `Config::sample_seed`).
pub(crate) static SEED: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
/// Bumped at each `start()` so threads redraw their countdown with the new mean.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(1);
/// Threads seeded so far, to give each its own stream from one seed.
static THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN_EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// Drawn distances are capped at this many means, so a block at least that
/// large is always sampled (an 8 MiB block at the 512 KiB default); below
/// it the cap changes probabilities by at most e^-16.
pub(crate) const CAP_FACTOR: usize = 16;

/// The probability that a block of `size` bytes is sampled.
#[inline]
pub(crate) fn probability(size: usize, mean_bytes: usize) -> f64 {
    if mean_bytes <= 1 || size >= mean_bytes.saturating_mul(CAP_FACTOR) {
        return 1.0;
    }
    -(-(size as f64) / mean_bytes as f64).exp_m1()
}

/// The countdown left when the thread's counted bytes were last flushed
/// (`counters::count_down` subtracts what it counted since).
#[inline]
pub(crate) fn left() -> i64 {
    COUNTDOWN.try_with(Cell::get).unwrap_or(0)
}

/// Sets the countdown, and the fast path's limit from it.
#[inline]
pub(crate) fn set_left(left: i64) {
    let _ = COUNTDOWN.try_with(|c| c.set(left));
    super::counters::set_alloc_limit(left);
}

/// Counts `size` bytes down without the total: true when not crossed
/// (the tests' stand-in for `counters::count_down`).
#[cfg(test)]
fn countdown(size: usize) -> bool {
    let left = left() - size as i64;
    if left > 0 {
        let _ = COUNTDOWN.try_with(|c| c.set(left));
    }
    left > 0
}

/// The slow path, after `counters::count_down` returned false: whether this
/// allocation of `size` bytes is sampled. Draws the next distance; a thread
/// that has not drawn since the last `start()` draws its first one here.
#[cold]
#[inline(never)]
pub(crate) fn crossed(size: usize, mean_bytes: usize) -> bool {
    let epoch = EPOCH.load(Relaxed);
    if SEEN_EPOCH.try_with(Cell::get).unwrap_or(0) != epoch {
        let _ = SEEN_EPOCH.try_with(|c| c.set(epoch));
        let _ = RNG.try_with(|c| c.set(0));
        let first = draw(mean_bytes);
        if first > size as i64 {
            set_left(first - size as i64);
            return false;
        }
    }
    set_left(draw(mean_bytes));
    true
}

/// Counts `size` bytes down; true when this allocation is sampled.
#[cfg(test)]
pub(crate) fn should_sample(size: usize, mean_bytes: usize) -> bool {
    !countdown(size) && crossed(size, mean_bytes)
}

/// Draws the next distance, exponentially distributed with the given mean.
fn draw(mean_bytes: usize) -> i64 {
    let u = next_uniform();
    let d = -(1.0 - u).ln() * mean_bytes as f64;
    let cap = mean_bytes.saturating_mul(CAP_FACTOR).min(i64::MAX as usize / 2) as i64;
    (d as i64).clamp(1, cap)
}

/// A uniform draw in [0, 1).
fn next_uniform() -> f64 {
    let mut x = RNG.try_with(Cell::get).unwrap_or(1);
    if x == 0 {
        let n = THREADS.fetch_add(1, Relaxed);
        x = super::sites::mix(SEED.load(Relaxed) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let _ = RNG.try_with(|c| c.set(x));
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_is_one_for_huge_blocks_and_small_for_tiny_ones() {
        assert_eq!(probability(8 << 20, 512 << 10), 1.0);
        assert!(probability(4 << 20, 512 << 10) > 0.999);
        let p = probability(16, 512 << 10);
        assert!(p > 0.0 && p < 0.0001);
        assert_eq!(probability(1, 1), 1.0);
    }

    #[test]
    fn a_block_of_sixteen_means_is_always_sampled() {
        EPOCH.fetch_add(1, Relaxed);
        let _ = COUNTDOWN.try_with(|c| c.set(0));
        for _ in 0..10_000 {
            assert!(should_sample(8 << 20, 512 << 10));
            should_sample(100, 512 << 10);
        }
    }

    #[test]
    fn sampled_bytes_average_to_the_mean() {
        EPOCH.fetch_add(1, Relaxed);
        let mean = 4096;
        let mut samples = 0u64;
        let total = 40_000_000u64;
        let mut done = 0u64;
        while done < total {
            if should_sample(64, mean) {
                samples += 1;
            }
            done += 64;
        }
        let expect = total as f64 * probability(64, mean) / 64.0;
        let err = (samples as f64 - expect).abs() / expect;
        assert!(err < 0.05, "samples {samples}, expected {expect}");
    }
}
