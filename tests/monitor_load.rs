//! Exact mode, the monitor at 100 ms: a one-time load that grows for longer
//! than the minimum window and then stops, beside churn and a real leak
//! (~2 MiB/s in 64 KiB blocks) that starts later. The load, if reported, is
//! reported only while it grows and is cleared within one window after it
//! stops; the leak is named within 25 ticks (2.5 s) of its start; nothing
//! else is found. Phases and bounds are in ticks, not wall time.

mod common;
mod monitor_support;
#[path = "monitor_support/scenario.rs"]
mod scenario;

use monitor_support::{run_in_child, scratch_dir};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

#[test]
fn a_finished_load_is_cleared_and_the_leak_named() {
    run_in_child("a_finished_load_is_cleared_and_the_leak_named", Duration::from_secs(120), body);
}

fn body() {
    let dir = scratch_dir("load");
    let o = scenario::run(&dir, true, scenario::LEAK_START + 60);
    let took = scenario::check(&o, 25, false);
    eprintln!("exact: leak named after {took} ticks ({:.1} s at 100 ms)", took as f64 * 0.1);
    let _ = std::fs::remove_dir_all(&dir);
}
