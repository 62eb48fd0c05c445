//! The workload: each thread runs `rounds` rounds of three phases, all
//! driven by its own seeded generator, so every allocator sees the same
//! sequence of requests and the checksum is the same under all of them.
//!
//! 1. String building: `write!` into a fresh `String`, words pushed onto it
//!    (so it reallocates as it grows), a quarter upper-cased into a new
//!    string, all kept in a `Vec` until the round ends; a join of some.
//! 2. A `BTreeMap<u32, Vec<u32>>` kept across rounds: small vectors built by
//!    `push` replace, or are removed from, random keys.
//! 3. Churn: a ring of byte vectors kept across rounds, random slots
//!    replaced by blocks of mixed sizes (mostly small, a few up to 64 KiB),
//!    plus short-lived boxes.
//!
//! At `scale = 1.0` each thread makes about 4 million allocation calls
//! (`alloc` + `realloc`); two threads take about 0.8 s on glibc's malloc.
//!
//! The realloc-heavy workload (`--workload realloc`, [`grow_worker`]) grows
//! `String`s word by word and `Vec<u32>`s element by element from empty, so
//! most calls are reallocs (each doubling), shrinks a third of the strings
//! to fit, and keeps the results in rings across rounds. About 4 million
//! allocation calls per thread at `scale = 1.0`, three quarters of them
//! reallocs.

use crate::{Params, Workload};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rounds per thread at `scale = 1.0`.
pub const BASE_ROUNDS: usize = 20;
const STRINGS_PER_ROUND: usize = 27_000;
const MAP_OPS_PER_ROUND: usize = 30_000;
const MAP_KEYS: u64 = 16_384;
const LOOKUPS: usize = 80;
const CHURN_PER_ROUND: usize = 50_000;
const RING_SLOTS: usize = 4_096;

const WORDS: [&str; 16] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi",
    "omicron", "pi",
];

/// What one run produced.
pub struct Outcome {
    /// Wall time from spawning the first worker to joining the last.
    pub wall: Duration,
    /// Order-independent combination of the workers' checksums.
    pub checksum: u64,
    /// The workers' data still live at the end (the map, the ring, the last
    /// round's strings), so the caller can look at a full heap before
    /// dropping it.
    pub retained: Retained,
}

/// Data the workers left live; dropping it frees it.
pub struct Retained {
    states: Vec<ThreadState>,
}

impl Retained {
    /// Blocks held (approximately: one per string, vector and ring slot).
    pub fn blocks(&self) -> usize {
        self.states.iter().map(|s| s.lines.len() + s.map.len() + s.ring.iter().filter(|v| !v.is_empty()).count()).sum()
    }
}

#[derive(Default)]
struct ThreadState {
    lines: Vec<String>,
    map: BTreeMap<u32, Vec<u32>>,
    ring: Vec<Vec<u8>>,
}

/// The number of rounds each thread runs for `scale`.
pub fn rounds(scale: f64) -> usize {
    ((BASE_ROUNDS as f64 * scale).round() as usize).max(1)
}

/// Runs the workload on `params.threads` threads and waits for them.
pub fn run(params: &Params) -> Outcome {
    let rounds = rounds(params.scale);
    let workload = params.workload;
    let start = Instant::now();
    let handles: Vec<_> = (0..params.threads)
        .map(|t| {
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn(move || match workload {
                    Workload::Mixed => worker(t as u64, rounds),
                    Workload::Realloc => grow_worker(t as u64, rounds),
                })
                .expect("spawn worker")
        })
        .collect();
    let mut checksum = 0u64;
    let mut states = Vec::with_capacity(params.threads);
    for h in handles {
        let (sum, state) = h.join().expect("worker panicked");
        checksum = checksum.wrapping_add(sum);
        states.push(state);
    }
    let wall = start.elapsed();
    Outcome { wall, checksum, retained: Retained { states } }
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }

    /// Mostly small, sometimes medium, rarely large (up to 64 KiB).
    fn block_size(&mut self) -> usize {
        let (lo, hi) = match self.below(100) {
            0..=59 => (8, 64),
            60..=89 => (65, 512),
            90..=97 => (513, 8_192),
            _ => (8_193, 65_536),
        };
        (lo + self.below(hi - lo + 1)) as usize
    }
}

/// FNV-1a over at most the first 512 bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes[..bytes.len().min(512)]
        .iter()
        .fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

fn mix(sum: u64, v: u64) -> u64 {
    (sum ^ v).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(5)
}

