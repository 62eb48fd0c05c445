//! The export read by the real Go tool: a program that leaks 1,000 blocks of
//! 1 KiB at one marked line, exported with `leaktrace::pprof`, then read back
//! with `go tool pprof -top` for each sample type and with `-diff_base`.
//! Needs `go` (golang-go); without it the test says so and passes, unless
//! `CI` is set.

mod common;
mod pprof_common;

use common::marker_line;
use leaktrace::Config;
use pprof_common::{go_pprof, have_go, top_rows};
use std::time::Duration;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("pprof_go.rs");

#[inline(never)]
fn leak_thousand(out: &mut Vec<Vec<u8>>) {
    for i in 0..1000 {
        out.push(vec![i as u8; 1024]); // MARK: leak
    }
}

/// Allocates 2,000 blocks of 2 KiB and frees each at once: nothing live,
/// 4,096,000 bytes allocated.
#[inline(never)]
fn churn_blocks() -> u64 {
    let mut sum = 0u64;
    for i in 0..2000 {
        let block = std::hint::black_box(vec![i as u8; 2048]); // MARK: churn
        sum += block[0] as u64;
    }
    sum
}

#[test]
fn go_tool_pprof_ranks_the_leaking_line_first_with_its_exact_bytes() {
    if !have_go("pprof_go") {
        return;
    }
    let line = marker_line(SRC, "MARK: leak");
    let churn_line = marker_line(SRC, "MARK: churn");
    leaktrace::start(Config::default());
    let mut blocks = Vec::with_capacity(1000);
    let before = leaktrace::take_snapshot("before");
    leak_thousand(&mut blocks);
    std::hint::black_box(churn_blocks());
    let after = leaktrace::take_snapshot("after");

    let dir = tempfile::tempdir().unwrap();
    let before_path = dir.path().join("before.pb.gz");
    let after_path = dir.path().join("after.pb.gz");
    leaktrace::write_atomic(&before_path, &leaktrace::pprof::from_snapshot(&before)).unwrap();
    leaktrace::write_atomic(&after_path, &leaktrace::pprof::from_snapshot(&after)).unwrap();
    let after_arg = after_path.display().to_string();
    let site = format!("pprof_go.rs:{line}");
    let churn_site = format!("pprof_go.rs:{churn_line}");
    let deadline = Duration::from_secs(120);

    let top = |extra: &[&str]| {
        let mut args = vec!["-top", "-lines"];
        args.extend_from_slice(extra);
        let out = go_pprof(dir.path(), &args, deadline);
        assert!(out.ok, "go tool pprof {args:?}: {out:#?}");
        let rows = top_rows(&out.stdout);
        assert!(!rows.is_empty(), "no rows: {out:#?}");
        (rows, out)
    };

    // `-unit=B` prints bytes unscaled; counts have no unit to give.
    // In use, the leak leads; allocated, the churn (all of it freed) does.
    for (index, unit, want, want_site, function) in [
        ("inuse_space", "-unit=B", "1024000B", &site, "leak_thousand"),
        ("inuse_objects", "-unit=minimum", "1000", &site, "leak_thousand"),
        ("alloc_space", "-unit=B", "4096000B", &churn_site, "churn_blocks"),
        ("alloc_objects", "-unit=minimum", "2000", &churn_site, "churn_blocks"),
    ] {
        let sample_index = format!("-sample_index={index}");
        let (rows, out) = top(&[unit, &sample_index, &after_arg]);
        eprintln!("go tool pprof -top -lines {unit} {sample_index}:\n{}{}", out.stdout, out.stderr);
        let (flat, name) = &rows[0];
        assert_eq!(flat, want, "{index}: top row {name}: {}", out.stdout);
        assert!(
            name.contains(function) && name.ends_with(want_site.as_str()),
            "{index}: top row {name:?}: {}",
            out.stdout
        );
    }

    // Functions only (no -lines): the function is first, with the same bytes.
    let out = go_pprof(dir.path(), &["-top", "-unit=B", "-sample_index=inuse_space", &after_arg], deadline);
    let rows = top_rows(&out.stdout);
    assert_eq!(rows[0].0, "1024000B", "{out:#?}");
    assert!(rows[0].1.ends_with("pprof_go::leak_thousand"), "{out:#?}");

    // pprof's own diff of the two exports: the growth, at the marked line.
    let base = format!("-diff_base={}", before_path.display());
    let (rows, out) = top(&["-unit=B", "-sample_index=inuse_space", &base, &after_arg]);
    assert_eq!(rows[0].0, "1024000B", "{}", out.stdout);
    assert!(rows[0].1.ends_with(&site), "{}", out.stdout);
    drop(blocks);
}
