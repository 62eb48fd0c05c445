//! # A request buffer kept for one request in N, under heavy churn
//!
//! **The pattern**: every request reads its body into a buffer, answered
//! one step later; then the buffer is dropped. But on one path (here, one
//! request in [`KEEP_ONE_IN`], say a failed one "kept to be retried") the
//! leaky code parks the buffer in a retry list that nothing drains.
//!
//! **Why it is hard to see**: the kept buffers are allocated on the same
//! line as all the others, and there are far more of those in flight at any
//! time (96-160 KiB, varying with the load) than are kept per step (about
//! 21 KiB), so that line goes down in half of the intervals. The rank test
//! of `leaktrace::trend` sees the trend under the noise and calls it
//! `steady`. (In runs this short the old rule, growth in half of the
//! intervals keeping half of the gains, happens to agree; over 60
//! snapshots of heavier churn it called such a leak `churn`, see
//! `reports/verdicts.md`. With 7 snapshots no test can find a leak much
//! smaller than its churn: the load here is kept to what 7 can show.)
//!
//! **The fix**: a failed request is retried at the next step, like any
//! other, and its buffer dropped with the answer.
//!
//! **What leaktrace shows**: the first site, `steady`, is the line reading
//! each request's body (marked `LEAK`): both the buffers in flight and the
//! kept ones are allocated there. The retry list's own buffer grows where
//! it is pushed, in steps, and is small.
//!
//! The load alternates between two levels ([`LOAD`]), so that the buffers
//! in flight at `start` and after any even number of steps are the same:
//! what grows from `start` to the last step is what was kept.

use super::{Scenario, ScenarioFuture, Steps, Variant};

pub const SCENARIO: Scenario = Scenario {
    name: "churn_buffer",
    title: "a request buffer kept for one request in N, beside many in flight",
    guide: "not in the guide: a leak hidden in churn on its own line (1 buffer in 6 kept)",
    fix: "retry the request at the next step and drop its buffer with the answer",
    source: file!(),
    text: include_str!("churn_buffer.rs"),
    run,
};

/// Requests per step, alternating: the load goes up and down.
pub const LOAD: [usize; 2] = [40, 24];
/// Bytes per request body.
pub const REQUEST_BYTES: usize = 4096;
/// One request in this many takes the retry path.
pub const KEEP_ONE_IN: usize = 6;

fn run(variant: Variant, steps: &mut Steps) -> ScenarioFuture<'_> {
    Box::pin(async move {
        // Room for the most requests in flight, so that this buffer is
        // allocated once.
        let mut in_flight: Vec<Vec<u8>> = Vec::with_capacity(2 * LOAD.iter().max().copied().unwrap_or(0));
        let mut retry: Vec<Vec<u8>> = Vec::new();
        let (mut step, mut request) = (0usize, 0usize);
        while steps.next().await {
            // Last step's requests are answered: their buffers go. (The
            // fixed retry path answered its requests the same way.)
            in_flight.clear();
            for _ in 0..LOAD[step % LOAD.len()] {
                let body = read_body(request);
                let failed = request % KEEP_ONE_IN == KEEP_ONE_IN - 1;
                match (variant, failed) {
                    // Parked "to be retried": nothing ever retries it.
                    (Variant::Leaky, true) => retry.push(body),
                    // Retried with the next step's answers, then dropped.
                    _ => in_flight.push(body),
                }
                request += 1;
            }
            step += 1;
        }
        std::hint::black_box(&retry);
    })
}

/// Reads request `id`'s body into a fresh buffer.
fn read_body(id: usize) -> Vec<u8> {
    let body = vec![(id % 251) as u8; REQUEST_BYTES]; // LEAK: churn_buffer
    std::hint::black_box(body)
}
