//! `Snapshot::from_json` on any text: an error naming the origin, or a
//! snapshot that writes back to the same snapshot.

#![no_main]

use leaktrace::Snapshot;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Snapshot::from_json(text, common::ORIGIN) {
        Err(e) => common::check_err(&e, common::ORIGIN),
        Ok(s) => {
            let again =
                Snapshot::from_json(&s.to_json(), "again.json").expect("a snapshot read must write back readable");
            assert_eq!(again, s, "written and read back, a snapshot must be the same");
        }
    }
});
