//! Statistics, diffs and filters: pure functions on snapshots
//! (tracemalloc's `statistics`, `compare_to` and `Filter`).

#![forbid(unsafe_code)]

use crate::config::glob_match;
use crate::traceback::FrameTable;
use crate::{Frame, Snapshot, TaskStat, Traceback};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

/// How traces are grouped into statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// By the call site's file and line (`'lineno'`).
    Line,
    /// By the call site's function.
    Function,
    /// By the call site's file (`'filename'`).
    File,
    /// By the whole traceback (`'traceback'`).
    Traceback,
    /// By the context the blocks were allocated under (a route, a span;
    /// see `leaktrace::context`), whatever their call site.
    Context,
}

impl GroupBy {
    /// `"line"`, `"function"`, `"file"` or `"traceback"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Line => "line",
            GroupBy::Function => "function",
            GroupBy::File => "file",
            GroupBy::Traceback => "traceback",
            GroupBy::Context => "context",
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" | "lineno" => Ok(GroupBy::Line),
            "function" => Ok(GroupBy::Function),
            "file" | "filename" => Ok(GroupBy::File),
            "traceback" => Ok(GroupBy::Traceback),
            "context" => Ok(GroupBy::Context),
            _ => Err(format!("unknown grouping {s:?} (line, function, file, traceback or context)")),
        }
    }
}

/// Live memory of one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statistic {
    /// The group: the site's file and line for `Line`, its function for
    /// `Function` (line 0), its file for `File` (function empty, line 0).
    pub location: Frame,
    /// The traceback of the group's largest trace; the statistics of one
    /// call share their frames (see [`Traceback`]).
    pub traceback: Traceback,
    /// Live bytes.
    pub size: u64,
    /// Live blocks.
    pub count: u64,
    /// The context of the group's traces (see `leaktrace::context`); `None`
    /// when they were allocated under none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Bytes allocated by the group since `start()`, freed or not.
    #[serde(default)]
    pub alloc_size: u64,
    /// Blocks allocated by the group since `start()`, freed or not.
    #[serde(default)]
    pub alloc_count: u64,
    /// Live bytes and blocks by birth epoch, oldest first (see [`crate::Birth`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub births: Vec<crate::Birth>,
    /// How the live blocks spread over their births (see [`crate::birth_shape`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<crate::BirthShape>,
}

/// One group's change between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatisticDiff {
    /// 1 for the fastest-growing group.
    pub rank: usize,
    /// The group (see [`Statistic::location`]).
    pub location: Frame,
    /// Live bytes in the newer snapshot.
    pub size: u64,
    /// Change in live bytes.
    pub size_diff: i64,
    /// Live blocks in the newer snapshot.
    pub count: u64,
    /// Change in live blocks.
    pub count_diff: i64,
    /// `size_diff` over the time between the snapshots.
    pub growth_bytes_per_sec: f64,
    /// The traceback of the group's largest trace; the sites of one diff
    /// share their frames (see [`Traceback`]).
    pub traceback: Traceback,
    /// The context of the group's traces, if any (see [`Statistic::context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Label, time and totals of one side of a diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's label.
    pub label: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// Traced bytes then.
    pub current_bytes: u64,
    /// Live blocks then.
    pub blocks: u64,
}

/// Total change between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffTotals {
    /// Change in bytes over all groups.
    pub size_diff: i64,
    /// Change in blocks over all groups.
    pub count_diff: i64,
}

/// Live tasks at one spawn site, compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDiff {
    /// The spawn site.
    pub location: Frame,
    /// Tasks alive in the newer snapshot.
    pub live: u64,
    /// Change in live tasks.
    pub live_diff: i64,
    /// Tasks spawned there in total, by the newer snapshot.
    pub spawned: u64,
}

