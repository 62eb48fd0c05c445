//! Trends: there is no public trend reader, so the target deserializes
//! `Trend` (what a consumer of `leaktrace.trend.v1` does) and re-ranks its
//! sites; the same bytes read as a list of snapshots go through `trend()`.

#![no_main]

use leaktrace::{analyze_series, rank_key_cmp, Snapshot, Trend};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = serde_json::from_str::<Trend>(text) {
        let times: Vec<f64> = t.snapshots.iter().map(|p| p.offset_seconds).collect();
        let mut judged: Vec<_> = t.sites.iter().map(|s| analyze_series(&times, &s.sizes)).collect();
        judged.sort_by(rank_key_cmp);
        let _ = t.steady().count();
        let again: Trend = serde_json::from_str(&t.to_json()).expect("a trend read must write back readable");
        assert_eq!(again, t, "written and read back, a trend must be the same");
    }
    // Unvalidated snapshots (out-of-range frame and context indices, any
    // sizes): public fields let a program build these, so trend() must cope.
    if let Ok(snaps) = serde_json::from_str::<Vec<Snapshot>>(text) {
        for g in common::GROUPINGS {
            let t = leaktrace::trend(&snaps, g);
            assert_eq!(t.snapshots.len(), snaps.len());
        }
    }
});
