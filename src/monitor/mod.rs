//! The leak detector for running services: [`Monitor`].
//!
//! A thread of its own (no async runtime) wakes on a fixed-rate schedule,
//! takes a *raw* snapshot (live bytes and blocks per interned stack id, no
//! symbols), and keeps the last `window` of them. Each stack's live bytes
//! over the window form a series. The stacks that may leak (in exact mode,
//! steady by the rule `alloc-probe trend` uses, [`analyze_series`]; in
//! sampled mode, any that grew, as sampled series move in steps of one
//! block's weight) are symbolized, summed per call site (file:line), and
//! the site is judged; a site that grows, by more than the minimum, and
//! still in the latest part of the window, is a finding (`judge.rs`).
//! Symbols are read only for those stacks and for reports: the first
//! symbolization of a large binary (a second or more) is paid once, mostly
//! ahead, by a short-lived thread started with the monitor; a tick that
//! writes a report may still overrun its slot, which the schedule then skips.
//!
//! A finding writes one report into the report directory (atomically): a
//! `leaktrace.diff.v1` diff from the window's first snapshot to the latest,
//! the suspect sites ranked first, plus a `monitor` section with the trend
//! figures and the process's memory over the window. It logs one warning
//! through `log` naming the site, its growth rate, how long it has been
//! growing, and the report. The same site is reported again ("continues")
//! only once it has grown by the re-report factor (twice its size at the
//! last report, by default) and is still growing.
//!
//! A load that grows for longer than the minimum window is reported while
//! it grows: nothing tells it from a leak yet. Every reported site is then
//! followed; once it stops growing (for a number of ticks set by how often
//! it rose, at most a window) it is *cleared*: an `info` message and a
//! [`Finding::Cleared`] say what it was (a load, a cache that filled, or it
//! shrank back), and the next report lists it (`clearing.rs`).
//!
//! Memory churn (buffers allocated and freed), a cache that fills once and
//! stays, a pool that goes up and down: none of these grows steadily, so
//! none is reported.
//!
//! The monitor also checks the two things the guide's detector checked:
//! RSS against a multiple of its baseline, and live tasks (see
//! [`crate::track_task`]) against a threshold, naming the spawn sites.
//!
//! The window holds `window` raw snapshots, each one entry per live stack:
//! its memory depends on the number of distinct live stacks, never on
//! uptime; sites are remembered while reported and for a window after they
//! are cleared. The monitor's own allocations are not traced.
//!
//! Some reports are asked for rather than found (`exit.rs`, `oom.rs`): a
//! *final* report when the program exits (the monitor dropped or stopped,
//! `std::process::exit`, SIGTERM, SIGINT), one on demand on an opt-in signal
//! (SIGUSR2), and a *pre-OOM* report when RSS nears the memory limit of the
//! process's cgroup (or `RLIMIT_AS`). Each is a normal report whose
//! `monitor.reason` says why it was written. Signal handlers never do the
//! work: a signal-hook thread hears the signal, asks the monitor's thread for
//! the report, waits for it (bounded), and then lets the signal's default
//! action go on. An `atexit` hook does the same for `exit`.
//!
//! Files: `builder.rs` (settings, handle), `findings.rs` (public types),
//! `worker.rs` (schedule, snapshot, RSS and task checks), `judge.rs` (leak
//! judging), `clearing.rs` (following and clearing reported sites),
//! `report.rs` (report writing), `exit.rs` (final and on-demand reports:
//! requests, signals, `atexit`), `live.rs` (the trend of now, for
//! [`Monitor::trend`] and `GET /trend`), `oom.rs` (memory limits, pre-OOM reports),
//! `sys.rs` (the few libc calls, the only `unsafe`).
//!
//! [`analyze_series`]: crate::analyze_series

// Each file but `sys.rs` forbids `unsafe` itself.
#![deny(unsafe_code)]

mod builder;
mod clearing;
mod exit;
mod findings;
mod judge;
mod live;
mod oom;
mod report;
mod sys;
#[cfg(test)]
mod tests;
mod worker;

pub use builder::{Monitor, MonitorBuilder};
pub use exit::ReportReason;
pub use findings::{
    ClearedFinding, ClearedKind, Finding, LeakFinding, LeakSuspect, MonitorStats, RssFinding, TasksFinding,
};
#[cfg(feature = "http")]
pub(crate) use live::latest as live_trend;
#[cfg(any(feature = "http", test))]
pub(crate) use live::NoTrend;
pub use live::{LiveTrend, LiveTrendInfo};
pub use oom::MemoryLimitInfo;
pub use report::{MonitorReport, MonitorReportInfo, WindowSample};

