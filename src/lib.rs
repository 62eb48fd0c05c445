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
mod control;
mod diff;
mod env;
pub(crate) mod hot;
mod monitor;
mod report;
mod snapshot;
mod symbolize;
mod tasks;
mod traceback;
mod trend;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "pprof")]
pub mod pprof;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tracing")]
pub mod tracing;

pub use births::{birth_shape, BirthShape};
pub use check::*;
pub use config::{CaptureMethod, Config, Mode, SiteRules};
pub(crate) use control::settings;
pub use control::{
    capture_method, clear_traces, is_tracing, reset_peak, start, stop, traced_memory, tracker_memory, untracked_blocks,
    TracedMemory,
};
pub use diff::{
    elapsed_seconds, filter_statistics, DiffTotals, Filter, FilterTarget, GroupBy, SnapshotDiff, SnapshotInfo,
    Statistic, StatisticDiff, TaskDiff,
};
pub use env::{init_from_env, parse_env, EnvError, EnvSettings, MonitorSettings, ENV_MONITOR, ENV_TRACING};
pub use hot::TrackingAllocator;
pub use monitor::*;
pub use report::{write_atomic, Error, Result, DIFF_FORMAT, SNAPSHOT_FORMAT, TREND_FORMAT};
pub use snapshot::{
    next_epoch, process_memory, Birth, Module, ProcessMemory, Snapshot, TaskStat, Totals, Trace, OTHER_STACKS,
};
pub use symbolize::offline::{symbolize_snapshot, unresolved_sites, ModuleOutcome, SymbolizeOutcome};
pub use tasks::{live_tasks, track_task, track_task_at, TaskGuard};
pub use traceback::{Traceback, TracebackIter};
pub use trend::{analyze_series, rank_key_cmp, trend, SeriesTrend, Trend, TrendPoint, TrendSite, Verdict};

use serde::{Deserialize, Serialize};

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

/// Takes a labelled snapshot of live memory per traceback
/// (`tracemalloc.take_snapshot()`). Other threads go on allocating while it
/// is taken. Its own memory is not traced.
pub fn take_snapshot(label: &str) -> Snapshot {
    let snap = {
        let _ignore = hot::control::ignore();
        // A forked child's tables may be locked by a thread that is gone.
        let raw = if hot::control::is_forked_child() {
            snapshot::RawSnapshot::default()
        } else {
            snapshot::collect_with(snapshot::Detail::Full)
        };
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
        let _ignore = hot::control::ignore();
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
    if !hot::control::is_sampling() {
        return value;
    }
    let copy = value.clone();
    let _ignore = hot::control::ignore();
    drop(value);
    copy
}

/// Runs `f` with this thread's allocations untraced: they are not recorded
/// at any site. Frees are still seen (a traced block freed or reallocated
/// in `f` leaves its site), and in sampled mode the bytes `f` allocates
/// still count in `traced_memory()`, so the total never drifts whichever
/// side frees them.
pub fn untraced<R>(f: impl FnOnce() -> R) -> R {
    let _untraced = hot::control::untraced_scope();
    f()
}
