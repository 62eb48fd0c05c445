//! `fork()`: the child starts untraced.
//!
//! A multi-threaded program that forks gets a child with one thread and
//! every lock exactly as it was at the fork: a block-shard or stack-table
//! lock that another thread held then stays locked forever in the child,
//! and the first hook that takes it hangs (seen: a futex wait on the first
//! allocation of the child). The tables may also be half-updated. So the
//! child does not trace at all: a `pthread_atfork` child handler turns the
//! hooks off before the child's code runs, and marks the process as a
//! forked child, in which `start()` and snapshots do nothing. Hooks that
//! are off take no lock, so the child allocates and frees through the inner
//! allocator alone. A child that calls `exec` starts afresh anyway.
//!
//! The handler stores two atomics: async-signal-safe, as a child handler
//! of a multi-threaded fork must be.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Once;

/// Set in the child of a `fork()` made after tracing was first started.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether this process is the forked child of a traced process.
pub(crate) fn is_forked_child() -> bool {
    FORKED.load(Relaxed)
}

extern "C" fn in_child() {
    super::STATE.store(super::OFF, Relaxed);
    FORKED.store(true, Relaxed);
}

/// Registers the child handler, once per process (from `start()`).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that lives for the whole
        // program and only stores atomics; null prepare/parent handlers are
        // allowed.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            log::warn!("leaktrace: pthread_atfork failed ({rc}); a forked child may hang on a tracker lock");
        }
    });
}
