//! Sampled mode: per-site estimates are unbiased. Two sites allocate a known
//! 3:1 volume of mixed sizes; both estimates fall within 10% of the truth and
//! rank right. A block of 16 means or more is always sampled, at weight 1.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy, Mode};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("sampled_accuracy.rs");
const SIZES: [usize; 7] = [16, 48, 200, 1000, 4096, 30_000, 65_536];

#[inline(never)]
fn big_site(out: &mut Vec<Vec<u8>>, bytes: usize) -> usize {
    let (mut done, mut i) = (0, 0);
    while done < bytes {
        let n = SIZES[i % SIZES.len()];
        out.push(Vec::with_capacity(n)); // MARK: big
        done += n;
        i += 1;
    }
    done
}

#[inline(never)]
fn small_site(out: &mut Vec<Vec<u8>>, bytes: usize) -> usize {
    let (mut done, mut i) = (0, 0);
    while done < bytes {
        let n = SIZES[(i * 3 + 1) % SIZES.len()];
        out.push(Vec::with_capacity(n)); // MARK: small
        done += n;
        i += 1;
    }
    done
}

fn within(estimate: u64, truth: usize, tolerance: f64) -> bool {
    (estimate as f64 - truth as f64).abs() <= tolerance * truth as f64
}

#[test]
fn estimates_within_ten_percent_and_big_blocks_always_sampled() {
    let big_line = marker_line(SRC, "MARK: big");
    let small_line = marker_line(SRC, "MARK: small");
    let one_line = marker_line(SRC, "MARK: one");

    leaktrace::start(Config::default().mode(Mode::Sampled { mean_bytes: 64 * 1024 }).sample_seed(7));
    let mut out = Vec::with_capacity(20_000);
    let big = big_site(&mut out, 96 << 20);
    let small = small_site(&mut out, 32 << 20);
    let snap = leaktrace::take_snapshot("sampled");
    assert_eq!(snap.mode, "sampled");
    assert_eq!(snap.mean_bytes, Some(64 * 1024));
    let stats = snap.statistics(GroupBy::Line);
    let find = |line: u32| {
        stats
            .iter()
            .find(|s| s.location.line == line && is_file(&s.location.file, "sampled_accuracy.rs"))
            .unwrap_or_else(|| panic!("site {line} missing"))
    };
    let (b, s) = (find(big_line), find(small_line));
    assert!(within(b.size, big, 0.10), "big: estimated {} of {}", b.size, big);
    assert!(within(s.size, small, 0.10), "small: estimated {} of {}", s.size, small);
    let rank = |line: u32| stats.iter().position(|x| x.location.line == line).unwrap();
    assert!(rank(big_line) < rank(small_line), "the 96 MiB site ranks above the 32 MiB one");
    // traced_memory stays exact in sampled mode.
    assert!(leaktrace::traced_memory().current >= big + small);
    drop(out);

    // At the default 512 KiB mean, an 8 MiB block is sampled every time.
    leaktrace::start(Config::default().mode(Mode::Sampled { mean_bytes: 512 * 1024 }).sample_seed(11));
    for _ in 0..50 {
        let block: Vec<u8> = Vec::with_capacity(8 << 20); // MARK: one
        let snap = leaktrace::take_snapshot("one");
        let stats = snap.statistics(GroupBy::Line);
        let site = stats.iter().find(|s| s.location.line == one_line).expect("8 MiB block sampled");
        assert_eq!((site.size, site.count), (8 << 20, 1), "weight 1: the block's exact size");
        drop(block);
    }

    // A sampled block that grows by realloc keeps its site, with its new size;
    // unsampled small blocks reallocating around it do not disturb it.
    let mut grown: Vec<u8> = Vec::with_capacity(8 << 20); // MARK: grown
    let mut small: Vec<Vec<u8>> = (0..200).map(|_| Vec::with_capacity(16)).collect();
    for v in small.iter_mut() {
        v.reserve_exact(4000);
    }
    grown.reserve_exact(16 << 20);
    let cap = grown.capacity();
    let snap = leaktrace::take_snapshot("grown");
    let grown_line = marker_line(SRC, "MARK: grown");
    let stats = snap.statistics(GroupBy::Line);
    let site = stats.iter().find(|s| s.location.line == grown_line).expect("grown block still at its site");
    assert_eq!((site.size, site.count), (cap as u64, 1));
    let cur = leaktrace::traced_memory().current;
    assert!(cur >= cap + 200 * 4000, "current {cur}, cap {cap}");
    drop((grown, small));

    // Snapshots and task lists taken and dropped leave the exact total where
    // it was: their memory is counted when handed over and when freed.
    let before = leaktrace::traced_memory().current;
    for i in 0..100 {
        let s = leaktrace::take_snapshot(&format!("drop {i}"));
        let t = leaktrace::live_tasks();
        drop((s, t));
    }
    let after = leaktrace::traced_memory().current;
    assert!(after.abs_diff(before) < 4096, "traced total drifted from {before} to {after}");
    leaktrace::stop();
}
