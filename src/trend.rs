//! Trends over many snapshots: tells a leak from a one-time load, a cache
//! that filled, and churn.
//!
//! A two-snapshot diff ranks a cache filled once above a small leak that
//! grows at every step. Following each site across a series separates them.
//!
//! # The statistic
//!
//! A leak does not have to grow at every snapshot: an audit log flushed into
//! a list every fifth step grows in bursts, and a buffer kept for one request
//! in a hundred grows under the noise of the ninety-nine in flight on the
//! same line. Counting the intervals that grew (the old rule) misses both. So
//! each site's series is judged by a rank test that sees the whole series:
//!
//! - **Mann-Kendall**: `S` = the number of pairs of snapshots (earlier,
//!   later) where the later is larger, minus those where it is smaller. Its
//!   variance under "no trend" is corrected for ties (flat stretches and
//!   sampled estimates, which move in whole sampled blocks, make many), and
//!   `Z = (S - 1) / sd` gives a one-sided p-value for an upward trend. Only
//!   the order of the sizes counts, so one huge burst weighs no more than a
//!   small one, and bursts every k-th snapshot count as much as steady
//!   growth once there are a few of them.
//! - **Theil-Sen slope**: the median of the slopes between all pairs of
//!   snapshots, in bytes per second. A single jump is not a slope: unless
//!   most pairs straddle it the median is 0.
//! - **The latest part**: the last third of the intervals (at least one).
//!   The trend is still present there if the site reached a new high in it,
//!   or if it moved up in it and its sizes there, net of the series'
//!   Theil-Sen trend, do not fall significantly (as they do when growth
//!   stopped: a cache that filled, a load that finished).
//!
//! `steady` = Mann-Kendall p < 1% (5% for series of fewer than 8 snapshots,
//! where the old rule, growth in half of the intervals keeping half of its
//! gains, also counts), a Theil-Sen slope above 0, and the trend still
//! present in the latest part. A significant trend that stopped is
//! `plateau` (or `step` when one interval made most of it). Measured rates on
//! generated series, 200 seeds per shape, are in `reports/verdicts.md`.
//!
//! Autocorrelation: a pool whose buffers live for several intervals has
//! sizes correlated from one snapshot to the next, which makes any trend
//! test see trends that are not there. `Z` is corrected for it (Hamed and
//! Rao, over the first five lags of the ranks net of the Theil-Sen trend,
//! never made larger by it). The sizes of a leaking site are cumulative, so
//! its residuals are correlated too (a random walk when the amount retained
//! varies, a saw-tooth when it comes in bursts): a stronger correction, such
//! as the AR(1) variance factor, cut the steady rate of such leaks (93% on
//! the "noisy leak" shape) where this one keeps 100%. Strongly correlated
//! churn still comes out `steady` at about 8% over 60 snapshots; its
//! effective sample is a handful of points.
//!
//! Cost: `O(n^2)` time in the number of snapshots `n`; three buffers, the
//! pairwise slopes (at most [`MAX_SLOPE_PAIRS`]: longer series are thinned
//! for the slope only) and two of `n` values.

#![forbid(unsafe_code)]

use crate::diff::{elapsed_seconds, GroupBy};
use crate::traceback::FrameTable;
use crate::{Frame, Snapshot, Traceback};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// How a site's size moved over a series of snapshots.
///
/// See the module docs for the statistic behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A significant upward trend over the series (Mann-Kendall, tie
    /// corrected), a positive Theil-Sen slope, and the growth still present
    /// in the last third of the intervals: the shape of a leak, whether it
    /// grows at every snapshot, in bursts, or under churn.
    Steady,
    /// A net gain made mostly in one interval, flat otherwise: a load.
    Step,
    /// Grew over a stretch, then stopped: a cache that filled, a load that
    /// finished. Its growth is absent from the last third of the intervals.
    Plateau,
    /// Up and down with no significant trend.
    Churn,
    /// Never changed.
    Flat,
    /// A net loss.
    Shrinking,
}

