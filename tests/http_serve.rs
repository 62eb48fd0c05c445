//! The live endpoint of a tracing program: `go tool pprof` reads the leak
//! from `/debug/pprof/heap`; `/snapshot` and `/debug/pprof/allocs` answer;
//! a non-loopback bind is refused unless asked for; a missing token gets
//! 401; a client that sends half a request and stalls does not hold up the
//! next one; an oversized head gets 431; the server's own allocations are
//! not traced. A watchdog ends the process if anything hangs.

mod common;
mod pprof_common;

use common::{is_file, marker_line};
use leaktrace::http::{serve, Error, Server};
use leaktrace::{Config, Snapshot};
use pprof_common::{go_pprof, have_go, top_rows};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("http_serve.rs");

#[inline(never)]
fn leak_thousand(out: &mut Vec<Vec<u8>>) {
    for i in 0..1000 {
        out.push(vec![i as u8; 1024]); // MARK: leak
    }
}

/// One request on a fresh connection; the whole response (status, body).
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw[end..].to_vec())
}

#[test]
fn serves_the_heap_to_go_tool_pprof_and_keeps_its_guard() {
    // Nothing here may hang the test run.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(240));
        eprintln!("http_serve: still running after 240 s; aborting");
        std::process::abort();
    });
    let line = marker_line(SRC, "MARK: leak");
    leaktrace::start(Config::default());
    let mut blocks = Vec::with_capacity(1000);
    leak_thousand(&mut blocks);

    let server = serve("127.0.0.1:0").expect("serve on loopback");
    let addr = server.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    // /snapshot: the leak, as JSON.
    let (status, body) = get(addr, "/snapshot", "");
    assert_eq!(status, 200);
    let snap = Snapshot::from_json(std::str::from_utf8(&body).unwrap(), "GET /snapshot").unwrap();
    let at_line: u64 = snap
        .traces
        .iter()
        .filter(|t| snap.site(t).is_some_and(|f| is_file(&f.file, "http_serve.rs") && f.line == line))
        .map(|t| t.size)
        .sum();
    assert_eq!(at_line, 1_024_000);

    // /debug/pprof/allocs: a profile with alloc_space by default.
    let (status, body) = get(addr, "/debug/pprof/allocs", "");
    assert_eq!(status, 200);
    let p = leaktrace::pprof::decode(&body).unwrap();
    assert_eq!(p.string_table[p.default_sample_type as usize], "alloc_space");
    assert_eq!(get(addr, "/trend", "").0, 404);

    // The server's work is untraced: after many requests no trace passes
    // through leaktrace::http.
    for _ in 0..20 {
        assert_eq!(get(addr, "/debug/pprof/heap", "").0, 200);
    }
    let snap = leaktrace::take_snapshot("after requests");
    for t in &snap.traces {
        assert!(
            !snap.traceback(t).iter().any(|f| f.function.contains("leaktrace::http")),
            "a trace through the server: {:?}",
            snap.traceback(t)
        );
    }

    // A stalled client (half a request) and a slow one (one byte) hold up
    // nobody: the next request is answered at once.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"GET /snapshot HTTP/1.1\r\nHost: te").unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"G").unwrap();
    let t0 = Instant::now();
    assert_eq!(get(addr, "/debug/pprof/", "").0, 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "the next request waited {:?}", t0.elapsed());

    // An oversized head: 431.
    let big = format!("X-Pad: {}\r\n", "a".repeat(20_000));
    assert_eq!(get(addr, "/snapshot", &big).0, 431);

    // go tool pprof reads the endpoint as it reads Go's.
    if have_go("http_serve") {
        let sandbox = tempfile::tempdir().unwrap();
        let url = format!("http://{addr}/debug/pprof/heap");
        let out = go_pprof(
            sandbox.path(),
            &["-top", "-lines", "-unit=B", "-sample_index=inuse_space", &url],
            Duration::from_secs(120),
        );
        assert!(out.ok, "{out:#?}");
        let rows = top_rows(&out.stdout);
        assert_eq!(rows[0].0, "1024000B", "{}", out.stdout);
        assert!(rows[0].1.ends_with(&format!("http_serve.rs:{line}")), "{}", out.stdout);
        assert!(rows[0].1.contains("leak_thousand"), "{}", out.stdout);
    }
    drop(stalled);
    drop(slow);
    server.stop();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "stopped");

    // A short timeout: the stalled client gets 408 and is closed.
    let server = Server::builder().request_timeout(Duration::from_millis(300)).serve("127.0.0.1:0").unwrap();
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stalled.write_all(b"GET /snapshot HT").unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(server);

    // Tokens.
    let server = Server::builder().token("s3cret").serve("127.0.0.1:0").unwrap();
    let a = server.addr();
    assert_eq!(get(a, "/debug/pprof/heap", "").0, 401);
    assert_eq!(get(a, "/debug/pprof/heap", "Authorization: Bearer wrong\r\n").0, 401);
    assert_eq!(get(a, "/debug/pprof/heap", "Authorization: Bearer s3cret\r\n").0, 200);
    drop(server);

    // Loopback only, unless asked.
    for addr in ["0.0.0.0:0", "[::]:0"] {
        match serve(addr) {
            Err(e @ Error::NotLoopback { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with(addr) && msg.contains("allow_non_loopback"), "{msg}");
            }
            other => panic!("{addr}: {other:?}"),
        }
    }
    let open = Server::builder().allow_non_loopback(true).serve("0.0.0.0:0").expect("asked for");
    assert!(open.addr().ip().is_unspecified());
    open.stop();
    assert!(matches!(serve("not an address"), Err(Error::Resolve { .. })));
    drop(blocks);
}
