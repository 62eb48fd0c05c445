//! `init_from_env`: tracing turned on by environment variables, without a
//! rebuild.
//!
//! | variable            | value                                      | effect |
//! |---------------------|--------------------------------------------|--------|
//! | `LEAKTRACE`         | unset, empty or `off`                      | nothing |
//! |                     | `exact`                                    | `start(Config::default())` |
//! |                     | `sampled`, `sampled:512k`                  | sampled mode, mean 512 KiB (the default) |
//! |                     | `...,frames=16`                            | frames kept per trace (1 to 64) |
//! |                     | `...,capture=fp\|dwarf\|libgcc\|auto`      | capture method |
//! |                     | `...,symbolize=off`                        | never read debug info in the process |
//! |                     | `...,seed=N`                               | sampled mode's seed |
//! | `LEAKTRACE_MONITOR` | `DIR`, `DIR,interval=10s`                  | a [`Monitor`](crate::Monitor) writing to `DIR` every interval (`ms`, `s`, `m`, `h`; default 10 s) |
//!
//! A value that does not parse is one `log::warn!` naming the variable and
//! the value, and tracing stays off: a typo in a deployment never takes the
//! service down, and never traces with settings nobody asked for.

#![forbid(unsafe_code)]

use crate::config::{CaptureMethod, Config, Mode};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::time::Duration;

/// The variable that turns tracing on.
pub const ENV_TRACING: &str = "LEAKTRACE";
/// The variable that starts a monitor.
pub const ENV_MONITOR: &str = "LEAKTRACE_MONITOR";

/// What the environment asks for (from [`parse_env`]).
#[derive(Clone, Debug)]
pub struct EnvSettings {
    /// The configuration `start()` is called with.
    pub config: Config,
    /// The monitor to start, if `LEAKTRACE_MONITOR` is set.
    pub monitor: Option<MonitorSettings>,
}

/// A monitor asked for by `LEAKTRACE_MONITOR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Where it writes its reports.
    pub report_dir: PathBuf,
    /// Time between snapshots.
    pub interval: Duration,
}

/// A variable whose value does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct EnvError {
    /// The variable (`LEAKTRACE`).
    pub var: &'static str,
    /// Its value as set.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses the two variables' values (`None`: unset). `Ok(None)`: tracing
/// stays off. Pure: reads no environment, starts nothing.
pub fn parse_env(tracing: Option<&str>, monitor: Option<&str>) -> Result<Option<EnvSettings>, EnvError> {
    let monitor_value = monitor;
    let config = match tracing.map(str::trim) {
        None | Some("") => None,
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(parse_tracing(v).map_err(|reason| EnvError {
            var: ENV_TRACING,
            value: tracing.unwrap_or_default().to_string(),
            reason,
        })?),
    };
    let monitor = match monitor.map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(parse_monitor(v).map_err(|reason| EnvError {
            var: ENV_MONITOR,
            value: monitor_value.unwrap_or_default().to_string(),
            reason,
        })?),
    };
    match (config, monitor) {
        (Some(config), monitor) => Ok(Some(EnvSettings { config, monitor })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(EnvError {
            var: ENV_MONITOR,
            value: monitor_value.unwrap_or_default().to_string(),
            reason: format!("a monitor needs tracing on: set {ENV_TRACING} too (e.g. {ENV_TRACING}=sampled)"),
        }),
    }
}

