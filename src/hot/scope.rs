//! Scopes for leak checks: which live blocks were allocated since a point in
//! time, by one thread or by any.
//!
//! `cargo test` runs tests on parallel threads; a process-wide check would
//! count every other test's blocks. A thread scope tags the blocks the
//! checking thread allocates (a second, small sharded table, written only
//! while a scope is open) and forgets a tag when its block is freed, by any
//! thread. A process scope tags every block recorded while it is open with
//! the current generation; a check begun at generation `g` counts the live
//! blocks tagged `g` or later. Frees look here only while a scope is open.

#![forbid(unsafe_code)]

use super::guard::{Guard, BUSY};
use super::sites::{AddrHash, StackId};
use hashbrown::HashMap;
use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

/// A thread scope's id (never 0).
pub(crate) type ScopeId = u32;

thread_local! {
    /// The scope this thread's allocations are tagged with; 0 for none.
    static SCOPE: Cell<ScopeId> = const { Cell::new(0) };
}

/// Open scopes, thread and process; frees skip this table while it is 0.
pub(crate) static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Open process scopes; while non-zero every recorded block is tagged.
static PROCESS_OPEN: AtomicUsize = AtomicUsize::new(0);
/// The generation new blocks are tagged with; bumped by each process scope.
static GENERATION: AtomicU32 = AtomicU32::new(1);
static NEXT: AtomicU32 = AtomicU32::new(1);

const SHARDS: usize = 32;

/// A tagged live block.
#[derive(Clone, Copy)]
struct Tag {
    /// The thread scope it was allocated in (0 for none).
    thread: ScopeId,
    /// The generation it was allocated in while a process scope was open (0 for none).
    generation: u32,
    stack: StackId,
    size: u64,
}

type ScopeMap = HashMap<usize, Tag, AddrHash>;

#[repr(align(128))]
struct Shard(Mutex<ScopeMap>);

static TABLE: [Shard; SHARDS] = [const { Shard(Mutex::new(HashMap::with_hasher(AddrHash))) }; SHARDS];

#[inline]
fn shard(addr: usize) -> &'static Mutex<ScopeMap> {
    &TABLE[(super::sites::mix(addr as u64) >> 58) as usize % SHARDS].0
}

/// Tags a just-recorded block if any scope wants it. Hot path while no
/// scope is open: one relaxed load.
#[inline]
pub(crate) fn tag_if_open(addr: usize, stack: StackId, size: usize) {
    if ACTIVE.load(Relaxed) == 0 {
        return;
    }
    tag_slow(addr, stack, size);
}

#[cold]
#[inline(never)]
fn tag_slow(addr: usize, stack: StackId, size: usize) {
    let thread = SCOPE.try_with(Cell::get).unwrap_or(0);
    let generation = if PROCESS_OPEN.load(Relaxed) > 0 { GENERATION.load(Relaxed) } else { 0 };
    if thread == 0 && generation == 0 {
        return;
    }
    let mut map = shard(addr).lock();
    if map.try_reserve(1).is_ok() {
        map.insert(addr, Tag { thread, generation, stack, size: size as u64 });
    }
}

/// Forgets a block's tag, if any. Runs inside a hook (`BUSY` set).
#[inline]
pub(crate) fn untag(addr: usize) {
    if ACTIVE.load(Relaxed) == 0 {
        return;
    }
    untag_slow(addr);
}

#[cold]
#[inline(never)]
fn untag_slow(addr: usize) {
    shard(addr).lock().remove(&addr);
}

/// Opens a process scope: blocks recorded from now on, by any thread, are
/// tagged. Returns the generation to pass to [`live_since`].
pub(crate) fn begin_process() -> u32 {
    ACTIVE.fetch_add(1, Relaxed);
    PROCESS_OPEN.fetch_add(1, Relaxed);
    GENERATION.fetch_add(1, Relaxed) + 1
}

/// Live blocks tagged with generation `generation` or later, per stack.
pub(crate) fn live_since(generation: u32) -> Vec<(StackId, u64, u64)> {
    live_matching(|t| t.generation >= generation)
}

/// Closes a process scope; the last one drops the generation tags.
pub(crate) fn end_process() {
    if PROCESS_OPEN.fetch_sub(1, Relaxed) == 1 {
        for s in TABLE.iter() {
            let _busy = Guard::with(BUSY);
            let mut map = s.0.lock();
            map.retain(|_, t| t.thread != 0);
            for t in map.values_mut() {
                t.generation = 0;
            }
        }
    }
    ACTIVE.fetch_sub(1, Relaxed);
}

/// Drops every tag (the traces were cleared; open scopes start afresh).
pub(crate) fn clear() {
    for s in TABLE.iter() {
        let _busy = Guard::with(BUSY);
        s.0.lock().clear();
    }
}

/// Opens a scope on this thread; returns it and the scope it replaces.
pub(crate) fn begin() -> (ScopeId, ScopeId) {
    let id = NEXT.fetch_add(1, Relaxed).max(1);
    ACTIVE.fetch_add(1, Relaxed);
    let prev = SCOPE.try_with(|s| s.replace(id)).unwrap_or(0);
    (id, prev)
}

/// Live blocks of thread scope `id`, per stack: `(stack, bytes, blocks)`.
pub(crate) fn live(id: ScopeId) -> Vec<(StackId, u64, u64)> {
    live_matching(|t| t.thread == id)
}

/// Live tagged blocks passing `keep`, per stack. The result is the
/// tracker's own memory: allocated with `IGNORE` set.
fn live_matching(keep: impl Fn(&Tag) -> bool) -> Vec<(StackId, u64, u64)> {
    let _ignore = Guard::with(super::guard::IGNORE);
    let mut acc: HashMap<StackId, (u64, u64)> = HashMap::new();
    for s in TABLE.iter() {
        let _busy = Guard::with(BUSY);
        let map = s.0.lock();
        for t in map.values().filter(|t| keep(t)) {
            let e = acc.entry(t.stack).or_insert((0, 0));
            e.0 += t.size;
            e.1 += 1;
        }
    }
    acc.into_iter().map(|(s, (b, n))| (s, b, n)).collect()
}

/// Closes scope `id` on this thread, restoring `prev`, and drops its tags.
pub(crate) fn end(id: ScopeId, prev: ScopeId) {
    let _ = SCOPE.try_with(|s| s.set(prev));
    for s in TABLE.iter() {
        let _busy = Guard::with(BUSY);
        let mut map = s.0.lock();
        map.retain(|_, t| t.thread != id || t.generation != 0);
        for t in map.values_mut().filter(|t| t.thread == id) {
            t.thread = 0;
        }
    }
    ACTIVE.fetch_sub(1, Relaxed);
}
