//! A report directory that cannot be written: the failure is logged once
//! (not at every report), the monitor goes on (stats count the failures),
//! and the program is unaffected: it keeps running and exits 0, its exit
//! report failing quietly too.

#[path = "monitor_support/child.rs"]
mod child;
mod common;
mod monitor_support;

use child::{kill, leaking_monitor, run_child, scenario};
use monitor_support::scratch_dir;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

/// A directory reports cannot go to: read-only for a non-root user; for
/// root (whom permissions do not stop), one under a regular file.
fn unwritable(base: &std::path::Path) -> (PathBuf, &'static str) {
    let ro = base.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
    std::fs::set_permissions(&ro, perm).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_err() {
        return (ro.join("reports"), "a read-only directory");
    }
    let _ = std::fs::remove_file(ro.join("probe"));
    let file = base.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    (file.join("reports"), "a path under a regular file (running as root: permissions do not stop it)")
}

#[test]
fn an_unwritable_report_dir_is_logged_once_and_the_program_goes_on() {
    if scenario().is_some() {
        let monitor = leaking_monitor(|b| b.report_on_sigusr2(true));
        // Leak reports (first, then re-reports as the leak doubles) and
        // two on-demand ones all fail.
        let t = Instant::now();
        while monitor.stats().report_errors < 5 {
            assert!(t.elapsed() < Duration::from_secs(30), "{:?}", monitor.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = monitor.stats();
        println!("child: going on; {} failed reports, {} written", stats.report_errors, stats.reports_written);
        assert_eq!(stats.reports_written, 0);
        std::thread::sleep(Duration::from_millis(200));
        drop(monitor);
        println!("child: done");
        return;
    }
    let base = scratch_dir("unwritable");
    let (dir, what) = unwritable(&base);
    eprintln!("reports go to {}: {what}", dir.display());
    let ended = run_child(
        "an_unwritable_report_dir_is_logged_once_and_the_program_goes_on",
        "unwritable",
        &dir,
        Duration::from_secs(60),
        |_| {},
        |pid| {
            kill(pid, libc::SIGUSR2);
            std::thread::sleep(Duration::from_millis(200));
            kill(pid, libc::SIGUSR2);
        },
    );
    assert_eq!(ended.code(), Some(0), "{}", ended.status);
    assert_eq!(ended.lines("child: done").len(), 1);
    let errors = ended.lines("cannot write the");
    assert_eq!(errors.len(), 1, "logged once: {errors:?}");
    assert!(errors[0].contains(&dir.display().to_string()), "names the path: {}", errors[0]);
    // The findings themselves are still logged, saying no report was written.
    assert!(!ended.lines("no report written").is_empty());
    let _ = std::fs::remove_dir_all(&base);
}
