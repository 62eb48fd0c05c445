//! The program's normal end under a monitor leaves a final report naming
//! the leak: `std::process::exit(3)` (through the `atexit` hook, the
//! monitor never dropped), and dropping the monitor. The exit status is the
//! program's own.

#[path = "monitor_support/child.rs"]
mod child;
mod common;
mod monitor_support;

use child::{leaking_monitor, names_the_leak, reports, run_child, scenario};
use leaktrace::ReportReason;
use monitor_support::scratch_dir;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

fn child_body(name: &str) {
    let monitor = leaking_monitor(|b| b);
    match name {
        // The monitor is alive (as one kept in a static would be) when
        // the program exits.
        "exit" => std::process::exit(3),
        "drop" => {
            let t = Instant::now();
            drop(monitor);
            println!("child: drop took {:?}", t.elapsed());
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn exit_report(test: &str, scenario_name: &str) -> child::Ended {
    let _serial = child::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir(scenario_name);
    let ended = run_child(test, scenario_name, &dir, Duration::from_secs(60), |_| {}, |_| {});
    let finals = reports(&dir, ReportReason::Exit);
    assert_eq!(finals.len(), 1, "one exit report: {:?}", finals.iter().map(|r| &r.0).collect::<Vec<_>>());
    let (path, report) = &finals[0];
    assert!(path.file_name().unwrap().to_string_lossy().starts_with("exit-"), "{}", path.display());
    names_the_leak(path, report);
    // The window's first snapshot against one taken at the end.
    assert!(report.monitor.window_snapshots >= 12, "{}", report.monitor.window_snapshots);
    assert_eq!(ended.lines("leaktrace: exit report").len(), 1, "logged once");
    let _ = std::fs::remove_dir_all(&dir);
    ended
}

#[test]
fn process_exit_leaves_a_final_report_and_keeps_its_status() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let ended = exit_report("process_exit_leaves_a_final_report_and_keeps_its_status", "exit");
    assert_eq!(ended.code(), Some(3), "{}", ended.status);
}

#[test]
fn dropping_the_monitor_leaves_a_final_report() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let ended = exit_report("dropping_the_monitor_leaves_a_final_report", "drop");
    assert_eq!(ended.code(), Some(0), "{}", ended.status);
    assert_eq!(ended.lines("child: drop took").len(), 1);
}
