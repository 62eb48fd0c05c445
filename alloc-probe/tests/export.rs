//! `export --format pprof` on snapshots and diffs (decoded with the library's
//! own prost types), `show --sort alloc`, and bad input for both.

mod common;

use common::*;
use leaktrace::pprof;
use serde_json::Value;
use std::path::Path;

/// A snapshot whose churning pool allocated the most but holds little.
fn with_allocs(label: &str, t: u64, leak: u64) -> Value {
    let mut snap = snapshot_json(label, t, 9, &[(&LEAK, leak), (&CHURN, 1024), (&FLAT, 64)]);
    let allocs = [(leak, leak / 1024), (50 << 20, 51_200), (64, 1)];
    for (trace, (size, count)) in snap["traces"].as_array_mut().unwrap().iter_mut().zip(allocs) {
        trace["alloc_size"] = size.into();
        trace["alloc_count"] = count.into();
    }
    snap["contexts"] = serde_json::json!(["GET /sessions"]);
    snap["traces"][0]["context"] = 0.into();
    snap
}

fn strings(p: &pprof::proto::Profile, ids: impl IntoIterator<Item = i64>) -> Vec<&str> {
    ids.into_iter().map(|i| p.string_table[i as usize].as_str()).collect()
}

/// (leaf file, leaf line, values) of each sample.
fn leaves(p: &pprof::proto::Profile) -> Vec<(String, i64, Vec<i64>)> {
    p.sample
        .iter()
        .map(|s| {
            let loc = p.location.iter().find(|l| l.id == s.location_id[0]).unwrap();
            let f = p.function.iter().find(|f| f.id == loc.line[0].function_id).unwrap();
            (p.string_table[f.filename as usize].clone(), loc.line[0].line, s.value.clone())
        })
        .collect()
}

fn export(input: &Path, out: &Path) -> pprof::proto::Profile {
    probe(["export", &arg(input), "--format", "pprof", "-o", &arg(out)]).ok();
    pprof::decode(&std::fs::read(out).unwrap()).expect("a gzipped profile")
}

#[test]
fn snapshots_and_diffs_become_pprof_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    write_json(&a, &with_allocs("a", 0, 4096));
    write_json(&b, &with_allocs("b", 10, 4096 + 1_048_576));

    let bytes_out = tmp.path().join("b.pb.gz");
    let p = export(&b, &bytes_out);
    assert_eq!(&std::fs::read(&bytes_out).unwrap()[..2], [0x1f, 0x8b], "gzipped");
    let types = strings(&p, p.sample_type.iter().map(|t| t.r#type));
    assert_eq!(types, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
    let got = leaves(&p);
    assert_eq!(got[0], (LEAK.file.to_string(), 42, vec![1028, 1_052_672, 1028, 1_052_672]));
    assert_eq!(got[1], (CHURN.file.to_string(), 88, vec![51_200, 50 << 20, 1, 1024]));
    let label = p.sample[0].label[0];
    assert_eq!(strings(&p, [label.key, label.str]), ["context", "GET /sessions"]);
    assert_eq!(p.period, 1, "exact mode");

    // A diff file (detected by its format): the changes.
    let diff = tmp.path().join("diff.json");
    probe(["diff", &arg(&a), &arg(&b), "-f", "json", "-o", &arg(&diff)]).ok();
    let p = export(&diff, &tmp.path().join("diff.pb.gz"));
    assert_eq!(strings(&p, p.sample_type.iter().map(|t| t.r#type)), ["inuse_objects", "inuse_space"]);
    assert_eq!(leaves(&p), [(LEAK.file.to_string(), 42, vec![1024, 1_048_576])], "unchanged sites are left out");

    // To stdout.
    let run = probe(["export", &arg(&a), "-o", "-"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.len() > 20);
}

#[test]
fn show_sorts_by_bytes_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b.json");
    write_json(&b, &with_allocs("b", 10, 1_048_576));
    let json = probe(["show", &arg(&b), "--sort", "alloc", "-f", "json"]).json();
    let stats = json["statistics"].as_array().unwrap();
    assert!(is_site(&stats[0]["location"], "pool.rs", 88), "{json:#}");
    assert_eq!(stats[0]["alloc_size"], 50 << 20);
    assert!(is_site(&stats[1]["location"], "sessions.rs", 42));
    let by_size = probe(["show", &arg(&b), "-f", "json"]).json();
    assert!(is_site(&by_size["statistics"][0]["location"], "sessions.rs", 42), "the default is live bytes");

    let table = probe(["show", &arg(&b), "--sort", "alloc"]).ok().to_string();
    let header = table.lines().find(|l| l.contains("alloc_count")).expect("a header");
    assert!(header.contains("allocated") && header.contains("live"), "{table}");
    let rows: Vec<&str> = table.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert!(rows[0].contains("pool.rs:88") && rows[0].contains("50.0 MiB"), "{table}");
    assert!(rows[1].contains("sessions.rs:42"), "{table}");

    probe(["show", &arg(&b), "--sort", "newest"]).assert_bad_input(&["--sort", "newest"]);
}

#[test]
fn bad_input_is_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good = snapshot_json("good", 0, 1, &[(&LEAK, 4096)]);
    write_json(&d.join("good.json"), &good);
    let text = serde_json::to_string(&good).unwrap();
    std::fs::write(d.join("trunc.json"), &text[..text.len() / 2]).unwrap();
    std::fs::write(d.join("foreign.json"), r#"{"format": "pprof.profile.v1"}"#).unwrap();
    std::fs::write(d.join("newer.json"), text.replace("leaktrace.snapshot.v1", "leaktrace.snapshot.v2")).unwrap();
    probe([
        "trend",
        &arg(&d.join("good.json")),
        &arg(&d.join("good.json")),
        "-f",
        "json",
        "-o",
        &arg(&d.join("trend.json")),
    ])
    .ok();
    let out = arg(&d.join("out.pb.gz"));
    for (file, needles) in [
        ("missing.json", &["No such file"][..]),
        ("trunc.json", &["line 1"]),
        ("foreign.json", &["foreign format"]),
        ("newer.json", &["newer"]),
        ("trend.json", &["leaktrace.trend.v1", "snapshot", "diff"]),
        ("", &["is a directory"]),
    ] {
        let path = arg(&d.join(file));
        let path = path.trim_end_matches('/');
        let mut want = vec![path];
        want.extend_from_slice(needles);
        probe(["export", path, "-o", &out]).assert_bad_input(&want);
    }
    assert!(!d.join("out.pb.gz").exists(), "nothing written on bad input");
    let good = arg(&d.join("good.json"));
    probe(["export", &good]).assert_bad_input(&["--output"]);
    probe(["export", &good, "--format", "svg", "-o", &out]).assert_bad_input(&["svg"]);
    let nodir = arg(&d.join("no/such/dir/x.pb.gz"));
    probe(["export", &good, "-o", &nodir]).assert_bad_input(&[&nodir]);
}
