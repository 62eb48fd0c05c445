//! # An unbounded queue in front of a slow consumer
//!
//! **The guide** (pitfall 3, infinite queues without bounds):
//! `asyncio.Queue()` is "unbounded - dangerous"; the fix is
//! `asyncio.Queue(maxsize=1000)`.
//!
//! **In tokio** the same: requests arrive at [`ARRIVALS_PER_TICK`] per tick
//! and the consumer serves [`SERVED_PER_TICK`]. Through
//! `mpsc::unbounded_channel` the producer never waits, so the backlog (each
//! waiting request with its body) grows by the difference at every tick,
//! without limit: memory, and latency, grow until the process dies.
//!
//! **The fix**: `mpsc::channel(CAPACITY)`, a bounded queue. When it is full,
//! `send().await` waits until the consumer has made room: the producer is
//! slowed to the consumer's pace (backpressure) and at most [`CAPACITY`]
//! requests wait. (Where arrivals cannot wait, `try_send` lets the producer
//! shed load instead.)
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! allocating each request's body (marked `LEAK`), which the backlog holds.
//! The channel's own blocks (allocated at the `send` line) grow steadily
//! too, by much less.

use super::{Clock, Scenario, ScenarioFuture, Steps, Variant};
use tokio::sync::mpsc;

pub const SCENARIO: Scenario = Scenario {
    name: "unbounded_queue",
    title: "an unbounded queue with a slow consumer",
    guide: "pitfall 3, infinite queues without bounds: asyncio.Queue() with no maxsize",
    fix: "a bounded channel: send().await waits while the queue is full (backpressure)",
    source: file!(),
    text: include_str!("unbounded_queue.rs"),
    run,
};

/// Requests arriving per tick.
pub const ARRIVALS_PER_TICK: usize = 40;
/// Requests the consumer serves per tick.
pub const SERVED_PER_TICK: usize = 10;
/// Bytes of each request's body.
pub const BODY_BYTES: usize = 1024;
/// The bounded queue's size.
pub const CAPACITY: usize = 16;

/// A request waiting to be served.
pub struct Request {
    pub id: u64,
    pub body: Vec<u8>,
}

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        let (producer, consumer) = match variant {
            Variant::Leaky => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                (
                    leaktrace::tokio::spawn(leaky_producer(tx, steps.clock())),
                    leaktrace::tokio::spawn(slow_consumer(move || rx.try_recv().ok(), steps.clock())),
                )
            }
            Variant::Fixed => {
                let (tx, mut rx) = mpsc::channel(CAPACITY);
                (
                    leaktrace::tokio::spawn(producer(tx, steps.clock())),
                    leaktrace::tokio::spawn(slow_consumer(move || rx.try_recv().ok(), steps.clock())),
                )
            }
        };
        while steps.next().await {}
        producer.abort();
        consumer.abort();
    })
}

/// Serves [`SERVED_PER_TICK`] waiting requests per tick, whatever waits.
async fn slow_consumer(mut take: impl FnMut() -> Option<Request>, mut clock: Clock) {
    loop {
        clock.tick().await;
        for _ in 0..SERVED_PER_TICK {
            match take() {
                Some(request) => serve(request),
                None => break,
            }
        }
    }
}

fn serve(request: Request) {
    std::hint::black_box((request.id, request.body.len()));
}

async fn leaky_producer(queue: mpsc::UnboundedSender<Request>, mut clock: Clock) {
    let mut id = 0u64;
    loop {
        clock.tick().await;
        for _ in 0..ARRIVALS_PER_TICK {
            id += 1;
            let body = vec![id as u8; BODY_BYTES]; // LEAK: unbounded_queue
                                                   // Never waits, however long the queue is.
            if queue.send(Request { id, body }).is_err() {
                return;
            }
        }
    }
}

async fn producer(queue: mpsc::Sender<Request>, mut clock: Clock) {
    let mut id = 0u64;
    loop {
        clock.tick().await;
        for _ in 0..ARRIVALS_PER_TICK {
            id += 1;
            let body = vec![id as u8; BODY_BYTES];
            // Waits while the queue is full: the producer slows to the consumer's pace.
            if queue.send(Request { id, body }).await.is_err() {
                return;
            }
        }
    }
}
