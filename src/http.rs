//! A small HTTP endpoint for this process's heap, as Go's `net/http/pprof`
//! serves it: point `go tool pprof`, Parca, Grafana Alloy or Pyroscope at
//! `http://127.0.0.1:6060/debug/pprof/heap`.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
//!
//! fn main() -> Result<(), leaktrace::http::Error> {
//!     leaktrace::start(leaktrace::Config::default());
//!     let _server = leaktrace::http::serve("127.0.0.1:6060")?; // stops when dropped
//!     // go tool pprof -top http://127.0.0.1:6060/debug/pprof/heap
//! #   Ok(())
//! }
//! ```
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /debug/pprof/heap` | a snapshot now, as a gzipped pprof profile ([`crate::pprof::heap_profile`]) |
//! | `GET /debug/pprof/allocs` | the same, `alloc_space` by default ([`crate::pprof::allocs_profile`]) |
//! | `GET /snapshot` | a snapshot now, as `leaktrace.snapshot.v1` JSON |
//! | `GET /trend` | the running [`crate::Monitor`]'s window as a trend, with the sites it judges to leak ([`crate::LiveTrend`], `leaktrace.trend.v1` JSON); 404 without a monitor, 503 if it does not answer within half the request timeout |
//! | `GET /debug/pprof/` | the list of routes |
//!
//! Safety of the endpoint, by default:
//! - It binds loopback addresses only. Anything else (`0.0.0.0`, a LAN
//!   address) is refused unless asked for with
//!   [`Builder::allow_non_loopback`]: the heap names the program's code and
//!   a snapshot costs CPU time.
//! - With [`Builder::token`], a request without `Authorization: Bearer
//!   TOKEN` gets 401.
//! - One thread serves everything, one request at a time, with non-blocking
//!   sockets: up to [`Builder::max_connections`] connections are read side
//!   by side, so a slow or stalled client (half a request, a response it
//!   does not read) never holds up the next one, nor the program. A request
//!   head is at most [`Builder::max_request_bytes`] (431 beyond), and must
//!   arrive, and its response leave, within [`Builder::request_timeout`]
//!   (408, or the connection is dropped). Bodies are not read; only `GET`
//!   and `HEAD` are answered.
//! - The thread's own allocations are not traced (it runs under
//!   [`crate::untraced`]): serving a profile does not show up in the next.

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why the endpoint could not start. The message starts with the address.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address did not parse or resolve.
    #[error("{addr}: cannot resolve the address: {io}")]
    Resolve {
        /// The address asked for.
        addr: String,
        /// What the resolver said.
        io: std::io::Error,
    },
    /// Not a loopback address, and [`Builder::allow_non_loopback`] was not set.
    #[error(
        "{addr}: not a loopback address; the endpoint shows this process's heap, so binding beyond this machine \
         must be asked for (leaktrace::http::Server::builder().allow_non_loopback(true))"
    )]
    NotLoopback {
        /// The address asked for.
        addr: String,
    },
    /// The socket could not be bound or set up.
    #[error("{addr}: {io}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the OS said.
        io: std::io::Error,
    },
}

/// Starts the endpoint on `addr` (e.g. `"127.0.0.1:6060"`; port 0 picks a
/// free one) with the defaults of [`Server::builder`].
pub fn serve(addr: &str) -> Result<ServerHandle, Error> {
    Server::builder().serve(addr)
}

/// The endpoint's settings; see [`Server::builder`].
pub struct Server;

impl Server {
    /// Settings to adjust before [`Builder::serve`]: loopback only, no
    /// token, 8 KiB request heads, a 5 s timeout, 16 connections.
    pub fn builder() -> Builder {
        Builder {
            allow_non_loopback: false,
            token: None,
            max_request_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            max_connections: 16,
        }
    }
}

/// How the endpoint is run.
#[derive(Clone, Debug)]
pub struct Builder {
    allow_non_loopback: bool,
    token: Option<String>,
    max_request_bytes: usize,
    request_timeout: Duration,
    max_connections: usize,
}

