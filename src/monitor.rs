//! The leak detector for running services: [`Monitor`].
//!
//! A thread of its own (no async runtime) wakes on a fixed-rate schedule,
//! takes a *raw* snapshot (live bytes and blocks per interned stack id, no
//! symbols), and keeps the last `window` of them. Each stack's live bytes
//! over the window form a series, judged by the rule `alloc-probe trend`
//! uses ([`analyze_series`]): a series that grew in most intervals with a
//! net gain that is most of what it gained is [`Verdict::Steady`]. Only the
//! stacks judged steady are symbolized, grouped by call site (file:line),
//! and judged again as a site; a site that is steady and grew by more than
//! the minimum is a finding. Symbols are read only for findings and their
//! reports, never to judge: the first symbolization of a large binary (a
//! second or more) does not delay a verdict. It is paid once, mostly ahead,
//! by a short-lived thread started with the monitor; a tick that writes a
//! report may still overrun its slot, which the schedule then skips.
//!
//! A finding writes one report into the report directory (atomically): a
//! `leaktrace.diff.v1` diff from the window's first snapshot to the latest,
//! the suspect sites ranked first, plus a `monitor` section with the trend
//! figures and the process's memory over the window. It logs one warning
//! through `log` naming the site, its growth rate and the report. The same
//! site is reported again only once it has grown by the re-report factor
//! (twice its size at the last report, by default), or after it stopped
//! growing for a whole window and started again.
//!
//! Memory churn (buffers allocated and freed), a cache that fills once and
//! stays, a pool that goes up and down: none of these is steady, so none is
//! reported.
//!
//! The monitor also checks the two things the guide's detector checked:
//! RSS against a multiple of its baseline, and live tasks (see
//! [`crate::track_task`]) against a threshold, naming the spawn sites.
//!
//! The window holds `window` raw snapshots, each one entry per live stack:
//! its memory depends on the number of distinct live stacks, never on
//! uptime. The monitor's own allocations are not traced.

#![forbid(unsafe_code)]

use crate::diff::GroupBy;
use crate::hot::guard::{Guard, IGNORE};
use crate::hot::sites::StackId;
use crate::snapshot::RawSnapshot;
use crate::tasks::TaskCount;
use crate::trend::{analyze_series, rank_key_cmp, SeriesTrend, Verdict};
use crate::{Config, Frame, ProcessMemory, Snapshot, SnapshotDiff, TaskStat};
use hashbrown::HashMap;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Steady stacks symbolized per interval at most, largest growth first.
const MAX_RESOLVE_PER_TICK: usize = 256;
/// Numbers report files, over every monitor of the process.
static REPORT_SEQ: AtomicU64 = AtomicU64::new(0);
/// Stacks symbolized ahead by the warm-up thread.
const WARM_STACKS: usize = 16;
/// Spawn sites named in a task warning.
const TASK_SITES_NAMED: usize = 5;

type Callback = Box<dyn FnMut(&Finding) + Send + 'static>;

/// Settings for a [`Monitor`]; from [`Monitor::builder`].
pub struct MonitorBuilder {
    interval: Duration,
    report_dir: Option<PathBuf>,
    window: usize,
    min_window: Option<usize>,
    min_growth_bytes: u64,
    min_grew_fraction: f64,
    rereport_factor: f64,
    rss_growth_warning: f64,
    live_tasks_warning: u64,
    callbacks: Vec<Callback>,
    config: Option<Config>,
    warm_symbols: bool,
}