/// The ranked difference between two snapshots (`compare_to`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDiff {
    /// How sites were grouped.
    pub group_by: GroupBy,
    /// The older snapshot.
    pub from: SnapshotInfo,
    /// The newer snapshot.
    pub to: SnapshotInfo,
    /// Seconds between them.
    pub elapsed_seconds: f64,
    /// Total change.
    pub totals: DiffTotals,
    /// Every group present in either snapshot, fastest-growing first.
    pub sites: Vec<StatisticDiff>,
    /// Live tasks per spawn site, most grown first.
    #[serde(default)]
    pub tasks: Vec<TaskDiff>,
}

/// Seconds between two snapshots: the monotonic clock when both come from
/// one process, else the wall clock.
pub fn elapsed_seconds(older: &Snapshot, newer: &Snapshot) -> f64 {
    let mono = newer.monotonic_seconds - older.monotonic_seconds;
    let elapsed = if older.pid == newer.pid && older.monotonic_seconds > 0.0 && mono >= 0.0 {
        mono
    } else {
        (newer.unix_seconds - older.unix_seconds).max(0.0)
    };
    // Clocks far apart (a corrupt or hand-made file) can differ by more than
    // an f64 holds; JSON would write the infinity as `null`, unreadable.
    elapsed.min(f64::MAX)
}

