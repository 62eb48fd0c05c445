//! Every scenario, run by the binary as a user would. For each leaky
//! variant, the first site of the diff (first -> last snapshot) and of the
//! trend, judged `steady`, is the line its source marks `// LEAK: <name>`,
//! and that site's growth grows with the run's length. For each fixed
//! variant, over the same run, no site grows by more than [`FIXED_BOUND`]
//! and none is `steady`.
//!
//! Runs are counted in steps (`--seconds` / `--interval-ms`), and the
//! scenario clock ticks once per step, so the amounts do not depend on the
//! machine's speed.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// The most any site of a fixed variant may grow from `start` to the last
/// step: tokio grows a few structures lazily (a channel's second block, a
/// run queue), a KiB or two at a time. Every leaky variant leaks at least
/// 16 KiB per step, over 190 KiB in the same run.
const FIXED_BOUND: i64 = 8 * 1024;

/// The pause per step in these runs; `--seconds` 0.3 is 6 steps, 0.6 is 12.
const INTERVAL_MS: &str = "50";
const SHORT: (&str, usize) = ("0.3", 6);
const LONG: (&str, usize) = ("0.6", 12);

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `scenario NAME` into `out` and checks the files it wrote.
fn run(name: &str, fixed: bool, (seconds, steps): (&str, usize), out: &Path) -> (Value, Value, String) {
    let mut args = vec!["scenario", name, "--seconds", seconds, "--interval-ms", INTERVAL_MS];
    if fixed {
        args.push("--fixed");
    }
    let out_arg = arg(out);
    args.extend(["--out", &out_arg]);
    let run = probe(&args);
    let stdout = run.ok().to_string();
    let snapshots: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot-") && n.ends_with(".json"))
        .collect();
    assert_eq!(snapshots.len(), steps + 1, "start + one per step: {snapshots:?}");
    let diff = read(&out.join("diff.json"));
    let trend = read(&out.join("trend.json"));
    assert_eq!(diff["format"], "leaktrace.diff.v1");
    assert_eq!(trend["format"], "leaktrace.trend.v1");
    assert_eq!(diff["from"]["label"], "start");
    assert_eq!(diff["to"]["label"], format!("step {steps}"));
    assert_eq!(trend["snapshots"].as_array().unwrap().len(), steps + 1);
    (diff, trend, stdout)
}

fn leaky(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let source = scenario_source(name);
    let marker = format!("LEAK: {name}");
    let line = marker_line(&source, &marker);
    let file = format!("src/scenarios/{name}.rs");
    let mut grew = Vec::new();
    for (len, sub) in [(SHORT, "short"), (LONG, "long")] {
        let out = tmp.path().join(sub);
        let (diff, trend, stdout) = run(name, false, len, &out);
        let top = &diff["sites"][0];
        assert!(is_site(&top["location"], &file, line), "diff #1 is {file}:{line}, got {top:#}");
        assert_eq!(top["rank"], 1);
        let size_diff = top["size_diff"].as_i64().unwrap();
        assert!(size_diff > 0, "{top:#}");
        let t = &trend["sites"][0];
        assert!(is_site(&t["location"], &file, line), "trend #1 is {file}:{line}, got {t:#}");
        assert_eq!(t["verdict"], "steady", "{t:#}");
        assert!(t["slope_bytes_per_sec"].as_f64().unwrap() > 0.0);
        assert!(stdout.contains("result: LEAK") && stdout.contains(&format!("// {marker}")), "{stdout}");
        // `trend DIR` on the run's directory (diff.json and trend.json
        // skipped) agrees with the trend the run wrote.
        let again = probe(["trend", &arg(&out), "--format", "json", "--top", "1"]).json();
        assert!(is_site(&again["sites"][0]["location"], &file, line), "{again:#}");
        assert_eq!(again["sites"][0]["verdict"], "steady");
        grew.push(size_diff);
    }
    // Twice the steps, about twice the leak (connection_cycle's grows faster still).
    assert!(grew[1] as f64 >= 1.6 * grew[0] as f64, "{name}: size_diff {grew:?} should grow with the run");
    assert!(grew[1] > 20 * FIXED_BOUND, "{name}: the leak ({}) dwarfs the fixed bound", grew[1]);
}

fn fixed(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (diff, trend, stdout) = run(name, true, LONG, &tmp.path().join("fixed"));
    for s in diff["sites"].as_array().unwrap() {
        assert!(s["size_diff"].as_i64().unwrap() <= FIXED_BOUND, "{name} --fixed: a site grew past the bound: {s:#}");
    }
    for s in trend["sites"].as_array().unwrap() {
        assert_ne!(s["verdict"], "steady", "{name} --fixed: a steady site: {s:#}");
    }
    assert!(stdout.contains("result: no steady growth"), "{stdout}");
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        mod leaky {
            $(#[test] fn $name() { super::leaky(stringify!($name)); })*
        }
        mod fixed {
            $(#[test] fn $name() { super::fixed(stringify!($name)); })*
        }
        #[test]
        fn every_scenario_is_tested() {
            let listed = probe(["scenario", "--list"]);
            let names: Vec<&str> = listed.ok().lines().filter(|l| !l.starts_with(' ') && !l.is_empty() && !l.starts_with("run one"))
                .map(|l| l.split_whitespace().next().unwrap()).collect();
            assert_eq!(names, [$(stringify!($name)),*]);
        }
    };
}

scenario_tests!(
    background_tasks,
    worker_cache,
    connection_cycle,
    partial_stream,
    task_registry,
    event_listeners,
    unbounded_queue,
    bursty_log,
    churn_buffer,
);
