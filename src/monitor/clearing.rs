//! Following the sites the monitor reported, and withdrawing a report when
//! its site stops growing.
//!
//! A load that runs for longer than the minimum window looks like a leak
//! while it runs: nothing in a window that ends mid-load tells them apart.
//! What tells them apart is what comes next, so every reported site is
//! followed, tick by tick, through the stacks it was seen at (no symbols):
//! its peak, and each *rise* (a new high by more than a sixteenth of the
//! minimum growth, so that churn at a plateau is not growth). A site with no
//! rise for long enough is *cleared*: the monitor logs that it was not a
//! leak, says what it was (a load, a cache that filled, or it shrank back),
//! and lists it in the next report.
//!
//! How long is long enough depends on how often the site rose while it
//! grew. In exact mode a leak rises at nearly every tick; in sampled mode a
//! leak's estimate moves only when one of its blocks is sampled, which may
//! be one tick in three. Treating rises as a Poisson process with the rate
//! seen while the site grew, a leak goes `q` ticks without a rise with
//! probability `exp(-rate × q)`: `q` is chosen to make that about 1 in
//! 2000, then bounded below (a pause of a few ticks is not an end) and above
//! by the window, so that a site is cleared within one window after it
//! stops.

#![forbid(unsafe_code)]

use super::findings::{ClearedFinding, ClearedKind, Finding};
use super::judge::onset;
use super::worker::Worker;
use crate::hot::control::StackId;
use crate::Frame;
use std::path::PathBuf;

/// `-ln` of the chance, per clearing, that a leak still growing at the rate
/// it grew is cleared by bad luck (e^-7.6, about 1 in 2000).
const CLEAR_CONFIDENCE: f64 = 7.6;
/// Stacks followed per site at most (the largest are kept).
const MAX_STACKS: usize = 64;
/// Rises kept per site to tell a load from a plateau (thinned when full).
const MAX_RISES: usize = 128;

/// Where a remembered site stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reported as growing, not withdrawn.
    Reported,
    /// Withdrawn at this tick: reported again only after a new rise.
    Cleared(u64),
}

/// What the monitor remembers of a site it reported.
#[derive(Clone, Debug)]
pub(super) struct SiteState {
    pub(super) location: Frame,
    /// The stacks it was seen at, its series being their sum.
    pub(super) stacks: Vec<StackId>,
    pub(super) phase: Phase,
    /// Live bytes at the last report.
    pub(super) reported_bytes: u64,
    /// The last report naming it.
    pub(super) last_report: Option<PathBuf>,
    /// The last tick at which it was a suspect.
    pub(super) last_tick: u64,
    /// Live bytes when it started growing.
    pub(super) base_bytes: u64,
    /// The most live bytes seen since it started growing.
    pub(super) peak_bytes: u64,
    /// Live bytes at the latest tick.
    pub(super) size_bytes: u64,
    /// The level of the last rise: the next rise must pass it by the tolerance.
    rise_level: u64,
    /// When it started growing (monotonic seconds, tick).
    pub(super) start_seconds: f64,
    start_tick: u64,
    /// Its last rise (tick, monotonic seconds).
    pub(super) last_rise_tick: u64,
    last_rise_seconds: f64,
    /// Rises since it started growing.
    rises: u64,
    /// `(seconds, peak)` at rises, oldest first: the shape of the growth.
    rise_log: Vec<(f64, u64)>,
}

impl SiteState {
    /// A site reported now, with its series over the window: `ticks` and
    /// `seconds` (monotonic) of each snapshot, `sizes` its live bytes.
    pub(super) fn new(
        location: Frame,
        stacks: Vec<StackId>,
        ticks: &[u64],
        seconds: &[f64],
        sizes: &[u64],
        tolerance: u64,
    ) -> SiteState {
        let o = onset(sizes);
        let mut st = SiteState {
            location,
            stacks,
            phase: Phase::Reported,
            reported_bytes: sizes.last().copied().unwrap_or(0),
            last_report: None,
            last_tick: ticks.last().copied().unwrap_or(0),
            base_bytes: sizes.get(o).copied().unwrap_or(0),
            peak_bytes: sizes.get(o).copied().unwrap_or(0),
            size_bytes: sizes.get(o).copied().unwrap_or(0),
            rise_level: sizes.get(o).copied().unwrap_or(0),
            start_seconds: seconds.get(o).copied().unwrap_or(0.0),
            start_tick: ticks.get(o).copied().unwrap_or(0),
            last_rise_tick: ticks.get(o).copied().unwrap_or(0),
            last_rise_seconds: seconds.get(o).copied().unwrap_or(0.0),
            rises: 0,
            rise_log: Vec::new(),
        };
        st.stacks.truncate(MAX_STACKS);
        for i in o + 1..sizes.len().min(ticks.len()).min(seconds.len()) {
            st.observe(ticks[i], seconds[i], sizes[i], tolerance);
        }
        st
    }