/// `new - old`, saturating: counts beyond `i64::MAX` come only from corrupt
/// or hand-made files, and must not panic (debug) or wrap (release).
fn signed_diff(new: u64, old: u64) -> i64 {
    (new as i128 - old as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The sum of `diffs`, saturating.
fn saturating_sum(diffs: impl Iterator<Item = i64>) -> i64 {
    diffs.fold(0i64, i64::saturating_add)
}

/// A group's identity; every grouping but `Context` also keeps contexts apart.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Line(String, u32, String, Option<String>),
    Function(String, Option<String>),
    File(String, Option<String>),
    /// The traceback as indices into the call's one frame table, where
    /// equal frames have one index.
    Traceback(Arc<[u32]>, Option<String>),
    Context(Option<String>),
}

/// The label shown for blocks allocated under no context, grouped by context.
pub(crate) const NO_CONTEXT: &str = "[no context]";

/// The group of a trace with call site `site` (the whole traceback `tb`,
/// for `Traceback`) under `context`.
fn key_of(group_by: GroupBy, site: &Frame, tb: Option<Arc<[u32]>>, context: Option<&str>) -> Key {
    let ctx = context.map(str::to_owned);
    match group_by {
        // Frames without a file (a stripped binary) are told apart by
        // function, as the monitor and leak checks key them.
        GroupBy::Line => {
            let func = if site.file.is_empty() { site.function.clone() } else { String::new() };
            Key::Line(site.file.clone(), site.line, func, ctx)
        }
        GroupBy::Function => Key::Function(site.function.clone(), ctx),
        GroupBy::File => Key::File(site.file.clone(), ctx),
        GroupBy::Traceback => Key::Traceback(tb.unwrap_or_default(), ctx),
        GroupBy::Context => Key::Context(ctx),
    }
}

/// The location of a group (see [`Statistic::location`]) whose first trace
/// has call site `site`.
fn location_of(group_by: GroupBy, site: &Frame, context: Option<&str>) -> Frame {
    match group_by {
        GroupBy::Line | GroupBy::Traceback => site.clone(),
        GroupBy::Function => Frame { line: 0, ..site.clone() },
        GroupBy::File => Frame::new("", site.file.clone(), 0),
        GroupBy::Context => Frame::new(context.unwrap_or(NO_CONTEXT), "", 0),
    }
}

/// Groups, with the traceback of the largest trace of each: `snapshot` is
/// snapshot `which` of `table`, and every traceback points into `table`.
fn group(snapshot: &Snapshot, group_by: GroupBy, table: &FrameTable, which: usize) -> HashMap<Key, (Statistic, u64)> {
    let unknown = Frame::new(crate::symbolize::UNKNOWN, "", 0);
    let mut out: HashMap<Key, (Statistic, u64)> = HashMap::new();
    for trace in &snapshot.traces {
        let indices = || table.indices(which, &trace.frames);
        let first = indices().next();
        let site = first.map_or(&unknown, |i| table.frame(i));
        let context = snapshot.context_of(trace);
        // Grouped by traceback, the key and the statistic share one array.
        let whole: Option<Arc<[u32]>> = (group_by == GroupBy::Traceback).then(|| indices().collect());
        let key = key_of(group_by, site, whole.clone(), context);
        let e = out.entry(key).or_insert_with(|| {
            let stat = Statistic {
                location: location_of(group_by, site, context),
                traceback: Traceback::default(),
                size: 0,
                count: 0,
                context: context.map(str::to_owned),
                alloc_size: 0,
                alloc_count: 0,
                births: Vec::new(),
                shape: None,
            };
            (stat, 0)
        });
        crate::births::merge_births(&mut e.0.births, &trace.births);
        e.0.size = e.0.size.saturating_add(trace.size);
        e.0.count = e.0.count.saturating_add(trace.count);
        e.0.alloc_size = e.0.alloc_size.saturating_add(trace.alloc_size);
        e.0.alloc_count = e.0.alloc_count.saturating_add(trace.alloc_count);
        if e.0.traceback.is_empty() || trace.size > e.1 {
            if group_by == GroupBy::Line || group_by == GroupBy::Traceback {
                e.0.location.function = first.map(|i| table.frame(i).function.clone()).unwrap_or_default();
            }
            e.0.traceback = table.traceback(whole.unwrap_or_else(|| indices().collect()));
            e.1 = trace.size;
        }
    }
    out
}

fn location_order(a: &Frame, b: &Frame) -> Ordering {
    (&a.file, a.line, &a.function).cmp(&(&b.file, b.line, &b.function))
}

impl Snapshot {
    /// Live memory per group, largest first (ties by count, then location).
    ///
    /// Only groups with live blocks, as tracemalloc lists them; see
    /// [`Snapshot::statistics_with_freed`] for every group that allocated.
    pub fn statistics(&self, group_by: GroupBy) -> Vec<Statistic> {
        let mut v = self.statistics_with_freed(group_by);
        v.retain(|s| s.size > 0 || s.count > 0);
        v
    }

    /// Like [`Snapshot::statistics`], and also the groups whose blocks were
    /// all freed: they allocated (`alloc_size`, `alloc_count`) and hold
    /// nothing now. What a "which line allocates the most?" view sorts.
    ///
    /// The tracebacks of the statistics share one copy of the snapshot's
    /// frames (see [`Traceback`]).
    pub fn statistics_with_freed(&self, group_by: GroupBy) -> Vec<Statistic> {
        self.statistics_in(group_by, &FrameTable::of(&[self]), 0)
    }

    /// [`Snapshot::statistics_with_freed`], this snapshot being snapshot
    /// `which` of `table`, whose frames the tracebacks share.
    pub(crate) fn statistics_in(&self, group_by: GroupBy, table: &FrameTable, which: usize) -> Vec<Statistic> {
        let mut v: Vec<Statistic> = group(self, group_by, table, which)
            .into_values()
            .map(|(mut s, _)| {
                if !s.births.is_empty() {
                    s.shape = Some(crate::birth_shape(&s.births, self.epoch));
                }
                s
            })
            .collect();
        v.sort_by(|a, b| {
            b.size
                .cmp(&a.size)
                .then(b.count.cmp(&a.count))
                .then(b.alloc_size.cmp(&a.alloc_size))
                .then_with(|| location_order(&a.location, &b.location))
                .then_with(|| a.context.cmp(&b.context))
                .then_with(|| a.traceback.cmp(&b.traceback))
        });
        v
    }

    /// How memory changed since `older`, one entry per group present in
    /// either snapshot, fastest-growing first: `size_diff` descending, then
    /// `size`, then `count_diff`. The tracebacks of its sites share one
    /// copy of the two snapshots' frames (see [`Traceback`]).
    pub fn compare_to(&self, older: &Snapshot, group_by: GroupBy) -> SnapshotDiff {
        let table = FrameTable::of(&[self, older]);
        let new = group(self, group_by, &table, 0);
        let mut old = group(older, group_by, &table, 1);
        let elapsed = elapsed_seconds(older, self);
        // Clamped: a tiny elapsed time would make the rate infinite (`null`).
        let rate = |d: i64| if elapsed > 0.0 { (d as f64 / elapsed).clamp(-f64::MAX, f64::MAX) } else { 0.0 };
        let mut sites = Vec::with_capacity(new.len() + old.len());
        for (key, (stat, _)) in new {
            let (old_size, old_count) = old.remove(&key).map(|(s, _)| (s.size, s.count)).unwrap_or((0, 0));
            // A group with nothing live on either side (it only allocated
            // and freed) did not change: allocation totals are not growth.
            if stat.size == 0 && stat.count == 0 && old_size == 0 && old_count == 0 {
                continue;
            }
            let size_diff = signed_diff(stat.size, old_size);
            sites.push(StatisticDiff {
                rank: 0,
                location: stat.location,
                size: stat.size,
                size_diff,
                count: stat.count,
                count_diff: signed_diff(stat.count, old_count),
                growth_bytes_per_sec: rate(size_diff),
                traceback: stat.traceback,
                context: stat.context,
            });
        }
        for (_, (stat, _)) in old {
            if stat.size == 0 && stat.count == 0 {
                continue;
            }
            let size_diff = signed_diff(0, stat.size);
            sites.push(StatisticDiff {
                rank: 0,
                location: stat.location,
                size: 0,
                size_diff,
                count: 0,
                count_diff: signed_diff(0, stat.count),
                growth_bytes_per_sec: rate(size_diff),
                traceback: stat.traceback,
                context: stat.context,
            });
        }
        rank(&mut sites);
        let totals = DiffTotals {
            size_diff: saturating_sum(sites.iter().map(|s| s.size_diff)),
            count_diff: saturating_sum(sites.iter().map(|s| s.count_diff)),
        };
        SnapshotDiff {
            group_by,
            from: info(older),
            to: info(self),
            elapsed_seconds: elapsed,
            totals,
            sites,
            tasks: task_diff(&older.tasks, &self.tasks),
        }
    }

    /// A copy keeping only the traces whose call site passes `filters`
    /// (tracemalloc's `filter_traces`).
    pub fn filter_traces(&self, filters: &[Filter]) -> Snapshot {
        let mut out = self.clone();
        out.traces.retain(|t| self.site(t).map(|f| Filter::pass_all(filters, f)).unwrap_or(false));
        out
    }
}

fn info(s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        label: s.label.clone(),
        taken_at: s.taken_at.clone(),
        current_bytes: s.totals.current_bytes,
        blocks: s.totals.blocks,
    }
}

