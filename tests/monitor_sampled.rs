//! Sampled mode (512 KiB mean, the production mode), the monitor at 100 ms:
//! the `monitor_load.rs` workload under several fixed seeds. The leak
//! (~2 MiB/s in 64 KiB blocks, one sampled block every ~3 ticks) is named
//! within 50 ticks (5 s) of its start, the load cleared if it was
//! reported, nothing else found; and a churn-only run finds nothing.

mod common;
mod monitor_support;
#[path = "monitor_support/scenario.rs"]
mod scenario;

use leaktrace::{Config, Mode};
use monitor_support::{json_files, run_in_child, scratch_dir};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SEEDS: [u64; 3] = [7, 42, 2024];

fn sampled(seed: u64) -> Config {
    Config::default().mode(Mode::Sampled { mean_bytes: 512 * 1024 }).sample_seed(seed)
}

#[test]
fn sampled_mode_names_the_leak_and_clears_the_load() {
    run_in_child("sampled_mode_names_the_leak_and_clears_the_load", Duration::from_secs(240), body);
}

fn body() {
    // Churn only: nothing found, nothing written.
    leaktrace::start(sampled(SEEDS[0]));
    let dir = scratch_dir("sampled-churn");
    let o = scenario::run(&dir, false, 45);
    assert!(o.seen.is_empty(), "{o:#?}");
    assert_eq!(json_files(&dir), Vec::<std::path::PathBuf>::new());
    let _ = std::fs::remove_dir_all(&dir);

    let mut took = Vec::new();
    for seed in SEEDS {
        leaktrace::start(sampled(seed));
        let dir = scratch_dir(&format!("sampled-{seed}"));
        let o = scenario::run(&dir, true, scenario::LEAK_START + 70);
        took.push((seed, scenario::check(&o, 50, true)));
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("sampled: leak named after (seed, ticks) {took:?}");
}
