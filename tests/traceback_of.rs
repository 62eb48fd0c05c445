//! `traceback_of`: tracemalloc's `get_object_traceback`. A pointer into the
//! middle of a `Vec` finds the line that allocated it; after the drop, and
//! for a stack address, there is none.

mod common;

use common::{is_file, marker_line};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("traceback_of.rs");

#[inline(never)]
fn make() -> Vec<u64> {
    vec![7u64; 10_000] // MARK: alloc
}

#[test]
fn a_pointer_into_a_block_finds_its_line() {
    let line = marker_line(SRC, "MARK: alloc");
    leaktrace::start(leaktrace::Config::default());
    let v = make();
    let middle: *const u64 = &v[5_000];
    let tb = leaktrace::traceback_of(middle).expect("a live traced block");
    assert!(is_file(&tb[0].file, "traceback_of.rs") && tb[0].line == line, "{tb:?}");
    assert!(leaktrace::traceback_of(v.as_ptr()).is_some());
    let addr = middle as usize;
    drop(v);
    assert!(leaktrace::traceback_of(addr as *const u8).is_none_or(|tb| tb[0].line != line));
    let on_stack = 5u64;
    assert_eq!(leaktrace::traceback_of(&on_stack), None);
}
