//! The readers against a naive model, with proptest: any bytes, and valid
//! files with bytes flipped, cut or added, read as an error that names the
//! file first (never a panic); any snapshot, and any diff of two, written
//! and read back is the same value.
//!
//! No global allocator here: the readers and writers are pure code, and
//! nothing is traced. Counterexamples are not persisted (no regression
//! files beside the sources); a failure prints the minimal case.

use leaktrace::{Birth, Frame, GroupBy, ProcessMemory, Snapshot, SnapshotDiff, TaskStat, Totals, Trace};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::{Path, PathBuf};

/// A directory of this test process's own, removed by no one else.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leaktrace-proptest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn config() -> Config {
    Config { cases: 256, failure_persistence: None, ..Config::default() }
}

/// Text with any Unicode, including quotes, backslashes, controls and
/// characters outside the BMP.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,12}", ".{0,8}", Just(String::new()), Just("\"\\\u{0}\u{1f}\u{7f}\u{feff}é漢🦀".to_string()),]
}

fn frame() -> impl Strategy<Value = Frame> {
    (text(), text(), any::<u32>()).prop_map(|(function, file, line)| Frame { function, file, line, ..Frame::default() })
}

/// A finite f64 of any size or sign (JSON has no NaN or infinity).
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// RFC 3339 text, with or without a fraction, `Z` or an offset.
fn rfc3339() -> impl Strategy<Value = String> {
    (1970u32..2200, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60, proptest::option::of(0u32..1000), 0usize..3)
        .prop_map(|(y, mo, d, h, mi, s, ms, zone)| {
            let frac = ms.map(|ms| format!(".{ms:03}")).unwrap_or_default();
            let zone = ["Z", "+01:00", "-07:30"][zone];
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

fn trace(frames: usize, contexts: usize, max_size: u64) -> impl Strategy<Value = Trace> {
    let index =
        if frames == 0 { Just(Vec::new()).boxed() } else { prop::collection::vec(0..frames as u32, 0..5).boxed() };
    let context = if contexts == 0 { Just(None).boxed() } else { proptest::option::of(0..contexts as u32).boxed() };
    let births = prop::collection::vec(
        (any::<u64>(), 0..=max_size, 0..=max_size).prop_map(|(epoch, size, count)| Birth {
            epoch,
            epoch_last: epoch,
            size,
            count,
        }),
        0..3,
    );
    (0..=max_size, 0..=max_size, index, 0..=max_size, 0..=max_size, context, births).prop_map(
        |(size, count, frames, alloc_size, alloc_count, context, births)| Trace {
            size,
            count,
            frames,
            alloc_size,
            alloc_count,
            context,
            births,
        },
    )
}

/// Clock readings: any finite value, or the range real snapshots have.
#[derive(Clone, Copy)]
enum Times {
    Any,
    Real,
}

/// `max_size` bounds every size and count (a diff sums and subtracts them).
fn snapshot(max_size: u64, times: Times) -> impl Strategy<Value = Snapshot> {
    // Zero means "read it from taken_at", so a written 0 would not read back as 0.
    let (unix, monotonic) = match times {
        Times::Any => (finite().prop_filter("nonzero", |t| *t != 0.0).boxed(), finite().boxed()),
        // 2001 to 2286; up to 115 days of uptime.
        Times::Real => ((1e9..1e10f64).boxed(), (0.0..1e7f64).boxed()),
    };
    let head = (
        text(),
        rfc3339(),
        unix,
        monotonic,
        any::<u32>(),
        prop_oneof![Just("exact".to_string()), Just("sampled".to_string()), text()],
        proptest::option::of(any::<u64>()),
        prop_oneof![Just("frame-pointers".to_string()), Just("unwinder".to_string()), text()],
        any::<usize>(),
    );
    let totals = prop::array::uniform6(any::<u64>()).prop_map(|t| Totals {
        current_bytes: t[0],
        peak_bytes: t[1],
        blocks: t[2],
        traced_bytes: t[3],
        tracker_bytes: t[4],
        untracked_blocks: t[5],
    });
    let process = proptest::option::of(
        (any::<u64>(), any::<u64>()).prop_map(|(rss_bytes, vms_bytes)| ProcessMemory { rss_bytes, vms_bytes }),
    );
    let tasks = prop::collection::vec(
        (frame(), any::<u64>(), any::<u64>()).prop_map(|(location, live, spawned)| TaskStat {
            location,
            live,
            spawned,
        }),
        0..3,
    );
    let body = (prop::collection::vec(frame(), 0..6), prop::collection::vec(text(), 0..3)).prop_flat_map(
        move |(frames, contexts)| {
            let traces = prop::collection::vec(trace(frames.len(), contexts.len(), max_size), 0..6);
            (Just(frames), Just(contexts), traces)
        },
    );
    (head, totals, process, tasks, any::<u64>(), body).prop_map(
        |(
            (label, taken_at, unix_seconds, monotonic_seconds, pid, mode, mean_bytes, capture, frames_per_trace),
            totals,
            process,
            tasks,
            epoch,
            (frames, contexts, traces),
        )| Snapshot {
            label,
            taken_at,
            unix_seconds,
            monotonic_seconds,
            pid,
            mode,
            mean_bytes,
            capture,
            frames_per_trace,
            totals,
            process,
            frames,
            traces,
            tasks,
            epoch,
            contexts,
            modules: Vec::new(),
        },
    )
}

fn group_by() -> impl Strategy<Value = GroupBy> {
    prop_oneof![
        Just(GroupBy::Line),
        Just(GroupBy::Function),
        Just(GroupBy::File),
        Just(GroupBy::Traceback),
        Just(GroupBy::Context),
    ]
}

/// A damaged copy of `bytes`.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: prop::sample::Index, bit: u8 },
    Truncate { at: prop::sample::Index },
    Insert { at: prop::sample::Index, byte: u8 },
    Remove { at: prop::sample::Index, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (any::<prop::sample::Index>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        if len == 0 {
            break;
        }
        match m {
            Mutation::Flip { at, bit } => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Truncate { at } => bytes.truncate(at.index(bytes.len())),
            Mutation::Insert { at, byte } => bytes.insert(at.index(bytes.len() + 1), *byte),
            Mutation::Remove { at, len } => {
                let start = at.index(bytes.len());
                bytes.drain(start..(start + len).min(bytes.len()));
            }
        }
    }
    bytes
}

/// Reading `bytes` from a file is a value or an error naming the file
/// first; the same for the text form of the reader when it is UTF-8.
fn read_anything(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    let shown = path.display().to_string();
    if let Err(e) = Snapshot::read_json(&path) {
        prop_assert!(e.to_string().starts_with(&shown), "{e}");
        prop_assert_eq!(e.path(), path.as_path());
    }
    if let Err(e) = SnapshotDiff::read_json(&path) {
        prop_assert!(e.to_string().starts_with(&shown), "{e}");
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Err(e) = Snapshot::from_json(text, "origin/of.json") {
            prop_assert!(e.to_string().starts_with("origin/of.json: "), "{e}");
            prop_assert_eq!(e.path(), Path::new("origin/of.json"));
        }
    }
    std::fs::remove_file(&path).unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_read_as_a_value_or_an_error_naming_the_file(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        read_anything("bytes.json", &bytes)?;
    }

    #[test]
    fn damaged_files_read_as_a_value_or_an_error_naming_the_file(
        s in snapshot(1 << 40, Times::Any),
        older in snapshot(1 << 40, Times::Real),
        g in group_by(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        read_anything("snapshot.json", &mutate(s.to_json().into_bytes(), &mutations))?;
        read_anything("diff.json", &mutate(s.compare_to(&older, g).to_json().into_bytes(), &mutations))?;
    }

    #[test]
    fn a_snapshot_written_and_read_back_is_the_same(s in snapshot(u64::MAX, Times::Any)) {
        let path = scratch("roundtrip-snapshot.json");
        s.write_json(&path).unwrap();
        prop_assert_eq!(Snapshot::read_json(&path).unwrap(), s.clone());
        std::fs::remove_file(&path).unwrap();
        prop_assert_eq!(Snapshot::from_json(&s.to_json(), "x.json").unwrap(), s);
    }

    // Any clock readings and sizes: extreme ones (wall times 1e308 apart,
    // monotonic ones 1e-300 apart, sizes near u64::MAX) once made the rate
    // infinite (JSON `null`, unreadable) or overflowed (reports/fuzz.md).
    #[test]
    fn a_diff_written_and_read_back_is_the_same(
        newer in snapshot(u64::MAX, Times::Any),
        older in snapshot(u64::MAX, Times::Any),
        g in group_by(),
    ) {
        let path = scratch("roundtrip-diff.json");
        for d in [newer.compare_to(&older, g), newer.compare_to(&newer, g)] {
            d.write_json(&path).unwrap();
            prop_assert_eq!(SnapshotDiff::read_json(&path).unwrap(), d);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_snapshot_diffed_with_itself_is_empty(s in snapshot(u64::MAX, Times::Any), g in group_by()) {
        let d = s.compare_to(&s, g);
        prop_assert_eq!(d.sites.len(), s.statistics(g).len());
        prop_assert!(d.sites.iter().all(|site| site.size_diff == 0 && site.count_diff == 0));
        prop_assert_eq!(d.totals.size_diff, 0);
    }
}
