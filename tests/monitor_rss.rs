//! Snapshots carry RSS and VMS; a low multiple forces the monitor's RSS
//! warning, once.

mod monitor_support;

use leaktrace::{Finding, Monitor};
use monitor_support::{capture_log, logged, run_in_child, scratch_dir, wait_for};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

#[test]
fn rss_warning_fires_once_past_the_multiple() {
    run_in_child("rss_warning_fires_once_past_the_multiple", Duration::from_secs(60), body);
}

fn body() {
    capture_log();
    let dir = scratch_dir("rss");
    let snap = leaktrace::take_snapshot("start");
    let pm = snap.process.clone().expect("snapshots carry process memory");
    assert!(pm.rss_bytes > 0 && pm.vms_bytes >= pm.rss_bytes, "{pm:?}");

    let findings: Arc<Mutex<Vec<Finding>>> = Arc::default();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(50))
        .report_dir(&dir)
        .rss_growth_warning(1.2)
        .on_finding({
            let findings = findings.clone();
            move |f| findings.lock().unwrap().push(f.clone())
        })
        .start();
    // The baseline is taken once the symbol tables are loaded.
    let baseline = wait_for(Duration::from_secs(10), || monitor.stats().baseline_rss_bytes).expect("baseline taken");
    assert!(logged("RSS").is_empty());

    // Touch enough pages to pass 1.2x the baseline for sure.
    let big = vec![1u8; (baseline as usize).max(64 << 20)];
    let rss = wait_for(Duration::from_secs(5), || {
        findings.lock().unwrap().iter().find_map(|f| match f {
            Finding::Rss(r) => Some(r.clone()),
            _ => None,
        })
    })
    .expect("an RSS finding");
    assert_eq!(rss.baseline_rss_bytes, baseline);
    assert!(rss.rss_bytes > rss.threshold_bytes, "{rss:?}");
    assert!(rss.rss_bytes as f64 > 1.2 * baseline as f64, "{rss:?}");
    assert!(rss.traced_bytes >= big.len() as u64, "{rss:?}");
    let warned = logged("leaktrace: RSS is ");
    assert!(warned[0].contains("baseline"), "{}", warned[0]);

    // Holding the memory does not repeat the warning. (A second one is
    // allowed while the pages were still being touched: it fires when RSS
    // passes the multiple of the RSS at the first.)
    let wait_ticks = |n: u64| {
        let ticks = monitor.stats().ticks;
        wait_for(Duration::from_secs(5), || (monitor.stats().ticks >= ticks + n).then_some(())).expect("more ticks");
    };
    wait_ticks(3);
    let settled = monitor.stats().rss_warnings;
    assert!((1..=2).contains(&settled), "{settled} warnings");
    wait_ticks(5);
    assert_eq!(monitor.stats().rss_warnings, settled);
    assert_eq!(logged("leaktrace: RSS is ").len() as u64, settled);
    drop(monitor);
    std::hint::black_box(&big);
    let _ = std::fs::remove_dir_all(&dir);
}