use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Callback = Box<dyn FnMut(&Finding) + Send + 'static>;

/// The settings in force, as the worker sees them.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) interval: Duration,
    pub(super) report_dir: PathBuf,
    pub(super) window: usize,
    pub(super) min_window: usize,
    pub(super) min_growth_bytes: u64,
    pub(super) min_grew_fraction: f64,
    pub(super) rereport_factor: f64,
    pub(super) rss_growth_warning: Option<f64>,
    pub(super) live_tasks_warning: Option<u64>,
    /// A pre-OOM report when RSS (or VMS, for `RLIMIT_AS`) passes this
    /// share of the memory limit; `None`: off.
    pub(super) oom_report_share: Option<f64>,
    /// The limit to compare with, when set by the program (else detected).
    pub(super) memory_limit_bytes: Option<u64>,
}

/// What the monitor's thread and its handle share.
pub(super) struct Shared {
    /// Set once by `stop`; read by the worker between steps of a tick.
    pub(super) stop: AtomicBool,
    /// Set once the binary's debug info is loaded (or will not be loaded
    /// ahead): the RSS baseline is taken after that.
    pub(super) symbols_ready: AtomicBool,
    /// Requests for reports, and the worker's progress on them; guards the
    /// sleep, so a stop or request between the check and the wait is not lost.
    pub(super) lock: Mutex<Requests>,
    /// Wakes the worker: a stop or a request.
    pub(super) wake: Condvar,
    /// Wakes those waiting for a requested report.
    pub(super) served: Condvar,
    pub(super) stats: Mutex<MonitorStats>,
    /// Whether exits and SIGTERM/SIGINT get a final report.
    pub(super) final_report: bool,
    /// Signals that ask for a report on demand (SIGUSR2).
    pub(super) report_signals: Vec<i32>,
    /// How long an exit or signal waits for its report.
    pub(super) final_wait: Duration,
}

/// Report requests (see `exit.rs`), under [`Shared::lock`].
#[derive(Debug, Default)]
pub(super) struct Requests {
    /// The report asked for and not yet begun (the most urgent of those asked).
    pub(super) pending: Option<exit::ReportReason>,
    /// Requests made so far; a request's ticket is the count after it.
    pub(super) requested: u64,
    /// Requests served (written, failed or skipped) so far.
    pub(super) done: u64,
    /// The worker has returned: nothing more will be served.
    pub(super) finished: bool,
    /// The monitor's thread, so that an exit on it does not wait for itself.
    pub(super) thread: Option<std::thread::ThreadId>,
    /// Trends asked for (`live.rs`), answered between ticks.
    pub(super) trend: live::TrendRequests,
}

/// Why the worker's wait ended.
pub(super) enum Woke {
    Deadline,
    Stop,
    Request(exit::ReportReason, u64),
    /// A trend is asked for, up to this ticket.
    Trend(u64),
}

impl Shared {
    pub(super) fn new(final_report: bool, report_signals: Vec<i32>, final_wait: Duration) -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            symbols_ready: AtomicBool::new(false),
            lock: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            served: Condvar::new(),
            stats: Mutex::new(MonitorStats::default()),
            final_report,
            report_signals,
            final_wait,
        })
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Sleeps until `deadline`, a stop or a request (taken: the caller
    /// serves it, then calls [`served_up_to`](Self::served_up_to)).
    pub(super) fn wait_until(&self, deadline: Instant) -> Woke {
        let mut guard = self.lock.lock();
        loop {
            if let Some(reason) = guard.pending.take() {
                return Woke::Request(reason, guard.requested);
            }
            if self.stopping() {
                return Woke::Stop;
            }
            if let Some(ticket) = guard.trend.wanted() {
                return Woke::Trend(ticket);
            }
            if self.wake.wait_until(&mut guard, deadline).timed_out() {
                return match (guard.pending.take(), guard.trend.wanted()) {
                    (Some(reason), _) => Woke::Request(reason, guard.requested),
                    (None, _) if self.stopping() => Woke::Stop,
                    (None, Some(ticket)) => Woke::Trend(ticket),
                    (None, None) => Woke::Deadline,
                };
            }
        }
    }
}
