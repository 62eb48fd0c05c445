//! What `diff` and `show` print and write: tables with units, the JSON
//! documents, grouping, filters, `--top`, `-o`, and a closed stdout.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};

/// Two snapshots 10 s apart: the leak grows by 1 MiB, the pool shrinks.
fn pair(dir: &std::path::Path) -> (String, String) {
    let old = snapshot_json("before", 0, 7, &[(&LEAK, 1024), (&CHURN, 300 * 1024), (&FLAT, 64)]);
    let new = snapshot_json("after", 10, 7, &[(&LEAK, 1024 + 1024 * 1024), (&CHURN, 100 * 1024), (&FLAT, 64)]);
    let (a, b) = (dir.join("before.json"), dir.join("after.json"));
    write_json(&a, &old);
    write_json(&b, &new);
    (arg(&a), arg(&b))
}

#[test]
fn diff_table_ranks_with_units_and_rates() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = pair(tmp.path());
    let run = probe(["diff", &old, &new]);
    let out = run.ok();
    assert!(out.starts_with("diff \"before\" -> \"after\": 10.00 s apart, grouped by line"), "{out}");
    let header = out.lines().find(|l| l.contains("size_diff")).expect("a header row");
    for col in ["rank", "size", "size_diff", "count", "count_diff", "growth", "site"] {
        assert!(header.contains(col), "{header}");
    }
    let rows: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].contains("/srv/app/src/sessions.rs:42 (app::sessions::Registry::open)"), "{out}");
    assert!(rows[0].contains("+1.0 MiB") && rows[0].contains("+102.4 KiB/s"), "{out}");
    assert!(rows[2].contains("pool.rs:88") && rows[2].contains("-200.0 KiB"), "{out}");
    assert!(run.stderr.is_empty());

    // --top, then the JSON document, cut by --top too.
    let out = probe(["diff", &old, &new, "--top", "1"]).ok().to_string();
    assert_eq!(out.lines().filter(|l| l.trim_start().starts_with('#')).count(), 1);
    assert!(out.contains("2 more (--top 0 lists all)"), "{out}");
    let json = probe(["diff", &old, &new, "--format", "json", "--top", "2"]).json();
    assert_eq!(json["format"], "leaktrace.diff.v1");
    assert_eq!(json["sites"].as_array().unwrap().len(), 2);
    assert_eq!(json["totals"]["size_diff"], 1024 * 1024 - 200 * 1024, "totals cover every site");
    assert_eq!(json["elapsed_seconds"], 10.0);
}

#[test]
fn grouping_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = pair(tmp.path());
    let by_file = probe(["diff", &old, &new, "--group-by", "file", "-f", "json"]).json();
    assert_eq!(by_file["group_by"], "file");
    assert_eq!(by_file["sites"][0]["location"]["file"], LEAK.file);
    assert_eq!(by_file["sites"][0]["location"]["line"], 0);
    let by_fn = probe(["diff", &old, &new, "--group-by", "function", "-f", "json"]).json();
    assert_eq!(by_fn["sites"][0]["location"]["function"], LEAK.function);

    // A pattern matches the file or the function; plain words are substrings.
    let sites = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["diff", &old, &new, "-f", "json"];
        all.extend_from_slice(args);
        probe(&all).json()["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["location"]["file"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sites(&["--include", "pool"]), [CHURN.file]);
    assert_eq!(sites(&["--include", "app::sessions::*"]), [LEAK.file]);
    assert_eq!(sites(&["--include", "*/src/pool.rs"]), [CHURN.file]);
    assert!(sites(&["--include", "/src/pool.rs*"]).is_empty(), "a glob matches the whole path");
    assert_eq!(sites(&["--exclude", "pool", "--exclude", "app::main"]), [LEAK.file]);
    assert_eq!(sites(&["--include", "pool", "--include", "main.rs"]).len(), 2);
}

#[test]
fn show_lists_statistics_largest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, new) = pair(tmp.path());
    let out = probe(["show", &new]).ok().to_string();
    assert!(out.starts_with("snapshot \"after\" taken 2026-11-25T00:00:10.000Z by pid 7"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert!(rows[0].contains("sessions.rs:42") && rows[0].contains("1.0 MiB"), "{out}");
    assert!(rows[1].contains("pool.rs:88") && rows[1].contains("100.0 KiB"), "{out}");
    assert!(rows[2].contains("64 B"), "{out}");
    let json = probe(["show", &new, "--format", "json"]).json();
    assert_eq!(json["format"], "leaktrace.statistics.v1");
    assert_eq!(json["label"], "after");
    assert_eq!(json["statistics"][0]["rank"], 1);
    assert_eq!(json["statistics"][0]["size"], 1024 + 1024 * 1024);
    assert_eq!(json["statistics"][0]["location"]["file"], LEAK.file);
    assert_eq!(json["statistics"].as_array().unwrap().len(), 3);
    let only = probe(["show", &new, "--format", "json", "--exclude", "sessions"]).json();
    assert_eq!(only["statistics"][0]["location"]["file"], CHURN.file);
}

#[test]
fn output_files_are_written_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = pair(tmp.path());
    let target = tmp.path().join("report.json");
    std::fs::write(&target, "old contents").unwrap();
    let run = probe(["diff", &old, &new, "-f", "json", "-o", &arg(&target)]);
    assert!(run.ok().is_empty(), "nothing on stdout with -o");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written["format"], "leaktrace.diff.v1");
    // No temporary file is left beside it.
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // `-o -` is stdout.
    assert!(probe(["show", &new, "-o", "-"]).ok().contains("sessions.rs:42"));
}

#[test]
fn a_reversed_pair_is_diffed_as_given_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = pair(tmp.path());
    let run = probe(["diff", &new, &old, "-f", "json"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(run.stderr.contains("note:") && run.stderr.contains("was taken after"), "{run:#?}");
    assert_eq!(run.json()["sites"][0]["location"]["file"], CHURN.file, "NEW minus OLD as given");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // Enough sites that the table outgrows any pipe buffer.
    let sites: Vec<Site> = (0..4000)
        .map(|i| Site {
            file: Box::leak(format!("/srv/app/src/gen/module_{i}.rs").into_boxed_str()),
            line: i + 1,
            function: Box::leak(format!("app::gen::module_{i}::build").into_boxed_str()),
        })
        .collect();
    let pairs: Vec<(&Site, u64)> = sites.iter().enumerate().map(|(i, s)| (s, 1000 + i as u64)).collect();
    let big = tmp.path().join("big.json");
    write_json(&big, &snapshot_json("big", 0, 1, &pairs));
    for args in [vec!["show", "--top", "0"], vec!["diff", "--top", "0"]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alloc-probe"));
        cmd.args(&args).arg(&big);
        if args[0] == "diff" {
            cmd.arg(&big);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout); // like `| head -c 16`
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
