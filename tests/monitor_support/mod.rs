//! Helpers for the monitor, task and check tests: run a test body in a
//! child process under a deadline, capture `log` warnings, scratch dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "LEAKTRACE_TEST_CHILD";

/// Runs `body` in a child process (this test binary, re-executed on the
/// test `name` alone) and fails if it fails or runs past `timeout`, in
/// which case it is killed: a monitor that never stops must not hang the
/// suite. In the child, runs `body` itself.
pub fn run_in_child(name: &str, timeout: Duration, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    let out = scratch_dir(&format!("{name}-output")).join("output.txt");
    let file = std::fs::File::create(&out).expect("output file");
    let exe = std::env::current_exe().expect("test binary");
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .spawn()
        .expect("spawn the child test");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("--- child output ({:.2} s) ---\n{output}--- end ---", started.elapsed().as_secs_f64());
    match status {
        None => panic!("{name}: no result within {timeout:?}; killed"),
        Some(s) if !s.success() || !output.contains("test result: ok. 1 passed") => {
            panic!("{name}: child failed ({s})")
        }
        Some(_) => {}
    }
}

/// A fresh, empty directory for this process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leaktrace-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The `.json` files in `dir`, sorted by name (the monitor names reports
/// by time and sequence number).
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Warnings and errors logged so far, each also echoed to stderr.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{}: {}", record.level(), record.args());
            eprintln!("[log] {line}");
            LOGGED.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per process).
pub fn capture_log() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// The messages logged so far that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    LOGGED.lock().unwrap().iter().filter(|m| m.contains(needle)).cloned().collect()
}

/// Polls `f` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A thread calling a function again and again, a pause between calls,
/// until [`Repeating::stop`]: a leak or churn for a monitor to watch.
pub struct Repeating {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Calls `f` every `pause` on a new thread.
pub fn repeat(pause: Duration, mut f: impl FnMut() + Send + 'static) -> Repeating {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Relaxed) {
                f();
                std::thread::sleep(pause);
            }
        }
    });
    Repeating { stop, thread }
}

impl Repeating {
    /// Stops the calls and joins the thread.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}
