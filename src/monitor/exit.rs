//! Reports asked for rather than found: the *final* report when the program
//! exits or is told to (SIGTERM, SIGINT), and one on demand (an opt-in
//! signal such as SIGUSR2).
//!
//! No signal handler does the work. A report takes a snapshot, reads
//! symbols and writes a file: all of it allocates and takes locks, none of
//! it is async-signal-safe. So:
//!
//! ```text
//!  signal ─► signal-hook's handler (writes a byte to its pipe; calls a
//!            │                      handler installed before it, if any)
//!            ▼
//!  "leaktrace-signals" thread ── request(reason) ──► monitor thread
//!            │  waits, at most `final_report_wait`   │ snapshot, report
//!            │ ◄──────────────────── served ─────────┘
//!            ▼
//!  the signal's default action (killed by SIGTERM), if it was the
//!  default when the monitor started; else nothing: the program's own
//!  handler has run and its handling goes on
//! ```
//!
//! `std::process::exit` (and a return from `main` with a monitor still
//! alive, e.g. in a static) runs the `atexit` hook registered once: it asks
//! each live monitor for its final report and waits for it, bounded the
//! same way. Dropping or stopping the monitor writes it on the monitor's
//! thread as it ends. A monitor writes one final report at most, whatever
//! came first; on-demand reports may be asked for any number of times.
//!
//! The listener thread and signal registrations live as long as the
//! process: signal-hook never restores a signal's disposition, so when no
//! monitor wants a signal any more the listener carries out its default
//! action itself, as if the monitor had never been there.

#![forbid(unsafe_code)]

use super::worker::Worker;
use super::{Shared, Woke};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Once};
use std::time::Instant;

/// Why a report was written: its `monitor.reason`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum ReportReason {
    /// A site grows steadily (`"leak"`; reports written before reasons were
    /// recorded read as this).
    #[default]
    Leak,
    /// The program exited: the monitor dropped or stopped, or
    /// `std::process::exit` (`"exit"`).
    Exit,
    /// The process got SIGTERM (`"sigterm"`).
    Sigterm,
    /// The process got SIGINT (`"sigint"`).
    Sigint,
    /// The process got an on-demand report signal
    /// ([`MonitorBuilder::report_on_signal`](crate::MonitorBuilder::report_on_signal)):
    /// `"sigusr2"`, `"sigusr1"`, `"sighup"`, or `"signal-N"`.
    Signal(i32),
    /// RSS passed its share of the memory limit (`"pre-oom"`).
    PreOom,
}

const NAMED_SIGNALS: [(i32, &str); 5] = [
    (libc::SIGUSR1, "sigusr1"),
    (libc::SIGUSR2, "sigusr2"),
    (libc::SIGHUP, "sighup"),
    (libc::SIGQUIT, "sigquit"),
    (libc::SIGWINCH, "sigwinch"),
];

impl ReportReason {
    /// The reason a signal gives.
    pub fn of_signal(signal: i32) -> ReportReason {
        match signal {
            libc::SIGTERM => ReportReason::Sigterm,
            libc::SIGINT => ReportReason::Sigint,
            other => ReportReason::Signal(other),
        }
    }

    /// Exits, SIGTERM and SIGINT: the program ends after this report.
    pub fn is_final(self) -> bool {
        matches!(self, ReportReason::Exit | ReportReason::Sigterm | ReportReason::Sigint)
    }

    /// The name written in reports and used in file names.
    pub fn name(self) -> String {
        match self {
            ReportReason::Leak => "leak".into(),
            ReportReason::Exit => "exit".into(),
            ReportReason::Sigterm => "sigterm".into(),
            ReportReason::Sigint => "sigint".into(),
            ReportReason::PreOom => "pre-oom".into(),
            ReportReason::Signal(n) => match NAMED_SIGNALS.iter().find(|(s, _)| *s == n) {
                Some((_, name)) => (*name).into(),
                None => format!("signal-{n}"),
            },
        }
    }

    /// Which of two pending requests is served: a final report before a
    /// pre-OOM one before an on-demand one.
    fn urgency(self) -> u8 {
        match self {
            ReportReason::Exit | ReportReason::Sigterm | ReportReason::Sigint => 3,
            ReportReason::PreOom => 2,
            ReportReason::Signal(_) => 1,
            ReportReason::Leak => 0,
        }
    }
}

impl std::fmt::Display for ReportReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl From<ReportReason> for String {
    fn from(r: ReportReason) -> String {
        r.name()
    }
}

impl TryFrom<String> for ReportReason {
    type Error = String;

