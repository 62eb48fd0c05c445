//! The whole flow on a small leak: a cache that only grows, beside a
//! buffer that is allocated and freed on every request.
//!
//! ```text
//! cargo run --release --example leaky_cache
//! ```
//!
//! It takes a labelled snapshot before and after serving requests, prints
//! the ranked diff (the cache's insert line comes first), the statistics of
//! the last snapshot, and writes both snapshots and the diff as JSON into
//! `reports/example/`, where `alloc-probe diff` can read them later.

use leaktrace::{Config, GroupBy};
use std::collections::HashMap;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

struct Service {
    /// Responses by request id: never evicted, so it grows with every request.
    cache: HashMap<u64, Vec<u8>>,
}

impl Service {
    fn handle(&mut self, id: u64) -> usize {
        // A scratch buffer, freed before returning: churn, not a leak.
        let scratch = vec![0u8; 64 * 1024];
        let response = format!("response {id} ({} scratch bytes)", scratch.len()).into_bytes();
        let len = response.len();
        self.cache.insert(id, response.repeat(16)); // the leak: nothing ever evicts
        len
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    leaktrace::start(Config::default());
    let mut service = Service { cache: HashMap::new() };
    for id in 0..100 {
        service.handle(id);
    }
    let before = leaktrace::take_snapshot("after_warmup");
    for id in 100..5_100 {
        service.handle(id);
    }
    let after = leaktrace::take_snapshot("after_5000_requests");

    let diff = after.compare_to(&before, GroupBy::Line);
    println!("Top growth from {:?} to {:?} ({:.3} s):", diff.from.label, diff.to.label, diff.elapsed_seconds);
    for site in diff.top(5) {
        println!(
            "#{} {}:{} ({}) size={} B ({:+} B), count={} ({:+}), {:.0} B/s",
            site.rank,
            site.location.file,
            site.location.line,
            site.location.function,
            site.size,
            site.size_diff,
            site.count,
            site.count_diff,
            site.growth_bytes_per_sec
        );
    }
    println!("\nLargest sites now:");
    for stat in after.statistics(GroupBy::Line).iter().take(3) {
        println!("{}:{} size={} B count={}", stat.location.file, stat.location.line, stat.size, stat.count);
    }
    let mem = leaktrace::traced_memory();
    println!(
        "\ntraced: current={} B peak={} B; tracker itself: {} B; capture: {}",
        mem.current,
        mem.peak,
        leaktrace::tracker_memory(),
        leaktrace::capture_method().as_str()
    );

    let dir = std::path::Path::new("reports/example");
    std::fs::create_dir_all(dir)?;
    before.write_json(dir.join("before.json"))?;
    after.write_json(dir.join("after.json"))?;
    diff.write_json(dir.join("diff.json"))?;
    println!("wrote {}/{{before,after,diff}}.json", dir.display());
    leaktrace::stop();
    Ok(())
}
