//! Runs a scenario under tracing, one counted step at a time, and writes
//! what it saw.
//!
//! The runtime is tokio's current-thread one: the patterns do not need
//! threads to leak, and one thread makes the order of work within a step
//! the same on every run. After each step the driver advances the [`Clock`]
//! (every task waiting on it does its per-tick work), pauses for the
//! interval so that all of that work runs to its next wait, and takes a
//! snapshot. The snapshots' own memory is not traced.

use super::{Scenario, Variant};
use crate::render;
use anyhow::Context;
use leaktrace::{Config, GroupBy, Snapshot};
use std::fmt::Write;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// How long a run is.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Steps after the `start` snapshot, each followed by a snapshot.
    pub steps: usize,
    /// The pause after each step.
    pub interval: Duration,
}

impl Plan {
    /// `steps` if given, else as many steps of `interval_ms` as fit in
    /// `seconds` (at least 2, so that a trend has two intervals).
    pub fn new(steps: Option<u32>, seconds: f64, interval_ms: u64) -> Plan {
        let interval_ms = interval_ms.max(1);
        let steps = match steps {
            Some(n) => n as usize,
            None => ((seconds * 1000.0 / interval_ms as f64).round() as usize).clamp(2, 10_000),
        };
        Plan { steps, interval: Duration::from_millis(interval_ms) }
    }
}

/// The scenario clock: ticks once per step. Background work awaits
/// [`Clock::tick`] where the guide's code awaits `asyncio.sleep(...)`, so
/// it does the same amount of work per step however fast the machine is.
#[derive(Debug)]
pub struct Clock {
    rx: watch::Receiver<u64>,
}

impl Clock {
    /// Waits for the next tick after this clock was made (or last ticked).
    /// Once the run is over it never returns: the task just waits, as a
    /// sleeping task would, until the runtime is dropped.
    pub async fn tick(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Clone for Clock {
    /// A clock whose first `tick()` waits for the next tick, even when this
    /// one has ticks it has not yet waited for.
    fn clone(&self) -> Clock {
        let mut rx = self.rx.clone();
        rx.borrow_and_update();
        Clock { rx }
    }
}

/// Drives a run: `while steps.next().await { one step of work }`.
pub struct Steps {
    plan: Plan,
    /// Whether the warm-up step has begun.
    warmed_up: bool,
    ticks: watch::Sender<u64>,
    snapshots: Vec<Snapshot>,
}

impl Steps {
    fn new(plan: Plan) -> Steps {
        let (ticks, _) = watch::channel(0);
        Steps {
            // Room for every snapshot, reserved before tracing starts so
            // that this vector never shows up in them.
            snapshots: Vec::with_capacity(plan.steps + 1),
            plan,
            warmed_up: false,
            ticks,
        }
    }

    /// A handle on the scenario clock, for background tasks.
    pub fn clock(&self) -> Clock {
        Clock { rx: self.ticks.subscribe() }
    }

    /// Ends the current step and says whether another one follows.
    ///
    /// The first call lets the scenario's setup settle and starts a warm-up
    /// step; the second ends it and takes `start`; each later one takes
    /// `step N`. Ending a step ticks the clock, then pauses so that the
    /// tasks it woke run until they wait again. The warm-up puts one step's
    /// working set (a request's tasks, a batch's buffers, tokio's lazily
    /// grown queues) in the baseline, as a service is measured after it has
    /// warmed up: what grows from `start` on is what a step leaves behind.
    pub async fn next(&mut self) -> bool {
        if self.warmed_up {
            self.ticks.send_modify(|tick| *tick += 1);
        }
        // Long enough for the woken tasks (and those they wake in turn) to
        // run until they wait again: a step's work is small.
        tokio::time::sleep(self.plan.interval).await;
        if !self.warmed_up {
            self.warmed_up = true;
            return true;
        }
        if self.snapshots.is_empty() {
            // Resolving a stack to file and line takes time the first time
            // it is seen (a fraction of a second for a whole warm-up's
            // worth). A throwaway snapshot does it here, so that it does not
            // stretch the first interval and skew the growth rates.
            drop(leaktrace::take_snapshot("symbols"));
        }
        // The label is the harness's, not the pattern's: keep it out of the traces.
        let label = leaktrace::untraced(|| match self.snapshots.len() {
            0 => "start".to_string(),
            n => format!("step {n}"),
        });
        let snapshot = leaktrace::take_snapshot(&label);
        leaktrace::untraced(|| self.snapshots.push(snapshot));
        self.snapshots.len() <= self.plan.steps
    }
}

/// `future`, counted as a live task at the caller's line while it runs (as
/// `leaktrace::tokio::spawn` does for `tokio::spawn`), for spawners such as
/// `JoinSet::spawn`.
#[track_caller]
pub fn tracked<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let guard = leaktrace::track_task();
    async move {
        let _guard = guard;
        future.await
    }
}

/// Runs one variant of `scenario` for `plan`, returning its snapshots.
pub fn run(scenario: &Scenario, variant: Variant, plan: &Plan) -> anyhow::Result<Vec<Snapshot>> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().context("starting a tokio runtime")?;
    let mut steps = Steps::new(plan.clone());
    let run = (scenario.run)(variant, &mut steps);
    leaktrace::start(Config::default());
    runtime.block_on(run);
    leaktrace::stop();
    // Dropping the runtime ends the tasks a leaky variant left behind.
    drop(runtime);
    Ok(steps.snapshots)
}

