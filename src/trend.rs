//! Trends over many snapshots: tells a steady leak from a one-time load.
//!
//! A two-snapshot diff ranks a cache filled once above a small leak that
//! grows at every step. Following each site across a series separates them:
//! the leak grows in most intervals (`steady`), the cache grew once and then
//! stayed flat (`step`), a buffer pool goes up and down (`churn`).

#![forbid(unsafe_code)]

use crate::diff::{elapsed_seconds, GroupBy};
use crate::{Frame, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a site's size moved over a series of snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Grew in at least half of the intervals, with a net gain that is most
    /// of what it gained: the shape of a leak.
    Steady,
    /// A net gain made in few intervals, flat otherwise: a load, or a cache
    /// that filled.
    Step,
    /// Up and down with no net trend.
    Churn,
    /// Never changed.
    Flat,
    /// A net loss.
    Shrinking,
}

impl Verdict {
    /// `"steady"`, `"step"`, `"churn"`, `"flat"` or `"shrinking"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Steady => "steady",
            Verdict::Step => "step",
            Verdict::Churn => "churn",
            Verdict::Flat => "flat",
            Verdict::Shrinking => "shrinking",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The figures of one series of sizes over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesTrend {
    /// Size in the first snapshot.
    pub first: u64,
    /// Size in the last snapshot.
    pub last: u64,
    /// Smallest size.
    pub min: u64,
    /// Largest size.
    pub max: u64,
    /// Least-squares slope of size over time, bytes per second.
    pub slope_bytes_per_sec: f64,
    /// Share of intervals in which the size grew.
    pub grew_fraction: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// Share of the gross movement that the net change must be for a series to
/// count as trending rather than churning.
const NET_SHARE: f64 = 0.5;

/// Judges one series: `times` in seconds (any origin, ascending), `sizes`
/// in bytes, the same length.
pub fn analyze_series(times: &[f64], sizes: &[u64]) -> SeriesTrend {
    let n = sizes.len().min(times.len());
    let (times, sizes) = (&times[..n], &sizes[..n]);
    let first = sizes.first().copied().unwrap_or(0);
    let last = sizes.last().copied().unwrap_or(0);
    let min = sizes.iter().copied().min().unwrap_or(0);
    let max = sizes.iter().copied().max().unwrap_or(0);
    let intervals = n.saturating_sub(1);
    let (mut grew, mut up, mut down) = (0usize, 0f64, 0f64);
    for w in sizes.windows(2) {
        match w[1].cmp(&w[0]) {
            std::cmp::Ordering::Greater => {
                grew += 1;
                up += (w[1] - w[0]) as f64;
            }
            std::cmp::Ordering::Less => down += (w[0] - w[1]) as f64,
            std::cmp::Ordering::Equal => {}
        }
    }
    let grew_fraction = if intervals == 0 { 0.0 } else { grew as f64 / intervals as f64 };
    let net = last as f64 - first as f64;
    let verdict = if up == 0.0 && down == 0.0 {
        Verdict::Flat
    } else if net > 0.0 && net >= NET_SHARE * up {
        if grew_fraction >= 0.5 {
            Verdict::Steady
        } else {
            Verdict::Step
        }
    } else if net < 0.0 && -net >= NET_SHARE * down {
        Verdict::Shrinking
    } else {
        Verdict::Churn
    };
    SeriesTrend { first, last, min, max, slope_bytes_per_sec: slope(times, sizes), grew_fraction, verdict }
}

/// Least-squares slope of `ys` over `xs`; 0 when the times do not vary.
fn slope(xs: &[f64], ys: &[u64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().map(|&y| y as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&x, &y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y as f64 - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Orders trend entries in three classes: `steady` sites first, then other
/// sites that grew in at least half of the intervals (churn that happens to
/// rise often), then the rest; within a class the steeper slope first. So a
/// site that grew in at least half of the intervals always ranks above
/// every site that did not, and a steady leak above churn.
pub fn rank_key_cmp(a: &SeriesTrend, b: &SeriesTrend) -> std::cmp::Ordering {
    let class = |t: &SeriesTrend| match (t.verdict, t.grew_fraction >= 0.5) {
        (Verdict::Steady, _) => 2,
        (_, true) => 1,
        _ => 0,
    };
    class(b)
        .cmp(&class(a))
        .then(b.slope_bytes_per_sec.total_cmp(&a.slope_bytes_per_sec))
        .then((b.last as i128 - b.first as i128).cmp(&(a.last as i128 - a.first as i128)))
}

/// One snapshot of a series, as listed in a trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// Its label.
    pub label: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// Seconds since the first snapshot of the series.
    pub offset_seconds: f64,
    /// Traced bytes then.
    pub current_bytes: u64,
}

/// One site followed across a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendSite {
    /// 1 for the likeliest leak.
    pub rank: usize,
    /// The site (see `Statistic::location`).
    pub location: Frame,
    /// Bytes in the first snapshot.
    pub size_first: u64,
    /// Bytes in the last snapshot.
    pub size_last: u64,
    /// Fewest bytes over the series.
    pub size_min: u64,
    /// Most bytes over the series.
    pub size_max: u64,
    /// Blocks in the last snapshot.
    pub count_last: u64,
    /// Least-squares slope of bytes over time.
    pub slope_bytes_per_sec: f64,
    /// Share of intervals in which it grew.
    pub grew_fraction: f64,
    /// `steady`, `step`, `churn`, `flat` or `shrinking`.
    pub verdict: Verdict,
    /// Bytes at each snapshot, in order.
    pub sizes: Vec<u64>,
    /// The traceback of its largest trace in the last snapshot it appears in.
    pub traceback: Vec<Frame>,
    /// The context its blocks were allocated under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Every site of a series of snapshots, likeliest leak first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// How sites were grouped.
    pub group_by: GroupBy,
    /// The snapshots, oldest first.
    pub snapshots: Vec<TrendPoint>,
    /// The sites, ranked.
    pub sites: Vec<TrendSite>,
}

/// Follows every site across `snapshots` (ordered here by time taken).
pub fn trend(snapshots: &[Snapshot], group_by: GroupBy) -> Trend {
    let mut order: Vec<&Snapshot> = snapshots.iter().collect();
    order.sort_by(|a, b| a.unix_seconds.total_cmp(&b.unix_seconds));
    let Some(&origin) = order.first() else {
        return Trend { group_by, snapshots: Vec::new(), sites: Vec::new() };
    };
    let times: Vec<f64> = order.iter().map(|s| elapsed_seconds(origin, s)).collect();
    let n = order.len();
    // Key -> (location, sizes per snapshot, last count, traceback).
    type Row = (Frame, Vec<u64>, u64, Vec<Frame>, Option<String>);
    let mut rows: HashMap<(String, String, String, u32), Row> = HashMap::new();
    for (i, snap) in order.iter().enumerate() {
        for stat in snap.statistics(group_by) {
            let ctx = stat.context.clone().unwrap_or_default();
            let key = match group_by {
                GroupBy::Line => (ctx, String::new(), stat.location.file.clone(), stat.location.line),
                GroupBy::Function => (ctx, stat.location.function.clone(), String::new(), 0),
                GroupBy::File => (ctx, String::new(), stat.location.file.clone(), 0),
                GroupBy::Context => (ctx, String::new(), String::new(), 0),
                GroupBy::Traceback => (
                    ctx,
                    stat.traceback.iter().map(|f| f.to_string() + "|" + &f.function).collect::<Vec<_>>().join(";"),
                    String::new(),
                    0,
                ),
            };
            let row = rows.entry(key).or_insert_with(|| (stat.location.clone(), vec![0; n], 0, Vec::new(), None));
            row.1[i] = stat.size;
            row.2 = stat.count;
            row.0 = stat.location;
            row.3 = stat.traceback;
            row.4 = stat.context;
        }
    }
    let mut sites: Vec<(SeriesTrend, TrendSite)> = rows
        .into_values()
        // Sites with nothing live in any snapshot only allocated and freed.
        .filter(|row| row.1.iter().any(|&v| v > 0))
        .map(|(location, sizes, count_last, traceback, context)| {
            let t = analyze_series(&times, &sizes);
            let count_last = if sizes[n - 1] == 0 { 0 } else { count_last };
            let site = TrendSite {
                rank: 0,
                location,
                size_first: t.first,
                size_last: t.last,
                size_min: t.min,
                size_max: t.max,
                count_last,
                slope_bytes_per_sec: t.slope_bytes_per_sec,
                grew_fraction: t.grew_fraction,
                verdict: t.verdict,
                sizes,
                traceback,
                context,
            };
            (t, site)
        })
        .collect();
    sites.sort_by(|(ta, a), (tb, b)| {
        rank_key_cmp(ta, tb)
            .then_with(|| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)))
            .then_with(|| a.location.function.cmp(&b.location.function))
    });
    let sites = sites
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut s))| {
            s.rank = i + 1;
            s
        })
        .collect();
    Trend {
        group_by,
        snapshots: order
            .iter()
            .zip(&times)
            .map(|(s, &t)| TrendPoint {
                label: s.label.clone(),
                taken_at: s.taken_at.clone(),
                offset_seconds: t,
                current_bytes: s.totals.current_bytes,
            })
            .collect(),
        sites,
    }
}

