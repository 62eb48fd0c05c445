//! # Background tasks never cancelled, each holding its data
//!
//! **The guide** (step 1, `leaky_background_task`, and pattern 1): a
//! function starts tasks with
//! `asyncio.create_task(leaky_background_task(f"data_{i}"))` and returns;
//! each task loops forever (`await asyncio.sleep(1)`), keeping its `data`.
//!
//! **In tokio** a spawned task belongs to the runtime, not to whoever spawned
//! it: dropping its `JoinHandle` detaches the task, it does not cancel it.
//! Here each request starts [`TASKS_PER_REQUEST`] tasks to work for it; when
//! the request is over nobody stops them, and each keeps its
//! [`DATA_BYTES`] of data for as long as the process lives. Memory grows by
//! one request's worth at every step.
//!
//! **The fix** (the guide's `TaskManager.task_scope()`, solution 1): the
//! request owns its tasks in a [`JoinSet`]; when the request ends,
//! [`JoinSet::shutdown`] aborts them and waits until they are gone, and their
//! data is freed with them. (Dropping a `JoinSet` aborts its tasks too;
//! `shutdown().await` also waits until they have stopped.)
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! that allocates each task's `data` (marked `LEAK`), the largest block a
//! task keeps. The `spawn` line grows steadily as well, but by less: it is
//! where tokio allocates each task itself (its state machine, a few hundred
//! bytes); tokio's frames are a dependency's, so that block is counted at
//! our line that called into tokio. The diff's "live tasks by spawn site"
//! counts the tasks themselves.

use super::{tracked, Clock, Scenario, ScenarioFuture, Steps, Variant};
use tokio::task::JoinSet;

pub const SCENARIO: Scenario = Scenario {
    name: "background_tasks",
    title: "background tasks never cancelled, each holding its data",
    guide: "leaky_background_task (step 1; pattern 1): create_task() and forget",
    fix: "the request owns its tasks in a JoinSet and shuts them down (abort, then await) when it ends",
    source: file!(),
    text: include_str!("background_tasks.rs"),
    run,
};

/// Tasks each request starts.
pub const TASKS_PER_REQUEST: usize = 8;
/// What each task holds.
pub const DATA_BYTES: usize = 4096;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        match variant {
            Variant::Leaky => leaky(steps).await,
            Variant::Fixed => fixed(steps).await,
        }
    })
}

/// `leaky_background_task(data)`: works on its data at every tick, forever.
async fn background_task(data: Vec<u8>, mut clock: Clock) {
    loop {
        clock.tick().await; // await asyncio.sleep(1)
        std::hint::black_box(data.len() * 2); // result = data * 2
    }
}

async fn leaky(steps: &mut Steps) {
    let mut request = 0u64;
    while steps.next().await {
        request += 1;
        for i in 0..TASKS_PER_REQUEST {
            let data = vec![(request as usize + i) as u8; DATA_BYTES]; // LEAK: background_tasks
                                                                       // The handle is dropped at once: the task is detached, not cancelled.
            drop(leaktrace::tokio::spawn(background_task(data, steps.clock())));
        }
        // The request is over here; its tasks run on.
    }
}

async fn fixed(steps: &mut Steps) {
    let mut request = 0u64;
    let mut running: Option<JoinSet<()>> = None;
    while steps.next().await {
        // The previous request is over: abort its tasks and wait for them.
        if let Some(mut tasks) = running.take() {
            tasks.shutdown().await;
        }
        request += 1;
        let mut tasks = JoinSet::new();
        for i in 0..TASKS_PER_REQUEST {
            let data = vec![(request as usize + i) as u8; DATA_BYTES];
            tasks.spawn(tracked(background_task(data, steps.clock())));
        }
        running = Some(tasks);
    }
    if let Some(mut tasks) = running.take() {
        tasks.shutdown().await;
    }
}
