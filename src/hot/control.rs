//! The door of `src/hot`: everything the rest of the crate may do with the
//! hook's state, as functions. The submodules are private and their items
//! `pub(in crate::hot)`-visible at most, so the compiler keeps the boundary:
//! code outside reads tables only through [`for_each_block`] and the stack
//! accessors here, and changes state only through [`begin`], [`end`] and
//! [`clear`], which `crate::control` calls under its one lock.
//!
//! Nothing here runs in a hook.

#![forbid(unsafe_code)]

use super::guard::{self, Guard, IGNORE};
use super::sites::{unpack, BlockTable};
use super::{counters, dwarf, fork, sample, stack, BIRTH_EPOCH, BLOCKS, STACKS, UNTRACKED};
use super::{CAPTURE, DEPTH, EXACT, MEAN_BYTES, MODE, MODE_EXACT, MODE_SAMPLED, OFF, SAMPLED, STATE};
use crate::config::CaptureMethod;
use std::sync::atomic::Ordering::{Relaxed, Release};

pub(crate) use super::scope::{
    begin as begin_thread_scope, begin_process as begin_process_scope, end as end_thread_scope,
    end_process as end_process_scope, live as live_in_thread_scope, live_since as live_since_generation, ScopeId,
};
#[cfg(test)]
pub(crate) use super::sites::UNKNOWN_STACK;
pub(crate) use super::sites::{set_max_stacks, StackId, DEFAULT_MAX_STACKS, OVERFLOW_STACK};

// The public default and the table's must agree.
const _: () = assert!(crate::Config::DEFAULT_MAX_STACKS == DEFAULT_MAX_STACKS as usize);
/// The largest context id a thread can carry.
pub(crate) const MAX_CONTEXT: u32 = guard::MAX_CONTEXT;

/// Keeps this thread's allocations out of the counts while it lives: the
/// tracker's own work (snapshots, symbols, the monitor, contexts). Frees
/// are still looked up.
pub(crate) struct Ignore {
    _guard: Guard,
}

/// See [`Ignore`].
#[inline]
pub(crate) fn ignore() -> Ignore {
    Ignore { _guard: Guard::with(IGNORE) }
}

/// The program's untraced scope (`leaktrace::untraced`): allocations are not
/// recorded; frees, and sampled mode's byte counts, go on (see `guard::UNTRACED`).
#[inline]
pub(crate) fn untraced_scope() -> Ignore {
    Ignore { _guard: Guard::with(guard::UNTRACED) }
}

/// How [`begin`] records.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Recording {
    Exact,
    Sampled { mean_bytes: usize },
}

/// Turns the hooks on with a fresh state: tables cleared, totals zeroed.
/// `depth` return addresses per block, `capture` as [`choose_capture`] gave.
pub(crate) fn begin(recording: Recording, depth: usize, capture: u8, seed: Option<u64>) {
    STATE.store(OFF, Relaxed);
    super::clear(true);
    counters::reset();
    CAPTURE.store(capture, Relaxed);
    DEPTH.store(depth.min(stack::MAX_DEPTH), Relaxed);
    let state = match recording {
        Recording::Exact => {
            MODE.store(MODE_EXACT, Relaxed);
            EXACT
        }
        Recording::Sampled { mean_bytes } => {
            MEAN_BYTES.store(mean_bytes.max(1), Relaxed);
            MODE.store(MODE_SAMPLED, Relaxed);
            SAMPLED
        }
    };
    if let Some(seed) = seed {
        sample::SEED.store(seed, Relaxed);
    }
    sample::EPOCH.fetch_add(1, Relaxed);
    // Release: a hook that sees the new state sees the settings above.
    STATE.store(state, Release);
}

/// Turns the hooks off and clears the tables.
pub(crate) fn end() {
    STATE.store(OFF, Relaxed);
    super::clear(true);
}

/// Whether the hooks record anything.
#[inline]
pub(crate) fn is_on() -> bool {
    STATE.load(Relaxed) != OFF
}

/// Whether the hooks record in sampled mode now.
#[inline]
pub(crate) fn is_sampling() -> bool {
    STATE.load(Relaxed) == SAMPLED
}

/// The mean of the last `start()`'s sampled mode; `None` for exact mode.
pub(crate) fn sampled_mean() -> Option<usize> {
    (MODE.load(Relaxed) == MODE_SAMPLED).then(|| MEAN_BYTES.load(Relaxed))
}

