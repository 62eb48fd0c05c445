//! `trend` on a synthetic series: a one-time load outweighs a steady leak in
//! the two-snapshot diff, but the trend ranks the leak first, and tells the
//! load (`step`), a churning pool (`churn`), a flat site and a shrinking one
//! apart. Also: ordering by `taken_at`, the directory rules, `--fail-over`;
//! and leaks that do not grow at every snapshot (in bursts, under churn on
//! their own line) ranked above a load, a filling cache and churn.

mod common;

use common::*;
use serde_json::Value;

fn site<'a>(doc: &'a Value, s: &Site) -> &'a Value {
    doc["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["location"]["file"] == s.file && x["location"]["line"] == s.line)
        .unwrap_or_else(|| panic!("no site {}:{} in {doc:#}", s.file, s.line))
}

#[test]
fn the_diff_ranks_the_load_first_the_trend_ranks_the_leak_first() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = write_series(tmp.path());
    let (first, last) = (&paths[0], &paths[7]);

    // Two snapshots: the 10 MiB load outranks the 700 KiB leak.
    let diff = probe(["diff", &arg(first), &arg(last), "--format", "json"]).json();
    assert_eq!(diff["format"], "leaktrace.diff.v1");
    assert_eq!(diff["sites"][0]["location"]["file"], LOAD.file);
    assert_eq!(diff["sites"][0]["size_diff"], 10 * 1024 * 1024);
    assert_eq!(diff["sites"][1]["location"]["file"], LEAK.file);

    // The series, given as a directory whose file names run backwards in time.
    let trend = probe(["trend", &arg(tmp.path()), "--format", "json"]).json();
    assert_eq!(trend["format"], "leaktrace.trend.v1");
    let labels: Vec<&str> =
        trend["snapshots"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"], "ordered by taken_at");
    let top = &trend["sites"][0];
    assert_eq!(top["rank"], 1);
    assert_eq!(top["location"]["file"], LEAK.file);
    assert_eq!(top["location"]["line"], LEAK.line);
    assert_eq!(top["location"]["function"], LEAK.function);
    assert_eq!(top["verdict"], "steady");
    assert_eq!(top["grew_fraction"], 1.0);
    assert_eq!(top["size_first"], 1024);
    assert_eq!(top["size_last"], 701 * 1024);
    // +100 KiB every 10 s.
    let slope = top["slope_bytes_per_sec"].as_f64().unwrap();
    assert!((slope - 10_240.0).abs() < 1e-6, "slope {slope}");

    let load = site(&trend, &LOAD);
    assert_eq!(load["verdict"], "step");
    assert_eq!(load["rank"], 2, "the load ranks right below the leak");
    assert_eq!(load["size_last"], 10 * 1024 * 1024);
    assert_eq!(site(&trend, &CHURN)["verdict"], "churn");
    assert_eq!(site(&trend, &FLAT)["verdict"], "flat");
    assert_eq!(site(&trend, &SHRINK)["verdict"], "shrinking");
    for (i, s) in trend["sites"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["rank"], i + 1);
        for key in ["location", "size_first", "size_last", "slope_bytes_per_sec", "grew_fraction", "verdict"] {
            assert!(!s[key].is_null(), "site {i} lacks {key}");
        }
    }

    // The same series as files in any order, and the table.
    let mut shuffled: Vec<String> = paths.iter().map(|p| arg(p)).collect();
    shuffled.swap(0, 5);
    shuffled.swap(2, 7);
    let mut args = vec!["trend".to_string()];
    args.extend(shuffled);
    let run = probe(&args);
    let table = run.ok();
    let rows: Vec<&str> = table.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert!(rows[0].contains("steady") && rows[0].contains("sessions.rs:42"), "{table}");
    assert!(rows[1].contains("step") && rows[1].contains("config.rs:7"), "{table}");
    assert!(table.contains("+10.0 KiB/s"), "slope in units: {table}");
    assert!(table.contains("7/7"), "intervals grown: {table}");
    assert!(table.contains("\"s0\" -> \"s7\""), "{table}");
}

#[test]
fn a_directory_skips_other_leaktrace_files_and_fail_over_counts_steady_growth_only() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = write_series(tmp.path());
    // A diff and a trend written next to the snapshots, as `scenario` does.
    let diff_path = tmp.path().join("diff.json");
    probe(["diff", &arg(&paths[0]), &arg(&paths[7]), "--format", "json", "-o", &arg(&diff_path)]).ok();
    let trend_path = tmp.path().join("trend.json");
    probe(["trend", &arg(tmp.path()), "--format", "json", "-o", &arg(&trend_path)]).ok();
    let show_path = tmp.path().join("show.json");
    probe(["show", &arg(&paths[7]), "--format", "json", "-o", &arg(&show_path)]).ok();
    std::fs::write(tmp.path().join("README.txt"), "not json, not looked at").unwrap();
    assert!(std::fs::read_to_string(&diff_path).unwrap().contains("leaktrace.diff.v1"));

    let trend = probe(["trend", &arg(tmp.path()), "--format", "json"]).json();
    assert_eq!(trend["snapshots"].as_array().unwrap().len(), 8);
    assert_eq!(trend["sites"][0]["location"]["file"], LEAK.file);

    // --top cuts the JSON too.
    let top2 = probe(["trend", &arg(tmp.path()), "--format", "json", "--top", "2"]).json();
    assert_eq!(top2["sites"].as_array().unwrap().len(), 2);

    // --include / --exclude on file or function, glob or substring.
    let only = probe(["trend", &arg(tmp.path()), "--format", "json", "--include", "app::config::*"]).json();
    assert_eq!(only["sites"].as_array().unwrap().len(), 1);
    assert_eq!(only["sites"][0]["location"]["file"], LOAD.file);
    let without = probe(["trend", &arg(tmp.path()), "-f", "json", "--exclude", "sessions.rs"]).json();
    assert!(without["sites"].as_array().unwrap().iter().all(|s| s["location"]["file"] != LEAK.file));

    // The leak grew 700 KiB steadily: over 500 KiB trips, 1 MiB does not,
    // though the load grew 10 MiB (a step, not a leak).
    let trip = probe(["trend", &arg(tmp.path()), "--fail-over", "500KiB"]);
    assert_eq!(trip.code, 1, "{trip:#?}");
    assert!(trip.stderr.contains("fail-over") && trip.stderr.contains("sessions.rs:42"), "{trip:#?}");
    assert_eq!(trip.stderr.lines().count(), 1);
    assert!(trip.stdout.contains("steady"), "the report is still printed");
    let pass = probe(["trend", &arg(tmp.path()), "--fail-over", "1MiB"]);
    assert_eq!(pass.code, 0, "{pass:#?}");

    // diff --fail-over counts any growth: the load's 10 MiB trips it.
    let d = probe(["diff", &arg(&paths[0]), &arg(&paths[7]), "--fail-over", "1MiB"]);
    assert_eq!(d.code, 1, "{d:#?}");
    assert!(d.stderr.contains("config.rs:7"), "{d:#?}");
    let d = probe(["diff", &arg(&paths[0]), &arg(&paths[7]), "--fail-over", "11MiB"]);
    assert_eq!(d.code, 0, "{d:#?}");
}

