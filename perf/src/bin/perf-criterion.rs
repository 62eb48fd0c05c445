//! `perf-criterion`: runs the criterion micro-benchmarks of the root crate
//! (`benches/alloc_system.rs`, the System baseline, and
//! `benches/alloc_modes.rs`, TrackingAllocator in each mode) in a default
//! build and with frame pointers, and writes their medians and ratios to
//! System to `reports/criterion.md` (atomically).
//!
//! `cargo run --release -p leaktrace-perf --bin perf-criterion`
//! Writes the medians to `criterion.json` beside it too; `--before FILE`
//! (such a file from a run on an older commit) adds a before/after table.
//! Options: `--builds default,frame-pointers`, `--out DIR`; arguments after
//! `--` go to criterion (e.g. `-- --warm-up-time 0.2 --measurement-time 0.5`
//! for a smoke run).

use leaktrace_perf::meta::{self, Commit, Machine};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const USAGE: &str =
    "perf-criterion [--builds default,frame-pointers] [--out DIR] [--before CRITERION-JSON] [-- CRITERION-ARGS..]";
const FP_FLAGS: &str = "-C force-frame-pointers=yes";
const MODES: [&str; 3] = ["off", "sampled", "exact"];
const SIZES: [&str; 3] = ["16", "1024", "65536"];
/// Lines the benches print about themselves start with this.
const INFO_PREFIX: &str = "LEAKTRACE-BENCH ";

struct Opts {
    builds: Vec<String>,
    out: PathBuf,
    criterion_args: Vec<String>,
    before: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        builds: vec!["default".into(), "frame-pointers".into()],
        out: meta::workspace_root().join("reports"),
        criterion_args: Vec::new(),
        before: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--builds" => {
                let v = it.next().ok_or("--builds needs a value")?;
                o.builds = v.split(',').map(str::to_string).collect();
                if let Some(b) = o.builds.iter().find(|b| *b != "default" && *b != "frame-pointers") {
                    return Err(format!("unknown build {b}"));
                }
            }
            "--out" => o.out = PathBuf::from(it.next().ok_or("--out needs a value")?),
            "--before" => o.before = Some(PathBuf::from(it.next().ok_or("--before needs a value")?)),
            "--" => o.criterion_args.extend(it.by_ref()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// One benchmark's result.
struct Estimate {
    median_ns: f64,
    lower_ns: f64,
    upper_ns: f64,
}

/// What one build's run gave.
struct BuildResult {
    name: String,
    command: String,
    results: BTreeMap<String, Estimate>,
    /// `key=value` pairs the benches printed (capture method per mode, the
    /// cold snapshot).
    info: BTreeMap<String, String>,
}

fn target_dir(root: &Path) -> Result<PathBuf, String> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    v["target_directory"].as_str().map(PathBuf::from).ok_or_else(|| "cargo metadata: no target_directory".into())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Every `new/benchmark.json` under `dir`, with its estimates.
fn collect(dir: &Path, out: &mut BTreeMap<String, Estimate>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|n| n == "new") {
            let read =
                |f: &str| -> Option<Value> { serde_json::from_str(&std::fs::read_to_string(p.join(f)).ok()?).ok() };
            if let (Some(b), Some(est)) = (read("benchmark.json"), read("estimates.json")) {
                let median = &est["median"];
                if let (Some(id), Some(m)) = (b["full_id"].as_str(), median["point_estimate"].as_f64()) {
                    out.insert(
                        id.to_string(),
                        Estimate {
                            median_ns: m,
                            lower_ns: median["confidence_interval"]["lower_bound"].as_f64().unwrap_or(m),
                            upper_ns: median["confidence_interval"]["upper_bound"].as_f64().unwrap_or(m),
                        },
                    );
                }
            }
        } else {
            collect(&p, out);
        }
    }
}

