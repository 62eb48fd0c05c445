//! A service-like workload for the monitor, phased by the monitor's own
//! ticks (not wall time, so a loaded machine shifts nothing): churn all
//! along, a one-time load that grows for longer than the minimum window and
//! then stops, and a real leak that starts after it. Records every finding
//! with the tick it came at.
#![allow(dead_code)]

use leaktrace::{ClearedKind, Finding, Monitor, MonitorReport};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SRC: &str = include_str!("scenario.rs");
pub const INTERVAL: Duration = Duration::from_millis(100);
/// The monitor's default window and minimum window, in ticks.
pub const WINDOW: u64 = 30;
pub const MIN_WINDOW: u64 = 10;
/// The load grows from this tick...
pub const LOAD_START: u64 = 3;
/// ...to this one: 17 ticks, longer than the minimum window.
pub const LOAD_END: u64 = 20;
/// The leak starts here.
pub const LEAK_START: u64 = 25;

static LOAD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// The latest tick the workload saw: findings are stamped with it.
static TICK: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
fn load_one() {
    let block = vec![1u8; 32 * 1024]; // MARK: load
    LOAD.lock().unwrap().push(block);
}

#[inline(never)]
fn leak_one() {
    let block = vec![2u8; 64 * 1024]; // MARK: leak
    LEAKED.lock().unwrap().push(block);
}

#[inline(never)]
fn churn_once(pool: &mut std::collections::VecDeque<Vec<u8>>, i: u64) {
    let mut buf = vec![0u8; 256 * 1024];
    buf[4096] = 1;
    black_box(&buf);
    // A pool that goes up and down between 0 and 8 buffers.
    if (i / 8) % 2 == 0 {
        pool.push_back(vec![3u8; 64 * 1024]);
    } else {
        pool.pop_front();
    }
}

/// One finding, reduced to what the checks need.
#[derive(Clone, Debug)]
pub enum Seen {
    Leak { tick: u64, line: u32, repeat: bool, report: Option<PathBuf>, growing_seconds: f64 },
    Cleared { tick: u64, line: u32, kind: ClearedKind },
    Other { tick: u64, text: String },
}

#[derive(Debug)]
pub struct Outcome {
    pub seen: Vec<Seen>,
    /// The tick at which the load stopped and the leak started, as the
    /// workload saw them.
    pub load_stopped: u64,
    pub leak_started: u64,
    pub ticks: u64,
    pub elapsed: Duration,
    pub stats: leaktrace::MonitorStats,
}

// Built, so that the markers appear once in this file.
const LOAD_MARK: &str = concat!("MARK", ": load");
const LEAK_MARK: &str = concat!("MARK", ": leak");

fn lines() -> (u32, u32) {
    (crate::common::marker_line(SRC, LOAD_MARK), crate::common::marker_line(SRC, LEAK_MARK))
}

fn here(f: &leaktrace::Frame) -> bool {
    f.file.ends_with("scenario.rs")
}

