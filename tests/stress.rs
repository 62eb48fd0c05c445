//! Stress: 8 threads allocating, reallocating and freeing at random sizes
//! while another thread takes snapshots in a loop. At the end the sum over
//! sites equals `traced_memory().current`.
//!
//! A deadlock would hang, so the test runs itself as a child process under
//! a timeout (`harness = false`): the parent fails if the child does not
//! finish in time, instead of hanging CI.

mod common;

use leaktrace::{Config, GroupBy};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const CHILD_ENV: &str = "LEAKTRACE_STRESS_CHILD";
const TIMEOUT: Duration = Duration::from_secs(240);

fn main() -> ExitCode {
    common::run_as_child("stress", CHILD_ENV, TIMEOUT, child)
}

/// xorshift: no allocation, no shared state.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn child() {
    leaktrace::start(Config::default());
    let stop = Arc::new(AtomicBool::new(false));
    let snapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let s = leaktrace::take_snapshot("during");
                let _ = s.statistics(GroupBy::Line);
                n += 1;
            }
            n
        })
    };
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                let mut live: Vec<Vec<u8>> = Vec::with_capacity(256);
                for _ in 0..20_000 {
                    let r = next(&mut rng);
                    match r % 4 {
                        0 | 1 => live.push(vec![0u8; (r >> 8) as usize % 5000]),
                        2 if !live.is_empty() => {
                            let i = (r >> 16) as usize % live.len();
                            let extra = (r >> 32) as usize % 3000;
                            live[i].extend(std::iter::repeat_n(1u8, extra));
                        }
                        _ if !live.is_empty() => {
                            let i = (r >> 16) as usize % live.len();
                            live.swap_remove(i);
                        }
                        _ => {}
                    }
                }
                // Keep some alive past the thread's exit.
                live.truncate(20);
                live
            })
        })
        .collect();
    let kept: Vec<Vec<Vec<u8>>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let snapshots = snapper.join().unwrap();
    assert!(snapshots > 0, "the snapshot thread ran");

    let snap = leaktrace::take_snapshot("end");
    let sum: u64 = snap.traces.iter().map(|t| t.size).sum();
    let current = leaktrace::traced_memory().current as u64;
    assert_eq!(sum, current, "sum over sites equals traced current");
    assert_eq!(snap.totals.untracked_blocks, 0);
    let kept_bytes: u64 = kept.iter().flatten().map(|v| v.capacity() as u64).sum();
    assert!(current >= kept_bytes, "{current} < {kept_bytes}");
    let stats = snap.statistics(GroupBy::Line);
    assert!(stats.iter().all(|s| s.size < 1 << 40 && s.count < 1 << 40), "no site went negative");
    drop(kept);
    let end = leaktrace::take_snapshot("freed");
    assert_eq!(end.traces.iter().map(|t| t.size).sum::<u64>(), leaktrace::traced_memory().current as u64);
    println!("stress child: {snapshots} snapshots taken during the run");
}
