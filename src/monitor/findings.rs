//! What the monitor finds and counts: the public finding types, their
//! warning text, and the byte formatting they share.

#![forbid(unsafe_code)]

use crate::trend::Verdict;
use crate::{Frame, TaskStat};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Spawn sites named in a task warning.
const TASK_SITES_NAMED: usize = 5;

/// Counters of a [`Monitor`](crate::Monitor)'s work.
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
    /// Reports written (leak, final, on-demand and pre-OOM reports).
    pub reports_written: u64,
    /// Reports that could not be written (only the first of a run of
    /// failures is logged).
    pub report_errors: u64,
    /// Leak findings (first reports and re-reports).
    pub leak_findings: u64,
    /// Reported sites that then stopped growing (see [`ClearedFinding`]).
    pub cleared_findings: u64,
    /// RSS warnings.
    pub rss_warnings: u64,
    /// Live-task warnings.
    pub task_warnings: u64,
    /// The latest report written.
    pub last_report: Option<PathBuf>,
    /// The baseline RSS, once taken (see [`MonitorBuilder::rss_growth_warning`](crate::MonitorBuilder::rss_growth_warning)).
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
    /// Seconds the site has been growing: since the start of its growth in
    /// the window, or since it was first reported if that is earlier.
    #[serde(default)]
    pub growing_seconds: f64,
    /// Live bytes at each snapshot of the window.
    pub sizes: Vec<u64>,
    /// Distinct stacks at this site that grew steadily.
    pub stacks: usize,
    /// Whether this report is about this site (first report, or grown past
    /// the re-report factor); `false` for a site reported before and
    /// listed again for context.
    pub fresh: bool,
    /// The context its blocks were allocated under (see [`crate::context`]):
    /// the same line under two contexts is two suspects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
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
            ": {:+} in {:.1} s ({}/min), growing for {:.1} s, grew in {:.0}% of {} intervals, {} live in {} block{}",
            Bytes(self.growth_bytes as f64),
            self.window_seconds,
            Bytes(self.slope_bytes_per_sec * 60.0),
            self.growing_seconds,
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

/// What a reported site turned out to be, once it stopped growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClearedKind {
    /// It grew at an even pace, then stopped and stayed: a one-time load.
    Load,
    /// Its growth slowed down before it stopped: a cache that filled.
    Plateau,
    /// It gave back at least half of what it had grown.
    ShrankBack,
}

impl ClearedKind {
    /// `"load"`, `"plateau"` or `"shrank_back"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClearedKind::Load => "load",
            ClearedKind::Plateau => "plateau",
            ClearedKind::ShrankBack => "shrank_back",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ClearedKind::Load => "a one-time load (grew, then flat)",
            ClearedKind::Plateau => "a cache that filled (growth slowed to a plateau)",
            ClearedKind::ShrankBack => "it shrank back",
        }
    }
}

/// A site reported as growing that then stopped: the monitor withdraws its
/// report. Logged at `info` level and listed in the next report's
/// `monitor.cleared`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClearedFinding {
    /// The call site: file, line, function.
    pub location: Frame,
    /// What the site turned out to be.
    pub kind: ClearedKind,
    /// Live bytes at the site now.
    pub size_bytes: u64,
    /// The most live bytes seen at the site since it started growing.
    pub peak_bytes: u64,
    /// Live bytes when it started growing.
    pub base_bytes: u64,
    /// Live bytes at its last report.
    pub reported_bytes: u64,
    /// Seconds it grew, from the start of its growth to its last rise.
    pub growing_seconds: f64,
    /// Seconds since its last rise.
    pub flat_seconds: f64,
    /// The last report that named it as growing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
}

impl std::fmt::Display for ClearedFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leaktrace: cleared: {}", self.location)?;
        if !self.location.function.is_empty() && !self.location.file.is_empty() {
            write!(f, " in {}", self.location.function)?;
        }
        write!(
            f,
            " is not a leak: it grew for {:.1} s ({:+}), then not for {:.1} s: {}; {} live, peak {}",
            self.growing_seconds,
            Bytes(self.peak_bytes as f64 - self.base_bytes as f64),
            self.flat_seconds,
            self.kind.describe(),
            Bytes(self.size_bytes as f64),
            Bytes(self.peak_bytes as f64),
        )?;
        if let Some(p) = &self.report {
            write!(f, "; withdraws {}", p.display())?;
        }
        Ok(())
    }
}

/// RSS passed the configured multiple of its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct RssFinding {
    /// RSS now.
    pub rss_bytes: u64,
    /// VMS now.
    pub vms_bytes: u64,
    /// The baseline RSS (see [`MonitorBuilder::rss_growth_warning`](crate::MonitorBuilder::rss_growth_warning)).
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

/// Something the monitor found; passed to [`MonitorBuilder::on_finding`](crate::MonitorBuilder::on_finding).
/// Its `Display` is the warning the monitor logged.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Finding {
    /// A site grows steadily.
    Leak(LeakFinding),
    /// RSS passed its warning level.
    Rss(RssFinding),
    /// Live tasks passed their warning level.
    Tasks(TasksFinding),
    /// A site reported as growing stopped growing: not a leak after all.
    Cleared(ClearedFinding),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Leak(l) => {
                let what = if l.repeat { "steady growth continues" } else { "steady growth" };
                match &l.suspect.context {
                    Some(ctx) => write!(f, "leaktrace: {what} under `{ctx}` at {}", l.suspect)?,
                    None => write!(f, "leaktrace: {what} at {}", l.suspect)?,
                }
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
            Finding::Cleared(c) => write!(f, "{c}"),
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

/// Formats a byte count with a binary unit.
pub(super) struct Bytes(pub(super) f64);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_format() {
        assert_eq!(Bytes(512.0).to_string(), "512 B");
        assert_eq!(Bytes(1536.0).to_string(), "1.5 KiB");
        assert_eq!(format!("{:+}", Bytes(3.0 * 1048576.0)), "+3.0 MiB");
        assert_eq!(format!("{:+}", Bytes(-2048.0)), "-2.0 KiB");
    }
}
