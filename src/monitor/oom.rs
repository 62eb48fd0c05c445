//! Pre-OOM reports: the memory limit the process will be killed at, and
//! one report each time RSS crosses a share of it.
//!
//! The limit is, in order: the one the program set
//! ([`MonitorBuilder::memory_limit_bytes`](crate::MonitorBuilder::memory_limit_bytes)),
//! else the smallest `memory.max` (cgroup v2) or `memory.limit_in_bytes`
//! (cgroup v1) of the process's cgroup and its ancestors, found through
//! `/proc/self/cgroup`; RSS is compared with it. A soft `RLIMIT_AS` is
//! watched as well, compared with VMS (an allocation fails there, which
//! aborts a Rust program). The limits are read once, at the monitor's start.
//!
//! RSS is read between ticks too, every [`OOM_POLL`] (reading
//! `/proc/self/statm` costs microseconds): a leak can go from 90% of the
//! limit to the OOM killer well within the default 10 s interval. One
//! report per crossing: a limit is re-armed once RSS falls below the share
//! by [`REARM_SHARE`] of the limit, so that noise at the line is not a
//! report at every poll.

#![forbid(unsafe_code)]

use super::exit::ReportReason;
use super::worker::Worker;
use super::Settings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often RSS is compared with the limit between ticks.
pub(super) const OOM_POLL: Duration = Duration::from_millis(100);
/// How far under the share (as a share of the limit) RSS must fall to re-arm.
const REARM_SHARE: f64 = 0.02;
/// cgroup v1 writes "no limit" as a huge number (`PAGE_COUNTER_MAX` pages).
const UNLIMITED: u64 = 1 << 60;

/// The limit a pre-OOM report was written for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryLimitInfo {
    /// The limit, in bytes.
    pub limit_bytes: u64,
    /// Where it came from: the cgroup file read, `RLIMIT_AS`, or `set by
    /// the program`.
    pub source: String,
    /// What was compared with it: `"rss"` or `"vms"` (for `RLIMIT_AS`).
    pub measure: String,
    /// RSS (or VMS) when the report was written.
    pub used_bytes: u64,
    /// The share of the limit that triggers a report.
    pub share: f64,
}

/// One limit watched.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Limit {
    pub(super) bytes: u64,
    pub(super) source: String,
    /// Compared with VMS (`RLIMIT_AS`) rather than RSS.
    pub(super) vms: bool,
    /// A report is written at the next crossing.
    armed: bool,
}

/// The limits watched, and the share of them that triggers a report.
#[derive(Debug)]
pub(super) struct OomWatch {
    limits: Vec<Limit>,
    share: f64,
}

impl OomWatch {
    /// The limits in force for this process; `None` when off or unlimited.
    pub(super) fn new(settings: &Settings) -> Option<OomWatch> {
        let share = settings.oom_report_share?;
        let limits = match settings.memory_limit_bytes {
            Some(bytes) => vec![Limit::new(bytes, "set by the program".into(), false)],
            None => detect(),
        };
        if !limits.is_empty() {
            let listed: Vec<String> = limits.iter().map(|l| format!("{} ({})", l.bytes, l.source)).collect();
            log::debug!("leaktrace: pre-OOM reports above {:.0}% of {}", share * 100.0, listed.join(", "));
        }
        (!limits.is_empty()).then_some(OomWatch { limits, share })
    }
}

impl Limit {
    fn new(bytes: u64, source: String, vms: bool) -> Limit {
        Limit { bytes, source, vms, armed: true }
    }
}

