//! The worker's judging, fed synthetic raw snapshots: one call to
//! `Worker::judge` per tick, no thread, no allocator.

#![forbid(unsafe_code)]

use super::findings::{ClearedFinding, ClearedKind, Finding, LeakFinding};
use super::report::MonitorReport;
use super::worker::{Entry, Worker};
use super::{Settings, Shared};
use crate::hot::control::StackId;
use crate::snapshot::RawSnapshot;
use crate::trend::Verdict;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Stack ids no real stack has: they resolve to the unknown frame, so they
/// are all one site.
const A: StackId = crate::hot::control::UNKNOWN_STACK - 10;
const B: StackId = A + 1;
const C: StackId = A + 2;

fn settings(dir: &Path, window: usize, min_window: usize, min_growth_bytes: u64) -> Settings {
    Settings {
        interval: Duration::from_secs(1),
        report_dir: dir.to_path_buf(),
        window,
        min_window,
        min_growth_bytes,
        min_grew_fraction: 0.5,
        rereport_factor: 2.0,
        rss_growth_warning: None,
        live_tasks_warning: None,
        oom_report_share: None,
        memory_limit_bytes: None,
    }
}

fn worker(dir: &Path) -> Worker {
    Worker::new(settings(dir, 8, 5, 1000), Vec::new(), Shared::new(false, Vec::new(), Duration::from_secs(1)))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leaktrace-monitor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One tick: `(stack, bytes, blocks)`, in sampled mode when `mean` is set.
fn feed_raw(w: &mut Worker, stacks: &[(StackId, u64, u64)], mean: Option<u64>) -> Vec<Finding> {
    let t = w.tick as f64;
    let mut stacks = stacks.to_vec();
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
        sample_mean: mean,
    })
}

fn feed(w: &mut Worker, stacks: &[(StackId, u64)]) -> Vec<Finding> {
    let stacks: Vec<(StackId, u64, u64)> = stacks.iter().map(|&(id, b)| (id, b, b / 100)).collect();
    feed_raw(w, &stacks, None)
}

