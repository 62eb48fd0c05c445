//! Dropping or stopping a monitor wakes its thread: it returns at once,
//! not at the end of the (long) interval.

mod monitor_support;

use leaktrace::Monitor;
use monitor_support::{run_in_child, scratch_dir, wait_for};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const INTERVAL: Duration = Duration::from_secs(5);

#[test]
fn drop_and_stop_return_within_one_interval() {
    run_in_child("drop_and_stop_return_within_one_interval", Duration::from_secs(30), body);
}

fn body() {
    let dir = scratch_dir("stop");
    for how in ["drop", "stop"] {
        let monitor = Monitor::builder().interval(INTERVAL).report_dir(&dir).start();
        // The first snapshot is taken at once; then the thread sleeps.
        wait_for(Duration::from_secs(5), || (monitor.stats().ticks >= 1).then_some(())).expect("a first snapshot");
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        match how {
            "drop" => drop(monitor),
            _ => monitor.stop(),
        }
        let took = t.elapsed();
        eprintln!("{how} took {took:?}");
        assert!(took < Duration::from_millis(250), "{how} took {took:?}");
    }
    // A monitor dropped at once, before its first sleep, stops as promptly.
    let t = Instant::now();
    drop(Monitor::builder().interval(INTERVAL).report_dir(&dir).start());
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
