//! Judging the window: which sites grow, and which of those are findings
//! (first reports and re-reports).
//!
//! Stacks are filtered first, without symbols: in exact mode a stack must be
//! steady by itself ([`analyze_series`]); in sampled mode it need only have
//! grown over the window, as its series moves in steps of one sampled
//! block's weight (the weight of a 64 KiB block at the 512 KiB mean is
//! 557 KiB) and a leak of a few blocks a second rises in one interval in
//! three: never steady by the share-of-intervals rule. The stacks kept are
//! symbolized, summed per site (file:line), and the site is judged:
//!
//! - exact mode: the site's sum is steady and grew by more than the minimum
//!   (or one stack alone is, which keeps a site whose sum has a phase effect);
//! - sampled mode: [`sampled_steady`]: the site grew by more than the
//!   minimum and by at least [`MIN_SAMPLES`] sample weights, in at least
//!   [`MIN_SAMPLED_RISES`] intervals, no one step making half of it, with a
//!   net gain that is most of what it gained (not churn).
//!
//! In both modes a site must also be growing in the latest part of the
//! window ([`growing_recently`]): a window that still holds a load that
//! ended is steady by the whole-window rule, and that rule alone made the
//! monitor report a finished load as "continuing". The figures reported
//! (slope, share of intervals) are `analyze_series`'s in both modes.

#![forbid(unsafe_code)]

use super::clearing::{Phase, SiteState};
use super::exit::ReportReason;
use super::findings::{Finding, LeakFinding, LeakSuspect};
use super::worker::Worker;
use crate::hot::control::StackId;
use crate::trend::{analyze_series, rank_key_cmp, SeriesTrend, Verdict};
use crate::Frame;
use hashbrown::HashMap;

/// Candidate stacks symbolized per interval at most, largest growth first.
const MAX_RESOLVE_PER_TICK: usize = 256;
/// Sample weights a sampled site must grow by: one or two sampled blocks
/// are chance, a steady climb of several is not.
pub(super) const MIN_SAMPLES: f64 = 3.0;
/// Intervals with a rise a sampled site needs.
pub(super) const MIN_SAMPLED_RISES: usize = 3;
/// Share of a series' net gain that the latest third of the window must
/// hold for the series to be growing recently. A steady leak holds a
/// third; a load that ended holds none.
const RECENT_SHARE: f64 = 0.15;
/// Share of the gross rise that the net gain must be (as `analyze_series`).
const NET_SHARE: f64 = 0.5;

/// The key of a site: file and line (the function when the file is
/// unknown, as diffs and trends key it), and the context: the same line
/// under two routes is two sites.
pub(super) type SiteKey = (String, u32, String, Option<String>);

pub(super) fn site_key(f: &Frame, context: Option<&str>) -> SiteKey {
    let func = if f.file.is_empty() { f.function.clone() } else { String::new() };
    (f.file.clone(), f.line, func, context.map(str::to_owned))
}

/// Where a series' current growth began: the last snapshot at which it was
/// at its lowest so far (ties count, so a flat start ends at its last point).
pub(super) fn onset(sizes: &[u64]) -> usize {
    let mut low = u64::MAX;
    let mut at = 0;
    for (i, &v) in sizes.iter().enumerate() {
        if v <= low {
            low = v;
            at = i;
        }
    }
    at
}

/// Whether a series grows in the latest third of its time span: it gained
/// there, at least [`RECENT_SHARE`] of its net gain over the window.
///
/// Stands in for `SeriesTrend::recent_growing` until the Mann-Kendall trend
/// lands; the rule is the same shape (the gain of the recent part against
/// the whole).
pub(super) fn growing_recently(times: &[f64], sizes: &[u64]) -> bool {
    let n = sizes.len().min(times.len());
    if n < 3 {
        return false;
    }
    let cut = times[n - 1] - (times[n - 1] - times[0]) / 3.0;
    // At least two intervals, so that one quiet tick of a sampled series
    // is not the whole of "recent".
    let k = times[..n].iter().position(|&t| t >= cut).unwrap_or(n - 1).min(n - 3);
    let (first, last) = (sizes[0], sizes[n - 1]);
    // The size at the cut, interpolated over the interval that straddles
    // it: snapshots are not evenly spaced (a report written in between
    // stalls the ticks), and measuring from the first snapshot after the
    // cut gave the recent third nothing of a long interval's growth, so a
    // steady leak right after a slow report looked as if it had stopped.
    let base = if k > 0 && times[k] > cut && times[k] > times[k - 1] && times[k - 1] < cut {
        let (t0, t1) = (times[k - 1], times[k]);
        let (s0, s1) = (sizes[k - 1] as f64, sizes[k] as f64);
        s0 + (s1 - s0) * (cut - t0) / (t1 - t0)
    } else {
        sizes[k] as f64
    };
    let gain = last as f64 - base;
    let net = last.saturating_sub(first);
    gain > 0.0 && net > 0 && gain >= RECENT_SHARE * net as f64
}