fn rank(sites: &mut [StatisticDiff]) {
    sites.sort_by(|a, b| {
        b.size_diff
            .cmp(&a.size_diff)
            .then(b.size.cmp(&a.size))
            .then(b.count_diff.cmp(&a.count_diff))
            .then_with(|| location_order(&a.location, &b.location))
            .then_with(|| a.context.cmp(&b.context))
            .then_with(|| a.traceback.cmp(&b.traceback))
    });
    for (i, s) in sites.iter_mut().enumerate() {
        s.rank = i + 1;
    }
}

fn task_diff(old: &[TaskStat], new: &[TaskStat]) -> Vec<TaskDiff> {
    let mut before: HashMap<&Frame, u64> = old.iter().map(|t| (&t.location, t.live)).collect();
    let mut out: Vec<TaskDiff> = new
        .iter()
        .map(|t| TaskDiff {
            location: t.location.clone(),
            live: t.live,
            live_diff: signed_diff(t.live, before.remove(&t.location).unwrap_or(0)),
            spawned: t.spawned,
        })
        .collect();
    out.extend(before.into_iter().map(|(loc, live)| TaskDiff {
        location: loc.clone(),
        live: 0,
        live_diff: signed_diff(0, live),
        spawned: 0,
    }));
    out.sort_by(|a, b| {
        b.live_diff.cmp(&a.live_diff).then(b.live.cmp(&a.live)).then_with(|| location_order(&a.location, &b.location))
    });
    out
}

