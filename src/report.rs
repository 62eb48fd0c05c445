//! JSON files: the `leaktrace.snapshot.v1` and `leaktrace.diff.v1` formats,
//! read with clear errors and written atomically.

#![forbid(unsafe_code)]

use crate::{Snapshot, SnapshotDiff};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `format` of snapshot files.
pub const SNAPSHOT_FORMAT: &str = "leaktrace.snapshot.v1";
/// The `format` of diff files.
pub const DIFF_FORMAT: &str = "leaktrace.diff.v1";
/// The `format` of trend files.
pub const TREND_FORMAT: &str = "leaktrace.trend.v1";

/// An I/O or format problem with a leaktrace file. Its message starts with
/// the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    // Not a `#[source]`: the message already says what the OS said, and a
    // source would print it twice in `{:#}` chains.
    #[error("{}: {io}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        io: std::io::Error,
    },
    /// The file is not valid JSON, or misses a field.
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Valid JSON, but not a file of the kind expected (another format,
    /// another leaktrace kind, or a newer version).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. } | Error::Json { path, .. } | Error::Format { path, .. } => path,
        }
    }
}

/// A library result.
pub type Result<T> = std::result::Result<T, Error>;

fn json_error(path: &Path, e: serde_json::Error) -> Error {
    let message = e.to_string();
    // serde_json appends " at line L column C"; the position has its own fields.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    Error::Json { path: path.to_path_buf(), line: e.line(), column: e.column(), message }
}

/// Reads `path` as JSON of the leaktrace kind `expected` (its `format`
/// without the version, e.g. `"leaktrace.snapshot"`), checking the format
/// field before the rest.
pub(crate) fn read_kind<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|io| Error::Io { path: path.to_path_buf(), io })?;
    parse_kind(path, &text, expected)
}

/// Like [`read_kind`], on text already read.
pub(crate) fn parse_kind<T: DeserializeOwned>(path: &Path, text: &str, expected: &str) -> Result<T> {
    let format_err = |message: String| Error::Format { path: path.to_path_buf(), message };
    if text.trim().is_empty() {
        return Err(format_err("empty file, expected JSON".into()));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(path, e))?;
    let Some(obj) = value.as_object() else {
        return Err(format_err(format!("expected a JSON object ({expected}), found {}", kind_of(&value))));
    };
    let Some(format) = obj.get("format").and_then(|f| f.as_str()).map(str::to_owned) else {
        return Err(format_err(format!("not a leaktrace file: no \"format\" field (expected {expected}.v1)")));
    };
    let format = format.as_str();
    let (kind, version) = match format.rsplit_once(".v") {
        Some((k, v)) => (k, v.parse::<u32>().ok()),
        None => (format, None),
    };
    if !kind.starts_with("leaktrace.") {
        return Err(format_err(format!("foreign format {format:?}, expected {expected}.v1")));
    }
    if kind != expected {
        let what = kind.trim_start_matches("leaktrace.");
        return Err(format_err(format!("is a leaktrace {what} ({format}), expected {expected}.v1")));
    }
    match version {
        Some(1) => {}
        Some(v) if v > 1 => {
            return Err(format_err(format!(
                "format {format} is newer than this leaktrace reads ({expected}.v1); upgrade leaktrace"
            )))
        }
        _ => return Err(format_err(format!("unknown version in format {format:?}, expected {expected}.v1"))),
    }
    serde_json::from_value(value).map_err(|e| format_err(format!("invalid {format}: {e}")))
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    format: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` as pretty JSON with a leading `format` field.
pub(crate) fn to_json<T: Serialize>(format: &'static str, body: &T) -> String {
    // Serializing plain data structs with string keys cannot fail.
    serde_json::to_string_pretty(&Tagged { format, body }).unwrap_or_default()
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`, and the directory
/// flushed so that the rename survives a crash. Readers see the old file or
/// the new one, never half of one.
///
/// The temporary file is `.NAME.PID.N.tmp`: hidden and not `*.json`, so
/// directory readers (`alloc-probe trend DIR`) never pick it up. A writer
/// killed mid-write leaves its temporary file behind; each call first
/// removes those of earlier writers of files of the same kind (`.json`)
/// whose process is gone (see [`remove_stale_temps`]).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |io| Error::Io { path: path.to_path_buf(), io };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Format { path: path.to_path_buf(), message: "not a file path".into() })?;
    let name = name.to_string_lossy();
    remove_stale_temps(&dir, &name);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if let Err(e) = result {
        // Gone already if only the directory flush failed.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Flushes `dir` itself, so that a rename into it is on disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files there; the rename is as
        // durable as the platform makes it.
        let _ = dir;
        Ok(())
    }
}

