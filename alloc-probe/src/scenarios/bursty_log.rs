//! # An audit log flushed into a list that is never trimmed
//!
//! **The pattern**: a service collects audit entries per request into a
//! batch and, every few steps, flushes the batch as one record. The leaky
//! code "flushes" into an in-memory list kept "for the admin page", which
//! nothing ever trims: it grows by one record per flush, for ever.
//!
//! **Why it is hard to see**: the leak grows in bursts. Between flushes the
//! record list does not change; the batch, on its own line, goes up and
//! down. A rule that asks a leak to grow in most intervals (the old
//! `steady`) called this `step`; the rank test of `leaktrace::trend` sees
//! every flush push the list to a new high and calls it `steady`.
//!
//! **The fix**: write the record out (here to a sink that stands for a file
//! or a log shipper) and drop it; keep nothing per flush.
//!
//! **What leaktrace shows**: the first site, `steady`, is the line that
//! renders the batch into a record and pushes it onto the list (marked
//! `LEAK`): the record's `String` is allocated there and the list's buffer
//! grows there too. The batch's entries come and go: that line churns.
//!
//! Flushes come at every [`FLUSH_EVERY`]-th step (steps counted from 1, the
//! warm-up being step 0), so a run of 6 or 12 steps ends right after one
//! and its growth doubles with the run's length.

use super::{Scenario, ScenarioFuture, Steps, Variant};
use std::fmt::Write as _;
use std::io::Write as _;

pub const SCENARIO: Scenario = Scenario {
    name: "bursty_log",
    title: "an audit log flushed every few steps into a list never trimmed",
    guide: "not in the guide: a leak that grows in bursts (a batch kept every 3rd step)",
    fix: "write each flushed record out and drop it; keep nothing per flush",
    source: file!(),
    text: include_str!("bursty_log.rs"),
    run,
};

/// Audit entries per step.
pub const ENTRIES_PER_STEP: usize = 32;
/// Bytes per audit entry.
pub const ENTRY_BYTES: usize = 768;
/// The batch is flushed at every this many steps.
pub const FLUSH_EVERY: usize = 3;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        // Room for every entry between two flushes (the first flush also
        // takes the warm-up's), so that the batch's own buffer is allocated
        // once, before the warm-up.
        let mut batch: Vec<String> = Vec::with_capacity(ENTRIES_PER_STEP * (FLUSH_EVERY + 1));
        let mut log: Vec<String> = Vec::new();
        let mut step = 0usize;
        while steps.next().await {
            for i in 0..ENTRIES_PER_STEP {
                batch.push(entry(step, i));
            }
            if step > 0 && step % FLUSH_EVERY == 0 {
                match variant {
                    Variant::Leaky => leaky_flush(&mut batch, &mut log),
                    Variant::Fixed => flush(&mut batch),
                }
            }
            step += 1;
        }
        std::hint::black_box(&log);
    })
}

/// One audit entry: who did what, padded to [`ENTRY_BYTES`].
fn entry(step: usize, i: usize) -> String {
    let mut e = String::with_capacity(ENTRY_BYTES);
    let _ = write!(e, "step={step} request={i} action=update user=u{:04};", (step * 31 + i) % 1000);
    while e.len() < ENTRY_BYTES {
        e.push('.');
    }
    e
}

/// Renders the batch as one record into the list "for the admin page":
/// never trimmed.
fn leaky_flush(batch: &mut Vec<String>, log: &mut Vec<String>) {
    log.push(batch.concat()); // LEAK: bursty_log
    batch.clear();
}

/// Renders the batch as one record and writes it out; nothing is kept.
fn flush(batch: &mut Vec<String>) {
    let record = batch.concat();
    let _ = std::io::sink().write_all(record.as_bytes());
    batch.clear();
}
