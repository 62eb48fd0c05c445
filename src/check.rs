//! Leak assertions for tests: [`LeakCheck`] and [`assert_no_leaks!`](crate::assert_no_leaks).
//!
//! Two scopes:
//!
//! - **Thread** ([`LeakCheck::begin_thread`]): exactly the blocks that the
//!   checking thread allocates after `begin` and that are still live at
//!   `finish`, wherever they were freed or not. Other threads do not count,
//!   so it works under `cargo test`'s parallel test threads. It misses what
//!   other threads allocate on the test's behalf: a thread or tokio task the
//!   test spawns, a thread pool, a multi-thread runtime's workers. A block
//!   allocated before `begin` and reallocated (grown) by this thread after it
//!   counts as allocated after `begin`; a check nested inside another on the
//!   same thread hides its blocks from the outer one.
//! - **Process** ([`LeakCheck::begin`]): exactly the blocks that any thread
//!   allocates after `begin` and that are still live at `finish` (each block
//!   recorded while the check is open carries the check's generation).
//!   Other tests running in parallel in the same binary are counted too:
//!   give a process-wide check its own test binary (one `#[test]` per file)
//!   or run with `--test-threads=1`.
//!
//! Either way, lazily created state (a thread-local, a `OnceLock`) counts
//! when it is first created inside the check: run the code once before
//! `begin`. So does output printed inside the check while `cargo test`
//! captures it (the harness keeps it). Restarting tracing (`start`,
//! `clear_traces`) during a check forgets what it had counted.

#![forbid(unsafe_code)]

use crate::hot::control::StackId;
use crate::hot::control::{
    begin_process_scope, begin_thread_scope, end_process_scope, end_thread_scope, live_in_thread_scope,
    live_since_generation, ScopeId,
};
use crate::{Config, Frame};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

use crate::control::ensure_tracing;

/// Which blocks a [`LeakCheck`] counts (see the module docs for what each
/// one misses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckScope {
    /// Blocks allocated by every thread.
    Process,
    /// Blocks allocated by the thread that called `begin`.
    Thread,
}

impl CheckScope {
    fn describe(self) -> &'static str {
        match self {
            CheckScope::Process => "by any thread",
            CheckScope::Thread => "by this thread",
        }
    }
}

/// Settings for a [`LeakCheck`]: scope, tolerance, and the tracing
/// configuration used when tracing is off.
#[derive(Clone, Debug)]
pub struct LeakCheckBuilder {
    scope: CheckScope,
    tolerance_bytes: u64,
    tolerance_blocks: u64,
    config: Option<Config>,
}

impl LeakCheckBuilder {
    /// Count only blocks allocated by the calling thread (the default for
    /// the builder and for [`assert_no_leaks!`](crate::assert_no_leaks)).
    pub fn thread(mut self) -> Self {
        self.scope = CheckScope::Thread;
        self
    }

    /// Count blocks allocated by every thread.
    pub fn process(mut self) -> Self {
        self.scope = CheckScope::Process;
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: CheckScope) -> Self {
        self.scope = scope;
        self
    }

    /// Live bytes allowed at `finish` (default 0). The check fails when the
    /// bytes exceed this or the blocks exceed [`tolerance_blocks`](Self::tolerance_blocks).
    pub fn tolerance_bytes(mut self, bytes: u64) -> Self {
        self.tolerance_bytes = bytes;
        self
    }

    /// Live blocks allowed at `finish` (default 0).
    pub fn tolerance_blocks(mut self, blocks: u64) -> Self {
        self.tolerance_blocks = blocks;
        self
    }

    /// The configuration to start tracing with when it is off (default:
    /// `Config::default()`, exact mode). Ignored when tracing is on.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Starts tracing if it is off, then starts counting.
    pub fn begin(self) -> LeakCheck {
        let _ignore = crate::hot::control::ignore();
        let config = self.config;
        ensure_tracing(|| config.unwrap_or_default());
        if crate::settings().mode != crate::Mode::Full {
            log::warn!("leaktrace: LeakCheck in sampled mode sees only the sampled blocks; use exact mode for tests");
        }
        let state = match self.scope {
            CheckScope::Thread => {
                let (id, prev) = begin_thread_scope();
                State::Thread { id, prev }
            }
            CheckScope::Process => State::Process { generation: begin_process_scope() },
        };
        LeakCheck {
            state: Some(state),
            scope: self.scope,
            tolerance_bytes: self.tolerance_bytes,
            tolerance_blocks: self.tolerance_blocks,
            _not_send: PhantomData,
        }
    }
}