impl Verdict {
    /// `"steady"`, `"step"`, `"plateau"`, `"churn"`, `"flat"` or `"shrinking"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Steady => "steady",
            Verdict::Step => "step",
            Verdict::Plateau => "plateau",
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
    /// Theil-Sen slope: the median of the pairwise slopes, bytes per second.
    pub theil_sen_bytes_per_sec: f64,
    /// Mann-Kendall `Z`, corrected for ties (0 for fewer than 3 snapshots
    /// or no two that differ); positive for an upward trend.
    pub mk_z: f64,
    /// One-sided p-value of `mk_z` for an upward trend (1 when there is no
    /// evidence of one).
    pub p_value: f64,
    /// Share of the net gain first -> last made in the last third of the
    /// intervals (rounded up, at least one); 0 without a net gain. About
    /// 1/3 for growth at a constant rate, 0 for a plateau.
    pub recent_gain_share: f64,
    /// Whether the growth is still present in the last third of the
    /// intervals: a new high there, or growth there that does not fall
    /// significantly behind the series' Theil-Sen trend.
    pub recent_growing: bool,
}

/// Share of the gross movement that the net change must be for a short
/// series to count as trending rather than churning (the old rule, kept for
/// series too short for the rank test), and share of the net gain that one
/// interval must make for a gain to be a `step`.
const NET_SHARE: f64 = 0.5;

/// Series shorter than this are judged at [`P_SHORT`] and by the old rule.
const SHORT_SERIES: usize = 8;
/// One-sided Mann-Kendall level for `steady`. 1% keeps pure churn under 2%
/// steady with the latest-part rule on top (measured: `reports/verdicts.md`).
const P_STEADY: f64 = 0.01;
/// The level for series of fewer than [`SHORT_SERIES`] snapshots: with 7
/// snapshots no series does better than p = 0.0013, with 5, 0.014.
const P_SHORT: f64 = 0.05;
/// One-sided level at which the latest part's sizes, net of the trend, fall
/// significantly: the growth stopped.
const P_STOPPED: f64 = 0.01;
/// Points the latest part needs for the test that growth stopped.
const MIN_STOP_TEST_POINTS: usize = 6;
/// Pairs the Theil-Sen slope looks at, at most: all pairs up to 91
/// snapshots; longer series are thinned to every k-th snapshot for the
/// slope (their rank test still uses every snapshot).
pub const MAX_SLOPE_PAIRS: usize = 4096;

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
    let (mut grew, mut up, mut down, mut max_jump) = (0usize, 0f64, 0f64, 0u64);
    for w in sizes.windows(2) {
        match w[1].cmp(&w[0]) {
            std::cmp::Ordering::Greater => {
                grew += 1;
                up += (w[1] - w[0]) as f64;
                max_jump = max_jump.max(w[1] - w[0]);
            }
            std::cmp::Ordering::Less => down += (w[0] - w[1]) as f64,
            std::cmp::Ordering::Equal => {}
        }
    }
    let grew_fraction = if intervals == 0 { 0.0 } else { grew as f64 / intervals as f64 };
    let net = last as f64 - first as f64;
    let theil_sen = theil_sen_slope(times, sizes);
    let (mk_z, p_value) = mann_kendall(times, sizes, theil_sen);
    let recent = recent_intervals(n);
    let base = n - 1 - recent.min(n.saturating_sub(1));
    let recent_gain_share = if net > 0.0 { (last as f64 - sizes[base] as f64) / net } else { 0.0 };
    let recent_growing = n >= 2 && growing_lately(times, sizes, base, theil_sen);

    let short = n < SHORT_SERIES;
    let old_rule = net > 0.0 && net >= NET_SHARE * up && grew_fraction >= 0.5;
    let significant = p_value < if short { P_SHORT } else { P_STEADY } || (short && old_rule);
    let verdict = if up == 0.0 && down == 0.0 {
        Verdict::Flat
    } else if significant && theil_sen > 0.0 && recent_growing {
        Verdict::Steady
    } else if net > 0.0 && (significant || net >= NET_SHARE * up) {
        if max_jump as f64 >= NET_SHARE * net {
            Verdict::Step
        } else if !recent_growing {
            Verdict::Plateau
        } else {
            Verdict::Churn
        }
    } else if net < 0.0 && -net >= NET_SHARE * down {
        Verdict::Shrinking
    } else {
        Verdict::Churn
    };
    SeriesTrend {
        first,
        last,
        min,
        max,
        slope_bytes_per_sec: slope(times, sizes),
        grew_fraction,
        verdict,
        theil_sen_bytes_per_sec: theil_sen,
        mk_z,
        p_value,
        recent_gain_share,
        recent_growing,
    }
}

