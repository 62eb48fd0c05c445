//! The monitor names contexts like sites: a leak allocated under the
//! context `POST /{key}` is warned about as "steady growth under
//! `POST /{key}` at ...", and the report's suspect carries the context.

mod monitor_support;

use leaktrace::{Finding, Monitor};
use monitor_support::{run_in_child, scratch_dir};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[test]
fn a_leak_under_a_context_is_named_by_it() {
    run_in_child("a_leak_under_a_context_is_named_by_it", Duration::from_secs(60), body);
}

fn body() {
    LEAKED.lock().unwrap().reserve(4096);
    let dir = scratch_dir("context");
    let (tx, rx) = mpsc::channel::<Finding>();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(100))
        .report_dir(&dir)
        .min_growth_bytes(64 * 1024)
        .on_finding(move |f| {
            let _ = tx.send(f.clone());
        })
        .start();
    let route = leaktrace::context::ContextId::new("POST /{key}");
    let started = Instant::now();
    let mut warning = None;
    while started.elapsed() < Duration::from_secs(30) && warning.is_none() {
        {
            let _ctx = leaktrace::context::enter_id(route);
            LEAKED.lock().unwrap().push(vec![1u8; 4096]);
        }
        std::thread::sleep(Duration::from_millis(10));
        while let Ok(f) = rx.try_recv() {
            if let Finding::Leak(l) = &f {
                warning = Some((f.to_string(), l.suspect.context.clone()));
            }
        }
    }
    drop(monitor);
    let (text, context) = warning.expect("the leak is named");
    assert_eq!(context.as_deref(), Some("POST /{key}"));
    assert!(text.contains("steady growth under `POST /{key}` at "), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}