/// The cgroup and `RLIMIT_AS` limits of this process.
fn detect() -> Vec<Limit> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
        let (v2, v1) = cgroup_paths(&text);
        let v2_mount = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        let found = v2
            .and_then(|p| smallest_limit(&v2_mount, &p, "memory.max"))
            .map(|(b, f)| (b, format!("cgroup v2 {}", f.display())))
            .or_else(|| {
                v1.and_then(|p| smallest_limit(Path::new("/sys/fs/cgroup/memory"), &p, "memory.limit_in_bytes"))
                    .map(|(b, f)| (b, format!("cgroup v1 {}", f.display())))
            });
        if let Some((bytes, source)) = found {
            out.push(Limit::new(bytes, source, false));
        }
    }
    if let Some(bytes) = super::sys::address_space_limit() {
        out.push(Limit::new(bytes, "RLIMIT_AS".into(), true));
    }
    out
}

/// The process's cgroup v2 path and cgroup v1 memory-controller path, from
/// `/proc/self/cgroup` (`0::/path`, `4:memory:/path`).
pub(super) fn cgroup_paths(text: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// A limit file's value: `None` for `max` or cgroup v1's "unlimited".
pub(super) fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < UNLIMITED).then_some(v)
}

/// The smallest limit in `file` over the cgroup at `rel` under `mount` and
/// its ancestors (a parent's limit binds its children). When `rel` is not
/// under `mount` (a cgroup namespace shows `/`, or another root), the
/// mount's own directory is the cgroup.
fn smallest_limit(mount: &Path, rel: &str, file: &str) -> Option<(u64, PathBuf)> {
    let mut dir = mount.join(rel.trim_start_matches('/'));
    if !dir.is_dir() {
        dir = mount.to_path_buf();
    }
    let mut best: Option<(u64, PathBuf)> = None;
    loop {
        let path = dir.join(file);
        if let Some(v) = std::fs::read_to_string(&path).ok().as_deref().and_then(parse_limit) {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, path));
            }
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    best
}

impl Worker {
    /// Compares RSS (and VMS) with the limits; writes a pre-OOM report at a crossing.
    pub(super) fn check_memory_limit(&mut self) {
        let Some(watch) = self.oom.as_mut() else {
            return;
        };
        let _ignore = crate::hot::control::ignore();
        let Some(pm) = crate::process_memory() else {
            return;
        };
        let share = watch.share;
        let mut crossed = None;
        for limit in &mut watch.limits {
            let used = if limit.vms { pm.vms_bytes } else { pm.rss_bytes };
            let line = limit.bytes as f64 * share;
            if used as f64 >= line {
                if limit.armed && crossed.is_none() {
                    limit.armed = false;
                    crossed = Some(MemoryLimitInfo {
                        limit_bytes: limit.bytes,
                        source: limit.source.clone(),
                        measure: if limit.vms { "vms" } else { "rss" }.into(),
                        used_bytes: used,
                        share,
                    });
                }
            } else if (used as f64) < line - REARM_SHARE * limit.bytes as f64 {
                limit.armed = true;
            }
        }
        if let Some(info) = crossed {
            self.asked_report(ReportReason::PreOom, Some(info));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";
        assert_eq!(cgroup_paths(hybrid), (Some("/".into()), Some("/process_api/abc".into())));
        let v2 = "0::/system.slice/app.service\n";
        assert_eq!(cgroup_paths(v2), (Some("/system.slice/app.service".into()), None));
        let v1 = "5:cpuacct,memory:/docker/x\n";
        assert_eq!(cgroup_paths(v1), (None, Some("/docker/x".into())));
        assert_eq!(cgroup_paths("garbage"), (None, None));
    }

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn the_smallest_limit_up_the_tree_binds() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path();
        let child = mount.join("a/b");
        std::fs::create_dir_all(&child).unwrap();
        std::fs::write(mount.join("a/memory.max"), "1000\n").unwrap();
        std::fs::write(child.join("memory.max"), "max\n").unwrap();
        let (v, p) = smallest_limit(mount, "/a/b", "memory.max").unwrap();
        assert_eq!((v, p), (1000, mount.join("a/memory.max")));
        // A path not under the mount (a namespace): the mount is the cgroup.
        std::fs::write(mount.join("memory.max"), "500\n").unwrap();
        assert_eq!(smallest_limit(mount, "/elsewhere", "memory.max").unwrap().0, 500);
    }
}