/// The files of a run in its directory.
const DIFF_FILE: &str = "diff.json";
const TREND_FILE: &str = "trend.json";
const REPORT_FILE: &str = "report.txt";

fn snapshot_file(index: usize, label: &str) -> String {
    format!("snapshot-{index:03}-{}.json", label.replace(' ', "-"))
}

/// Runs `scenario`, writes its snapshots, the diff first -> last and the
/// trend into `dir` (replacing an earlier run's files there), and returns
/// the report it also writes as `report.txt`.
pub fn run_and_write(
    scenario: &Scenario,
    variant: Variant,
    plan: &Plan,
    dir: &Path,
    top: usize,
) -> anyhow::Result<String> {
    // Fail on a bad --out before spending the run.
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    remove_earlier_run(dir)?;
    let snapshots = run(scenario, variant, plan)?;
    let (Some(first), Some(last)) = (snapshots.first(), snapshots.last()) else {
        anyhow::bail!("{}: scenario {} took no snapshots", scenario.source, scenario.name);
    };
    let diff = last.compare_to(first, GroupBy::Line);
    let trend = leaktrace::trend(&snapshots, GroupBy::Line);
    for (i, snap) in snapshots.iter().enumerate() {
        snap.write_json(dir.join(snapshot_file(i, &snap.label))).map_err(crate::lib_error)?;
    }
    diff.write_json(dir.join(DIFF_FILE)).map_err(crate::lib_error)?;
    trend.write_json(dir.join(TREND_FILE)).map_err(crate::lib_error)?;

    let mut out = String::new();
    let _ = writeln!(out, "scenario {} ({}): {}", scenario.name, variant.as_str(), scenario.title);
    let _ = writeln!(out, "guide:  {}", scenario.guide);
    let _ = writeln!(out, "fix:    {}", scenario.fix);
    let _ = writeln!(out, "source: {}", scenario.source);
    let _ = writeln!(
        out,
        "run:    a warm-up step, then {} steps with a {} ms pause each ({:.2} s from start to the last); {} snapshots\n",
        plan.steps,
        plan.interval.as_millis(),
        diff.elapsed_seconds,
        snapshots.len()
    );
    out.push_str(&render::diff_table(&diff, top));
    out.push('\n');
    out.push_str(&render::trend_table(&trend, top));
    out.push('\n');
    out.push_str(&summary(scenario, &trend, &diff));
    let _ = writeln!(
        out,
        "wrote:  {n} snapshots ({first} .. {last}), {DIFF_FILE}, {TREND_FILE}, {REPORT_FILE} in {dir}",
        n = snapshots.len(),
        first = snapshot_file(0, &first.label),
        last = snapshot_file(snapshots.len() - 1, &last.label),
        dir = dir.display()
    );
    leaktrace::write_atomic(&dir.join(REPORT_FILE), out.as_bytes()).map_err(crate::lib_error)?;
    Ok(out)
}

/// One line: is there a leak, and is it the marked line?
fn summary(scenario: &Scenario, trend: &leaktrace::Trend, diff: &leaktrace::SnapshotDiff) -> String {
    let marked = |f: &leaktrace::Frame| {
        f.file.ends_with(scenario.source.trim_start_matches("./")) && Some(f.line) == scenario.marker_line()
    };
    match trend.steady().next() {
        Some(s) => {
            let note = if marked(&s.location) {
                format!(", the line marked `// {}`", scenario.marker())
            } else {
                String::new()
            };
            format!(
                "result: LEAK: {} grows steadily{note}: {} -> {} ({}), grew in {:.0}% of intervals\n",
                render::site(&s.location),
                render::bytes(s.size_first),
                render::bytes(s.size_last),
                render::rate(s.slope_bytes_per_sec),
                s.grew_fraction * 100.0
            )
        }
        None => {
            let grew = diff.sites.first().filter(|s| s.size_diff > 0);
            match grew {
                Some(s) => format!(
                    "result: no steady growth; the most any site grew first -> last: {} at {}\n",
                    render::signed_bytes(s.size_diff),
                    render::site(&s.location)
                ),
                None => "result: no steady growth; no site grew first -> last\n".to_string(),
            }
        }
    }
}

/// Removes the files an earlier run wrote into `dir` (only those: the
/// directory may hold other things), so that `trend DIR` never mixes runs.
fn remove_earlier_run(dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| dir.display().to_string())?;
    for entry in entries {
        let entry = entry.with_context(|| dir.display().to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = (name.starts_with("snapshot-") && name.ends_with(".json"))
            || name == DIFF_FILE
            || name == TREND_FILE
            || name == REPORT_FILE;
        if ours {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_count_steps() {
        assert_eq!(Plan::new(None, 3.0, 100).steps, 30);
        assert_eq!(Plan::new(None, 0.3, 50).steps, 6);
        assert_eq!(Plan::new(None, 0.01, 100).steps, 2, "at least two intervals");
        assert_eq!(Plan::new(Some(7), 3.0, 100).steps, 7, "--steps wins");
        assert_eq!(Plan::new(None, 86_400.0, 1).steps, 10_000);
        assert_eq!(Plan::new(None, 1.0, 250).interval, Duration::from_millis(250));
    }

    #[test]
    fn snapshot_files_sort_in_order() {
        assert_eq!(snapshot_file(0, "start"), "snapshot-000-start.json");
        assert_eq!(snapshot_file(12, "step 12"), "snapshot-012-step-12.json");
        assert!(snapshot_file(9, "step 9") < snapshot_file(10, "step 10"));
    }
}
