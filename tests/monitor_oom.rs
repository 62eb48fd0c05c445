//! Pre-OOM reports: a child leaks towards a memory limit; one report is
//! written when RSS (VMS for `RLIMIT_AS`) passes 90% of it, naming the
//! leak, before the process is killed, and once per crossing. Three
//! limits: one set by the program (`memory_limit_bytes`, re-armed after
//! RSS falls back), `RLIMIT_AS` (the allocation that fails aborts), and a
//! cgroup's memory limit (the OOM killer), the last where cgroups can be
//! created (we run as root), skipped with a printed reason elsewhere.

#[path = "monitor_support/child.rs"]
mod child;
mod common;
mod monitor_support;

use child::{free_leaked, leak_one, leaking_monitor, names_the_leak, reports, run_child, scenario};
use leaktrace::{MemoryLimitInfo, ReportReason};
use monitor_support::scratch_dir;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const MIB: usize = 1 << 20;
const CGROUP_ENV: &str = "LEAKTRACE_TEST_CGROUP";
const CGROUP_LIMIT: u64 = 256 << 20;

fn rss() -> u64 {
    leaktrace::process_memory().expect("process memory").rss_bytes
}

/// Leaks 1 MiB blocks (written, so resident) every 10 ms until `done`.
fn leak_until(mut done: impl FnMut() -> bool, timeout: Duration) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "still running after {timeout:?}; RSS {} MiB", rss() >> 20);
        leak_one(MIB);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn child_body(name: &str) {
    let dir = child::child_dir();
    let pre_oom = || reports(&dir, ReportReason::PreOom).len();
    match name {
        "injected" => {
            let limit = rss() + 96 * MIB as u64;
            let monitor = leaking_monitor(|b| b.memory_limit_bytes(limit).final_report(false));
            child::stop_leaking();
            leak_until(|| pre_oom() >= 1, Duration::from_secs(30));
            // Above the line for a while: no second report.
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(pre_oom(), 1, "one report per crossing");
            // Back below (re-armed), then across again: a second report.
            free_leaked();
            let t = Instant::now();
            while (rss() as f64) > limit as f64 * 0.8 {
                assert!(t.elapsed() < Duration::from_secs(10), "RSS {} MiB did not fall", rss() >> 20);
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(pre_oom(), 1);
            leak_until(|| pre_oom() >= 2, Duration::from_secs(30));
            println!("child: two crossings, {:?}", monitor.stats());
            drop(monitor);
        }
        "rlimit" => {
            let vms = leaktrace::process_memory().unwrap().vms_bytes;
            let limit = vms + 768 * MIB as u64;
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
            // SAFETY: setrlimit reads the struct; only lowers the soft limit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
            let _monitor = leaking_monitor(|b| b.final_report(false));
            child::stop_leaking();
            // Until an allocation fails: Rust aborts.
            leak_until(|| false, Duration::from_secs(60));
        }
        "cgroup" => {
            let cg = PathBuf::from(std::env::var_os(CGROUP_ENV).unwrap());
            std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string()).expect("join the cgroup");
            let _monitor = leaking_monitor(|b| b.final_report(false));
            child::stop_leaking();
            // Until the OOM killer ends it.
            leak_until(|| false, Duration::from_secs(60));
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn one_report(dir: &Path) -> MemoryLimitInfo {
    let found = reports(dir, ReportReason::PreOom);
    assert_eq!(found.len(), 1, "one pre-OOM report: {:?}", found.iter().map(|r| &r.0).collect::<Vec<_>>());
    let (path, report) = &found[0];
    assert!(path.file_name().unwrap().to_string_lossy().starts_with("pre-oom-"), "{}", path.display());
    names_the_leak(path, report);
    let info = report.monitor.memory_limit.clone().expect("the limit in the report");
    assert!(info.used_bytes as f64 >= 0.9 * info.limit_bytes as f64, "{info:?}");
    assert!(info.used_bytes < info.limit_bytes + (64 << 20), "{info:?}");
    info
}

#[test]
fn an_injected_limit_gives_one_report_per_crossing() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let _serial = child::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("oom-injected");
    let ended = run_child(
        "an_injected_limit_gives_one_report_per_crossing",
        "injected",
        &dir,
        Duration::from_secs(90),
        |_| {},
        |_| {},
    );
    assert_eq!(ended.code(), Some(0), "{}", ended.status);
    let found = reports(&dir, ReportReason::PreOom);
    assert_eq!(found.len(), 2, "{:?}", found.iter().map(|r| &r.0).collect::<Vec<_>>());
    // The second crossing is seen at the line. The first may be seen late:
    // the monitor's thread notices it between tasks, and in a debug build
    // the leak report it writes as the leak starts takes a second or more.
    names_the_leak(&found[1].0, &found[1].1);
    for (_, report) in &found {
        let info = report.monitor.memory_limit.as_ref().unwrap();
        assert_eq!((info.source.as_str(), info.measure.as_str(), info.share), ("set by the program", "rss", 0.9));
        assert!(info.used_bytes as f64 >= 0.9 * info.limit_bytes as f64, "{info:?}");
    }
    let second = found[1].1.monitor.memory_limit.as_ref().unwrap();
    assert!((second.used_bytes as f64) < 1.1 * second.limit_bytes as f64, "{second:?}");
    assert_eq!(ended.lines("leaktrace: pre-OOM: rss is").len(), 2, "each logged once");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rlimit_as_gives_a_report_before_the_allocation_fails() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let _serial = child::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("oom-rlimit");
    let ended = run_child(
        "rlimit_as_gives_a_report_before_the_allocation_fails",
        "rlimit",
        &dir,
        Duration::from_secs(90),
        // One malloc arena: the monitor's threads do not each reserve 64 MiB of VMS.
        |cmd| {
            cmd.env("MALLOC_ARENA_MAX", "1");
        },
        |_| {},
    );
    assert_eq!(ended.signal(), Some(libc::SIGABRT), "the failed allocation aborts: {}", ended.status);
    assert!(!ended.lines("memory allocation of").is_empty());
    let info = one_report(&dir);
    assert_eq!((info.source.as_str(), info.measure.as_str()), ("RLIMIT_AS", "vms"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A memory cgroup with a 256 MiB limit, or why there is none.
fn make_cgroup() -> Result<(PathBuf, &'static str), String> {
    let name = format!("leaktrace-test-{}", std::process::id());
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let v2_root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| std::fs::read_to_string(p.join("cgroup.controllers")).is_ok_and(|c| c.contains("memory")));
    if let Some(root) = v2_root {
        let cg = root.join(&name);
        std::fs::create_dir(&cg).map_err(|e| format!("{}: {e}", cg.display()))?;
        std::fs::write(cg.join("memory.max"), CGROUP_LIMIT.to_string()).map_err(|e| format!("memory.max: {e}"))?;
        let _ = std::fs::write(cg.join("memory.swap.max"), "0");
        return Ok((cg, "v2"));
    }
    let v1_path = own
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            c.split(',').any(|c| c == "memory").then(|| path.trim_start_matches('/').to_string())
        })
        .ok_or("no memory controller in /proc/self/cgroup")?;
    let mount = Path::new("/sys/fs/cgroup/memory");
    let parent = if mount.join(&v1_path).is_dir() { mount.join(&v1_path) } else { mount.to_path_buf() };
    let cg = parent.join(&name);
    std::fs::create_dir(&cg).map_err(|e| format!("{}: {e}", cg.display()))?;
    std::fs::write(cg.join("memory.limit_in_bytes"), CGROUP_LIMIT.to_string())
        .map_err(|e| format!("memory.limit_in_bytes: {e}"))?;
    let _ = std::fs::write(cg.join("memory.memsw.limit_in_bytes"), CGROUP_LIMIT.to_string());
    let _ = std::fs::write(cg.join("memory.swappiness"), "0");
    Ok((cg, "v1"))
}

#[test]
fn a_cgroup_limit_gives_a_report_before_the_oom_killer() {
    if let Some(s) = scenario() {
        return child_body(&s);
    }
    let _serial = child::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (cg, version) = match make_cgroup() {
        Ok(cg) => cg,
        Err(why) => {
            println!("skipped: cannot create a memory cgroup here: {why}");
            return;
        }
    };
    eprintln!("cgroup {version}: {}", cg.display());
    let dir = scratch_dir("oom-cgroup");
    let ended = run_child(
        "a_cgroup_limit_gives_a_report_before_the_oom_killer",
        "cgroup",
        &dir,
        Duration::from_secs(90),
        |cmd| {
            cmd.env(CGROUP_ENV, &cg);
        },
        |_| {},
    );
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(ended.signal(), Some(libc::SIGKILL), "killed by the OOM killer: {}", ended.status);
    let info = one_report(&dir);
    assert_eq!(info.limit_bytes, CGROUP_LIMIT, "{info:?}");
    assert!(info.source.starts_with(&format!("cgroup {version} ")), "{info:?}");
    assert_eq!(info.measure, "rss");
    let _ = std::fs::remove_dir_all(&dir);
}
