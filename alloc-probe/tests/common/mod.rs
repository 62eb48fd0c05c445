//! Helpers shared by the CLI tests: run the built binary, write snapshot
//! fixtures, find marked lines.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of `alloc-probe` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts a bad-input exit: status 2, one line on stderr that starts
    /// with `alloc-probe: ` and contains every one of `needles`, no panic.
    pub fn assert_bad_input(&self, needles: &[&str]) {
        assert_eq!(self.code, 2, "exit code: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "panicked: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("alloc-probe: "), "prefix: {self:#?}");
        for n in needles {
            assert!(lines[0].contains(n), "stderr should contain {n:?}: {self:#?}");
        }
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:#?}");
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        &self.stdout
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs the binary with `args` in `cwd` (the package root if `None`).
pub fn probe_in<I, S>(cwd: Option<&Path>, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alloc-probe"));
    cmd.args(args).stdin(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("run alloc-probe");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the binary with `args`.
pub fn probe<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    probe_in(None, args)
}

/// A path as an argument.
pub fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// The source of scenario `name`.
pub fn scenario_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scenarios").join(format!("{name}.rs"))
}

/// The 1-based line of `file` that carries `marker` in a trailing comment
/// (doc comments that mention the marker do not count). Exactly one must.
pub fn marker_line(file: &Path, marker: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let hits: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(&format!("// {marker}")) && !l.trim_start().starts_with("//"))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{}: marker {marker:?} on lines {hits:?}", file.display());
    hits[0]
}

/// Whether a recorded site `location` is `file:line`, `file` being a
/// path ending like `suffix` (recorded paths are absolute).
pub fn is_site(location: &Value, suffix: &str, line: u32) -> bool {
    let file = location["file"].as_str().unwrap_or("");
    Path::new(file).ends_with(suffix) && location["line"].as_u64() == Some(line as u64)
}

/// One site of a synthetic snapshot.
pub struct Site {
    pub file: &'static str,
    pub line: u32,
    pub function: &'static str,
}

pub const LEAK: Site = Site { file: "/srv/app/src/sessions.rs", line: 42, function: "app::sessions::Registry::open" };
pub const LOAD: Site = Site { file: "/srv/app/src/config.rs", line: 7, function: "app::config::load_table" };
pub const CHURN: Site = Site { file: "/srv/app/src/pool.rs", line: 88, function: "app::pool::Pool::get" };
pub const FLAT: Site = Site { file: "/srv/app/src/main.rs", line: 12, function: "app::main" };
pub const SHRINK: Site = Site { file: "/srv/app/src/warmup.rs", line: 30, function: "app::warmup::drain" };

/// A `leaktrace.snapshot.v1` document with one trace per `(site, bytes)`,
/// taken `t` seconds after 2026-11-25T00:00:00Z by process `pid`.
pub fn snapshot_json(label: &str, t: u64, pid: u32, sites: &[(&Site, u64)]) -> Value {
    let frames: Vec<Value> =
        sites.iter().map(|(s, _)| json!({"function": s.function, "file": s.file, "line": s.line})).collect();
    let traces: Vec<Value> = sites
        .iter()
        .enumerate()
        .filter(|(_, (_, size))| *size > 0)
        .map(|(i, (_, size))| json!({"size": size, "count": (size / 1024).max(1), "frames": [i]}))
        .collect();
    let total: u64 = sites.iter().map(|(_, s)| s).sum();
    let unix = 1_795_564_800 + t;
    json!({
        "format": "leaktrace.snapshot.v1",
        "label": label,
        "taken_at": format!("2026-11-25T{:02}:{:02}:{:02}.000Z", t / 3600, t % 3600 / 60, t % 60),
        "unix_seconds": unix as f64,
        "monotonic_seconds": 1000.0 + t as f64,
        "pid": pid,
        "mode": "exact",
        "capture": "unwinder",
        "frames_per_trace": 16,
        "totals": {
            "current_bytes": total,
            "peak_bytes": total,
            "blocks": traces.len(),
            "traced_bytes": total,
            "tracker_bytes": 0,
            "untracked_blocks": 0
        },
        "frames": frames,
        "traces": traces,
        "tasks": []
    })
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// The synthetic series: a steady leak (+100 KiB at every snapshot), a
/// one-time load (10 MiB at the second snapshot, then flat), a pool that
/// churns, a flat site and one that shrinks; 8 snapshots 10 s apart.
/// File names are in reverse time order, so only `taken_at` can order them.
pub fn write_series(dir: &Path) -> Vec<PathBuf> {
    const KIB: u64 = 1024;
    let mut paths = Vec::new();
    for i in 0..8u64 {
        let sites = [
            (&LEAK, 100 * KIB * i + KIB),
            (&LOAD, if i == 0 { 0 } else { 10 * 1024 * KIB }),
            (&CHURN, if i % 2 == 0 { 256 * KIB } else { 0 }),
            (&FLAT, 64 * KIB),
            (&SHRINK, 80 * KIB - 10 * KIB * i),
        ];
        let snap = snapshot_json(&format!("s{i}"), 10 * i, 4242, &sites);
        let path = dir.join(format!("snap-{}.json", 7 - i));
        write_json(&path, &snap);
        paths.push(path);
    }
    paths
}
