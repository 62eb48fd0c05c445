//! `GET /trend` on the live endpoint: 404 before a monitor runs; while one
//! runs over a steady leak and a one-time load, the window as a
//! `leaktrace.trend.v1` trend, the leaking line its first site (steady)
//! and the monitor's first suspect, the load not a suspect; the same from
//! `Monitor::trend`; 404 again once the monitor stops. Run in a child with
//! a timeout.

mod common;
mod monitor_support;

use common::{is_file, marker_line};
use leaktrace::http::serve;
use leaktrace::{LiveTrend, Monitor, Verdict};
use monitor_support::{repeat, run_in_child, scratch_dir, wait_for};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("http_trend.rs");

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn leak_one() {
    let block = vec![7u8; 4096]; // MARK: leak
    KEPT.lock().unwrap().push(block);
}

#[inline(never)]
fn load_once() {
    for _ in 0..64 {
        let block = vec![1u8; 4096]; // MARK: load
        KEPT.lock().unwrap().push(block);
    }
}

/// One request on a fresh connection: status, content type, body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    let ty = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: ").or_else(|| l.strip_prefix("content-type: ")))
        .unwrap_or("")
        .to_string();
    (status, ty, body.to_string())
}

#[test]
fn trend_serves_the_monitors_window() {
    run_in_child("trend_serves_the_monitors_window", Duration::from_secs(90), body);
}

fn body() {
    let leak = marker_line(SRC, "MARK: leak");
    let load = marker_line(SRC, "MARK: load");
    KEPT.lock().unwrap().reserve(4096);
    leaktrace::start(leaktrace::Config::default());
    let server = serve("127.0.0.1:0").expect("serve on loopback");
    let addr = server.addr();

    let (status, _, text) = get(addr, "/trend");
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no leaktrace::Monitor runs"), "{text}");

    load_once();
    let dir = scratch_dir("http-trend");
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(50))
        .min_window(5)
        .min_growth_bytes(64 * 1024)
        .rss_growth_warning(0.0)
        .report_dir(&dir)
        .final_report(false)
        .start();
    let leaker = repeat(Duration::from_millis(5), leak_one);

    // Once the window is long enough to judge and the leak is a suspect.
    let served = wait_for(Duration::from_secs(30), || {
        let (status, ty, text) = get(addr, "/trend");
        if status == 503 {
            // Busy (a slow first symbolization under load): asked again.
            return None;
        }
        assert_eq!(status, 200, "{text}");
        assert_eq!(ty, "application/json");
        let trend: LiveTrend = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:.300}"));
        (trend.monitor.window_snapshots >= 12 && !trend.monitor.suspects.is_empty()).then_some((text, trend))
    });
    let (text, trend) =
        served.unwrap_or_else(|| panic!("no suspect in /trend within 30 s; stats {:?}", monitor.stats()));
    leaker.stop();

    assert!(text.contains("\"format\": \"leaktrace.trend.v1\""), "{text:.200}");
    // Readable as a plain trend too.
    let plain: leaktrace::Trend = serde_json::from_str(&text).unwrap();
    assert_eq!(plain, trend.trend);
    assert_eq!(trend.trend.snapshots.len(), trend.monitor.window_snapshots);
    assert_eq!(trend.monitor.samples.len(), trend.monitor.window_snapshots);
    assert_eq!(trend.monitor.pid, std::process::id());
    let top = &trend.trend.sites[0];
    assert!(is_file(&top.location.file, "http_trend.rs") && top.location.line == leak, "top {:?}", top.location);
    assert_eq!(top.verdict, Verdict::Steady, "{top:?}");
    let suspect = &trend.monitor.suspects[0];
    assert_eq!((suspect.rank, suspect.location.line), (1, leak), "{suspect:?}");
    assert!(
        trend.monitor.suspects.iter().all(|s| s.location.line != load),
        "the one-time load is no suspect: {:?}",
        trend.monitor.suspects
    );
    let loaded = trend.trend.sites.iter().find(|s| s.location.line == load).expect("the load is a site");
    assert_ne!(loaded.verdict, Verdict::Steady, "{loaded:?}");

    // The same in-process.
    let direct = monitor.trend(Duration::from_secs(10)).expect("the monitor answers");
    assert_eq!(direct.monitor.suspects[0].location.line, leak);
    assert!(direct.monitor.ticks >= trend.monitor.ticks, "{} < {}", direct.monitor.ticks, trend.monitor.ticks);

    // Askers that never stop asking do not hold up the ticks.
    let before = monitor.stats().ticks;
    let asking = AtomicBool::new(true);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while asking.load(Ordering::Relaxed) {
                    let _ = monitor.trend(Duration::from_secs(5));
                }
            });
        }
        let ticked = wait_for(Duration::from_secs(20), || (monitor.stats().ticks >= before + 5).then_some(()));
        asking.store(false, Ordering::Relaxed);
        assert!(ticked.is_some(), "ticks held up by trend requests: {} -> {}", before, monitor.stats().ticks);
    });

    monitor.stop();
    let (status, _, text) = get(addr, "/trend");
    assert_eq!(status, 404, "after the monitor stopped: {text}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
