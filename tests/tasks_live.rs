//! Live tasks by spawn site: 100 tokio tasks spawned at one line and never
//! finished are listed at that line with 100 live, carried by snapshots and
//! ranked by diffs, and named by the monitor's warning; once aborted and
//! awaited, 0 live.
#![cfg(feature = "tokio")]

mod common;
mod monitor_support;

use common::{is_file, marker_line};
use leaktrace::{Finding, GroupBy, Monitor, TaskStat};
use monitor_support::{capture_log, logged, run_in_child, scratch_dir, wait_for};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("tasks_live.rs");

fn site(stats: &[TaskStat], line: u32) -> Option<TaskStat> {
    stats.iter().find(|s| s.location.line == line && is_file(&s.location.file, "tasks_live.rs")).cloned()
}

#[inline(never)]
fn spawn_stuck() -> tokio::task::JoinHandle<()> {
    leaktrace::tokio::spawn(std::future::pending::<()>()) // MARK: spawn
}

#[test]
fn stuck_tasks_are_counted_at_their_spawn_line() {
    run_in_child("stuck_tasks_are_counted_at_their_spawn_line", Duration::from_secs(60), body);
}

fn body() {
    capture_log();
    let line = marker_line(SRC, "MARK: spawn");
    let dir = scratch_dir("tasks");
    let findings: Arc<Mutex<Vec<Finding>>> = Arc::default();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(50))
        .report_dir(&dir)
        .rss_growth_warning(0.0)
        .live_tasks_warning(50)
        .on_finding({
            let findings = findings.clone();
            move |f| findings.lock().unwrap().push(f.clone())
        })
        .start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();

    let before = leaktrace::take_snapshot("before");
    let handles: Vec<_> = rt.block_on(async { (0..100).map(|_| spawn_stuck()).collect() });

    // live_tasks(): 100 live at the spawn line, with the spawning function.
    let stat = site(&leaktrace::live_tasks(), line).expect("the spawn site is listed");
    assert_eq!((stat.live, stat.spawned), (100, 100), "{stat:?}");
    assert!(stat.location.function.contains("spawn_stuck"), "{stat:?}");
    assert_eq!(leaktrace::live_tasks()[0].location, stat.location, "most live first");

    // Snapshots carry the counts; diffs rank task growth.
    let after = leaktrace::take_snapshot("after");
    assert_eq!(site(&after.tasks, line).map(|s| s.live), Some(100));
    let diff = after.compare_to(&before, GroupBy::Line);
    let top = &diff.tasks[0];
    assert_eq!(top.location, stat.location);
    assert_eq!((top.live, top.live_diff), (100, 100));

    // The monitor warns, naming the line.
    let needle = format!("tasks_live.rs:{line}");
    let warned = wait_for(Duration::from_secs(5), || {
        let w = logged("live tasks");
        (!w.is_empty()).then_some(w)
    })
    .expect("a live-task warning");
    assert!(warned[0].contains("100 live tasks (warning above 50)"), "{}", warned[0]);
    assert!(warned[0].contains(&needle), "{}", warned[0]);
    assert!(warned[0].contains("100 live, 100 spawned"), "{}", warned[0]);
    let tasks = findings
        .lock()
        .unwrap()
        .iter()
        .find_map(|f| match f {
            Finding::Tasks(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a tasks finding");
    assert_eq!((tasks.live, tasks.threshold), (100, 50));
    assert_eq!(tasks.sites[0].location.line, line);

    // Aborted and awaited: 0 live.
    rt.block_on(async {
        for h in &handles {
            h.abort();
        }
        for h in handles {
            assert!(h.await.unwrap_err().is_cancelled());
        }
    });
    let stat = site(&leaktrace::live_tasks(), line).unwrap();
    assert_eq!((stat.live, stat.spawned), (0, 100), "{stat:?}");

    // A task tracked by hand, on a plain thread.
    let guard = leaktrace::track_task(); // MARK: by hand
    let by_hand = marker_line(SRC, "MARK: by hand");
    assert_eq!(site(&leaktrace::live_tasks(), by_hand).map(|s| s.live), Some(1));
    std::thread::spawn(move || drop(guard)).join().unwrap();
    assert_eq!(site(&leaktrace::live_tasks(), by_hand).map(|s| s.live), Some(0));

    // Under the threshold again: no new warning.
    let ticks = monitor.stats().ticks;
    wait_for(Duration::from_secs(5), || (monitor.stats().ticks >= ticks + 3).then_some(())).expect("more ticks");
    assert_eq!(monitor.stats().task_warnings, 1);
    drop(monitor);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