/// `exact`, `sampled[:SIZE]`, then `,key=value` options.
fn parse_tracing(v: &str) -> Result<Config, String> {
    let mut parts = v.split(',').map(str::trim);
    let mode = parts.next().unwrap_or_default();
    let mode = match mode.split_once(':') {
        None if mode.eq_ignore_ascii_case("exact") => Mode::Full,
        None if mode.eq_ignore_ascii_case("sampled") => Mode::Sampled { mean_bytes: 512 * 1024 },
        Some((m, size)) if m.eq_ignore_ascii_case("sampled") => {
            let mean_bytes = parse_size(size)?;
            if mean_bytes == 0 {
                return Err("the sampling distance must be above 0".into());
            }
            Mode::Sampled { mean_bytes }
        }
        _ => return Err(format!("unknown mode {mode:?} (expected off, exact, sampled or sampled:SIZE)")),
    };
    let mut config = Config::default().mode(mode);
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value (frames, capture, symbolize, seed)"));
        };
        let value = value.trim();
        config = match key.trim() {
            "frames" => match value.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => config.frames(n),
                _ => return Err(format!("frames={value:?}: expected a number from 1 to 64")),
            },
            "capture" => config.capture(match value {
                "auto" => CaptureMethod::Auto,
                "fp" | "frame-pointers" => CaptureMethod::FramePointers,
                "dwarf" => CaptureMethod::Dwarf,
                "libgcc" | "unwinder" => CaptureMethod::Unwinder,
                _ => return Err(format!("capture={value:?}: expected auto, fp, dwarf or libgcc")),
            }),
            "symbolize" => {
                config.symbolize(parse_bool(value).ok_or_else(|| format!("symbolize={value:?}: expected on or off"))?)
            }
            "seed" => config.sample_seed(value.parse().map_err(|_| format!("seed={value:?}: expected a number"))?),
            other => return Err(format!("unknown option {other:?} (frames, capture, symbolize, seed)")),
        };
    }
    Ok(config)
}

/// `DIR`, then `,interval=DURATION`.
fn parse_monitor(v: &str) -> Result<MonitorSettings, String> {
    let mut parts = v.split(',').map(str::trim);
    let dir = parts.next().unwrap_or_default();
    if dir.is_empty() || dir.contains('=') {
        return Err("expected the report directory first (DIR[,interval=10s])".into());
    }
    let mut settings = MonitorSettings { report_dir: PathBuf::from(dir), interval: crate::Monitor::DEFAULT_INTERVAL };
    for part in parts {
        match part.split_once('=') {
            Some(("interval", d)) => settings.interval = parse_duration(d.trim())?,
            _ => return Err(format!("unknown option {part:?} (interval=DURATION)")),
        }
    }
    Ok(settings)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `524288`, `512k`, `512KiB`, `1m`, `1MiB`: powers of 1024.
fn parse_size(v: &str) -> Result<usize, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{v:?} is not a size (e.g. 524288, 512k, 1m)"))?;
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{v:?}: unknown unit (k, m or g)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{v:?} is too large"))
}

