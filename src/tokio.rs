//! Spawning tracked tasks on tokio (the `tokio` feature).
//!
//! Drop-in replacements for `tokio::spawn` and friends: same signatures,
//! same panics (outside a runtime), and the task is counted live at the
//! caller's line (see [`crate::live_tasks`]) until its future is dropped,
//! that is when it finishes, panics, or is aborted and cancelled.
//!
//! ```no_run
//! # async fn f() {
//! let handle = leaktrace::tokio::spawn(async { 42 }); // counted at this line
//! assert_eq!(handle.await.unwrap(), 42);
//! # }
//! ```

#![forbid(unsafe_code)]

use std::future::Future;
use std::panic::Location;

/// `tokio::spawn`, with the task counted live at the caller's line until it
/// finishes or is aborted.
///
/// # Panics
///
/// Like `tokio::spawn`, when called outside a tokio runtime.
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

/// `tokio::task::spawn_blocking`, with the closure counted live at the
/// caller's line until it returns (or is dropped unstarted at shutdown).
///
/// # Panics
///
/// Like `tokio::task::spawn_blocking`, when called outside a tokio runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> ::tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let guard = crate::track_task_at(Location::caller());
    ::tokio::task::spawn_blocking(move || {
        let _guard = guard;
        f()
    })
}

/// `tokio::task::spawn_local`, with the task counted live at the caller's
/// line until it finishes or is aborted.
///
/// # Panics
///
/// Like `tokio::task::spawn_local`, when called outside a `LocalSet`.
#[track_caller]
pub fn spawn_local<F>(future: F) -> ::tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let guard = crate::track_task_at(Location::caller());
    ::tokio::task::spawn_local(async move {
        let _guard = guard;
        future.await
    })
}
