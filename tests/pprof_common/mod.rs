//! Running Go's `go tool pprof` from tests: a sandboxed environment (temp
//! HOME, GOCACHE, GOPATH, PPROF_TMPDIR; no toolchain download, no proxy), and
//! the rule for machines without Go.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `go` can be run. Without it, a test prints why and returns early,
/// except under CI (`CI` set and not `false`/`0`), where a missing Go fails.
pub fn have_go(test: &str) -> bool {
    let found = Command::new("go").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "{test}: `go` is not installed, and CI is set (install golang-go, as .ci/run does)");
    eprintln!("{test}: skipped: `go` is not installed (apt-get install golang-go); set CI=true to make this a failure");
    false
}

/// What `go tool pprof` printed.
#[derive(Debug)]
pub struct Pprof {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `go tool pprof ARGS` with every Go directory inside `sandbox`,
/// killing it after `deadline`.
pub fn go_pprof(sandbox: &Path, args: &[&str], deadline: Duration) -> Pprof {
    let dir = |name: &str| -> PathBuf {
        let p = sandbox.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let mut child = Command::new("go")
        .arg("tool")
        .arg("pprof")
        .args(args)
        .env("HOME", dir("home"))
        .env("GOCACHE", dir("gocache"))
        .env("GOPATH", dir("gopath"))
        .env("PPROF_TMPDIR", dir("pprof"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOTELEMETRY", "off")
        .env("GOFLAGS", "")
        .env_remove("PPROF_BINARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn go tool pprof");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "go tool pprof {args:?} still running after {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Pprof {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The entry rows of `-top` output (after the `flat flat% ...` header):
/// `(flat, name)`, `name` being the rest of the line after the five figures.
pub fn top_rows(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let flat = it.next()?.to_string();
            let rest: Vec<&str> = it.skip(4).collect();
            Some((flat, rest.join(" ")))
        })
        .collect()
}