/// `250ms`, `10s`, `5m`, `1h`; a bare number is seconds. At least 1 ms.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("interval={v:?}: expected a duration (e.g. 500ms, 10s, 5m)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("interval={v:?}: unknown unit (ms, s, m or h)")),
    };
    if !(seconds.is_finite() && (0.001..=86_400.0 * 365.0).contains(&seconds)) {
        return Err(format!("interval={v:?}: expected from 1ms to a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The monitor started from the environment: it runs until the process ends.
static ENV_MONITOR_HANDLE: Mutex<Option<crate::Monitor>> = Mutex::new(None);

/// Turns tracing on as the environment says: one call at the top of
/// `main`, the production set-up (see `docs/production.md`).
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
///
/// fn main() {
///     leaktrace::init_from_env(); // LEAKTRACE=sampled:512k,frames=16 LEAKTRACE_MONITOR=/var/lib/app/leaks,interval=60s
///     // ...
/// }
/// ```
///
/// With `LEAKTRACE` unset or `off`, nothing happens. A malformed value is
/// one warning (`log::warn!`) naming the variable and value, and tracing
/// stays off. Returns the settings put in force, if any.
pub fn init_from_env() -> Option<EnvSettings> {
    let read = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let (tracing, monitor) = (read(ENV_TRACING), read(ENV_MONITOR));
    let settings = match parse_env(tracing.as_deref(), monitor.as_deref()) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("leaktrace: {e}; tracing stays off");
            return None;
        }
    };
    crate::start(settings.config.clone());
    if let Some(m) = &settings.monitor {
        let started = crate::Monitor::builder()
            .report_dir(m.report_dir.clone())
            .interval(m.interval)
            .tracing_config(settings.config.clone())
            .try_start();
        match started {
            Ok(monitor) => *ENV_MONITOR_HANDLE.lock() = Some(monitor),
            Err(e) => log::warn!("leaktrace: {ENV_MONITOR}: cannot start the monitor thread: {e}"),
        }
    }
    Some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> Config {
        parse_env(Some(t), None).unwrap().unwrap().config
    }

    #[test]
    fn off_forms() {
        assert!(parse_env(None, None).unwrap().is_none());
        assert!(parse_env(Some(""), None).unwrap().is_none());
        assert!(parse_env(Some("off"), None).unwrap().is_none());
        assert!(parse_env(Some(" OFF "), None).unwrap().is_none());
    }

    #[test]
    fn modes_and_options() {
        assert_eq!(ok("exact").recording_mode(), Mode::Full);
        assert_eq!(ok("sampled").recording_mode(), Mode::Sampled { mean_bytes: 512 * 1024 });
        let c = ok("sampled:512k,frames=16");
        assert_eq!(c.recording_mode(), Mode::Sampled { mean_bytes: 512 * 1024 });
        assert_eq!(c.frame_count(), 16);
        assert_eq!(ok("sampled:1m").recording_mode(), Mode::Sampled { mean_bytes: 1 << 20 });
        assert_eq!(ok("sampled:4096").recording_mode(), Mode::Sampled { mean_bytes: 4096 });
        assert_eq!(ok("sampled:64KiB").recording_mode(), Mode::Sampled { mean_bytes: 64 << 10 });
        let c = ok("exact, frames=8, capture=fp, symbolize=off, seed=7");
        assert_eq!(c.frame_count(), 8);
        assert_eq!(c.capture_method(), CaptureMethod::FramePointers);
        assert!(!c.symbolizes());
        assert!(ok("exact").symbolizes());
    }

    #[test]
    fn monitor_forms() {
        let s = parse_env(Some("sampled"), Some("/var/leaks")).unwrap().unwrap();
        assert_eq!(
            s.monitor,
            Some(MonitorSettings { report_dir: "/var/leaks".into(), interval: Duration::from_secs(10) })
        );
        let s = parse_env(Some("exact"), Some("/tmp/x,interval=250ms")).unwrap().unwrap();
        assert_eq!(s.monitor.unwrap().interval, Duration::from_millis(250));
        let s = parse_env(Some("exact"), Some("d,interval=2m")).unwrap().unwrap();
        assert_eq!(s.monitor.unwrap().interval, Duration::from_secs(120));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for bad in [
            "exakt",
            "sampled:",
            "sampled:0",
            "sampled:lots",
            "sampled:5q",
            "exact,frames=0",
            "exact,frames=65",
            "exact,frames",
            "exact,depth=3",
            "exact,capture=magic",
            "exact,symbolize=maybe",
            "sampled:99999999999999999999",
        ] {
            let e = parse_env(Some(bad), None).unwrap_err();
            assert_eq!(e.var, "LEAKTRACE", "{bad}");
            assert!(e.to_string().starts_with(&format!("LEAKTRACE={bad:?}: ")), "{e}");
        }
        for bad in
            ["d,interval=", "d,interval=10 parsecs", "d,interval=0s", "d,every=1s", ",interval=1s", "interval=1s"]
        {
            let e = parse_env(Some("exact"), Some(bad)).unwrap_err();
            assert_eq!(e.var, "LEAKTRACE_MONITOR", "{bad}");
        }
        let e = parse_env(None, Some("/tmp/d")).unwrap_err();
        assert_eq!(e.var, "LEAKTRACE_MONITOR");
        assert!(e.reason.contains("set LEAKTRACE too"), "{e}");
    }
}
