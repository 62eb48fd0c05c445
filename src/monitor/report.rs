//! The report the monitor writes for a finding: a diff from the window's
//! first snapshot to the latest, the suspects first, plus a `monitor` section.

#![forbid(unsafe_code)]

use super::exit::ReportReason;
use super::findings::{Bytes, ClearedFinding, LeakSuspect};
use super::judge::site_key;
use super::oom::MemoryLimitInfo;
use super::worker::{Entry, Worker};
use crate::diff::GroupBy;
use crate::tasks::TaskCount;
use crate::{Snapshot, SnapshotDiff};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Numbers report files, over every monitor of the process.
static REPORT_SEQ: AtomicU64 = AtomicU64::new(0);

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
    /// Sites reported before that stopped growing since the previous
    /// report: the monitor withdraws those reports.
    #[serde(default)]
    pub cleared: Vec<ClearedFinding>,
    /// Why it was written: `"leak"` (a finding), `"exit"`, `"sigterm"`,
    /// `"sigint"`, `"sigusr2"` (on demand) or `"pre-oom"`.
    #[serde(default)]
    pub reason: ReportReason,
    /// For a pre-OOM report: the limit, and how near it the process was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<MemoryLimitInfo>,
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

impl Worker {
    pub(super) fn snapshot_of(&self, e: &Entry) -> Snapshot {
        let mut snap = crate::snapshot::build(&format!("monitor tick {}", e.tick), &e.raw);
        snap.process = e.process.clone();
        let mut tasks = e.tasks.clone();
        crate::tasks::sort_counts(&mut tasks);
        snap.tasks = tasks.iter().map(TaskCount::stat).collect();
        snap.totals.tracker_bytes = e.tracker_bytes;
        snap
    }

    /// The window's snapshots, `times` their offsets.
    pub(super) fn window_samples(&self, times: &[f64]) -> Vec<WindowSample> {
        self.window
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
            .collect()
    }

    /// Writes the report; `None` when stopped first or when it cannot be
    /// written (logged once, until a report is written again).
    pub(super) fn write_report(
        &mut self,
        suspects: &[LeakSuspect],
        times: &[f64],
        reason: ReportReason,
        memory_limit: Option<MemoryLimitInfo>,
    ) -> Option<PathBuf> {
        let (first, last) = (self.window.front()?, self.window.back()?);
        // Resolve stack by stack, checking for a stop in between: a stop
        // waits for one stack at most, and `build` then hits the caches.
        // One batch: the debug info is opened once for the whole report.
        let _batch = crate::symbolize::Batch::begin();
        for &(id, _, _) in first.raw.stacks.iter().chain(&last.raw.stacks) {
            if self.cancelled() {
                return None;
            }
            crate::snapshot::traceback_of_stack(id);
        }
        let older = self.snapshot_of(first);
        let newer = self.snapshot_of(last);
        let mut diff = newer.compare_to(&older, GroupBy::Line);
        suspects_first(&mut diff, suspects);
        let samples = self.window_samples(times);
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
                cleared: self.pending_cleared.clone(),
                reason,
                memory_limit,
            },
        };
        let seq = REPORT_SEQ.fetch_add(1, Relaxed) + 1;
        let stamp: String = crate::clock::rfc3339(last.raw.unix_seconds)
            .chars()
            .take(19)
            .filter(|c| c.is_ascii_digit() || *c == 'T')
            .collect();
        let name = format!("{reason}-{}-{stamp}Z-{:03}.json", std::process::id(), seq);
        let dir = &self.settings.report_dir;
        let path = dir.join(name);
        let written = std::fs::create_dir_all(dir)
            .map_err(|io| crate::Error::Io { path: dir.clone(), io })
            .and_then(|()| crate::write_atomic(&path, report.to_json().as_bytes()));
        match written {
            Ok(()) => {
                if std::mem::take(&mut self.report_failing) {
                    log::warn!("leaktrace: reports are written again, to {}", dir.display());
                }
                let mut stats = self.shared.stats.lock();
                stats.reports_written += 1;
                stats.last_report = Some(path.clone());
                Some(path)
            }
            Err(e) => {
                // A full disk or a read-only directory fails at every
                // report: said once, not at every tick.
                if !std::mem::replace(&mut self.report_failing, true) {
                    log::error!(
                        "leaktrace: cannot write the {reason} report: {e}; the monitor goes on, and says nothing more of failed reports until one is written"
                    );
                }
                self.shared.stats.lock().report_errors += 1;
                None
            }
        }
    }

    /// A report asked for (exit, signal, pre-OOM): a snapshot of now joins
    /// the window, and the report compares it with the window's first, the
    /// sites judged to leak so far first. Logged once. A final report on
    /// exit needs two snapshots before it: a program that ran for less than
    /// two intervals has no trend to tell.
    pub(super) fn asked_report(&mut self, reason: ReportReason, memory_limit: Option<MemoryLimitInfo>) {
        let _ignore = crate::hot::control::ignore();
        if reason == ReportReason::Exit && self.window.len() < 2 {
            return;
        }
        self.serving = true;
        let entry = self.take_entry();
        self.push_entry(entry);
        let times = self.window_times();
        let suspects = self.suspects_now(&times);
        let path = self.write_report(&suspects, &times, reason, memory_limit.clone());
        self.serving = false;
        let (Some(first), Some(last)) = (self.window.front(), self.window.back()) else {
            return;
        };
        let mut text = match &memory_limit {
            Some(m) => format!(
                "leaktrace: pre-OOM: {} is {} ({:.0}% of the memory limit {}, {}; report above {:.0}%)",
                m.measure,
                Bytes(m.used_bytes as f64),
                m.used_bytes as f64 * 100.0 / m.limit_bytes.max(1) as f64,
                Bytes(m.limit_bytes as f64),
                m.source,
                m.share * 100.0
            ),
            None => format!("leaktrace: {reason} report"),
        };
        text.push_str(&format!(
            "; traced heap {} live ({:+} in {:.1} s)",
            Bytes(last.raw.current as f64),
            Bytes(last.raw.current as f64 - first.raw.current as f64),
            times.last().copied().unwrap_or(0.0)
        ));
        match suspects.first() {
            Some(s) => text.push_str(&format!("; {} growing, first {s}", suspects.len())),
            None => text.push_str("; no site grows steadily"),
        }
        let level = asked_report_level(!suspects.is_empty(), memory_limit.is_some(), path.is_some());
        match &path {
            Some(p) => text.push_str(&format!("; report: {}", p.display())),
            None => text.push_str("; no report written"),
        }
        log::log!(level, "{text}");
    }
}

