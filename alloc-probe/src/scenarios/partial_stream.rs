//! # A partially consumed stream kept alive, holding a large buffer
//!
//! **The guide** (pattern 3, `leaky_generator`): an async generator builds
//! `large_data` (a million integers) and yields its items; the consumer
//! takes ten and `break`s without closing the generator, whose suspended
//! frame, and `large_data` with it, stays alive.
//!
//! **In tokio** an async generator is a task sending into a channel, and
//! the stream is the receiver. Dropping the receiver closes the channel:
//! the producer's next `send` fails, it returns, and `large_data` is freed.
//! What leaks is a receiver kept alive: here each query's half-read stream
//! is parked in `cursors` for a "next page" request that never comes, so
//! each query's producer stays blocked in `send`, holding all of its data.
//!
//! **The fix** (solution 3, async generator cleanup): read the page in a
//! scope. The stream is dropped at the closing brace, which closes the
//! channel and ends the producer; its `large_data` goes with it (the
//! guide's `finally` and `aclose()`). A stream that must be kept for later
//! needs a bound and an expiry.
//!
//! **What leaktrace shows**: the first site, growing steadily, is the
//! producer's line collecting `large_data` (marked `LEAK`): one query's
//! buffer more at every step. The channel (at `mpsc::channel`) and the
//! producer task (at `spawn`) grow steadily too, but each by some forty
//! times less.

use super::{Scenario, ScenarioFuture, Steps, Variant};
use std::collections::HashMap;
use tokio::sync::mpsc;

pub const SCENARIO: Scenario = Scenario {
    name: "partial_stream",
    title: "a partially consumed stream kept alive, holding a large buffer",
    guide: "leaky_generator (pattern 3): break after ten items, the generator never closed",
    fix: "read the page in a scope: dropping the stream ends its producer and frees the buffer",
    source: file!(),
    text: include_str!("partial_stream.rs"),
    run,
};

/// Items each stream's producer holds (8 bytes each).
pub const DATA_LEN: u64 = 4096;
/// Items the consumer reads before it stops.
pub const PAGE: usize = 10;
/// Queries per step.
pub const QUERIES_PER_STEP: usize = 2;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        match variant {
            Variant::Leaky => leaky(steps).await,
            Variant::Fixed => fixed(steps).await,
        }
    })
}

/// `leaky_generator()`: a task yielding every item of `large_data` into a
/// channel; the receiver is the stream.
fn generator(len: u64) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel(16);
    leaktrace::tokio::spawn(async move {
        let large_data: Vec<u64> = (0..len).collect(); // LEAK: partial_stream
        for &item in &large_data {
            if tx.send(item).await.is_err() {
                // The stream was dropped: stop, and free large_data.
                return;
            }
        }
    });
    rx
}

/// Reads the first page of a stream and stops (`break` after ten items).
async fn first_page(stream: &mut mpsc::Receiver<u64>) -> Vec<u64> {
    let mut page = Vec::with_capacity(PAGE);
    while let Some(item) = stream.recv().await {
        page.push(item);
        if page.len() >= PAGE {
            break;
        }
    }
    page
}

async fn leaky(steps: &mut Steps) {
    // Half-read streams by query, for a "next page" request that never comes.
    let mut cursors: HashMap<u64, mpsc::Receiver<u64>> = HashMap::new();
    let mut query = 0u64;
    while steps.next().await {
        for _ in 0..QUERIES_PER_STEP {
            query += 1;
            let mut stream = generator(DATA_LEN);
            let page = first_page(&mut stream).await;
            std::hint::black_box(page);
            cursors.insert(query, stream);
        }
    }
}

async fn fixed(steps: &mut Steps) {
    while steps.next().await {
        for _ in 0..QUERIES_PER_STEP {
            let page = {
                let mut stream = generator(DATA_LEN);
                first_page(&mut stream).await
            }; // The stream is dropped here: its producer stops and frees its data.
            std::hint::black_box(page);
        }
    }
}