/// Runs the workload under a monitor writing to `dir` (tracing must be on,
/// in the mode wanted). With `load_and_leak` false, only churn (and a cache
/// filled once): nothing should be found.
pub fn run(dir: &Path, load_and_leak: bool, max_ticks: u64) -> Outcome {
    LOAD.lock().unwrap().clear();
    LEAKED.lock().unwrap().clear();
    LOAD.lock().unwrap().reserve(4096);
    LEAKED.lock().unwrap().reserve(4096);
    TICK.store(0, Relaxed);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (load_line, leak_line) = lines();
    let started = Instant::now();
    let monitor = Monitor::builder()
        .interval(INTERVAL)
        .report_dir(dir)
        .rss_growth_warning(0.0)
        .on_finding({
            let seen = seen.clone();
            move |f| {
                let tick = TICK.load(Relaxed);
                let on_site = |line: u32| line == load_line || line == leak_line;
                let s = match f {
                    Finding::Leak(l) if here(&l.suspect.location) && on_site(l.suspect.location.line) => Seen::Leak {
                        tick,
                        line: l.suspect.location.line,
                        repeat: l.repeat,
                        report: l.report.clone(),
                        growing_seconds: l.suspect.growing_seconds,
                    },
                    Finding::Cleared(c) if here(&c.location) && on_site(c.location.line) => {
                        Seen::Cleared { tick, line: c.location.line, kind: c.kind }
                    }
                    other => Seen::Other { tick, text: other.to_string() },
                };
                eprintln!("tick {tick}: {f}");
                seen.lock().unwrap().push(s);
            }
        })
        .start();
    let mut pool = std::collections::VecDeque::new();
    let (mut load_stopped, mut leak_started) = (u64::MAX, u64::MAX);
    let mut i = 0u64;
    let mut cache: Vec<Vec<u8>> = Vec::new();
    loop {
        let tick = monitor.stats().ticks;
        TICK.store(tick, Relaxed);
        if tick >= max_ticks {
            break;
        }
        churn_once(&mut pool, i);
        if tick == 5 && cache.is_empty() {
            cache = (0..64).map(|i| vec![i as u8; 32 * 1024]).collect();
        }
        if load_and_leak {
            if (LOAD_START..LOAD_END).contains(&tick) {
                load_one();
            } else if tick >= LOAD_END {
                load_stopped = load_stopped.min(tick);
            }
            if tick >= LEAK_START {
                leak_started = leak_started.min(tick);
                if i % 3 == 0 {
                    leak_one();
                }
            }
            // Done once the leak is named and the load, if reported, is
            // cleared, with ten ticks more to catch a late false report.
            let s = seen.lock().unwrap().clone();
            let named = s.iter().find_map(|s| match s {
                Seen::Leak { tick, line, .. } if *line == leak_line => Some(*tick),
                _ => None,
            });
            let load_reported = s.iter().any(|s| matches!(s, Seen::Leak { line, .. } if *line == load_line));
            let load_cleared = s.iter().any(|s| matches!(s, Seen::Cleared { line, .. } if *line == load_line));
            if let Some(named) = named {
                if (!load_reported || load_cleared) && tick >= named + 10 && tick >= load_stopped + WINDOW {
                    break;
                }
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = monitor.stats();
    drop(monitor);
    black_box(&cache);
    let outcome = Outcome {
        seen: seen.lock().unwrap().clone(),
        load_stopped,
        leak_started,
        ticks: stats.ticks,
        elapsed: started.elapsed(),
        stats,
    };
    eprintln!("{outcome:#?}");
    outcome
}

/// The checks common to both modes: the leak named within `leak_ticks`
/// ticks of its start and never cleared; the load, if reported, only while
/// it grew, and cleared within one window after it stopped, once; nothing
/// else found. Returns the ticks the leak took to be named. `sampled`: the
/// load may be cleared as a `plateau` too: at one sample weight's
/// resolution a load that ended and a fill that slowed to nothing look
/// alike, and both are "not a leak", which is what clearing says.
pub fn check(o: &Outcome, leak_ticks: u64, sampled: bool) -> u64 {
    let (load_line, leak_line) = lines();
    let others: Vec<&Seen> = o.seen.iter().filter(|s| matches!(s, Seen::Other { .. })).collect();
    assert!(others.is_empty(), "other findings: {others:?}");
    let named = o
        .seen
        .iter()
        .find_map(|s| match s {
            Seen::Leak { tick, line, repeat: false, .. } if *line == leak_line => Some(*tick),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the leak was not named: {o:#?}"));
    let took = named.saturating_sub(o.leak_started);
    assert!(took <= leak_ticks, "the leak was named {took} ticks after it started: {o:#?}");
    assert!(
        !o.seen.iter().any(|s| matches!(s, Seen::Cleared { line, .. } if *line == leak_line)),
        "the leak was cleared: {o:#?}"
    );
    // The load: reported (if at all) only while it grew (a tick of slack:
    // the stamp is the workload's latest view of the tick).
    let load_reports: Vec<&Seen> =
        o.seen.iter().filter(|s| matches!(s, Seen::Leak { line, .. } if *line == load_line)).collect();
    for s in &load_reports {
        if let Seen::Leak { tick, .. } = s {
            assert!(*tick <= o.load_stopped + 1, "the load was reported after it stopped: {s:?}; {o:#?}");
        }
    }
    let cleared: Vec<u64> = o
        .seen
        .iter()
        .filter_map(|s| match s {
            Seen::Cleared { tick, line, kind } if *line == load_line => {
                let ok = *kind == ClearedKind::Load || (sampled && *kind == ClearedKind::Plateau);
                assert!(ok, "the load was cleared as {kind:?}: {o:#?}");
                Some(*tick)
            }
            _ => None,
        })
        .collect();
    if load_reports.is_empty() {
        assert!(cleared.is_empty(), "{o:#?}");
    } else {
        assert_eq!(cleared.len(), 1, "the load must be cleared once: {o:#?}");
        let after = cleared[0].saturating_sub(o.load_stopped);
        assert!(after <= WINDOW + 1, "the load was cleared {after} ticks after it stopped: {o:#?}");
        eprintln!("load cleared {after} ticks after it stopped");
        // The next report lists it.
        let at = o.seen.iter().position(|s| matches!(s, Seen::Cleared { line, .. } if *line == load_line)).unwrap();
        let next = o.seen[at..].iter().find_map(|s| match s {
            Seen::Leak { report: Some(p), .. } => Some(p.clone()),
            _ => None,
        });
        if let Some(p) = next {
            let report = MonitorReport::read_json(&p).unwrap();
            assert!(
                report.monitor.cleared.iter().any(|c| c.location.line == load_line),
                "the report after the clearing does not list it: {:?}",
                report.monitor.cleared
            );
        }
    }
    for s in &o.seen {
        if let Seen::Leak { growing_seconds, .. } = s {
            assert!(*growing_seconds > 0.0, "{s:?}");
        }
    }
    eprintln!("leak named {took} ticks after it started ({:?} wall for the run)", o.elapsed);
    took
}
