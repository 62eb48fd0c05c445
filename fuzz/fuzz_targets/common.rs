//! What every target checks on what it parsed.

#![allow(dead_code)]

use leaktrace::{Error, Filter, GroupBy, Snapshot, SnapshotDiff};

/// The name every target gives its input.
pub const ORIGIN: &str = "fuzz.json";

pub const GROUPINGS: [GroupBy; 5] =
    [GroupBy::Line, GroupBy::Function, GroupBy::File, GroupBy::Traceback, GroupBy::Context];

/// A reader's error must name the file first.
pub fn check_err(e: &Error, origin: &str) {
    let msg = e.to_string();
    assert!(msg.starts_with(origin), "error does not start with {origin:?}: {msg:?}");
    assert_eq!(e.path(), std::path::Path::new(origin));
}

/// Filters built from the input's own strings, so glob matching sees
/// patterns the fuzzer chose.
pub fn filters_from(patterns: &[&str]) -> Vec<Filter> {
    let mut out = vec![Filter::exclude_file("*/rustc/*"), Filter::include_function("*::*")];
    for p in patterns.iter().take(4) {
        out.push(Filter::include_file(*p));
        out.push(Filter::exclude_function(*p));
    }
    out
}

/// Everything a reader of a diff does with it.
pub fn exercise_diff(d: &SnapshotDiff) {
    let patterns: Vec<&str> = d.sites.iter().map(|s| s.location.file.as_str()).collect();
    let f = d.filter(&filters_from(&patterns));
    assert!(f.sites.len() <= d.sites.len());
    for (i, s) in f.sites.iter().enumerate() {
        assert_eq!(s.rank, i + 1);
    }
    let _ = d.top(0);
    let _ = d.top(3);
    let _ = d.top(usize::MAX);
}

/// Everything the CLI and the monitor do with a snapshot.
pub fn exercise_snapshot(s: &Snapshot) {
    for g in GROUPINGS {
        let stats = s.statistics(g);
        let self_diff = s.compare_to(s, g);
        // A snapshot diffed with itself: every group unchanged.
        assert_eq!(self_diff.sites.len(), stats.len());
        assert!(self_diff.sites.iter().all(|d| d.size_diff == 0 && d.count_diff == 0), "{g:?}");
        exercise_diff(&self_diff);
        let mut older = s.clone();
        older.traces.truncate(s.traces.len() / 2);
        older.label.push_str("-older");
        exercise_diff(&s.compare_to(&older, g));
        exercise_diff(&older.compare_to(s, g));
        let t = leaktrace::trend(&[s.clone(), older, s.clone()], g);
        assert_eq!(t.snapshots.len(), 3);
        for (i, site) in t.sites.iter().enumerate() {
            assert_eq!(site.rank, i + 1);
            assert_eq!(site.sizes.len(), 3);
        }
        let _ = t.steady().count();
        let patterns: Vec<&str> = stats.iter().map(|st| st.location.function.as_str()).collect();
        let _ = leaktrace::filter_statistics(stats.clone(), &filters_from(&patterns));
    }
    let patterns: Vec<&str> = s.frames.iter().map(|f| f.file.as_str()).collect();
    let filtered = s.filter_traces(&filters_from(&patterns));
    assert!(filtered.traces.len() <= s.traces.len());
    for t in &s.traces {
        let _ = s.traceback(t);
        let _ = s.site(t);
        let _ = s.context_of(t);
    }
}