    /// Adds stacks newly seen at the site.
    pub(super) fn add_stacks(&mut self, ids: &[StackId]) {
        for &id in ids {
            if self.stacks.len() < MAX_STACKS && !self.stacks.contains(&id) {
                self.stacks.push(id);
            }
        }
    }

    /// Takes the site's size at one tick.
    pub(super) fn observe(&mut self, tick: u64, seconds: f64, size: u64, tolerance: u64) {
        self.size_bytes = size;
        self.peak_bytes = self.peak_bytes.max(size);
        if size > self.rise_level.saturating_add(tolerance) {
            self.rise_level = size;
            self.rises += 1;
            self.last_rise_tick = tick;
            self.last_rise_seconds = seconds;
            if self.rise_log.len() == MAX_RISES {
                // Keep every other rise: the shape survives, the memory is bounded.
                let mut i = 0;
                self.rise_log.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
            }
            self.rise_log.push((seconds, size));
        }
    }

    /// Ticks without a rise after which the site is cleared.
    pub(super) fn quiet_ticks(&self, min_quiet: u64, window: u64) -> u64 {
        let span = self.last_rise_tick.saturating_sub(self.start_tick);
        // Two ticks of prior: a rate from a handful of rises is shrunk
        // towards slower, which only makes the monitor wait longer.
        let p = (self.rises as f64 / (span + 2) as f64).clamp(0.01, 0.95);
        let q = (CLEAR_CONFIDENCE / -(1.0 - p).ln()).ceil() as u64;
        q.clamp(min_quiet.min(window), window)
    }

    /// Whether it rose since it was cleared (always, while reported).
    pub(super) fn rose_since_cleared(&self) -> bool {
        match self.phase {
            Phase::Reported => true,
            Phase::Cleared(at) => self.last_rise_tick > at,
        }
    }

    /// What the site turned out to be.
    pub(super) fn kind(&self) -> ClearedKind {
        let grown = self.peak_bytes.saturating_sub(self.base_bytes);
        if self.size_bytes <= self.peak_bytes - grown / 2 {
            return ClearedKind::ShrankBack;
        }
        // A load grows at an even pace to its end: its last third of the
        // time brings about a third of the growth. A cache that fills slows
        // down as it fills: its last third brings little.
        let span = self.last_rise_seconds - self.start_seconds;
        if span <= 0.0 || grown == 0 || self.rise_log.len() < 3 {
            return ClearedKind::Load;
        }
        let cut = self.start_seconds + span * 2.0 / 3.0;
        let at_cut = self.rise_log.iter().take_while(|r| r.0 <= cut).last().map_or(self.base_bytes, |r| r.1);
        let late = self.rise_log.last().map_or(0, |r| r.1).saturating_sub(at_cut);
        if (late as f64) < grown as f64 / 6.0 {
            ClearedKind::Plateau
        } else {
            ClearedKind::Load
        }
    }

    fn cleared(&self, now_seconds: f64) -> ClearedFinding {
        ClearedFinding {
            location: self.location.clone(),
            kind: self.kind(),
            size_bytes: self.size_bytes,
            peak_bytes: self.peak_bytes,
            base_bytes: self.base_bytes,
            reported_bytes: self.reported_bytes,
            growing_seconds: (self.last_rise_seconds - self.start_seconds).max(0.0),
            flat_seconds: (now_seconds - self.last_rise_seconds).max(0.0),
            report: self.last_report.clone(),
        }
    }
}

impl Worker {
    /// The growth that counts as a rise of a followed site.
    pub(super) fn rise_tolerance(&self) -> u64 {
        (self.settings.min_growth_bytes / 16).max(1)
    }

    /// Takes the latest size of every remembered site, from its stacks.
    pub(super) fn follow_sites(&mut self) {
        let tolerance = self.rise_tolerance();
        let Some(last) = self.window.back() else {
            return;
        };
        for st in self.sites.values_mut() {
            let size: u64 = st.stacks.iter().filter_map(|&id| last.bytes_of(id)).map(|b| b.0).sum();
            st.observe(last.tick, last.raw.monotonic_seconds, size, tolerance);
        }
    }

