//! SIGTERM, SIGINT and SIGUSR2 under a monitor: each leaves a report naming
//! the leak, written on the monitor's thread, and the child then ends as
//! its own handling says: killed by SIGTERM or SIGINT (the default action),
//! going on after SIGUSR2 (the on-demand report), or going on after SIGTERM
//! when it installed its own handler first.

#[path = "monitor_support/child.rs"]
mod child;
mod common;
mod monitor_support;

use child::{kill, leaking_monitor, names_the_leak, reports, run_child, scenario, Ended};
use leaktrace::ReportReason;
use monitor_support::scratch_dir;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const DEADLINE: Duration = Duration::from_secs(60);

/// In the child: the scenario named by the parent.
fn child_body(name: &str) {
    match name {
        "default" => {
            let _monitor = leaking_monitor(|b| b);
            // The parent's signal ends this process.
            std::thread::sleep(Duration::from_secs(30));
            std::process::exit(99);
        }
        "own-handler" => {
            // The program's own SIGTERM handling, installed first: a flag
            // its main loop checks, then a clean exit 0.
            let term = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(libc::SIGTERM, term.clone()).unwrap();
            let monitor = leaking_monitor(|b| b);
            let start = Instant::now();
            while !term.load(Relaxed) {
                assert!(start.elapsed() < Duration::from_secs(30), "no SIGTERM");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Give the monitor's report the time the program's shutdown
            // would take anyway.
            let dir = child::child_dir();
            let t = Instant::now();
            while reports(&dir, ReportReason::Sigterm).is_empty() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
            println!("child: graceful shutdown");
            drop(monitor);
            std::process::exit(0);
        }
        "sigusr2" => {
            let monitor = leaking_monitor(|b| b.report_on_sigusr2(true).final_report(false));
            let dir = child::child_dir();
            let t = Instant::now();
            while reports(&dir, ReportReason::Signal(libc::SIGUSR2)).len() < 2 {
                assert!(t.elapsed() < Duration::from_secs(30), "no two sigusr2 reports");
                std::thread::sleep(Duration::from_millis(10));
            }
            // Goes on: leaking, monitoring, then a normal exit.
            std::thread::sleep(Duration::from_millis(300));
            assert!(monitor.stats().ticks > 12);
            println!("child: still running after SIGUSR2");
            drop(monitor);
        }
        "ignored" => {
            // Final reports on: SIGINT would be one of the monitor's signals.
            let monitor = leaking_monitor(|b| b);
            // The parent sends SIGINT once this is ready; give it time to land.
            std::thread::sleep(Duration::from_millis(800));
            println!("child: SIGINT ignored");
            drop(monitor);
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// The disposition the child starts with for `signals`.
fn dispositions(cmd: &mut std::process::Command, handler: libc::sighandler_t, signals: &[i32]) {
    use std::os::unix::process::CommandExt;
    let signals = signals.to_vec();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls `signal`, which is async-signal-safe, allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &sig in &signals {
                libc::signal(sig, handler);
            }
            Ok(())
        });
    }
}

fn signalled(test: &str, scenario_name: &str, tag: &str, signals: &[i32]) -> (std::path::PathBuf, Ended) {
    signalled_with(test, scenario_name, tag, signals, libc::SIG_DFL)
}

/// Runs the child with `signals` at `disposition` to begin with (a test
/// run started in the background by a non-interactive shell inherits
/// SIGINT ignored: the default is set back, as a service starts with it),
/// then sends them one by one once it is ready.
fn signalled_with(
    test: &str,
    scenario_name: &str,
    tag: &str,
    signals: &[i32],
    disposition: libc::sighandler_t,
) -> (std::path::PathBuf, Ended) {
    let _serial = child::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir(tag);
    let signals = signals.to_vec();
    let ended = run_child(
        test,
        scenario_name,
        &dir,
        DEADLINE,
        |cmd| dispositions(cmd, disposition, &signals),
        |pid| {
            for (i, &sig) in signals.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(400));
                }
                kill(pid, sig);
            }
        },
    );
    (dir, ended)
}

fn final_report_on(test: &str, sig: i32, reason: ReportReason) {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let (dir, ended) = signalled(test, "default", &reason.name(), &[sig]);
    assert_eq!(ended.signal(), Some(sig), "killed by the signal it got: {}", ended.status);
    let finals = reports(&dir, reason);
    assert_eq!(finals.len(), 1, "one {reason} report: {:?}", finals.iter().map(|r| &r.0).collect::<Vec<_>>());
    names_the_leak(&finals[0].0, &finals[0].1);
    assert!(reports(&dir, ReportReason::Exit).is_empty(), "no exit report after a signal");
    let logged = ended.lines(&format!("leaktrace: {reason} report"));
    assert_eq!(logged.len(), 1, "logged once: {logged:?}");
    assert!(logged[0].contains(&finals[0].0.display().to_string()), "{}", logged[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_leaves_a_final_report_then_kills() {
    final_report_on("sigterm_leaves_a_final_report_then_kills", libc::SIGTERM, ReportReason::Sigterm);
}

#[test]
fn sigint_leaves_a_final_report_then_kills() {
    final_report_on("sigint_leaves_a_final_report_then_kills", libc::SIGINT, ReportReason::Sigint);
}

#[test]
fn an_ignored_sigint_stays_ignored() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    // As under `nohup` or `cmd &`: the monitor leaves the signal alone.
    let (dir, ended) =
        signalled_with("an_ignored_sigint_stays_ignored", "ignored", "ignored", &[libc::SIGINT], libc::SIG_IGN);
    assert_eq!(ended.code(), Some(0), "not killed by the ignored SIGINT: {}", ended.status);
    assert_eq!(ended.lines("child: SIGINT ignored").len(), 1);
    assert!(reports(&dir, ReportReason::Sigint).is_empty(), "no sigint report");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_with_the_programs_own_handler_goes_on_to_its_exit() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let (dir, ended) =
        signalled("sigterm_with_the_programs_own_handler_goes_on_to_its_exit", "own-handler", "own", &[libc::SIGTERM]);
    assert_eq!(ended.code(), Some(0), "the program's own handling: {}", ended.status);
    assert_eq!(ended.lines("child: graceful shutdown").len(), 1);
    let finals = reports(&dir, ReportReason::Sigterm);
    assert_eq!(finals.len(), 1);
    names_the_leak(&finals[0].0, &finals[0].1);
    // One final report: the drop after it writes none.
    assert!(reports(&dir, ReportReason::Exit).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigusr2_reports_on_demand_and_the_program_goes_on() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let (dir, ended) = signalled(
        "sigusr2_reports_on_demand_and_the_program_goes_on",
        "sigusr2",
        "usr2",
        &[libc::SIGUSR2, libc::SIGUSR2],
    );
    assert_eq!(ended.code(), Some(0), "{}", ended.status);
    assert_eq!(ended.lines("child: still running after SIGUSR2").len(), 1);
    let on_demand = reports(&dir, ReportReason::Signal(libc::SIGUSR2));
    assert_eq!(on_demand.len(), 2, "one report per signal");
    for (path, report) in &on_demand {
        assert!(path.file_name().unwrap().to_string_lossy().starts_with("sigusr2-"), "{}", path.display());
        names_the_leak(path, report);
    }
    assert!(std::fs::read_to_string(&on_demand[0].0).unwrap().contains("\"reason\": \"sigusr2\""));
    assert_eq!(ended.lines("leaktrace: sigusr2 report").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