impl std::fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("interval", &self.interval)
            .field("report_dir", &self.report_dir)
            .field("window", &self.window)
            .field("min_window", &self.min_window)
            .field("min_growth_bytes", &self.min_growth_bytes)
            .field("min_grew_fraction", &self.min_grew_fraction)
            .field("rereport_factor", &self.rereport_factor)
            .field("rss_growth_warning", &self.rss_growth_warning)
            .field("live_tasks_warning", &self.live_tasks_warning)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl MonitorBuilder {
    /// Time between snapshots (default 10 s; at least 1 ms). The schedule is
    /// fixed-rate: an interval that overran is skipped, not queued.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Where reports are written (created when needed). Default: the
    /// `leaktrace` directory under `std::env::temp_dir()`.
    pub fn report_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.report_dir = Some(dir.into());
        self
    }

    /// Snapshots kept and judged (default 30; at least 3). With the
    /// interval, this is how long a leak must be watched: growth is judged
    /// over `window × interval`.
    pub fn window(mut self, snapshots: usize) -> Self {
        self.window = snapshots.max(3);
        self
    }

    /// Snapshots needed before anything is judged (default 10, or the
    /// window if smaller; at least 3).
    pub fn min_window(mut self, snapshots: usize) -> Self {
        self.min_window = Some(snapshots.max(3));
        self
    }

    /// Growth over the window, in bytes, that a steady site must exceed to
    /// count as a leak (default 1 MiB).
    pub fn min_growth_bytes(mut self, bytes: u64) -> Self {
        self.min_growth_bytes = bytes;
        self
    }

    /// Share of the window's intervals in which a site must have grown
    /// (default 0.5, which the steady verdict requires anyway; raise it to
    /// demand more regular growth).
    pub fn min_grew_fraction(mut self, fraction: f64) -> Self {
        self.min_grew_fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.5 };
        self
    }

    /// How many times its size at the last report a site must reach to be
    /// reported again while it keeps growing (default 2.0; at least 1.1).
    pub fn rereport_factor(mut self, factor: f64) -> Self {
        self.rereport_factor = if factor.is_finite() { factor.max(1.1) } else { Monitor::DEFAULT_REREPORT_FACTOR };
        self
    }

    /// Warn when RSS passes `multiple` times its baseline (default 1.5).
    /// The baseline is the RSS at the monitor's first snapshot once the
    /// binary's debug info is loaded (see [`warm_symbols`](Self::warm_symbols)),
    /// so that the tracker's own symbol tables do not count as growth. After a warning the next one
    /// comes when RSS passes `multiple` times the RSS at that warning. A
    /// value not above 1.0 turns the check off.
    pub fn rss_growth_warning(mut self, multiple: f64) -> Self {
        self.rss_growth_warning = if multiple.is_finite() { multiple } else { 0.0 };
        self
    }

    /// Warn when more than `count` tracked tasks are live (default 1000; 0
    /// turns the check off), naming the spawn sites that hold them. Warns
    /// again only when the count doubles, or after it fell back under.
    pub fn live_tasks_warning(mut self, count: u64) -> Self {
        self.live_tasks_warning = count;
        self
    }

    /// Calls `f` for each finding (after its warning is logged), on the
    /// monitor's thread. It should return quickly: the next snapshot waits
    /// for it. Its allocations are traced like the program's. May be called
    /// several times to add several callbacks.
    pub fn on_finding(mut self, f: impl FnMut(&Finding) + Send + 'static) -> Self {
        self.callbacks.push(Box::new(f));
        self
    }

    /// The configuration to start tracing with when it is off at `start()`
    /// (default `Config::default()`). Ignored when tracing is on.
    pub fn tracing_config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Whether `start()` loads the binary's debug info on a short-lived
    /// background thread, so that the first report does not wait for it
    /// (default true).
    pub fn warm_symbols(mut self, warm: bool) -> Self {
        self.warm_symbols = warm;
        self
    }

    /// Starts tracing if it is off, then the monitor's thread.
    ///
    /// # Panics
    ///
    /// When the OS cannot create a thread (as `std::thread::spawn` does);
    /// [`try_start`](Self::try_start) returns the error instead.
    pub fn start(self) -> Monitor {
        match self.try_start() {
            Ok(m) => m,
            Err(e) => panic!("leaktrace: cannot start the monitor thread: {e}"),
        }
    }

    /// Like [`start`](Self::start), returning the error when the thread
    /// cannot be created.
    pub fn try_start(self) -> std::io::Result<Monitor> {
        let _ignore = Guard::with(IGNORE);
        let config = self.config.clone();
        crate::check::ensure_tracing(|| config.unwrap_or_default());
        let report_dir = self.report_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("leaktrace"));
        let window = self.window;
        let settings = Settings {
            interval: self.interval,
            report_dir: report_dir.clone(),
            window,
            min_window: self.min_window.unwrap_or(Monitor::DEFAULT_MIN_WINDOW).min(window),
            min_growth_bytes: self.min_growth_bytes,
            min_grew_fraction: self.min_grew_fraction,
            rereport_factor: self.rereport_factor,
            rss_growth_warning: (self.rss_growth_warning > 1.0).then_some(self.rss_growth_warning),
            live_tasks_warning: (self.live_tasks_warning > 0).then_some(self.live_tasks_warning),
        };
        let shared = Shared::new();
        if self.warm_symbols {
            warm_symbols(shared.clone());
        } else {
            shared.symbols_ready.store(true, Relaxed);
        }
        let worker = Worker::new(settings, self.callbacks, shared.clone());
        let thread = std::thread::Builder::new().name("leaktrace-monitor".into()).spawn(move || worker.run())?;
        Ok(Monitor { shared, thread: Some(thread), report_dir })
    }
}

/// Loads debug info on a detached thread: the first symbol lookup parses
/// the binary's DWARF, which must not hold up the first report. That takes
/// memory (maps and parsed tables), so the RSS baseline waits for it.
fn warm_symbols(shared: Arc<Shared>) {
    fn anchor() {}
    let ip = anchor as fn() as usize;
    let spawned = std::thread::Builder::new().name("leaktrace-symbols".into()).spawn({
        let shared = shared.clone();
        move || {
            let _ignore = Guard::with(IGNORE);
            let _ = crate::symbolize::resolve_ip(ip);
            // A few allocation stacks seen so far: they go through the
            // allocator, `alloc` and `std`, whose line tables every
            // report needs.
            let known = crate::hot::STACKS.len().min(WARM_STACKS) as StackId;
            for id in 0..known {
                if shared.stopping() {
                    break;
                }
                crate::snapshot::traceback_of_stack(id);
            }
            shared.symbols_ready.store(true, Relaxed);
        }
    });
    if spawned.is_err() {
        shared.symbols_ready.store(true, Relaxed);
    }
}

/// The settings in force, as the worker sees them.
#[derive(Clone, Debug)]
struct Settings {
    interval: Duration,
    report_dir: PathBuf,
    window: usize,
    min_window: usize,
    min_growth_bytes: u64,
    min_grew_fraction: f64,
    rereport_factor: f64,
    rss_growth_warning: Option<f64>,
    live_tasks_warning: Option<u64>,
}

/// What the monitor's thread and its handle share.
struct Shared {
    /// Set once by `stop`; read by the worker between steps of a tick.
    stop: AtomicBool,
    /// Set once the binary's debug info is loaded (or will not be loaded
    /// ahead): the RSS baseline is taken after that.
    symbols_ready: AtomicBool,
    /// Guards the sleep, so a stop between the check and the wait is not lost.
    lock: Mutex<()>,
    wake: Condvar,
    stats: Mutex<MonitorStats>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            symbols_ready: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stats: Mutex::new(MonitorStats::default()),
        })
    }

    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Sleeps until `deadline` or a stop; `false` on a stop.
    fn sleep_until(&self, deadline: Instant) -> bool {
        let mut guard = self.lock.lock();
        while !self.stopping() {
            if self.wake.wait_until(&mut guard, deadline).timed_out() {
                return !self.stopping();
            }
        }
        false
    }
}

/// The leak detector for a running service: a thread that snapshots the
/// traced heap every interval and reports sites that grow steadily.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
///
/// let monitor = leaktrace::Monitor::builder()
///     .interval(std::time::Duration::from_secs(10))
///     .report_dir("/var/log/myservice/leaks")
///     .rss_growth_warning(1.5)
///     .live_tasks_warning(10_000)
///     .start();
/// // ... serve ...
/// monitor.stop(); // or drop it
/// ```
///
/// Dropping it (or [`Monitor::stop`]) wakes the thread and joins it: it
/// returns at once when the thread is asleep, and otherwise as soon as the
/// snapshot in progress is done (the judging and symbolizing steps check
/// for a stop between stacks). Tracing stays on.
pub struct Monitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    report_dir: PathBuf,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("report_dir", &self.report_dir).field("stats", &self.stats()).finish()
    }
}

