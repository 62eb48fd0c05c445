//! start, snapshots, clear_traces and stop under load: 8 threads allocating
//! while another thread loops through them in every mode. No site goes
//! negative, nothing panics or hangs, traced memory is back to 0 after a
//! stop, tracker memory stays bounded. Then, in sampled mode, clear_traces
//! in a loop under 8 threads: every block freed afterwards is gone from the
//! tables (before the fix, a block sampled into an already-cleared shard lost
//! its free-filter bit and stayed live forever).
//!
//! Runs itself as a child under a deadline (`harness = false`).

mod common;

use leaktrace::{Config, GroupBy, Mode};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

fn main() -> ExitCode {
    common::run_as_child("control_under_load", "LEAKTRACE_CONTROL_CHILD", Duration::from_secs(240), child)
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 8 threads churning until `stop`; each returns what it still holds.
fn workers(stop: &Arc<AtomicBool>, keep_all: bool) -> Vec<std::thread::JoinHandle<Vec<Vec<u8>>>> {
    (0..8u64)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = 0x2545_f491_4f6c_dd1d ^ (t + 1);
                let mut live: Vec<Vec<u8>> = Vec::with_capacity(4096);
                while !stop.load(Relaxed) {
                    let r = next(&mut rng);
                    if keep_all || r % 3 != 0 || live.is_empty() {
                        if live.len() < 4000 {
                            live.push(vec![1u8; 64 + (r >> 8) as usize % 4000]);
                        } else {
                            live.clear();
                        }
                    } else {
                        let i = (r >> 16) as usize % live.len();
                        live.swap_remove(i);
                    }
                }
                live
            })
        })
        .collect()
}

fn child() {
    let modes = [Mode::Full, Mode::Sampled { mean_bytes: 16 * 1024 }, Mode::Sampled { mean_bytes: 512 * 1024 }];
    // 1. The control calls in a loop under load, every mode.
    let stop = Arc::new(AtomicBool::new(false));
    let handles = workers(&stop, false);
    let mut max_tracker = 0;
    for round in 0..60 {
        let mode = modes[round % modes.len()];
        leaktrace::start(Config::default().mode(mode).sample_seed(round as u64));
        for _ in 0..3 {
            let snap = leaktrace::take_snapshot("under load");
            let stats = snap.statistics(GroupBy::Line);
            assert!(stats.iter().all(|s| s.size < 1 << 40 && s.count < 1 << 40), "a site went negative");
            max_tracker = max_tracker.max(leaktrace::tracker_memory());
            leaktrace::clear_traces();
        }
        leaktrace::stop();
        let after = leaktrace::traced_memory().current;
        assert_eq!(after, 0, "traced memory after stop in {mode:?}");
    }
    stop.store(true, Relaxed);
    drop(handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>());
    assert!(max_tracker < 256 << 20, "tracker memory {max_tracker}");

    // 2. Sampled mode: clear_traces in a loop while 8 threads allocate; then
    // every thread frees all it holds: nothing they allocated stays live.
    leaktrace::start(Config::default().mode(Mode::Sampled { mean_bytes: 4096 }).sample_seed(7));
    let stop = Arc::new(AtomicBool::new(false));
    let handles = workers(&stop, true);
    for _ in 0..400 {
        leaktrace::clear_traces();
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Relaxed);
    let held: Vec<Vec<Vec<u8>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(held.iter().map(Vec::len).sum::<usize>() > 0);
    drop(held);
    let snap = leaktrace::take_snapshot("all freed");
    let here: Vec<_> = snap
        .statistics(GroupBy::Line)
        .into_iter()
        .filter(|s| s.location.file.ends_with("control_under_load.rs") && s.size > 0)
        .collect();
    assert!(here.is_empty(), "blocks freed but still live in the tables: {here:#?}");
    println!("control_under_load child: done, tracker memory peaked at {max_tracker} B");
}