impl SnapshotDiff {
    /// A copy keeping only the groups whose location passes `filters`,
    /// re-ranked, with totals over what is kept.
    pub fn filter(&self, filters: &[Filter]) -> SnapshotDiff {
        let mut out = self.clone();
        out.sites.retain(|s| Filter::pass_all(filters, &s.location));
        rank(&mut out.sites);
        out.totals = DiffTotals {
            size_diff: saturating_sum(out.sites.iter().map(|s| s.size_diff)),
            count_diff: saturating_sum(out.sites.iter().map(|s| s.count_diff)),
        };
        out
    }

    /// The first `n` sites.
    pub fn top(&self, n: usize) -> &[StatisticDiff] {
        &self.sites[..n.min(self.sites.len())]
    }
}

/// Keeps only the statistics whose location passes `filters`.
pub fn filter_statistics(stats: Vec<Statistic>, filters: &[Filter]) -> Vec<Statistic> {
    stats.into_iter().filter(|s| Filter::pass_all(filters, &s.location)).collect()
}

/// What a [`Filter`] pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterTarget {
    /// The site's file path.
    File,
    /// The site's function name.
    Function,
}

/// Includes or excludes groups by a glob on their file or function
/// (tracemalloc's `Filter`). With any inclusive filter, a group must match
/// one of them; it must match no exclusive filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Keep (true) or drop (false) what matches.
    pub inclusive: bool,
    /// A glob: `*` is any run of characters, `?` one character.
    pub pattern: String,
    /// What the pattern is matched against.
    pub target: FilterTarget,
}

impl Filter {
    /// Keep groups whose file matches `pattern`.
    pub fn include_file(pattern: impl Into<String>) -> Filter {
        Filter { inclusive: true, pattern: pattern.into(), target: FilterTarget::File }
    }

    /// Drop groups whose file matches `pattern`.
    pub fn exclude_file(pattern: impl Into<String>) -> Filter {
        Filter { inclusive: false, pattern: pattern.into(), target: FilterTarget::File }
    }

    /// Keep groups whose function matches `pattern`.
    pub fn include_function(pattern: impl Into<String>) -> Filter {
        Filter { inclusive: true, pattern: pattern.into(), target: FilterTarget::Function }
    }

    /// Drop groups whose function matches `pattern`.
    pub fn exclude_function(pattern: impl Into<String>) -> Filter {
        Filter { inclusive: false, pattern: pattern.into(), target: FilterTarget::Function }
    }

    /// Whether `frame` matches this filter's pattern (ignoring `inclusive`).
    pub fn matches(&self, frame: &Frame) -> bool {
        match self.target {
            FilterTarget::File => glob_match(&self.pattern, &frame.file),
            FilterTarget::Function => glob_match(&self.pattern, &frame.function),
        }
    }

