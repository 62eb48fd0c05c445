//! # A worker whose local cache is never cleared
//!
//! **The guide** (pattern 1, `leaky_worker`): workers take items off a
//! queue and `local_cache.append(item)`, "never cleared"; the workers live
//! as long as the service, so their caches grow with every item served.
//!
//! **In Rust** it is the same: each worker decodes every frame it receives
//! and keeps the decoded item in a `Vec` that nothing clears. The frames
//! themselves are freed once handled; the copies are not.
//!
//! **The fix** (the guide's fixed `worker`, solution 1): collect items into
//! a batch, process the batch when it is full, then `clear()` it. A partial
//! batch is flushed when the queue runs dry and when the worker stops (the
//! guide flushes on a timeout and on cancellation), so nothing lingers in
//! the cache between bursts.
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! that decodes and keeps each item (marked `LEAK`): the decoded `String`s
//! are allocated there, and the cache `Vec`'s own buffer grows there too.
//! The producer's frames come and go: that line does not grow.

use super::{Scenario, ScenarioFuture, Steps, Variant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

pub const SCENARIO: Scenario = Scenario {
    name: "worker_cache",
    title: "a worker whose local cache is never cleared",
    guide: "leaky_worker (pattern 1): local_cache.append(item), never cleared",
    fix: "process items in batches and clear the batch; flush a partial one when the queue runs dry",
    source: file!(),
    text: include_str!("worker_cache.rs"),
    run,
};

/// Workers serving the queue.
pub const WORKERS: usize = 4;
/// Frames that arrive per step.
pub const ITEMS_PER_STEP: usize = 32;
/// Bytes per frame.
pub const ITEM_BYTES: usize = 512;
/// Items a fixed worker processes at once.
pub const BATCH: usize = 10;

type Queue = mpsc::UnboundedReceiver<Vec<u8>>;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        let mut queues = Vec::with_capacity(WORKERS);
        let mut workers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(tx);
            workers.push(match variant {
                Variant::Leaky => leaktrace::tokio::spawn(leaky_worker(rx)),
                Variant::Fixed => leaktrace::tokio::spawn(worker(rx)),
            });
        }
        let mut next = 0usize;
        while steps.next().await {
            for _ in 0..ITEMS_PER_STEP {
                let frame = vec![b'a' + (next % 26) as u8; ITEM_BYTES];
                // Round-robin: the same worker gets the same items on every run.
                let _ = queues[next % WORKERS].send(frame);
                next += 1;
            }
        }
        // Closing the queues stops the workers.
        drop(queues);
        for w in workers {
            let _ = w.await;
        }
    })
}

/// Looks at an item; stands for the real work.
fn process(item: &[u8]) {
    std::hint::black_box(item.iter().map(|&b| b as u64).sum::<u64>());
}

async fn leaky_worker(mut queue: Queue) {
    let mut local_cache: Vec<String> = Vec::new(); // this grows indefinitely
    while let Some(frame) = queue.recv().await {
        // A decoded copy of every item, kept "for later": never cleared.
        local_cache.push(String::from_utf8_lossy(&frame).into_owned()); // LEAK: worker_cache
        process(&frame);
    }
}

async fn worker(mut queue: Queue) {
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    loop {
        let frame = match queue.try_recv() {
            Ok(frame) => frame,
            Err(TryRecvError::Empty) => {
                // The queue ran dry: process what waits, then sleep until more comes.
                process_batch(&mut batch);
                match queue.recv().await {
                    Some(frame) => frame,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        batch.push(String::from_utf8_lossy(&frame).into_owned());
        if batch.len() >= BATCH {
            process_batch(&mut batch);
        }
    }
    // Stopping: process what is left, like the guide's CancelledError branch.
    process_batch(&mut batch);
}

/// Processes a batch, then clears it: the capacity stays, the items go.
fn process_batch(batch: &mut Vec<String>) {
    for item in batch.iter() {
        process(item.as_bytes());
    }
    batch.clear();
}