fn leaks(f: &[Finding]) -> Vec<&LeakFinding> {
    f.iter()
        .filter_map(|f| match f {
            Finding::Leak(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn cleared(f: &[Finding]) -> Vec<&ClearedFinding> {
    f.iter()
        .filter_map(|f| match f {
            Finding::Cleared(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn a_leak_that_grows_in_bursts_under_churn_is_reported() {
    let dir = scratch("bursty");
    let mut s = settings(&dir, 30, 10, 1000);
    s.min_grew_fraction = super::Monitor::DEFAULT_MIN_GREW_FRACTION;
    let mut w = Worker::new(s, Vec::new(), Shared::new(false, Vec::new(), Duration::from_secs(1)));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut named_at = None;
    for i in 0..40u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // One site (both ids resolve to the unknown frame): a 5000 B batch
        // kept every 4th tick, under 0-50 KB of churn.
        let f = feed(&mut w, &[(A, 5000 * (i / 4)), (B + 100, rng % 50_000)]);
        if named_at.is_none() && !leaks(&f).is_empty() {
            named_at = Some(i);
        }
    }
    let at = named_at.expect("the bursty leak is named");
    assert!(at < 30, "named at tick {at}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reports_a_steady_stack_once_then_on_doubling_then_clears_it() {
    let dir = scratch("unit");
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
    assert_eq!(l.suspect.growing_seconds, 4.0);
    assert!(l.suspect.to_string().contains("growing for 4.0 s"), "{l:?}");
    let path = l.report.clone().expect("a report");
    let report = MonitorReport::read_json(&path).unwrap();
    assert_eq!(report.monitor.suspects[0].sizes, l.suspect.sizes);
    assert_eq!(report.monitor.samples.len(), 5);
    assert!(report.monitor.cleared.is_empty());
    // The diff has every site, the suspect's first.
    assert_eq!(report.diff.sites[0].location, l.suspect.location);
    assert_eq!(report.diff.sites[0].rank, 1);

    // Growing on, but not yet doubled: silent.
    for i in 5..8 {
        assert!(feed(&mut w, &[(A, 1000 * i), (B, churn(i)), (C, step(i))]).is_empty(), "tick {i}");
    }
    // Doubled since the report (8000 >= 2 x 4000): reported again, and
    // the growth is counted from its start, beyond the window.
    let again = feed(&mut w, &[(A, 8000), (B, churn(8)), (C, step(8))]);
    let again = leaks(&again);
    assert_eq!(again.len(), 1);
    assert!(again[0].repeat);
    assert_eq!(again[0].suspect.growing_seconds, 8.0);
    assert_ne!(again[0].report, Some(path));
    assert_eq!(w.sites.len(), 1);

    // Flat: cleared once, within a window of its last rise, as a load; then
    // forgotten a window later.
    let mut flat = Vec::new();
    for _ in 0..18 {
        flat.push(feed(&mut w, &[(A, 8000), (B, 0), (C, 100_000)]));
    }
    assert!(flat.iter().all(|f| leaks(f).is_empty()), "{flat:?}");
    let at: Vec<usize> = (0..flat.len()).filter(|&i| !cleared(&flat[i]).is_empty()).collect();
    assert_eq!(at.len(), 1, "{flat:?}");
    assert!(at[0] < 8, "cleared {} ticks after its last rise", at[0] + 1);
    let c = cleared(&flat[at[0]])[0].clone();
    assert_eq!(c.kind, ClearedKind::Load);
    assert_eq!((c.size_bytes, c.peak_bytes, c.base_bytes, c.reported_bytes), (8000, 8000, 0, 8000));
    assert_eq!(c.growing_seconds, 8.0);
    assert_eq!(c.report, again[0].report);
    assert!(c.to_string().starts_with("leaktrace: cleared: "), "{c}");
    assert!(c.to_string().contains("one-time load"), "{c}");
    assert_eq!(w.shared.stats.lock().cleared_findings, 1);
    assert!(w.sites.is_empty());

    // Growing again is a new finding, not a repeat; its report lists the
    // clearing.
    let mut next = Vec::new();
    for i in 1..=8 {
        next.extend(feed(&mut w, &[(A, 8000 + 2000 * i), (C, 100_000)]));
    }
    let next = leaks(&next);
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(!next[0].repeat);
    let report = MonitorReport::read_json(next[0].report.as_ref().unwrap()).unwrap();
    assert_eq!(report.monitor.cleared, vec![c]);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn churn_and_steps_are_never_findings() {
    let dir = scratch("unit2");
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
fn a_load_that_ended_is_not_reported_as_continuing() {
    let dir = scratch("unit3");
    let mut w =
        Worker::new(settings(&dir, 30, 10, 1000), Vec::new(), Shared::new(false, Vec::new(), Duration::from_secs(1)));
    // Grows 1000 B a tick for 16 ticks, then flat for 40.
    let mut out = Vec::new();
    for i in 0..56u64 {
        out.push(feed(&mut w, &[(A, 1000 * i.min(16))]));
    }
    let reported: Vec<usize> = (0..out.len()).filter(|&i| !leaks(&out[i]).is_empty()).collect();
    assert!(reported.iter().all(|&i| i <= 16), "reported at ticks {reported:?}");
    let at: Vec<usize> = (0..out.len()).filter(|&i| !cleared(&out[i]).is_empty()).collect();
    assert_eq!(at.len(), 1, "{out:?}");
    assert!(at[0] > 16 && at[0] <= 16 + 30, "cleared at tick {}", at[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_that_fills_clears_as_a_plateau_and_a_freed_load_as_shrank_back() {
    let dir = scratch("unit4");
    let mut w =
        Worker::new(settings(&dir, 30, 10, 10_000), Vec::new(), Shared::new(false, Vec::new(), Duration::from_secs(1)));
    // Fills towards 1 MB, each tick a tenth of what is left.
    let mut size = 0f64;
    let mut kinds = Vec::new();
    for _ in 0..80 {
        size += (1e6 - size) / 10.0;
        kinds.extend(cleared(&feed(&mut w, &[(A, size as u64)])).iter().map(|c| c.kind));
    }
    assert_eq!(kinds, vec![ClearedKind::Plateau]);
    let mut w =
        Worker::new(settings(&dir, 30, 10, 10_000), Vec::new(), Shared::new(false, Vec::new(), Duration::from_secs(1)));
    let mut kinds = Vec::new();
    for i in 0..60u64 {
        let size = if i < 20 { 50_000 * i } else { 10_000 };
        kinds.extend(cleared(&feed(&mut w, &[(A, size)])).iter().map(|c| c.kind));
    }
    assert_eq!(kinds, vec![ClearedKind::ShrankBack]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sampled stack's estimate: `samples` sampled 64 KiB blocks at the
/// 512 KiB mean, each weighing 557 KiB.
fn sampled(samples: u64) -> (u64, u64) {
    let weight = super::judge::sample_weight(65_536, 1, 512 * 1024);
    ((samples as f64 * weight) as u64, (samples as f64 * weight / 65_536.0) as u64)
}

#[test]
fn a_sampled_leak_is_named_and_a_sampled_load_cleared() {
    let dir = scratch("unit5");
    let mut w = Worker::new(
        settings(&dir, 30, 10, 1 << 20),
        Vec::new(),
        Shared::new(false, Vec::new(), Duration::from_secs(1)),
    );
    let mean = Some(512 * 1024);
    // One sample every third tick (a rise in a third of the intervals:
    // never steady by the share of intervals), for 20 ticks, then none.
    let mut out = Vec::new();
    for i in 0..70u64 {
        let (bytes, blocks) = sampled(i.min(20) / 3);
        out.push(feed_raw(&mut w, &[(A, bytes, blocks)], mean));
    }
    let named: Vec<usize> = (0..out.len()).filter(|&i| !leaks(&out[i]).is_empty()).collect();
    assert!(!named.is_empty() && named[0] <= 15, "named at ticks {named:?}");
    assert!(named.iter().all(|&i| i <= 20), "named at ticks {named:?}");
    let l = leaks(&out[named[0]])[0];
    assert_eq!(l.suspect.verdict, Verdict::Steady);
    let at: Vec<usize> = (0..out.len()).filter(|&i| !cleared(&out[i]).is_empty()).collect();
    assert_eq!(at.len(), 1, "cleared at {at:?}");
    // Its last sample came at tick 18: cleared within a window of it.
    assert!(at[0] > 20 && at[0] <= 18 + 30, "cleared at tick {}", at[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sampled_noise_is_never_a_finding() {
    let dir = scratch("unit6");
    let mut w = Worker::new(
        settings(&dir, 30, 10, 1 << 20),
        Vec::new(),
        Shared::new(false, Vec::new(), Duration::from_secs(1)),
    );
    let mean = Some(512 * 1024);
    for i in 0..80u64 {
        // A churned buffer caught live at one tick in five; a pool whose
        // sampled blocks come and go; one sampled block kept for good.
        let churn = sampled(u64::from(i % 5 == 0));
        let pool = sampled([0, 1, 2, 1, 3, 2, 0, 1][(i % 8) as usize]);
        let kept = sampled(u64::from(i >= 7));
        let f = feed_raw(&mut w, &[(A, churn.0, churn.1), (B, pool.0, pool.1), (C, kept.0, kept.1)], mean);
        assert!(f.is_empty(), "tick {i}: {f:?}");
    }
    assert!(!dir.exists(), "no report directory created");
}

#[test]
fn leak_reports_say_why_and_a_failing_dir_is_counted_not_fatal() {
    let dir = scratch("reason");
    let mut w = worker(&dir);
    let mut path = None;
    for i in 0..8 {
        for f in leaks(&feed(&mut w, &[(A, 1000 * i)])) {
            path = path.or(f.report.clone());
        }
    }
    let path = path.expect("a leak report");
    assert!(path.file_name().unwrap().to_string_lossy().starts_with("leak-"), "{}", path.display());
    let report = MonitorReport::read_json(&path).unwrap();
    assert_eq!(report.monitor.reason, super::ReportReason::Leak);
    assert!(report.monitor.memory_limit.is_none());
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"reason\": \"leak\""));

    // A report dir under a regular file cannot be created: each failed
    // write is counted, and the worker goes on.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut w = Worker::new(
        settings(&file.join("reports"), 8, 5, 1000),
        Vec::new(),
        Shared::new(false, Vec::new(), Duration::from_secs(1)),
    );
    let mut findings = 0;
    for i in 0..12 {
        findings += leaks(&feed(&mut w, &[(A, 1000 * i * i)])).len();
    }
    assert!(findings >= 2, "{findings} findings");
    let stats = w.shared.stats.lock().clone();
    assert_eq!(stats.reports_written, 0);
    assert_eq!(stats.report_errors as usize, findings);
    assert!(w.report_failing);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_steady_leak_after_a_stall_in_the_ticks_is_still_growing() {
    use super::judge::growing_recently;
    // Ticks every 50 ms, then a report written in between stalls them for
    // 270 ms: the interval across the recent third's start is long.
    let mut times: Vec<f64> = (0..13).map(|i| i as f64 * 0.05).collect();
    times.extend([0.88, 0.9, 0.95]);
    let leak: Vec<u64> = times.iter().map(|t| (t * 3_000_000.0) as u64 + 16_384).collect();
    // Measured from the first snapshot after the cut, the recent third held
    // 7% of the gain, under the 15% asked for: a steady leak looked stopped.
    assert!(growing_recently(&times, &leak), "{leak:?}");
    // Growth that really stopped before the stall still says so.
    let stopped: Vec<u64> = times.iter().map(|&t| (t.min(0.6) * 3_000_000.0) as u64).collect();
    assert!(!growing_recently(&times, &stopped));
}

#[test]
fn an_asked_report_warns_only_when_something_is_wrong() {
    use super::report::asked_report_level;
    use log::Level::{Info, Warn};
    // A clean exit of a healthy program: information, not a warning.
    assert_eq!(asked_report_level(false, false, true), Info);
    assert_eq!(asked_report_level(true, false, true), Warn, "a site grows");
    assert_eq!(asked_report_level(false, true, true), Warn, "memory runs short");
    assert_eq!(asked_report_level(false, false, false), Warn, "the report could not be written");
}

#[test]
fn a_trend_asked_on_the_monitors_own_thread_is_refused_at_once() {
    use super::NoTrend;
    let shared = Shared::new(false, Vec::new(), Duration::from_secs(1));
    shared.lock.lock().thread = Some(std::thread::current().id());
    let t = std::time::Instant::now();
    assert_eq!(shared.ask_trend(Duration::from_secs(30)).err(), Some(NoTrend::Busy));
    assert!(t.elapsed() < Duration::from_secs(5), "waited {:?} for itself", t.elapsed());
    assert_eq!(shared.lock.lock().trend.asked, 0, "no request left behind");
    // Another thread's request, never served, times out as busy.
    shared.lock.lock().thread = None;
    assert_eq!(shared.ask_trend(Duration::from_millis(50)).err(), Some(NoTrend::Busy));
    // Once the worker has finished, there is no monitor.
    shared.finished();
    assert_eq!(shared.ask_trend(Duration::from_secs(30)).err(), Some(NoTrend::NoMonitor));
}
