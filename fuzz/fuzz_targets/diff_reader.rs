//! `SnapshotDiff::read_json` on any file: an error naming the file, or a
//! diff that filters, ranks and writes back to the same diff.

#![no_main]

use leaktrace::SnapshotDiff;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

/// One file per fuzzing process, on tmpfs when there is one: the reader
/// under test takes a path.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        dir.join(format!("leaktrace-fuzz-diff-{}.json", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    let origin = path.display().to_string();
    match SnapshotDiff::read_json(path) {
        Err(e) => common::check_err(&e, &origin),
        Ok(d) => {
            common::exercise_diff(&d);
            let back = d.to_json();
            let v: serde_json::Value = serde_json::from_str(&back).expect("a diff writes valid JSON");
            assert_eq!(v["format"], leaktrace::DIFF_FORMAT);
            let again: SnapshotDiff = serde_json::from_value(v).expect("a diff read must write back readable");
            assert_eq!(again, d, "written and read back, a diff must be the same");
        }
    }
});
