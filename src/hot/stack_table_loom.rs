//! Model checks of the lock-free stack table under loom.
//!
//! `stack_table.rs` is compiled here a second time, against
//! `sync::mocked` (loom's atomics and mutex, two slots in the first
//! segment, four in the first index), and loom runs each test under the
//! interleavings, and the values the memory model lets each load return,
//! up to a bound of preemptions. What is checked:
//!
//! 1. two threads interning the same new stack get one id, and the table
//!    one entry;
//! 2. two threads interning different stacks get distinct ids, while a
//!    lock-free reader that sees an index slot, or a length, also sees the
//!    whole stack and the context it names (the publication order: the
//!    slot's fields, then `len`, then the index slot, each `Release`);
//! 3. stacks interned before are always found, lock-free and with their
//!    ids, while inserts open a new segment and rebuild the index twice;
//! 4. past the cap, racing inserts get `OVERFLOW_STACK`, one wins the last
//!    id, and earlier stacks keep theirs.
//!
//! Loom only sees atomics: the copy of a stack's frames is plain memory, so
//! it is checked only through the atomics that publish it (a stack read
//! back whole). Readers are spawned threads and the main thread writes:
//! loom starts each test with the main thread running until it waits, and
//! with the reader on the main thread its search never once ran an insert
//! before the reader's first load, so the reader only ever saw an empty
//! table (and the first two mutations below went unseen).
//!
//! Each of these was caught (tried by hand, then reverted): the index
//! slot's store in `place` weakened to `Relaxed`, or the table's `len`
//! store (test 2: a reader sees an id but an empty stack); the index slot
//! placed before the slot's fields are written (test 2); the new index
//! published `Relaxed` in `ensure_index`, or loaded `Relaxed` in `lookup`
//! (loom reports the unsynchronised access to the new index's atomics);
//! a rebuild that leaves out the last stack (test 3); no second lookup
//! under the insert lock (test 1: two ids). Weakening the slot's own `ips`
//! or `len` store, or a segment's, goes unseen, and rightly: the later
//! `Release` of `len` and of the index slot covers them for every reader.
//!
//! Run them alone with `cargo test --lib --features loom loom` (about 20 s
//! in a debug build). `LOOM_MAX_PREEMPTIONS` overrides the bound.

use super::sites::{StackId, OVERFLOW_STACK};
use super::sync::mocked as sync;
use ::loom::sync::Arc;
use ::loom::thread;
use std::ptr;

// The model drives interning and lookups; the allocation totals go unused.
// Loading the file a second time, against another shim, is the point.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "stack_table.rs"]
mod stack_table;

use stack_table::{hash_stack, StackTable};

impl StackTable {
    /// An empty table, built at run time: loom's atomics are not `const`.
    fn new() -> Self {
        StackTable {
            segments: std::array::from_fn(|_| sync::AtomicPtr::new(ptr::null_mut())),
            totals: std::array::from_fn(|_| sync::AtomicPtr::new(ptr::null_mut())),
            len: sync::AtomicU32::new(0),
            index: sync::AtomicPtr::new(ptr::null_mut()),
            insert_lock: sync::Mutex::new(()),
            overflow_bytes: sync::AtomicU64::new(0),
            overflow_units: sync::AtomicU64::new(0),
        }
    }
}

/// Runs `f` under loom with a preemption bound of 3 (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise): every mutation tried was caught
/// at 2 already, and 3 keeps the four tests under 20 s in a debug build.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = ::loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

const A: [usize; 2] = [0x1000, 0x2000];
const B: [usize; 3] = [0x3000, 0x4000, 0x5000];
static STACKS: [[usize; 2]; 5] = [[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]];

fn spawn_intern(table: &Arc<StackTable>, ips: &'static [usize], context: u32) -> thread::JoinHandle<Option<StackId>> {
    let table = table.clone();
    thread::spawn(move || table.intern(ips, context))
}

/// What a reader sees of `id` must be all of `ips` and `context`.
fn assert_whole(table: &StackTable, id: StackId, ips: &[usize], context: u32) {
    assert_eq!(table.get(id), ips, "stack {id}: the frames are visible with its id");
    assert_eq!(table.context(id), context, "stack {id}: the context is visible with its id");
}

#[test]
fn the_same_new_stack_from_two_threads_is_one_stack() {
    check(|| {
        let table = Arc::new(StackTable::new());
        let other = spawn_intern(&table, &A, 7);
        let mine = table.intern(&A, 7);
        let theirs = other.join().unwrap();
        assert_eq!(mine, Some(0));
        assert_eq!(theirs, mine);
        assert_eq!(table.len(), 1);
        assert_whole(&table, 0, &A, 7);
    });
}