    /// Clears the reported sites that stopped growing.
    pub(super) fn clear_sites(&mut self, findings: &mut Vec<Finding>) {
        let Some(last) = self.window.back() else {
            return;
        };
        let (now_tick, now_seconds) = (last.tick, last.raw.monotonic_seconds);
        let window = self.settings.window as u64;
        let min_quiet = (self.settings.min_window as u64 / 2).max(3);
        // Sampled mode: a site's estimate rises in steps of one sample's
        // weight, and the steps bunch with the program's scheduling, so the
        // rate of rises says little about the next quiet stretch (a real
        // leak was cleared after one under load). A whole window without a
        // rise there, the longest the monitor waits.
        let sampled = last.sample_mean.is_some();
        let mut cleared = Vec::new();
        for st in self.sites.values_mut() {
            if st.phase != Phase::Reported {
                continue;
            }
            let quiet = if sampled { window } else { st.quiet_ticks(min_quiet, window) };
            if now_tick.saturating_sub(st.last_rise_tick) < quiet {
                continue;
            }
            st.phase = Phase::Cleared(now_tick);
            cleared.push(st.cleared(now_seconds));
        }
        if cleared.is_empty() {
            return;
        }
        // The same order whatever the hash map's.
        cleared.sort_by(|a, b| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)));
        self.shared.stats.lock().cleared_findings += cleared.len() as u64;
        for c in cleared {
            log::info!("{c}");
            self.pending_cleared.push(c.clone());
            findings.push(Finding::Cleared(c));
        }
    }

    /// Forgets sites cleared more than a window ago: growing again, they are
    /// new findings.
    pub(super) fn forget_sites(&mut self) {
        let (tick, window) = (self.tick, self.settings.window as u64);
        self.sites.retain(|_, st| match st.phase {
            Phase::Reported => true,
            Phase::Cleared(at) => tick.saturating_sub(at) <= window || st.last_rise_tick > at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame { function: "f".into(), file: "src/a.rs".into(), line: 1, ..Frame::default() }
    }

    fn site(sizes: &[u64]) -> SiteState {
        let ticks: Vec<u64> = (0..sizes.len() as u64).collect();
        let secs: Vec<f64> = ticks.iter().map(|&t| t as f64 / 10.0).collect();
        SiteState::new(frame(), vec![1], &ticks, &secs, sizes, 10)
    }

    #[test]
    fn onset_rises_and_quiet_ticks() {
        // Flat, then a rise at every tick: growth starts at tick 3.
        let s = site(&[50, 50, 50, 50, 150, 250, 350, 450]);
        assert_eq!((s.start_tick, s.base_bytes, s.rises, s.last_rise_tick), (3, 50, 4, 7));
        // Four rises are little to go on: the prior makes it wait longer.
        assert_eq!(s.quiet_ticks(5, 30), 7);
        // A leak that rose at every tick for long is cleared after the floor.
        let s = site(&(0..21).map(|i| 100 * i).collect::<Vec<u64>>());
        assert_eq!(s.quiet_ticks(5, 30), 5);
        // A sparse one (a sampled leak, a rise in one tick of three) waits
        // longer, but never more than the window.
        let sparse: Vec<u64> = (0..31).map(|i| 1000 * (i / 3)).collect();
        let s = site(&sparse);
        let q = s.quiet_ticks(5, 30);
        assert!((15..=30).contains(&q), "{q}");
        assert_eq!(s.quiet_ticks(5, 12), 12);
    }

    #[test]
    fn kinds() {
        let mut load = site(&[0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
        load.observe(10, 1.0, 900, 10);
        assert_eq!(load.kind(), ClearedKind::Load);
        let cache = site(&[0, 400, 600, 700, 760, 800, 820, 835, 845, 850]);
        assert_eq!(cache.kind(), ClearedKind::Plateau);
        let mut shrank = site(&[0, 100, 200, 300, 400, 500, 600]);
        shrank.observe(7, 0.7, 200, 10);
        assert_eq!(shrank.kind(), ClearedKind::ShrankBack);
    }

    #[test]
    fn small_wiggles_are_not_rises() {
        let mut s = site(&[0, 100, 200]);
        assert_eq!(s.rises, 2);
        for (i, v) in [205, 195, 209, 201].into_iter().enumerate() {
            s.observe(3 + i as u64, 0.3, v, 10);
        }
        assert_eq!((s.rises, s.last_rise_tick, s.peak_bytes), (2, 2, 209));
        s.observe(8, 0.8, 211, 10);
        assert_eq!((s.rises, s.last_rise_tick), (3, 8));
    }
}
