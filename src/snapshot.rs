//! Copies the counters out of `hot` and turns them into a [`Snapshot`].
//!
//! Nothing stops the world: the block table is summed one shard at a time
//! while other threads go on allocating into the other shards; stacks are
//! symbolized afterwards with no tracker lock held, through caches that
//! survive from one snapshot to the next.

use crate::hot::control::{self as hot, StackId};
use crate::{clock, symbolize, Frame};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

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

/// Live bytes and blocks of one trace born in a range of epochs: the
/// latest epoch alone, the one before, then ranges twice as long each step
/// back (2-3 epochs ago, 4-7, ...; 16 buckets at most), so a trace's births
/// stay bounded however long the program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    /// The oldest epoch of the range.
    pub epoch: u64,
    /// The newest epoch of the range (equal to `epoch` for one epoch).
    #[serde(default)]
    pub epoch_last: u64,
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

/// One object loaded in the process that took a snapshot (the executable,
/// a shared library): what `alloc-probe symbolize` needs to find its debug
/// info later.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// The file it was loaded from.
    pub path: String,
    /// Its GNU build id in hex (`readelf -n`), empty when it has none.
    #[serde(default)]
    pub build_id: String,
    /// Where it was loaded: a frame's address minus this is its
    /// [`Frame::offset`].
    #[serde(default)]
    pub load_address: u64,
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
    /// The objects loaded in the process, which frames without a file name
    /// by index (see [`Frame::module`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
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
    /// The birth epoch in force when collected.
    pub(crate) epoch: u64,
    /// With [`Detail::Full`]: live bytes and blocks per stack by age bucket
    /// (see [`age_bucket`]), sorted by stack id.
    pub(crate) births: Vec<(StackId, BirthBuckets)>,
    /// With [`Detail::Full`]: `(stack, alloc bytes, alloc blocks)` of every
    /// stack that allocated since `start()`, live or not.
    pub(crate) allocs: Vec<(StackId, u64, u64)>,
}

/// How much [`collect`] gathers: the monitor's window wants the live bytes
/// alone; a snapshot wants births and allocation totals too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    Live,
    Full,
}

/// Age buckets kept per trace: ages 0, 1, 2-3, 4-7, ..., and 2^14 epochs or more.
pub(crate) const AGE_BUCKETS: usize = 16;

/// `(bytes, blocks)` per age bucket.
pub(crate) type BirthBuckets = [(u64, u64); AGE_BUCKETS];

/// The bucket of a block `age` epochs old: 0 for this epoch, then one
/// bucket per power of two, so 16 buckets cover a block born a moment ago
/// and one born 16,000 snapshots ago, and a leak that went on all along
/// spreads over many buckets while a one-time load sits in one.
#[inline]
pub(crate) fn age_bucket(age: u64) -> usize {
    if age == 0 {
        0
    } else {
        ((64 - age.leading_zeros()) as usize).min(AGE_BUCKETS - 1)
    }
}

/// The ages `[lo, hi]` a bucket covers (`hi` is `u64::MAX` for the oldest).
pub(crate) fn bucket_ages(bucket: usize) -> (u64, u64) {
    match bucket {
        0 => (0, 0),
        b if b == AGE_BUCKETS - 1 => (1 << (b - 1), u64::MAX),
        b => (1 << (b - 1), (1 << b) - 1),
    }
}

/// Starts a new birth epoch and returns it: blocks allocated from now on are
/// born in it. Snapshots and monitor ticks call this.
pub fn next_epoch() -> u64 {
    hot::next_epoch()
}

/// Sums live blocks per stack, shard by shard: live bytes and blocks only
/// (the monitor's window).
pub(crate) fn collect() -> RawSnapshot {
    collect_with(Detail::Live)
}

