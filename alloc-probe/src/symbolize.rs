//! `symbolize`: resolve a snapshot's unresolved frames (taken with
//! symbolization off, or by a stripped binary) from the binary or from a
//! debug file found by build id; and the one-line note `show`, `diff` and
//! `trend` print when a snapshot still has unresolved sites.

use anyhow::bail;
use clap::Args;
use leaktrace::Snapshot;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SymbolizeArgs {
    /// The snapshot with unresolved frames (leaktrace.snapshot.v1 JSON)
    #[arg(value_name = "SNAP.json")]
    pub snapshot: PathBuf,
    /// A directory of debug files: DIR/.build-id/xx/rest.debug (the
    /// /usr/lib/debug layout, searched too) or DIR/NAME.debug. Repeatable
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
    /// Where to write the symbolized snapshot (atomically)
    #[arg(short = 'o', long = "output", value_name = "OUT.json", required = true)]
    pub output: PathBuf,
}

pub fn run(args: SymbolizeArgs) -> anyhow::Result<ExitCode> {
    for d in &args.debug_dirs {
        if !d.is_dir() {
            bail!("{}: not a directory (--debug-dir)", d.display());
        }
    }
    let snap = crate::input::read_snapshot(&args.snapshot)?;
    let (out, outcome) = leaktrace::symbolize_snapshot(&snap, &args.debug_dirs);
    out.write_json(&args.output).map_err(crate::lib_error)?;
    let left = leaktrace::unresolved_sites(&out);
    let mut why: Vec<String> = outcome
        .modules
        .iter()
        .filter(|m| m.unresolved_frames > 0)
        .map(|m| format!("{}: {}", m.path, m.error.as_deref().unwrap_or("addresses not in its debug info")))
        .collect();
    why.dedup();
    eprintln!(
        "alloc-probe: symbolize: {}: {} frame(s) resolved, {} left unresolved, {} unresolved site(s){}{}",
        args.output.display(),
        outcome.resolved_frames,
        outcome.unresolved_frames,
        left,
        if why.is_empty() { "" } else { "; " },
        why.join("; "),
    );
    Ok(ExitCode::SUCCESS)
}

/// The note for one snapshot read from `path`, if some sites are unresolved.
pub fn note(path: &Path, snap: &Snapshot) {
    let n = leaktrace::unresolved_sites(snap);
    if n > 0 {
        eprintln!(
            "alloc-probe: note: {}: {n} of {} site(s) unresolved (object+offset, no file:line); resolve them with \
             `alloc-probe symbolize {} [--debug-dir DIR] -o OUT.json`",
            path.display(),
            snap.traces.len(),
            path.display()
        );
    }
}

/// The note for a series (`trend`): one line for all its snapshots.
pub fn note_series(snaps: &[Snapshot]) {
    let with: Vec<&Snapshot> = snaps.iter().filter(|s| leaktrace::unresolved_sites(s) > 0).collect();
    if let Some(first) = with.first() {
        eprintln!(
            "alloc-probe: note: {} of {} snapshot(s) have unresolved sites (object+offset, no file:line; first: {:?}); \
             resolve each with `alloc-probe symbolize SNAP.json [--debug-dir DIR] -o OUT.json`",
            with.len(),
            snaps.len(),
            first.label
        );
    }
}
