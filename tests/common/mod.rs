//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// The 1-based line of the only line of `src` containing `marker`.
pub fn marker_line(src: &str, marker: &str) -> u32 {
    let hits: Vec<usize> = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker) && !l.contains("marker_line("))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "marker {marker:?} must appear exactly once, found at {hits:?}");
    hits[0] as u32
}

/// Whether a recorded file path is the test file `name` (e.g. "exact_sites.rs").
pub fn is_file(path: &str, name: &str) -> bool {
    std::path::Path::new(path).ends_with(std::path::Path::new("tests").join(name))
}

/// For `harness = false` tests that could hang: run `child` in a child
/// process (this same binary, with `env` set) under `timeout`, and print the
/// closing line that test runners read. The parent never hangs: past the
/// deadline the child is killed and the test fails.
pub fn run_as_child(name: &str, env: &str, timeout: std::time::Duration, child: fn()) -> std::process::ExitCode {
    use std::process::{Command, ExitCode};
    use std::time::Instant;
    if std::env::var_os(env).is_some() {
        child();
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut proc = Command::new(exe).env(env, "1").spawn().expect("spawn child");
    let start = Instant::now();
    loop {
        match proc.try_wait().expect("wait") {
            Some(status) if status.success() => {
                println!("{name}: child passed in {:.1}s", start.elapsed().as_secs_f64());
                println!("1 passed, 0 failed");
                return ExitCode::SUCCESS;
            }
            Some(status) => {
                eprintln!("{name}: child failed: {status}");
                println!("0 passed, 1 failed");
                return ExitCode::FAILURE;
            }
            None if start.elapsed() > timeout => {
                let _ = proc.kill();
                let _ = proc.wait();
                eprintln!("{name}: child still running after {timeout:?}: deadlock or livelock");
                println!("0 passed, 1 failed");
                return ExitCode::FAILURE;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}
