//! Writes `reports/verdicts.md`: for each generated shape of series, how
//! many of 200 seeds got each verdict from `leaktrace::analyze_series`.
//!
//! ```sh
//! cargo run --release -p alloc-probe --example verdicts > reports/verdicts.md
//! ```
//!
//! The shapes are the ones the unit tests of `src/trend.rs` assert on
//! (both include `src/trend_shapes.rs`), with the same seeds,
//! so the counts here are the ones those tests see.

#![forbid(unsafe_code)]

use leaktrace::{analyze_series, Verdict};

/// Seeds per shape.
const SEEDS: u64 = 200;

const VERDICTS: [Verdict; 6] =
    [Verdict::Steady, Verdict::Step, Verdict::Plateau, Verdict::Churn, Verdict::Flat, Verdict::Shrinking];

/// The rule before Mann-Kendall, for comparison: grew in at least half of
/// the intervals, keeping at least half of its gains.
fn old_rule_steady(sizes: &[u64]) -> bool {
    let (mut grew, mut up) = (0usize, 0u64);
    for w in sizes.windows(2) {
        if w[1] > w[0] {
            grew += 1;
            up += w[1] - w[0];
        }
    }
    let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
    last > first && 2 * (last - first) >= up && 2 * grew >= sizes.len() - 1
}

/// Leaks: the shapes that should come out `steady`.
fn is_leak(name: &str) -> bool {
    name.contains("leak")
}

fn main() {
    println!("# Verdicts on generated series");
    println!();
    println!("Made by, from the repository root:");
    println!();
    println!("```sh");
    println!("cargo run --release -p alloc-probe --example verdicts > reports/verdicts.md");
    println!("```");
    println!();
    println!(
        "Each row is one shape of series (`alloc-probe/examples/verdicts.rs`, drawing from \
         `src/trend_shapes.rs`, as the unit tests in `src/trend.rs` do), drawn for seeds 0..{SEEDS} with splitmix64, \
         snapshots one second apart, each series judged by `leaktrace::analyze_series`. \
         `steady` is Mann-Kendall p < 1% (tie corrected, Hamed-Rao over 5 lags), a positive \
         Theil-Sen slope and the growth still present in the last third of the intervals; see the \
         docs of `leaktrace::trend`. The last column is how many the rule before it (grew in at \
         least half of the intervals, keeping half of its gains) called `steady`."
    );
    println!();
    print!("| shape | should be |");
    for v in VERDICTS {
        print!(" {v} |");
    }
    print!(" old rule: steady |");
    println!();
    print!("|---|---|");
    for _ in VERDICTS {
        print!("---:|");
    }
    print!("---:|");
    println!();
    for (name, shape) in shapes::all() {
        let (mut counts, mut old) = ([0u64; VERDICTS.len()], 0u64);
        for seed in 0..SEEDS {
            let sizes = shape(seed);
            old += old_rule_steady(&sizes) as u64;
            let verdict = analyze_series(&shapes::times(sizes.len()), &sizes).verdict;
            counts[VERDICTS.iter().position(|&v| v == verdict).unwrap_or(0)] += 1;
        }
        print!("| {name} | {} |", if is_leak(name) { "steady" } else { "not steady" });
        for c in counts {
            print!(" {c} |");
        }
        println!(" {old} |");
    }
    println!();
    println!(
        "Shapes: \"bursty\" leaks add 96 KiB in one interval of k (random phase), flat in between, over \
         30-100 snapshots; \"under churn\" is uniform 0-256 KiB in flight on the same site plus the \
         stated share of that range retained per interval, 60 snapshots; \"slow churn\" keeps 80% of \
         what was in flight each interval (lag-1 autocorrelation 0.8); the \"noisy leak\" retains a \
         random 0-32 KiB per interval, so its residuals are a random walk; the load jumps once anywhere; \
         the cache fills by random amounts over the first 20-50% of the series, then stays exactly flat; \
         \"sampled\" sizes are whole 64 KiB sampled blocks."
    );
}

/// Generated series, one shape per function: the same file the tests of
/// `src/trend.rs` draw from.
#[path = "../../src/trend_shapes.rs"]
mod shapes;
