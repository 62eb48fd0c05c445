//! # leaktrace: tracemalloc for Rust
//!
//! A `#[global_allocator]` wrapper that counts live bytes and blocks per call
//! site, the site being the first frame of the program's own code (not
//! `alloc::raw_vec`); labelled snapshots; diffs that rank the
//! fastest-growing sites; JSON files that other processes can read back.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
//!
//! fn main() -> Result<(), leaktrace::Error> {
//!     leaktrace::start(leaktrace::Config::default());
//!     let before = leaktrace::take_snapshot("before");
//!     let mut cache = Vec::new();
//!     for i in 0..1000 {
//!         cache.push(vec![i as u8; 1024]); // grows: this line is ranked first
//!     }
//!     let after = leaktrace::take_snapshot("after");
//!     let diff = after.compare_to(&before, leaktrace::GroupBy::Line);
//!     for site in diff.top(3) {
//!         println!("{}:{} {:+} B", site.location.file, site.location.line, site.size_diff);
//!     }
//!     after.write_json("after.json")?;
//!     Ok(())
//! }
//! ```
//!
//! Limits: blocks allocated before `start()` are not known; in release
//! builds file and line need `debug = "line-tables-only"` (or more) in the
//! profile; exact mode captures a stack per allocation (see the README for
//! the measured cost and for frame pointers, which make it cheap).

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod births;
mod check;
mod clock;
mod config;
pub mod context;
mod diff;
mod env;
pub(crate) mod hot;
mod monitor;
mod report;
mod snapshot;
mod symbolize;
mod tasks;
mod trend;

#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tracing")]
pub mod tracing;

pub use births::{birth_shape, BirthShape};
pub use check::*;
pub use config::{CaptureMethod, Config, Mode, SiteRules};
pub use diff::{
    elapsed_seconds, filter_statistics, DiffTotals, Filter, FilterTarget, GroupBy, SnapshotDiff, SnapshotInfo,
    Statistic, StatisticDiff, TaskDiff,
};
pub use env::{init_from_env, parse_env, EnvError, EnvSettings, MonitorSettings, ENV_MONITOR, ENV_TRACING};
pub use hot::alloc::TrackingAllocator;
pub use monitor::*;
pub use report::{write_atomic, Error, Result, DIFF_FORMAT, SNAPSHOT_FORMAT, TREND_FORMAT};
pub use snapshot::{next_epoch, process_memory, Birth, Module, ProcessMemory, Snapshot, TaskStat, Totals, Trace};
pub use symbolize::offline::{symbolize_snapshot, unresolved_sites, ModuleOutcome, SymbolizeOutcome};
pub use tasks::{live_tasks, track_task, track_task_at, TaskGuard};
pub use trend::{analyze_series, rank_key_cmp, trend, SeriesTrend, Trend, TrendPoint, TrendSite, Verdict};

use hot::guard::{Guard, IGNORE};
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::{Relaxed, Release};

/// One stack frame.
///
/// Its identity (equality, hashing, order) is `function`, `file` and
/// `line`: the other keys say where it came from, so the same line of a
/// program built in two directories is one frame.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Frame {
    /// Demangled function name, without the hash (`app::cache::Cache::insert`);
    /// for a frame nothing was resolved for, its object and offset
    /// (`app+0x1a2b3`, see [`Frame::offset`]).
    pub function: String,
    /// Source file, portable: relative to the workspace root of the crate it
    /// belongs to (`src/db.rs`, `alloc-probe/src/main.rs`), the standard
    /// library as `<rustc>/library/std/src/...`, a dependency as
    /// `tokio-1.47.1/src/...`; absolute when no root is known. Empty when
    /// unknown.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// The source file's absolute path as the debug info records it
    /// (`/home/ci/app/src/db.rs`), when it differs from `file`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_abs: String,
    /// For a frame without file and line: the object it is in, an index
    /// into [`Snapshot::modules`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<u32>,
    /// For a frame without file and line: the return address minus the
    /// object's load address (what `alloc-probe symbolize` looks up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Frame {
    /// A frame with a function, a file and a line.
    pub fn new(function: impl Into<String>, file: impl Into<String>, line: u32) -> Frame {
        Frame { function: function.into(), file: file.into(), line, ..Frame::default() }
    }

    /// Whether this frame still needs symbolizing (it has an object and
    /// offset but no file).
    pub fn is_unresolved(&self) -> bool {
        self.offset.is_some() && self.file.is_empty()
    }

    fn identity(&self) -> (&str, &str, u32) {
        (&self.function, &self.file, self.line)
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Frame {}

impl std::hash::Hash for Frame {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state)
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frame {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => write!(f, "{}", self.function),
            (false, 0) => write!(f, "{}", self.file),
            (false, line) => write!(f, "{}:{}", self.file, line),
        }
    }
}