/// Intervals in the latest part of a series of `n` snapshots: the last
/// third, rounded up, at least one.
fn recent_intervals(n: usize) -> usize {
    n.saturating_sub(1).div_ceil(3).max(1)
}

/// Whether the growth is still present after snapshot `base`: a new high
/// since, or some growth since that does not fall significantly behind the
/// series' trend (`slope`, bytes per second). A fill that stopped leaves the
/// latest sizes flat; net of the trend they fall at every snapshot.
fn growing_lately(times: &[f64], sizes: &[u64], base: usize, slope: f64) -> bool {
    let (before, after) = sizes.split_at(base + 1);
    let high_before = before.iter().copied().max().unwrap_or(0);
    if after.iter().any(|&s| s > high_before) {
        return true;
    }
    let m = sizes.len() - base;
    let moved_up = sizes[base..].windows(2).any(|w| w[1] > w[0]);
    // Under 6 points not even a strict fall is significant at 1%: the test
    // could not tell a stop, so only a new high counts.
    if !moved_up || m < MIN_STOP_TEST_POINTS {
        return false;
    }
    // Mann-Kendall on the residuals of the latest part, downwards.
    let resid = |i: usize| sizes[base + i] as f64 - slope * times[base + i];
    let (mut s, mut ties) = (0i64, 0f64);
    for i in 0..m {
        let (ri, mut equal_later, mut first_of_value) = (resid(i), 0usize, true);
        for j in 0..m {
            let rj = resid(j);
            if j < i && rj == ri {
                first_of_value = false;
            }
            if j > i {
                s += sign(rj - ri);
                if rj == ri {
                    equal_later += 1;
                }
            }
        }
        if first_of_value {
            ties += tie_term(equal_later + 1);
        }
    }
    let z = mk_z(-s, m, ties);
    upper_tail(z) >= P_STOPPED
}

fn sign(d: f64) -> i64 {
    if d > 0.0 {
        1
    } else if d < 0.0 {
        -1
    } else {
        0
    }
}

/// `t (t - 1) (2t + 5)` for a group of `t` equal values.
fn tie_term(t: usize) -> f64 {
    let t = t as f64;
    t * (t - 1.0) * (2.0 * t + 5.0)
}

/// Mann-Kendall `Z` of `s` over `n` values whose tied groups sum to `ties`
/// (of [`tie_term`]), with the continuity correction.
fn mk_z(s: i64, n: usize, ties: f64) -> f64 {
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if n < 3 || var <= 0.0 || s == 0 {
        return 0.0;
    }
    let s = s as f64;
    (s - s.signum()) / var.sqrt()
}

/// Mann-Kendall `Z` of `sizes` (corrected for ties and, by
/// [`hamed_rao_factor`], for autocorrelation around the Theil-Sen `slope`)
/// and its one-sided p-value for an upward trend. `O(n^2)`.
fn mann_kendall(times: &[f64], sizes: &[u64], slope: f64) -> (f64, f64) {
    let n = sizes.len();
    let (mut s, mut ties) = (0i64, 0f64);
    for i in 0..n {
        let (mut equal_later, mut first_of_value) = (0usize, true);
        for (j, &y) in sizes.iter().enumerate() {
            if j < i && y == sizes[i] {
                first_of_value = false;
            }
            if j > i {
                s += (y > sizes[i]) as i64 - (y < sizes[i]) as i64;
                equal_later += (y == sizes[i]) as usize;
            }
        }
        if first_of_value {
            ties += tie_term(equal_later + 1);
        }
    }
    let z = mk_z(s, n, ties) / hamed_rao_factor(times, sizes, slope).sqrt();
    (z, if z > 0.0 { upper_tail(z) } else { 1.0 })
}

/// Lags of the autocorrelation that [`hamed_rao_factor`] looks at.
const AUTOCORRELATION_LAGS: usize = 5;