enum State {
    Thread { id: ScopeId, prev: ScopeId },
    Process { generation: u32 },
}

/// Fails a test when memory allocated during it is still live at its end.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
///
/// #[test]
/// fn parse_does_not_leak() {
///     let check = leaktrace::LeakCheck::begin_thread();
///     let doc = String::from("{\"a\": 1}");
///     drop(doc);
///     check.finish().unwrap(); // Err(LeakReport) names file:line of any leak
/// }
/// ```
///
/// Tracing is started (exact mode) if it is off, and left on. A check is
/// tied to the thread that began it (it is not `Send`); dropping it without
/// `finish` just ends it.
#[must_use = "call finish() to learn whether anything leaked"]
pub struct LeakCheck {
    state: Option<State>,
    scope: CheckScope,
    tolerance_bytes: u64,
    tolerance_blocks: u64,
    /// A thread scope lives in the thread's state: not `Send`.
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for LeakCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakCheck")
            .field("scope", &self.scope)
            .field("tolerance_bytes", &self.tolerance_bytes)
            .field("tolerance_blocks", &self.tolerance_blocks)
            .finish()
    }
}

impl LeakCheck {
    /// A process-wide check: blocks allocated by any thread after now and
    /// still live at `finish` (see the module docs for its limits; under
    /// parallel tests use [`LeakCheck::begin_thread`]).
    pub fn begin() -> LeakCheck {
        LeakCheck::builder().process().begin()
    }

    /// A check of the calling thread only: exactly the blocks it allocates
    /// after now that are still live at `finish`.
    pub fn begin_thread() -> LeakCheck {
        LeakCheck::builder().thread().begin()
    }

    /// Settings: scope (thread by default), tolerance, tracing configuration.
    pub fn builder() -> LeakCheckBuilder {
        LeakCheckBuilder { scope: CheckScope::Thread, tolerance_bytes: 0, tolerance_blocks: 0, config: None }
    }

    /// What this check counts.
    pub fn scope(&self) -> CheckScope {
        self.scope
    }

    /// Live bytes and blocks counted so far, without resolving symbols:
    /// `(bytes, blocks)`.
    pub fn live(&self) -> (u64, u64) {
        let _ignore = crate::hot::control::ignore();
        self.live_stacks().iter().fold((0, 0), |(b, n), &(_, bytes, blocks)| (b + bytes, n + blocks))
    }

    fn live_stacks(&self) -> Vec<(StackId, u64, u64)> {
        match &self.state {
            Some(State::Thread { id, .. }) => live_in_thread_scope(*id),
            Some(State::Process { generation }) => live_since_generation(*generation),
            None => Vec::new(),
        }
    }

    /// Ends the check: `Err` when more than the tolerance is still live,
    /// with the sites ranked (largest first) and named by file and line.
    pub fn finish(mut self) -> Result<(), LeakReport> {
        let _ignore = crate::hot::control::ignore();
        let stacks = self.live_stacks();
        self.end();
        let (bytes, blocks) = stacks.iter().fold((0, 0), |(b, n), &(_, sb, sn)| (b + sb, n + sn));
        if bytes <= self.tolerance_bytes && blocks <= self.tolerance_blocks {
            return Ok(());
        }
        Err(LeakReport {
            scope: self.scope,
            bytes,
            blocks,
            tolerance_bytes: self.tolerance_bytes,
            tolerance_blocks: self.tolerance_blocks,
            sites: group_sites(&stacks),
        })
    }

    fn end(&mut self) {
        let _ignore = crate::hot::control::ignore();
        match self.state.take() {
            Some(State::Thread { id, prev }) => end_thread_scope(id, prev),
            Some(State::Process { .. }) => end_process_scope(),
            None => {}
        }
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        self.end();
    }
}