/// How reports show a site under its context: a site with no frame of the
/// program's own code (a request body collected by a framework's extractor
/// has its site in `bytes` or `hyper`) leads with its context, as
/// `POST /{key} › bytes-1.12.2/src/bytes_mut.rs:795`; a site in the
/// program's own code keeps its place and names the context after it, as
/// `src/db.rs:40 [POST /{key}]`; without a context, the site alone.
pub fn site_label(site: &Frame, context: Option<&str>) -> String {
    match context {
        None => site.to_string(),
        Some(ctx) if is_program_frame(site) => format!("{site} [{ctx}]"),
        Some(ctx) => format!("{ctx} › {site}"),
    }
}

/// Whether `frame` is in the program's own code by the default site rules
/// (not leaktrace, the standard library, a dependency, or C).
pub fn is_program_frame(frame: &Frame) -> bool {
    symbolize::is_own(frame)
}

/// Traced bytes now and at their highest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracedMemory {
    /// Bytes in blocks allocated since `start()` (or `clear_traces()`) and
    /// still live.
    pub current: usize,
    /// The highest `current` since `start()` or `reset_peak()`.
    pub peak: usize,
}

/// The settings in force, for snapshots.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) frames: usize,
    pub(crate) mode: Mode,
    pub(crate) rules: SiteRules,
}

static SETTINGS: Lazy<RwLock<Settings>> =
    Lazy::new(|| RwLock::new(Settings { frames: 16, mode: Mode::Full, rules: SiteRules::default() }));

/// Serializes `start`, `stop` and `clear_traces` with each other.
static CONTROL: Mutex<()> = Mutex::new(());

pub(crate) fn settings() -> Settings {
    let _ignore = Guard::with(IGNORE);
    SETTINGS.read().clone()
}

/// Return addresses captured beyond the frames kept: the allocator's own
/// frames and the standard library's sit between the hook and the site.
const EXTRA_FRAMES: usize = 24;

/// Starts tracing with `config`. Called while tracing, it starts over: the
/// traces so far are cleared and the new configuration applies.
pub fn start(config: Config) {
    let _ignore = Guard::with(IGNORE);
    let _control = CONTROL.lock();
    hot::STATE.store(hot::OFF, Relaxed);
    hot::clear();
    hot::reset_counters();
    hot::CAPTURE.store(choose_capture(config.capture), Relaxed);
    hot::DEPTH.store((config.frames + EXTRA_FRAMES).min(hot::stack::MAX_DEPTH), Relaxed);
    match config.mode {
        Mode::Full => hot::MODE.store(hot::MODE_EXACT, Relaxed),
        Mode::Sampled { mean_bytes } => {
            hot::MEAN_BYTES.store(mean_bytes.max(1), Relaxed);
            hot::MODE.store(hot::MODE_SAMPLED, Relaxed);
        }
    }
    if let Some(seed) = config.sample_seed {
        hot::sample::SEED.store(seed, Relaxed);
    }
    hot::sample::EPOCH.fetch_add(1, Relaxed);
    {
        let mut s = SETTINGS.write();
        if s.rules != config.rules || s.frames != config.frames {
            symbolize::forget_sites();
        }
        *s = Settings { frames: config.frames, mode: config.mode, rules: config.rules };
    }
    symbolize::set_enabled(config.symbolize);
    let state = if config.mode == Mode::Full { hot::EXACT } else { hot::SAMPLED };
    hot::STATE.store(state, Release);
}

/// Picks and checks the capture method (see [`CaptureMethod`]).
fn choose_capture(asked: CaptureMethod) -> u8 {
    use hot::stack::{walk_works, DWARF, FRAME_POINTERS, LIBGCC};
    let dwarf_ok = || hot::dwarf::load_modules() > 0 && walk_works(DWARF);
    match asked {
        CaptureMethod::Auto if walk_works(FRAME_POINTERS) => FRAME_POINTERS,
        CaptureMethod::Auto if dwarf_ok() => DWARF,
        CaptureMethod::Auto | CaptureMethod::Unwinder => LIBGCC,
        CaptureMethod::FramePointers => {
            if !walk_works(FRAME_POINTERS) {
                log::warn!("leaktrace: frame pointers asked for, but this build's walk does not find its callers; call sites may be wrong");
            }
            FRAME_POINTERS
        }
        CaptureMethod::Dwarf if dwarf_ok() => DWARF,
        CaptureMethod::Dwarf => {
            log::warn!("leaktrace: the DWARF unwinder failed its check at start(); using libgcc's");
            LIBGCC
        }
    }
}

