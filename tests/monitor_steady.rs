//! A steady leak under the monitor at a 100 ms interval: a report naming
//! the leaking line first within 2.5 s, one warning (not one per interval),
//! and dropping the monitor returns within one interval.

mod common;
mod monitor_support;

use common::{is_file, marker_line};
use leaktrace::{Finding, Monitor, MonitorReport, SnapshotDiff, Verdict};
use monitor_support::{capture_log, json_files, logged, repeat, run_in_child, scratch_dir, wait_for};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("monitor_steady.rs");
const INTERVAL: Duration = Duration::from_millis(100);

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn leak_one() {
    let block = vec![7u8; 4096]; // MARK: leak
    LEAKED.lock().unwrap().push(block);
}

#[test]
fn steady_leak_is_reported_once_with_its_line_first() {
    run_in_child("steady_leak_is_reported_once_with_its_line_first", Duration::from_secs(60), body);
}

fn body() {
    capture_log();
    LEAKED.lock().unwrap().reserve(1024);
    let line = marker_line(SRC, "MARK: leak");
    let site = format!("monitor_steady.rs:{line}");
    let dir = scratch_dir("steady");
    let (tx, rx) = mpsc::channel::<Finding>();
    let started = Instant::now();
    let monitor = Monitor::builder()
        .interval(INTERVAL)
        .report_dir(&dir)
        .min_growth_bytes(64 * 1024)
        .rss_growth_warning(0.0)
        .on_finding(move |f| {
            let _ = tx.send(f.clone());
        })
        .start();

    // 4 KiB every 10 ms: about 400 KiB a second, in every interval.
    let leaker = repeat(Duration::from_millis(10), leak_one);

    let report_path =
        wait_for(Duration::from_millis(2500).saturating_sub(started.elapsed()), || json_files(&dir).into_iter().next())
            .unwrap_or_else(|| panic!("no report within 2.5 s; stats {:?}", monitor.stats()));
    let found_after = started.elapsed();
    eprintln!("report after {found_after:?}: {}", report_path.display());
    assert!(found_after <= Duration::from_millis(2500));

    // The report: a valid leaktrace.diff.v1, the leaking line ranked first.
    let text = std::fs::read_to_string(&report_path).unwrap();
    assert!(text.contains("\"format\": \"leaktrace.diff.v1\""), "{text:.200}");
    let report = MonitorReport::read_json(&report_path).unwrap();
    let top = &report.diff.sites[0];
    assert_eq!(top.rank, 1);
    assert!(is_file(&top.location.file, "monitor_steady.rs"), "top {:?}", top.location);
    assert_eq!(top.location.line, line, "top {:?}", top.location);
    assert!(top.size_diff > 64 * 1024, "{top:?}");
    assert!(top.location.function.contains("leak_one"), "{:?}", top.location);
    let suspect = &report.monitor.suspects[0];
    assert_eq!((suspect.location.line, suspect.rank), (line, 1));
    assert_eq!(suspect.verdict, Verdict::Steady);
    assert!(suspect.fresh);
    assert!(suspect.grew_fraction >= 0.5 && suspect.slope_bytes_per_sec > 100_000.0, "{suspect:?}");
    assert!(report.monitor.window_snapshots >= 10);
    assert_eq!(report.monitor.samples.len(), report.monitor.window_snapshots);
    assert!(report.monitor.samples.iter().all(|s| s.rss_bytes.is_some()));
    let plain = SnapshotDiff::read_json(&report_path).unwrap();
    assert_eq!(plain.sites[0].location, top.location);

    // The warning names the site and the report.
    let warned = wait_for(Duration::from_secs(1), || {
        let w = logged(&site);
        (!w.is_empty()).then_some(w)
    })
    .expect("a warning naming the site");
    assert!(warned[0].starts_with("WARN: leaktrace: steady growth at "), "{}", warned[0]);
    assert!(warned[0].contains("leak_one"), "{}", warned[0]);
    assert!(warned[0].contains("/min"), "{}", warned[0]);
    assert!(warned[0].contains(&report_path.display().to_string()), "{}", warned[0]);
    match rx.recv_timeout(Duration::from_secs(1)).expect("a finding") {
        Finding::Leak(l) => {
            assert_eq!(l.suspect.location.line, line);
            assert_eq!(l.report.as_deref(), Some(report_path.as_path()));
            assert!(!l.repeat);
        }
        other => panic!("unexpected finding {other:?}"),
    }

    // Keep leaking to 2.5 s: the site is not reported at every interval.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let stats = monitor.stats();
    let warnings = logged(&site).len() as u64;
    eprintln!("{stats:?}; {warnings} warnings");
    assert!(stats.ticks >= 12, "{stats:?}");
    assert!((1..=2).contains(&warnings), "{warnings} warnings in {} ticks", stats.ticks);
    assert_eq!(stats.reports_written as usize, json_files(&dir).len());
    assert!(stats.reports_written <= 2, "{stats:?}");

    // Dropping the monitor returns within one interval.
    let t = Instant::now();
    drop(monitor);
    let took = t.elapsed();
    eprintln!("drop took {took:?}");
    assert!(took < INTERVAL, "drop took {took:?}");

    leaker.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
