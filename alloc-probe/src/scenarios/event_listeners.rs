//! # Event listeners never removed
//!
//! **The guide** (pitfall 2, event listeners not removed): `on(event,
//! callback)` registers a listener and returns a function that removes it;
//! "always store and call the removal function". A subscriber that goes
//! away without calling it leaves its listener, and everything the listener
//! refers to, registered for ever.
//!
//! **In Rust** a listener is a boxed closure, and what it captures (here the
//! client session's receive buffer) lives as long as the emitter holds it.
//! Each step a client session subscribes to `"data"` and ends; the leaky
//! code ignores the [`Remover`] that [`EventEmitter::on`] returns.
//!
//! **The fix**: keep the `Remover` and call [`Remover::remove`] when the
//! session ends. (A remover that unsubscribes in `Drop`, an RAII guard,
//! makes forgetting impossible; this module keeps the guide's explicit call
//! so that the leak can be written at all. `Remover` is `#[must_use]`, so
//! the compiler at least warns when one is dropped unused.)
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! allocating each session's buffer (marked `LEAK`), which its listener
//! captures. The `Arc` holding each listener (in `on`) grows steadily too,
//! but it is small; the listener list's buffer grows in steps.

use super::{lock, Clock, Scenario, ScenarioFuture, Steps, Variant};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub const SCENARIO: Scenario = Scenario {
    name: "event_listeners",
    title: "event listeners never removed",
    guide: "pitfall 2, event listeners not removed: on() returns a remover nobody calls",
    fix: "keep the remover that on() returns and call it when the subscriber goes away",
    source: file!(),
    text: include_str!("event_listeners.rs"),
    run,
};

/// Sessions that subscribe per step.
pub const SESSIONS_PER_STEP: usize = 4;
/// Each session's receive buffer.
pub const SESSION_BYTES: usize = 4096;

type Listener = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The guide's `EventEmitter`: listeners by event name.
#[derive(Default)]
pub struct EventEmitter {
    listeners: Mutex<HashMap<&'static str, Vec<(u64, Listener)>>>,
    next_id: AtomicU64,
}

/// Removes one listener: the function the guide's `on()` returns.
#[must_use = "call remove() when the listener is no longer needed, or it stays registered for ever"]
pub struct Remover {
    emitter: Arc<EventEmitter>,
    event: &'static str,
    id: u64,
}

impl Remover {
    /// Unregisters the listener, dropping what it captured.
    pub fn remove(self) {
        if let Some(list) = lock(&self.emitter.listeners).get_mut(self.event) {
            list.retain(|(id, _)| *id != self.id);
        }
    }
}

impl EventEmitter {
    /// Registers `callback` for `event`; the returned remover unregisters it.
    pub fn on(self: &Arc<Self>, event: &'static str, callback: impl Fn(&[u8]) + Send + Sync + 'static) -> Remover {
        let id = self.next_id.fetch_add(1, Relaxed);
        let listener: Listener = Arc::new(callback);
        lock(&self.listeners).entry(event).or_default().push((id, listener));
        Remover { emitter: Arc::clone(self), event, id }
    }

    /// Calls every listener of `event`.
    pub fn emit(&self, event: &str, payload: &[u8]) {
        if let Some(list) = lock(&self.listeners).get(event) {
            for (_, listener) in list {
                listener(payload);
            }
        }
    }
}

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        let emitter = Arc::new(EventEmitter::default());
        let source = leaktrace::tokio::spawn(emit_data(Arc::clone(&emitter), steps.clock()));
        match variant {
            Variant::Leaky => leaky(steps, &emitter).await,
            Variant::Fixed => fixed(steps, &emitter).await,
        }
        source.abort();
    })
}

/// The event source: one `"data"` event per tick.
async fn emit_data(emitter: Arc<EventEmitter>, mut clock: Clock) {
    let payload = [7u8; 64];
    loop {
        clock.tick().await;
        emitter.emit("data", &payload);
    }
}

/// A session's listener: copies the latest payload into its buffer.
fn receive(buffer: &Mutex<Vec<u8>>, payload: &[u8]) {
    let mut buffer = lock(buffer);
    let n = payload.len().min(buffer.len());
    buffer[..n].copy_from_slice(&payload[..n]);
}

async fn leaky(steps: &mut Steps, emitter: &Arc<EventEmitter>) {
    while steps.next().await {
        for _ in 0..SESSIONS_PER_STEP {
            let buffer = Mutex::new(vec![0u8; SESSION_BYTES]); // LEAK: event_listeners
                                                               // The remover is dropped unused: the listener, and its buffer, stay.
            let _ = emitter.on("data", move |payload| receive(&buffer, payload));
        }
    }
}

async fn fixed(steps: &mut Steps, emitter: &Arc<EventEmitter>) {
    let mut removers: Vec<Remover> = Vec::with_capacity(SESSIONS_PER_STEP);
    while steps.next().await {
        // The last step's sessions are over: remove their listeners.
        for remover in removers.drain(..) {
            remover.remove();
        }
        for _ in 0..SESSIONS_PER_STEP {
            let buffer = Mutex::new(vec![0u8; SESSION_BYTES]);
            removers.push(emitter.on("data", move |payload| receive(&buffer, payload)));
        }
    }
    for remover in removers {
        remover.remove();
    }
}
