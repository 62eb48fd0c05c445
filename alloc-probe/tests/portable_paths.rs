//! The same program built in two directories (two source copies, two
//! target directories) writes the same portable paths: `alloc-probe diff`
//! of their snapshots pairs each site with its twin, none reported twice.

mod common;
mod symbolize_fixture;

use symbolize_fixture as fx;

#[test]
fn two_build_directories_diff_site_by_site() {
    let target_a = fx::tmp("fixture-target-a");
    let bin_a = fx::build(&fx::tmp("fixture-a"), &target_a);
    // A copy of the first target directory: the dependencies are not built
    // again, only the program, from its other source directory.
    let target_b = fx::tmp("fixture-target-b");
    if !target_b.exists() {
        let status = std::process::Command::new("cp").arg("-a").arg(&target_a).arg(&target_b).status().unwrap();
        assert!(status.success());
    }
    let bin_b = fx::build(&fx::tmp("fixture-b-elsewhere"), &target_b);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    fx::run(&bin_a, &a, true);
    fx::run(&bin_b, &b, true);

    let (ja, jb) = (fx::read_json(&a), fx::read_json(&b));
    let (sa, sb) = (fx::own_sites(&ja), fx::own_sites(&jb));
    assert_eq!(sa, sb, "same portable sites");
    assert_eq!(sa.len(), 2, "{sa:?}");
    // The absolute paths are kept, and differ.
    let abs = |j: &serde_json::Value| {
        j["frames"].as_array().unwrap().iter().find(|f| f["file"] == "src/db.rs").unwrap()["path_abs"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(abs(&ja).ends_with("fixture-a/src/db.rs") && abs(&jb).ends_with("fixture-b-elsewhere/src/db.rs"));

    let diff = common::probe_in(None, ["diff".as_ref(), a.as_os_str(), b.as_os_str(), "-f".as_ref(), "json".as_ref()]);
    let doc = diff.json();
    let sites = doc["sites"].as_array().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for s in sites {
        let key = (s["location"]["file"].as_str().unwrap().to_string(), s["location"]["line"].as_u64().unwrap());
        assert!(seen.insert(key.clone()), "site reported twice: {key:?}");
        if key.0.starts_with("src/") {
            assert_eq!(s["size_diff"], 0, "{s}");
            assert_eq!(s["count_diff"], 0, "{s}");
        }
        assert!(!key.0.contains("fixture-"), "absolute path in the diff: {key:?}");
    }
    for site in sa.keys() {
        assert!(seen.contains(site), "{site:?} in the diff");
    }
}
