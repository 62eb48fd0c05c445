//! A small tokio "service" with two leaks, watched by the monitor.
//!
//! ```text
//! cargo run --release --features tokio --example monitor_service -- 15
//! ```
//!
//! Requests arrive every 2 ms and are handled by tracked tasks. Healthy
//! behaviour: each request allocates and frees a 64 KiB response buffer
//! (churn), and a routing table is loaded once (a step). The bugs: the
//! session store never evicts (a steady leak, at `SessionStore::open`), and
//! one request in 20 spawns a watcher task that waits on a channel nobody
//! ever sends to (a task leak). The monitor names both, with file:line,
//! and writes its reports under `target/leaktrace-reports/`.

use leaktrace::{Monitor, MonitorReport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

/// Prints warnings to stderr, with the time since start.
struct StderrLog(Instant);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("[{:6.2}s {}] {}", self.0.elapsed().as_secs_f64(), r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

#[derive(Default)]
struct SessionStore {
    sessions: Mutex<HashMap<u64, Vec<u8>>>,
}

impl SessionStore {
    /// The bug: sessions are opened per request and never closed.
    fn open(&self, id: u64) {
        let state = vec![0u8; 2048]; // leaks: nothing ever removes it
        self.sessions.lock().unwrap().insert(id, state);
    }
}

fn load_routes() -> Vec<String> {
    (0..5000).map(|i| format!("/api/v1/resource/{i}")).collect()
}

async fn handle(id: u64, store: Arc<SessionStore>, routes: Arc<Vec<String>>) {
    let mut response = vec![0u8; 64 * 1024]; // churn: freed at the end
    let route = &routes[id as usize % routes.len()];
    response[..route.len()].copy_from_slice(route.as_bytes());
    store.open(id);
    if id % 20 == 0 {
        // The other bug: a watcher whose sender is kept, never used.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::mem::forget(tx);
        leaktrace::tokio::spawn(async move {
            let _ = rx.await;
        });
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    std::hint::black_box(&response);
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(15);
    static LOG: std::sync::OnceLock<StderrLog> = std::sync::OnceLock::new();
    let logger = LOG.get_or_init(|| StderrLog(Instant::now()));
    log::set_logger(logger).expect("logger");
    log::set_max_level(log::LevelFilter::Warn);

    let report_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/leaktrace-reports");
    let monitor = Monitor::builder()
        .interval(Duration::from_secs(1))
        .window(20)
        .min_window(5)
        .min_growth_bytes(256 * 1024)
        .report_dir(&report_dir)
        .rss_growth_warning(3.0)
        .live_tasks_warning(100)
        .start();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = Arc::new(SessionStore::default());
        let routes = Arc::new(load_routes());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut id = 0u64;
        while Instant::now() < deadline {
            id += 1;
            leaktrace::tokio::spawn(handle(id, store.clone(), routes.clone()));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        println!("served {id} requests");
    });

    let stats = monitor.stats();
    monitor.stop();
    println!(
        "monitor: {} snapshots, {} reports, {} leak findings, {} cleared, {} task warnings",
        stats.ticks, stats.reports_written, stats.leak_findings, stats.cleared_findings, stats.task_warnings
    );
    for t in leaktrace::live_tasks().iter().filter(|t| t.live > 0) {
        println!(
            "live tasks: {}:{} ({}): {} live, {} spawned",
            t.location.file, t.location.line, t.location.function, t.live, t.spawned
        );
    }
    if let Some(path) = stats.last_report {
        match MonitorReport::read_json(&path) {
            Ok(report) => {
                println!("latest report {}:", path.display());
                for s in report.diff.top(3) {
                    println!("  #{} {} {:+} B ({:+} blocks)", s.rank, s.location, s.size_diff, s.count_diff);
                }
            }
            Err(e) => eprintln!("{e}"),
        }
    }
}
