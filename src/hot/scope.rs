//! Thread scopes for leak checks: which live blocks a given thread
//! allocated since a point in time.
//!
//! `cargo test` runs tests on parallel threads; a process-wide check would
//! count every other test's blocks. A thread scope tags the blocks the
//! checking thread allocates (a second, small sharded table, written only by
//! threads inside a scope) and forgets a tag when its block is freed, by any
//! thread. Frees look here only while at least one scope is open.

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

/// Open scopes; frees skip this table while it is 0.
pub(crate) static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicU32 = AtomicU32::new(1);

const SHARDS: usize = 32;

/// `(scope, stack, size)` per tagged live block.
type ScopeMap = HashMap<usize, (ScopeId, StackId, u64), AddrHash>;

#[repr(align(128))]
struct Shard(Mutex<ScopeMap>);

static TABLE: [Shard; SHARDS] = [const { Shard(Mutex::new(HashMap::with_hasher(AddrHash))) }; SHARDS];

#[inline]
fn shard(addr: usize) -> &'static Mutex<ScopeMap> {
    &TABLE[(super::sites::mix(addr as u64) >> 58) as usize % SHARDS].0
}

/// The current thread's scope (0 for none). Hot path: one TLS read.
#[inline]
pub(crate) fn current() -> ScopeId {
    SCOPE.try_with(Cell::get).unwrap_or(0)
}

/// Tags a just-recorded block. Runs inside a hook (`BUSY` set).
#[cold]
pub(crate) fn tag(addr: usize, scope: ScopeId, stack: StackId, size: usize) {
    let mut map = shard(addr).lock();
    if map.try_reserve(1).is_ok() {
        map.insert(addr, (scope, stack, size as u64));
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

/// Opens a scope on this thread; returns it and the scope it replaces.
pub(crate) fn begin() -> (ScopeId, ScopeId) {
    let id = NEXT.fetch_add(1, Relaxed).max(1);
    ACTIVE.fetch_add(1, Relaxed);
    let prev = SCOPE.try_with(|s| s.replace(id)).unwrap_or(0);
    (id, prev)
}

/// Live blocks tagged `id`, per stack: `(stack, bytes, blocks)`.
pub(crate) fn live(id: ScopeId) -> Vec<(StackId, u64, u64)> {
    let mut acc: HashMap<StackId, (u64, u64)> = HashMap::new();
    for s in TABLE.iter() {
        let _busy = Guard::with(BUSY);
        let map = s.0.lock();
        for &(scope, stack, size) in map.values() {
            if scope == id {
                let e = acc.entry(stack).or_insert((0, 0));
                e.0 += size;
                e.1 += 1;
            }
        }
    }
    acc.into_iter().map(|(s, (b, n))| (s, b, n)).collect()
}

/// Closes scope `id` on this thread, restoring `prev`, and drops its tags.
pub(crate) fn end(id: ScopeId, prev: ScopeId) {
    let _ = SCOPE.try_with(|s| s.set(prev));
    for s in TABLE.iter() {
        let _busy = Guard::with(BUSY);
        s.0.lock().retain(|_, v| v.0 != id);
    }
    ACTIVE.fetch_sub(1, Relaxed);
}
