//! Reading snapshots: one file, several files, or a directory of them; and
//! the `--include`/`--exclude` patterns.
//!
//! Every error names the file or directory concerned first; the library's
//! own errors already do (`path: line 3, column 5: ...`).

use anyhow::{bail, Context};
use leaktrace::{Filter, Snapshot};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Reads one snapshot file.
pub fn read_snapshot(path: &Path) -> anyhow::Result<Snapshot> {
    if path.is_dir() {
        bail!("{}: is a directory, expected a snapshot file (leaktrace.snapshot.v1)", path.display());
    }
    Snapshot::read_json(path).map_err(crate::lib_error)
}

/// Reads a series for `trend`: each input is a snapshot file or a
/// directory (see [`read_dir_snapshots`]).
pub fn read_series(inputs: &[PathBuf]) -> anyhow::Result<Vec<Snapshot>> {
    let mut snapshots = Vec::new();
    for input in inputs {
        if input.is_dir() {
            snapshots.extend(read_dir_snapshots(input)?);
        } else {
            snapshots.push(read_snapshot(input)?);
        }
    }
    if snapshots.len() < 2 {
        let what = match inputs {
            [one] if one.is_dir() => format!("{}: holds only one snapshot", one.display()),
            [one] => format!("{}: one snapshot", one.display()),
            _ => format!(
                "{}: one snapshot",
                inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        bail!("{what}; a trend needs two or more (give several files or a directory)");
    }
    Ok(snapshots)
}

/// Just the `format` field, to tell snapshots from the other leaktrace
/// files that share a directory with them.
#[derive(Deserialize)]
struct Peek {
    format: Option<serde_json::Value>,
}

/// Every snapshot among the `*.json` files of `dir`, in file-name order
/// (`trend` orders them by `taken_at` afterwards).
///
/// `scenario` and programs write diffs and trends next to their snapshots,
/// so a file whose `format` names another leaktrace kind
/// (`leaktrace.diff.v1`, `leaktrace.trend.v1`, `leaktrace.statistics.v1`) is
/// skipped. Anything else that is not a readable snapshot (corrupt or
/// truncated JSON, a foreign format, a newer version) is an error naming
/// that file: a series with a hole in it would give a wrong trend. Files not
/// ending in `.json`, hidden files and subdirectories are not looked at.
pub fn read_dir_snapshots(dir: &Path) -> anyhow::Result<Vec<Snapshot>> {
    let entries = std::fs::read_dir(dir).with_context(|| dir.display().to_string())?;
    let mut json = Vec::new();
    let mut others = 0usize;
    for entry in entries {
        let entry = entry.with_context(|| dir.display().to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_json = name.to_ascii_lowercase().ends_with(".json") && !name.starts_with('.');
        if is_json && !path.is_dir() {
            json.push(path);
        } else {
            others += 1;
        }
    }
    json.sort();
    if json.is_empty() {
        if others == 0 {
            bail!("{}: empty directory, expected leaktrace snapshots (*.json)", dir.display());
        }
        bail!("{}: no *.json files among its {others} entries, expected leaktrace snapshots", dir.display());
    }
    let mut snapshots = Vec::new();
    let mut skipped = Vec::new();
    for path in &json {
        // A FIFO or a device would block or never end: only files are read.
        // (A dangling symlink is left to the read below, which names it.)
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            bail!("{}: not a regular file, expected a leaktrace snapshot", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        if let Some(kind) = other_leaktrace_kind(&text) {
            skipped.push(format!("{} ({kind})", file_name(path)));
            continue;
        }
        snapshots.push(Snapshot::from_json(&text, path).map_err(crate::lib_error)?);
    }
    if snapshots.is_empty() {
        bail!("{}: no snapshots among its {} JSON files (skipped {})", dir.display(), json.len(), skipped.join(", "));
    }
    Ok(snapshots)
}

/// The format of a leaktrace file of another kind than a snapshot
/// (`leaktrace.diff.v1`), or `None` (a snapshot, or not leaktrace's at all:
/// those are for `Snapshot::from_json` to judge and explain).
fn other_leaktrace_kind(text: &str) -> Option<String> {
    let peek: Peek = serde_json::from_str(text).ok()?;
    let format = peek.format?.as_str()?.to_string();
    let kind = format.rsplit_once(".v").map_or(format.as_str(), |(k, _)| k);
    (kind.starts_with("leaktrace.") && kind != "leaktrace.snapshot").then_some(format)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The library filters for `--include`/`--exclude`: each pattern is
/// matched against a trace's call-site file path and against its function
/// name, so `--include cache` keeps `src/cache.rs` and `app::cache::insert`
/// alike. A pattern with no `*` or `?` matches as a substring; with one, it
/// must match the whole path or name (`*/src/scenarios/*`).
pub fn filters(include: &[String], exclude: &[String]) -> Vec<Filter> {
    let glob = |p: &String| {
        if p.contains(['*', '?']) {
            p.clone()
        } else {
            format!("*{p}*")
        }
    };
    let mut out = Vec::new();
    for p in include {
        out.push(Filter::include_file(glob(p)));
        out.push(Filter::include_function(glob(p)));
    }
    for p in exclude {
        out.push(Filter::exclude_file(glob(p)));
        out.push(Filter::exclude_function(glob(p)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace::Frame;

    fn frame(file: &str, function: &str) -> Frame {
        Frame::new(function, file, 1)
    }

    #[test]
    fn patterns_match_file_or_function_glob_or_substring() {
        let cache = frame("/app/src/cache.rs", "app::cache::insert");
        let pool = frame("/app/src/pool.rs", "app::pool::get");
        let pass = |inc: &[&str], exc: &[&str], f: &Frame| {
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            let exc: Vec<String> = exc.iter().map(|s| s.to_string()).collect();
            Filter::pass_all(&filters(&inc, &exc), f)
        };
        assert!(pass(&[], &[], &cache));
        assert!(pass(&["cache.rs"], &[], &cache));
        assert!(!pass(&["cache.rs"], &[], &pool));
        assert!(pass(&["app::pool::*"], &[], &pool));
        assert!(!pass(&["src/pool.rs"], &["get"], &pool));
        assert!(pass(&["cache", "pool"], &[], &pool));
        assert!(!pass(&["/src/*.rs"], &[], &pool), "a glob matches the whole path");
        assert!(pass(&["*/src/*.rs"], &[], &pool));
    }

    #[test]
    fn other_kinds_are_recognized() {
        assert_eq!(other_leaktrace_kind(r#"{"format":"leaktrace.diff.v1"}"#).as_deref(), Some("leaktrace.diff.v1"));
        assert_eq!(other_leaktrace_kind(r#"{"format":"leaktrace.trend.v7"}"#).as_deref(), Some("leaktrace.trend.v7"));
        assert_eq!(other_leaktrace_kind(r#"{"format":"leaktrace.snapshot.v1"}"#), None);
        assert_eq!(other_leaktrace_kind(r#"{"format":"leaktrace.snapshot.v2"}"#), None);
        assert_eq!(other_leaktrace_kind(r#"{"format":"pprof"}"#), None);
        assert_eq!(other_leaktrace_kind("{\"format\":"), None);
        assert_eq!(other_leaktrace_kind("[]"), None);
    }
}
