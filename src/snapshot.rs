//! Copies the counters out of `hot` and turns them into a [`Snapshot`].
//!
//! Nothing stops the world: the block table is summed one shard at a time
//! while other threads go on allocating into the other shards; stacks are
//! symbolized afterwards with no tracker lock held, through caches that
//! survive from one snapshot to the next.

use crate::hot::guard::{Guard, IGNORE};
use crate::hot::sites::{unpack, BlockTable, StackId};
use crate::hot::{self, sample, BLOCKS, MEAN_BYTES, MODE, MODE_SAMPLED, STACKS};
use crate::{clock, symbolize, Frame};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;

/// Totals of a snapshot, in bytes and blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// `traced_memory().current` when the snapshot was taken.
    pub current_bytes: u64,
    /// `traced_memory().peak` when the snapshot was taken.
    pub peak_bytes: u64,
    /// Live blocks over all traces (an estimate in sampled mode).
    pub blocks: u64,
    /// Bytes over all traces (an estimate in sampled mode).
    pub traced_bytes: u64,
    /// What the tracker itself held (`tracker_memory()`).
    pub tracker_bytes: u64,
    /// Blocks that could not be recorded since start.
    pub untracked_blocks: u64,
}

/// The process's memory as the OS sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Virtual memory size.
    pub vms_bytes: u64,
}

/// One distinct traceback and what is live at it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Live bytes.
    pub size: u64,
    /// Live blocks.
    pub count: u64,
    /// Indices into [`Snapshot::frames`], the call site first, outward.
    pub frames: Vec<u32>,
    /// Bytes allocated at this traceback since `start()`, freed or not (an
    /// unbiased estimate in sampled mode).
    #[serde(default)]
    pub alloc_size: u64,
    /// Blocks allocated at this traceback since `start()`, freed or not.
    #[serde(default)]
    pub alloc_count: u64,
    /// The context the blocks were allocated under (see `leaktrace::context`):
    /// an index into [`Snapshot::contexts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
    /// Live bytes and blocks by the epoch they were born in, oldest first
    /// (see [`Snapshot::epoch`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub births: Vec<Birth>,
}

/// Live bytes and blocks of one trace born in one epoch (or, for the
/// oldest bucket of a trace, in that epoch or before).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    /// The epoch the blocks were born in.
    pub epoch: u64,
    /// Live bytes born then.
    pub size: u64,
    /// Live blocks born then.
    pub count: u64,
}

/// Live tasks at one spawn site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStat {
    /// Where the tasks were spawned.
    pub location: Frame,
    /// Tasks alive now.
    pub live: u64,
    /// Tasks spawned there in total.
    pub spawned: u64,
}

/// Live memory per traceback at one moment, with a label
/// (`tracemalloc.take_snapshot()`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the program called this moment (`"after_load"`).
    pub label: String,
    /// Wall-clock time, RFC 3339 in UTC.
    pub taken_at: String,
    /// The same, as seconds since the Unix epoch (read from `taken_at`
    /// when absent).
    #[serde(default)]
    pub unix_seconds: f64,
    /// CLOCK_MONOTONIC seconds, for rates between snapshots of one process.
    #[serde(default)]
    pub monotonic_seconds: f64,
    /// The process that took it.
    #[serde(default)]
    pub pid: u32,
    /// `"exact"` or `"sampled"`.
    pub mode: String,
    /// Sampled mode's mean distance between samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_bytes: Option<u64>,
    /// `"frame-pointers"` or `"unwinder"`.
    pub capture: String,
    /// Frames kept per traceback.
    pub frames_per_trace: usize,
    /// Totals.
    pub totals: Totals,
    /// RSS and VMS, where the OS tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessMemory>,
    /// Every distinct frame, once.
    pub frames: Vec<Frame>,
    /// Every distinct traceback with its live bytes and blocks, largest first.
    pub traces: Vec<Trace>,
    /// Live tasks per spawn site (see `track_task`).
    #[serde(default)]
    pub tasks: Vec<TaskStat>,
    /// The birth epoch in force when the snapshot was taken: every snapshot
    /// and every monitor tick starts a new one (see [`Trace::births`]).
    #[serde(default)]
    pub epoch: u64,
    /// The context labels that traces name (see [`Trace::context`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
}

/// Per-stack live bytes and blocks, before symbolization.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawSnapshot {
    /// `(stack, bytes, blocks)`, estimates in sampled mode.
    pub(crate) stacks: Vec<(StackId, u64, u64)>,
    pub(crate) unix_seconds: f64,
    pub(crate) monotonic_seconds: f64,
    pub(crate) current: u64,
    pub(crate) peak: u64,
}