/// Resolves stacks and groups them by call site (file and line).
fn group_sites(stacks: &[(StackId, u64, u64)]) -> Vec<LeakSite> {
    type Key = (String, u32, String, Option<String>);
    let mut by_site: HashMap<Key, (LeakSite, u64)> = HashMap::new();
    for &(id, bytes, blocks) in stacks {
        let tb = crate::snapshot::traceback_of_stack(id);
        let context = crate::snapshot::context_of_stack(id);
        let loc = tb.first().cloned().unwrap_or_else(|| Frame::new(crate::symbolize::UNKNOWN, "", 0));
        // Sites under different contexts stay apart, as in snapshots.
        let func = if loc.file.is_empty() { loc.function.clone() } else { String::new() };
        let key = (loc.file.clone(), loc.line, func, context.clone());
        let e = by_site.entry(key).or_insert_with(|| {
            (LeakSite { rank: 0, location: loc, traceback: Vec::new(), bytes: 0, blocks: 0, context }, 0)
        });
        e.0.bytes += bytes;
        e.0.blocks += blocks;
        if e.0.traceback.is_empty() || bytes > e.1 {
            e.0.location = tb[0].clone();
            e.0.traceback = tb.to_vec();
            e.1 = bytes;
        }
    }
    let mut sites: Vec<LeakSite> = by_site.into_values().map(|(s, _)| s).collect();
    sites.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.blocks.cmp(&a.blocks))
            .then_with(|| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)))
    });
    for (i, s) in sites.iter_mut().enumerate() {
        s.rank = i + 1;
    }
    sites
}

/// One call site of a failed [`LeakCheck`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakSite {
    /// 1 for the site with the most bytes left live.
    pub rank: usize,
    /// The call site: file, line and function.
    pub location: Frame,
    /// The traceback of its largest stack, from the site outward.
    pub traceback: Vec<Frame>,
    /// Bytes still live.
    pub bytes: u64,
    /// Blocks still live.
    pub blocks: u64,
    /// The context the blocks were allocated under (see [`crate::context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// What a failed [`LeakCheck`] found: the blocks allocated after `begin`
/// and still live at `finish`, by call site, largest first. Its `Display`
/// is the message a failing test prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakReport {
    /// What the check counted.
    pub scope: CheckScope,
    /// Bytes still live.
    pub bytes: u64,
    /// Blocks still live.
    pub blocks: u64,
    /// The bytes allowed.
    pub tolerance_bytes: u64,
    /// The blocks allowed.
    pub tolerance_blocks: u64,
    /// The sites, ranked.
    pub sites: Vec<LeakSite>,
}

/// Frames of the traceback printed under each of the first sites.
const TRACEBACK_LINES: usize = 6;
/// Sites printed with their traceback; the rest get one line each.
const DETAILED_SITES: usize = 5;

impl std::fmt::Display for LeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "leak check failed: {} bytes in {} block{} allocated {} since LeakCheck::begin are still live \
             (tolerance: {} bytes, {} blocks), at {} site{}:",
            self.bytes,
            self.blocks,
            if self.blocks == 1 { "" } else { "s" },
            self.scope.describe(),
            self.tolerance_bytes,
            self.tolerance_blocks,
            self.sites.len(),
            if self.sites.len() == 1 { "" } else { "s" },
        )?;
        for s in &self.sites {
            write!(f, "  {}. {}", s.rank, crate::site_label(&s.location, s.context.as_deref()))?;
            if !s.location.function.is_empty() && !s.location.file.is_empty() {
                write!(f, " in {}", s.location.function)?;
            }
            writeln!(f, ": {} bytes in {} block{}", s.bytes, s.blocks, if s.blocks == 1 { "" } else { "s" })?;
            if s.rank <= DETAILED_SITES {
                // The callers in the program's own code: the standard
                // library's and the test harness's frames say nothing here.
                let rules = crate::SiteRules::default();
                let callers = s
                    .traceback
                    .iter()
                    .skip(1)
                    .filter(|fr| crate::symbolize::classify(fr, &rules) == crate::symbolize::FrameKind::Own);
                for fr in callers.take(TRACEBACK_LINES) {
                    writeln!(f, "       called from {fr} in {}", fr.function)?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

/// Runs the statements given and panics with the [`LeakReport`] if memory
/// they allocated on this thread is still live afterwards (a thread-scope
/// [`LeakCheck`]). Values the statements produce are dropped before the
/// check.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
///
/// #[test]
/// fn cache_evicts() {
///     leaktrace::assert_no_leaks! {
///         let mut v = Vec::new();
///         v.push(1u8);
///     }
/// }
/// ```
#[macro_export]
macro_rules! assert_no_leaks {
    ($($body:tt)*) => {{
        let __leaktrace_check = $crate::LeakCheck::begin_thread();
        {
            let _ = { $($body)* };
        }
        if let ::std::result::Result::Err(report) = __leaktrace_check.finish() {
            ::std::panic!("{}", report);
        }
    }};
}