impl Builder {
    /// Allows binding an address other than loopback (off by default).
    pub fn allow_non_loopback(mut self, allow: bool) -> Builder {
        self.allow_non_loopback = allow;
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on every request (401 without).
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = Some(token.into());
        self
    }

    /// The largest request head read (request line and headers), in bytes.
    pub fn max_request_bytes(mut self, bytes: usize) -> Builder {
        self.max_request_bytes = bytes.max(64);
        self
    }

    /// How long a connection may take to send its request and take its response.
    pub fn request_timeout(mut self, timeout: Duration) -> Builder {
        self.request_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Connections read side by side; one more is answered 503 and closed.
    pub fn max_connections(mut self, n: usize) -> Builder {
        self.max_connections = n.max(1);
        self
    }

    /// Binds `addr` and starts the server thread.
    pub fn serve(self, addr: &str) -> Result<ServerHandle, Error> {
        crate::untraced(|| self.serve_untraced(addr))
    }

    fn serve_untraced(self, addr: &str) -> Result<ServerHandle, Error> {
        let resolve = |io| Error::Resolve { addr: addr.to_owned(), io };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(resolve)?.collect();
        if addrs.is_empty() {
            return Err(resolve(std::io::Error::new(ErrorKind::NotFound, "no address")));
        }
        if !self.allow_non_loopback && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(Error::NotLoopback { addr: addr.to_owned() });
        }
        let bind = |io| Error::Bind { addr: addr.to_owned(), io };
        let listener = TcpListener::bind(&addrs[..]).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Loop { listener, settings: self, stop: stop.clone(), conns: Vec::new() };
        let thread = std::thread::Builder::new()
            .name("leaktrace-http".into())
            .spawn(move || crate::untraced(|| state.run()))
            .map_err(bind)?;
        Ok(ServerHandle { addr: local, stop, thread: Some(thread) })
    }
}

/// The running endpoint. Dropping it (or [`ServerHandle::stop`]) stops the
/// server thread; keep it for as long as the endpoint should serve.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address bound (with the port chosen when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Relaxed);
        // The thread may be blocked in accept(): a connection wakes it.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        crate::untraced(|| {
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            let _ = thread.join();
        });
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where one connection is.
enum Phase {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Sending the response, from the offset.
    Writing(Vec<u8>, usize),
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    deadline: Instant,
}

/// The server thread's state.
struct Loop {
    listener: TcpListener,
    settings: Builder,
    stop: Arc<AtomicBool>,
    conns: Vec<Conn>,
}

/// How long the loop sleeps when no connection made progress.
const IDLE_POLL: Duration = Duration::from_millis(2);