/// Sums live blocks per stack, shard by shard.
pub(crate) fn collect() -> RawSnapshot {
    let _ignore = Guard::with(IGNORE);
    let sampled = MODE.load(Relaxed) == MODE_SAMPLED;
    let mean = MEAN_BYTES.load(Relaxed);
    let mut acc: HashMap<StackId, (f64, f64)> = HashMap::with_capacity(STACKS.len() + 16);
    for i in 0..BlockTable::shard_count() {
        let shard = BLOCKS.lock_shard(i);
        for &word in shard.values() {
            let (stack, size) = unpack(word);
            let w = if sampled { 1.0 / sample::probability(size, mean) } else { 1.0 };
            let e = acc.entry(stack).or_insert((0.0, 0.0));
            e.0 += size as f64 * w;
            e.1 += w;
        }
    }
    let (current, peak) = hot::traced();
    let mut stacks: Vec<(StackId, u64, u64)> =
        acc.into_iter().map(|(id, (b, n))| (id, b.round() as u64, n.round() as u64)).collect();
    stacks.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    RawSnapshot {
        stacks,
        unix_seconds: clock::unix_now(),
        monotonic_seconds: clock::monotonic_now(),
        current: current as u64,
        peak: peak as u64,
    }
}

/// The traceback of an interned stack, from its call site outward, under
/// the site rules and frame count in force: the one way every module turns a
/// stack id into frames (resolved once per stack, then cached).
pub(crate) fn traceback_of_stack(id: StackId) -> std::sync::Arc<[Frame]> {
    let _ignore = Guard::with(IGNORE);
    let settings = crate::settings();
    symbolize::resolve_stack(id, STACKS.get(id), &settings.rules, settings.frames)
}

/// Resolves a raw snapshot into a [`Snapshot`].
pub(crate) fn build(label: &str, raw: &RawSnapshot) -> Snapshot {
    let _ignore = Guard::with(IGNORE);
    let settings = crate::settings();
    let mut frames: Vec<Frame> = Vec::new();
    let mut frame_ids: HashMap<Frame, u32> = HashMap::new();
    let mut traces: HashMap<Vec<u32>, (u64, u64)> = HashMap::new();
    for &(id, bytes, blocks) in &raw.stacks {
        let tb = traceback_of_stack(id);
        let key: Vec<u32> = tb
            .iter()
            .map(|f| {
                *frame_ids.entry(f.clone()).or_insert_with(|| {
                    frames.push(f.clone());
                    frames.len() as u32 - 1
                })
            })
            .collect();
        let e = traces.entry(key).or_insert((0, 0));
        e.0 += bytes;
        e.1 += blocks;
    }
    let mut traces: Vec<Trace> =
        traces.into_iter().map(|(frames, (size, count))| Trace { size, count, frames, ..Trace::default() }).collect();
    traces.sort_by(|a, b| b.size.cmp(&a.size).then(b.count.cmp(&a.count)).then(a.frames.cmp(&b.frames)));
    let sampled = settings.mode != crate::Mode::Full;
    Snapshot {
        label: label.to_string(),
        taken_at: clock::rfc3339(raw.unix_seconds),
        unix_seconds: raw.unix_seconds,
        monotonic_seconds: raw.monotonic_seconds,
        pid: std::process::id(),
        mode: if sampled { "sampled" } else { "exact" }.to_string(),
        mean_bytes: match settings.mode {
            crate::Mode::Sampled { mean_bytes } => Some(mean_bytes as u64),
            crate::Mode::Full => None,
        },
        capture: crate::capture_method().as_str().to_string(),
        frames_per_trace: settings.frames,
        totals: Totals {
            current_bytes: raw.current,
            peak_bytes: raw.peak,
            blocks: traces.iter().map(|t| t.count).sum(),
            traced_bytes: traces.iter().map(|t| t.size).sum(),
            tracker_bytes: crate::tracker_memory() as u64,
            untracked_blocks: hot::UNTRACKED.load(Relaxed) as u64,
        },
        process: process_memory(),
        frames,
        traces,
        tasks: crate::tasks::task_stats(),
        epoch: 0,
        contexts: Vec::new(),
    }
}

/// RSS and VMS from `/proc/self/statm`.
pub fn process_memory() -> Option<ProcessMemory> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut it = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
    let vms_pages = it.next()??;
    let rss_pages = it.next()??;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as u64 } else { 4096 };
    Some(ProcessMemory { rss_bytes: rss_pages * page, vms_bytes: vms_pages * page })
}

impl Snapshot {
    /// The traceback of `trace`, as frames.
    pub fn traceback(&self, trace: &Trace) -> Vec<Frame> {
        trace.frames.iter().filter_map(|&i| self.frames.get(i as usize).cloned()).collect()
    }

    /// The context label of `trace`, if it was allocated under one.
    pub fn context_of(&self, trace: &Trace) -> Option<&str> {
        trace.context.and_then(|i| self.contexts.get(i as usize)).map(String::as_str)
    }

    /// The call site of `trace` (its first frame).
    pub fn site(&self, trace: &Trace) -> Option<&Frame> {
        trace.frames.first().and_then(|&i| self.frames.get(i as usize))
    }
}
