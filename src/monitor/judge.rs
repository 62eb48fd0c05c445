//! Judging the window: which stacks grew steadily, grouped into sites, and
//! which sites are findings (first reports and re-reports).

#![forbid(unsafe_code)]

use super::findings::{Finding, LeakFinding, LeakSuspect};
use super::worker::Worker;
use crate::hot::sites::StackId;
use crate::trend::{analyze_series, rank_key_cmp, SeriesTrend, Verdict};
use crate::Frame;
use hashbrown::HashMap;

/// Steady stacks symbolized per interval at most, largest growth first.
const MAX_RESOLVE_PER_TICK: usize = 256;

/// The key of a site: file and line; the function when the file is unknown.
pub(super) type SiteKey = (String, u32, String);

pub(super) fn site_key(f: &Frame) -> SiteKey {
    let func = if f.file.is_empty() { f.function.clone() } else { String::new() };
    (f.file.clone(), f.line, func)
}

/// What the monitor remembers of a site it reported.
pub(super) struct SiteState {
    /// Live bytes at the last report.
    pub(super) reported_bytes: u64,
    /// The last tick at which it was a finding.
    pub(super) last_tick: u64,
}

/// A steady stack, before symbols.
struct Candidate {
    id: StackId,
    sizes: Vec<u64>,
    blocks: u64,
    trend: SeriesTrend,
}

/// Candidates grouped by site.
struct Group {
    location: Frame,
    traceback: Vec<Frame>,
    largest: u64,
    sizes: Vec<u64>,
    blocks: u64,
    stacks: usize,
    /// The steepest member that alone exceeds the minimum growth, with its sizes.
    strongest: Option<(SeriesTrend, Vec<u64>)>,
}

