//! The monitor's thread: its fixed-rate schedule, the snapshot it takes at
//! each tick, and the RSS and task checks; leaks are judged in `judge.rs`.

#![forbid(unsafe_code)]

use super::clearing::SiteState;
use super::findings::{ClearedFinding, Finding, RssFinding, TasksFinding};
use super::judge::SiteKey;
use super::oom::{OomWatch, OOM_POLL};
use super::{Callback, Settings, Shared};
use crate::hot::control::StackId;
use crate::snapshot::RawSnapshot;
use crate::tasks::TaskCount;
use crate::ProcessMemory;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One snapshot of the window: raw, stacks sorted by id.
pub(super) struct Entry {
    pub(super) tick: u64,
    pub(super) raw: RawSnapshot,
    pub(super) process: Option<ProcessMemory>,
    pub(super) tasks: Vec<TaskCount>,
    pub(super) tracker_bytes: u64,
    /// Sampled mode's mean distance between samples; `None` in exact mode.
    pub(super) sample_mean: Option<u64>,
}

impl Entry {
    pub(super) fn bytes_of(&self, id: StackId) -> Option<(u64, u64)> {
        self.raw.stacks.binary_search_by_key(&id, |s| s.0).ok().map(|i| (self.raw.stacks[i].1, self.raw.stacks[i].2))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.raw.stacks.capacity() * std::mem::size_of::<(StackId, u64, u64)>()
            + self.tasks.capacity() * std::mem::size_of::<TaskCount>()
    }

    pub(super) fn live_tasks(&self) -> u64 {
        self.tasks.iter().map(|t| t.live).sum()
    }
}

pub(super) struct Worker {
    pub(super) settings: Settings,
    pub(super) callbacks: Vec<Callback>,
    pub(super) shared: Arc<Shared>,
    pub(super) window: VecDeque<Entry>,
    pub(super) tick: u64,
    pub(super) sites: HashMap<SiteKey, SiteState>,
    pub(super) baseline_rss: Option<u64>,
    pub(super) rss_threshold: Option<u64>,
    pub(super) first_traced: Option<u64>,
    /// Live tasks at the last task warning; `None` while under the threshold.
    pub(super) tasks_warned: Option<u64>,
    /// Sites cleared since the last report, for the next one.
    pub(super) pending_cleared: Vec<ClearedFinding>,
    /// The final report (exit, SIGTERM, SIGINT) is written or was tried.
    pub(super) final_written: bool,
    /// Serving a report asked for: a stop does not cut it short.
    pub(super) serving: bool,
    /// The last report could not be written: the next failure is not logged.
    pub(super) report_failing: bool,
    /// The memory limits watched for pre-OOM reports.
    pub(super) oom: Option<OomWatch>,
}

impl Worker {
    pub(super) fn new(settings: Settings, callbacks: Vec<Callback>, shared: Arc<Shared>) -> Worker {
        Worker {
            window: VecDeque::with_capacity(settings.window),
            settings,
            callbacks,
            shared,
            tick: 0,
            sites: HashMap::new(),
            baseline_rss: None,
            rss_threshold: None,
            first_traced: None,
            tasks_warned: None,
            pending_cleared: Vec::new(),
            final_written: false,
            serving: false,
            report_failing: false,
            oom: None,
        }
    }

    /// Whether a stop cuts the work in progress short (not a report asked for).
    pub(super) fn cancelled(&self) -> bool {
        self.shared.stopping() && !self.serving
    }

    pub(super) fn run(mut self) {
        {
            let _ignore = crate::hot::control::ignore();
            self.shared.lock.lock().thread = Some(std::thread::current().id());
            self.oom = OomWatch::new(&self.settings);
        }
        let start = Instant::now();
        let interval_ns = self.settings.interval.as_nanos().max(1);
        let mut slot: u128 = 0;
        let mut next_tick = start;
        while !self.shared.stopping() {
            if Instant::now() >= next_tick {
                let began = Instant::now();
                let findings = match catch_unwind(AssertUnwindSafe(|| self.tick())) {
                    Ok(f) => f,
                    Err(_) => {
                        let _ignore = crate::hot::control::ignore();
                        log::error!("leaktrace: the monitor's snapshot panicked; it goes on at the next interval");
                        Vec::new()
                    }
                };
                self.update_stats(began.elapsed());
                self.dispatch(&findings);
                drop(findings);
                // Fixed rate: the next slot of the schedule that is still ahead.
                let elapsed = start.elapsed().as_nanos();
                slot = (slot + 1).max(elapsed / interval_ns + 1);
                next_tick = start + Duration::from_nanos((slot * interval_ns).min(u64::MAX as u128) as u64);
            }
            // Between ticks, RSS is polled against the memory limit: a
            // leak can go from 90% to the OOM killer within one interval.
            if catch_unwind(AssertUnwindSafe(|| self.check_memory_limit())).is_err() {
                let _ignore = crate::hot::control::ignore();
                log::error!("leaktrace: the monitor's memory-limit check panicked");
            }
            let wake_at = match &self.oom {
                Some(_) => next_tick.min(Instant::now() + OOM_POLL),
                None => next_tick,
            };
            if !self.wait_serving(wake_at) {
                break;
            }
        }
        if catch_unwind(AssertUnwindSafe(|| self.finish())).is_err() {
            let _ignore = crate::hot::control::ignore();
            log::error!("leaktrace: the monitor's final report panicked");
            self.shared.finished();
            super::exit::unregister(&self.shared);
        }
    }

