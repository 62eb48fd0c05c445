//! The public handle: [`MonitorBuilder`] (settings), [`Monitor`] (start,
//! stop, stats), and the warm-up thread that loads symbols ahead.

#![forbid(unsafe_code)]

use super::worker::Worker;
use super::{Callback, LiveTrend, MonitorStats, Settings, Shared};
use crate::hot::control::StackId;
use crate::{Config, Finding};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Stacks symbolized ahead by the warm-up thread.
const WARM_STACKS: usize = 16;

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
    final_report: Option<bool>,
    report_signals: Vec<i32>,
    final_report_wait: Duration,
    oom_report_share: f64,
    memory_limit_bytes: Option<u64>,
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
            .field("final_report", &self.final_report)
            .field("report_signals", &self.report_signals)
            .field("final_report_wait", &self.final_report_wait)
            .field("oom_report_share", &self.oom_report_share)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
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
        self.min_grew_fraction =
            if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { Monitor::DEFAULT_MIN_GREW_FRACTION };
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

    /// Whether the program's end leaves a *final report* (default: on when
    /// [`report_dir`](Self::report_dir) is set, off otherwise): when the
    /// monitor is dropped or stopped, at `std::process::exit` (an `atexit`
    /// hook), and on SIGTERM or SIGINT. The report compares the window's
    /// first snapshot with one taken then, the sites judged to leak so far
    /// first, and its `monitor.reason` says what ended the program. A
    /// monitor writes one final report at most.
    ///
    /// On a signal the report is written on the monitor's thread (never in
    /// the handler), then the signal's default action goes on (the process
    /// is killed by it) if the disposition was the default when the monitor
    /// started. A handler the program installed before (with `sigaction` or
    /// signal-hook) runs as before, and the process is not killed by the
    /// monitor. Install your own handling before the monitor: one installed
    /// later through signal-hook (tokio's `signal` too) runs, but the
    /// monitor then still carries out the default action after its report.
    /// An ignored signal stays ignored.
    pub fn final_report(mut self, on: bool) -> Self {
        self.final_report = Some(on);
        self
    }

    /// A report on demand whenever the process gets `signal` (e.g.
    /// `libc::SIGUSR2`): written as the final report is, with the signal's
    /// name as its reason (`"sigusr2"`); the program then goes on. Off by
    /// default. SIGTERM and SIGINT belong to [`final_report`](Self::final_report)
    /// and are ignored here, as are the signals that cannot be handled
    /// (SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE). Once no
    /// monitor wants the signal any more, its default action is back.
    pub fn report_on_signal(mut self, signal: i32) -> Self {
        let forbidden =
            [libc::SIGTERM, libc::SIGINT].contains(&signal) || signal_hook::consts::FORBIDDEN.contains(&signal);
        if !forbidden && !self.report_signals.contains(&signal) {
            self.report_signals.push(signal);
        }
        self
    }

    /// [`report_on_signal`](Self::report_on_signal)`(libc::SIGUSR2)`, or
    /// no longer, with `false`.
    pub fn report_on_sigusr2(mut self, on: bool) -> Self {
        self.report_signals.retain(|&s| s != libc::SIGUSR2);
        if on {
            self = self.report_on_signal(libc::SIGUSR2);
        }
        self
    }

    /// How long an exit or a signal waits for its report (default 5 s):
    /// past that, the program's end goes on without it.
    pub fn final_report_wait(mut self, wait: Duration) -> Self {
        self.final_report_wait = wait;
        self
    }

    /// Writes a *pre-OOM report* when RSS passes this share of the memory
    /// limit (default 0.9; 0 or less turns it off): the cgroup's
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1), or VMS against a
    /// soft `RLIMIT_AS`. One report per crossing; it is re-armed once RSS
    /// falls back below. RSS is read every 100 ms, between ticks too.
    pub fn oom_report_share(mut self, share: f64) -> Self {
        self.oom_report_share = if share.is_finite() { share.min(1.0) } else { 0.0 };
        self
    }

    /// The memory limit to compare RSS with, instead of the one detected
    /// (see [`oom_report_share`](Self::oom_report_share)).
    pub fn memory_limit_bytes(mut self, bytes: u64) -> Self {
        self.memory_limit_bytes = Some(bytes);
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
        let _ignore = crate::hot::control::ignore();
        let config = self.config.clone();
        crate::control::ensure_tracing(|| config.unwrap_or_default());
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
            oom_report_share: (self.oom_report_share > 0.0).then_some(self.oom_report_share),
            memory_limit_bytes: self.memory_limit_bytes,
        };
        let final_report = self.final_report.unwrap_or(self.report_dir.is_some());
        let shared = Shared::new(final_report, self.report_signals.clone(), self.final_report_wait);
        if self.warm_symbols {
            warm_symbols(shared.clone());
        } else {
            shared.symbols_ready.store(true, Relaxed);
        }
        let worker = Worker::new(settings, self.callbacks, shared.clone());
        let thread = std::thread::Builder::new().name("leaktrace-monitor".into()).spawn(move || worker.run())?;
        super::exit::register(&shared);
        super::live::register(&shared);
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
            let _ignore = crate::hot::control::ignore();
            let _ = crate::symbolize::resolve_ip(ip);
            // A few allocation stacks seen so far: they go through the
            // allocator, `alloc` and `std`, whose line tables every
            // report needs.
            let known = crate::hot::control::stack_count().min(WARM_STACKS) as StackId;
            let _batch = crate::symbolize::Batch::begin();
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
/// for a stop between stacks). Tracing stays on. With
/// [`final_report`](MonitorBuilder::final_report) on, it returns at once
/// and the thread writes the final report on its own; the process's exit
/// waits for it (at most [`final_report_wait`](MonitorBuilder::final_report_wait)).
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
    /// Default share of intervals a site must have grown in: none, since
    /// the trend statistic (Mann-Kendall, see `leaktrace::analyze_series`)
    /// already tells a leak that grows in one interval of five from churn.
    pub const DEFAULT_MIN_GREW_FRACTION: f64 = 0.0;
    /// Default factor by which a reported site must grow to be reported again.
    pub const DEFAULT_REREPORT_FACTOR: f64 = 2.0;
    /// Default RSS multiple of the baseline that triggers a warning (the guide's 1.5).
    pub const DEFAULT_RSS_GROWTH_WARNING: f64 = 1.5;
    /// Default live-task count above which the monitor warns.
    pub const DEFAULT_LIVE_TASKS_WARNING: u64 = 1000;
    /// Default time an exit or a signal waits for its report.
    pub const DEFAULT_FINAL_REPORT_WAIT: Duration = Duration::from_secs(5);
    /// Default share of the memory limit at which a pre-OOM report is written.
    pub const DEFAULT_OOM_REPORT_SHARE: f64 = 0.9;

    /// A builder with the defaults: a 10 s interval, a 30-snapshot window,
    /// reports in `$TMPDIR/leaktrace`.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder {
            interval: Monitor::DEFAULT_INTERVAL,
            report_dir: None,
            window: Monitor::DEFAULT_WINDOW,
            min_window: None,
            min_growth_bytes: Monitor::DEFAULT_MIN_GROWTH_BYTES,
            min_grew_fraction: Monitor::DEFAULT_MIN_GREW_FRACTION,
            rereport_factor: Monitor::DEFAULT_REREPORT_FACTOR,
            rss_growth_warning: Monitor::DEFAULT_RSS_GROWTH_WARNING,
            live_tasks_warning: Monitor::DEFAULT_LIVE_TASKS_WARNING,
            callbacks: Vec::new(),
            config: None,
            warm_symbols: true,
            final_report: None,
            report_signals: Vec::new(),
            final_report_wait: Monitor::DEFAULT_FINAL_REPORT_WAIT,
            oom_report_share: Monitor::DEFAULT_OOM_REPORT_SHARE,
            memory_limit_bytes: None,
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
        let stats = {
            let _ignore = crate::hot::control::ignore();
            self.shared.stats.lock().clone()
        };
        // Built untraced: in sampled mode the program must get its own copy
        // (see `hand_over`), or freeing it drives the traced total down.
        crate::hand_over(stats)
    }

    /// The trend of the monitor's window now, with the sites it judges to
    /// leak (see [`LiveTrend`]); `None` if its thread has ended or did not
    /// answer within `wait` (it answers between ticks: a tick that writes a
    /// report can take a while), and at once on the monitor's own thread
    /// (an `on_finding` callback). Served as JSON by `GET /trend` on
    /// [`crate::http`].
    pub fn trend(&self, wait: Duration) -> Option<LiveTrend> {
        self.shared.ask_trend(wait).ok().map(super::live::copy_out)
    }

    fn shutdown(&mut self) {
        let _ignore = crate::hot::control::ignore();
        {
            let _guard = self.shared.lock.lock();
            self.shared.stop.store(true, Relaxed);
            self.shared.wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            // A callback that drops the monitor runs on its thread: joining
            // itself would never return. A monitor that writes a final
            // report is left to write it: the exit hook waits for it (it
            // stays registered until its thread returns), so that dropping
            // returns at once, as it always has.
            if thread.thread().id() != std::thread::current().id() && !self.shared.final_report {
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
