//! # A self-rescheduling callback holding a strong reference to its owner
//!
//! **The guide** (pattern 2, `LeakyConnection`): the connection stores
//! `self.handler = lambda: self.process_data()`, and `process_data` appends
//! to `data_buffer` and re-schedules `self.handler` with `loop.call_later`.
//! The event loop holds the handler, the handler holds the connection, and
//! `close()`, the one thing that would stop it, "is often forgotten": every
//! connection ever opened stays alive and keeps appending.
//!
//! **In Rust** the cycle is made of `Arc`s: the connection owns a handler
//! closure that owns an `Arc` of the connection (connection -> handler ->
//! connection), and each run of the handler spawns the next one
//! (`call_later`). Dropping the program's last `Arc` changes nothing: the
//! cycle and the pending task keep the connection alive, and growing.
//!
//! **The fix** (solution 2, `FixedConnection`): the scheduled work holds a
//! [`Weak`], so only the program's own `Arc`s keep a connection alive;
//! `close()` marks it closed and aborts the pending task; and the buffer has
//! a size limit (past [`MAX_BUFFERED`] entries the older half is dropped).
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! appending to the buffer (marked `LEAK`), and it grows faster at every
//! step: more connections, each still growing. Each live connection also
//! keeps a pending task (`spawn` in `call_later`), its `Arc` and handler.

use super::{lock, Clock, Scenario, ScenarioFuture, Steps, Variant};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use tokio::task::AbortHandle;

pub const SCENARIO: Scenario = Scenario {
    name: "connection_cycle",
    title: "a self-rescheduling callback holding a strong reference to its owner (an Arc cycle)",
    guide: "LeakyConnection (pattern 2): self.handler = lambda: self.process_data(), close() forgotten",
    fix: "the scheduled work holds a Weak; close() cancels the pending work; the buffer is bounded",
    source: file!(),
    text: include_str!("connection_cycle.rs"),
    run,
};

/// Connections a client opens per step (and forgets, or closes, at the next).
pub const CONNECTIONS_PER_STEP: usize = 4;
/// Entries a fixed connection buffers at most.
pub const MAX_BUFFERED: usize = 100;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        match variant {
            Variant::Leaky => leaky(steps).await,
            Variant::Fixed => fixed(steps).await,
        }
    })
}

type Handler = Arc<dyn Fn() + Send + Sync>;

/// The guide's `LeakyConnection`.
pub struct LeakyConnection {
    data_buffer: Mutex<Vec<String>>,
    handler: Mutex<Option<Handler>>,
    clock: Clock,
}

impl LeakyConnection {
    pub fn open(clock: Clock) -> Arc<LeakyConnection> {
        let conn = Arc::new(LeakyConnection { data_buffer: Mutex::new(Vec::new()), handler: Mutex::new(None), clock });
        // The cycle: the connection owns the handler, the handler owns the connection.
        let this = Arc::clone(&conn);
        let handler: Handler = Arc::new(move || this.process_data());
        *lock(&conn.handler) = Some(handler);
        conn.call_later();
        conn
    }

    /// Keeps adding to the buffer, then re-schedules itself.
    fn process_data(&self) {
        lock(&self.data_buffer).push("data".repeat(1000)); // LEAK: connection_cycle
        self.call_later();
    }

    /// `loop.call_later(0.1, self.handler)`: runs the handler at the next tick.
    fn call_later(&self) {
        let handler = lock(&self.handler).clone();
        let mut clock = self.clock.clone();
        tokio::spawn(async move {
            clock.tick().await;
            if let Some(handler) = handler {
                handler();
            }
        });
    }

    /// The cleanup that "is often forgotten": it would break the cycle.
    #[allow(dead_code)]
    pub fn close(&self) {
        lock(&self.data_buffer).clear();
        *lock(&self.handler) = None;
    }
}

async fn leaky(steps: &mut Steps) {
    let mut connections: Vec<Arc<LeakyConnection>> = Vec::new();
    while steps.next().await {
        // The last step's client is gone; it forgot to call close().
        connections.clear();
        for _ in 0..CONNECTIONS_PER_STEP {
            connections.push(LeakyConnection::open(steps.clock()));
        }
    }
}

/// The guide's `FixedConnection`.
pub struct Connection {
    closed: AtomicBool,
    data_buffer: Mutex<Vec<String>>,
    pending: Mutex<Option<AbortHandle>>,
    clock: Clock,
}

impl Connection {
    pub fn open(clock: Clock) -> Arc<Connection> {
        let conn = Arc::new(Connection {
            closed: AtomicBool::new(false),
            data_buffer: Mutex::new(Vec::new()),
            pending: Mutex::new(None),
            clock,
        });
        conn.schedule_next(Arc::downgrade(&conn));
        conn
    }

    /// Schedules the next run holding only a weak reference: the pending
    /// task does not keep the connection alive.
    fn schedule_next(&self, this: Weak<Connection>) {
        if self.closed.load(Relaxed) {
            return;
        }
        let mut clock = self.clock.clone();
        let task = tokio::spawn(async move {
            clock.tick().await;
            if let Some(conn) = this.upgrade() {
                conn.process_data(Weak::clone(&this));
            }
        });
        *lock(&self.pending) = Some(task.abort_handle());
    }

    /// Adds to the buffer within a size limit, then re-schedules.
    fn process_data(&self, this: Weak<Connection>) {
        if self.closed.load(Relaxed) {
            return;
        }
        {
            let mut buffer = lock(&self.data_buffer);
            if buffer.len() < MAX_BUFFERED {
                buffer.push("data".repeat(1000));
            } else {
                // Keep the newer half, like the guide's `[-50:]`.
                buffer.drain(..MAX_BUFFERED / 2);
            }
        }
        self.schedule_next(this);
    }

    /// Stops the work: no more runs, the pending one cancelled, the buffer freed.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        if let Some(pending) = lock(&self.pending).take() {
            pending.abort();
        }
        lock(&self.data_buffer).clear();
    }
}

async fn fixed(steps: &mut Steps) {
    let mut connections: Vec<Arc<Connection>> = Vec::new();
    while steps.next().await {
        // The last step's client is done with its connections: close them.
        for conn in connections.drain(..) {
            conn.close();
        }
        for _ in 0..CONNECTIONS_PER_STEP {
            connections.push(Connection::open(steps.clock()));
        }
    }
    for conn in connections.drain(..) {
        conn.close();
    }
}
