//! The steady-leak test's monitor, on a program whose memory only churns:
//! a 256 KiB buffer allocated and freed every 10 ms, and a cache filled once
//! and then left alone. In 2.5 s, no report and no leak warning.

mod monitor_support;

use leaktrace::{Finding, Monitor};
use monitor_support::{capture_log, json_files, logged, run_in_child, scratch_dir};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

static CACHE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn churn_once() {
    let mut buf = vec![0u8; 256 * 1024];
    buf[4096] = 1;
    black_box(&buf);
}

#[inline(never)]
fn fill_cache() {
    let mut cache = CACHE.lock().unwrap();
    for i in 0..64 {
        cache.push(vec![i as u8; 32 * 1024]);
    }
}

#[test]
fn churn_and_a_filled_cache_give_no_report() {
    run_in_child("churn_and_a_filled_cache_give_no_report", Duration::from_secs(60), body);
}

fn body() {
    capture_log();
    let dir = scratch_dir("churn");
    let findings: Arc<Mutex<Vec<Finding>>> = Arc::default();
    let started = Instant::now();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(100))
        .report_dir(&dir)
        .min_growth_bytes(64 * 1024)
        .rss_growth_warning(0.0)
        .on_finding({
            let findings = findings.clone();
            move |f| findings.lock().unwrap().push(f.clone())
        })
        .start();

    let stop = Arc::new(AtomicBool::new(false));
    let churner = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut filled = false;
            while !stop.load(Ordering::Relaxed) {
                churn_once();
                if !filled && started.elapsed() > Duration::from_millis(300) {
                    fill_cache();
                    filled = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });

    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let stats = monitor.stats();
    drop(monitor);
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    eprintln!("{stats:?}");
    assert!(stats.ticks >= 12, "{stats:?}");
    assert!(stats.window_snapshots >= 12, "{stats:?}");
    assert_eq!(stats.leak_findings, 0, "{stats:?}");
    assert_eq!(json_files(&dir), Vec::<std::path::PathBuf>::new());
    assert!(findings.lock().unwrap().is_empty(), "{:?}", findings.lock().unwrap());
    assert!(logged("steady growth").is_empty(), "{:?}", logged(""));
    assert_eq!(CACHE.lock().unwrap().len(), 64);
    let _ = std::fs::remove_dir_all(&dir);
}
