//! `init_from_env`: each documented form of `LEAKTRACE` and
//! `LEAKTRACE_MONITOR`, and malformed values (one warning naming the
//! variable, tracing off, no panic), each in a child process of this test
//! with only that environment.

use std::process::Command;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const CHILD: &str = "LEAKTRACE_ENV_TEST_CHILD";

/// Prints warnings to stderr, as a service's logger would.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}: {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn child() {
    log::set_logger(&Stderr).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let settings = leaktrace::init_from_env();
    let v = vec![1u8; 1000];
    let snap = leaktrace::take_snapshot("env");
    drop(v);
    let monitor = settings.as_ref().and_then(|s| s.monitor.clone());
    println!(
        "tracing={} mode={} frames={} mean={:?} monitor={:?}",
        leaktrace::is_tracing(),
        snap.mode,
        snap.frames_per_trace,
        snap.mean_bytes,
        monitor.map(|m| (m.report_dir, m.interval.as_millis())),
    );
}

fn run(vars: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "from_the_environment", "--nocapture", "--test-threads=1"]);
    cmd.env(CHILD, "1").env_remove("LEAKTRACE").env_remove("LEAKTRACE_MONITOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{vars:?}: {stdout}\n{stderr}");
    // The harness's "test NAME ... " may come first on the line.
    let line = stdout.lines().find_map(|l| l.find("tracing=").map(|i| l[i..].to_string()));
    let line = line.unwrap_or_else(|| panic!("{vars:?}: {stdout}"));
    let warnings = stderr.lines().filter(|l| l.starts_with("WARN")).collect::<Vec<_>>().join("\n");
    (line, warnings)
}

#[test]
fn from_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let off = "tracing=false mode=exact frames=16 mean=None monitor=None";
    assert_eq!(run(&[]), (off.to_string(), String::new()));
    assert_eq!(run(&[("LEAKTRACE", "off")]), (off.to_string(), String::new()));
    assert_eq!(run(&[("LEAKTRACE", "exact")]).0, "tracing=true mode=exact frames=16 mean=None monitor=None");
    assert_eq!(
        run(&[("LEAKTRACE", "sampled:512k,frames=8")]).0,
        "tracing=true mode=sampled frames=8 mean=Some(524288) monitor=None"
    );
    let dir = std::env::temp_dir().join(format!("leaktrace-env-{}", std::process::id()));
    let monitor = format!("{},interval=50ms", dir.display());
    let (line, warnings) = run(&[("LEAKTRACE", "sampled"), ("LEAKTRACE_MONITOR", &monitor)]);
    assert_eq!(line, format!("tracing=true mode=sampled frames=16 mean=Some(524288) monitor=Some(({:?}, 50))", dir));
    assert_eq!(warnings, "", "no warning: neither about the settings nor from a clean exit report");
    let _ = std::fs::remove_dir_all(&dir);

    for (var, value) in [("LEAKTRACE", "sampled:lots"), ("LEAKTRACE", "exact,frames=0"), ("LEAKTRACE", "fast")] {
        let (line, warnings) = run(&[(var, value)]);
        assert_eq!(line, off, "{value}");
        assert_eq!(warnings.lines().count(), 1, "{warnings}");
        assert!(warnings.contains(&format!("leaktrace: {var}={value:?}: ")), "{warnings}");
        assert!(warnings.ends_with("tracing stays off"), "{warnings}");
    }
    let (line, warnings) = run(&[("LEAKTRACE", "exact"), ("LEAKTRACE_MONITOR", "/tmp/x,interval=soon")]);
    assert_eq!(line, off);
    assert!(warnings.contains("LEAKTRACE_MONITOR=\"/tmp/x,interval=soon\": "), "{warnings}");
}
