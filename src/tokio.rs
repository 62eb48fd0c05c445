//! Spawning tracked tasks on tokio (the `tokio` feature).

#![forbid(unsafe_code)]

use std::future::Future;
use std::panic::Location;

/// `tokio::spawn`, with the task counted live at the caller's line until it
/// finishes or is aborted (see [`crate::live_tasks`]).
#[track_caller]
pub fn spawn<F>(future: F) -> ::tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let guard = crate::track_task_at(Location::caller());
    ::tokio::spawn(async move {
        let _guard = guard;
        future.await
    })
}
