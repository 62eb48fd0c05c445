//! The monitor's view of now, asked for while it runs: [`LiveTrend`], the
//! trend of every site over the monitor's window with the sites it judges
//! to leak. [`Monitor::trend`] returns it; `GET /trend` on
//! [`crate::http`] serves it as JSON.
//!
//! The window belongs to the monitor's thread, so the asker does not read
//! it: it leaves a request (a ticket, under [`Shared::lock`]), wakes the
//! thread and waits, bounded, for the answer. The thread builds the trend
//! between ticks, as it serves a report asked for by a signal, without a
//! new snapshot and without writing a file.
//!
//! [`Monitor::trend`]: crate::Monitor::trend

#![forbid(unsafe_code)]

use super::findings::LeakSuspect;
use super::report::WindowSample;
use super::worker::Worker;
use super::Shared;
use crate::trend::Trend;
use crate::GroupBy;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The monitor's window as a trend, `leaktrace.trend.v1` with a `monitor`
/// section: every site's series over the window (verdicts as
/// `alloc-probe trend` gives them), and the sites the monitor judges to
/// leak by its own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveTrend {
    /// Every site of the window, likeliest leak first.
    #[serde(flatten)]
    pub trend: Trend,
    /// What the monitor makes of it.
    pub monitor: LiveTrendInfo,
}

/// The monitor's part of a [`LiveTrend`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveTrendInfo {
    /// The process monitored.
    pub pid: u32,
    /// Seconds between snapshots.
    pub interval_seconds: f64,
    /// Snapshots taken so far.
    pub ticks: u64,
    /// Snapshots in the window.
    pub window_snapshots: usize,
    /// Snapshots the window needs before any site is judged.
    pub min_window: usize,
    /// Seconds the window spans.
    pub window_seconds: f64,
    /// The growth a steady site has to exceed.
    pub min_growth_bytes: u64,
    /// The sites judged to leak now, likeliest first (empty while the
    /// window is shorter than `min_window`), as a report would list them.
    pub suspects: Vec<LeakSuspect>,
    /// The window's snapshots: traced bytes, RSS, VMS, tasks.
    pub samples: Vec<WindowSample>,
}

impl LiveTrend {
    /// This trend as JSON (`"format": "leaktrace.trend.v1"`, plus `monitor`).
    pub fn to_json(&self) -> String {
        crate::report::to_json(crate::TREND_FORMAT, self)
    }
}

/// Trend requests, under [`Shared::lock`].
#[derive(Debug, Default)]
pub(crate) struct TrendRequests {
    /// Requests made so far; a request's ticket is the count after it.
    pub(super) asked: u64,
    /// Requests answered so far (every ticket up to this one).
    pub(super) done: u64,
    /// The latest answer; `None` when building it failed.
    pub(super) answer: Option<Arc<LiveTrend>>,
}

impl TrendRequests {
    /// The latest ticket, when some request is not answered yet.
    pub(super) fn wanted(&self) -> Option<u64> {
        (self.asked > self.done).then_some(self.asked)
    }

    /// The answer to `ticket`, once given.
    fn answer_to(&self, ticket: u64) -> Option<Result<Arc<LiveTrend>, NoTrend>> {
        (self.done >= ticket).then(|| self.answer.clone().ok_or(NoTrend::Failed))
    }
}

/// Why no trend came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoTrend {
    /// No monitor runs in this process.
    NoMonitor,
    /// The monitor did not answer in time (a long tick, a report being written).
    Busy,
    /// Building the trend failed (a panic, logged).
    Failed,
}

/// The monitors running in this process, latest started last.
static LIVE: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

/// Makes `shared` the monitor [`latest`] answers for. Called by `start`.
pub(super) fn register(shared: &Arc<Shared>) {
    let _ignore = crate::hot::control::ignore();
    LIVE.lock().push(shared.clone());
}

