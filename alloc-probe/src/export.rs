//! `export`: a snapshot or a diff in a format other tools read (pprof).

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::{bail, Context};
use leaktrace::{Snapshot, SnapshotDiff};
use serde::Deserialize;
use std::path::Path;
use std::process::ExitCode;

/// What the input file holds, by its `format`.
enum Input {
    Snapshot(Box<Snapshot>),
    Diff(Box<SnapshotDiff>),
}

#[derive(Deserialize)]
struct Peek {
    format: Option<serde_json::Value>,
}

/// Reads a snapshot or a diff. A diff is recognized by its `format`;
/// anything else is read as a snapshot, whose reader explains what is wrong
/// (truncated, foreign, newer).
fn read_input(path: &Path) -> anyhow::Result<Input> {
    if path.is_dir() {
        bail!(
            "{}: is a directory, expected a snapshot or a diff (leaktrace.snapshot.v1, leaktrace.diff.v1)",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let format = serde_json::from_str::<Peek>(&text).ok().and_then(|p| p.format?.as_str().map(str::to_owned));
    match format.as_deref() {
        Some(f) if f.starts_with("leaktrace.diff.") => {
            Ok(Input::Diff(Box::new(SnapshotDiff::read_json(path).map_err(crate::lib_error)?)))
        }
        Some(f) if f.starts_with("leaktrace.") && !f.starts_with("leaktrace.snapshot.") => {
            bail!(
                "{}: is a {f} file; export reads a snapshot (leaktrace.snapshot.v1) or a diff (leaktrace.diff.v1)",
                path.display()
            )
        }
        _ => Ok(Input::Snapshot(Box::new(Snapshot::from_json(&text, path).map_err(crate::lib_error)?))),
    }
}

/// Writes `bytes` to `path` atomically, or to stdout for `-`.
pub fn write_output(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path == Path::new("-") {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).context("stdout")?;
        return out.flush().context("stdout");
    }
    leaktrace::write_atomic(path, bytes).map_err(crate::lib_error)
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.input)?;
    let bytes = match (args.format, &input) {
        (ExportFormat::Pprof, Input::Snapshot(s)) => leaktrace::pprof::from_snapshot(s),
        (ExportFormat::Pprof, Input::Diff(d)) => leaktrace::pprof::from_diff(d),
    };
    write_output(&args.output, &bytes)?;
    Ok(ExitCode::SUCCESS)
}