impl Monitor {
    /// Default time between snapshots.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
    /// Default number of snapshots kept (five minutes at the default interval).
    pub const DEFAULT_WINDOW: usize = 30;
    /// Default number of snapshots needed before growth is judged.
    pub const DEFAULT_MIN_WINDOW: usize = 10;
    /// Default growth over the window below which a steady site is not reported.
    pub const DEFAULT_MIN_GROWTH_BYTES: u64 = 1 << 20;
    /// Default factor by which a reported site must grow to be reported again.
    pub const DEFAULT_REREPORT_FACTOR: f64 = 2.0;
    /// Default RSS multiple of the baseline that triggers a warning (the guide's 1.5).
    pub const DEFAULT_RSS_GROWTH_WARNING: f64 = 1.5;
    /// Default live-task count above which the monitor warns.
    pub const DEFAULT_LIVE_TASKS_WARNING: u64 = 1000;

    /// A builder with the defaults: a 10 s interval, a 30-snapshot window,
    /// reports in `$TMPDIR/leaktrace`.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder {
            interval: Monitor::DEFAULT_INTERVAL,
            report_dir: None,
            window: Monitor::DEFAULT_WINDOW,
            min_window: None,
            min_growth_bytes: Monitor::DEFAULT_MIN_GROWTH_BYTES,
            min_grew_fraction: 0.5,
            rereport_factor: Monitor::DEFAULT_REREPORT_FACTOR,
            rss_growth_warning: Monitor::DEFAULT_RSS_GROWTH_WARNING,
            live_tasks_warning: Monitor::DEFAULT_LIVE_TASKS_WARNING,
            callbacks: Vec::new(),
            config: None,
            warm_symbols: true,
        }
    }

    /// Stops the thread and joins it (as dropping the monitor does).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Where reports are written.
    pub fn report_dir(&self) -> &Path {
        &self.report_dir
    }

    /// Counters of the monitor's work so far.
    pub fn stats(&self) -> MonitorStats {
        let _ignore = Guard::with(IGNORE);
        self.shared.stats.lock().clone()
    }

    fn shutdown(&mut self) {
        let _ignore = Guard::with(IGNORE);
        {
            let _guard = self.shared.lock.lock();
            self.shared.stop.store(true, Relaxed);
            self.shared.wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            // A callback that drops the monitor runs on its thread: joining
            // itself would never return.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counters of a [`Monitor`]'s work.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitorStats {
    /// Snapshots taken.
    pub ticks: u64,
    /// Snapshots in the window now.
    pub window_snapshots: usize,
    /// Bytes the window holds (raw snapshots), an estimate from capacities.
    pub window_bytes: usize,
    /// Sites the monitor remembers having reported.
    pub remembered_sites: usize,
    /// Reports written.
    pub reports_written: u64,
    /// Leak findings (first reports and re-reports).
    pub leak_findings: u64,
    /// RSS warnings.
    pub rss_warnings: u64,
    /// Live-task warnings.
    pub task_warnings: u64,
    /// The latest report written.
    pub last_report: Option<PathBuf>,
    /// The baseline RSS, once taken (see [`MonitorBuilder::rss_growth_warning`]).
    pub baseline_rss_bytes: Option<u64>,
    /// How long the latest snapshot and its judging took.
    pub last_tick: Duration,
}

/// One site the monitor judged to leak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakSuspect {
    /// 1 for the likeliest leak (ranked as `alloc-probe trend` ranks).
    pub rank: usize,
    /// The call site: file, line, function.
    pub location: Frame,
    /// The traceback of its largest stack, from the site outward.
    pub traceback: Vec<Frame>,
    /// Always `steady` for a reported site.
    pub verdict: Verdict,
    /// Live bytes at the site in the latest snapshot.
    pub size_bytes: u64,
    /// Live blocks at the site in the latest snapshot.
    pub blocks: u64,
    /// Live bytes in the window's first snapshot.
    pub size_first: u64,
    /// Fewest live bytes over the window.
    pub size_min: u64,
    /// Most live bytes over the window.
    pub size_max: u64,
    /// `size_bytes - size_first`.
    pub growth_bytes: i64,
    /// Seconds the window spans.
    pub window_seconds: f64,
    /// Least-squares slope of live bytes over time.
    pub slope_bytes_per_sec: f64,
    /// Share of the window's intervals in which the site grew.
    pub grew_fraction: f64,
    /// Live bytes at each snapshot of the window.
    pub sizes: Vec<u64>,
    /// Distinct stacks at this site that grew steadily.
    pub stacks: usize,
    /// Whether this report is about this site (first report, or grown past
    /// the re-report factor); `false` for a site reported before and
    /// listed again for context.
    pub fresh: bool,
}

impl std::fmt::Display for LeakSuspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.location)?;
        if !self.location.function.is_empty() && !self.location.file.is_empty() {
            write!(f, " in {}", self.location.function)?;
        }
        let intervals = self.sizes.len().saturating_sub(1);
        write!(
            f,
            ": {:+} in {:.1} s ({}/min), grew in {:.0}% of {} intervals, {} live in {} block{}",
            Bytes(self.growth_bytes as f64),
            self.window_seconds,
            Bytes(self.slope_bytes_per_sec * 60.0),
            self.grew_fraction * 100.0,
            intervals,
            Bytes(self.size_bytes as f64),
            self.blocks,
            if self.blocks == 1 { "" } else { "s" },
        )
    }
}

/// A site that grows steadily.
#[derive(Clone, Debug, PartialEq)]
pub struct LeakFinding {
    /// The site and its trend figures.
    pub suspect: LeakSuspect,
    /// The report written, if it could be.
    pub report: Option<PathBuf>,
    /// Whether the site was reported before (and has grown since by the
    /// re-report factor).
    pub repeat: bool,
}

