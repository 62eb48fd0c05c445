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
