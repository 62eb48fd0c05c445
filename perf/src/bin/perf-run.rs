//! `perf-run`: the overhead report of issue 5.
//!
//! 1. Builds the allocator binaries in release twice: with default flags
//!    (RUSTFLAGS unset) into the workspace's target directory, and with
//!    `RUSTFLAGS="-C force-frame-pointers=yes"` into `<target>/perf-fp`, so
//!    both builds coexist.
//! 2. Runs every configuration (System; leaktrace off, sampled, exact;
//!    dhat-rs; jemalloc without and with its profiler) of both builds
//!    round-robin, `--runs` rounds, the starting configuration rotated each
//!    round; measures each child's wall time and peak RSS (`wait4`'s
//!    `ru_maxrss`) and reads the workload time the child printed.
//!    Three suites (issue 11): the mixed workload on `--threads` threads, the
//!    realloc-heavy workload on as many, and the mixed workload on 8 threads
//!    (same total work), so the 2-core machine runs more threads than cores.
//! 3. Runs every configuration of every suite once more under `valgrind
//!    --tool=callgrind` at `--cg-scale` times the scale, counting the
//!    instructions of the workload's worker threads only
//!    (`--toggle-collect` on the worker functions): instruction counts do
//!    not move with the load of a shared machine, so they decide small
//!    differences; reported as instructions per allocation call added over
//!    the base, and as a ratio.
//! 4. Writes `reports/perf.md` (medians, ranges, ratios to the right base,
//!    the targets of issue 5 as pass/fail) and `reports/perf.json` (every
//!    run), each atomically.
//!
//! `cargo run --release -p leaktrace-perf --bin perf-run -- --runs 5`

use leaktrace_perf::meta::{self, median, Commit, Machine};
use leaktrace_perf::{parse_args, parse_result_line, Params, Workload};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

const USAGE: &str = "perf-run [--runs N] [--threads N] [--scale F] [--only ID[,ID..]] \
[--builds default,frame-pointers] [--suites mixed,realloc,threads8] [--cg-scale F] [--no-callgrind] \
[--no-build] [--out DIR] [--timeout SECS]

IDs: system lt-off lt-sampled lt-exact dhat jemalloc jemalloc-prof19 jemalloc-prof0
(the base of a chosen configuration is always run too)";

const BINS: [&str; 5] = ["perf-system", "perf-leaktrace", "perf-dhat", "perf-jemalloc", "perf-count"];
const FP_FLAGS: &str = "-C force-frame-pointers=yes";
/// Variables that would change a child's allocator; removed, then set per
/// configuration.
const SCRUBBED_ENV: [&str; 3] = ["_RJEM_MALLOC_CONF", "MALLOC_CONF", "LD_PRELOAD"];

struct Opts {
    runs: usize,
    params: Params,
    only: Option<Vec<String>>,
    builds: Vec<String>,
    build: bool,
    out: PathBuf,
    timeout: Duration,
    suites: Vec<String>,
    /// Scale of the callgrind runs, relative to each suite's; 0 = none.
    cg_scale: f64,
}

/// One workload and thread count; every configuration runs in each.
struct Suite {
    id: &'static str,
    label: String,
    params: Params,
}

/// The threads of the many-threads suite.
const MANY_THREADS: usize = 8;

fn suites(opts: &Opts) -> Vec<Suite> {
    let p = &opts.params;
    let mut v = Vec::new();
    for id in &opts.suites {
        v.push(match id.as_str() {
            "mixed" => Suite {
                id: "mixed",
                label: format!("mixed workload, {} threads", p.threads),
                params: Params { workload: Workload::Mixed, ..p.clone() },
            },
            "realloc" => Suite {
                id: "realloc",
                label: format!("realloc-heavy workload, {} threads", p.threads),
                params: Params { workload: Workload::Realloc, ..p.clone() },
            },
            _ => Suite {
                id: "threads8",
                label: format!("mixed workload, {MANY_THREADS} threads (same total work)"),
                params: Params {
                    workload: Workload::Mixed,
                    threads: MANY_THREADS,
                    scale: p.scale * p.threads as f64 / MANY_THREADS as f64,
                },
            },
        });
    }
    v
}

struct Build {
    name: &'static str,
    rustflags: Option<&'static str>,
    target_dir: PathBuf,
}

/// A target of issue 11: the wall-time ratio in the default build and with
/// frame pointers, the instruction ratio, the peak-RSS ratio (each optional),
/// and the suites it applies to.
#[derive(Clone, Copy)]
struct Target {
    time: Option<f64>,
    time_fp: Option<f64>,
    instr: Option<f64>,
    rss: Option<f64>,
    suites: &'static [&'static str],
}

struct Spec {
    id: &'static str,
    label: &'static str,
    bin: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    base: Option<&'static str>,
    target: Option<Target>,
}

fn specs() -> Vec<Spec> {
    vec![
        Spec { id: "system", label: "System", bin: "perf-system", args: &[], env: &[], base: None, target: None },
        Spec {
            id: "lt-off",
            label: "leaktrace off (installed, not started)",
            bin: "perf-leaktrace",
            args: &["off"],
            env: &[],
            base: Some("system"),
            target: Some(Target {
                time: None,
                time_fp: None,
                instr: Some(1.01),
                rss: None,
                suites: &["mixed", "realloc", "threads8"],
            }),
        },
        Spec {
            id: "lt-sampled",
            label: "leaktrace sampled, 512 KiB",
            bin: "perf-leaktrace",
            args: &["sampled"],
            env: &[],
            base: Some("system"),
            target: Some(Target {
                time: Some(1.03),
                time_fp: Some(1.03),
                instr: Some(1.03),
                rss: None,
                suites: &["mixed", "realloc"],
            }),
        },
        Spec {
            id: "lt-exact",
            label: "leaktrace exact",
            bin: "perf-leaktrace",
            args: &["exact"],
            env: &[],
            base: Some("system"),
            target: Some(Target {
                time: Some(1.8),
                time_fp: Some(1.5),
                instr: None,
                rss: Some(2.0),
                suites: &["mixed"],
            }),
        },
        Spec {
            id: "dhat",
            label: "dhat-rs heap profiling",
            bin: "perf-dhat",
            args: &[],
            env: &[],
            base: Some("system"),
            target: None,
        },
        Spec {
            id: "jemalloc",
            label: "jemalloc (profiling compiled in, off)",
            bin: "perf-jemalloc",
            args: &[],
            env: &[],
            base: None,
            target: None,
        },
        Spec {
            id: "jemalloc-prof19",
            label: "jemalloc prof, sampled 512 KiB (lg_prof_sample:19)",
            bin: "perf-jemalloc",
            args: &[],
            env: &[("_RJEM_MALLOC_CONF", "prof:true,lg_prof_sample:19")],
            base: Some("jemalloc"),
            target: None,
        },
        Spec {
            id: "jemalloc-prof0",
            label: "jemalloc prof, every allocation (lg_prof_sample:0)",
            bin: "perf-jemalloc",
            args: &[],
            env: &[("_RJEM_MALLOC_CONF", "prof:true,lg_prof_sample:0")],
            base: Some("jemalloc"),
            target: None,
        },
    ]
}