/// RSS passed the configured multiple of its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct RssFinding {
    /// RSS now.
    pub rss_bytes: u64,
    /// VMS now.
    pub vms_bytes: u64,
    /// The baseline RSS (see [`MonitorBuilder::rss_growth_warning`]).
    pub baseline_rss_bytes: u64,
    /// The RSS that was passed.
    pub threshold_bytes: u64,
    /// The configured multiple.
    pub multiple: f64,
    /// Traced live bytes now.
    pub traced_bytes: u64,
    /// Traced live bytes at the monitor's first snapshot.
    pub baseline_traced_bytes: u64,
}

/// More tracked tasks are live than the configured threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct TasksFinding {
    /// Tasks live now, over all spawn sites.
    pub live: u64,
    /// The configured threshold.
    pub threshold: u64,
    /// The spawn sites with live tasks, most first.
    pub sites: Vec<TaskStat>,
}

/// Something the monitor found; passed to [`MonitorBuilder::on_finding`].
/// Its `Display` is the warning the monitor logged.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // one per finding, rare: boxing would only change the API
pub enum Finding {
    /// A site grows steadily.
    Leak(LeakFinding),
    /// RSS passed its warning level.
    Rss(RssFinding),
    /// Live tasks passed their warning level.
    Tasks(TasksFinding),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Leak(l) => {
                write!(f, "leaktrace: {} at {}", if l.repeat { "steady growth continues" } else { "steady growth" }, l.suspect)?;
                match &l.report {
                    Some(p) => write!(f, "; report: {}", p.display()),
                    None => write!(f, "; no report written"),
                }
            }
            Finding::Rss(r) => write!(
                f,
                "leaktrace: RSS is {} ({:.2}x the baseline {}, warning above {}x); VMS {}; traced heap {} live ({:+} since the monitor started)",
                Bytes(r.rss_bytes as f64),
                r.rss_bytes as f64 / r.baseline_rss_bytes.max(1) as f64,
                Bytes(r.baseline_rss_bytes as f64),
                r.multiple,
                Bytes(r.vms_bytes as f64),
                Bytes(r.traced_bytes as f64),
                Bytes(r.traced_bytes as f64 - r.baseline_traced_bytes as f64),
            ),
            Finding::Tasks(t) => {
                write!(f, "leaktrace: {} live tasks (warning above {}); by spawn site: ", t.live, t.threshold)?;
                for (i, s) in t.sites.iter().take(TASK_SITES_NAMED).enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{}", s.location)?;
                    if !s.location.function.is_empty() {
                        write!(f, " ({})", s.location.function)?;
                    }
                    write!(f, ": {} live, {} spawned", s.live, s.spawned)?;
                }
                if t.sites.len() > TASK_SITES_NAMED {
                    write!(f, "; and {} more sites", t.sites.len() - TASK_SITES_NAMED)?;
                }
                Ok(())
            }
        }
    }
}

/// One snapshot of the window, as listed in a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSample {
    /// Its label (`monitor tick N`).
    pub label: String,
    /// Seconds since the window's first snapshot.
    pub offset_seconds: f64,
    /// Traced live bytes.
    pub traced_bytes: u64,
    /// RSS, where the OS tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// VMS, where the OS tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms_bytes: Option<u64>,
    /// Tracked tasks live.
    pub live_tasks: u64,
}

/// The monitor's part of a report: why it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorReportInfo {
    /// The process monitored.
    pub pid: u32,
    /// Seconds between snapshots.
    pub interval_seconds: f64,
    /// Snapshots in the window.
    pub window_snapshots: usize,
    /// Seconds the window spans.
    pub window_seconds: f64,
    /// The growth a steady site had to exceed.
    pub min_growth_bytes: u64,
    /// The share of intervals a site had to grow in.
    pub min_grew_fraction: f64,
    /// The sites judged to leak, likeliest first; the diff lists them first.
    pub suspects: Vec<LeakSuspect>,
    /// The window's snapshots: traced bytes, RSS, VMS, tasks.
    pub samples: Vec<WindowSample>,
}

/// A report written by the monitor: a `leaktrace.diff.v1` diff (readable by
/// [`SnapshotDiff::read_json`] and `alloc-probe`) whose first sites are the
/// suspects, plus a `monitor` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// The diff from the window's first snapshot to the latest, suspects
    /// first (their `rank` is 1, 2, ...), then the other sites as
    /// `compare_to` ranks them.
    #[serde(flatten)]
    pub diff: SnapshotDiff,
    /// Why the report was written.
    pub monitor: MonitorReportInfo,
}

impl MonitorReport {
    /// This report as JSON (`"format": "leaktrace.diff.v1"`).
    pub fn to_json(&self) -> String {
        crate::report::to_json(crate::DIFF_FORMAT, self)
    }

    /// Reads a report written by a monitor.
    pub fn read_json(path: impl AsRef<Path>) -> crate::Result<MonitorReport> {
        crate::report::read_kind(path.as_ref(), "leaktrace.diff")
    }
}

