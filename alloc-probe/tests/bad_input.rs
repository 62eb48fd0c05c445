//! Bad input for every command: missing, non-JSON, truncated, empty and
//! non-UTF-8 files; foreign formats, unknown and newer versions; a diff or a
//! trend where a snapshot is expected; directories that are empty, hold no
//! snapshot, or hold a file that cannot be read; bad flags. Each time: exit
//! status 2, one line on stderr naming the file and the problem, no panic.

mod common;

use common::*;
use std::path::Path;

/// Writes every fixture into `dir`.
fn fixtures(dir: &Path) {
    let good = snapshot_json("good", 0, 1, &[(&LEAK, 4096), (&LOAD, 1024)]);
    write_json(&dir.join("good.json"), &good);
    write_json(&dir.join("good2.json"), &snapshot_json("good2", 10, 1, &[(&LEAK, 8192)]));
    let text = serde_json::to_string_pretty(&good).unwrap();
    std::fs::write(dir.join("trunc.json"), &text[..text.len() / 2]).unwrap();
    std::fs::write(dir.join("notjson.json"), "hello, world\n").unwrap();
    std::fs::write(dir.join("empty.json"), "").unwrap();
    std::fs::write(dir.join("array.json"), "[1, 2, 3]").unwrap();
    std::fs::write(dir.join("binary.json"), b"\xff\xfe\x00\x01").unwrap();
    std::fs::write(dir.join("foreign.json"), r#"{"format": "pprof.profile.v1", "samples": []}"#).unwrap();
    std::fs::write(dir.join("noformat.json"), r#"{"traceEvents": []}"#).unwrap();
    std::fs::write(dir.join("newer.json"), text.replace("leaktrace.snapshot.v1", "leaktrace.snapshot.v2")).unwrap();
    std::fs::write(dir.join("unknownver.json"), text.replace("leaktrace.snapshot.v1", "leaktrace.snapshot.v0"))
        .unwrap();
    let d = dir.display().to_string();
    probe([
        "diff",
        &format!("{d}/good.json"),
        &format!("{d}/good2.json"),
        "-f",
        "json",
        "-o",
        &format!("{d}/diff.json"),
    ])
    .ok();
    probe([
        "trend",
        &format!("{d}/good.json"),
        &format!("{d}/good2.json"),
        "-f",
        "json",
        "-o",
        &format!("{d}/trend.json"),
    ])
    .ok();
    for sub in
        ["emptydir", "corruptdir", "otherkinds", "txtdir", "onesnap", "newerdir", "danglingdir", "binarydir", "fifodir"]
    {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    // A directory whose second file (by name) is corrupt.
    std::fs::copy(dir.join("good.json"), dir.join("corruptdir/a.json")).unwrap();
    std::fs::copy(dir.join("trunc.json"), dir.join("corruptdir/b.json")).unwrap();
    std::fs::copy(dir.join("good2.json"), dir.join("corruptdir/c.json")).unwrap();
    std::fs::copy(dir.join("diff.json"), dir.join("otherkinds/diff.json")).unwrap();
    std::fs::copy(dir.join("trend.json"), dir.join("otherkinds/trend.json")).unwrap();
    std::fs::write(dir.join("txtdir/notes.txt"), "no json here").unwrap();
    std::fs::copy(dir.join("good.json"), dir.join("onesnap/only.json")).unwrap();
    std::fs::copy(dir.join("diff.json"), dir.join("onesnap/diff.json")).unwrap();
    std::fs::copy(dir.join("good.json"), dir.join("newerdir/a.json")).unwrap();
    std::fs::copy(dir.join("newer.json"), dir.join("newerdir/b.json")).unwrap();
    // Tests run as root, so permissions cannot make a file unreadable: a
    // dangling symlink and a non-UTF-8 file can.
    std::fs::copy(dir.join("good.json"), dir.join("danglingdir/a.json")).unwrap();
    std::fs::copy(dir.join("good2.json"), dir.join("danglingdir/b.json")).unwrap();
    std::os::unix::fs::symlink(dir.join("no-such-target.json"), dir.join("danglingdir/gone.json")).unwrap();
    std::fs::copy(dir.join("good.json"), dir.join("fifodir/a.json")).unwrap();
    let fifo = std::process::Command::new("mkfifo").arg(dir.join("fifodir/pipe.json")).status();
    assert!(fifo.is_ok_and(|s| s.success()), "mkfifo");
    std::fs::copy(dir.join("good.json"), dir.join("binarydir/a.json")).unwrap();
    std::fs::copy(dir.join("binary.json"), dir.join("binarydir/b.json")).unwrap();
}

/// Each bad file, with words its error must contain (besides its name).
const BAD_FILES: &[(&str, &[&str])] = &[
    ("missing.json", &["No such file"]),
    ("notjson.json", &["line 1, column 1"]),
    ("trunc.json", &["EOF while parsing"]),
    ("empty.json", &["empty file"]),
    ("array.json", &["expected a JSON object"]),
    ("binary.json", &["UTF-8"]),
    ("foreign.json", &["foreign format", "pprof.profile.v1"]),
    ("noformat.json", &["not a leaktrace file", "format"]),
    ("newer.json", &["leaktrace.snapshot.v2", "newer"]),
    ("unknownver.json", &["unknown version", "leaktrace.snapshot.v0"]),
    ("diff.json", &["is a leaktrace diff", "expected leaktrace.snapshot.v1"]),
    ("trend.json", &["is a leaktrace trend", "expected leaktrace.snapshot.v1"]),
    ("emptydir", &["is a directory"]),
];

fn needles<'a>(name: &'a str, words: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![name];
    v.extend_from_slice(words);
    v
}

#[test]
fn show_rejects_every_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures(tmp.path());
    for (name, words) in BAD_FILES {
        let path = tmp.path().join(name);
        probe(["show", &arg(&path)]).assert_bad_input(&needles(name, words));
        probe(["show", &arg(&path), "--format", "json"]).assert_bad_input(&needles(name, words));
    }
}

#[test]
fn diff_rejects_every_bad_file_in_either_place() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures(tmp.path());
    let good = arg(&tmp.path().join("good.json"));
    for (name, words) in BAD_FILES {
        let path = arg(&tmp.path().join(name));
        probe(["diff", &path, &good]).assert_bad_input(&needles(name, words));
        probe(["diff", &good, &path, "--format", "json"]).assert_bad_input(&needles(name, words));
    }
}

