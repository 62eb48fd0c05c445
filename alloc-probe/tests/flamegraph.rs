//! `flamegraph`: one snapshot (live bytes by stack) and two (growth), the
//! call site's file:line in the frame labels, bytes as the unit; bad input.

mod common;

use common::*;

fn titles(svg: &str) -> Vec<String> {
    svg.split("<title>").skip(1).map(|p| p[..p.find("</title>").unwrap()].replace("&quot;", "\"")).collect()
}

#[test]
fn live_and_growth_flame_graphs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    write_json(&a, &snapshot_json("before", 0, 3, &[(&LEAK, 1024), (&CHURN, 300 * 1024)]));
    write_json(&b, &snapshot_json("after", 10, 3, &[(&LEAK, 1024 * 1024), (&CHURN, 100 * 1024)]));

    let heap = tmp.path().join("heap.svg");
    probe(["flamegraph", &arg(&b), "-o", &arg(&heap)]).ok();
    let svg = std::fs::read_to_string(&heap).unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("Live bytes by stack: &quot;after&quot;"), "the title");
    let t = titles(&svg);
    let leak = t.iter().find(|t| t.contains("sessions.rs:42")).expect("the leak's frame");
    assert_eq!(leak, "app::sessions::Registry::open (/srv/app/src/sessions.rs:42) (1,048,576 bytes, 91.10%)");
    assert!(t.iter().any(|t| t.starts_with("all (1,150,976 bytes")), "{t:?}");

    let growth = tmp.path().join("growth.svg");
    probe(["flamegraph", &arg(&a), &arg(&b), "-o", &arg(&growth), "--title", "Sessions grew"]).ok();
    let svg = std::fs::read_to_string(&growth).unwrap();
    assert!(svg.contains(">Sessions grew<"));
    let t = titles(&svg);
    let leak = t.iter().find(|t| t.contains("sessions.rs:42")).expect("the leak's frame");
    assert!(leak.contains("1,048,576 bytes") && leak.contains("+"), "{leak}");
    let pool = t.iter().find(|t| t.contains("pool.rs:88")).expect("the pool's frame");
    assert!(pool.contains("102,400 bytes") && pool.contains("-"), "{pool}");

    // --include keeps the matching stacks only.
    let only = tmp.path().join("only.svg");
    probe(["flamegraph", &arg(&b), "-i", "pool", "-o", &arg(&only)]).ok();
    let t = titles(&std::fs::read_to_string(&only).unwrap());
    assert!(t.iter().all(|t| !t.contains("sessions.rs")), "{t:?}");

    // Nothing live: a picture that says so.
    let empty = tmp.path().join("empty.json");
    write_json(&empty, &snapshot_json("empty", 0, 3, &[]));
    let out = tmp.path().join("empty.svg");
    probe(["flamegraph", &arg(&empty), "-o", &arg(&out)]).ok();
    assert!(std::fs::read_to_string(&out).unwrap().contains("no live bytes"));
}

#[test]
fn bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.json");
    write_json(&a, &snapshot_json("a", 0, 3, &[(&LEAK, 1024)]));
    let a = arg(&a);
    let out = arg(&tmp.path().join("x.svg"));
    let missing = arg(&tmp.path().join("missing.json"));
    probe(["flamegraph", &missing, "-o", &out]).assert_bad_input(&[&missing, "No such file"]);
    probe(["flamegraph", &a, &missing, "-o", &out]).assert_bad_input(&[&missing]);
    probe(["flamegraph", &a, &a, &a, "-o", &out]).assert_bad_input(&["no more were expected"]);
    probe(["flamegraph", &a]).assert_bad_input(&["--output"]);
    let diff = arg(&tmp.path().join("diff.json"));
    probe(["diff", &a, &a, "-f", "json", "-o", &diff]).ok();
    probe(["flamegraph", &diff, "-o", &out]).assert_bad_input(&[&diff, "leaktrace diff"]);
    let dir = arg(tmp.path());
    probe(["flamegraph", &dir, "-o", &out]).assert_bad_input(&[&dir, "directory"]);
    probe(["report", &a, "-o", &out]).assert_bad_input(&[&a, "two or more"]);
    probe(["report", &missing, &a, "-o", &out]).assert_bad_input(&[&missing]);
    probe(["report", &a, &a]).assert_bad_input(&["--output"]);
    assert!(!tmp.path().join("x.svg").exists());
}
