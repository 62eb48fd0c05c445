//! JSON: a snapshot written and read back diffs like the live one; the
//! diff's JSON has every documented key; bad files are errors, not panics.

use leaktrace::{Config, GroupBy, Snapshot, SnapshotDiff};
use serde_json::Value;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

fn keys(v: &Value, want: &[&str], what: &str) {
    for k in want {
        assert!(v.get(k).is_some(), "{what} lacks {k:?}: {v}");
    }
}

#[test]
fn round_trip_and_bad_files() {
    let dir = std::env::temp_dir().join(format!("leaktrace-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    leaktrace::start(Config::default());
    let keep: Vec<String> = (0..300).map(|i| format!("item number {i}")).collect();
    let first = leaktrace::take_snapshot("first");
    let path = dir.join("first.json");
    first.write_json(&path).unwrap();
    let back = Snapshot::read_json(&path).unwrap();
    assert_eq!(back, first);

    let more: Vec<Vec<u8>> = (0..50).map(|_| vec![0u8; 333]).collect();
    let second = leaktrace::take_snapshot("second");
    for g in [GroupBy::Line, GroupBy::Function, GroupBy::File, GroupBy::Traceback] {
        assert_eq!(second.compare_to(&back, g), second.compare_to(&first, g), "{g:?}");
    }

    // Each distinct frame is stored once.
    let mut frames = back.frames.clone();
    frames.sort();
    frames.dedup();
    assert_eq!(frames.len(), back.frames.len());

    let diff = second.compare_to(&first, GroupBy::Line);
    let v: Value = serde_json::from_str(&diff.to_json()).unwrap();
    assert_eq!(v["format"], "leaktrace.diff.v1");
    assert_eq!(v["group_by"], "line");
    keys(&v, &["format", "group_by", "from", "to", "elapsed_seconds", "totals", "sites"], "diff");
    for side in ["from", "to"] {
        keys(&v[side], &["label", "taken_at", "current_bytes", "blocks"], side);
    }
    assert_eq!(v["from"]["label"], "first");
    keys(&v["totals"], &["size_diff", "count_diff"], "totals");
    let sites = v["sites"].as_array().unwrap();
    assert!(!sites.is_empty());
    for (i, s) in sites.iter().enumerate() {
        keys(
            s,
            &["rank", "location", "size", "size_diff", "count", "count_diff", "growth_bytes_per_sec", "traceback"],
            "site",
        );
        assert_eq!(s["rank"].as_u64(), Some(i as u64 + 1));
        keys(&s["location"], &["function", "file", "line"], "location");
        assert!(s["size"].is_u64() && s["size_diff"].is_i64() && s["count"].is_u64() && s["count_diff"].is_i64());
        for f in s["traceback"].as_array().unwrap() {
            keys(f, &["function", "file", "line"], "frame");
        }
    }
    let dpath = dir.join("diff.json");
    diff.write_json(&dpath).unwrap();
    assert_eq!(SnapshotDiff::read_json(&dpath).unwrap(), diff);

    let snap_json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(snap_json["format"], "leaktrace.snapshot.v1");
    keys(&snap_json, &["label", "taken_at", "totals", "frames", "traces", "mode", "capture"], "snapshot");

    // Bad files: errors naming the file, never a panic.
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated.json", text[..text.len() / 2].to_string(), "line"),
        ("foreign.json", r#"{"format": "pprof.profile.v3", "x": 1}"#.into(), "foreign format"),
        ("newer.json", text.replace("leaktrace.snapshot.v1", "leaktrace.snapshot.v9"), "newer"),
        ("notjson.json", "hello".into(), "line 1"),
        ("empty.json", String::new(), "empty"),
    ];
    for (name, body, expect) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let e = Snapshot::read_json(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(e.contains(expect), "{name}: {e}");
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    }
    let e = Snapshot::read_json(&dpath).unwrap_err().to_string();
    assert!(e.contains("is a leaktrace diff"), "{e}");
    let e = Snapshot::read_json(dir.join("missing.json")).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
    drop((keep, more));
    leaktrace::stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