/// Sums live blocks per stack, shard by shard, with `detail`.
pub(crate) fn collect_with(detail: Detail) -> RawSnapshot {
    let _ignore = hot::ignore();
    let mean = hot::sampled_mean();
    let epoch = hot::epoch();
    let full = detail == Detail::Full;
    #[derive(Default)]
    struct Acc {
        bytes: f64,
        blocks: f64,
        births: Option<Box<[(f64, f64); AGE_BUCKETS]>>,
    }
    let mut acc: HashMap<StackId, Acc> = HashMap::with_capacity(hot::stack_count() + 16);
    hot::for_each_block(|stack, size, born, _| {
        let w = mean.map_or(1.0, |mean| hot::sample_weight(size, mean));
        let e = acc.entry(stack).or_default();
        e.bytes += size as f64 * w;
        e.blocks += w;
        if full {
            // Epochs are kept modulo 2^16: the age is the distance back.
            let age = (epoch as u16).wrapping_sub(born) as u64;
            let b = &mut e.births.get_or_insert_with(|| Box::new([(0.0, 0.0); AGE_BUCKETS]))[age_bucket(age)];
            b.0 += size as f64 * w;
            b.1 += w;
        }
    });
    let (current, peak) = hot::traced();
    let mut stacks: Vec<(StackId, u64, u64)> =
        acc.iter().map(|(&id, a)| (id, a.bytes.round() as u64, a.blocks.round() as u64)).collect();
    stacks.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut births: Vec<(StackId, BirthBuckets)> = acc
        .into_iter()
        .filter_map(|(id, a)| {
            let b = a.births?;
            Some((id, std::array::from_fn(|i| (b[i].0.round() as u64, b[i].1.round() as u64))))
        })
        .collect();
    births.sort_unstable_by_key(|b| b.0);
    let allocs = if full {
        // Stacks past the table's cap share one id, with its own totals.
        (0..hot::stack_count() as StackId)
            .chain(std::iter::once(hot::OVERFLOW_STACK))
            .filter_map(|id| {
                let (bytes, blocks) = hot::stack_alloc_totals(id);
                (bytes > 0 || blocks > 0).then_some((id, bytes, blocks))
            })
            .collect()
    } else {
        Vec::new()
    };
    RawSnapshot {
        stacks,
        unix_seconds: clock::unix_now(),
        monotonic_seconds: clock::monotonic_now(),
        current: current as u64,
        peak: peak as u64,
        epoch,
        births,
        allocs,
    }
}

/// The site shown for the blocks of every stack past the stack table's cap
/// (`Config::max_stacks`).
pub const OTHER_STACKS: &str = "[other stacks]";

/// The context label stack `id` was captured under, if any.
pub(crate) fn context_of_stack(id: StackId) -> Option<String> {
    crate::context::label(hot::stack_context(id))
}

/// The stack of the live traced block that contains `addr`, if any. A scan
/// of every shard: for a person asking about one object, not for a loop.
pub(crate) fn stack_containing(addr: usize) -> Option<StackId> {
    let _ignore = hot::ignore();
    let mut found = None;
    hot::for_each_block(|stack, size, _, start| {
        if found.is_none() && addr >= start && addr < start + size.max(1) {
            found = Some(stack);
        }
    });
    found
}

/// The traceback of an interned stack, from its call site outward, under
/// the site rules and frame count in force: the one way every module turns a
/// stack id into frames (resolved once per stack, then cached).
pub(crate) fn traceback_of_stack(id: StackId) -> std::sync::Arc<[Frame]> {
    let _ignore = hot::ignore();
    if id == hot::OVERFLOW_STACK {
        return vec![Frame::new(OTHER_STACKS, "", 0)].into();
    }
    let settings = crate::settings();
    symbolize::resolve_stack(id, hot::stack_ips(id), &settings.rules, settings.frames)
}