#[test]
fn trend_rejects_every_bad_file_and_bad_directories() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures(tmp.path());
    let d = tmp.path();
    let good = arg(&d.join("good.json"));
    let good2 = arg(&d.join("good2.json"));
    for (name, words) in BAD_FILES.iter().filter(|(n, _)| *n != "emptydir") {
        let path = arg(&d.join(name));
        probe(["trend", &good, &path, &good2]).assert_bad_input(&needles(name, words));
    }
    let dir = |sub: &str| arg(&d.join(sub));
    probe(["trend", &dir("emptydir")]).assert_bad_input(&["emptydir", "empty directory"]);
    probe(["trend", &dir("corruptdir")]).assert_bad_input(&["corruptdir/b.json", "EOF while parsing"]);
    probe(["trend", &dir("otherkinds")]).assert_bad_input(&["otherkinds", "no snapshots", "diff.json", "trend.json"]);
    probe(["trend", &dir("txtdir")]).assert_bad_input(&["txtdir", "no *.json files"]);
    probe(["trend", &dir("onesnap")]).assert_bad_input(&["onesnap", "only one snapshot", "two or more"]);
    probe(["trend", &dir("newerdir")]).assert_bad_input(&["newerdir/b.json", "newer"]);
    probe(["trend", &dir("danglingdir")]).assert_bad_input(&["danglingdir/gone.json", "No such file"]);
    probe(["trend", &dir("binarydir")]).assert_bad_input(&["binarydir/b.json", "UTF-8"]);
    probe(["trend", &dir("fifodir")]).assert_bad_input(&["fifodir/pipe.json", "not a regular file"]);
    probe(["trend", &dir("no-such-dir")]).assert_bad_input(&["no-such-dir", "No such file"]);
    probe(["trend", &good]).assert_bad_input(&["good.json", "two or more"]);
}

