//! For the exit, signal and pre-OOM tests: a child process (this test
//! binary, re-run on one test) that leaks steadily under a monitor, and the
//! parent's side: start it, act once it is ready, wait for it under a
//! deadline, read its reports.
//!
//! Included by path (`#[path = "monitor_support/child.rs"] mod child;`)
//! next to `mod monitor_support;`.
#![allow(dead_code)]

use leaktrace::{MonitorReport, ReportReason};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SRC: &str = include_str!("child.rs");
/// Set in the child: the scenario to run.
pub const SCENARIO_ENV: &str = "LEAKTRACE_EXIT_SCENARIO";
/// Set in the child: where its monitor writes.
pub const DIR_ENV: &str = "LEAKTRACE_EXIT_DIR";
/// Printed by the child once its monitor has judged the leak for a while.
pub const READY: &str = "LEAKTRACE-CHILD-READY";
pub const INTERVAL: Duration = Duration::from_millis(50);

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);
/// Children of one test binary run one at a time: they time leaks.
pub static SERIAL: Mutex<()> = Mutex::new(());

#[inline(never)]
pub fn leak_one(bytes: usize) {
    let block = vec![5u8; bytes]; // MARK: child leak
    LEAKED.lock().unwrap().push(block);
}

/// The line of the leak, for the reports' sites.
pub fn leak_line() -> u32 {
    crate::common::marker_line(SRC, concat!("MARK", ": child leak"))
}

/// Frees what was leaked (and gives it back to the OS).
pub fn free_leaked() {
    LEAKED.lock().unwrap().clear();
    LEAKED.lock().unwrap().shrink_to_fit();
    // SAFETY: malloc_trim only returns free memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// In the child: the scenario asked for, if this process is a child.
pub fn scenario() -> Option<String> {
    std::env::var(SCENARIO_ENV).ok()
}

/// In the child: its report directory.
pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_ENV).expect("report dir"))
}

/// In the child: a thread leaking `bytes` every `every`, until [`stop_leaking`].
pub fn start_leaking(bytes: usize, every: Duration) -> std::thread::JoinHandle<()> {
    LEAKED.lock().unwrap().reserve(1 << 16);
    std::thread::spawn(move || {
        while !STOP.load(Relaxed) {
            leak_one(bytes);
            std::thread::sleep(every);
        }
    })
}

pub fn stop_leaking() {
    STOP.store(true, Relaxed);
}

/// In the child: waits until `monitor` has taken `ticks` snapshots, then
/// tells the parent.
pub fn ready_after(monitor: &leaktrace::Monitor, ticks: u64) {
    let start = Instant::now();
    while monitor.stats().ticks < ticks {
        assert!(start.elapsed() < Duration::from_secs(30), "no {ticks} ticks: {:?}", monitor.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{READY}");
}

/// How the child ended, and what it printed.
pub struct Ended {
    pub status: ExitStatus,
    pub output: String,
    pub took: Duration,
}

impl Ended {
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Output lines containing `needle`.
    pub fn lines(&self, needle: &str) -> Vec<&str> {
        self.output.lines().filter(|l| l.contains(needle)).collect()
    }
}

/// Runs the test `test` of this binary as a child with `scenario`, its
/// reports going to `dir`; calls `on_ready(pid)` once it prints [`READY`];
/// kills it and fails past `timeout`. `setup` may change the command
/// (environment, limits).
pub fn run_child(
    test: &str,
    scenario: &str,
    dir: &Path,
    timeout: Duration,
    setup: impl FnOnce(&mut Command),
    on_ready: impl FnOnce(u32),
) -> Ended {
    let out = std::env::temp_dir().join(format!("leaktrace-child-{}-{scenario}.txt", std::process::id()));
    let file = std::fs::File::create(&out).expect("output file");
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO_ENV, scenario)
        .env(DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file);
    setup(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn the child");
    let mut on_ready = Some(on_ready);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if on_ready.is_some() && std::fs::read_to_string(&out).unwrap_or_default().contains(READY) {
            (on_ready.take().unwrap())(child.id());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&out).unwrap_or_default();
            panic!("{scenario}: no end within {timeout:?}; killed. Output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let took = started.elapsed();
    eprintln!("--- {scenario}: {status} after {:.2} s ---\n{output}--- end ---", took.as_secs_f64());
    Ended { status, output, took }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// The reports in `dir` written for `reason`.
pub fn reports(dir: &Path, reason: ReportReason) -> Vec<(PathBuf, MonitorReport)> {
    crate::monitor_support::json_files(dir)
        .into_iter()
        .filter_map(|p| MonitorReport::read_json(&p).ok().map(|r| (p, r)))
        .filter(|(_, r)| r.monitor.reason == reason)
        .collect()
}

/// Checks that `report` names the leak first: as the first suspect and as
/// the first site of its diff.
pub fn names_the_leak(path: &Path, report: &MonitorReport) {
    let line = leak_line();
    let suspect = report.monitor.suspects.first().unwrap_or_else(|| panic!("{}: no suspect", path.display()));
    assert!(crate::common::is_file(&suspect.location.file, "monitor_support/child.rs"), "{:?}", suspect.location);
    assert_eq!((suspect.location.line, suspect.rank), (line, 1), "{}: {:?}", path.display(), suspect.location);
    let top = &report.diff.sites[0];
    assert_eq!(top.location.line, line, "{}: top site {:?}", path.display(), top.location);
    assert!(top.size_diff > 0, "{top:?}");
    // The tracker's own frames are never a site (the monitor's thread
    // once showed `leaktrace::hot::stack::capture`, kept whole for libc's
    // unsymbolized thread start).
    for site in &report.diff.sites {
        let f = &site.location;
        let tracker = f.function.starts_with("leaktrace::") || f.function.starts_with("<leaktrace::");
        assert!(!(tracker && f.file.starts_with("src/")), "{}: tracker frame as a site: {f:?}", path.display());
    }
}

/// In the child: the monitor the scenarios share (50 ms interval, judged
/// from 5 snapshots), with `tweak` applied; the leak started; returns once
/// the leak has been watched for 12 ticks, having told the parent.
pub fn leaking_monitor(
    tweak: impl FnOnce(leaktrace::MonitorBuilder) -> leaktrace::MonitorBuilder,
) -> leaktrace::Monitor {
    crate::monitor_support::capture_log();
    let builder = leaktrace::Monitor::builder()
        .interval(INTERVAL)
        .min_window(5)
        .min_growth_bytes(64 * 1024)
        .rss_growth_warning(0.0)
        .report_dir(child_dir());
    let monitor = tweak(builder).start();
    start_leaking(16 * 1024, Duration::from_millis(5));
    ready_after(&monitor, 12);
    monitor
}
