//! `LeakCheck` process-wide: counts blocks that other threads allocate and
//! keep, names their line, and passes balanced code.

mod common;

use common::{is_file, marker_line};
use leaktrace::{CheckScope, LeakCheck};
use std::sync::Mutex;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("check_process.rs");

static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

#[inline(never)]
fn worker_leaks() {
    let mut kept = KEPT.lock().unwrap();
    for i in 0..5 {
        kept.push(vec![i as u8; 2048].into_boxed_slice()); // MARK: leak
    }
}

#[inline(never)]
fn worker_balanced() {
    let v: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    std::hint::black_box(v);
}

#[test]
fn process_scope_sees_other_threads() {
    let line = marker_line(SRC, "MARK: leak");
    KEPT.lock().unwrap().reserve(16);
    // Warm up thread spawning's lazy state.
    std::thread::spawn(worker_balanced).join().unwrap();

    let check = LeakCheck::begin();
    assert_eq!(check.scope(), CheckScope::Process);
    std::thread::spawn(worker_leaks).join().unwrap();
    let report = check.finish().expect_err("the worker leaked");
    eprintln!("{report}");
    let top = &report.sites[0];
    assert!(is_file(&top.location.file, "check_process.rs"), "{top:?}");
    assert_eq!((top.location.line, top.bytes, top.blocks), (line, 5 * 2048, 5));
    assert!(report.to_string().contains(&format!("check_process.rs:{line}")));
    assert!(report.to_string().contains("by any thread"));

    let check = LeakCheck::begin();
    std::thread::spawn(worker_balanced).join().unwrap();
    worker_balanced();
    check.finish().expect("balanced code passes process-wide");

    // Old blocks freed while as many new ones are kept at the same line:
    // no growth per stack, but every kept block is new, and leaks.
    let replaced_line = marker_line(SRC, "MARK: replace");
    let mut pool: Vec<Vec<u8>> = (0..8).map(make_block).collect();
    let check = LeakCheck::begin();
    for (i, slot) in pool.iter_mut().enumerate() {
        *slot = make_block(i);
    }
    let report = check.finish().expect_err("the replaced blocks are new and kept");
    let top = &report.sites[0];
    assert_eq!((top.location.line, top.blocks, top.bytes), (replaced_line, 8, 8 * 512));
    drop(pool);
}

#[inline(never)]
fn make_block(i: usize) -> Vec<u8> {
    vec![i as u8; 512] // MARK: replace
}
