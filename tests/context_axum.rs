//! A real axum service (the key-value store of axum's examples) with
//! tower-http's `TraceLayer` recording the matched route, and
//! `ContextLayer` making that span the allocation context. A client posts
//! new keys to `/{key}` and reads hot keys back. The request bodies are
//! allocated by hyper and `bytes` while the extractor collects them, before
//! the handler runs: no frame of this file is on their stack. The trend
//! still names the route: its first site is under `POST /{key}`, and the
//! `GET` traffic is in another context, never steady.

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use leaktrace::{Config, GroupBy, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_http::trace::TraceLayer;
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

type Db = Arc<RwLock<HashMap<String, Bytes>>>;

async fn kv_get(Path(key): Path<String>, State(db): State<Db>) -> Result<Bytes, StatusCode> {
    db.read().unwrap().get(&key).cloned().ok_or(StatusCode::NOT_FOUND)
}

async fn kv_set(Path(key): Path<String>, State(db): State<Db>, bytes: Bytes) {
    db.write().unwrap().insert(key, bytes);
}

fn app(db: Db) -> Router {
    Router::new()
        .route("/{key}", get(kv_get).post(kv_set))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let matched_path = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            tracing::info_span!("http_request", method = %req.method(), matched_path)
        }))
        .with_state(db)
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.set_nodelay(true).unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The body follows in two pieces, as a client streaming it sends it:
    // the extractor then collects it into one buffer, inside the request's
    // span. (A body that arrives in one read with its headers is read by
    // hyper's connection task before any span is entered; see the README.)
    let half = body.len() / 2;
    for piece in [&body[..half], &body[half..]] {
        if !piece.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            s.write_all(piece).await.unwrap();
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[test]
fn the_trend_names_the_route_that_keeps_growing() {
    tracing_subscriber::registry().with(leaktrace::tracing::ContextLayer::default()).init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    leaktrace::start(Config::default());
    let snaps = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let db: Db = Arc::default();
        tokio::spawn(async move { axum::serve(listener, app(db)).await.unwrap() });
        let value = vec![b'v'; 2048];
        for hot in 0..8 {
            request(addr, "POST", &format!("/hot{hot}"), &value).await;
        }
        let mut snaps = vec![leaktrace::take_snapshot("start")];
        let mut next = 0;
        for step in 1..=12 {
            for _ in 0..20 {
                request(addr, "POST", &format!("/new{next}"), &value).await;
                next += 1;
            }
            for i in 0..20 {
                let got = request(addr, "GET", &format!("/hot{}", i % 8), b"").await;
                assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
                // Hot keys are overwritten: the same size stays live.
                request(addr, "POST", &format!("/hot{}", i % 8), &value).await;
            }
            snaps.push(leaktrace::take_snapshot(&format!("step {step}")));
        }
        snaps
    });
    // The README's example output comes from these snapshots.
    if let Some(dir) = std::env::var_os("LEAKTRACE_AXUM_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in snaps.iter().enumerate() {
            s.write_json(dir.join(format!("snapshot-{i:03}.json"))).unwrap();
        }
    }
    let trend = leaktrace::trend(&snaps, GroupBy::Line);
    let top = &trend.sites[0];
    assert_eq!(top.verdict, Verdict::Steady, "{:#?}", &trend.sites[..3]);
    let ctx = top.context.as_deref().unwrap_or("");
    assert!(ctx.contains("/{key}") && ctx.contains("POST"), "top site {:?} under {ctx:?}", top.location);
    assert!(top.size_last >= 12 * 20 * 2048, "{}", top.size_last);
    for s in &trend.sites {
        if s.context.as_deref().is_some_and(|c| c.starts_with("GET")) {
            assert_ne!(s.verdict, Verdict::Steady, "GET traffic judged steady: {s:#?}");
        }
    }
    // Grouped by context, the route is a group of its own, with the bodies in it.
    let by_ctx = snaps.last().unwrap().statistics(GroupBy::Context);
    let post = by_ctx.iter().find(|s| s.location.function == "POST /{key}").expect("a POST /{key} context");
    assert!(post.size >= 12 * 20 * 2048 + 8 * 2048);
    // The site shown for a traceback without the program's own frames leads with its context.
    let shown = leaktrace::site_label(&top.location, top.context.as_deref());
    assert!(shown.starts_with("POST /{key} › "), "{shown}");
}