#[test]
fn output_files_that_cannot_be_written_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures(tmp.path());
    let good = arg(&tmp.path().join("good.json"));
    let nowhere = arg(&tmp.path().join("no/such/dir/out.txt"));
    probe(["show", &good, "-o", &nowhere]).assert_bad_input(&["no/such/dir/out.txt", "No such file"]);
    probe(["diff", &good, &good, "-o", &nowhere]).assert_bad_input(&["no/such/dir/out.txt"]);
    // A scenario whose --out cannot be made fails before it runs.
    let blocker = tmp.path().join("good.json/sub");
    probe(["scenario", "worker_cache", "--steps", "2", "--out", &arg(&blocker)]).assert_bad_input(&["good.json/sub"]);
}

#[test]
fn bad_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures(tmp.path());
    let good = arg(&tmp.path().join("good.json"));
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec![], &[]),
        (vec!["frobnicate"], &["frobnicate"]),
        (vec!["diff", &good], &["NEW.json"]),
        (vec!["diff", &good, &good, "--frobnicate"], &["--frobnicate"]),
        (vec!["diff", &good, &good, "--group-by", "bogus"], &["bogus", "line, function, file, traceback"]),
        (vec!["diff", &good, &good, "--top", "many"], &["many"]),
        (vec!["diff", &good, &good, "--format", "xml"], &["xml"]),
        (vec!["diff", &good, &good, "--fail-over", "ten"], &["ten"]),
        (vec!["diff", &good, &good, "--fail-over", "5 parsecs"], &["parsecs"]),
        (vec!["show"], &["SNAPSHOT.json"]),
        (vec!["show", &good, "--top", "-1"], &["-1"]),
        (vec!["trend"], &["DIR"]),
        (vec!["trend", &good, &good, "--fail-over"], &["--fail-over"]),
        (vec!["scenario"], &["NAME"]),
        (vec!["scenario", "no_such_pattern"], &["no_such_pattern", "background_tasks"]),
        (vec!["scenario", "worker_cache", "--seconds", "0"], &["0"]),
        (vec!["scenario", "worker_cache", "--seconds", "soon"], &["soon"]),
        (vec!["scenario", "worker_cache", "--steps", "0"], &["--steps"]),
        (vec!["scenario", "--list", "--fixed"], &["--fixed"]),
        (vec!["scenario", "--all", "worker_cache"], &["--all"]),
    ];
    for (args, words) in cases {
        let run = probe(&args);
        if args.is_empty() {
            // No command at all: the usage, on stderr, and status 2.
            assert_eq!(run.code, 2, "{run:#?}");
            assert!(run.stderr.contains("Usage"), "{run:#?}");
            assert!(!run.stderr.contains("panicked"));
            continue;
        }
        let mut needles = vec!["see --help"];
        needles.extend_from_slice(words);
        run.assert_bad_input(&needles);
    }
}

#[test]
fn help_and_version_succeed() {
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["diff", "--help"],
        vec!["show", "--help"],
        vec!["trend", "--help"],
        vec!["scenario", "--help"],
        vec!["help", "trend"],
    ] {
        let run = probe(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
        assert!(run.stderr.is_empty(), "{args:?}: {run:#?}");
    }
    assert!(probe(["--version"]).stdout.starts_with("alloc-probe "));
    let help = probe(["trend", "--help"]).stdout;
    for flag in ["--top", "--format", "--group-by", "--include", "--exclude", "--output", "--fail-over"] {
        assert!(help.contains(flag), "trend --help lists {flag}: {help}");
    }
}