/// Formats a byte count with a binary unit.
struct Bytes(f64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0.0 {
            "-"
        } else if f.sign_plus() {
            "+"
        } else {
            ""
        };
        let mut v = self.0.abs();
        if v < 1024.0 {
            return write!(f, "{sign}{v:.0} B");
        }
        for unit in ["KiB", "MiB", "GiB", "TiB"] {
            v /= 1024.0;
            if v < 1024.0 || unit == "TiB" {
                return write!(f, "{sign}{v:.1} {unit}");
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ worker

/// One snapshot of the window: raw, stacks sorted by id.
struct Entry {
    tick: u64,
    raw: RawSnapshot,
    process: Option<ProcessMemory>,
    tasks: Vec<TaskCount>,
    tracker_bytes: u64,
}

impl Entry {
    fn bytes_of(&self, id: StackId) -> Option<(u64, u64)> {
        self.raw.stacks.binary_search_by_key(&id, |s| s.0).ok().map(|i| (self.raw.stacks[i].1, self.raw.stacks[i].2))
    }

    fn heap_bytes(&self) -> usize {
        self.raw.stacks.capacity() * std::mem::size_of::<(StackId, u64, u64)>()
            + self.tasks.capacity() * std::mem::size_of::<TaskCount>()
    }

    fn live_tasks(&self) -> u64 {
        self.tasks.iter().map(|t| t.live).sum()
    }
}

/// The key of a site: file and line; the function when the file is unknown.
type SiteKey = (String, u32, String);

fn site_key(f: &Frame) -> SiteKey {
    let func = if f.file.is_empty() { f.function.clone() } else { String::new() };
    (f.file.clone(), f.line, func)
}

/// What the monitor remembers of a site it reported.
struct SiteState {
    /// Live bytes at the last report.
    reported_bytes: u64,
    /// The last tick at which it was a finding.
    last_tick: u64,
}

/// A steady stack, before symbols.
struct Candidate {
    id: StackId,
    sizes: Vec<u64>,
    blocks: u64,
    trend: SeriesTrend,
}

/// Candidates grouped by site.
struct Group {
    location: Frame,
    traceback: Vec<Frame>,
    largest: u64,
    sizes: Vec<u64>,
    blocks: u64,
    stacks: usize,
    /// The steepest member that alone exceeds the minimum growth, with its sizes.
    strongest: Option<(SeriesTrend, Vec<u64>)>,
}

struct Worker {
    settings: Settings,
    callbacks: Vec<Callback>,
    shared: Arc<Shared>,
    window: VecDeque<Entry>,
    tick: u64,
    sites: HashMap<SiteKey, SiteState>,
    baseline_rss: Option<u64>,
    rss_threshold: Option<u64>,
    first_traced: Option<u64>,
    /// Live tasks at the last task warning; `None` while under the threshold.
    tasks_warned: Option<u64>,
}

impl Worker {
    fn new(settings: Settings, callbacks: Vec<Callback>, shared: Arc<Shared>) -> Worker {
        Worker {
            window: VecDeque::with_capacity(settings.window),
            settings,
            callbacks,
            shared,
            tick: 0,
            sites: HashMap::new(),
            baseline_rss: None,
            rss_threshold: None,
            first_traced: None,
            tasks_warned: None,
        }
    }

    fn run(mut self) {
        let start = Instant::now();
        let interval_ns = self.settings.interval.as_nanos().max(1);
        let mut slot: u128 = 0;
        while !self.shared.stopping() {
            let began = Instant::now();
            let findings = match catch_unwind(AssertUnwindSafe(|| self.tick())) {
                Ok(f) => f,
                Err(_) => {
                    let _ignore = Guard::with(IGNORE);
                    log::error!("leaktrace: the monitor's snapshot panicked; it goes on at the next interval");
                    Vec::new()
                }
            };
            self.update_stats(began.elapsed());
            self.dispatch(&findings);
            drop(findings);
            // Fixed rate: the next slot of the schedule that is still ahead.
            let elapsed = start.elapsed().as_nanos();
            slot = (slot + 1).max(elapsed / interval_ns + 1);
            let at = start + Duration::from_nanos((slot * interval_ns).min(u64::MAX as u128) as u64);
            if !self.shared.sleep_until(at) {
                break;
            }
        }
    }

    /// Callbacks run outside the tracker's guard: they are the program's code.
    fn dispatch(&mut self, findings: &[Finding]) {
        for finding in findings {
            for cb in self.callbacks.iter_mut() {
                if catch_unwind(AssertUnwindSafe(|| cb(finding))).is_err() {
                    let _ignore = Guard::with(IGNORE);
                    log::error!("leaktrace: a monitor on_finding callback panicked");
                }
            }
        }
    }

    fn update_stats(&mut self, took: Duration) {
        let _ignore = Guard::with(IGNORE);
        let window_bytes = self.window.capacity() * std::mem::size_of::<Entry>()
            + self.window.iter().map(Entry::heap_bytes).sum::<usize>();
        let mut s = self.shared.stats.lock();
        s.ticks = self.tick;
        s.window_snapshots = self.window.len();
        s.window_bytes = window_bytes;
        s.remembered_sites = self.sites.len();
        s.baseline_rss_bytes = self.baseline_rss;
        s.last_tick = took;
    }

    fn tick(&mut self) -> Vec<Finding> {
        let _ignore = Guard::with(IGNORE);
        let mut raw = crate::snapshot::collect();
        raw.stacks.sort_unstable_by_key(|s| s.0);
        raw.stacks.shrink_to_fit();
        let mut tasks = crate::tasks::task_counts();
        tasks.shrink_to_fit();
        let entry = Entry {
            tick: self.tick,
            raw,
            process: crate::process_memory(),
            tasks,
            tracker_bytes: crate::tracker_memory() as u64,
        };
        self.judge(entry)
    }

    /// Adds a snapshot to the window and runs the checks on it.
    fn judge(&mut self, entry: Entry) -> Vec<Finding> {
        self.tick += 1;
        if self.window.len() == self.settings.window {
            self.window.pop_front();
        }
        self.first_traced.get_or_insert(entry.raw.current);
        self.window.push_back(entry);
        let mut findings = Vec::new();
        self.check_rss(&mut findings);
        self.check_tasks(&mut findings);
        self.check_leaks(&mut findings);
        findings
    }

    fn check_rss(&mut self, findings: &mut Vec<Finding>) {
        let Some(multiple) = self.settings.rss_growth_warning else {
            return;
        };
        let Some(latest) = self.window.back() else {
            return;
        };
        let Some(pm) = latest.process.clone() else {
            return;
        };
        if self.baseline_rss.is_none() && !self.shared.symbols_ready.load(Relaxed) {
            return;
        }
        let baseline = *self.baseline_rss.get_or_insert(pm.rss_bytes);
        let threshold = *self.rss_threshold.get_or_insert((baseline as f64 * multiple) as u64);
        if pm.rss_bytes <= threshold {
            return;
        }
        self.rss_threshold = Some((pm.rss_bytes as f64 * multiple) as u64);
        let finding = Finding::Rss(RssFinding {
            rss_bytes: pm.rss_bytes,
            vms_bytes: pm.vms_bytes,
            baseline_rss_bytes: baseline,
            threshold_bytes: threshold,
            multiple,
            traced_bytes: latest.raw.current,
            baseline_traced_bytes: self.first_traced.unwrap_or(0),
        });
        log::warn!("{finding}");
        self.shared.stats.lock().rss_warnings += 1;
        findings.push(finding);
    }

    fn check_tasks(&mut self, findings: &mut Vec<Finding>) {
        let Some(threshold) = self.settings.live_tasks_warning else {
            return;
        };
        let Some(latest) = self.window.back() else {
            return;
        };
        let live = latest.live_tasks();
        if live <= threshold {
            self.tasks_warned = None;
            return;
        }
        if matches!(self.tasks_warned, Some(prev) if live < prev.saturating_mul(2)) {
            return;
        }
        self.tasks_warned = Some(live);
        let mut counts: Vec<TaskCount> = latest.tasks.iter().filter(|t| t.live > 0).copied().collect();
        crate::tasks::sort_counts(&mut counts);
        let finding =
            Finding::Tasks(TasksFinding { live, threshold, sites: counts.iter().map(TaskCount::stat).collect() });
        log::warn!("{finding}");
        self.shared.stats.lock().task_warnings += 1;
        findings.push(finding);
    }

    /// Steady stacks of the window, before any symbol is read.
    fn candidates(&self, times: &[f64]) -> Vec<Candidate> {
        let (Some(first), Some(last)) = (self.window.front(), self.window.back()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &(id, bytes, blocks) in &last.raw.stacks {
            if bytes <= first.bytes_of(id).map_or(0, |b| b.0) {
                continue;
            }
            let sizes: Vec<u64> = self.window.iter().map(|e| e.bytes_of(id).map_or(0, |b| b.0)).collect();
            let trend = analyze_series(times, &sizes);
            if trend.verdict == Verdict::Steady && trend.grew_fraction >= self.settings.min_grew_fraction {
                out.push(Candidate { id, sizes, blocks, trend });
            }
        }
        out
    }

    fn check_leaks(&mut self, findings: &mut Vec<Finding>) {
        let n = self.window.len();
        if n < self.settings.min_window {
            return;
        }
        let t0 = self.window[0].raw.monotonic_seconds;
        let times: Vec<f64> = self.window.iter().map(|e| e.raw.monotonic_seconds - t0).collect();
        let window_seconds = times.last().copied().unwrap_or(0.0);
        let min_growth = self.settings.min_growth_bytes;
        let net = |t: &SeriesTrend| t.last.saturating_sub(t.first);
        let mut candidates = self.candidates(&times);
        // Several stacks may share a site; only their sum can reach the
        // minimum, so symbols are read only when it might.
        if candidates.iter().map(|c| net(&c.trend)).sum::<u64>() < min_growth.max(1) {
            self.forget_sites();
            return;
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(net(&c.trend)));
        candidates.truncate(MAX_RESOLVE_PER_TICK);
        let mut groups: HashMap<SiteKey, Group> = HashMap::new();
        for c in &candidates {
            if self.shared.stopping() {
                return;
            }
            let tb = crate::snapshot::traceback_of_stack(c.id);
            let g = groups.entry(site_key(&tb[0])).or_insert_with(|| Group {
                location: tb[0].clone(),
                traceback: tb.to_vec(),
                largest: 0,
                sizes: vec![0; n],
                blocks: 0,
                stacks: 0,
                strongest: None,
            });
            for (s, v) in g.sizes.iter_mut().zip(&c.sizes) {
                *s += v;
            }
            g.blocks += c.blocks;
            g.stacks += 1;
            if c.trend.last > g.largest {
                g.largest = c.trend.last;
                g.traceback = tb.to_vec();
            }
            if net(&c.trend) > min_growth
                && g.strongest.as_ref().is_none_or(|(s, _)| c.trend.slope_bytes_per_sec > s.slope_bytes_per_sec)
            {
                g.strongest = Some((c.trend, c.sizes.clone()));
            }
        }
        let mut suspects: Vec<(SeriesTrend, LeakSuspect, bool)> = Vec::new();
        for (_, g) in groups {
            let t = analyze_series(&times, &g.sizes);
            let steady = t.verdict == Verdict::Steady
                && t.grew_fraction >= self.settings.min_grew_fraction
                && net(&t) > min_growth;
            // The sum of steady series is steady but for rare phase effects
            // on the share of intervals grown; a member that is a finding
            // alone keeps the site one.
            let (t, sizes) = match (steady, g.strongest) {
                (true, _) => (t, g.sizes),
                (false, Some(strongest)) => strongest,
                (false, None) => continue,
            };
            suspects.push((
                t,
                LeakSuspect {
                    rank: 0,
                    location: g.location,
                    traceback: g.traceback,
                    verdict: t.verdict,
                    size_bytes: t.last,
                    blocks: g.blocks,
                    size_first: t.first,
                    size_min: t.min,
                    size_max: t.max,
                    growth_bytes: t.last as i64 - t.first as i64,
                    window_seconds,
                    slope_bytes_per_sec: t.slope_bytes_per_sec,
                    grew_fraction: t.grew_fraction,
                    sizes,
                    stacks: g.stacks,
                    fresh: false,
                },
                false,
            ));
        }
        // Which sites this report is about: new ones, and reported ones
        // that grew past the re-report factor.
        for (_, s, repeat) in suspects.iter_mut() {
            let key = site_key(&s.location);
            match self.sites.get_mut(&key) {
                None => {
                    self.sites.insert(key, SiteState { reported_bytes: s.size_bytes, last_tick: self.tick });
                    s.fresh = true;
                }
                Some(st) => {
                    st.last_tick = self.tick;
                    let regrown = s.size_bytes as f64 >= st.reported_bytes as f64 * self.settings.rereport_factor
                        && s.size_bytes.saturating_sub(st.reported_bytes) > min_growth;
                    if regrown {
                        st.reported_bytes = s.size_bytes;
                        s.fresh = true;
                        *repeat = true;
                    }
                }
            }
        }
        // The report's subject first, each part as `alloc-probe trend` ranks.
        suspects.sort_by(|(ta, a, _), (tb, b, _)| {
            b.fresh
                .cmp(&a.fresh)
                .then_with(|| rank_key_cmp(ta, tb))
                .then_with(|| site_key(&a.location).cmp(&site_key(&b.location)))
        });
        let mut fresh: Vec<(usize, bool)> = Vec::new();
        let suspects: Vec<LeakSuspect> = suspects
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut s, repeat))| {
                if s.fresh {
                    fresh.push((i, repeat));
                }
                s.rank = i + 1;
                s
            })
            .collect();
        self.forget_sites();
        if fresh.is_empty() {
            return;
        }
        let report = self.write_report(&suspects, &times);
        if self.shared.stopping() && report.is_none() {
            return;
        }
        let mut stats = self.shared.stats.lock();
        stats.leak_findings += fresh.len() as u64;
        if report.is_some() {
            stats.reports_written += 1;
            stats.last_report = report.clone();
        }
        drop(stats);
        for (i, repeat) in fresh {
            let finding = Finding::Leak(LeakFinding { suspect: suspects[i].clone(), report: report.clone(), repeat });
            log::warn!("{finding}");
            findings.push(finding);
        }
    }

    /// Forgets sites that have not been findings for a whole window: if
    /// they grow again, that is a new finding.
    fn forget_sites(&mut self) {
        let (tick, window) = (self.tick, self.settings.window as u64);
        self.sites.retain(|_, st| tick.saturating_sub(st.last_tick) <= window);
    }

    fn snapshot_of(&self, e: &Entry) -> Snapshot {
        let mut snap = crate::snapshot::build(&format!("monitor tick {}", e.tick), &e.raw);
        snap.process = e.process.clone();
        let mut tasks = e.tasks.clone();
        crate::tasks::sort_counts(&mut tasks);
        snap.tasks = tasks.iter().map(TaskCount::stat).collect();
        snap.totals.tracker_bytes = e.tracker_bytes;
        snap
    }

    /// Writes the report; `None` when stopped first or when it cannot be written.
    fn write_report(&mut self, suspects: &[LeakSuspect], times: &[f64]) -> Option<PathBuf> {
        let (first, last) = (self.window.front()?, self.window.back()?);
        // Resolve stack by stack, checking for a stop in between: a stop
        // waits for one stack at most, and `build` then hits the caches.
        for &(id, _, _) in first.raw.stacks.iter().chain(&last.raw.stacks) {
            if self.shared.stopping() {
                return None;
            }
            crate::snapshot::traceback_of_stack(id);
        }
        let older = self.snapshot_of(first);
        let newer = self.snapshot_of(last);
        let mut diff = newer.compare_to(&older, GroupBy::Line);
        suspects_first(&mut diff, suspects);
        let samples = self
            .window
            .iter()
            .zip(times)
            .map(|(e, &t)| WindowSample {
                label: format!("monitor tick {}", e.tick),
                offset_seconds: t,
                traced_bytes: e.raw.current,
                rss_bytes: e.process.as_ref().map(|p| p.rss_bytes),
                vms_bytes: e.process.as_ref().map(|p| p.vms_bytes),
                live_tasks: e.live_tasks(),
            })
            .collect();
        let report = MonitorReport {
            diff,
            monitor: MonitorReportInfo {
                pid: std::process::id(),
                interval_seconds: self.settings.interval.as_secs_f64(),
                window_snapshots: self.window.len(),
                window_seconds: times.last().copied().unwrap_or(0.0),
                min_growth_bytes: self.settings.min_growth_bytes,
                min_grew_fraction: self.settings.min_grew_fraction,
                suspects: suspects.to_vec(),
                samples,
            },
        };
        let seq = REPORT_SEQ.fetch_add(1, Relaxed) + 1;
        let stamp: String = crate::clock::rfc3339(last.raw.unix_seconds)
            .chars()
            .take(19)
            .filter(|c| c.is_ascii_digit() || *c == 'T')
            .collect();
        let name = format!("leak-{}-{stamp}Z-{:03}.json", std::process::id(), seq);
        let dir = &self.settings.report_dir;
        let path = dir.join(name);
        let written = std::fs::create_dir_all(dir)
            .map_err(|io| crate::Error::Io { path: dir.clone(), io })
            .and_then(|()| crate::write_atomic(&path, report.to_json().as_bytes()));
        match written {
            Ok(()) => Some(path),
            Err(e) => {
                log::error!("leaktrace: cannot write the leak report: {e}");
                None
            }
        }
    }
}

/// Moves the suspects' sites to the front of the diff, in suspect order,
/// and renumbers the ranks.
fn suspects_first(diff: &mut SnapshotDiff, suspects: &[LeakSuspect]) {
    let mut front = Vec::with_capacity(diff.sites.len());
    for s in suspects {
        let key = site_key(&s.location);
        if let Some(i) = diff.sites.iter().position(|d| site_key(&d.location) == key) {
            front.push(diff.sites.remove(i));
        }
    }
    front.append(&mut diff.sites);
    for (i, d) in front.iter_mut().enumerate() {
        d.rank = i + 1;
    }
    diff.sites = front;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stack ids no real stack has: they resolve to the unknown frame.
    const A: StackId = crate::hot::sites::UNKNOWN_STACK - 10;
    const B: StackId = A + 1;
    const C: StackId = A + 2;

    fn worker(dir: &Path) -> Worker {
        let settings = Settings {
            interval: Duration::from_secs(1),
            report_dir: dir.to_path_buf(),
            window: 8,
            min_window: 5,
            min_growth_bytes: 1000,
            min_grew_fraction: 0.5,
            rereport_factor: 2.0,
            rss_growth_warning: None,
            live_tasks_warning: None,
        };
        Worker::new(settings, Vec::new(), Shared::new())
    }

    fn feed(w: &mut Worker, stacks: &[(StackId, u64)]) -> Vec<Finding> {
        let t = w.tick as f64;
        let mut stacks: Vec<(StackId, u64, u64)> = stacks.iter().map(|&(id, b)| (id, b, b / 100)).collect();
        stacks.retain(|s| s.1 > 0);
        stacks.sort_unstable_by_key(|s| s.0);
        w.judge(Entry {
            tick: w.tick,
            raw: RawSnapshot {
                stacks,
                unix_seconds: 1.8e9 + t,
                monotonic_seconds: 100.0 + t,
                current: 0,
                peak: 0,
                ..RawSnapshot::default()
            },
            process: None,
            tasks: Vec::new(),
            tracker_bytes: 0,
        })
    }

    fn leaks(f: &[Finding]) -> Vec<&LeakFinding> {
        f.iter()
            .filter_map(|f| match f {
                Finding::Leak(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reports_a_steady_stack_once_then_on_doubling_then_after_a_pause() {
        let dir = std::env::temp_dir().join(format!("leaktrace-monitor-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = worker(&dir);
        // A leaks 1000 B per tick; B churns 5000 B; C steps once.
        let step = |i: u64| if i == 0 { 0 } else { 100_000 };
        let churn = |i: u64| if i % 2 == 0 { 5000 } else { 0 };
        let mut all = Vec::new();
        for i in 0..5 {
            all.push(feed(&mut w, &[(A, 1000 * i), (B, churn(i)), (C, step(i))]));
        }
        assert!(all[..4].iter().all(|f| f.is_empty()), "nothing before min_window");
        let first = leaks(&all[4]);
        assert_eq!(first.len(), 1);
        let l = first[0];
        assert!(!l.repeat && l.suspect.fresh);
        assert_eq!(l.suspect.verdict, Verdict::Steady);
        assert_eq!((l.suspect.size_first, l.suspect.size_bytes, l.suspect.growth_bytes), (0, 4000, 4000));
        assert_eq!(l.suspect.sizes, vec![0, 1000, 2000, 3000, 4000]);
        assert!((l.suspect.slope_bytes_per_sec - 1000.0).abs() < 1e-6);
        let path = l.report.clone().expect("a report");
        let report = MonitorReport::read_json(&path).unwrap();
        assert_eq!(report.monitor.suspects[0].sizes, l.suspect.sizes);
        assert_eq!(report.monitor.samples.len(), 5);
        // The diff has every site, the suspect's first.
        assert_eq!(report.diff.sites[0].location, l.suspect.location);
        assert_eq!(report.diff.sites[0].rank, 1);

        // Growing on, but not yet doubled: silent.
        for i in 5..8 {
            assert!(feed(&mut w, &[(A, 1000 * i), (B, churn(i)), (C, step(i))]).is_empty(), "tick {i}");
        }
        // Doubled since the report (8000 >= 2 x 4000): reported again.
        let again = feed(&mut w, &[(A, 8000), (B, churn(8)), (C, step(8))]);
        let again = leaks(&again);
        assert_eq!(again.len(), 1);
        assert!(again[0].repeat);
        assert_ne!(again[0].report, Some(path));
        assert_eq!(w.sites.len(), 1);

        // Not a finding for more than a window (it stops being steady a few
        // flat snapshots in): forgotten.
        for _ in 0..14 {
            assert!(feed(&mut w, &[(A, 8000), (B, 0), (C, 100_000)]).is_empty());
        }
        assert!(w.sites.is_empty());
        // Growing again is a new finding, not a repeat.
        let mut next = Vec::new();
        for i in 1..=8 {
            next.extend(feed(&mut w, &[(A, 8000 + 2000 * i), (C, 100_000)]));
        }
        let next = leaks(&next);
        assert_eq!(next.len(), 1, "{next:?}");
        assert!(!next[0].repeat);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn churn_and_steps_are_never_findings() {
        let dir = std::env::temp_dir().join(format!("leaktrace-monitor-unit2-{}", std::process::id()));
        let mut w = worker(&dir);
        for i in 0..40u64 {
            let pool = [0, 300_000, 100_000, 900_000, 0][(i % 5) as usize];
            let cache = if i < 3 { 0 } else { 5_000_000 };
            let f = feed(&mut w, &[(A, pool), (B, cache), (C, 4096 * (i % 2))]);
            assert!(f.is_empty(), "tick {i}: {f:?}");
        }
        assert!(!dir.exists(), "no report directory created");
    }

    #[test]
    fn suspects_go_first_in_the_diff() {
        let fr = |line| Frame::new("f", "src/a.rs", line);
        let site = |line, size_diff| crate::StatisticDiff {
            rank: 0,
            location: fr(line),
            size: 0,
            size_diff,
            count: 0,
            count_diff: 0,
            growth_bytes_per_sec: 0.0,
            traceback: vec![fr(line)],
            context: None,
        };
        let info = crate::SnapshotInfo { label: String::new(), taken_at: String::new(), current_bytes: 0, blocks: 0 };
        let mut diff = SnapshotDiff {
            group_by: GroupBy::Line,
            from: info.clone(),
            to: info,
            elapsed_seconds: 1.0,
            totals: Default::default(),
            sites: vec![site(1, 900), site(2, 500), site(3, 10)],
            tasks: Vec::new(),
        };
        let suspect = LeakSuspect {
            rank: 1,
            location: fr(3),
            traceback: vec![fr(3)],
            verdict: Verdict::Steady,
            size_bytes: 10,
            blocks: 1,
            size_first: 0,
            size_min: 0,
            size_max: 10,
            growth_bytes: 10,
            window_seconds: 1.0,
            slope_bytes_per_sec: 10.0,
            grew_fraction: 1.0,
            sizes: vec![0, 10],
            stacks: 1,
            fresh: true,
        };
        suspects_first(&mut diff, &[suspect]);
        let order: Vec<(u32, usize)> = diff.sites.iter().map(|s| (s.location.line, s.rank)).collect();
        assert_eq!(order, vec![(3, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn bytes_format() {
        assert_eq!(Bytes(512.0).to_string(), "512 B");
        assert_eq!(Bytes(1536.0).to_string(), "1.5 KiB");
        assert_eq!(format!("{:+}", Bytes(3.0 * 1048576.0)), "+3.0 MiB");
        assert_eq!(format!("{:+}", Bytes(-2048.0)), "-2.0 KiB");
    }
}