impl Loop {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let mut progress = self.accept();
            let mut i = 0;
            while i < self.conns.len() {
                match self.step(i) {
                    Step::Waiting => i += 1,
                    Step::Progress => {
                        progress = true;
                        i += 1;
                    }
                    Step::Done => {
                        progress = true;
                        let conn = self.conns.swap_remove(i);
                        let _ = conn.stream.shutdown(Shutdown::Both);
                    }
                }
            }
            if !progress {
                std::thread::sleep(IDLE_POLL);
            }
        }
    }

    /// Takes new connections: blocking when there is nothing else to do
    /// (the thread sleeps in accept), else without waiting.
    fn accept(&mut self) -> bool {
        let idle = self.conns.is_empty();
        if self.listener.set_nonblocking(!idle).is_err() {
            std::thread::sleep(IDLE_POLL);
            return false;
        }
        let mut any = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    any = true;
                    if self.stop.load(Ordering::Relaxed) {
                        return true;
                    }
                    self.admit(stream);
                    if idle {
                        // Go round once to read it before taking more.
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE: try again on the next round.
                Err(_) => {
                    if !any {
                        std::thread::sleep(IDLE_POLL);
                    }
                    return any;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let deadline = Instant::now() + self.settings.request_timeout;
        if self.conns.len() >= self.settings.max_connections {
            // Best effort: a short answer, then close; nothing waits on it.
            let mut stream = stream;
            let _ = stream.write(&response(503, "text/plain", b"busy: too many connections\n", &[], false));
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        self.conns.push(Conn { stream, phase: Phase::Reading(Vec::new()), deadline });
    }

    fn step(&mut self, i: usize) -> Step {
        let max = self.settings.max_request_bytes;
        let conn = &mut self.conns[i];
        let timed_out = Instant::now() >= conn.deadline;
        match &mut conn.phase {
            Phase::Reading(buf) => {
                let mut chunk = [0u8; 2048];
                let mut progress = false;
                loop {
                    if let Some(end) = find_head_end(buf) {
                        let head = buf[..end].to_vec();
                        let out = handle(&head, &self.settings);
                        conn.phase = Phase::Writing(out, 0);
                        return Step::Progress;
                    }
                    if buf.len() > max {
                        let body = format!("request head over {max} bytes\n");
                        conn.phase = Phase::Writing(response(431, "text/plain", body.as_bytes(), &[], false), 0);
                        return Step::Progress;
                    }
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => return Step::Done,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => return Step::Done,
                    }
                }
                if timed_out {
                    let out = response(408, "text/plain", b"request timeout\n", &[], false);
                    conn.phase = Phase::Writing(out, 0);
                    // The answer gets one more timeout to leave.
                    conn.deadline = Instant::now() + self.settings.request_timeout;
                    return Step::Progress;
                }
                if progress {
                    Step::Progress
                } else {
                    Step::Waiting
                }
            }
            Phase::Writing(out, pos) => {
                let mut progress = false;
                while *pos < out.len() {
                    match conn.stream.write(&out[*pos..]) {
                        Ok(0) => return Step::Done,
                        Ok(n) => {
                            *pos += n;
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => return Step::Done,
                    }
                }
                if *pos >= out.len() || timed_out {
                    return Step::Done;
                }
                if progress {
                    Step::Progress
                } else {
                    Step::Waiting
                }
            }
        }
    }
}

enum Step {
    Waiting,
    Progress,
    Done,
}

/// The end of the request head (after the blank line), if it is all there.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A whole HTTP/1.1 response; the connection is closed after it.
fn response(code: u16, content_type: &str, body: &[u8], extra: &[(&str, &str)], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        reason(code),
        body.len()
    )
    .into_bytes();
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const INDEX: &str = "leaktrace endpoint\n\n\
    /debug/pprof/heap    live memory by stack (gzipped pprof; go tool pprof URL)\n\
    /debug/pprof/allocs  the same, alloc_space by default\n\
    /snapshot            a snapshot (leaktrace.snapshot.v1 JSON)\n\
    /trend               the monitor's window as a trend, suspects in `monitor` (JSON)\n";

/// Answers one request head.
fn handle(head: &[u8], settings: &Builder) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return response(400, "text/plain", b"bad request line\n", &[], false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(405, "text/plain", b"only GET and HEAD\n", &[("Allow", "GET, HEAD")], false);
    }
    if let Some(token) = &settings.token {
        let given = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim());
        let ok = given
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .is_some_and(|t| same_secret(t.trim().as_bytes(), token.as_bytes()));
        if !ok {
            return response(
                401,
                "text/plain",
                b"a bearer token is required\n",
                &[("WWW-Authenticate", "Bearer realm=\"leaktrace\"")],
                head_only,
            );
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query.split('&').any(|kv| kv.starts_with("seconds=")) {
        return response(
            400,
            "text/plain",
            b"seconds= (a delta profile) is not supported; take two profiles and use -diff_base\n",
            &[],
            head_only,
        );
    }
    if path == "/trend" {
        return trend(settings, head_only);
    }
    let answer = std::panic::catch_unwind(|| match path {
        "/debug/pprof/heap" => Some(("application/octet-stream", "heap.pb.gz", crate::pprof::heap_profile())),
        "/debug/pprof/allocs" => Some(("application/octet-stream", "allocs.pb.gz", crate::pprof::allocs_profile())),
        "/snapshot" => Some(("application/json", "", crate::take_snapshot("http").to_json().into_bytes())),
        _ => None,
    });
    match (path, answer) {
        (_, Err(_)) => response(500, "text/plain", b"the snapshot failed\n", &[], head_only),
        (_, Ok(Some((ty, file, body)))) => {
            let disposition = format!("attachment; filename=\"{file}\"");
            let extra: &[(&str, &str)] = if file.is_empty() { &[] } else { &[("Content-Disposition", &disposition)] };
            response(200, ty, &body, extra, head_only)
        }
        ("/debug/pprof/" | "/debug/pprof" | "/", Ok(None)) => {
            response(200, "text/plain; charset=utf-8", INDEX.as_bytes(), &[], head_only)
        }
        (_, Ok(None)) => response(404, "text/plain", b"not found; see /debug/pprof/\n", &[], head_only),
    }
}

/// `GET /trend`: the running monitor's, asked for and waited on (at most
/// half the request timeout, so that the answer still leaves in time). The
/// one server thread waits meanwhile: other connections are read on after.
fn trend(settings: &Builder, head_only: bool) -> Vec<u8> {
    use crate::monitor::NoTrend;
    let body = crate::monitor::live_trend(settings.request_timeout / 2).and_then(|trend| {
        let body = std::panic::catch_unwind(|| trend.to_json()).map_err(|_| NoTrend::Failed);
        let _ignore = crate::hot::control::ignore();
        drop(trend);
        body
    });
    match body {
        Ok(body) => response(200, "application/json", body.as_bytes(), &[], head_only),
        Err(NoTrend::NoMonitor) => response(
            404,
            "text/plain",
            b"no trend: no leaktrace::Monitor runs in this process (start one, or take snapshots over time \
              from /snapshot and run alloc-probe trend)\n",
            &[],
            head_only,
        ),
        Err(NoTrend::Failed) => response(500, "text/plain", b"the trend failed\n", &[], head_only),
        Err(NoTrend::Busy) => response(
            503,
            "text/plain",
            b"the monitor did not answer in time (a tick or a report in progress); try again\n",
            &[("Retry-After", "1")],
            head_only,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(head: &str, settings: &Builder) -> String {
        String::from_utf8_lossy(&handle(head.as_bytes(), settings)).into_owned()
    }

    #[test]
    fn routes_methods_and_tokens() {
        let open = Server::builder();
        assert!(answer("GET /nope HTTP/1.1\r\n\r\n", &open).starts_with("HTTP/1.1 404"));
        // No monitor runs in the unit tests.
        assert!(answer("GET /trend HTTP/1.1\r\n\r\n", &open).starts_with("HTTP/1.1 404"));
        assert!(answer("POST /snapshot HTTP/1.1\r\n\r\n", &open).starts_with("HTTP/1.1 405"));
        assert!(answer("GET /snapshot\r\n\r\n", &open).starts_with("HTTP/1.1 400"));
        assert!(answer("GET /debug/pprof/heap?seconds=30 HTTP/1.1\r\n\r\n", &open).starts_with("HTTP/1.1 400"));
        let head = answer("HEAD /debug/pprof/ HTTP/1.1\r\n\r\n", &open);
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
        let locked = Server::builder().token("s3cret");
        assert!(answer("GET / HTTP/1.1\r\n\r\n", &locked).starts_with("HTTP/1.1 401"));
        assert!(answer("GET / HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n", &locked).starts_with("HTTP/1.1 401"));
        assert!(answer("GET / HTTP/1.1\r\nauthorization: Bearer s3cret\r\n\r\n", &locked).starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn head_end_and_secrets() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
