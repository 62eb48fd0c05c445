//! `LeakCheck` with the thread scope: fails on a leak and names its line,
//! passes balanced code, passes while another thread leaks, honours its
//! tolerance; `assert_no_leaks!` panics with the report.

mod common;

use common::{is_file, marker_line};
use leaktrace::{CheckScope, LeakCheck};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("check_thread.rs");

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static KEPT_BY_OTHER: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn leaky(n: usize) {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..n {
        kept.push(vec![1u8; 1000]); // MARK: leak
    }
}

#[inline(never)]
fn balanced() {
    let mut map = std::collections::HashMap::new();
    for i in 0..100u32 {
        map.insert(i, format!("value {i}"));
    }
    let total: usize = map.values().map(String::len).sum();
    std::hint::black_box(total);
}

#[test]
fn thread_scope_finds_the_leak_and_ignores_other_threads() {
    let line = marker_line(SRC, "MARK: leak");
    KEPT.lock().unwrap().reserve(64);

    // A leak: Err, with the line in the message.
    let check = LeakCheck::begin_thread();
    assert_eq!(check.scope(), CheckScope::Thread);
    leaky(3);
    assert_eq!(check.live(), (3000, 3));
    let report = check.finish().expect_err("three blocks leaked");
    let msg = report.to_string();
    eprintln!("{msg}");
    assert_eq!((report.bytes, report.blocks), (3000, 3));
    let top = &report.sites[0];
    assert!(is_file(&top.location.file, "check_thread.rs"), "{top:?}");
    assert_eq!((top.location.line, top.rank, top.bytes, top.blocks), (line, 1, 3000, 3));
    assert!(top.location.function.contains("leaky"), "{top:?}");
    assert!(msg.contains(&format!("check_thread.rs:{line}")), "{msg}");
    assert!(msg.contains("3000 bytes in 3 blocks"), "{msg}");
    let as_error: Box<dyn std::error::Error> = Box::new(report);
    assert!(as_error.to_string().starts_with("leak check failed"));

    // Balanced code: Ok.
    balanced(); // warm any lazy state first
    let check = LeakCheck::begin_thread();
    balanced();
    check.finish().expect("balanced code does not leak");

    // Another thread leaking meanwhile does not count.
    let stop = Arc::new(AtomicBool::new(false));
    let other = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                KEPT_BY_OTHER.lock().unwrap().push(vec![2u8; 512]);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let check = LeakCheck::begin_thread();
    for _ in 0..20 {
        balanced();
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = KEPT_BY_OTHER.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(20));
    assert!(KEPT_BY_OTHER.lock().unwrap().len() > before, "the other thread leaks");
    check.finish().expect("the thread scope ignores the other thread");
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();

    // A block freed by another thread is no longer counted.
    let check = LeakCheck::begin_thread();
    let handed = vec![3u8; 4096];
    std::thread::spawn(move || drop(handed)).join().unwrap();
    check.finish().expect("freed elsewhere is freed");

    // Tolerance in bytes and blocks.
    let check = LeakCheck::builder().tolerance_bytes(2000).tolerance_blocks(2).begin();
    leaky(2);
    check.finish().expect("within tolerance");
    let check = LeakCheck::builder().tolerance_bytes(2000).tolerance_blocks(2).begin();
    leaky(3);
    let report = check.finish().expect_err("past tolerance");
    assert!(report.to_string().contains("tolerance: 2000 bytes, 2 blocks"), "{report}");

    // Dropped unfinished: the scope ends quietly.
    drop(LeakCheck::begin_thread());

    // The macro.
    leaktrace::assert_no_leaks! {
        balanced();
        let v: Vec<u8> = std::iter::repeat_n(1u8, 100).collect();
        v // dropped before the check: not a leak
    }
    let panicked = std::panic::catch_unwind(|| {
        leaktrace::assert_no_leaks! { leaky(1) }
    })
    .expect_err("the macro panics on a leak");
    let msg = panicked.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(&format!("check_thread.rs:{line}")), "{msg}");
}