    fn try_from(s: String) -> Result<ReportReason, String> {
        Ok(match s.as_str() {
            "leak" => ReportReason::Leak,
            "exit" => ReportReason::Exit,
            "sigterm" => ReportReason::Sigterm,
            "sigint" => ReportReason::Sigint,
            "pre-oom" => ReportReason::PreOom,
            other => match NAMED_SIGNALS.iter().find(|(_, name)| *name == other) {
                Some((n, _)) => ReportReason::Signal(*n),
                None => match other.strip_prefix("signal-").and_then(|n| n.parse().ok()) {
                    Some(n) => ReportReason::Signal(n),
                    None => return Err(format!("unknown report reason {other:?}")),
                },
            },
        })
    }
}

impl Shared {
    /// Asks the worker for a report; returns the request's ticket, for
    /// [`wait_served`](Self::wait_served).
    pub(super) fn request(&self, reason: ReportReason) -> u64 {
        let mut r = self.lock.lock();
        r.pending = Some(match r.pending {
            Some(p) if p.urgency() >= reason.urgency() => p,
            _ => reason,
        });
        r.requested += 1;
        self.wake.notify_all();
        r.requested
    }

    /// Waits until the request `ticket` is served, the worker is gone, or
    /// `deadline`; `false` on the deadline.
    pub(super) fn wait_served(&self, ticket: u64, deadline: Instant) -> bool {
        let mut r = self.lock.lock();
        while r.done < ticket && !r.finished {
            if self.served.wait_until(&mut r, deadline).timed_out() {
                return r.done >= ticket || r.finished;
            }
        }
        true
    }

    /// The worker has served every request up to `ticket`.
    pub(super) fn served_up_to(&self, ticket: u64) {
        let mut r = self.lock.lock();
        r.done = r.done.max(ticket);
        self.served.notify_all();
    }

    /// The worker returns: wake every waiter for good.
    pub(super) fn finished(&self) {
        let mut r = self.lock.lock();
        r.finished = true;
        r.done = r.requested;
        self.served.notify_all();
        // The last trend was built untraced: freed the same way.
        let trend = r.trend.answer.take();
        drop(r);
        let _ignore = crate::hot::control::ignore();
        drop(trend);
        super::live::unregister(self);
    }

    fn on_own_thread(&self) -> bool {
        self.lock.lock().thread == Some(std::thread::current().id())
    }
}

/// The live monitors that want final or on-demand reports.
static MONITORS: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// The signals registered with signal-hook, and whether each one's
/// disposition was the default when it was (then the listener carries out
/// the default action after the report).
struct Listener {
    handle: signal_hook::iterator::Handle,
    registered: Vec<(i32, bool)>,
}

static LISTENER: Mutex<Option<Listener>> = Mutex::new(None);

/// Makes `shared` heard at exit and on its signals. Called by `start`.
pub(super) fn register(shared: &Arc<Shared>) {
    if !shared.final_report && shared.report_signals.is_empty() {
        return;
    }
    MONITORS.lock().push(shared.clone());
    if shared.final_report {
        AT_EXIT.call_once(|| {
            if !super::sys::at_exit(at_exit) {
                log::warn!("leaktrace: cannot register the exit hook: no final report at std::process::exit");
            }
        });
    }
    let mut signals: Vec<i32> = shared.report_signals.clone();
    if shared.final_report {
        signals.extend([libc::SIGTERM, libc::SIGINT]);
    }
    listen(&signals);
}

/// Forgets `shared` (its thread returned).
pub(super) fn unregister(shared: &Arc<Shared>) {
    MONITORS.lock().retain(|m| !Arc::ptr_eq(m, shared));
}

/// Registers `signals` with the listener thread, started on first use.
fn listen(signals: &[i32]) {
    let mut listener = LISTENER.lock();
    for &sig in signals {
        if listener.as_ref().is_some_and(|l| l.registered.iter().any(|&(s, _)| s == sig)) {
            continue;
        }
        let Some(disposition) = super::sys::disposition(sig) else {
            log::warn!("leaktrace: cannot read the disposition of signal {sig}; no report on it");
            continue;
        };
        // An ignored signal (SIGINT under nohup) stays ignored.
        if disposition == super::sys::Disposition::Ignore {
            continue;
        }
        let default = disposition == super::sys::Disposition::Default;
        match listener.as_mut() {
            Some(l) => match l.handle.add_signal(sig) {
                Ok(()) => l.registered.push((sig, default)),
                Err(e) => log::warn!("leaktrace: cannot handle signal {sig}: {e}; no report on it"),
            },
            None => match start_listener(sig) {
                Ok(handle) => *listener = Some(Listener { handle, registered: vec![(sig, default)] }),
                Err(e) => log::warn!("leaktrace: cannot handle signal {sig}: {e}; no report on it"),
            },
        }
    }
}

fn start_listener(first: i32) -> std::io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([first])?;
    let handle = signals.handle();
    std::thread::Builder::new().name("leaktrace-signals".into()).spawn(move || {
        let _ignore = crate::hot::control::ignore();
        for sig in signals.forever() {
            on_signal(sig);
        }
    })?;
    Ok(handle)
}

