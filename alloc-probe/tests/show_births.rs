//! `alloc-probe show` on one snapshot with birth epochs: a leak born all
//! along is listed first, above a larger load born at one time and churn
//! born just now, each with its shape and age bar.

mod common;

use common::*;
use serde_json::json;

fn frame(file: &str, line: u32) -> serde_json::Value {
    json!({"function": format!("app::f{line}"), "file": file, "line": line})
}

#[test]
fn show_lists_the_accumulating_site_first() {
    let dir = std::env::temp_dir().join(format!("alloc-probe-births-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.json");
    // Taken at epoch 10: the leak was born over epochs 1..=10 (in the
    // doubling age ranges a snapshot keeps), the load in epoch 1, the
    // churn in epoch 10.
    let b = |epoch: u64, last: u64, size: u64| json!({"epoch": epoch, "epoch_last": last, "size": size, "count": size / 1024});
    let snap = json!({
        "format": "leaktrace.snapshot.v1",
        "label": "one", "taken_at": "2026-12-02T04:00:00Z", "mode": "exact", "capture": "frame-pointers",
        "frames_per_trace": 16, "epoch": 10,
        "totals": {"current_bytes": 0, "peak_bytes": 0, "blocks": 0, "traced_bytes": 0, "tracker_bytes": 0, "untracked_blocks": 0},
        "frames": [frame("src/load.rs", 3), frame("src/leak.rs", 7), frame("src/churn.rs", 9)],
        "traces": [
            {"size": 524288, "count": 64, "frames": [0], "births": [b(2, 2, 524288)]},
            {"size": 81920, "count": 80, "frames": [1], "births": [b(2, 2, 8192), b(3, 6, 32768), b(7, 8, 16384), b(9, 9, 8192), b(10, 10, 16384)]},
            {"size": 32768, "count": 16, "frames": [2], "births": [b(10, 10, 32768)]}
        ]
    });
    std::fs::write(&path, serde_json::to_string_pretty(&snap).unwrap()).unwrap();
    let out = probe(["show", &arg(&path)]).ok().to_string();
    let rows: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].contains("src/leak.rs:7") && rows[0].contains("accumulating"), "{out}");
    assert!(rows[1].contains("src/load.rs:3") && rows[1].contains("load"), "{out}");
    assert!(rows[2].contains("src/churn.rs:9") && rows[2].contains("churn"), "{out}");
    assert!(out.contains("born (old → new)"), "{out}");
    // The JSON output carries the shape and births of each statistic.
    let j = probe(["show", &arg(&path), "-f", "json"]).json();
    let stats = j["statistics"].as_array().unwrap();
    let leak = stats.iter().find(|s| s["location"]["file"] == "src/leak.rs").unwrap();
    assert_eq!(leak["shape"], "accumulating");
    assert_eq!(leak["births"].as_array().unwrap().len(), 5);
    std::fs::remove_dir_all(&dir).ok();
}