/// How much autocorrelation inflates the variance of Mann-Kendall's `S`
/// (Hamed and Rao, 1998), at least 1: from the autocorrelation of the ranks
/// of the series net of its Theil-Sen trend, over the first
/// [`AUTOCORRELATION_LAGS`] lags, counting only lags significant at 5%.
///
/// Why only a few lags: with tens of points the estimates at long lags are
/// noise, and their negative values cancel the real short-range
/// correlation (measured in `reports/verdicts.md`: all lags let through more
/// slow churn than five). Why at least 1: a negatively correlated series
/// (churn that alternates) is not made more significant by it.
fn hamed_rao_factor(times: &[f64], sizes: &[u64], slope: f64) -> f64 {
    let n = sizes.len();
    if n < SHORT_SERIES {
        return 1.0;
    }
    let detrended: Vec<f64> = sizes.iter().zip(times).map(|(&y, &t)| y as f64 - slope * t).collect();
    // Mid-ranks: ties share the mean of their ranks.
    let ranks: Vec<f64> = detrended
        .iter()
        .map(|&di| {
            let below = detrended.iter().filter(|&&dj| dj < di).count();
            let equal = detrended.iter().filter(|&&dj| dj == di).count();
            below as f64 + (equal as f64 + 1.0) / 2.0
        })
        .collect();
    let nf = n as f64;
    let mean = (nf + 1.0) / 2.0;
    let spread: f64 = ranks.iter().map(|r| (r - mean) * (r - mean)).sum();
    if spread <= 0.0 {
        return 1.0;
    }
    let bound = 1.96 / nf.sqrt();
    let mut sum = 0.0;
    for k in 1..=AUTOCORRELATION_LAGS.min(n - 3) {
        let rho = (0..n - k).map(|i| (ranks[i] - mean) * (ranks[i + k] - mean)).sum::<f64>() / spread;
        if rho.abs() > bound {
            let kf = k as f64;
            sum += (nf - kf) * (nf - kf - 1.0) * (nf - kf - 2.0) * rho;
        }
    }
    (1.0 + 2.0 * sum / (nf * (nf - 1.0) * (nf - 2.0))).max(1.0)
}

