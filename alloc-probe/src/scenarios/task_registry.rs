//! # A global list of task handles, never pruned
//!
//! **The guide** (pitfall 1, global task storage): every task is appended
//! to a module-level `global_tasks` list, "never cleaned", so the list
//! keeps every task ever started, finished or not, with its result.
//!
//! **In tokio** a finished task's memory (its cell, which holds its output
//! until someone takes it) is freed once both the runtime and the task's
//! `JoinHandle` are done with it. A handle kept in a global list keeps the
//! finished task and its output alive for good.
//!
//! **The fix** (the guide's `WeakSet`, and `add_done_callback(discard)` in
//! its `TaskManager`): prune on completion. The registry is keyed by task
//! id and each task removes its own entry as it finishes, so the registry
//! only ever holds running tasks, and a finished task's memory is freed at
//! once.
//!
//! **What leaktrace shows**: the first site, growing steadily, is the line
//! in the task that builds its result (marked `LEAK`): that result stays in
//! the finished task's cell for as long as its handle is kept. The `spawn`
//! line (the task cells) grows steadily too, by less; the list's own buffer
//! grows in steps, as it doubles.

use super::{lock, Scenario, ScenarioFuture, Steps, Variant};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use tokio::task::{self, JoinHandle};

pub const SCENARIO: Scenario = Scenario {
    name: "task_registry",
    title: "a global list of task handles, never pruned",
    guide: "pitfall 1, global task storage: global_tasks.append(task), never cleaned",
    fix: "prune on completion: each task removes its own handle from the registry when it finishes",
    source: file!(),
    text: include_str!("task_registry.rs"),
    run,
};

/// Tasks started per step.
pub const TASKS_PER_STEP: usize = 8;
/// Bytes of each task's result.
pub const RESULT_BYTES: usize = 2048;

/// `global_tasks = []`: every task ever started.
static GLOBAL_TASKS: Mutex<Vec<JoinHandle<Vec<u8>>>> = Mutex::new(Vec::new());

/// The fixed registry: running tasks by id.
static TASKS: LazyLock<Mutex<HashMap<task::Id, JoinHandle<Vec<u8>>>>> = LazyLock::new(Default::default);

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        match variant {
            Variant::Leaky => leaky(steps).await,
            Variant::Fixed => fixed(steps).await,
        }
    })
}

/// `some_work()`: a short job with a result nobody asks for.
async fn some_work(id: u64) -> Vec<u8> {
    vec![id as u8; RESULT_BYTES] // LEAK: task_registry
}

async fn leaky(steps: &mut Steps) {
    let mut id = 0u64;
    while steps.next().await {
        for _ in 0..TASKS_PER_STEP {
            id += 1;
            let task = leaktrace::tokio::spawn(some_work(id));
            lock(&GLOBAL_TASKS).push(task); // never cleaned
        }
    }
}

async fn fixed(steps: &mut Steps) {
    let mut id = 0u64;
    while steps.next().await {
        for _ in 0..TASKS_PER_STEP {
            id += 1;
            // Held across the spawn, so the task cannot finish, and remove
            // itself, before it is registered.
            let mut tasks = lock(&TASKS);
            let task = leaktrace::tokio::spawn(async move {
                let result = some_work(id).await;
                // Done: drop our own handle, and with it the finished task's memory.
                lock(&TASKS).remove(&task::id());
                result
            });
            tasks.insert(task.id(), task);
        }
    }
}