#[test]
fn a_reader_sees_whole_stacks_while_two_threads_insert() {
    check(|| {
        let table = Arc::new(StackTable::new());
        // Spawned before the reader, so that it runs first once the main
        // thread waits (see the module comment).
        let b = spawn_intern(&table, &B, 2);
        // The reader, lock-free as the allocator's hot path and snapshots:
        // an index slot it sees names a whole stack, and so does every id
        // below the length it sees.
        let reader = {
            let table = table.clone();
            thread::spawn(move || {
                for (ips, context) in [(&A[..], 1), (&B[..], 2)] {
                    if let Some(id) = table.indexed(hash_stack(ips, context)) {
                        assert_whole(&table, id, ips, context);
                    }
                    if let Some(id) = table.find(ips, context) {
                        assert_whole(&table, id, ips, context);
                    }
                }
                let len = table.len() as StackId;
                for id in 0..len {
                    let ips = table.get(id);
                    assert!(ips == A || ips == B, "stack {id} of {len} is whole: {ips:?}");
                    assert_eq!(table.context(id), if ips == A { 1 } else { 2 });
                }
            })
        };
        let a = table.intern(&A, 1).unwrap();
        let b = b.join().unwrap().unwrap();
        reader.join().unwrap();
        assert_ne!(a, b);
        assert!(a < 2 && b < 2, "ids {a} and {b}");
        assert_eq!(table.len(), 2);
        assert_whole(&table, a, &A, 1);
        assert_whole(&table, b, &B, 2);
        assert_eq!(table.find(&A, 1), Some(a));
        assert_eq!(table.find(&B, 2), Some(b));
    });
}

#[test]
fn earlier_stacks_stay_found_while_the_table_grows() {
    check(|| {
        let table = Arc::new(StackTable::new());
        // Ids 0 and 1 fill the first segment and the first index.
        for (i, ips) in STACKS[..2].iter().enumerate() {
            assert_eq!(table.intern(ips, 0), Some(i as StackId));
        }
        let reader = {
            let table = table.clone();
            thread::spawn(move || {
                for (i, ips) in STACKS[..2].iter().enumerate() {
                    assert_eq!(table.find(ips, 0), Some(i as StackId), "stack {i} lost while the table grew");
                }
            })
        };
        // Id 2 opens segment 1 and rebuilds the index (4 -> 8 slots), id 4
        // rebuilds it again (8 -> 16).
        for (i, ips) in STACKS.iter().enumerate().skip(2) {
            assert_eq!(table.intern(ips, 0), Some(i as StackId));
        }
        reader.join().unwrap();
        assert_eq!(table.len(), STACKS.len());
        for (i, ips) in STACKS.iter().enumerate() {
            assert_eq!(table.find(ips, 0), Some(i as StackId));
            assert_whole(&table, i as StackId, ips, 0);
        }
    });
}

#[test]
fn stacks_past_the_cap_overflow_and_earlier_ones_keep_their_ids() {
    const CAP: u32 = 2;
    check(|| {
        let table = Arc::new(StackTable::new());
        assert_eq!(table.intern_capped(&STACKS[0], 0, CAP), Some(0));
        let racers: Vec<_> = STACKS[1..3]
            .iter()
            .map(|ips| {
                let table = table.clone();
                thread::spawn(move || table.intern_capped(ips, 0, CAP))
            })
            .collect();
        assert_eq!(table.intern_capped(&STACKS[0], 0, CAP), Some(0), "the earlier stack keeps its id");
        let got: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winner = match got[..] {
            [Some(1), Some(OVERFLOW_STACK)] => 1,
            [Some(OVERFLOW_STACK), Some(1)] => 2,
            _ => panic!("one racer gets id 1, the other the overflow stack: {got:?}"),
        };
        let loser = 3 - winner;
        assert_eq!(table.len(), CAP as usize);
        assert_whole(&table, 1, &STACKS[winner], 0);
        assert_eq!(table.intern_capped(&STACKS[winner], 0, CAP), Some(1));
        assert_eq!(table.intern_capped(&STACKS[loser], 0, CAP), Some(OVERFLOW_STACK));
        assert_eq!(table.get(OVERFLOW_STACK), &[] as &[usize]);
        assert_whole(&table, 0, &STACKS[0], 0);
    });
}