/// The estimate one sampled block adds to its stack, for blocks of the
/// mean size seen (`bytes / blocks`): its size over its chance of being
/// sampled (see `src/hot/sample.rs`), at least `mean_bytes`.
pub(super) fn sample_weight(bytes: u64, blocks: u64, mean_bytes: u64) -> f64 {
    let size = (bytes as f64 / blocks.max(1) as f64).max(1.0);
    let mean = mean_bytes.max(1) as f64;
    let p = -(-size / mean).exp_m1();
    if p >= 1.0 || p <= 0.0 {
        size
    } else {
        size / p
    }
}

/// The sampled-mode rule for one site's series (see the module docs).
pub(super) fn sampled_steady(sizes: &[u64], weight: f64, min_growth: u64) -> bool {
    let (Some(&first), Some(&last)) = (sizes.first(), sizes.last()) else {
        return false;
    };
    let net = last.saturating_sub(first);
    if net <= min_growth || (net as f64) < MIN_SAMPLES * weight {
        return false;
    }
    let (mut rises, mut up, mut biggest) = (0usize, 0u64, 0u64);
    for w in sizes.windows(2) {
        if w[1] > w[0] {
            rises += 1;
            up += w[1] - w[0];
            biggest = biggest.max(w[1] - w[0]);
        }
    }
    rises >= MIN_SAMPLED_RISES && net as f64 >= NET_SHARE * up as f64 && biggest * 2 <= net
}

/// A stack that may be part of a leaking site, before symbols.
struct Candidate {
    id: StackId,
    sizes: Vec<u64>,
    blocks: u64,
    trend: SeriesTrend,
}

/// Candidates grouped by site.
struct Group {
    location: Frame,
    context: Option<String>,
    traceback: Vec<Frame>,
    largest: u64,
    sizes: Vec<u64>,
    blocks: u64,
    ids: Vec<StackId>,
    /// The steepest member that alone exceeds the minimum growth, with its sizes.
    strongest: Option<(SeriesTrend, Vec<u64>)>,
}

/// A site judged to grow at this tick.
struct Suspect {
    trend: SeriesTrend,
    suspect: LeakSuspect,
    ids: Vec<StackId>,
    repeat: bool,
    /// Cleared and not risen since: not listed.
    withdrawn: bool,
}

