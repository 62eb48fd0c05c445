//! The leak patterns of the asyncio guide (`shared/seeds/`, "Understanding
//! AsyncIO Memory Leaks"), written in async Rust, each with its fix.
//!
//! One module per pattern, each a small program meant to be read: its doc
//! comment ties it to the guide, explains the leak in tokio's terms and the
//! fix, and says which line leaktrace ranks first and why. That line carries
//! a `// LEAK: <name>` comment, which the tests and the run summary look for.
//!
//! | scenario           | the guide                              | the fix                                  |
//! |--------------------|----------------------------------------|------------------------------------------|
//! | `background_tasks` | `leaky_background_task` (step 1)       | a `JoinSet` aborted and awaited          |
//! | `worker_cache`     | `leaky_worker` (pattern 1)             | batch, then clear                        |
//! | `connection_cycle` | `LeakyConnection` (pattern 2)          | `Weak`, and `close()` cancels the timer  |
//! | `partial_stream`   | `leaky_generator` (pattern 3)          | drop the stream in a scope               |
//! | `task_registry`    | global task list (pitfall 1)           | prune on completion                      |
//! | `event_listeners`  | listeners never removed (pitfall 2)    | call the remover `on()` returns          |
//! | `unbounded_queue`  | unbounded queue (pitfall 3)            | a bounded channel: backpressure          |
//! | `bursty_log`       | not in the guide: a leak in bursts     | write each record out, keep nothing      |
//! | `churn_buffer`     | not in the guide: a leak under churn   | retry, then drop, like any other request |
//!
//! The last two are leaks that do not grow at every snapshot: one grows in
//! bursts (every third step), one under the noise of many buffers in flight
//! on its own line. `leaktrace::trend` judges them by a rank test over the
//! whole series, so both come out `steady`.
//!
//! How a run goes (see [`harness`]): a current-thread tokio runtime, tracing
//! on, one warm-up step, a snapshot `start`, then the pattern's work one step
//! at a time with a snapshot after each (`step 1`, `step 2`, ...). Steps are
//! counted, not timed: background work waits on the scenario [`Clock`],
//! which ticks once per step, so a run of N steps allocates the same every
//! time and the tests never depend on the machine's speed.

pub mod harness;

pub mod background_tasks;
pub mod bursty_log;
pub mod churn_buffer;
pub mod connection_cycle;
pub mod event_listeners;
pub mod partial_stream;
pub mod task_registry;
pub mod unbounded_queue;
pub mod worker_cache;

pub use harness::{run_and_write, tracked, Clock, Plan, Steps};

use std::future::Future;
use std::pin::Pin;

/// A scenario's run, borrowing the steps it is driven by.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// The leaky code as the guide writes it, or the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The pattern as it leaks.
    Leaky,
    /// The pattern with the guide's fix.
    Fixed,
}

impl Variant {
    /// `"leaky"` or `"fixed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Leaky => "leaky",
            Variant::Fixed => "fixed",
        }
    }
}

/// One leak pattern.
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// What leaks, in one line.
    pub title: &'static str,
    /// Where the guide shows it.
    pub guide: &'static str,
    /// The fix, in one line.
    pub fix: &'static str,
    /// Its source file, as `file!()` gives it.
    pub source: &'static str,
    /// Its source text, to find the marked line.
    pub text: &'static str,
    /// Runs the variant, calling `steps.next()` until it returns false.
    pub run: fn(Variant, &mut Steps) -> ScenarioFuture<'_>,
}

impl Scenario {
    /// The comment marking the line that leaks.
    pub fn marker(&self) -> String {
        format!("LEAK: {}", self.name)
    }

    /// The 1-based line carrying the marker, if exactly one does.
    pub fn marker_line(&self) -> Option<u32> {
        let marker = self.marker();
        let mut hits =
            self.text.lines().enumerate().filter(|(_, l)| l.contains(&marker) && !l.trim_start().starts_with("//"));
        let first = hits.next()?;
        hits.next().is_none().then_some(first.0 as u32 + 1)
    }
}

/// Every scenario, in the guide's order, then the two that are not in it.
pub const ALL: &[Scenario] = &[
    background_tasks::SCENARIO,
    worker_cache::SCENARIO,
    connection_cycle::SCENARIO,
    partial_stream::SCENARIO,
    task_registry::SCENARIO,
    event_listeners::SCENARIO,
    unbounded_queue::SCENARIO,
    bursty_log::SCENARIO,
    churn_buffer::SCENARIO,
];

/// The scenarios' names, for clap.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|s| s.name).collect()
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// `scenario --list`.
pub fn list_text() -> String {
    let width = ALL.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in ALL {
        out.push_str(&format!("{:width$}  {}\n", s.name, s.title));
        out.push_str(&format!("{:width$}  guide: {}\n", "", s.guide));
        out.push_str(&format!("{:width$}  fix:   {}\n", "", s.fix));
    }
    out.push_str("\nrun one: alloc-probe scenario NAME [--fixed] [--seconds S] [--out DIR]\n");
    out
}

/// Locks a std mutex, taking it over if a panicking holder poisoned it
/// (the data is plain buffers; nothing is left half-updated that matters).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_marks_exactly_one_line() {
        for s in ALL {
            assert!(s.marker_line().is_some(), "{}: no single `// {}` line", s.name, s.marker());
            assert!(s.source.ends_with(&format!("src/scenarios/{}.rs", s.name)), "{}", s.source);
        }
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
