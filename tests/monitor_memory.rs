//! The monitor's own memory is flat with uptime: over 1,000 intervals the
//! tracker's tables and the window stay the same size.

mod monitor_support;

use leaktrace::Monitor;
use monitor_support::{run_in_child, scratch_dir, wait_for};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

#[test]
fn monitor_memory_is_flat_over_a_thousand_intervals() {
    run_in_child("monitor_memory_is_flat_over_a_thousand_intervals", Duration::from_secs(120), body);
}

fn body() {
    let dir = scratch_dir("memory");
    // Some live, unchanging memory for the window to follow.
    let kept: Vec<Vec<u8>> = (0..200).map(|i| vec![i as u8; 100 + i]).collect();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(1))
        .window(30)
        .report_dir(&dir)
        .rss_growth_warning(0.0)
        .start();
    let at = |ticks: u64| {
        wait_for(Duration::from_secs(60), || {
            let s = monitor.stats();
            (s.ticks >= ticks).then_some(s)
        })
        .unwrap_or_else(|| panic!("{ticks} ticks not reached: {:?}", monitor.stats()))
    };
    let early = at(100);
    let tracker_early = leaktrace::tracker_memory();
    let rss_early = leaktrace::process_memory().map(|p| p.rss_bytes);
    let late = at(early.ticks + 1000);
    let tracker_late = leaktrace::tracker_memory();
    let rss_late = leaktrace::process_memory().map(|p| p.rss_bytes);
    drop(monitor);
    eprintln!("early {early:?}\nlate {late:?}");
    eprintln!("tracker {tracker_early} -> {tracker_late}; rss {rss_early:?} -> {rss_late:?}");
    assert_eq!((early.window_snapshots, late.window_snapshots), (30, 30));
    assert!(
        late.window_bytes <= early.window_bytes + early.window_bytes / 10,
        "window grew: {} -> {}",
        early.window_bytes,
        late.window_bytes
    );
    assert!(tracker_late <= tracker_early + 64 * 1024, "tracker memory grew: {tracker_early} -> {tracker_late}");
    assert_eq!(late.remembered_sites, 0);
    assert_eq!(late.reports_written, 0);
    drop(kept);
    let _ = std::fs::remove_dir_all(&dir);
}