/// The writer's pid, if `file` is a temporary file of [`write_atomic`]
/// (`.NAME.PID.N.tmp`) for `name` or for another file of its kind: the same
/// extension (`.json`). The kind, not just the name, because some writers
/// never write a name twice (the monitor's `leak-PID-TIME-SEQ.json`).
fn temp_owner(file: &str, name: &str) -> Option<u32> {
    let rest = file.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    let (n, pid, target) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    let ext = |s: &str| Path::new(s).extension().map(|e| e.to_ascii_lowercase());
    let same_kind = target == name || ext(target).is_some_and(|e| Some(e) == ext(name));
    same_kind.then(|| pid.parse().ok())?
}

/// Whether process `pid` may still be running (and writing), as far as this
/// process can tell: only a pid that `/proc` shows absent counts as gone.
fn may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        // Another thread of ours may be writing it right now.
        return true;
    }
    if !Path::new("/proc/self").exists() {
        // No procfs (not Linux, or not mounted): no way to tell.
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files that writers of `dir/name`, or of files of
/// its kind in `dir`, killed mid-write left behind: those whose pid no
/// longer runs. Best effort: a file that
/// cannot be listed or removed is left alone, and the write goes on.
///
/// Temporary files of live processes are kept, even if they are stale (a
/// reused pid): a later writer removes them. A writer in another pid
/// namespace sharing the directory would look gone; its rename would then
/// fail and report an error, and nothing would be lost but that write.
fn remove_stale_temps(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| temp_owner(f, name)) else { continue };
        if !may_be_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Snapshot {
    /// This snapshot as `leaktrace.snapshot.v1` JSON.
    pub fn to_json(&self) -> String {
        to_json(SNAPSHOT_FORMAT, self)
    }

    /// Writes this snapshot to `path` atomically.
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let _ignore = crate::hot::control::ignore();
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a snapshot written by [`Snapshot::write_json`], in this process
    /// or another.
    pub fn read_json(path: impl AsRef<Path>) -> Result<Snapshot> {
        let path = path.as_ref();
        let mut snap: Snapshot = read_kind(path, "leaktrace.snapshot")?;
        snap.validate(path)?;
        Ok(snap)
    }

    /// Parses snapshot JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: impl AsRef<Path>) -> Result<Snapshot> {
        let path = origin.as_ref();
        let mut snap: Snapshot = parse_kind(path, text, "leaktrace.snapshot")?;
        snap.validate(path)?;
        Ok(snap)
    }

    /// Checks frame indices and fills `unix_seconds` from `taken_at` when a
    /// writer left it out.
    fn validate(&mut self, path: &Path) -> Result<()> {
        if self.unix_seconds == 0.0 {
            self.unix_seconds = crate::clock::parse_rfc3339(&self.taken_at).ok_or_else(|| Error::Format {
                path: path.to_path_buf(),
                message: format!("invalid {SNAPSHOT_FORMAT}: taken_at {:?} is not an RFC 3339 time", self.taken_at),
            })?;
        }
        for (i, t) in self.traces.iter().enumerate() {
            if let Some(&bad) = t.frames.iter().find(|&&f| f as usize >= self.frames.len()) {
                return Err(Error::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "invalid {SNAPSHOT_FORMAT}: trace {i} names frame {bad}, but there are {} frames",
                        self.frames.len()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl SnapshotDiff {
    /// This diff as `leaktrace.diff.v1` JSON.
    pub fn to_json(&self) -> String {
        to_json(DIFF_FORMAT, self)
    }

    /// Writes this diff to `path` atomically.
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let _ignore = crate::hot::control::ignore();
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a diff written by [`SnapshotDiff::write_json`].
    pub fn read_json(path: impl AsRef<Path>) -> Result<SnapshotDiff> {
        read_kind(path.as_ref(), "leaktrace.diff")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_kind::<Snapshot>(Path::new("x.json"), text, "leaktrace.snapshot").unwrap_err().to_string()
    }

    #[test]
    fn rejects_bad_input_with_the_path_first() {
        assert_eq!(err(""), "x.json: empty file, expected JSON");
        assert!(err("{\"format\": \"leaktrace.snapshot.v1\", \"label\"").starts_with("x.json: line 1, column"));
        assert!(err("[1,2]").contains("expected a JSON object"));
        assert!(err("{\"a\":1}").contains("no \"format\" field"));
        assert!(err("{\"format\":\"pprof.v1\"}").contains("foreign format"));
        assert!(err("{\"format\":\"leaktrace.diff.v1\"}").contains("is a leaktrace diff"));
        assert!(err("{\"format\":\"leaktrace.snapshot.v2\"}").contains("newer"));
        assert!(err("{\"format\":\"leaktrace.snapshot.v1\"}").contains("missing field"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("leaktrace-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let missing = dir.join("no/such/dir/a.json");
        assert!(write_atomic(&missing, b"x").unwrap_err().to_string().starts_with(&missing.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_names_are_recognized_exactly() {
        assert_eq!(temp_owner(".a.json.42.0.tmp", "a.json"), Some(42));
        assert_eq!(temp_owner(".a.json.42.17.tmp", "a.json"), Some(42));
        assert_eq!(temp_owner(".b.json.42.0.tmp", "a.json"), Some(42), "another file of the kind");
        assert_eq!(temp_owner(".B.JSON.42.0.tmp", "a.json"), Some(42));
        assert_eq!(temp_owner(".a.md.42.0.tmp", "a.json"), None, "another kind");
        assert_eq!(temp_owner(".Makefile.42.0.tmp", "Makefile"), Some(42));
        assert_eq!(temp_owner(".other.42.0.tmp", "Makefile"), None);
        assert_eq!(temp_owner(".a.json.x.0.tmp", "a.json"), None);
        assert_eq!(temp_owner(".a.json.42.tmp", "a.json"), None);
        assert_eq!(temp_owner(".42.0.tmp", "a.json"), None);
        assert_eq!(temp_owner(".a.json.42.0.tmp.json", "a.json"), None);
        assert_eq!(temp_owner("a.json.42.0.tmp", "a.json"), None);
    }

    #[test]
    fn a_write_removes_temp_files_of_dead_writers_only() {
        let dir = std::env::temp_dir().join(format!("leaktrace-report-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No pid reaches i32::MAX (Linux caps pids at 2^22); pid 1 always runs.
        let dead = format!(".a.json.{}.3.tmp", i32::MAX);
        let dead_other = format!(".b.json.{}.0.tmp", i32::MAX);
        let keep = [".a.json.1.0.tmp".to_string(), format!(".b.md.{}.0.tmp", i32::MAX), "notes.txt".to_string()];
        for f in keep.iter().chain([&dead, &dead_other]) {
            std::fs::write(dir.join(f), b"half").unwrap();
        }
        write_atomic(&dir.join("a.json"), b"whole").unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut want: Vec<String> = keep.to_vec();
        want.push("a.json".into());
        want.sort();
        if Path::new("/proc/self").exists() {
            assert_eq!(left, want);
        } else {
            assert!(left.contains(&dead));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