/// `P(N(0,1) > z)`.
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, to a relative error below 1.2e-7
/// (Numerical Recipes' `erfcc`, a Chebyshev fit): enough for p-values.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Theil-Sen slope of `sizes` over `times`: the median slope over pairs of
/// snapshots (at most [`MAX_SLOPE_PAIRS`]: a long series is thinned to every
/// k-th snapshot, the last always kept); 0 for fewer than two distinct times.
fn theil_sen_slope(times: &[f64], sizes: &[u64]) -> f64 {
    let n = sizes.len();
    let mut stride = 1;
    while pairs(n.div_ceil(stride)) > MAX_SLOPE_PAIRS {
        stride += 1;
    }
    // Counted back from the last snapshot, so that the latest is in.
    let picked = |k: usize| n - 1 - k * stride;
    let m = n.div_ceil(stride);
    let mut slopes = Vec::with_capacity(pairs(m));
    for a in 0..m {
        for b in a + 1..m {
            let (j, i) = (picked(a), picked(b));
            let dt = times[j] - times[i];
            if dt > 0.0 {
                slopes.push((sizes[j] as f64 - sizes[i] as f64) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    let mid = slopes.len() / 2;
    let (_, &mut upper, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
    if slopes.len() % 2 == 1 {
        return upper;
    }
    // The lower middle is the largest of the lower half.
    let lower = slopes[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

fn pairs(n: usize) -> usize {
    n * n.saturating_sub(1) / 2
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
    // Times or sizes near the f64 range (corrupt files) overflow the sums to
    // infinity and the slope to NaN, which JSON writes as `null`.
    let slope = sxy / sxx;
    if sxx == 0.0 || !slope.is_finite() {
        0.0
    } else {
        slope
    }
}

/// Orders trend entries in three classes: `steady` sites first, by
/// Theil-Sen slope (robust to the bursts and churn a leak may come with),
/// then other sites that grew in at least half of the intervals (churn that
/// happens to rise often), then the rest; outside `steady` the steeper
/// least-squares slope first. So a steady leak ranks above every other
/// site, and a site that grew in at least half of the intervals above every
/// other site that is not steady.
pub fn rank_key_cmp(a: &SeriesTrend, b: &SeriesTrend) -> std::cmp::Ordering {
    let class = |t: &SeriesTrend| match (t.verdict, t.grew_fraction >= 0.5) {
        (Verdict::Steady, _) => 2,
        (_, true) => 1,
        _ => 0,
    };
    let robust = |t: &SeriesTrend| if t.verdict == Verdict::Steady { t.theil_sen_bytes_per_sec } else { 0.0 };
    class(b)
        .cmp(&class(a))
        .then(robust(b).total_cmp(&robust(a)))
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
    /// `steady`, `step`, `plateau`, `churn`, `flat` or `shrinking`.
    pub verdict: Verdict,
    /// Theil-Sen slope of bytes over time (added key; 0 in older files).
    #[serde(default)]
    pub theil_sen_bytes_per_sec: f64,
    /// Mann-Kendall `Z`, tie corrected (added key).
    #[serde(default)]
    pub mk_z: f64,
    /// One-sided p-value for an upward trend (added key; 1 in older files).
    #[serde(default = "no_evidence")]
    pub p_value: f64,
    /// Share of the net gain made in the last third of the intervals (added key).
    #[serde(default)]
    pub recent_gain_share: f64,
    /// Bytes at each snapshot, in order.
    pub sizes: Vec<u64>,
    /// The traceback of its largest trace in the last snapshot it appears
    /// in; the sites of one trend share their frames (see [`Traceback`]).
    pub traceback: Traceback,
    /// The context its blocks were allocated under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

fn no_evidence() -> f64 {
    1.0
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

/// Follows every site across `snapshots` (ordered here by time taken). The
/// tracebacks of its sites share one copy of the snapshots' frames.
pub fn trend(snapshots: &[Snapshot], group_by: GroupBy) -> Trend {
    let mut order: Vec<&Snapshot> = snapshots.iter().collect();
    order.sort_by(|a, b| a.unix_seconds.total_cmp(&b.unix_seconds));
    let Some(&origin) = order.first() else {
        return Trend { group_by, snapshots: Vec::new(), sites: Vec::new() };
    };
    let times: Vec<f64> = order.iter().map(|s| elapsed_seconds(origin, s)).collect();
    let n = order.len();
    // One frame table for every snapshot: a traceback is its indices.
    let table = FrameTable::of(&order);
    // Key -> (location, sizes per snapshot, last count, traceback).
    type Row = (Frame, Vec<u64>, u64, Traceback, Option<String>);
    type Key = (String, String, String, u32, Option<Arc<[u32]>>);
    let mut rows: HashMap<Key, Row> = HashMap::new();
    for (i, snap) in order.iter().enumerate() {
        let stats = snap.statistics_in(group_by, &table, i);
        for stat in stats.into_iter().filter(|s| s.size > 0 || s.count > 0) {
            let ctx = stat.context.clone().unwrap_or_default();
            let key = match group_by {
                GroupBy::Line => {
                    let func =
                        if stat.location.file.is_empty() { stat.location.function.clone() } else { String::new() };
                    (ctx, func, stat.location.file.clone(), stat.location.line, None)
                }
                GroupBy::Function => (ctx, stat.location.function.clone(), String::new(), 0, None),
                GroupBy::File => (ctx, String::new(), stat.location.file.clone(), 0, None),
                GroupBy::Context => (ctx, String::new(), String::new(), 0, None),
                // Equal frames have one index in the table.
                GroupBy::Traceback => (ctx, String::new(), String::new(), 0, Some(stat.traceback.indices().clone())),
            };
            let row =
                rows.entry(key).or_insert_with(|| (stat.location.clone(), vec![0; n], 0, Traceback::default(), None));
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
                theil_sen_bytes_per_sec: t.theil_sen_bytes_per_sec,
                mk_z: t.mk_z,
                p_value: t.p_value,
                recent_gain_share: t.recent_gain_share,
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
        let _ignore = crate::hot::control::ignore();
        crate::write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// The sites judged `steady`, in rank order.
    pub fn steady(&self) -> impl Iterator<Item = &TrendSite> {
        self.sites.iter().filter(|s| s.verdict == Verdict::Steady)
    }
}

#[cfg(test)]
#[path = "trend_shapes.rs"]
mod trend_shapes;

#[cfg(test)]
mod tests {
    /// Generated series, one shape per function (shared with
    /// `alloc-probe/examples/verdicts.rs`, which writes `reports/verdicts.md`).
    use super::trend_shapes as shapes;
    use super::*;
    use crate::diff::tests::snap;

    /// How many of `seeds` seeds of `shape` got each verdict.
    fn tally(shape: impl Fn(u64) -> Vec<u64>, seeds: u64) -> HashMap<Verdict, u64> {
        let mut out = HashMap::new();
        for seed in 0..seeds {
            let sizes = shape(seed);
            *out.entry(analyze_series(&shapes::times(sizes.len()), &sizes).verdict).or_default() += 1;
        }
        out
    }

    /// Seeds per shape for the rate claims.
    const SEEDS: u64 = 200;

    fn steady_count(shape: impl Fn(u64) -> Vec<u64>) -> u64 {
        tally(shape, SEEDS).get(&Verdict::Steady).copied().unwrap_or(0)
    }

    #[test]
    fn leaks_are_steady_whether_plain_bursty_noisy_or_sampled() {
        assert_eq!(steady_count(shapes::plain_leak), SEEDS);
        assert_eq!(steady_count(shapes::noisy_leak), SEEDS);
        for k in 2..=6 {
            let t = tally(|s| shapes::bursty_leak(s, k), SEEDS);
            assert_eq!(t.get(&Verdict::Steady), Some(&SEEDS), "grows in 1 interval of {k}: {t:?}");
        }
        for churn_blocks in [0, 3] {
            let t = tally(|s| shapes::sampled_leak(s, churn_blocks), SEEDS);
            assert_eq!(t.get(&Verdict::Steady), Some(&SEEDS), "sampled, churn {churn_blocks}: {t:?}");
        }
    }

    #[test]
    fn a_leak_under_churn_is_found_and_churn_alone_is_not() {
        // At least 95% at 1/64 of the churn's range per interval, 75% at
        // 1/128, at most 2% with nothing retained.
        let at_64 = steady_count(|s| shapes::churn_leak(s, 64));
        let at_128 = steady_count(|s| shapes::churn_leak(s, 128));
        let none = steady_count(|s| shapes::churn_leak(s, 0));
        assert!(at_64 * 100 >= 95 * SEEDS, "1/64: {at_64}/{SEEDS}");
        assert!(at_128 * 100 >= 75 * SEEDS, "1/128: {at_128}/{SEEDS}");
        assert!(none * 100 <= 2 * SEEDS, "pure churn: {none}/{SEEDS}");
        // Correlated churn is harder; the autocorrelation correction keeps
        // it at about 8% (reports/verdicts.md), far from the leaks.
        let slow = steady_count(shapes::slow_churn);
        assert!(slow * 100 <= 12 * SEEDS, "slow churn: {slow}/{SEEDS}");
    }

    #[test]
    fn a_load_or_a_cache_that_filled_is_never_steady() {
        let t = tally(shapes::one_time_load, SEEDS);
        assert_eq!(t.get(&Verdict::Step), Some(&SEEDS), "{t:?}");
        let t = tally(shapes::filling_cache, SEEDS);
        let (plateau, step) =
            (t.get(&Verdict::Plateau).copied().unwrap_or(0), t.get(&Verdict::Step).copied().unwrap_or(0));
        assert_eq!(plateau + step, SEEDS, "{t:?}");
        assert!(plateau > step, "filling over several intervals is a plateau: {t:?}");
    }

    #[test]
    fn a_cache_that_filled_stops_being_steady_once_flat_for_a_third() {
        let t: Vec<f64> = (0..30).map(f64::from).collect();
        // Grows over 20 snapshots, then flat for 9 intervals: under a third.
        let sizes: Vec<u64> = (0..30u64).map(|i| 1000 * i.min(20)).collect();
        assert_eq!(analyze_series(&t, &sizes).verdict, Verdict::Steady, "still growing lately");
        // Flat for 10 of 29 intervals: the latest third.
        let sizes: Vec<u64> = (0..30u64).map(|i| 1000 * i.min(19)).collect();
        let s = analyze_series(&t, &sizes);
        assert_eq!(s.verdict, Verdict::Plateau);
        assert!(!s.recent_growing && s.recent_gain_share == 0.0 && s.p_value < P_STEADY, "{s:?}");
    }

    #[test]
    fn figures_of_the_statistic() {
        let t: Vec<f64> = (0..7).map(f64::from).collect();
        // Bursts at 3 and 6, flat between: S = 15 of 21 pairs, two groups of
        // three ties: var = (7*6*19 - 2*3*2*11) / 18 = 37.
        let s = analyze_series(&t, &[0, 0, 0, 100, 100, 100, 200]);
        assert!((s.mk_z - 14.0 / 37f64.sqrt()).abs() < 1e-12, "{s:?}");
        assert!((s.p_value - 0.010_7).abs() < 2e-4, "{s:?}");
        assert_eq!(s.verdict, Verdict::Steady, "bursty, short: {s:?}");
        assert!((s.recent_gain_share - 0.5).abs() < 1e-12, "the last 2 intervals made 100 of 200");
        // Theil-Sen: exact on a line, also over a thinned long series.
        let long: Vec<f64> = (0..300).map(|i| i as f64 * 0.5).collect();
        let sizes: Vec<u64> = (0..300u64).map(|i| 7 + 40 * i).collect();
        let s = analyze_series(&long, &sizes);
        assert!((s.theil_sen_bytes_per_sec - 80.0).abs() < 1e-9, "{s:?}");
        assert!((s.slope_bytes_per_sec - 80.0).abs() < 1e-6);
        assert!((s.recent_gain_share - 100.0 / 299.0).abs() < 1e-12, "{s:?}");
        assert_eq!(s.verdict, Verdict::Steady);
        // One late jump is not a slope: most pairs do not straddle it.
        let t30: Vec<f64> = (0..30).map(f64::from).collect();
        let late: Vec<u64> = (0..30).map(|i| if i < 25 { 0 } else { 1 << 20 }).collect();
        let s = analyze_series(&t30, &late);
        assert_eq!(s.theil_sen_bytes_per_sec, 0.0);
        assert_eq!(s.verdict, Verdict::Step, "{s:?}");
        // No trend: Z 0, p 1.
        let s = analyze_series(&t30, &[5; 30]);
        assert_eq!((s.mk_z, s.p_value, s.verdict), (0.0, 1.0, Verdict::Flat));
        // The normal tail.
        assert!((upper_tail(1.644_853_6) - 0.05).abs() < 1e-7);
        assert!((upper_tail(2.326_347_9) - 0.01).abs() < 1e-7);
        assert!((upper_tail(-1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn short_series_fall_back_to_the_old_rule_at_five_percent() {
        let t: Vec<f64> = (0..4).map(f64::from).collect();
        assert_eq!(analyze_series(&t[..2], &[0, 10]).verdict, Verdict::Steady);
        assert_eq!(analyze_series(&t[..3], &[0, 10, 20]).verdict, Verdict::Steady);
        assert_eq!(analyze_series(&t, &[0, 10, 5, 30]).verdict, Verdict::Steady, "half grew, kept its gains");
        assert_eq!(analyze_series(&t, &[0, 30, 30, 30]).verdict, Verdict::Step);
        let t6: Vec<f64> = (0..6).map(f64::from).collect();
        assert_eq!(analyze_series(&t6, &[0, 10, 20, 30, 30, 30]).verdict, Verdict::Plateau, "no new high lately");
        // Grew in half of the intervals and kept half, but reached no new
        // high lately: a short window cannot call that a leak.
        assert_ne!(analyze_series(&t, &[0, 30, 0, 30]).verdict, Verdict::Steady);
        assert_eq!(analyze_series(&t, &[0, 30, 0, 10]).verdict, Verdict::Churn);
    }

    #[test]
    fn plateau_is_a_verdict_in_json_and_older_trend_sites_still_read() {
        assert_eq!(serde_json::to_string(&Verdict::Plateau).unwrap(), "\"plateau\"");
        assert_eq!(Verdict::Plateau.to_string(), "plateau");
        let site = TrendSite {
            rank: 1,
            location: frame("src/a.rs", 1),
            size_first: 0,
            size_last: 10,
            size_min: 0,
            size_max: 10,
            count_last: 1,
            slope_bytes_per_sec: 1.0,
            grew_fraction: 1.0,
            verdict: Verdict::Steady,
            theil_sen_bytes_per_sec: 1.0,
            mk_z: 3.0,
            p_value: 0.001,
            recent_gain_share: 0.3,
            sizes: vec![0, 10],
            traceback: Traceback::default(),
            context: None,
        };
        let mut v = serde_json::to_value(&site).unwrap();
        assert_eq!(v["mk_z"], 3.0);
        for key in ["theil_sen_bytes_per_sec", "mk_z", "p_value", "recent_gain_share"] {
            v.as_object_mut().unwrap().remove(key);
        }
        let old: TrendSite = serde_json::from_value(v).unwrap();
        assert_eq!((old.mk_z, old.p_value, old.theil_sen_bytes_per_sec), (0.0, 1.0, 0.0));
    }

    #[test]
    fn steady_sites_rank_by_theil_sen() {
        let t: Vec<f64> = (0..30).map(f64::from).collect();
        // A bursty leak with the steeper least-squares slope but the
        // gentler median slope ranks second.
        let bursty: Vec<u64> = (0..30u64).map(|i| (i / 5) * 5000).collect();
        let plain: Vec<u64> = (0..30u64).map(|i| i * 1100).collect();
        let (b, p) = (analyze_series(&t, &bursty), analyze_series(&t, &plain));
        assert_eq!((b.verdict, p.verdict), (Verdict::Steady, Verdict::Steady));
        assert!(p.theil_sen_bytes_per_sec > b.theil_sen_bytes_per_sec, "{p:?} {b:?}");
        assert_eq!(rank_key_cmp(&p, &b), std::cmp::Ordering::Less);
    }

    #[test]
    #[ignore = "prints the rates"]
    fn print_rates() {
        for (name, shape) in shapes::all() {
            let mut t: Vec<_> = tally(shape, 200).into_iter().collect();
            t.sort_by_key(|(v, _)| v.as_str());
            eprintln!("{name:55} {t:?}");
        }
    }

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
    fn the_sites_of_one_trend_share_one_frame_table_and_round_trip_through_json() {
        let f = |file: &str, line| Frame::new(file.trim_end_matches(".rs"), file, line);
        let main = Frame { path_abs: "/home/ci/app/src/main.rs".into(), ..f("src/main.rs", 9) };
        let leak = vec![f("src/a.rs", 1), f("src/b.rs", 2), main.clone()];
        let load = vec![f("src/a.rs", 1), f("src/c.rs", 3), main.clone()];
        let gone = vec![f("src/d.rs", 4), main];
        let snaps: Vec<Snapshot> = (0..4u64)
            .map(|i| {
                let mut paths = vec![(leak.clone(), 100 * (i + 1), i + 1), (load.clone(), 500, 1)];
                if i < 2 {
                    paths.insert(0, (gone.clone(), 50, 1));
                }
                // Each snapshot stores its frames in its own order.
                if i % 2 == 1 {
                    paths.reverse();
                }
                crate::diff::tests::snap_of(&format!("s{i}"), i as f64, &paths)
            })
            .collect();
        for g in [GroupBy::Line, GroupBy::Function, GroupBy::File, GroupBy::Traceback, GroupBy::Context] {
            let tr = trend(&snaps, g);
            assert!(tr.sites.iter().all(|x| x.traceback.shares_frames_with(&tr.sites[0].traceback)), "{g:?}");
            let json = tr.to_json();
            let back: Trend =
                crate::report::parse_kind(std::path::Path::new("t.json"), &json, "leaktrace.trend").unwrap();
            assert_eq!(back, tr);
            assert_eq!(back.to_json(), json);
            for site in &tr.sites {
                // The array a `Vec<Frame>` wrote, byte for byte.
                let array = serde_json::to_string_pretty(&site.traceback.to_vec()).unwrap().replace('\n', "\n      ");
                assert!(json.contains(&format!("\"traceback\": {array}")), "{json}");
            }
        }
        let tr = trend(&snaps, GroupBy::Traceback);
        assert_eq!(tr.sites.len(), 3);
        let site = |tb: &Vec<Frame>| tr.sites.iter().find(|x| x.traceback == *tb).unwrap();
        assert_eq!(site(&leak).sizes, [100, 200, 300, 400]);
        assert_eq!(site(&leak).verdict, Verdict::Steady);
        assert_eq!(site(&load).sizes, [500; 4]);
        assert_eq!(site(&gone).sizes, [50, 50, 0, 0]);
        assert_eq!(site(&leak).traceback[2].path_abs, "/home/ci/app/src/main.rs");
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