/// Stops tracing and clears the traces (`tracemalloc.stop()`).
pub fn stop() {
    let _ignore = Guard::with(IGNORE);
    let _control = CONTROL.lock();
    hot::STATE.store(hot::OFF, Relaxed);
    hot::clear();
}

/// Whether tracing is on.
pub fn is_tracing() -> bool {
    hot::STATE.load(Relaxed) != hot::OFF
}

/// The capture method in force (`Unwinder`, libgcc's, before the first `start()`).
pub fn capture_method() -> CaptureMethod {
    match hot::CAPTURE.load(Relaxed) {
        hot::stack::FRAME_POINTERS => CaptureMethod::FramePointers,
        hot::stack::DWARF => CaptureMethod::Dwarf,
        _ => CaptureMethod::Unwinder,
    }
}

/// Traced bytes now and at their peak. `current` is exact in every mode
/// (the peak is exact to within 64 KiB per thread, as traced bytes are
/// counted per thread and folded into the total every 64 KiB): in exact mode
/// the bytes of blocks allocated since `start()` and still live; in sampled
/// mode the bytes allocated minus the bytes freed since `start()`.
pub fn traced_memory() -> TracedMemory {
    let (current, peak) = hot::traced();
    TracedMemory { current, peak }
}

/// Sets the peak to the current value (`tracemalloc.reset_peak()`).
pub fn reset_peak() {
    hot::reset_peak();
}

/// Forgets every trace: blocks allocated so far are ignored when freed
/// (`tracemalloc.clear_traces()`).
pub fn clear_traces() {
    let _ignore = Guard::with(IGNORE);
    let _control = CONTROL.lock();
    hot::clear();
}

/// Bytes the tracker holds for its own tables (`tracemalloc.get_tracemalloc_memory()`).
pub fn tracker_memory() -> usize {
    let _ignore = Guard::with(IGNORE);
    hot::memory()
}

/// Takes a labelled snapshot of live memory per traceback
/// (`tracemalloc.take_snapshot()`). Other threads go on allocating while it
/// is taken. Its own memory is not traced.
pub fn take_snapshot(label: &str) -> Snapshot {
    let snap = {
        let _ignore = Guard::with(IGNORE);
        let raw = snapshot::collect_with(snapshot::Detail::Full);
        let snap = snapshot::build(label, &raw);
        snapshot::next_epoch();
        snap
    };
    hand_over(snap)
}

/// Where the live traced block that contains `ptr` was allocated, from its
/// call site outward (tracemalloc's `get_object_traceback`): `None` when no
/// traced block holds that address (freed, allocated before `start()`, not
/// sampled in sampled mode, or not heap memory at all).
///
/// ```no_run
/// let v = vec![0u8; 4096];
/// if let Some(tb) = leaktrace::traceback_of(v[100..].as_ptr()) {
///     println!("allocated at {}", tb[0]);
/// }
/// ```
pub fn traceback_of<T: ?Sized>(ptr: *const T) -> Option<Vec<Frame>> {
    let tb = {
        let _ignore = Guard::with(IGNORE);
        let id = snapshot::stack_containing(ptr as *const u8 as usize)?;
        snapshot::traceback_of_stack(id).to_vec()
    };
    Some(hand_over(tb))
}

/// Hands a value built by the tracker (untraced) to the program.
///
/// In sampled mode the traced total counts every byte allocated minus
/// every byte freed by the program, without a record per block; a value
/// allocated untraced and then freed by the program would be subtracted
/// without ever having been added, and the total would drift down with
/// every snapshot dropped. So in sampled mode the program gets a copy made
/// in its own context, and the tracker's original is freed untraced. In
/// exact mode frees are looked up, untraced blocks are ignored when freed,
/// and the value is returned as it is.
pub(crate) fn hand_over<T: Clone>(value: T) -> T {
    if hot::STATE.load(Relaxed) != hot::SAMPLED {
        return value;
    }
    let copy = value.clone();
    let _ignore = Guard::with(IGNORE);
    drop(value);
    copy
}

/// Runs `f` with this thread's allocations untraced (frees are still seen).
pub fn untraced<R>(f: impl FnOnce() -> R) -> R {
    let _ignore = Guard::with(IGNORE);
    f()
}