/// Resolves a raw snapshot into a [`Snapshot`].
pub(crate) fn build(label: &str, raw: &RawSnapshot) -> Snapshot {
    let _ignore = hot::ignore();
    let settings = crate::settings();
    // One batch: the debug info opened for this snapshot's stacks is
    // released when it is built.
    let _batch = symbolize::Batch::begin();
    let mut frames: Vec<Frame> = Vec::new();
    let mut frame_ids: HashMap<Frame, u32> = HashMap::new();
    let mut contexts: Vec<String> = Vec::new();
    let mut context_ids: HashMap<u32, u32> = HashMap::new();
    // A trace is a distinct traceback under a distinct context.
    let mut traces: HashMap<(Vec<u32>, Option<u32>), Trace> = HashMap::new();
    let live = raw.stacks.iter().map(|&(id, bytes, blocks)| (id, bytes, blocks, 0, 0));
    let dead = raw.allocs.iter().map(|&(id, bytes, blocks)| (id, 0, 0, bytes, blocks));
    for (id, bytes, blocks, alloc_bytes, alloc_blocks) in live.chain(dead) {
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
        let ctx = match hot::stack_context(id) {
            0 => None,
            c => Some(*context_ids.entry(c).or_insert_with(|| {
                contexts.push(crate::context::label(c).unwrap_or_default());
                contexts.len() as u32 - 1
            })),
        };
        let t = traces.entry((key, ctx)).or_insert_with_key(|(frames, context)| Trace {
            frames: frames.clone(),
            context: *context,
            ..Trace::default()
        });
        t.size += bytes;
        t.count += blocks;
        t.alloc_size += alloc_bytes;
        t.alloc_count += alloc_blocks;
        if bytes > 0 {
            if let Ok(i) = raw.births.binary_search_by_key(&id, |b| b.0) {
                add_births(&mut t.births, &raw.births[i].1, raw.epoch);
            }
        }
    }
    let mut traces: Vec<Trace> = traces.into_values().collect();
    sort_traces(&mut traces);
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
            untracked_blocks: hot::untracked(),
        },
        process: process_memory(),
        frames,
        traces,
        // A forked child's task table may be locked by a thread that is gone.
        tasks: if hot::is_forked_child() { Vec::new() } else { crate::tasks::task_stats() },
        epoch: raw.epoch,
        contexts,
        modules: symbolize::modules::list(),
    }
}

/// Largest first, then by count, allocation total, frames and context.
pub(crate) fn sort_traces(traces: &mut [Trace]) {
    traces.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then(b.count.cmp(&a.count))
            .then(b.alloc_size.cmp(&a.alloc_size))
            .then(a.frames.cmp(&b.frames))
            .then(a.context.cmp(&b.context))
    });
}

/// Adds one stack's age buckets to a trace's births (oldest first), taken
/// at `epoch`.
fn add_births(births: &mut Vec<Birth>, buckets: &BirthBuckets, epoch: u64) {
    for (b, &(size, count)) in buckets.iter().enumerate().rev() {
        if size == 0 && count == 0 {
            continue;
        }
        let (young, old) = bucket_ages(b);
        let first = epoch.saturating_sub(old);
        let last = epoch.saturating_sub(young);
        match births.iter_mut().find(|x| x.epoch == first && x.epoch_last == last) {
            Some(x) => {
                x.size += size;
                x.count += count;
            }
            None => births.push(Birth { epoch: first, epoch_last: last, size, count }),
        }
    }
    births.sort_by_key(|b| b.epoch);
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
    /// The traceback of `trace`, as frames (a copy; see
    /// [`Snapshot::frames_of`] to borrow them).
    pub fn traceback(&self, trace: &Trace) -> Vec<Frame> {
        self.frames_of(trace).cloned().collect()
    }

    /// The frames of `trace`'s traceback, from the call site outward,
    /// borrowed from [`Snapshot::frames`]: [`Snapshot::traceback`] without
    /// the copy.
    pub fn frames_of<'a>(&'a self, trace: &'a Trace) -> impl DoubleEndedIterator<Item = &'a Frame> + Clone + 'a {
        trace.frames.iter().filter_map(|&i| self.frames.get(i as usize))
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