fn parse_opts() -> Result<Opts, String> {
    let (params, rest) = parse_args(std::env::args().skip(1))?;
    let mut o = Opts {
        runs: 5,
        params,
        only: None,
        builds: vec!["default".into(), "frame-pointers".into()],
        build: true,
        out: meta::workspace_root().join("reports"),
        timeout: Duration::from_secs(900),
        suites: vec!["mixed".into(), "realloc".into(), "threads8".into()],
        cg_scale: 0.02,
    };
    let mut it = rest.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => {
                let v = value()?;
                o.runs = v.parse().map_err(|_| format!("bad --runs {v}"))?;
                if o.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--only" => o.only = Some(value()?.split(',').map(str::to_string).collect()),
            "--builds" => {
                o.builds = value()?.split(',').map(str::to_string).collect();
                if let Some(b) = o.builds.iter().find(|b| *b != "default" && *b != "frame-pointers") {
                    return Err(format!("unknown build {b}"));
                }
            }
            "--no-build" => o.build = false,
            "--suites" => {
                o.suites = value()?.split(',').map(str::to_string).collect();
                if let Some(x) = o.suites.iter().find(|x| !matches!(x.as_str(), "mixed" | "realloc" | "threads8")) {
                    return Err(format!("unknown suite {x}"));
                }
            }
            "--cg-scale" => {
                let v = value()?;
                o.cg_scale = v.parse().map_err(|_| format!("bad --cg-scale {v}"))?;
            }
            "--no-callgrind" => o.cg_scale = 0.0,
            "--out" => o.out = PathBuf::from(value()?),
            "--timeout" => {
                let v = value()?;
                o.timeout = Duration::from_secs(v.parse().map_err(|_| format!("bad --timeout {v}"))?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if let Some(only) = &o.only {
        let all = specs();
        if let Some(id) = only.iter().find(|id| !all.iter().any(|s| s.id == id.as_str())) {
            return Err(format!("unknown configuration {id}"));
        }
    }
    Ok(o)
}

/// The peers that take 15-40x as long as System: run after the others.
fn is_slow(id: &str) -> bool {
    matches!(id, "dhat" | "jemalloc-prof0")
}

/// `v` rotated left by `by`.
fn rotated(v: &[usize], by: usize) -> impl Iterator<Item = usize> + '_ {
    (0..v.len()).map(move |k| v[(k + by) % v.len()])
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir(root: &Path) -> Result<PathBuf, String> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err("cargo metadata failed".into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    v["target_directory"].as_str().map(PathBuf::from).ok_or_else(|| "cargo metadata: no target_directory".into())
}

/// `path` as the reports show it: relative to the workspace root (`./target`)
/// when it is inside it, so that no report names the machine it was made on.
fn shown(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The cargo invocation for `build`, as words (for the report) and as a
/// command (run from the workspace root, so the relative target dir is the same).
fn build_command(root: &Path, build: &Build) -> (String, Command) {
    let mut args = vec!["build".to_string(), "--release".into(), "-p".into(), "leaktrace-perf".into()];
    for b in BINS {
        args.push("--bin".into());
        args.push(b.into());
    }
    args.push("--target-dir".into());
    args.push(shown(root, &build.target_dir));
    let mut cmd = Command::new(cargo());
    cmd.args(&args).current_dir(root).env_remove("CARGO_ENCODED_RUSTFLAGS");
    let words = match build.rustflags {
        Some(f) => {
            cmd.env("RUSTFLAGS", f);
            format!("RUSTFLAGS=\"{f}\" cargo {}", args.join(" "))
        }
        None => {
            cmd.env_remove("RUSTFLAGS");
            format!("cargo {}", args.join(" "))
        }
    };
    (words, cmd)
}

/// One finished child.
struct Child {
    ok: bool,
    status: String,
    process_s: f64,
    /// User + system CPU time of the child.
    cpu_s: f64,
    max_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// Waits until our child `pid` has exited, leaving it a zombie: its pid stays
/// ours, and cannot be reused, until [`wait4`] reaps it.
fn wait_exited(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: `siginfo_t` is plain integers and unions of integers, for
        // which all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writes; with `WNOWAIT` the call only
        // reports the child's state and reaps nothing.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps `pid` (our child, exited or not) and returns its wait status and
/// resource usage.
fn wait4(pid: u32) -> std::io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain integers and structs of integers, for which
    // all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid for writes; `pid` is a child of
        // this process that nothing else waits for.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            return Ok((status, ru));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What the waiter and the watchdog of one child share, under one mutex.
#[derive(Default)]
struct ChildState {
    /// The waiter saw the child exit and is about to reap it: from here on
    /// its pid may be reused, so the watchdog must not send it anything.
    exited: bool,
}

/// Kills a child that outlives its deadline, and only while its pid is
/// still the child's.
///
/// The waiter never reaps before it has set `exited` under the mutex
/// ([`Watchdog::reap`]: `waitid(WNOWAIT)`, mark, then `wait4`), and the
/// watchdog sends SIGKILL only while holding that mutex with `exited`
/// false. So every kill happens before the reap, while the pid still names
/// our child (running, or a zombie, which ignores the signal). Setting a flag
/// after `wait4` returned, as this driver once did, left a window in which
/// the pid was free for reuse and the watchdog could still kill it.
struct Watchdog {
    pid: u32,
    shared: Arc<(Mutex<ChildState>, Condvar)>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    /// Starts watching our unreaped child `pid`, to kill it at `deadline`.
    fn start(pid: u32, deadline: Instant) -> Watchdog {
        let shared = Arc::new((Mutex::new(ChildState::default()), Condvar::new()));
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let (lock, exited_cv) = &*shared;
                let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while !state.exited {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // SAFETY: `kill` has no memory-safety preconditions;
                        // what makes it right is the target. `exited` is
                        // false and we hold the mutex, so the waiter has not
                        // reaped `pid` and cannot until we release it: the
                        // pid is still our child's, not a reused one.
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                        return true;
                    }
                    state = exited_cv.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                false
            })
        };
        Watchdog { pid, shared, thread }
    }

    /// Waits for the child to exit, stops the watchdog, then reaps the
    /// child: its status and resource usage, and whether the watchdog
    /// killed it.
    fn reap(self) -> (std::io::Result<(libc::c_int, libc::rusage)>, bool) {
        // An error here (none is expected for our own child) still goes on
        // to mark and reap: `wait4` then reports it.
        let _ = wait_exited(self.pid);
        {
            let (lock, exited_cv) = &*self.shared;
            lock.lock().unwrap_or_else(PoisonError::into_inner).exited = true;
            exited_cv.notify_all();
        }
        let waited = wait4(self.pid);
        let killed = self.thread.join().unwrap_or(false);
        (waited, killed)
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 * 1e-6
}

fn run_child(path: &Path, args: &[String], env: &[(&str, &str)], timeout: Duration) -> Result<Child, String> {
    let mut cmd = Command::new(path);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", path.display()))?;
    let watchdog = Watchdog::start(child.id(), start + timeout);
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child.stdout.take().expect("piped stdout").read_to_string(&mut stdout);
    let (waited, killed) = watchdog.reap();
    let process_s = start.elapsed().as_secs_f64();
    let stderr = err_reader.join().unwrap_or_default();
    let (status, ru) = waited.map_err(|e| format!("wait4: {e}"))?;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let status = if killed {
        format!("killed after the {} s timeout", timeout.as_secs())
    } else if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    };
    Ok(Child {
        ok,
        status,
        process_s,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss.max(0) as u64,
        stdout,
        stderr,
    })
}

/// One measured run of one configuration.
struct Run {
    round: usize,
    workload_s: f64,
    process_s: f64,
    cpu_s: f64,
    max_rss_kib: u64,
    fields: BTreeMap<String, String>,
    /// /proc/loadavg just before the run.
    load: String,
}

/// A configuration of a build, and what its runs gave.
struct Cell {
    suite: usize,
    build: usize,
    spec: usize,
    runs: Vec<Run>,
    failures: Vec<String>,
    /// Worker instructions under callgrind (at the suite's callgrind scale).
    instructions: Option<u64>,
}

fn fields_of(stdout: &str) -> Option<BTreeMap<String, String>> {
    stdout.lines().find_map(parse_result_line).map(|kv| kv.into_iter().collect())
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

fn params_args(params: &Params) -> [String; 6] {
    [
        "--threads".into(),
        params.threads.to_string(),
        "--scale".into(),
        params.scale.to_string(),
        "--workload".into(),
        params.workload.as_str().into(),
    ]
}

/// The functions whose instructions callgrind counts: the workers'.
const WORKER_FNS: [&str; 2] = ["leaktrace_perf::workload::worker", "leaktrace_perf::workload::grow_worker"];

/// Runs `bin` once under callgrind with `params`; the instructions the
/// worker threads executed.
fn callgrind(bin: &Path, spec: &Spec, params: &Params, timeout: Duration) -> Result<u64, String> {
    let mut args: Vec<String> =
        vec!["--tool=callgrind".into(), "--callgrind-out-file=/dev/null".into(), "--collect-atstart=no".into()];
    args.extend(WORKER_FNS.iter().map(|f| format!("--toggle-collect={f}")));
    args.push(bin.display().to_string());
    args.extend(spec.args.iter().map(|s| s.to_string()));
    args.extend(params_args(params));
    let child = run_child(Path::new("valgrind"), &args, spec.env, timeout)?;
    if !child.ok {
        return Err(format!("valgrind: {}: {}", child.status, tail(&child.stderr, 5)));
    }
    child
        .stderr
        .lines()
        .find_map(|l| l.split_once("Collected :").map(|(_, n)| n.trim().replace(',', "")))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no instruction count from valgrind: {}", tail(&child.stderr, 5)))
}

/// Runs `cell` once with `params`, returning the run or why it failed.
fn measure(bin: &Path, spec: &Spec, params: &Params, round: usize, timeout: Duration) -> Result<Run, String> {
    let mut args: Vec<String> = spec.args.iter().map(|s| s.to_string()).collect();
    args.extend(params_args(params));
    let load = meta::loadavg();
    let child = run_child(bin, &args, spec.env, timeout)?;
    if !child.ok {
        return Err(format!("{}: {}", child.status, tail(&child.stderr, 5)));
    }
    let fields = fields_of(&child.stdout).ok_or_else(|| format!("no result line: {}", tail(&child.stderr, 5)))?;
    let workload_s = fields.get("workload_s").and_then(|v| v.parse().ok()).ok_or("result line without workload_s")?;
    Ok(Run {
        round,
        workload_s,
        process_s: child.process_s,
        cpu_s: child.cpu_s,
        max_rss_kib: child.max_rss_kib,
        fields,
        load,
    })
}

/// Medians and ranges of one cell.
struct Summary {
    n: usize,
    median_s: f64,
    min_s: f64,
    max_s: f64,
    process_s: f64,
    cpu_s: f64,
    rss_kib: f64,
}

fn summarize(cell: &Cell) -> Option<Summary> {
    let w: Vec<f64> = cell.runs.iter().map(|r| r.workload_s).collect();
    Some(Summary {
        n: w.len(),
        median_s: median(&w)?,
        min_s: w.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: w.iter().copied().fold(0.0, f64::max),
        process_s: median(&cell.runs.iter().map(|r| r.process_s).collect::<Vec<_>>())?,
        cpu_s: median(&cell.runs.iter().map(|r| r.cpu_s).collect::<Vec<_>>())?,
        rss_kib: median(&cell.runs.iter().map(|r| r.max_rss_kib as f64).collect::<Vec<_>>())?,
    })
}

/// The median of a numeric field the runs reported.
fn field_median(cell: &Cell, key: &str) -> Option<f64> {
    let v: Vec<f64> = cell.runs.iter().filter_map(|r| r.fields.get(key).and_then(|v| v.parse().ok())).collect();
    median(&v)
}

/// Distinct values of a field over the runs, joined.
fn field_values(cell: &Cell, key: &str) -> String {
    let mut v: Vec<&str> = cell.runs.iter().filter_map(|r| r.fields.get(key).map(String::as_str)).collect();
    v.sort_unstable();
    v.dedup();
    v.join("/")
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// What a run said about itself, for the table.
fn reported(spec: &Spec, cell: &Cell) -> String {
    match spec.bin {
        "perf-leaktrace" => {
            let mut s = format!("capture: {}", field_values(cell, "capture"));
            if let Some(t) = field_median(cell, "tracker_bytes").filter(|&t| t > 0.0) {
                let _ = write!(s, "; tracker {:.1} MiB", t / 1048576.0);
            }
            s
        }
        "perf-jemalloc" => {
            format!("opt.prof={}, lg_prof_sample={}", field_values(cell, "prof"), field_values(cell, "lg_prof_sample"))
        }
        "perf-dhat" => match field_median(cell, "profile_write_s") {
            Some(w) => format!("profile written in {w:.2} s after the workload"),
            None => String::new(),
        },
        _ => String::new(),
    }
}

struct Verdict {
    text: String,
    pass: bool,
}

/// Ratios of a configuration to its base: wall time, instructions, peak RSS.
#[derive(Clone, Copy, Default)]
struct Ratios {
    time: Option<f64>,
    instr: Option<f64>,
    rss: Option<f64>,
}

fn verdict(target: Target, fp: bool, r: Ratios) -> Verdict {
    let mut pass = true;
    let mut parts = Vec::new();
    let mut check = |what: &str, limit: Option<f64>, value: Option<f64>| {
        let Some(limit) = limit else {
            return;
        };
        match value {
            Some(v) => {
                let ok = v <= limit;
                pass &= ok;
                parts.push(format!("{what} ≤{limit}x: {}", if ok { "pass" } else { "**FAIL**" }));
            }
            None => {
                pass = false;
                parts.push(format!("{what} ≤{limit}x: no data"));
            }
        }
    };
    check("time", if fp { target.time_fp } else { target.time }, r.time);
    check("instructions", target.instr, r.instr);
    check("RSS", target.rss, r.rss);
    Verdict { text: parts.join(", "), pass }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.3}x")).unwrap_or_else(|| "—".into())
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\nusage: {USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(opts) {
        eprintln!("perf-run: {e}");
        std::process::exit(1);
    }
}

fn run(opts: Opts) -> Result<(), String> {
    let root = meta::workspace_root();
    let command = meta::command_line("perf-run");
    let started = meta::utc_now();
    let load_before = meta::loadavg();
    // Before building: the commit and changes the binaries are built from.
    let commit = Commit::read(&root);
    let target = target_dir(&root)?;
    let builds: Vec<Build> = opts
        .builds
        .iter()
        .map(|b| match b.as_str() {
            "default" => Build { name: "default", rustflags: None, target_dir: target.clone() },
            _ => Build { name: "frame-pointers", rustflags: Some(FP_FLAGS), target_dir: target.join("perf-fp") },
        })
        .collect();
    let suites = suites(&opts);

    // 1. Build.
    let mut build_commands = Vec::new();
    for b in &builds {
        let (words, mut cmd) = build_command(&root, b);
        build_commands.push(words.clone());
        if opts.build {
            eprintln!("perf-run: {words}");
            let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
            if !status.success() {
                return Err(format!("build failed: {words}"));
            }
        }
    }
    let bin_path = |b: &Build, name: &str| b.target_dir.join("release").join(name);
    for b in &builds {
        for name in BINS {
            if !bin_path(b, name).exists() {
                return Err(format!("{} is missing (drop --no-build?)", bin_path(b, name).display()));
            }
        }
    }

    // 2. The configurations, with their bases, in every suite.
    let all = specs();
    let wanted = |s: &Spec| match &opts.only {
        None => true,
        Some(only) => {
            only.iter().any(|id| id == s.id || all.iter().any(|o| o.id == id.as_str() && o.base == Some(s.id)))
        }
    };
    let mut cells: Vec<Cell> = Vec::new();
    for (ui, _) in suites.iter().enumerate() {
        for (bi, _) in builds.iter().enumerate() {
            for (si, s) in all.iter().enumerate() {
                if wanted(s) {
                    cells.push(Cell {
                        suite: ui,
                        build: bi,
                        spec: si,
                        runs: Vec::new(),
                        failures: Vec::new(),
                        instructions: None,
                    });
                }
            }
        }
    }

    // What each suite asks of the allocator (counted once, on System), at
    // the timed scale and at the callgrind scale.
    let count_spec =
        Spec { id: "count", label: "count", bin: "perf-count", args: &[], env: &[], base: None, target: None };
    let cg_params = |u: &Suite| Params { scale: u.params.scale * opts.cg_scale, ..u.params.clone() };
    let mut counts = Vec::new();
    let mut cg_counts = Vec::new();
    for u in &suites {
        let count = measure(&bin_path(&builds[0], "perf-count"), &count_spec, &u.params, 0, opts.timeout)?;
        eprintln!(
            "perf-run: {}: {} allocs + {} reallocs, {:.3} s on a counting System allocator",
            u.id,
            count.fields.get("allocs").map_or("?", String::as_str),
            count.fields.get("reallocs").map_or("?", String::as_str),
            count.workload_s
        );
        counts.push(count);
        cg_counts.push(if opts.cg_scale > 0.0 {
            Some(measure(&bin_path(&builds[0], "perf-count"), &count_spec, &cg_params(u), 0, opts.timeout)?)
        } else {
            None
        });
    }

    // Preflight: every configuration once at a small scale, so a broken one
    // fails in seconds, not after the long rounds.
    for cell in &cells {
        let (u, b, s) = (&suites[cell.suite], &builds[cell.build], &all[cell.spec]);
        let small = Params { scale: (u.params.scale / 20.0).min(0.05), ..u.params.clone() };
        let r = measure(&bin_path(b, s.bin), s, &small, 0, opts.timeout)
            .map_err(|e| format!("preflight {}/{}/{}: {e}", u.id, b.name, s.id))?;
        eprintln!("perf-run: preflight {}/{}/{} ok ({:.3} s)", u.id, b.name, s.id, r.workload_s);
    }

    // 3. Interleaved rounds: per suite, the quick configurations of both
    // builds first, close together in time so that a change in the
    // machine's load hits a configuration and its base alike, then the slow
    // peers.
    let t0 = Instant::now();
    for round in 0..opts.runs {
        for (ui, suite) in suites.iter().enumerate() {
            let (quick, slow): (Vec<usize>, Vec<usize>) =
                (0..cells.len()).filter(|&i| cells[i].suite == ui).partition(|&i| !is_slow(all[cells[i].spec].id));
            for i in rotated(&quick, round).chain(rotated(&slow, round)) {
                let (u, b, s) = (suite, &builds[cells[i].build], &all[cells[i].spec]);
                match measure(&bin_path(b, s.bin), s, &u.params, round, opts.timeout) {
                    Ok(r) => {
                        eprintln!(
                            "perf-run: [{}/{}] {}/{}/{}: {:.3} s, CPU {:.3} s, {:.1} MiB ({:.0} s elapsed)",
                            round + 1,
                            opts.runs,
                            u.id,
                            b.name,
                            s.id,
                            r.workload_s,
                            r.cpu_s,
                            mib(r.max_rss_kib as f64),
                            t0.elapsed().as_secs_f64()
                        );
                        cells[i].runs.push(r);
                    }
                    Err(e) => {
                        eprintln!("perf-run: [{}/{}] {}/{}/{} FAILED: {e}", round + 1, opts.runs, u.id, b.name, s.id);
                        cells[i].failures.push(format!("round {}: {e}", round + 1));
                    }
                }
            }
        }
    }

    // 4. Instructions: every cell once under callgrind, two at a time
    // (counts do not depend on the load).
    if opts.cg_scale > 0.0 {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: std::sync::Mutex<Vec<(usize, Result<u64, String>)>> = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(cell) = cells.get(i) else {
                        return;
                    };
                    let (u, b, s) = (&suites[cell.suite], &builds[cell.build], &all[cell.spec]);
                    // The slow peers run 10-40x longer under callgrind too:
                    // counted on the first suite only.
                    if is_slow(s.id) && cell.suite != 0 {
                        continue;
                    }
                    let r = callgrind(&bin_path(b, s.bin), s, &cg_params(u), opts.timeout);
                    match &r {
                        Ok(n) => eprintln!("perf-run: callgrind {}/{}/{}: {n} instructions", u.id, b.name, s.id),
                        Err(e) => eprintln!("perf-run: callgrind {}/{}/{} FAILED: {e}", u.id, b.name, s.id),
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
                });
            }
        });
        for (i, r) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
            match r {
                Ok(n) => cells[i].instructions = Some(n),
                Err(e) => cells[i].failures.push(format!("callgrind: {e}")),
            }
        }
    }
    let load_after = meta::loadavg();

    // Every configuration of a suite must have computed the same thing.
    let mut checksums: Vec<BTreeMap<String, Vec<String>>> = vec![BTreeMap::new(); suites.len()];
    for c in &cells {
        for r in &c.runs {
            if let Some(sum) = r.fields.get("checksum") {
                checksums[c.suite]
                    .entry(sum.clone())
                    .or_default()
                    .push(format!("{}/{}", builds[c.build].name, all[c.spec].id));
            }
        }
    }
    for (ui, count) in counts.iter().enumerate() {
        if let Some(sum) = count.fields.get("checksum") {
            checksums[ui].entry(sum.clone()).or_default().push("count".into());
        }
    }

    let machine = Machine::read();
    let report = Report {
        opts: &opts,
        command: &command,
        started: &started,
        load: (&load_before, &load_after),
        machine: &machine,
        commit: &commit,
        builds: &builds,
        build_commands: &build_commands,
        suites: &suites,
        specs: &all,
        cells: &cells,
        counts: &counts,
        cg_counts: &cg_counts,
        checksums: &checksums,
    };
    let md = render_md(&report);
    let js = render_json(&report);
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let md_path = opts.out.join("perf.md");
    let js_path = opts.out.join("perf.json");
    leaktrace::write_atomic(&md_path, md.as_bytes()).map_err(|e| e.to_string())?;
    let js = serde_json::to_string_pretty(&js).map_err(|e| e.to_string())? + "\n";
    leaktrace::write_atomic(&js_path, js.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!("perf-run: wrote {} and {}", md_path.display(), js_path.display());
    print!("{}", headline(&md));
    Ok(())
}

struct Report<'a> {
    opts: &'a Opts,
    command: &'a str,
    started: &'a str,
    load: (&'a str, &'a str),
    machine: &'a Machine,
    commit: &'a Commit,
    builds: &'a [Build],
    build_commands: &'a [String],
    suites: &'a [Suite],
    specs: &'a [Spec],
    cells: &'a [Cell],
    counts: &'a [Run],
    cg_counts: &'a [Option<Run>],
    checksums: &'a [BTreeMap<String, Vec<String>>],
}

