//! `show --sort alloc`: statistics ordered by the bytes allocated since
//! `start()`, freed or not (where churn shows, not only what stays live).

use crate::render::{bytes, site};
use leaktrace::{GroupBy, Snapshot, Statistic};
use std::fmt::Write;

/// Most bytes allocated first; then most blocks allocated, most live bytes,
/// and the site, so the order is total.
pub fn sort_by_alloc(stats: &mut [Statistic]) {
    stats.sort_by(|a, b| {
        b.alloc_size
            .cmp(&a.alloc_size)
            .then(b.alloc_count.cmp(&a.alloc_count))
            .then(b.size.cmp(&a.size))
            .then_with(|| (&a.location.file, a.location.line).cmp(&(&b.location.file, b.location.line)))
            .then_with(|| a.location.function.cmp(&b.location.function))
    });
}

/// The table of `show --sort alloc`: allocated bytes and blocks beside the
/// live ones.
pub fn show_table(snap: &Snapshot, stats: &[Statistic], group_by: GroupBy, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "snapshot {:?} taken {} by pid {} ({}, {}, {} frames per trace)",
        snap.label, snap.taken_at, snap.pid, snap.mode, snap.capture, snap.frames_per_trace
    );
    let allocated: u64 = stats.iter().map(|s| s.alloc_size).sum();
    let _ = writeln!(
        out,
        "allocated since start: {} in {} blocks; live now {}",
        bytes(allocated),
        stats.iter().map(|s| s.alloc_count).sum::<u64>(),
        bytes(stats.iter().map(|s| s.size).sum())
    );
    let _ = writeln!(out, "grouped by {}: {} sites, most bytes allocated first\n", group_by.as_str(), stats.len());
    if stats.is_empty() {
        out.push_str("(no sites)\n");
        return out;
    }
    let rows: Vec<[String; 7]> = stats
        .iter()
        .take(top)
        .enumerate()
        .map(|(i, s)| {
            let share = if allocated == 0 { 0.0 } else { s.alloc_size as f64 * 100.0 / allocated as f64 };
            [
                format!("#{}", i + 1),
                bytes(s.alloc_size),
                format!("{share:.1}%"),
                s.alloc_count.to_string(),
                bytes(s.size),
                s.count.to_string(),
                site(&s.location),
            ]
        })
        .collect();
    let header = ["rank", "allocated", "share", "alloc_count", "live", "count", "site"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str], out: &mut String| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:>w$}  ");
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&header, &mut out);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>(), &mut out);
    }
    if stats.len() > top {
        let _ = writeln!(out, "... {} more (--top 0 lists all)", stats.len() - top);
    }
    out
}