impl Worker {
    /// Stacks of the window that may leak (see the module docs), before
    /// any symbol is read.
    fn candidates(&self, times: &[f64], sampled: bool) -> Vec<Candidate> {
        let (Some(first), Some(last)) = (self.window.front(), self.window.back()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &(id, bytes, blocks) in &last.raw.stacks {
            if bytes <= first.bytes_of(id).map_or(0, |b| b.0) {
                continue;
            }
            let sizes: Vec<u64> = self.window.iter().map(|e| e.bytes_of(id).map_or(0, |b| b.0)).collect();
            let trend = analyze_series(times, &sizes);
            if sampled || (trend.verdict == Verdict::Steady && trend.grew_fraction >= self.settings.min_grew_fraction) {
                out.push(Candidate { id, sizes, blocks, trend });
            }
        }
        out
    }

    /// The series that makes a site a suspect, if it is one.
    fn judge_group(&self, g: Group, times: &[f64], mean_bytes: Option<u64>) -> Option<(SeriesTrend, Vec<u64>)> {
        let min_growth = self.settings.min_growth_bytes;
        let t = analyze_series(times, &g.sizes);
        let (t, sizes) = match mean_bytes {
            Some(mean) => {
                let latest = t.last.max(1);
                if !sampled_steady(&g.sizes, sample_weight(latest, g.blocks, mean), min_growth) {
                    return None;
                }
                // The monitor's verdict, for ranking and the report: by
                // the share of intervals alone it would be a step.
                (SeriesTrend { verdict: Verdict::Steady, ..t }, g.sizes)
            }
            None => {
                let steady = t.verdict == Verdict::Steady
                    && t.grew_fraction >= self.settings.min_grew_fraction
                    && t.last.saturating_sub(t.first) > min_growth;
                // The sum of steady series is steady but for rare phase
                // effects on the share of intervals grown; a member that is
                // a finding alone keeps the site one.
                match (steady, g.strongest) {
                    (true, _) => (t, g.sizes),
                    (false, Some(strongest)) => strongest,
                    (false, None) => return None,
                }
            }
        };
        growing_recently(times, &sizes).then_some((t, sizes))
    }

    /// Seconds since the window's first snapshot, per snapshot.
    pub(super) fn window_times(&self) -> Vec<f64> {
        let t0 = self.window.front().map_or(0.0, |e| e.raw.monotonic_seconds);
        self.window.iter().map(|e| e.raw.monotonic_seconds - t0).collect()
    }

    pub(super) fn check_leaks(&mut self, findings: &mut Vec<Finding>) {
        if self.window.len() < self.settings.min_window {
            return;
        }
        let times = self.window_times();
        self.follow_sites();
        let Some(mut suspects) = self.judge_sites(&times) else {
            return;
        };
        self.check_suspects(&mut suspects, &times, findings);
    }

    /// The sites of the window judged to leak now, unranked; reads no
    /// state but the window. `None` when stopped first.
    fn judge_sites(&self, times: &[f64]) -> Option<Vec<Suspect>> {
        let n = self.window.len();
        let window_seconds = times.last().copied().unwrap_or(0.0);
        let min_growth = self.settings.min_growth_bytes;
        let mean_bytes = self.window.back().and_then(|e| e.sample_mean);
        let net = |t: &SeriesTrend| t.last.saturating_sub(t.first);
        let mut candidates = self.candidates(times, mean_bytes.is_some());
        // Several stacks may share a site; only their sum can reach the
        // minimum, so symbols are read only when it might.
        if candidates.iter().map(|c| net(&c.trend)).sum::<u64>() < min_growth.max(1) {
            candidates.clear();
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(net(&c.trend)));
        candidates.truncate(MAX_RESOLVE_PER_TICK);
        let mut groups: HashMap<SiteKey, Group> = HashMap::new();
        // One batch: the debug info is opened once for all the candidates.
        let _batch = (!candidates.is_empty()).then(crate::symbolize::Batch::begin);
        for c in &candidates {
            if self.cancelled() {
                return None;
            }
            let tb = crate::snapshot::traceback_of_stack(c.id);
            let context = crate::snapshot::context_of_stack(c.id);
            let g = groups.entry(site_key(&tb[0], context.as_deref())).or_insert_with(|| Group {
                location: tb[0].clone(),
                context,
                traceback: tb.to_vec(),
                largest: 0,
                sizes: vec![0; n],
                blocks: 0,
                ids: Vec::new(),
                strongest: None,
            });
            for (s, v) in g.sizes.iter_mut().zip(&c.sizes) {
                *s += v;
            }
            g.blocks += c.blocks;
            g.ids.push(c.id);
            if c.trend.last > g.largest {
                g.largest = c.trend.last;
                g.traceback = tb.to_vec();
            }
            if net(&c.trend) > min_growth
                && g.strongest.as_ref().is_none_or(|(s, _)| c.trend.slope_bytes_per_sec > s.slope_bytes_per_sec)
            {
                g.strongest = Some((c.trend, c.sizes.clone()));
            }
        }
        let mut suspects: Vec<Suspect> = Vec::new();
        for (_, g) in groups {
            let (location, traceback, blocks, ids) = (g.location.clone(), g.traceback.clone(), g.blocks, g.ids.clone());
            let context = g.context.clone();
            let Some((t, sizes)) = self.judge_group(g, times, mean_bytes) else {
                continue;
            };
            let stacks = ids.len();
            suspects.push(Suspect {
                trend: t,
                suspect: LeakSuspect {
                    rank: 0,
                    location,
                    traceback,
                    verdict: t.verdict,
                    size_bytes: t.last,
                    blocks,
                    size_first: t.first,
                    size_min: t.min,
                    size_max: t.max,
                    growth_bytes: t.last as i64 - t.first as i64,
                    window_seconds,
                    slope_bytes_per_sec: t.slope_bytes_per_sec,
                    grew_fraction: t.grew_fraction,
                    growing_seconds: window_seconds - times[onset(&sizes)],
                    sizes,
                    stacks,
                    fresh: false,
                    context,
                },
                ids,
                repeat: false,
                withdrawn: false,
            });
        }
        Some(suspects)
    }

    /// The sites judged to leak now, the likeliest first, for a report
    /// asked for (exit, signal, pre-OOM): `fresh` marks those not reported
    /// before. Changes nothing the judging remembers.
    pub(super) fn suspects_now(&self, times: &[f64]) -> Vec<LeakSuspect> {
        let Some(mut suspects) = self.judge_sites(times) else {
            return Vec::new();
        };
        suspects.retain_mut(|s| {
            let key = site_key(&s.suspect.location, s.suspect.context.as_deref());
            match self.sites.get(&key).map(|st| (st.phase, st.rose_since_cleared())) {
                Some((Phase::Cleared(_), false)) => false,
                Some((Phase::Reported, _)) => true,
                _ => {
                    s.suspect.fresh = true;
                    true
                }
            }
        });
        suspects.sort_by(|a, b| {
            rank_key_cmp(&a.trend, &b.trend).then_with(|| {
                site_key(&a.suspect.location, a.suspect.context.as_deref())
                    .cmp(&site_key(&b.suspect.location, b.suspect.context.as_deref()))
            })
        });
        suspects
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.suspect.rank = i + 1;
                s.suspect
            })
            .collect()
    }

    /// Clears, re-reports and reports the suspects of a tick.
    fn check_suspects(&mut self, suspects: &mut Vec<Suspect>, times: &[f64], findings: &mut Vec<Finding>) {
        // Clearing first: a site cleared now is no suspect, though the
        // latest third of the window may still hold some of its growth.
        self.clear_sites(findings);
        self.choose_fresh(suspects);
        suspects.retain(|s| !s.withdrawn);
        // The report's subject first, each part as `alloc-probe trend` ranks.
        suspects.sort_by(|a, b| {
            b.suspect.fresh.cmp(&a.suspect.fresh).then_with(|| rank_key_cmp(&a.trend, &b.trend)).then_with(|| {
                site_key(&a.suspect.location, a.suspect.context.as_deref())
                    .cmp(&site_key(&b.suspect.location, b.suspect.context.as_deref()))
            })
        });
        let mut fresh: Vec<(usize, bool)> = Vec::new();
        let suspects: Vec<LeakSuspect> = std::mem::take(suspects)
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                if s.suspect.fresh {
                    fresh.push((i, s.repeat));
                }
                s.suspect.rank = i + 1;
                s.suspect
            })
            .collect();
        self.forget_sites();
        if fresh.is_empty() {
            return;
        }
        let report = self.write_report(&suspects, times, ReportReason::Leak, None);
        if self.cancelled() && report.is_none() {
            return;
        }
        if report.is_some() {
            self.pending_cleared.clear();
        }
        for &(i, _) in &fresh {
            if let Some(st) = self.sites.get_mut(&site_key(&suspects[i].location, suspects[i].context.as_deref())) {
                st.last_report = report.clone();
            }
        }
        self.shared.stats.lock().leak_findings += fresh.len() as u64;
        for (i, repeat) in fresh {
            let finding = Finding::Leak(LeakFinding { suspect: suspects[i].clone(), report: report.clone(), repeat });
            log::warn!("{finding}");
            findings.push(finding);
        }
    }

    /// Marks which suspects this tick reports: new sites (or sites cleared
    /// that rose again), and reported sites grown past the re-report
    /// factor. Sets how long each has been growing.
    fn choose_fresh(&mut self, suspects: &mut [Suspect]) {
        let min_growth = self.settings.min_growth_bytes;
        let tolerance = self.rise_tolerance();
        let ticks: Vec<u64> = self.window.iter().map(|e| e.tick).collect();
        let seconds: Vec<f64> = self.window.iter().map(|e| e.raw.monotonic_seconds).collect();
        let now = seconds.last().copied().unwrap_or(0.0);
        for s in suspects.iter_mut() {
            let key = site_key(&s.suspect.location, s.suspect.context.as_deref());
            let known = self.sites.get(&key).map(|st| (st.phase, st.rose_since_cleared()));
            match known {
                Some((Phase::Reported, _)) => {
                    let Some(st) = self.sites.get_mut(&key) else { continue };
                    st.last_tick = self.tick;
                    st.add_stacks(&s.ids);
                    s.suspect.growing_seconds = s.suspect.growing_seconds.max(now - st.start_seconds);
                    let size = s.suspect.size_bytes;
                    let regrown = size as f64 >= st.reported_bytes as f64 * self.settings.rereport_factor
                        && size.saturating_sub(st.reported_bytes) > min_growth;
                    if regrown {
                        st.reported_bytes = size;
                        s.suspect.fresh = true;
                        s.repeat = true;
                    }
                }
                // Cleared, and has not risen since: the window still holds
                // the growth that was withdrawn.
                Some((Phase::Cleared(_), false)) => s.withdrawn = true,
                Some((Phase::Cleared(_), true)) | None => {
                    let st = SiteState::new(
                        s.suspect.location.clone(),
                        s.ids.clone(),
                        &ticks,
                        &seconds,
                        &s.suspect.sizes,
                        tolerance,
                    );
                    self.sites.insert(key, st);
                    s.suspect.fresh = true;
                }
            }
        }
    }
}