impl Trend {
    /// This trend as `leaktrace.trend.v1` JSON.
    pub fn to_json(&self) -> String {
        crate::report::to_json(crate::TREND_FORMAT, self)
    }

    /// Writes this trend to `path` atomically.
    pub fn write_json(&self, path: impl AsRef<std::path::Path>) -> crate::Result<()> {
        let _ignore = crate::hot::guard::Guard::with(crate::hot::guard::IGNORE);
        crate::write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// The sites judged `steady`, in rank order.
    pub fn steady(&self) -> impl Iterator<Item = &TrendSite> {
        self.sites.iter().filter(|s| s.verdict == Verdict::Steady)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::tests::snap;

    fn frame(file: &str, line: u32) -> Frame {
        Frame::new(format!("f{line}"), file, line)
    }

    #[test]
    fn steady_outranks_churn_that_rose_often() {
        let t: Vec<f64> = (0..7).map(f64::from).collect();
        let churn = analyze_series(&t, &[0, 8 << 20, 0, 8 << 20, 0, 8 << 20, 8 << 20]);
        let leak = analyze_series(&t, &[0, 100_000, 200_000, 300_000, 400_000, 500_000, 600_000]);
        let load = analyze_series(&t, &[0, 50 << 20, 50 << 20, 50 << 20, 50 << 20, 50 << 20, 50 << 20]);
        assert_eq!(churn.verdict, Verdict::Churn);
        assert!(churn.grew_fraction >= 0.5 && churn.slope_bytes_per_sec > leak.slope_bytes_per_sec);
        assert_eq!(rank_key_cmp(&leak, &churn), std::cmp::Ordering::Less);
        assert_eq!(rank_key_cmp(&churn, &load), std::cmp::Ordering::Less, "grew often beats grew once");
    }

    #[test]
    fn verdicts() {
        let t: Vec<f64> = (0..8).map(f64::from).collect();
        assert_eq!(analyze_series(&t, &[0, 10, 20, 30, 40, 50, 60, 70]).verdict, Verdict::Steady);
        assert_eq!(analyze_series(&t, &[0, 10, 20, 20, 40, 50, 50, 70]).verdict, Verdict::Steady);
        assert_eq!(analyze_series(&t, &[0, 1000, 1000, 1000, 1000, 1000, 1000, 1000]).verdict, Verdict::Step);
        assert_eq!(analyze_series(&t, &[0, 256, 0, 256, 0, 256, 0, 0]).verdict, Verdict::Churn);
        assert_eq!(analyze_series(&t, &[0, 256, 0, 256, 0, 256, 0, 256]).verdict, Verdict::Churn);
        assert_eq!(analyze_series(&t, &[5; 8]).verdict, Verdict::Flat);
        assert_eq!(analyze_series(&t, &[70, 60, 50, 40, 30, 20, 10, 0]).verdict, Verdict::Shrinking);
        let s = analyze_series(&t, &[0, 10, 20, 30, 40, 50, 60, 70]);
        assert!((s.slope_bytes_per_sec - 10.0).abs() < 1e-9);
        assert_eq!(s.grew_fraction, 1.0);
        assert_eq!(analyze_series(&[0.0], &[5]).verdict, Verdict::Flat);
    }

    #[test]
    fn a_steady_leak_outranks_a_bigger_one_time_load() {
        let leak = frame("src/leak.rs", 10);
        let load = frame("src/load.rs", 20);
        let churn = frame("src/pool.rs", 30);
        let snaps: Vec<Snapshot> = (0..6)
            .map(|i| {
                let load_size = if i == 0 { 0 } else { 10_000_000 };
                let churn_size = if i % 2 == 0 { 262_144 } else { 0 };
                snap(
                    &format!("s{i}"),
                    i as f64 * 10.0,
                    &[
                        (leak.clone(), 1000 * i as u64 + 1, 1),
                        (load.clone(), load_size, 1),
                        (churn.clone(), churn_size, 1),
                    ],
                )
            })
            .collect();
        // The two-snapshot diff puts the load first...
        let d = snaps[5].compare_to(&snaps[0], GroupBy::Line);
        assert_eq!(d.sites[0].location, load);
        // ...the trend puts the leak first, whatever order the files came in.
        let mut shuffled = snaps.clone();
        shuffled.reverse();
        let tr = trend(&shuffled, GroupBy::Line);
        assert_eq!(tr.snapshots[0].label, "s0");
        assert_eq!(tr.sites[0].location, leak);
        assert_eq!(tr.sites[0].verdict, Verdict::Steady);
        assert_eq!(tr.sites[0].rank, 1);
        assert!((tr.sites[0].slope_bytes_per_sec - 100.0).abs() < 1e-6);
        let by_loc = |f: &Frame| tr.sites.iter().find(|s| &s.location == f).unwrap();
        // Churn that rose in half the intervals still ranks below the leak.
        assert!(by_loc(&churn).grew_fraction >= 0.4);
        assert!(by_loc(&churn).rank > 1);
        assert_eq!(by_loc(&load).verdict, Verdict::Step);
        assert_eq!(by_loc(&churn).verdict, Verdict::Churn);
        assert_eq!(by_loc(&load).size_last, 10_000_000);
    }
}