/// The level an asked-for report is logged at: a warning when a site grows,
/// memory runs short, or the report could not be written; otherwise (a
/// clean exit, a signal with nothing growing) information only, so that a
/// healthy service's shutdown logs no warning.
pub(super) fn asked_report_level(growing: bool, memory_limit: bool, written: bool) -> log::Level {
    if growing || memory_limit || !written {
        log::Level::Warn
    } else {
        log::Level::Info
    }
}

/// Moves the suspects' sites to the front of the diff, in suspect order,
/// and renumbers the ranks.
pub(super) fn suspects_first(diff: &mut SnapshotDiff, suspects: &[LeakSuspect]) {
    let mut front = Vec::with_capacity(diff.sites.len());
    for s in suspects {
        let key = site_key(&s.location, s.context.as_deref());
        if let Some(i) = diff.sites.iter().position(|d| site_key(&d.location, d.context.as_deref()) == key) {
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
    use crate::trend::Verdict;
    use crate::Frame;

    #[test]
    fn suspects_go_first_in_the_diff() {
        let fr = |line| Frame { function: "f".into(), file: "src/a.rs".into(), line, ..Frame::default() };
        let site = |line, size_diff| crate::StatisticDiff {
            rank: 0,
            location: fr(line),
            size: 0,
            size_diff,
            count: 0,
            count_diff: 0,
            growth_bytes_per_sec: 0.0,
            traceback: vec![fr(line)].into(),
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
            growing_seconds: 1.0,
            sizes: vec![0, 10],
            stacks: 1,
            fresh: true,
            context: None,
        };
        suspects_first(&mut diff, std::slice::from_ref(&suspect));
        let order: Vec<(u32, usize)> = diff.sites.iter().map(|s| (s.location.line, s.rank)).collect();
        assert_eq!(order, vec![(3, 1), (1, 2), (2, 3)]);
        // A stripped binary: no file, sites told apart by function (as the
        // diff groups them); the suspect still goes first.
        let bare =
            |function: &str| Frame { function: function.into(), file: String::new(), line: 0, ..Frame::default() };
        diff.sites[1].location = bare("app::grow");
        diff.sites[2].location = bare("app::churn");
        let stripped = LeakSuspect { location: bare("app::grow"), ..suspect };
        suspects_first(&mut diff, &[stripped]);
        assert_eq!(diff.sites[0].location.function, "app::grow");
    }
}