    /// Whether `frame` passes every filter of `filters`.
    pub fn pass_all(filters: &[Filter], frame: &Frame) -> bool {
        let mut any_include = false;
        let mut included = false;
        for f in filters {
            if f.inclusive {
                any_include = true;
                included |= f.matches(frame);
            } else if f.matches(frame) {
                return false;
            }
        }
        !any_include || included
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::{Totals, Trace};

    fn frame(file: &str, line: u32, function: &str) -> Frame {
        Frame::new(function, file, line)
    }

    /// A snapshot with `(site, size, count)` traces, taken at `t` seconds.
    pub(crate) fn snap(label: &str, t: f64, traces: &[(Frame, u64, u64)]) -> Snapshot {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        for (f, size, count) in traces {
            let idx = frames.iter().position(|x| x == f).unwrap_or_else(|| {
                frames.push(f.clone());
                frames.len() - 1
            });
            out.push(Trace { size: *size, count: *count, frames: vec![idx as u32], ..Trace::default() });
        }
        Snapshot {
            label: label.into(),
            taken_at: crate::clock::rfc3339(1_700_000_000.0 + t),
            unix_seconds: 1_700_000_000.0 + t,
            monotonic_seconds: 100.0 + t,
            pid: 1,
            mode: "exact".into(),
            mean_bytes: None,
            capture: "unwinder".into(),
            frames_per_trace: 16,
            totals: Totals {
                current_bytes: out.iter().map(|t| t.size).sum(),
                blocks: out.iter().map(|t| t.count).sum(),
                ..Totals::default()
            },
            process: None,
            frames,
            traces: out,
            tasks: Vec::new(),
            epoch: 0,
            contexts: Vec::new(),
            modules: Vec::new(),
        }
    }

    /// A snapshot with `(traceback, size, count)` traces, each distinct
    /// frame stored once, taken at `t` seconds.
    pub(crate) fn snap_of(label: &str, t: f64, traces: &[(Vec<Frame>, u64, u64)]) -> Snapshot {
        let mut s = snap(label, t, &[]);
        for (tb, size, count) in traces {
            let frames = tb
                .iter()
                .map(|f| {
                    s.frames.iter().position(|x| x == f).unwrap_or_else(|| {
                        s.frames.push(f.clone());
                        s.frames.len() - 1
                    }) as u32
                })
                .collect();
            s.traces.push(Trace { size: *size, count: *count, frames, ..Trace::default() });
        }
        s.totals.current_bytes = s.traces.iter().map(|t| t.size).sum();
        s.totals.blocks = s.traces.iter().map(|t| t.count).sum();
        s
    }

    /// Three call paths to two sites, and a third site.
    fn paths() -> Vec<(Vec<Frame>, u64, u64)> {
        let (a, b, c) = (frame("src/a.rs", 1, "a"), frame("src/b.rs", 2, "b"), frame("src/c.rs", 3, "c"));
        let main = Frame { path_abs: "/home/ci/app/src/main.rs".into(), ..frame("src/main.rs", 9, "main") };
        vec![
            (vec![a.clone(), b.clone(), main.clone()], 300, 3),
            (vec![a.clone(), c.clone(), main.clone()], 200, 2),
            (vec![b.clone(), main.clone()], 100, 1),
            (vec![c, a, b, main], 50, 1),
        ]
    }

    const GROUPINGS: [GroupBy; 5] =
        [GroupBy::Line, GroupBy::Function, GroupBy::File, GroupBy::Traceback, GroupBy::Context];

    #[test]
    fn the_statistics_of_one_call_share_one_frame_table() {
        let s = snap_of("s", 0.0, &paths());
        for g in GROUPINGS {
            let stats = s.statistics(g);
            assert!(!stats.is_empty());
            assert!(stats.iter().all(|x| x.traceback.shares_frames_with(&stats[0].traceback)), "{g:?}");
            // Each is the traceback of the group's largest trace.
            for x in &stats {
                let largest = s
                    .traces
                    .iter()
                    .filter(|t| s.site(t).is_some_and(|f| g != GroupBy::Line || f.file == x.location.file))
                    .filter(|t| g != GroupBy::Traceback || s.traceback(t) == x.traceback)
                    .max_by_key(|t| t.size)
                    .unwrap();
                if matches!(g, GroupBy::Line | GroupBy::Traceback) {
                    assert_eq!(x.traceback, s.traceback(largest), "{g:?}");
                }
            }
            // Another call has its own table.
            assert!(!s.statistics(g)[0].traceback.shares_frames_with(&stats[0].traceback));
        }
        let by_tb = s.statistics(GroupBy::Traceback);
        assert_eq!(by_tb.len(), 4);
        for (x, (tb, size, _)) in by_tb.iter().zip(paths()) {
            assert_eq!((&x.traceback, x.size), (&Traceback::from(tb), size));
        }
        // The frames are the snapshot's, every key of them.
        assert_eq!(by_tb[0].traceback[2].path_abs, "/home/ci/app/src/main.rs");
    }

    #[test]
    fn the_sites_of_one_diff_share_one_frame_table() {
        let p = paths();
        // The older snapshot has a path the newer lacks, and its frames in
        // another order.
        let mut gone = p.clone();
        gone.reverse();
        gone.push((vec![frame("src/d.rs", 4, "d"), p[0].0[2].clone()], 70, 7));
        let (old, new) = (snap_of("old", 0.0, &gone), snap_of("new", 1.0, &p[..3]));
        for g in GROUPINGS {
            let d = new.compare_to(&old, g);
            assert!(d.sites.iter().all(|x| x.traceback.shares_frames_with(&d.sites[0].traceback)), "{g:?}");
            assert!(d.filter(&[]).sites.iter().all(|x| x.traceback.shares_frames_with(&d.sites[0].traceback)));
        }
        let d = new.compare_to(&old, GroupBy::Traceback);
        assert_eq!(d.sites.len(), 5);
        // Paths in both snapshots are one site each, whatever their indices.
        for (tb, size, _) in &p[..3] {
            let site = d.sites.iter().find(|x| x.traceback == *tb).unwrap();
            assert_eq!((site.size, site.size_diff), (*size, 0));
        }
        let vanished: Vec<&StatisticDiff> = d.sites.iter().filter(|x| x.size == 0).collect();
        assert_eq!(vanished.len(), 2);
        assert_eq!((vanished[0].size_diff, &vanished[0].traceback), (-50, &Traceback::from(p[3].0.clone())));
        assert_eq!((vanished[1].size_diff, &vanished[1].traceback), (-70, &Traceback::from(gone[4].0.clone())));
    }

    #[test]
    fn hand_made_frame_tables_group_as_frames_do() {
        let (a, b) = (frame("src/a.rs", 1, "a"), frame("src/b.rs", 2, "b"));
        let mut s = snap("s", 0.0, &[]);
        // `a` twice (a file this crate did not write), and an index past the table.
        s.frames = vec![a.clone(), b.clone(), Frame { path_abs: "/elsewhere/src/a.rs".into(), ..a.clone() }];
        s.traces = vec![
            Trace { size: 10, count: 1, frames: vec![0, 1], ..Trace::default() },
            Trace { size: 20, count: 1, frames: vec![2, 1, 9], ..Trace::default() },
        ];
        let by_tb = s.statistics(GroupBy::Traceback);
        assert_eq!(by_tb.len(), 1);
        assert_eq!((by_tb[0].size, by_tb[0].count), (30, 2));
        assert_eq!(by_tb[0].traceback, vec![a, b]);
        assert_eq!(by_tb[0].traceback, s.traceback(&s.traces[1]));
        let d = s.compare_to(&s, GroupBy::Traceback);
        assert_eq!(d.sites.len(), 1);
        assert_eq!(d.sites[0].size, 30);
    }

    #[test]
    fn statistics_and_diffs_round_trip_through_json_with_frame_arrays() {
        let p = paths();
        let (old, new) = (snap_of("old", 0.0, &p[1..]), snap_of("new", 1.0, &p[..3]));
        for g in GROUPINGS {
            for stat in new.statistics_with_freed(g) {
                let json = serde_json::to_string(&stat).unwrap();
                let back: Statistic = serde_json::from_str(&json).unwrap();
                assert_eq!(back, stat);
                assert_eq!(serde_json::to_string(&back).unwrap(), json);
                // The array a `Vec<Frame>` wrote, byte for byte.
                let array = serde_json::to_string(&stat.traceback.to_vec()).unwrap();
                assert!(json.contains(&format!("\"traceback\":{array},")), "{json}");
            }
            let d = new.compare_to(&old, g);
            let json = d.to_json();
            let back: SnapshotDiff =
                crate::report::parse_kind(std::path::Path::new("d.json"), &json, "leaktrace.diff").unwrap();
            assert_eq!(back, d);
            assert_eq!(back.to_json(), json);
            for site in &d.sites {
                let array = serde_json::to_string_pretty(&site.traceback.to_vec()).unwrap();
                let array = array.replace('\n', "\n      ");
                assert!(json.contains(&format!("\"traceback\": {array}")), "{json}");
            }
        }
    }

    #[test]
    fn compare_ranks_growth_first_and_keeps_vanished_groups() {
        let a = frame("src/a.rs", 1, "a");
        let b = frame("src/b.rs", 2, "b");
        let c = frame("src/c.rs", 3, "c");
        let old = snap("old", 0.0, &[(a.clone(), 100, 1), (c.clone(), 50, 5)]);
        let new = snap("new", 10.0, &[(a.clone(), 1100, 11), (b.clone(), 500, 2)]);
        let d = new.compare_to(&old, GroupBy::Line);
        let order: Vec<&str> = d.sites.iter().map(|s| s.location.file.as_str()).collect();
        assert_eq!(order, ["src/a.rs", "src/b.rs", "src/c.rs"]);
        assert_eq!(d.sites[0].size_diff, 1000);
        assert_eq!(d.sites[0].count_diff, 10);
        assert_eq!(d.sites[0].growth_bytes_per_sec, 100.0);
        assert_eq!(d.sites[2].size, 0);
        assert_eq!(d.sites[2].size_diff, -50);
        assert_eq!(d.totals.size_diff, 1000 + 500 - 50);
        assert_eq!(d.elapsed_seconds, 10.0);
        assert_eq!(d.sites.iter().map(|s| s.rank).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn ties_break_by_size_then_count_diff() {
        let a = frame("src/a.rs", 1, "a");
        let b = frame("src/b.rs", 1, "b");
        let old = snap("old", 0.0, &[(a.clone(), 0, 0), (b.clone(), 100, 0)]);
        let new = snap("new", 1.0, &[(a.clone(), 100, 1), (b.clone(), 200, 1)]);
        let d = new.compare_to(&old, GroupBy::Line);
        assert_eq!(d.sites[0].location.file, "src/b.rs");
    }

    #[test]
    fn a_snapshot_diffed_with_itself_has_no_change() {
        let a = frame("src/a.rs", 1, "a");
        let s = snap("s", 0.0, &[(a, 100, 1)]);
        let d = s.compare_to(&s, GroupBy::Traceback);
        assert!(d.sites.iter().all(|x| x.size_diff == 0 && x.count_diff == 0));
        assert_eq!(d.totals, DiffTotals::default());
    }

    #[test]
    fn grouping_by_file_and_function_merges_lines() {
        let s = snap(
            "s",
            0.0,
            &[
                (frame("src/a.rs", 1, "f"), 10, 1),
                (frame("src/a.rs", 2, "g"), 20, 1),
                (frame("src/b.rs", 3, "g"), 40, 1),
            ],
        );
        let by_file = s.statistics(GroupBy::File);
        assert_eq!(by_file.len(), 2);
        assert_eq!((by_file[0].location.file.as_str(), by_file[0].size), ("src/b.rs", 40));
        assert_eq!((by_file[1].location.file.as_str(), by_file[1].size), ("src/a.rs", 30));
        let by_fn = s.statistics(GroupBy::Function);
        assert_eq!((by_fn[0].location.function.as_str(), by_fn[0].size), ("g", 60));
        assert_eq!(s.statistics(GroupBy::Line).len(), 3);
    }

    #[test]
    fn filters_include_and_exclude() {
        let s = snap(
            "s",
            0.0,
            &[
                (frame("/app/src/a.rs", 1, "app::f"), 10, 1),
                (frame("/app/src/b.rs", 2, "app::g"), 20, 1),
                (frame("/app/tests/t.rs", 3, "t::h"), 40, 1),
            ],
        );
        let only_src = s.filter_traces(&[Filter::include_file("*/src/*")]);
        assert_eq!(only_src.traces.len(), 2);
        let no_g = s.filter_traces(&[Filter::include_file("*/src/*"), Filter::exclude_function("*::g")]);
        assert_eq!(no_g.statistics(GroupBy::Line)[0].location.line, 1);
        let d = s.compare_to(&snap("e", 0.0, &[]), GroupBy::Line).filter(&[Filter::exclude_file("*/tests/*")]);
        assert_eq!(d.sites.len(), 2);
        assert_eq!(d.sites[0].rank, 1);
        assert_eq!(d.totals.size_diff, 30);
    }
}
