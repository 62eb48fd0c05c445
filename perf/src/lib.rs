//! The measurement harness behind `reports/perf.md`.
//!
//! [`workload`] is an allocation-heavy, deterministic, multi-threaded
//! program of its own (string building, a `BTreeMap` of small vectors, churn
//! of mixed sizes). Each `perf-*` binary installs one global allocator, runs
//! it and prints one [`RESULT_PREFIX`] line; `perf-run` builds and runs them
//! all interleaved and writes the report.

#![forbid(unsafe_code)]

pub mod meta;
pub mod workload;

use std::fmt::Write as _;
use std::time::Duration;

/// Every allocator binary prints exactly one line starting with this,
/// followed by `key=value` pairs separated by spaces (values have no spaces).
pub const RESULT_PREFIX: &str = "RESULT";

/// Which workload a binary runs (`--workload mixed|realloc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    /// String building, a `BTreeMap` of small vectors, churn ([`workload`]).
    #[default]
    Mixed,
    /// `String`s and `Vec`s grown by push: mostly reallocs ([`workload`]).
    Realloc,
}

impl Workload {
    /// The name on the command line and in result lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Mixed => "mixed",
            Workload::Realloc => "realloc",
        }
    }

    /// Parses [`Self::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Workload> {
        match s {
            "mixed" => Some(Workload::Mixed),
            "realloc" => Some(Workload::Realloc),
            _ => None,
        }
    }
}

/// The knobs every allocator binary takes: `--threads N --scale F
/// --workload W`.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Worker threads (each runs the same work with its own seed).
    pub threads: usize,
    /// Multiplies the work; 1.0 is about 4 million allocations per thread.
    pub scale: f64,
    /// Which workload.
    pub workload: Workload,
}

impl Default for Params {
    fn default() -> Self {
        Params { threads: 2, scale: 1.0, workload: Workload::Mixed }
    }
}

/// Splits `args` (without the program name) into [`Params`] and the
/// remaining positional arguments.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<(Params, Vec<String>), String> {
    let mut params = Params::default();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => {
                let v = it.next().ok_or("--threads needs a value")?;
                params.threads = v.parse().map_err(|_| format!("bad --threads {v}"))?;
                if params.threads == 0 {
                    return Err("--threads must be at least 1".into());
                }
            }
            "--scale" => {
                let v = it.next().ok_or("--scale needs a value")?;
                params.scale = v.parse().map_err(|_| format!("bad --scale {v}"))?;
                if !(params.scale > 0.0 && params.scale.is_finite()) {
                    return Err(format!("--scale must be positive, got {v}"));
                }
            }
            "--workload" => {
                let v = it.next().ok_or("--workload needs a value")?;
                params.workload = Workload::parse(&v).ok_or_else(|| format!("bad --workload {v} (mixed|realloc)"))?;
            }
            _ => rest.push(a),
        }
    }
    Ok((params, rest))
}

/// Parses the process's own arguments, exiting with a usage message on error.
pub fn params_from_env(usage: &str) -> (Params, Vec<String>) {
    match parse_args(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}\nusage: {usage}");
            std::process::exit(2);
        }
    }
}

/// Formats the result line: allocator, params, wall time of the workload,
/// checksum, then `extra` pairs in order.
pub fn result_line(
    allocator: &str,
    params: &Params,
    wall: Duration,
    checksum: u64,
    extra: &[(&str, String)],
) -> String {
    let mut s = format!(
        "{RESULT_PREFIX} allocator={allocator} workload={} threads={} scale={} workload_s={:.6} checksum={checksum:016x}",
        params.workload.as_str(),
        params.threads,
        params.scale,
        wall.as_secs_f64()
    );
    for (k, v) in extra {
        debug_assert!(!k.contains(' ') && !v.contains(' ') && !k.contains('='));
        let _ = write!(s, " {k}={v}");
    }
    s
}

/// Parses a result line back into its pairs, in order; `None` if `line` is
/// not one.
pub fn parse_result_line(line: &str) -> Option<Vec<(String, String)>> {
    let rest = line.strip_prefix(RESULT_PREFIX)?.strip_prefix(' ')?;
    rest.split_whitespace().map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let (p, rest) = parse_args(["exact", "--threads", "3", "--scale", "0.5"].map(String::from)).unwrap();
        assert_eq!(p, Params { threads: 3, scale: 0.5, workload: Workload::Mixed });
        let (p, _) = parse_args(["--workload", "realloc"].map(String::from)).unwrap();
        assert_eq!(p.workload, Workload::Realloc);
        assert!(parse_args(["--workload", "x"].map(String::from)).is_err());
        assert_eq!(rest, vec!["exact".to_string()]);
        assert!(parse_args(["--threads", "0"].map(String::from)).is_err());
        assert!(parse_args(["--scale", "-1"].map(String::from)).is_err());
        assert!(parse_args(["--scale"].map(String::from)).is_err());
    }

    #[test]
    fn result_line_parses_back() {
        let p = Params::default();
        let line = result_line("leaktrace", &p, Duration::from_millis(812), 0xabc, &[("mode", "exact".into())]);
        let kv = parse_result_line(&line).unwrap();
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("allocator"), Some("leaktrace"));
        assert_eq!(get("workload_s"), Some("0.812000"));
        assert_eq!(get("checksum"), Some("0000000000000abc"));
        assert_eq!(get("mode"), Some("exact"));
        assert!(parse_result_line("RESULTS x=1").is_none());
        assert!(parse_result_line("dhat: Total: 1 bytes").is_none());
    }
}