fn run_build(root: &Path, target: &Path, build: &str, criterion_args: &[String]) -> Result<BuildResult, String> {
    let fp = build == "frame-pointers";
    let target_dir = if fp { target.join("perf-fp") } else { target.to_path_buf() };
    let home = target.join("perf-criterion").join(build);
    // Only this tool writes there: start clean so old results cannot leak in.
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let mut args: Vec<String> =
        ["bench", "--bench", "alloc_system", "--bench", "alloc_modes", "--target-dir"].map(String::from).to_vec();
    // As the report shows it: relative to the workspace root (the cwd).
    args.push(match target_dir.strip_prefix(root) {
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => target_dir.display().to_string(),
    });
    if !criterion_args.is_empty() {
        args.push("--".into());
        args.extend(criterion_args.iter().cloned());
    }
    let mut cmd = Command::new(cargo());
    cmd.args(&args)
        .current_dir(root)
        .env("CRITERION_HOME", &home)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped());
    let command = if fp {
        cmd.env("RUSTFLAGS", FP_FLAGS);
        format!("RUSTFLAGS=\"{FP_FLAGS}\" cargo {}", args.join(" "))
    } else {
        cmd.env_remove("RUSTFLAGS");
        format!("cargo {}", args.join(" "))
    };
    eprintln!("perf-criterion: CRITERION_HOME={} {command}", home.display());
    let mut child = cmd.spawn().map_err(|e| format!("cargo: {e}"))?;
    let mut info = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("reading cargo bench: {e}"))?;
        eprintln!("{line}");
        if let Some(rest) = line.strip_prefix(INFO_PREFIX) {
            let kv: BTreeMap<&str, &str> = rest.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
            match (kv.get("mode"), kv.get("capture")) {
                (Some(m), Some(c)) => {
                    info.insert(format!("capture.{m}"), c.to_string());
                }
                _ => info.extend(kv.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
            }
        }
    }
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("{command} failed: {status}"));
    }
    let mut results = BTreeMap::new();
    collect(&home, &mut results);
    Ok(BuildResult { name: build.to_string(), command, results, info })
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.1} ns")
    }
}

fn cell(b: &BuildResult, id: &str, base: Option<&str>) -> String {
    let Some(e) = b.results.get(id) else {
        return "—".into();
    };
    let mut s = ns(e.median_ns);
    if let Some(base) = base.and_then(|id| b.results.get(id)) {
        let _ = write!(s, " ({:.2}x)", e.median_ns / base.median_ns);
    }
    s
}