/// Reads the main thread's stack bounds ahead (see `stack::note_main_stack`)
/// and registers the fork handler: set-up that must not run in a hook.
pub(crate) fn prepare() {
    stack::note_main_stack();
    fork::install();
}

/// Whether this process is the forked child of a traced one (untraced).
pub(crate) fn is_forked_child() -> bool {
    fork::is_forked_child()
}

/// Picks and checks the capture method (see [`CaptureMethod`]).
pub(crate) fn choose_capture(asked: CaptureMethod) -> u8 {
    use stack::{walk_works, DWARF, FRAME_POINTERS, LIBGCC};
    let dwarf_ok = || dwarf::load_modules() > 0 && walk_works(DWARF);
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

/// The capture method in force.
pub(crate) fn capture_method() -> CaptureMethod {
    match CAPTURE.load(Relaxed) {
        stack::FRAME_POINTERS => CaptureMethod::FramePointers,
        stack::DWARF => CaptureMethod::Dwarf,
        _ => CaptureMethod::Unwinder,
    }
}

/// Clears all records. Exact mode: the cleared blocks' bytes leave the
/// total (frees of them are ignored from now on); sampled mode: the total
/// starts again from zero.
pub(crate) fn clear() {
    super::clear(!is_on());
}

/// `(current, peak)` traced bytes.
pub(crate) fn traced() -> (usize, usize) {
    counters::read()
}

/// Sets the peak to the current value.
pub(crate) fn reset_peak() {
    counters::reset_peak();
}

/// Bytes the tracker's tables hold.
pub(crate) fn memory() -> usize {
    super::memory()
}

/// Blocks that could not be recorded since the last clear.
pub(crate) fn untracked() -> u64 {
    UNTRACKED.load(Relaxed) as u64
}

/// The birth epoch in force.
pub(crate) fn epoch() -> u64 {
    BIRTH_EPOCH.load(Relaxed)
}

/// Starts a new birth epoch; returns it.
pub(crate) fn next_epoch() -> u64 {
    BIRTH_EPOCH.fetch_add(1, Relaxed) + 1
}

/// Calls `f(stack, size, birth_epoch_mod_2^16, address)` for every live
/// recorded block, one shard at a time: each shard is locked (with `BUSY`
/// set) only while its blocks are visited, and other threads go on
/// allocating into the other shards. `f` must not allocate through the
/// tracker in a way that needs the lock: it runs with `BUSY` set, so its
/// allocations go straight to the inner allocator, untracked.
pub(crate) fn for_each_block(mut f: impl FnMut(StackId, usize, u16, usize)) {
    for i in 0..BlockTable::shard_count() {
        let shard = BLOCKS.lock_shard(i);
        for (key, word) in shard.blocks() {
            let (stack, size) = unpack(word);
            f(stack, size, key.epoch(), key.addr());
        }
    }
}

/// The weight of a sampled block of `size` bytes at `mean_bytes` (the
/// inverse of its chance to be sampled): what it stands for in estimates.
pub(crate) fn sample_weight(size: usize, mean_bytes: usize) -> f64 {
    1.0 / sample::probability(size, mean_bytes)
}

/// How many stacks are interned.
pub(crate) fn stack_count() -> usize {
    STACKS.len()
}

/// The return addresses of stack `id`.
pub(crate) fn stack_ips(id: StackId) -> &'static [usize] {
    STACKS.get(id)
}

/// The context id stack `id` was captured under (0 for none).
pub(crate) fn stack_context(id: StackId) -> u32 {
    STACKS.context(id)
}

/// Stack `id`'s allocation totals since the last clear: `(bytes, blocks)`.
pub(crate) fn stack_alloc_totals(id: StackId) -> (u64, u64) {
    STACKS.alloc_totals(id)
}

/// Captures this thread's return addresses with libgcc's unwinder (lock-
/// free, no symbols) into `out`; returns how many.
pub(crate) fn capture_unwind(out: &mut [usize]) -> usize {
    let mut buf = stack::Buf::new();
    let captured = buf.fill(out.len(), stack::LIBGCC);
    out[..captured.len()].copy_from_slice(captured);
    captured.len()
}

/// Sets this thread's context id; returns the previous one.
#[inline]
pub(crate) fn set_context(id: u32) -> u32 {
    guard::set_context(id)
}

/// This thread's context id (0 for none).
#[inline]
pub(crate) fn current_context() -> u32 {
    guard::context()
}