/// On the listener thread: the reports `sig` asks for, then its default
/// action where that is what the program had.
fn on_signal(sig: i32) {
    let reason = ReportReason::of_signal(sig);
    let wanted: Vec<Arc<Shared>> = MONITORS
        .lock()
        .iter()
        .filter(|m| if reason.is_final() { m.final_report } else { m.report_signals.contains(&sig) })
        .cloned()
        .collect();
    request_and_wait(&wanted, reason);
    let default = LISTENER.lock().as_ref().is_some_and(|l| l.registered.iter().any(|&(s, d)| s == sig && d));
    if default && (reason.is_final() || wanted.is_empty()) {
        // Back to the default disposition and raised again: killed by
        // `sig`, as the program would have been.
        if let Err(e) = signal_hook::low_level::emulate_default_handler(sig) {
            log::error!("leaktrace: cannot carry out the default action of signal {sig}: {e}");
        }
    }
}

/// Asks each monitor for a report and waits for all, each at most its
/// `final_wait` from now.
fn request_and_wait(monitors: &[Arc<Shared>], reason: ReportReason) {
    let now = Instant::now();
    let tickets: Vec<(&Arc<Shared>, u64)> = monitors.iter().map(|m| (m, m.request(reason))).collect();
    for (m, ticket) in tickets {
        if !m.wait_served(ticket, now + m.final_wait) {
            log::warn!("leaktrace: the {reason} report took longer than {:?}; not waiting for it", m.final_wait);
        }
    }
}

/// Runs inside `exit()`: the live monitors' final reports.
extern "C" fn at_exit() {
    // A panic must not unwind into libc.
    let _ = std::panic::catch_unwind(|| {
        let _ignore = crate::hot::control::ignore();
        let wanted: Vec<Arc<Shared>> =
            MONITORS.lock().iter().filter(|m| m.final_report && !m.on_own_thread()).cloned().collect();
        request_and_wait(&wanted, ReportReason::Exit);
    });
}

impl Worker {
    /// Serves the request `reason` (ticket `ticket`): writes its report,
    /// unless it is a final one and one was written.
    pub(super) fn serve(&mut self, reason: ReportReason, ticket: u64) {
        // A final report is written once, and only by a monitor that writes them.
        let skip = reason.is_final() && (!self.shared.final_report || self.final_written);
        if !skip {
            self.final_written |= reason.is_final();
            self.asked_report(reason, None);
        }
        self.shared.served_up_to(ticket);
    }

    /// The worker returns: the final report, if it is still due, and
    /// requests that came meanwhile.
    pub(super) fn finish(&mut self) {
        if self.shared.final_report && !self.final_written {
            self.final_written = true;
            self.asked_report(ReportReason::Exit, None);
        }
        self.shared.finished();
        unregister(&self.shared);
    }

    /// Waits as [`Shared::wait_until`], serving requests meanwhile; `false` on a stop.
    pub(super) fn wait_serving(&mut self, deadline: Instant) -> bool {
        loop {
            // The tracker's own: parking_lot's per-thread data, made on
            // the first wait, is not the program's memory.
            let woke = {
                let _ignore = crate::hot::control::ignore();
                self.shared.wait_until(deadline)
            };
            match woke {
                Woke::Deadline => return true,
                Woke::Stop => return false,
                Woke::Request(reason, ticket) => self.serve(reason, ticket),
                Woke::Trend(ticket) => {
                    // One trend per turn: askers that keep asking never
                    // hold up the tick that is due.
                    self.serve_trend(ticket);
                    if Instant::now() >= deadline {
                        return true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_as_names() {
        for (r, name) in [
            (ReportReason::Leak, "leak"),
            (ReportReason::Exit, "exit"),
            (ReportReason::Sigterm, "sigterm"),
            (ReportReason::Sigint, "sigint"),
            (ReportReason::Signal(libc::SIGUSR2), "sigusr2"),
            (ReportReason::Signal(40), "signal-40"),
            (ReportReason::PreOom, "pre-oom"),
        ] {
            assert_eq!(r.name(), name);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ReportReason>(&json).unwrap(), r);
        }
        assert!(serde_json::from_str::<ReportReason>("\"nope\"").is_err());
    }

    #[test]
    fn a_final_request_wins_over_an_on_demand_one() {
        let shared = Shared::new(true, vec![libc::SIGUSR2], std::time::Duration::from_secs(1));
        shared.request(ReportReason::Signal(libc::SIGUSR2));
        let t = shared.request(ReportReason::Sigterm);
        shared.request(ReportReason::PreOom);
        assert_eq!(shared.lock.lock().pending, Some(ReportReason::Sigterm));
        assert!(!shared.wait_served(t, Instant::now() + std::time::Duration::from_millis(10)));
        shared.served_up_to(t);
        assert!(shared.wait_served(t, Instant::now()));
    }
}
