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
//! Files: `builder.rs` (settings, handle), `findings.rs` (public types),
//! `worker.rs` (schedule, snapshot, RSS and task checks), `judge.rs` (leak
//! judging), `clearing.rs` (following and clearing reported sites),
//! `report.rs` (report writing).
//!
//! [`analyze_series`]: crate::analyze_series

#![forbid(unsafe_code)]

mod builder;
mod clearing;
mod findings;
mod judge;
mod report;
#[cfg(test)]
mod tests;
mod worker;

pub use builder::{Monitor, MonitorBuilder};
pub use findings::{
    ClearedFinding, ClearedKind, Finding, LeakFinding, LeakSuspect, MonitorStats, RssFinding, TasksFinding,
};
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
}

/// What the monitor's thread and its handle share.
pub(super) struct Shared {
    /// Set once by `stop`; read by the worker between steps of a tick.
    pub(super) stop: AtomicBool,
    /// Set once the binary's debug info is loaded (or will not be loaded
    /// ahead): the RSS baseline is taken after that.
    pub(super) symbols_ready: AtomicBool,
    /// Guards the sleep, so a stop between the check and the wait is not lost.
    pub(super) lock: Mutex<()>,
    pub(super) wake: Condvar,
    pub(super) stats: Mutex<MonitorStats>,
}

impl Shared {
    pub(super) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            symbols_ready: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stats: Mutex::new(MonitorStats::default()),
        })
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Sleeps until `deadline` or a stop; `false` on a stop.
    pub(super) fn sleep_until(&self, deadline: Instant) -> bool {
        let mut guard = self.lock.lock();
        while !self.stopping() {
            if self.wake.wait_until(&mut guard, deadline).timed_out() {
                return !self.stopping();
            }
        }
        false
    }
}