fn render(opts: &Opts, builds: &[BuildResult], command: &str, started: &str, commit: &Commit) -> String {
    let machine = Machine::read();
    let mut s = String::new();
    let _ = writeln!(s, "# leaktrace micro-benchmarks (criterion)\n");
    let _ = writeln!(
        s,
        "Written by `perf-criterion` (perf/src/bin/perf-criterion.rs); do not edit by hand, re-run the command below.\n"
    );
    let _ = writeln!(s, "- Command: `{command}`");
    let _ = writeln!(s, "- Commit: {}", commit.describe());
    let _ = writeln!(s, "- Started: {started}");
    let _ = writeln!(s, "- Machine: {}", machine.describe());
    let _ = writeln!(s, "- Load average at the end: {}", meta::loadavg());
    for b in builds {
        let _ = writeln!(s, "- {} build: `{}`", b.name, b.command);
    }
    if !opts.criterion_args.is_empty() {
        let _ = writeln!(s, "- Criterion arguments: `{}`", opts.criterion_args.join(" "));
    }
    let _ = writeln!(
        s,
        "\nMedians of criterion's samples (benches/alloc_modes.rs, benches/alloc_system.rs); in brackets the ratio to the same benchmark on plain System in the same build. `off` = TrackingAllocator installed, `start` not called (or `stop`ped); `sampled` = 512 KiB.\n"
    );
    for b in builds {
        let _ = writeln!(s, "## {} build\n", b.name);
        let caps: Vec<String> = MODES[1..]
            .iter()
            .map(|m| format!("{m}: {}", b.info.get(&format!("capture.{m}")).map_or("?", String::as_str)))
            .collect();
        let _ = writeln!(s, "Capture method: {}.\n", caps.join(", "));
        let _ = writeln!(s, "alloc+free pair, time per pair:\n");
        let _ = writeln!(s, "| size (B) | System | off | sampled | exact |\n|---|---|---|---|---|");
        for size in SIZES {
            let base = format!("pair/system/{size}");
            let _ = write!(s, "| {size} | {} |", cell(b, &base, None));
            for m in MODES {
                let _ = write!(s, " {} |", cell(b, &format!("pair/{m}/{size}"), Some(&base)));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "\nOne block grown by realloc from 16 B doubling to 64 KiB, then freed (1 alloc, 12 reallocs, 1 free), time per block:\n");
        let _ = writeln!(s, "| System | off | sampled | exact |\n|---|---|---|---|");
        let base = "grow/system/65536";
        let _ = write!(s, "| {} |", cell(b, base, None));
        for m in MODES {
            let _ = write!(s, " {} |", cell(b, &format!("grow/{m}/65536"), Some(base)));
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "\nThreads doing 64 B pairs at once, time per iteration (one pair on every thread; equal times for 1 and 2 threads mean no contention):\n"
        );
        let _ = writeln!(s, "| threads | System | off | sampled | exact |\n|---|---|---|---|---|");
        for t in ["1", "2"] {
            let base = format!("threads/system/{t}");
            let _ = write!(s, "| {t} | {} |", cell(b, &base, None));
            for m in MODES {
                let _ = write!(s, " {} |", cell(b, &format!("threads/{m}/{t}"), Some(&base)));
            }
            let _ = writeln!(s);
        }
        let snap = b.results.get("snapshot/100000-blocks-1000-stacks");
        let info = |k: &str| b.info.get(k).map_or("?", String::as_str);
        let _ = writeln!(
            s,
            "\nSnapshot, exact mode, 100,000 live blocks from 1,000 distinct stacks: {} median per `take_snapshot` (95% CI of the median {}), the first (cold, resolving symbols) {} ms; it saw {} traces, {} of them holding 100 blocks, {} blocks.\n",
            snap.map_or("—".into(), |e| ns(e.median_ns)),
            snap.map_or("—".into(), |e| format!("{}–{}", ns(e.lower_ns), ns(e.upper_ns))),
            info("snapshot_cold_ms"),
            info("traces"),
            info("traces_with_100_blocks"),
            info("blocks"),
        );
        let _ = writeln!(s, "<details><summary>All medians ({})</summary>\n", b.name);
        let _ = writeln!(s, "| benchmark | median | 95% CI of the median |\n|---|---|---|");
        for (id, e) in &b.results {
            let _ = writeln!(s, "| {id} | {} | {}–{} |", ns(e.median_ns), ns(e.lower_ns), ns(e.upper_ns));
        }
        let _ = writeln!(s, "\n</details>\n");
    }
    s
}

/// The medians of every build, as JSON: `{build: {benchmark: median_ns}}`.
fn medians_json(builds: &[BuildResult], commit: &Commit) -> Value {
    let mut m = serde_json::Map::new();
    for b in builds {
        let v: serde_json::Map<String, Value> =
            b.results.iter().map(|(id, e)| (id.clone(), Value::from(e.median_ns))).collect();
        m.insert(b.name.clone(), Value::Object(v));
    }
    serde_json::json!({ "commit": commit.to_json(), "median_ns": m })
}

/// A table of this run's medians against an earlier run's (`--before`).
fn render_before(before: &Value, builds: &[BuildResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Before and after
"
    );
    let _ = writeln!(
        s,
        "Before: the same benches run on commit {} (`criterion.json` of that run); after: this run. Ratios are after / before; wall times on a shared 2-core machine, so differences of a few percent are noise.\n",
        before["commit"]["hash"].as_str().or_else(|| before["commit"].as_str()).unwrap_or("?")
    );
    let _ = writeln!(s, "| build | benchmark | before | after | after / before |\n|---|---|---|---|---|");
    for b in builds {
        for (id, e) in &b.results {
            if id.starts_with("snapshot") {
                continue;
            }
            let Some(old) = before["median_ns"][&b.name][id].as_f64() else {
                continue;
            };
            let _ =
                writeln!(s, "| {} | {id} | {} | {} | {:.2}x |", b.name, ns(old), ns(e.median_ns), e.median_ns / old);
        }
    }
    let _ = writeln!(s);
    s
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\nusage: {USAGE}");
            std::process::exit(2);
        }
    };
    let command = meta::command_line("perf-criterion");
    let started = meta::utc_now();
    // Before building: the commit and changes the benches are built from.
    let commit = Commit::read(&meta::workspace_root());
    let root = meta::workspace_root();
    let result = (|| -> Result<(), String> {
        let target = target_dir(&root)?;
        let mut builds = Vec::new();
        for b in &opts.builds {
            builds.push(run_build(&root, &target, b, &opts.criterion_args)?);
        }
        let mut md = render(&opts, &builds, &command, &started, &commit);
        if let Some(path) = &opts.before {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let before: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            md.push_str(&render_before(&before, &builds));
        }
        std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
        let path = opts.out.join("criterion.md");
        leaktrace::write_atomic(&path, md.as_bytes()).map_err(|e| e.to_string())?;
        let js = serde_json::to_string_pretty(&medians_json(&builds, &commit)).map_err(|e| e.to_string())? + "\n";
        leaktrace::write_atomic(&opts.out.join("criterion.json"), js.as_bytes()).map_err(|e| e.to_string())?;
        eprintln!("perf-criterion: wrote {} and criterion.json", path.display());
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("perf-criterion: {e}");
        std::process::exit(1);
    }
}