fn num_field(run: &Run, k: &str) -> u64 {
    run.fields.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

impl Report<'_> {
    fn cell(&self, suite: usize, build: usize, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.suite == suite && c.build == build && self.specs[c.spec].id == id)
    }

    fn base(&self, cell: &Cell) -> Option<&Cell> {
        self.specs[cell.spec].base.and_then(|b| self.cell(cell.suite, cell.build, b))
    }

    /// Ratios of `cell` to its base in the same suite and build.
    fn ratios(&self, cell: &Cell) -> Ratios {
        let mut r = Ratios::default();
        if let Some((s, b)) = self.summaries(cell) {
            r.time = Some(s.median_s / b.median_s);
            r.rss = Some(s.rss_kib / b.rss_kib);
        }
        if let (Some(i), Some(bi)) = (cell.instructions, self.base(cell).and_then(|b| b.instructions)) {
            r.instr = Some(i as f64 / bi as f64);
        }
        r
    }

    /// Instructions per allocation call (alloc + realloc) added over the base.
    fn added_per_call(&self, cell: &Cell) -> Option<f64> {
        let (i, bi) = (cell.instructions?, self.base(cell)?.instructions?);
        let cg = self.cg_counts[cell.suite].as_ref()?;
        let calls = num_field(cg, "allocs") + num_field(cg, "reallocs");
        (calls > 0).then(|| (i as f64 - bi as f64) / calls as f64)
    }

    /// The ratio of the fastest run to the base's fastest: noise on a shared
    /// machine only ever adds time, so this is a cross-check of the medians.
    fn min_ratio(&self, cell: &Cell) -> Option<f64> {
        self.summaries(cell).map(|(s, b)| s.min_s / b.min_s)
    }

    /// The ratio of process CPU time (user + system) to the base's.
    fn cpu_ratio(&self, cell: &Cell) -> Option<f64> {
        self.summaries(cell).map(|(s, b)| s.cpu_s / b.cpu_s)
    }

    fn summaries(&self, cell: &Cell) -> Option<(Summary, Summary)> {
        Some((summarize(cell)?, summarize(self.base(cell)?)?))
    }
}