/// Forgets `shared` (its thread returned).
pub(super) fn unregister(shared: &Shared) {
    let _ignore = crate::hot::control::ignore();
    LIVE.lock().retain(|m| !std::ptr::eq(Arc::as_ptr(m), shared));
}

/// The trend of the monitor started last, waiting at most `wait` for its
/// thread. The value is the tracker's: drop it under the tracker's guard,
/// or use [`copy_out`].
#[cfg(feature = "http")]
pub(crate) fn latest(wait: Duration) -> Result<Arc<LiveTrend>, NoTrend> {
    let shared = {
        let _ignore = crate::hot::control::ignore();
        LIVE.lock().last().cloned()
    };
    let Some(shared) = shared else {
        return Err(NoTrend::NoMonitor);
    };
    let answer = shared.ask_trend(wait);
    let _ignore = crate::hot::control::ignore();
    drop(shared);
    answer
}

/// The program's own copy of a trend the tracker built (see
/// [`crate::hand_over`]: in sampled mode, a block allocated untraced and
/// freed by the program would drive the traced total down).
pub(crate) fn copy_out(trend: Arc<LiveTrend>) -> LiveTrend {
    let copy = (*trend).clone();
    let _ignore = crate::hot::control::ignore();
    drop(trend);
    copy
}

impl Shared {
    /// Asks this monitor's thread for its trend and waits at most `wait`.
    pub(super) fn ask_trend(&self, wait: Duration) -> Result<Arc<LiveTrend>, NoTrend> {
        let _ignore = crate::hot::control::ignore();
        let now = Instant::now();
        let deadline = now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        let mut r = self.lock.lock();
        if r.finished {
            return Err(NoTrend::NoMonitor);
        }
        // Asked on the monitor's own thread (an `on_finding` callback): it
        // cannot answer while it waits for itself.
        if r.thread == Some(std::thread::current().id()) {
            return Err(NoTrend::Busy);
        }
        r.trend.asked += 1;
        let ticket = r.trend.asked;
        self.wake.notify_all();
        loop {
            if let Some(answer) = r.trend.answer_to(ticket) {
                return answer;
            }
            if r.finished {
                return Err(NoTrend::NoMonitor);
            }
            if self.served.wait_until(&mut r, deadline).timed_out() {
                return r.trend.answer_to(ticket).unwrap_or(Err(NoTrend::Busy));
            }
        }
    }
}

impl Worker {
    /// Answers the trend requests up to `ticket`.
    pub(super) fn serve_trend(&mut self, ticket: u64) {
        let _ignore = crate::hot::control::ignore();
        // Not cut short by a stop (the suspects would be left out).
        self.serving = true;
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Arc::new(self.live_trend())));
        if built.is_err() {
            log::error!("leaktrace: the monitor's trend panicked; GET /trend answers 500");
        }
        self.serving = false;
        let old = {
            let mut r = self.shared.lock.lock();
            r.trend.done = r.trend.done.max(ticket);
            let old = std::mem::replace(&mut r.trend.answer, built.ok());
            self.shared.served.notify_all();
            old
        };
        drop(old);
    }

    /// The window as a trend, with the suspects of now.
    pub(super) fn live_trend(&self) -> LiveTrend {
        let _batch = crate::symbolize::Batch::begin();
        let snapshots: Vec<_> = self.window.iter().map(|e| self.snapshot_of(e)).collect();
        let trend = crate::trend::trend(&snapshots, GroupBy::Line);
        let times = self.window_times();
        let suspects =
            if self.window.len() >= self.settings.min_window { self.suspects_now(&times) } else { Vec::new() };
        LiveTrend {
            trend,
            monitor: LiveTrendInfo {
                pid: std::process::id(),
                interval_seconds: self.settings.interval.as_secs_f64(),
                ticks: self.tick,
                window_snapshots: self.window.len(),
                min_window: self.settings.min_window,
                window_seconds: times.last().copied().unwrap_or(0.0),
                min_growth_bytes: self.settings.min_growth_bytes,
                suspects,
                samples: self.window_samples(&times),
            },
        }
    }
}
