//! The export decoded with the same prost types: every sample of a real
//! snapshot's profile matches its trace (values, frames, files, lines); the
//! in-process profiles carry this process's mappings; a diff's profile
//! carries the changes, negative where a site shrank.

mod common;

use common::{is_file, marker_line};
use leaktrace::pprof::{self, proto};
use leaktrace::{Config, Frame, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("pprof_decode.rs");

#[inline(never)]
fn leak_thousand(out: &mut Vec<Vec<u8>>) {
    for i in 0..1000 {
        out.push(vec![i as u8; 1024]); // MARK: leak
    }
}

/// Each sample of `p` as (frames, values).
fn samples(p: &proto::Profile) -> Vec<(Vec<Frame>, Vec<i64>)> {
    let s = |i: i64| p.string_table[i as usize].clone();
    p.sample
        .iter()
        .map(|sample| {
            let frames = sample
                .location_id
                .iter()
                .flat_map(|&id| {
                    let loc = p.location.iter().find(|l| l.id == id).expect("location id");
                    assert!(loc.mapping_id == 0 || p.mapping.iter().any(|m| m.id == loc.mapping_id));
                    loc.line.iter().map(|line| {
                        let f = p.function.iter().find(|f| f.id == line.function_id).expect("function id");
                        Frame { function: s(f.name), file: s(f.filename), line: line.line as u32, ..Frame::default() }
                    })
                })
                .collect();
            (frames, sample.value.clone())
        })
        .collect()
}

fn type_names(p: &proto::Profile) -> Vec<String> {
    p.sample_type.iter().map(|t| p.string_table[t.r#type as usize].clone()).collect()
}

#[test]
fn every_sample_matches_the_snapshot() {
    let line = marker_line(SRC, "MARK: leak");
    leaktrace::start(Config::default());
    let mut blocks = Vec::with_capacity(1000);
    let before = leaktrace::take_snapshot("before");
    leak_thousand(&mut blocks);
    let snap = leaktrace::take_snapshot("after");

    // The file export: one sample per trace, in order, with its frames.
    let p = pprof::decode(&pprof::from_snapshot(&snap)).expect("decode");
    assert_eq!(p.string_table[0], "");
    assert_eq!(type_names(&p), ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
    assert_eq!(p.default_sample_type, 0, "heap: inuse_space, the last type, by default");
    let got = samples(&p);
    let traces: Vec<_> = snap.traces.iter().filter(|t| t.size > 0 || t.alloc_size > 0 || t.count > 0).collect();
    assert_eq!(got.len(), traces.len());
    for ((frames, values), trace) in got.iter().zip(&traces) {
        assert_eq!(frames, &snap.traceback(trace));
        let want = [trace.alloc_count.max(trace.count), trace.alloc_size.max(trace.size), trace.count, trace.size];
        assert_eq!(values, &want.map(|v| v as i64));
    }
    let leak = got
        .iter()
        .find(|(frames, _)| is_file(&frames[0].file, "pprof_decode.rs") && frames[0].line == line)
        .expect("a sample at the marked line");
    assert_eq!(leak.1[2..], [1000, 1_024_000]);
    assert!(leak.0[0].function.ends_with("leak_thousand"));

    // In process: the mappings of /proc/self/maps, this binary first.
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    for (bytes, default) in [(pprof::heap_profile(), None), (pprof::allocs_profile(), Some("alloc_space"))] {
        let p = pprof::decode(&bytes).expect("decode");
        let file = &p.string_table[p.mapping[0].filename as usize];
        assert_eq!(std::path::Path::new(file), exe);
        assert!(p.mapping[0].memory_limit > p.mapping[0].memory_start);
        assert!(p.mapping.iter().all(|m| m.has_functions && m.has_line_numbers));
        let want = default.map_or(0, |d| p.string_table.iter().position(|s| s == d).unwrap() as i64);
        assert_eq!(p.default_sample_type, want);
        let live: i64 = samples(&p)
            .iter()
            .filter(|(frames, _)| is_file(&frames[0].file, "pprof_decode.rs") && frames[0].line == line)
            .map(|(_, v)| v[3])
            .sum();
        assert_eq!(live, 1_024_000);
    }

    // A diff, both ways: growth positive, shrinkage negative.
    for (diff, sign) in [(snap.compare_to(&before, GroupBy::Line), 1), (before.compare_to(&snap, GroupBy::Line), -1)] {
        let p = pprof::decode(&pprof::from_diff(&diff)).expect("decode");
        assert_eq!(type_names(&p), ["inuse_objects", "inuse_space"]);
        let got = samples(&p);
        let site = got.iter().find(|(frames, _)| frames[0].line == line).expect("the marked line in the diff");
        assert_eq!(site.1, [1000 * sign, 1_024_000 * sign]);
        let nonzero = diff.sites.iter().filter(|s| s.size_diff != 0 || s.count_diff != 0).count();
        assert_eq!(got.len(), nonzero);
    }
    drop(blocks);
}
