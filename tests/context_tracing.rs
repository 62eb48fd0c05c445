//! Contexts from `tracing` spans (feature `tracing`): `#[instrument]`
//! functions allocating under two span names give two contexts with exact
//! bytes; nested spans use the innermost; an async task polled on several
//! threads keeps its context; `context::scope` does the same without
//! tracing; 100,000 distinct field values do not grow the table past its cap.

use leaktrace::{Config, GroupBy};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Hashes of the threads that polled the jobs (no allocation: the jobs'
/// bytes are counted exactly).
static SEEN: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn seen_thread() {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    let v = h.finish() | 1;
    for s in &SEEN {
        match s.compare_exchange(0, v, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(x) if x == v => return,
            Err(_) => {}
        }
    }
}

fn keep(bytes: usize) {
    let v = vec![1u8; bytes];
    KEPT.lock().unwrap().push(v);
}

#[tracing::instrument]
fn load_users() {
    for _ in 0..10 {
        keep(1000);
    }
}

#[tracing::instrument]
fn load_orders() {
    for _ in 0..3 {
        keep(4096);
    }
    inner_step();
}

#[tracing::instrument]
fn inner_step() {
    keep(777);
}

fn context_bytes(snap: &leaktrace::Snapshot, label: &str) -> (u64, u64) {
    snap.statistics(GroupBy::Context)
        .iter()
        .find(|s| s.location.function == label)
        .map(|s| (s.size, s.count))
        .unwrap_or((0, 0))
}

#[test]
fn spans_become_contexts() {
    // `request_id` is unbounded: named here only to show the cap holding.
    let fields = leaktrace::tracing::DEFAULT_FIELDS.iter().copied().chain(["request_id"]);
    tracing_subscriber::registry().with(leaktrace::tracing::ContextLayer::default().fields(fields)).init();
    KEPT.lock().unwrap().reserve(1000);
    leaktrace::start(Config::default());

    // Two span names, exact bytes; the nested span is the innermost.
    load_users();
    load_orders();
    let snap = leaktrace::take_snapshot("sync");
    assert_eq!(context_bytes(&snap, "load_users"), (10_000, 10));
    assert_eq!(context_bytes(&snap, "load_orders"), (3 * 4096, 3));
    assert_eq!(context_bytes(&snap, "inner_step"), (777, 1));
    // Grouping by line keeps the contexts apart: `keep` is one line, three contexts.
    let by_line: Vec<_> =
        snap.statistics(GroupBy::Line).into_iter().filter(|s| s.location.function.ends_with("keep")).collect();
    assert_eq!(by_line.len(), 3, "{by_line:#?}");
    assert!(by_line.iter().all(|s| s.context.is_some()));
    assert_eq!(leaktrace::context::current(), None, "the context ends with the span");

    // An async task polled on several threads keeps its context.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..4 {
            let span = tracing::info_span!("job", otel.name = format!("job {task}").as_str());
            handles.push(tokio::spawn(
                async move {
                    for _ in 0..50 {
                        keep(100);
                        seen_thread();
                        tokio::task::yield_now().await;
                        tokio::time::sleep(std::time::Duration::from_micros(50)).await;
                    }
                }
                .instrument(span),
            ));
            handles.push(tokio::spawn(leaktrace::context::scope(&format!("scoped {task}"), async {
                for _ in 0..50 {
                    keep(200);
                    tokio::task::yield_now().await;
                }
            })));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    drop(rt);
    let threads = SEEN.iter().filter(|s| s.load(Relaxed) != 0).count();
    assert!(threads >= 2, "the tasks were polled on {threads} thread(s)");
    let snap = leaktrace::take_snapshot("async");
    for task in 0..4 {
        assert_eq!(context_bytes(&snap, &format!("job {task}")), (5000, 50), "job {task}");
        assert_eq!(context_bytes(&snap, &format!("scoped {task}")), (10_000, 50), "scoped {task}");
    }

    // A leak check names the context of what was left live.
    let check = leaktrace::LeakCheck::begin_thread();
    {
        let _ctx = leaktrace::context::enter("nightly import");
        keep(4096);
    }
    let report = check.finish().expect_err("a block was left live");
    assert!(report.sites.iter().any(|s| s.context.as_deref() == Some("nightly import")), "{report}");
    assert!(report.to_string().contains("[nightly import]"), "{report}");

    // 100,000 distinct field values: the table stops at its cap.
    leaktrace::context::set_limit(256);
    for i in 0..100_000u32 {
        let span = tracing::info_span!("capped", request_id = i);
        let _e = span.enter();
    }
    let n = leaktrace::context::count();
    assert!(n <= 257, "{n} contexts for a cap of 256");
    let other = leaktrace::context::ContextId::new("one more label");
    assert_eq!(other.label(), leaktrace::context::OTHER_CONTEXTS);
}