/// The part of the report printed to the terminal too.
fn headline(md: &str) -> String {
    let start = md.find("## Targets").unwrap_or(0);
    let end = md[start..].find("\n## ").map_or(md.len(), |e| start + e + 1);
    md[start..end].to_string()
}

fn describe_workload(u: &Suite, count: &Run) -> String {
    let p = &u.params;
    format!(
        "{} (`--workload {}`): {} threads, scale {} ({} round(s) per thread): {} allocation calls ({} alloc + {} realloc), {} frees, {:.2} GiB requested, {} blocks live at the end",
        u.label,
        p.workload.as_str(),
        p.threads,
        p.scale,
        leaktrace_perf::workload::rounds(p.scale),
        num_field(count, "allocs") + num_field(count, "reallocs"),
        num_field(count, "allocs"),
        num_field(count, "reallocs"),
        num_field(count, "frees"),
        num_field(count, "bytes") as f64 / (1u64 << 30) as f64,
        num_field(count, "live_blocks"),
    )
}

fn render_md(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# leaktrace overhead, measured\n");
    let _ = writeln!(
        s,
        "Written by `perf-run` (perf/src/bin/perf-run.rs); do not edit by hand, re-run the command below.\n"
    );
    let _ = writeln!(s, "- Command: `{}`", r.command);
    let _ = writeln!(s, "- Commit: {}", r.commit.describe());
    let _ = writeln!(s, "- Started: {}", r.started);
    let _ = writeln!(s, "- Machine: {}", r.machine.describe());
    let _ = writeln!(
        s,
        "- Load average (1, 5, 15 min) before: {}; after: {} (the machine may be shared: compare ratios, not seconds)",
        r.load.0, r.load.1
    );
    let _ = writeln!(s, "- Workloads (perf/src/workload.rs):");
    for (u, count) in r.suites.iter().zip(r.counts) {
        let _ = writeln!(s, "  - {}", describe_workload(u, count));
    }
    let _ = writeln!(
        s,
        "- Runs: {} round(s); each round runs every configuration of every build once per suite, round-robin, starting one configuration later each round: first the quick ones (System, leaktrace, jemalloc and its sampled profiler, both builds), close together in time, then the slow peers (dhat-rs, jemalloc profiling every allocation)",
        r.opts.runs
    );
    if r.opts.cg_scale > 0.0 {
        let _ = writeln!(
            s,
            "- Instructions: each configuration once under `valgrind --tool=callgrind --collect-atstart=no {}` at {} times the suite's scale (at least one round per thread; dhat-rs and jemalloc profiling every allocation in the first suite only); only the worker threads' instructions are counted (start-up, `leaktrace::start()` and tear-down are outside). Callgrind runs threads one at a time, so contention (cache lines moving between cores) is not in these counts; it is in the wall times. Allocation calls at that scale: {}",
            WORKER_FNS.iter().map(|f| format!("--toggle-collect={f}")).collect::<Vec<_>>().join(" "),
            r.opts.cg_scale,
            r.suites
                .iter()
                .zip(r.cg_counts)
                .map(|(u, c)| format!(
                    "{} {}",
                    u.id,
                    c.as_ref().map_or(0, |c| num_field(c, "allocs") + num_field(c, "reallocs"))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s, "- Builds (release profile, `debug = \"line-tables-only\"`):");
    for (b, cmd) in r.builds.iter().zip(r.build_commands) {
        let _ = writeln!(s, "  - {}: `{}`", b.name, cmd);
    }
    let captures: Vec<String> = r
        .builds
        .iter()
        .enumerate()
        .map(|(bi, b)| {
            let caps = r
                .cell(0, bi, "lt-exact")
                .or_else(|| r.cell(0, bi, "lt-sampled"))
                .map(|c| field_values(c, "capture"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "not run".into());
            format!("{} build: **{}**", b.name, caps)
        })
        .collect();
    let _ = writeln!(s, "- Capture method leaktrace used: {}", captures.join("; "));
    for (u, sums) in r.suites.iter().zip(r.checksums) {
        match sums.len() {
            0 => {}
            1 => {
                let _ = writeln!(
                    s,
                    "- Checksum, {}: every run computed {} (same work under every allocator)",
                    u.id,
                    sums.keys().next().map_or("", String::as_str)
                );
            }
            _ => {
                let _ = writeln!(s, "- **Checksums differ between runs of {}**: {:?}", u.id, sums);
            }
        }
    }
    let _ = writeln!(
        s,
        "\nTimes are the workload's wall time measured inside each process (first thread spawned to last joined): process start-up, `leaktrace::start()` and tool tear-down (dhat writing its profile) are outside it; CPU is the child's user + system time (`wait4`). Peak RSS is `ru_maxrss` from `wait4`. Ratios are of medians, to System in the same build and suite for leaktrace and dhat, and to jemalloc without profiling in the same build and suite for jemalloc's profiler. On a shared 2-core machine wall-time ratios move by several percent from run to run; the instruction ratios do not, and decide differences of a few percent.\n"
    );

    // Targets of issue 11.
    let _ = writeln!(s, "## Targets (issue 11)\n");
    let mut head = String::from("| target | suite |");
    let mut rule = String::from("|---|---|");
    for b in r.builds {
        let _ = write!(head, " {} build |", b.name);
        rule.push_str("---|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (id, what) in [
        ("lt-off", "not started (installed, `start` not called): instructions ≤ 1.01x System"),
        ("lt-sampled", "sampled 512 KiB: time and instructions ≤ 1.03x System"),
        ("lt-exact", "exact: time ≤ 1.8x System (DWARF unwinder) / ≤ 1.5x (frame pointers); peak RSS ≤ 2x"),
    ] {
        let spec = r.specs.iter().find(|s| s.id == id).expect("known id");
        let tg = spec.target.expect("targets set");
        for (ui, u) in r.suites.iter().enumerate() {
            if !tg.suites.contains(&u.id) {
                continue;
            }
            let mut row = format!("| {what} | {} |", u.id);
            for (bi, b) in r.builds.iter().enumerate() {
                let txt = match r.cell(ui, bi, id) {
                    None => "not run".to_string(),
                    Some(c) => {
                        let rt = r.ratios(c);
                        let v = verdict(tg, b.name != "default", rt);
                        format!(
                            "{} time (CPU {}, best {}), {} instructions{}: {}",
                            fmt_ratio(rt.time),
                            fmt_ratio(r.cpu_ratio(c)),
                            fmt_ratio(r.min_ratio(c)),
                            fmt_ratio(rt.instr),
                            if tg.rss.is_some() { format!(", {} RSS", fmt_ratio(rt.rss)) } else { String::new() },
                            if v.pass { "pass" } else { "**FAIL**" }
                        )
                    }
                };
                let _ = write!(row, " {txt} |");
            }
            let _ = writeln!(s, "{row}");
        }
    }
    // Sampled mode against jemalloc's profiler at the same rate.
    for (ui, u) in r.suites.iter().enumerate() {
        let mut row =
            format!("| sampled 512 KiB costs less than jemalloc's profiler at 512 KiB (each to its base) | {} |", u.id);
        let mut any = false;
        for (bi, _) in r.builds.iter().enumerate() {
            let (Some(lt), Some(je)) = (r.cell(ui, bi, "lt-sampled"), r.cell(ui, bi, "jemalloc-prof19")) else {
                row.push_str(" not run |");
                continue;
            };
            any = true;
            let (a, j) = (r.ratios(lt), r.ratios(je));
            let pass = matches!((a.time, j.time), (Some(x), Some(y)) if x <= y.max(1.0));
            let _ = write!(
                row,
                " {} vs {} time, {} vs {} instructions: {} |",
                fmt_ratio(a.time),
                fmt_ratio(j.time),
                fmt_ratio(a.instr),
                fmt_ratio(j.instr),
                if pass { "pass" } else { "**FAIL**" }
            );
        }
        if any {
            let _ = writeln!(s, "{row}");
        }
    }
    let _ = writeln!(s);

    // Everything, per suite.
    for (ui, u) in r.suites.iter().enumerate() {
        let _ = writeln!(s, "## {}\n", u.label);
        let _ = writeln!(
            s,
            "| build | configuration | runs | median (s) | min–max (s) | vs base | best vs best | CPU vs base | instructions (M) | instructions vs base | added per alloc call | peak RSS (MiB) | RSS vs base | base | reported by the run |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in r.cells.iter().filter(|c| c.suite == ui) {
            let (b, spec) = (&r.builds[c.build], &r.specs[c.spec]);
            let base_label = spec.base.and_then(|id| r.specs.iter().find(|s| s.id == id)).map_or("—", |s| s.label);
            let instr = c.instructions.map_or("—".to_string(), |i| format!("{:.1}", i as f64 / 1e6));
            let added = r.added_per_call(c).map_or("—".to_string(), |a| format!("{a:+.0}"));
            match summarize(c) {
                None => {
                    let _ = writeln!(
                        s,
                        "| {} | {} | 0 | — | — | — | — | — | {instr} | — | {added} | — | — | {base_label} | failed |",
                        b.name, spec.label
                    );
                }
                Some(sm) => {
                    let rt = r.ratios(c);
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {} | {} | {} | {instr} | {} | {added} | {:.1} | {} | {} | {} |",
                        b.name,
                        spec.label,
                        sm.n,
                        sm.median_s,
                        sm.min_s,
                        sm.max_s,
                        fmt_ratio(rt.time),
                        fmt_ratio(r.min_ratio(c)),
                        fmt_ratio(r.cpu_ratio(c)),
                        fmt_ratio(rt.instr),
                        mib(sm.rss_kib),
                        fmt_ratio(rt.rss),
                        base_label,
                        reported(spec, c),
                    );
                }
            }
        }
        let _ = writeln!(s);
    }
    let failures: Vec<String> = r
        .cells
        .iter()
        .flat_map(|c| {
            c.failures.iter().map(move |f| {
                format!("- {}/{}/{}: {f}", r.suites[c.suite].id, r.builds[c.build].name, r.specs[c.spec].id)
            })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "## Failed runs\n\n{}\n", failures.join("\n"));
    }
    let _ = writeln!(
        s,
        "Raw numbers of every run: `perf.json` beside this file. The workload's checksum, live blocks and each tool's own figures are in it too."
    );
    s
}

fn render_json(r: &Report) -> serde_json::Value {
    let configs: Vec<serde_json::Value> = r
        .cells
        .iter()
        .map(|c| {
            let (u, b, spec) = (&r.suites[c.suite], &r.builds[c.build], &r.specs[c.spec]);
            let rt = r.ratios(c);
            let sm = summarize(c);
            json!({
                "suite": u.id,
                "build": b.name,
                "id": spec.id,
                "label": spec.label,
                "binary": shown(&meta::workspace_root(), &b.target_dir.join("release").join(spec.bin)),
                "args": spec.args,
                "env": spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "base": spec.base,
                "instructions": c.instructions,
                "instructions_ratio_to_base": rt.instr,
                "instructions_added_per_alloc_call": r.added_per_call(c),
                "summary": sm.as_ref().map(|sm| json!({
                    "runs": sm.n,
                    "median_workload_s": sm.median_s,
                    "min_workload_s": sm.min_s,
                    "max_workload_s": sm.max_s,
                    "median_process_s": sm.process_s,
                    "median_cpu_s": sm.cpu_s,
                    "cpu_ratio_to_base": r.cpu_ratio(c),
                    "min_ratio_to_base": r.min_ratio(c),
                    "median_max_rss_kib": sm.rss_kib,
                    "time_ratio_to_base": rt.time,
                    "rss_ratio_to_base": rt.rss,
                })),
                "target": spec.target.filter(|tg| tg.suites.contains(&u.id)).map(|tg| {
                    let v = verdict(tg, b.name != "default", rt);
                    json!({
                        "time_ratio_max": if b.name == "default" { tg.time } else { tg.time_fp },
                        "instructions_ratio_max": tg.instr,
                        "rss_ratio_max": tg.rss,
                        "pass": v.pass,
                        "text": v.text,
                    })
                }),
                "runs": c.runs.iter().map(|run| json!({
                    "round": run.round + 1,
                    "workload_s": run.workload_s,
                    "process_s": run.process_s,
                    "cpu_s": run.cpu_s,
                    "load_average_before": run.load,
                    "max_rss_kib": run.max_rss_kib,
                    "reported": run.fields,
                })).collect::<Vec<_>>(),
                "failures": c.failures,
            })
        })
        .collect();
    json!({
        "command": r.command,
        "commit": r.commit.to_json(),
        "started": r.started,
        "machine": r.machine.to_json(),
        "load_average": { "before": r.load.0, "after": r.load.1 },
        "params": {
            "threads": r.opts.params.threads,
            "scale": r.opts.params.scale,
            "runs": r.opts.runs,
            "callgrind_scale": r.opts.cg_scale,
        },
        "suites": r.suites.iter().zip(r.counts).zip(r.cg_counts).map(|((u, c), cg)| json!({
            "id": u.id,
            "label": u.label,
            "workload": u.params.workload.as_str(),
            "threads": u.params.threads,
            "scale": u.params.scale,
            "counts": c.fields,
            "callgrind_counts": cg.as_ref().map(|cg| &cg.fields),
        })).collect::<Vec<_>>(),
        "builds": r.builds.iter().zip(r.build_commands).map(|(b, cmd)| json!({
            "name": b.name,
            "rustflags": b.rustflags,
            "target_dir": shown(&meta::workspace_root(), &b.target_dir),
            "command": cmd,
        })).collect::<Vec<_>>(),
        "configurations": configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid of a new `sh -c script`, for [`Watchdog`] to reap.
    fn spawn(script: &str) -> u32 {
        // The `Child` is dropped unwaited on purpose: `Watchdog::reap` reaps
        // the pid with `wait4`, as `run_child` does.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh").args(["-c", script]).stdin(Stdio::null()).spawn().expect("sh");
        child.id()
    }

    #[test]
    fn the_watchdog_kills_a_child_past_its_deadline() {
        let pid = spawn("sleep 30");
        let t0 = Instant::now();
        let (waited, killed) = Watchdog::start(pid, t0 + Duration::from_millis(100)).reap();
        let (status, _) = waited.unwrap();
        assert!(killed);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_child_that_exits_in_time_is_reaped_and_never_killed() {
        let pid = spawn("exit 3");
        let t0 = Instant::now();
        let (waited, killed) = Watchdog::start(pid, t0 + Duration::from_secs(60)).reap();
        let (status, _) = waited.unwrap();
        assert!(!killed);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
        // The watchdog stopped when told, not at its deadline.
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn no_kill_after_the_reap_even_at_the_deadline() {
        // The deadline falls while the child is exiting: whichever side
        // wins, the watchdog's verdict and the reaped status agree, and a
        // kill, if any, hit our child (SIGKILL status or a clean exit 0).
        for i in 0..20 {
            let pid = spawn("exit 0");
            let deadline = Instant::now() + Duration::from_micros(200 * i);
            let (waited, killed) = Watchdog::start(pid, deadline).reap();
            let (status, _) = waited.unwrap();
            let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            let sigkilled = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
            assert!(clean || (killed && sigkilled), "status {status}, killed {killed}");
        }
    }
}
