//! A snapshot that reads: statistics for every grouping, `compare_to`
//! itself and a smaller copy, `trend()` over it, filters. None may panic.

#![no_main]

use leaktrace::Snapshot;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(s) = Snapshot::from_json(text, common::ORIGIN) {
        common::exercise_snapshot(&s);
    }
});
