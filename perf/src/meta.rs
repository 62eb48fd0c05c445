//! What a report says about where and how it was made: machine, commit,
//! toolchain, command, date; and the statistics both reports use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The machine a report was made on.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// `std::thread::available_parallelism()`.
    pub nproc: usize,
    /// The first `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// MemTotal of /proc/meminfo, in KiB.
    pub mem_kib: u64,
    /// `rustc -V`.
    pub rustc: String,
}

impl Machine {
    /// Reads the facts; unknown ones are left empty or zero.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            mem_kib,
            rustc: output("rustc", &["-V"], None).unwrap_or_else(|| "unknown".into()),
        }
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), Linux {}, {:.1} GiB RAM, {}",
            self.nproc,
            self.cpu,
            self.kernel,
            self.mem_kib as f64 / (1024.0 * 1024.0),
            self.rustc
        )
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nproc": self.nproc,
            "cpu": self.cpu,
            "kernel": self.kernel,
            "mem_kib": self.mem_kib,
            "rustc": self.rustc,
        })
    }
}

/// The commit a report was made at, and the files that differed from it.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// `git rev-parse HEAD`, or "unknown".
    pub hash: String,
    /// Tracked files with uncommitted changes (`git status --porcelain`).
    pub dirty: Vec<String>,
}

impl Commit {
    /// Asks git in `root`.
    pub fn read(root: &Path) -> Commit {
        let hash = output("git", &["rev-parse", "HEAD"], Some(root)).unwrap_or_else(|| "unknown".into());
        // Not `output()`: trimming would eat the first line's leading
        // space, and lines are `XY path`, two status letters and a space.
        let status = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let dirty = status.lines().filter_map(|l| l.get(3..).map(str::to_string)).collect();
        Commit { hash, dirty }
    }

    /// e.g. `3f7407a… (+ uncommitted changes to src/hot/mod.rs)`.
    pub fn describe(&self) -> String {
        if self.dirty.is_empty() {
            format!("`{}`", self.hash)
        } else {
            let mut files: Vec<&str> = self.dirty.iter().map(String::as_str).take(12).collect();
            if self.dirty.len() > files.len() {
                files.push("…");
            }
            format!("`{}` plus uncommitted changes to {}", self.hash, files.join(", "))
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "hash": self.hash, "uncommitted": self.dirty })
    }
}

/// A command's trimmed standard output, if it ran and succeeded.
pub fn output(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("perf/ has a parent").to_path_buf()
}

/// The command that reproduces this run of `bin`: `cargo run` when run by
/// cargo (which sets `CARGO_PKG_NAME` for the program), else argv.
pub fn command_line(bin: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    if std::env::var_os("CARGO_PKG_NAME").is_some() {
        let exe = std::env::current_exe().unwrap_or_default();
        let release = exe.components().any(|c| c.as_os_str() == "release");
        let mut s = format!("cargo run {}-p leaktrace-perf --bin {bin}", if release { "--release " } else { "" });
        if !args.is_empty() {
            s.push_str(" -- ");
            s.push_str(&args.join(" "));
        }
        s
    } else {
        let mut v = vec![std::env::args().next().unwrap_or_else(|| bin.to_string())];
        v.extend(args);
        v.join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// /proc/loadavg's first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days_from_civil, inverted.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// The median of `v` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn date_is_plausible() {
        let d = utc_now();
        assert_eq!(d.len(), "2025-01-01 00:00:00 UTC".len());
        assert!(d.starts_with("20"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--runs"), "--runs");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
