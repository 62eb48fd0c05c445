//! Blocks allocated before `start()` (or before `clear_traces()`) are
//! ignored when freed: no underflow, no negative site.

use leaktrace::{Config, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

#[test]
fn blocks_from_before_start_are_ignored() {
    let early: Vec<Vec<u8>> = (0..500).map(|_| vec![1u8; 10_000]).collect();
    leaktrace::start(Config::default());
    let kept: Vec<Vec<u8>> = (0..10).map(|_| vec![2u8; 1000]).collect();
    let current = leaktrace::traced_memory().current;
    drop(early);
    assert_eq!(leaktrace::traced_memory().current, current, "freeing untraced blocks changes nothing");
    let snap = leaktrace::take_snapshot("after");
    assert_eq!(snap.totals.traced_bytes, snap.totals.current_bytes);
    assert!(snap.totals.current_bytes < 1 << 40, "no wrap-around");

    // clear_traces: what was traced so far is forgotten, and freeing it later changes nothing.
    leaktrace::clear_traces();
    assert_eq!(leaktrace::traced_memory().current, 0);
    drop(kept);
    assert_eq!(leaktrace::traced_memory().current, 0);
    let fresh: Vec<u8> = vec![0u8; 4096];
    let s = leaktrace::take_snapshot("fresh");
    assert_eq!(s.totals.current_bytes, s.totals.traced_bytes);
    assert!(s.statistics(GroupBy::Line).iter().any(|x| x.size == 4096));
    assert!(leaktrace::traced_memory().current >= 4096);
    drop(fresh);

    // stop: nothing is traced, and frees after stop are fine.
    let late = vec![0u8; 100];
    leaktrace::stop();
    drop(late);
    assert_eq!(leaktrace::traced_memory().current, 0);
    assert!(leaktrace::take_snapshot("stopped").traces.is_empty());
}