fn worker(t: u64, rounds: usize) -> (u64, ThreadState) {
    let mut rng = Rng(0x5EED_0000_0000_0000 ^ (t + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut st = ThreadState { ring: (0..RING_SLOTS).map(|_| Vec::new()).collect(), ..ThreadState::default() };
    let mut sum = 0u64;
    for r in 0..rounds {
        sum = mix(sum, strings(&mut rng, &mut st, t, r));
        sum = mix(sum, map_ops(&mut rng, &mut st));
        sum = mix(sum, churn(&mut rng, &mut st));
    }
    (sum, st)
}

const GROWS_PER_ROUND: usize = 25_000;
const GROW_RING: usize = 2_048;

/// The realloc-heavy workload's thread: see the module docs.
fn grow_worker(t: u64, rounds: usize) -> (u64, ThreadState) {
    let mut rng = Rng(0x6E0E_0000_0000_0000 ^ (t + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut st = ThreadState { lines: vec![String::new(); GROW_RING], ..ThreadState::default() };
    let mut vecs: Vec<Vec<u32>> = (0..GROW_RING).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for _ in 0..rounds {
        for i in 0..GROWS_PER_ROUND {
            let mut s = String::new();
            for _ in 0..1 + rng.below(24) {
                s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                s.push(' ');
            }
            if i % 3 == 0 {
                s.shrink_to_fit();
            }
            let mut v: Vec<u32> = Vec::new();
            for j in 0..rng.below(160) as u32 {
                v.push(j ^ i as u32);
            }
            sum = mix(sum, fnv(s.as_bytes()) ^ v.len() as u64);
            let slot = rng.below(GROW_RING as u64) as usize;
            let old = std::mem::replace(&mut st.lines[slot], black_box(s));
            sum = mix(sum, old.len() as u64);
            let old = std::mem::replace(&mut vecs[(slot * 7) % GROW_RING], black_box(v));
            sum = mix(sum, old.last().copied().unwrap_or(0) as u64);
        }
    }
    st.map = vecs.into_iter().enumerate().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k as u32, v)).collect();
    (sum, st)
}

fn strings(rng: &mut Rng, st: &mut ThreadState, t: u64, r: usize) -> u64 {
    let mut lines = Vec::new();
    let mut sum = 0u64;
    for i in 0..STRINGS_PER_ROUND {
        let mut s = String::new();
        let _ = write!(s, "t{t}-r{r}-i{i}:");
        for _ in 0..1 + rng.below(6) {
            s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            s.push(' ');
        }
        if rng.below(4) == 0 {
            s = s.to_uppercase();
        }
        sum = sum.wrapping_add(fnv(s.as_bytes()));
        lines.push(s);
    }
    let joined = lines[..64].join(",");
    sum = mix(sum, joined.len() as u64);
    // The previous round's lines are freed here, this round's kept.
    st.lines = black_box(lines);
    sum
}

fn map_ops(rng: &mut Rng, st: &mut ThreadState) -> u64 {
    let mut sum = 0u64;
    for _ in 0..MAP_OPS_PER_ROUND {
        let key = rng.below(MAP_KEYS) as u32;
        // Reads between the writes, as a program's lookups would.
        for (k, v) in st.map.range(key..).take(LOOKUPS) {
            sum = sum.wrapping_add(*k as u64 ^ v[v.len() - 1] as u64);
        }
        match rng.below(8) {
            0..=1 => {
                if let Some(v) = st.map.remove(&key) {
                    sum = sum.wrapping_add(v.len() as u64);
                }
            }
            2 => {
                if let Some(v) = st.map.get(&key) {
                    sum = sum.wrapping_add(v.iter().map(|&x| x as u64).sum::<u64>());
                }
            }
            _ => {
                let n = 1 + rng.below(12) as u32;
                let mut v = Vec::new();
                for j in 0..n {
                    v.push(key ^ j);
                }
                if let Some(old) = st.map.insert(key, v) {
                    sum = sum.wrapping_add(old[0] as u64);
                }
            }
        }
    }
    mix(sum, st.map.len() as u64)
}

fn churn(rng: &mut Rng, st: &mut ThreadState) -> u64 {
    let mut sum = 0u64;
    for i in 0..CHURN_PER_ROUND {
        let slot = rng.below(RING_SLOTS as u64) as usize;
        let size = rng.block_size();
        let mut v = vec![i as u8; size];
        v[size - 1] = rng.next() as u8;
        // Read back what a slot held before, as a consumer would.
        sum = sum.wrapping_add(fnv(&st.ring[(slot + 1) % RING_SLOTS]));
        let old = std::mem::replace(&mut st.ring[slot], v);
        if let Some(&b) = old.last() {
            sum = sum.wrapping_add(b as u64 + old.len() as u64);
        }
        if i % 4 == 0 {
            let b = black_box(Box::new(i as u64));
            sum = sum.wrapping_add(*b);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_per_thread() {
        let p1 = Params { threads: 1, scale: 0.01, workload: Workload::Mixed };
        let a = run(&p1);
        let b = run(&p1);
        assert_eq!(a.checksum, b.checksum);
        assert!(a.retained.blocks() > RING_SLOTS / 2);
        // Thread 1's work differs from thread 0's, and the sum combines them.
        let two = run(&Params { threads: 2, scale: 0.01, workload: Workload::Mixed });
        assert_ne!(two.checksum, a.checksum);
        assert_ne!(two.checksum, a.checksum.wrapping_mul(2));
    }

    #[test]
    fn realloc_workload_is_deterministic() {
        let p = Params { threads: 2, scale: 0.01, workload: Workload::Realloc };
        assert_eq!(run(&p).checksum, run(&p).checksum);
    }

    #[test]
    fn rounds_scale() {
        assert_eq!(rounds(1.0), BASE_ROUNDS);
        assert_eq!(rounds(0.0001), 1);
        assert_eq!(rounds(2.0), 2 * BASE_ROUNDS);
    }
}
