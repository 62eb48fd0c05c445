//! Allocation contexts: which request, route or job a block was allocated
//! under.
//!
//! In a service built on a framework (axum, actix, tonic), most of the memory
//! it keeps was allocated by the framework: a request body collected by an
//! extractor, before the handler runs, has no frame of the program's own code
//! on its stack, so its call site is a line of `bytes` or `hyper`. A context
//! names what the program was doing instead: `POST /{key}`.
//!
//! Each thread has a current context, a small interned id kept in the same
//! thread-local word as the allocator's re-entrancy guard, so recording it
//! costs the allocation path no extra load. Every traced block records it as
//! part of its stack's identity: the same code path under two routes is two
//! traces, and snapshots, diffs, trends, the monitor and leak checks keep
//! them apart ([`crate::GroupBy::Context`] groups by context alone).
//!
//! - [`enter`] sets the context for synchronous code until its guard drops;
//! - [`scope`] sets it while a future is polled, on whatever thread polls it;
//! - with the `tracing` feature, `leaktrace::tracing::ContextLayer` makes the
//!   innermost entered span the context, with no other change to the program.
//!
//! Labels are interned once and never freed; the number of distinct labels
//! is capped ([`set_limit`], default [`DEFAULT_LIMIT`]): labels past the cap
//! share one context, [`OTHER_CONTEXTS`], which every report shows.

#![forbid(unsafe_code)]

use crate::hot::control as hot;
use hashbrown::HashMap;
use once_cell::sync::Lazy;
use parking_lot::RwLock;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context as TaskContext, Poll};

/// The label of the context that labels past the cap share.
pub const OTHER_CONTEXTS: &str = "[other contexts]";

/// Distinct context labels kept by default.
pub const DEFAULT_LIMIT: usize = 1024;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

/// Interned labels: id `i + 1` is `labels[i]`; id 0 is "no context".
struct Table {
    labels: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
    /// The id of [`OTHER_CONTEXTS`], once the cap was reached.
    other: Option<u32>,
}

static TABLE: Lazy<RwLock<Table>> =
    Lazy::new(|| RwLock::new(Table { labels: Vec::new(), ids: HashMap::new(), other: None }));

/// An interned context: cheap to copy and to enter again and again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextId(u32);

impl ContextId {
    /// The context of `label`, interned on first use. Past the cap, the
    /// shared [`OTHER_CONTEXTS`] context.
    pub fn new(label: &str) -> ContextId {
        let _ignore = hot::ignore();
        if let Some(&id) = TABLE.read().ids.get(label) {
            return ContextId(id);
        }
        let mut t = TABLE.write();
        if let Some(&id) = t.ids.get(label) {
            return ContextId(id);
        }
        let named = t.labels.len() - usize::from(t.other.is_some());
        if named >= LIMIT.load(Relaxed) || t.labels.len() as u32 >= hot::MAX_CONTEXT {
            if let Some(other) = t.other {
                return ContextId(other);
            }
            let id = push(&mut t, OTHER_CONTEXTS);
            t.other = Some(id);
            return ContextId(id);
        }
        ContextId(push(&mut t, label))
    }

    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn raw(self) -> u32 {
        self.0
    }

    /// The label.
    pub fn label(self) -> String {
        label(self.0).unwrap_or_default()
    }
}

fn push(t: &mut Table, label: &str) -> u32 {
    t.labels.push(label.into());
    let id = t.labels.len() as u32;
    t.ids.insert(label.into(), id);
    id
}

/// Caps the number of distinct context labels (at least 1); labels past it
/// share [`OTHER_CONTEXTS`]. Labels already interned stay.
pub fn set_limit(labels: usize) {
    LIMIT.store(labels.max(1), Relaxed);
}

/// How many distinct contexts are interned, [`OTHER_CONTEXTS`] included.
pub fn count() -> usize {
    let _ignore = hot::ignore();
    TABLE.read().labels.len()
}

/// The label of context id `id` (`None` for 0, no context).
pub(crate) fn label(id: u32) -> Option<String> {
    if id == 0 {
        return None;
    }
    let _ignore = hot::ignore();
    TABLE.read().labels.get(id as usize - 1).map(|l| l.to_string())
}

/// The current thread's context label, if any.
pub fn current() -> Option<String> {
    label(hot::current_context())
}

/// Restores the previous context when dropped (see [`enter`]).
#[must_use = "the context ends when the guard is dropped"]
#[derive(Debug)]
pub struct ContextGuard {
    prev: u32,
    /// Entered on this thread: not `Send`.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        hot::set_context(self.prev);
    }
}

/// Makes `label` this thread's context until the guard is dropped; the
/// previous context comes back then (contexts nest).
///
/// ```
/// let _ctx = leaktrace::context::enter("nightly-compaction");
/// // blocks allocated here on this thread are recorded under it
/// ```
pub fn enter(label: &str) -> ContextGuard {
    enter_id(ContextId::new(label))
}

/// Like [`enter`], with an interned context (no lookup).
pub fn enter_id(id: ContextId) -> ContextGuard {
    ContextGuard { prev: hot::set_context(id.0), _not_send: std::marker::PhantomData }
}

/// Sets the context for the current thread and returns the previous id, for
/// integrations that keep their own stack (the tracing layer).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn swap(id: u32) -> u32 {
    hot::set_context(id)
}

/// A future that runs under a context each time it is polled (see [`scope`]).
#[derive(Debug)]
pub struct Scoped<F> {
    id: ContextId,
    inner: F,
}

// `scope` boxes the future, so `Scoped` is always `Unpin` and polls it
// without pin projection (and without unsafe).
impl<F: Future + Unpin> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _ctx = enter_id(this.id);
        Pin::new(&mut this.inner).poll(cx)
    }
}

/// Runs `future` under the context `label`: the context is set while the
/// future is polled, on whatever thread polls it, and the thread's previous
/// context comes back between polls.
///
/// ```
/// # async fn handle() {}
/// # async fn serve() {
/// leaktrace::context::scope("POST /{key}", handle()).await;
/// # }
/// ```
pub fn scope<F: Future>(label: &str, future: F) -> Scoped<Pin<Box<F>>> {
    Scoped { id: ContextId::new(label), inner: Box::pin(future) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_nests_and_restores() {
        assert_eq!(current(), None);
        {
            let _a = enter("outer");
            assert_eq!(current().as_deref(), Some("outer"));
            {
                let _b = enter("inner");
                assert_eq!(current().as_deref(), Some("inner"));
            }
            assert_eq!(current().as_deref(), Some("outer"));
        }
        assert_eq!(current(), None);
        assert_eq!(ContextId::new("outer"), ContextId::new("outer"));
        assert_eq!(ContextId::new("outer").label(), "outer");
    }

    #[test]
    fn a_guard_keeps_a_context_set_inside_it() {
        let g = hot::ignore();
        let c = enter("under a guard");
        drop(g);
        assert_eq!(current().as_deref(), Some("under a guard"));
        drop(c);
        assert_eq!(current(), None);
    }
}