impl Worker {
    /// Steady stacks of the window, before any symbol is read.
    fn candidates(&self, times: &[f64]) -> Vec<Candidate> {
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
            if trend.verdict == Verdict::Steady && trend.grew_fraction >= self.settings.min_grew_fraction {
                out.push(Candidate { id, sizes, blocks, trend });
            }
        }
        out
    }

    pub(super) fn check_leaks(&mut self, findings: &mut Vec<Finding>) {
        let n = self.window.len();
        if n < self.settings.min_window {
            return;
        }
        let t0 = self.window[0].raw.monotonic_seconds;
        let times: Vec<f64> = self.window.iter().map(|e| e.raw.monotonic_seconds - t0).collect();
        let window_seconds = times.last().copied().unwrap_or(0.0);
        let min_growth = self.settings.min_growth_bytes;
        let net = |t: &SeriesTrend| t.last.saturating_sub(t.first);
        let mut candidates = self.candidates(&times);
        // Several stacks may share a site; only their sum can reach the
        // minimum, so symbols are read only when it might.
        if candidates.iter().map(|c| net(&c.trend)).sum::<u64>() < min_growth.max(1) {
            self.forget_sites();
            return;
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(net(&c.trend)));
        candidates.truncate(MAX_RESOLVE_PER_TICK);
        let mut groups: HashMap<SiteKey, Group> = HashMap::new();
        for c in &candidates {
            if self.shared.stopping() {
                return;
            }
            let tb = crate::snapshot::traceback_of_stack(c.id);
            let g = groups.entry(site_key(&tb[0])).or_insert_with(|| Group {
                location: tb[0].clone(),
                traceback: tb.to_vec(),
                largest: 0,
                sizes: vec![0; n],
                blocks: 0,
                stacks: 0,
                strongest: None,
            });
            for (s, v) in g.sizes.iter_mut().zip(&c.sizes) {
                *s += v;
            }
            g.blocks += c.blocks;
            g.stacks += 1;
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
        let mut suspects: Vec<(SeriesTrend, LeakSuspect, bool)> = Vec::new();
        for (_, g) in groups {
            let t = analyze_series(&times, &g.sizes);
            let steady = t.verdict == Verdict::Steady
                && t.grew_fraction >= self.settings.min_grew_fraction
                && net(&t) > min_growth;
            // The sum of steady series is steady but for rare phase effects
            // on the share of intervals grown; a member that is a finding
            // alone keeps the site one.
            let (t, sizes) = match (steady, g.strongest) {
                (true, _) => (t, g.sizes),
                (false, Some(strongest)) => strongest,
                (false, None) => continue,
            };
            suspects.push((
                t,
                LeakSuspect {
                    rank: 0,
                    location: g.location,
                    traceback: g.traceback,
                    verdict: t.verdict,
                    size_bytes: t.last,
                    blocks: g.blocks,
                    size_first: t.first,
                    size_min: t.min,
                    size_max: t.max,
                    growth_bytes: t.last as i64 - t.first as i64,
                    window_seconds,
                    slope_bytes_per_sec: t.slope_bytes_per_sec,
                    grew_fraction: t.grew_fraction,
                    sizes,
                    stacks: g.stacks,
                    fresh: false,
                },
                false,
            ));
        }
        // Which sites this report is about: new ones, and reported ones
        // that grew past the re-report factor.
        for (_, s, repeat) in suspects.iter_mut() {
            let key = site_key(&s.location);
            match self.sites.get_mut(&key) {
                None => {
                    self.sites.insert(key, SiteState { reported_bytes: s.size_bytes, last_tick: self.tick });
                    s.fresh = true;
                }
                Some(st) => {
                    st.last_tick = self.tick;
                    let regrown = s.size_bytes as f64 >= st.reported_bytes as f64 * self.settings.rereport_factor
                        && s.size_bytes.saturating_sub(st.reported_bytes) > min_growth;
                    if regrown {
                        st.reported_bytes = s.size_bytes;
                        s.fresh = true;
                        *repeat = true;
                    }
                }
            }
        }
        // The report's subject first, each part as `alloc-probe trend` ranks.
        suspects.sort_by(|(ta, a, _), (tb, b, _)| {
            b.fresh
                .cmp(&a.fresh)
                .then_with(|| rank_key_cmp(ta, tb))
                .then_with(|| site_key(&a.location).cmp(&site_key(&b.location)))
        });
        let mut fresh: Vec<(usize, bool)> = Vec::new();
        let suspects: Vec<LeakSuspect> = suspects
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut s, repeat))| {
                if s.fresh {
                    fresh.push((i, repeat));
                }
                s.rank = i + 1;
                s
            })
            .collect();
        self.forget_sites();
        if fresh.is_empty() {
            return;
        }
        let report = self.write_report(&suspects, &times);
        if self.shared.stopping() && report.is_none() {
            return;
        }
        let mut stats = self.shared.stats.lock();
        stats.leak_findings += fresh.len() as u64;
        if report.is_some() {
            stats.reports_written += 1;
            stats.last_report = report.clone();
        }
        drop(stats);
        for (i, repeat) in fresh {
            let finding = Finding::Leak(LeakFinding { suspect: suspects[i].clone(), report: report.clone(), repeat });
            log::warn!("{finding}");
            findings.push(finding);
        }
    }

    /// Forgets sites that have not been findings for a whole window: if
    /// they grow again, that is a new finding.
    pub(super) fn forget_sites(&mut self) {
        let (tick, window) = (self.tick, self.settings.window as u64);
        self.sites.retain(|_, st| tick.saturating_sub(st.last_tick) <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::MonitorReport;
    use super::super::worker::Entry;
    use super::super::{Settings, Shared};
    use super::*;
    use crate::snapshot::RawSnapshot;
    use std::path::Path;
    use std::time::Duration;

    /// Stack ids no real stack has: they resolve to the unknown frame.
    const A: StackId = crate::hot::sites::UNKNOWN_STACK - 10;
    const B: StackId = A + 1;
    const C: StackId = A + 2;

    fn worker(dir: &Path) -> Worker {
        let settings = Settings {
            interval: Duration::from_secs(1),
            report_dir: dir.to_path_buf(),
            window: 8,
            min_window: 5,
            min_growth_bytes: 1000,
            min_grew_fraction: 0.5,
            rereport_factor: 2.0,
            rss_growth_warning: None,
            live_tasks_warning: None,
        };
        Worker::new(settings, Vec::new(), Shared::new())
    }

    fn feed(w: &mut Worker, stacks: &[(StackId, u64)]) -> Vec<Finding> {
        let t = w.tick as f64;
        let mut stacks: Vec<(StackId, u64, u64)> = stacks.iter().map(|&(id, b)| (id, b, b / 100)).collect();
        stacks.retain(|s| s.1 > 0);
        stacks.sort_unstable_by_key(|s| s.0);
        w.judge(Entry {
            tick: w.tick,
            raw: RawSnapshot { stacks, unix_seconds: 1.8e9 + t, monotonic_seconds: 100.0 + t, current: 0, peak: 0 },
            process: None,
            tasks: Vec::new(),
            tracker_bytes: 0,
        })
    }

    fn leaks(f: &[Finding]) -> Vec<&LeakFinding> {
        f.iter()
            .filter_map(|f| match f {
                Finding::Leak(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reports_a_steady_stack_once_then_on_doubling_then_after_a_pause() {
        let dir = std::env::temp_dir().join(format!("leaktrace-monitor-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
        let path = l.report.clone().expect("a report");
        let report = MonitorReport::read_json(&path).unwrap();
        assert_eq!(report.monitor.suspects[0].sizes, l.suspect.sizes);
        assert_eq!(report.monitor.samples.len(), 5);
        // The diff has every site, the suspect's first.
        assert_eq!(report.diff.sites[0].location, l.suspect.location);
        assert_eq!(report.diff.sites[0].rank, 1);

        // Growing on, but not yet doubled: silent.
        for i in 5..8 {
            assert!(feed(&mut w, &[(A, 1000 * i), (B, churn(i)), (C, step(i))]).is_empty(), "tick {i}");
        }
        // Doubled since the report (8000 >= 2 x 4000): reported again.
        let again = feed(&mut w, &[(A, 8000), (B, churn(8)), (C, step(8))]);
        let again = leaks(&again);
        assert_eq!(again.len(), 1);
        assert!(again[0].repeat);
        assert_ne!(again[0].report, Some(path));
        assert_eq!(w.sites.len(), 1);

        // Not a finding for more than a window (it stops being steady a few
        // flat snapshots in): forgotten.
        for _ in 0..14 {
            assert!(feed(&mut w, &[(A, 8000), (B, 0), (C, 100_000)]).is_empty());
        }
        assert!(w.sites.is_empty());
        // Growing again is a new finding, not a repeat.
        let mut next = Vec::new();
        for i in 1..=8 {
            next.extend(feed(&mut w, &[(A, 8000 + 2000 * i), (C, 100_000)]));
        }
        let next = leaks(&next);
        assert_eq!(next.len(), 1, "{next:?}");
        assert!(!next[0].repeat);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn churn_and_steps_are_never_findings() {
        let dir = std::env::temp_dir().join(format!("leaktrace-monitor-unit2-{}", std::process::id()));
        let mut w = worker(&dir);
        for i in 0..40u64 {
            let pool = [0, 300_000, 100_000, 900_000, 0][(i % 5) as usize];
            let cache = if i < 3 { 0 } else { 5_000_000 };
            let f = feed(&mut w, &[(A, pool), (B, cache), (C, 4096 * (i % 2))]);
            assert!(f.is_empty(), "tick {i}: {f:?}");
        }
        assert!(!dir.exists(), "no report directory created");
    }
}