/// The shapes of `reports/verdicts.md`, one per line of a synthetic app.
const PLAIN: Site = Site { file: "/srv/app/src/audit.rs", line: 10, function: "app::audit::record" };
const BURSTY: Site = Site { file: "/srv/app/src/audit.rs", line: 55, function: "app::audit::flush" };
const UNDER_CHURN: Site = Site { file: "/srv/app/src/http.rs", line: 120, function: "app::http::read_body" };
const FILLING: Site = Site { file: "/srv/app/src/cache.rs", line: 31, function: "app::cache::insert" };
const ONCE: Site = Site { file: "/srv/app/src/config.rs", line: 9, function: "app::config::load" };
const POOL: Site = Site { file: "/srv/app/src/pool.rs", line: 14, function: "app::pool::take" };

/// splitmix64, for the churn.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn bursty_leaks_and_leaks_under_churn_rank_above_loads_caches_and_churn() {
    const KIB: u64 = 1024;
    const N: u64 = 60;
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = 13u64;
    let mut churn = |range: u64| next(&mut rng) % (range + 1);
    for i in 0..N {
        let sites = [
            // +8 KiB at every snapshot.
            (&PLAIN, 8 * KIB * i),
            // +96 KiB at every 5th snapshot, flat in between: the old rule's `step`.
            (&BURSTY, 96 * KIB * (i / 5)),
            // 0-256 KiB of request bodies in flight, 4 KiB (1/64 of that)
            // kept per interval: the old rule's `churn`.
            (&UNDER_CHURN, 4 * KIB * i + churn(256 * KIB)),
            // A cache filling over the first 20 snapshots (by 0-64 KiB each), then full.
            (&FILLING, if i == 0 { 0 } else { 64 * KIB * i.min(20) - KIB * (i.min(20) % 7) }),
            // 20 MiB loaded once, at the 10th snapshot.
            (&ONCE, if i < 10 { 0 } else { 20 << 20 }),
            // Buffers coming and going.
            (&POOL, churn(512 * KIB)),
        ];
        let snap = snapshot_json(&format!("s{i}"), 10 * i, 4343, &sites);
        write_json(&tmp.path().join(format!("snap-{i:03}.json")), &snap);
    }
    let trend = probe(["trend", &arg(tmp.path()), "--format", "json"]).json();
    let sites = trend["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 6, "{trend:#}");
    let leaks = [&PLAIN, &BURSTY, &UNDER_CHURN];
    for (i, s) in sites.iter().enumerate() {
        let is_leak = leaks.iter().any(|l| s["location"]["file"] == l.file && s["location"]["line"] == l.line);
        assert_eq!(is_leak, i < 3, "the three leaks rank first: #{} is {s:#}", i + 1);
        assert_eq!(s["verdict"] == "steady", is_leak, "{s:#}");
        for key in ["theil_sen_bytes_per_sec", "mk_z", "p_value", "recent_gain_share"] {
            assert!(s[key].is_f64(), "site {i} lacks {key}: {s:#}");
        }
        if is_leak {
            assert!(s["p_value"].as_f64().unwrap() < 0.01 && s["theil_sen_bytes_per_sec"].as_f64().unwrap() > 0.0);
        }
    }
    // The old rule's verdicts for the leaks were wrong this way.
    assert!(site(&trend, &BURSTY)["grew_fraction"].as_f64().unwrap() < 0.25);
    assert_eq!(site(&trend, &FILLING)["verdict"], "plateau");
    assert_eq!(site(&trend, &ONCE)["verdict"], "step");
    assert_eq!(site(&trend, &POOL)["verdict"], "churn");
    assert!(
        site(&trend, &ONCE)["size_last"].as_u64().unwrap() > 4 * site(&trend, &BURSTY)["size_last"].as_u64().unwrap()
    );

    // The table says so too, and --fail-over counts the three leaks only.
    let run = probe(["trend", &arg(tmp.path()), "--fail-over", "100KiB"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("3 steady site(s)"), "{run:#?}");
    let rows: Vec<&str> = run.stdout.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert!(rows[..3].iter().all(|r| r.contains("steady")), "{}", run.stdout);
    assert!(rows.iter().any(|r| r.contains("plateau") && r.contains("cache.rs:31")), "{}", run.stdout);
}
