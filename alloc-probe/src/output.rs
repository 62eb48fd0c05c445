//! Where reports go: stdout, or a file written atomically. A closed stdout
//! (`alloc-probe diff a b | head`) ends the program quietly with status 0.

use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Writes `text` to `path` atomically, or to stdout when `path` is `None`
/// or `-`.
pub fn emit(text: &str, path: Option<&Path>) -> anyhow::Result<()> {
    match path {
        Some(p) if p != Path::new("-") => leaktrace::write_atomic(p, text.as_bytes()).map_err(crate::lib_error),
        _ => print(text),
    }
}

/// Writes `text` to stdout. Rust ignores SIGPIPE, so a closed pipe comes back
/// as an `io::Error` of kind `BrokenPipe`; `main` turns that into status 0.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).context("stdout")?;
    out.flush().context("stdout")?;
    Ok(())
}

/// Whether `err` comes from writing to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