    /// Callbacks run outside the tracker's guard: they are the program's code.
    pub(super) fn dispatch(&mut self, findings: &[Finding]) {
        for finding in findings {
            for cb in self.callbacks.iter_mut() {
                if catch_unwind(AssertUnwindSafe(|| cb(finding))).is_err() {
                    let _ignore = crate::hot::control::ignore();
                    log::error!("leaktrace: a monitor on_finding callback panicked");
                }
            }
        }
    }

    pub(super) fn update_stats(&mut self, took: Duration) {
        let _ignore = crate::hot::control::ignore();
        let window_bytes = self.window.capacity() * std::mem::size_of::<Entry>()
            + self.window.iter().map(Entry::heap_bytes).sum::<usize>();
        let mut s = self.shared.stats.lock();
        s.ticks = self.tick;
        s.window_snapshots = self.window.len();
        s.window_bytes = window_bytes;
        s.remembered_sites = self.sites.len();
        s.baseline_rss_bytes = self.baseline_rss;
        s.last_tick = took;
    }

    pub(super) fn tick(&mut self) -> Vec<Finding> {
        let _ignore = crate::hot::control::ignore();
        let entry = self.take_entry();
        self.judge(entry)
    }

    /// A snapshot of now, for the window.
    pub(super) fn take_entry(&self) -> Entry {
        let mut raw = crate::snapshot::collect();
        // Each tick is a birth epoch: a snapshot taken later tells blocks
        // born tick by tick (a leak) from blocks born at one time (a load).
        crate::snapshot::next_epoch();
        raw.stacks.sort_unstable_by_key(|s| s.0);
        raw.stacks.shrink_to_fit();
        let mut tasks = crate::tasks::task_counts();
        tasks.shrink_to_fit();
        Entry {
            tick: self.tick,
            raw,
            process: crate::process_memory(),
            tasks,
            tracker_bytes: crate::tracker_memory() as u64,
            sample_mean: match crate::settings().mode {
                crate::Mode::Sampled { mean_bytes } => Some(mean_bytes.max(1) as u64),
                crate::Mode::Full => None,
            },
        }
    }

    /// Adds a snapshot to the window.
    pub(super) fn push_entry(&mut self, entry: Entry) {
        self.tick += 1;
        if self.window.len() == self.settings.window {
            self.window.pop_front();
        }
        self.first_traced.get_or_insert(entry.raw.current);
        self.window.push_back(entry);
    }

    /// Adds a snapshot to the window and runs the checks on it.
    pub(super) fn judge(&mut self, entry: Entry) -> Vec<Finding> {
        self.push_entry(entry);
        let mut findings = Vec::new();
        self.check_rss(&mut findings);
        self.check_tasks(&mut findings);
        self.check_leaks(&mut findings);
        findings
    }

    pub(super) fn check_rss(&mut self, findings: &mut Vec<Finding>) {
        let Some(multiple) = self.settings.rss_growth_warning else {
            return;
        };
        let Some(latest) = self.window.back() else {
            return;
        };
        let Some(pm) = latest.process.clone() else {
            return;
        };
        if self.baseline_rss.is_none() && !self.shared.symbols_ready.load(Relaxed) {
            return;
        }
        let baseline = *self.baseline_rss.get_or_insert(pm.rss_bytes);
        let threshold = *self.rss_threshold.get_or_insert((baseline as f64 * multiple) as u64);
        if pm.rss_bytes <= threshold {
            return;
        }
        self.rss_threshold = Some((pm.rss_bytes as f64 * multiple) as u64);
        let finding = Finding::Rss(RssFinding {
            rss_bytes: pm.rss_bytes,
            vms_bytes: pm.vms_bytes,
            baseline_rss_bytes: baseline,
            threshold_bytes: threshold,
            multiple,
            traced_bytes: latest.raw.current,
            baseline_traced_bytes: self.first_traced.unwrap_or(0),
        });
        log::warn!("{finding}");
        self.shared.stats.lock().rss_warnings += 1;
        findings.push(finding);
    }

    pub(super) fn check_tasks(&mut self, findings: &mut Vec<Finding>) {
        let Some(threshold) = self.settings.live_tasks_warning else {
            return;
        };
        let Some(latest) = self.window.back() else {
            return;
        };
        let live = latest.live_tasks();
        if live <= threshold {
            self.tasks_warned = None;
            return;
        }
        if matches!(self.tasks_warned, Some(prev) if live < prev.saturating_mul(2)) {
            return;
        }
        self.tasks_warned = Some(live);
        let mut counts: Vec<TaskCount> = latest.tasks.iter().filter(|t| t.live > 0).copied().collect();
        crate::tasks::sort_counts(&mut counts);
        let finding =
            Finding::Tasks(TasksFinding { live, threshold, sites: counts.iter().map(TaskCount::stat).collect() });
        log::warn!("{finding}");
        self.shared.stats.lock().task_warnings += 1;
        findings.push(finding);
    }
}
