//! Start, stop, clear and the checks' "start unless on": the one lock that
//! orders them, and the settings snapshots read. Everything here changes
//! the hook's state only through `crate::hot::control`.

#![forbid(unsafe_code)]

use crate::hot::control::{self as hot, Recording};
use crate::{symbolize, CaptureMethod, Config, Mode, SiteRules};
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};

/// The settings in force, for snapshots.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) frames: usize,
    pub(crate) mode: Mode,
    pub(crate) rules: SiteRules,
}

static SETTINGS: Lazy<RwLock<Settings>> =
    Lazy::new(|| RwLock::new(Settings { frames: 16, mode: Mode::Full, rules: SiteRules::default() }));

/// Orders `start`, `stop`, `clear_traces` and [`ensure_tracing`] (leak
/// checks and monitors starting tracing unless it is on): two callers racing
/// through `start()` would have the second clear the first one's traces.
static CONTROL: Mutex<()> = Mutex::new(());

pub(crate) fn settings() -> Settings {
    let _ignore = hot::ignore();
    SETTINGS.read().clone()
}

/// Return addresses captured beyond the frames kept: the allocator's own
/// frames and the standard library's sit between the hook and the site.
const EXTRA_FRAMES: usize = 24;

/// Starts tracing with `config`. Called while tracing, it starts over: the
/// traces so far are cleared and the new configuration applies.
pub fn start(config: Config) {
    let _ignore = hot::ignore();
    if hot::is_forked_child() {
        log::warn!("leaktrace: start() in the child of a fork is ignored: the child is not traced (see the README, Reliability)");
        return;
    }
    let _control = CONTROL.lock();
    start_locked(config);
}

/// [`start`], with the lock held.
fn start_locked(config: Config) {
    hot::prepare();
    let capture = hot::choose_capture(config.capture);
    {
        let mut s = SETTINGS.write();
        if s.rules != config.rules || s.frames != config.frames {
            symbolize::forget_sites();
        }
        *s = Settings { frames: config.frames, mode: config.mode, rules: config.rules };
    }
    symbolize::set_enabled(config.symbolize);
    hot::set_max_stacks(config.max_stacks);
    let recording = match config.mode {
        Mode::Full => Recording::Exact,
        Mode::Sampled { mean_bytes } => Recording::Sampled { mean_bytes },
    };
    hot::begin(recording, config.frames + EXTRA_FRAMES, capture, config.sample_seed);
}

/// Starts tracing with `config()` unless it is already on; `true` when this
/// call started it. Under the same lock as `start`, so a check and a
/// monitor starting together start once.
pub(crate) fn ensure_tracing(config: impl FnOnce() -> Config) -> bool {
    let _ignore = hot::ignore();
    if hot::is_forked_child() {
        return false;
    }
    let _control = CONTROL.lock();
    if hot::is_on() {
        return false;
    }
    start_locked(config());
    true
}

/// Stops tracing and clears the traces (`tracemalloc.stop()`).
pub fn stop() {
    let _ignore = hot::ignore();
    if hot::is_forked_child() {
        return;
    }
    let _control = CONTROL.lock();
    hot::end();
}

/// Whether tracing is on.
pub fn is_tracing() -> bool {
    hot::is_on()
}

/// The capture method in force (`Unwinder`, libgcc's, before the first `start()`).
pub fn capture_method() -> CaptureMethod {
    hot::capture_method()
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

/// Traced bytes now and at their peak. `current` is exact in every mode
/// (the peak is exact to within 64 KiB per thread, as traced bytes are
/// counted per thread and folded into the total every 64 KiB): in exact mode
/// the bytes of blocks allocated since `start()` and still live; in sampled
/// mode the bytes allocated minus the bytes freed since `start()`.
///
/// While tracing is off (before `start()`, after `stop()`) both are 0, as
/// with tracemalloc: a hook that was already past its check when `stop()`
/// ran may still count a block, and its free, after the stop, is not seen.
pub fn traced_memory() -> TracedMemory {
    if !is_tracing() {
        return TracedMemory { current: 0, peak: 0 };
    }
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
    let _ignore = hot::ignore();
    if hot::is_forked_child() {
        return;
    }
    let _control = CONTROL.lock();
    hot::clear();
}

/// Blocks served to the program since `start()` (or `clear_traces()`) that
/// the tracker could not record (it could not get memory for its tables):
/// missing from snapshots, never lost silently.
pub fn untracked_blocks() -> u64 {
    hot::untracked()
}

/// Bytes the tracker holds for its own tables (`tracemalloc.get_tracemalloc_memory()`).
pub fn tracker_memory() -> usize {
    let _ignore = hot::ignore();
    if hot::is_forked_child() {
        return 0;
    }
    hot::memory()
}
