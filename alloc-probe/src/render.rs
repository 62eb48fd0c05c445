//! Text for people: byte counts in KiB/MiB, aligned tables, short paths,
//! sparklines. JSON output does not come through here.

use leaktrace::{Frame, Snapshot, SnapshotDiff, Statistic, Traceback, Trend, TrendSite};
use std::fmt::Write;

/// `0 B`, `512 B`, `1.5 KiB`, `12.3 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `+1.5 KiB`, `-512 B`, `0 B`.
pub fn signed_bytes(n: i64) -> String {
    match n.signum() {
        0 => "0 B".to_string(),
        1 => format!("+{}", bytes(n.unsigned_abs())),
        _ => format!("-{}", bytes(n.unsigned_abs())),
    }
}

/// `+1.5 KiB/s`, `-20 B/s`, `0 B/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() {
        return "-".to_string();
    }
    let rounded = bytes_per_sec.round();
    // Clamp before the cast: an absurd rate from a hand-made file must not wrap.
    let n = rounded.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    format!("{}/s", signed_bytes(n))
}

/// `+12`, `-3`, `0`.
pub fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// A path as a person wants to read it: relative to the current directory
/// when under it, and a dependency's path from its crate directory
/// (`tokio-1.54.1/src/...`) rather than from the cargo registry.
pub fn short_path(path: &str) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        let cwd = cwd.display().to_string();
        if let Some(rest) = path.strip_prefix(&cwd).and_then(|r| r.strip_prefix('/')) {
            return rest.to_string();
        }
    }
    // The standard library's sources, as rustc records them: `/rustc/<commit>/library/...`.
    if let Some(rest) = path.strip_prefix("/rustc/") {
        if let Some(j) = rest.find('/') {
            return format!("<rustc>/{}", &rest[j + 1..]);
        }
    }
    for marker in ["/registry/src/", "/git/checkouts/"] {
        if let Some(i) = path.find(marker) {
            let rest = &path[i + marker.len()..];
            // Skip the index (or checkout) directory: keep `crate-x.y.z/...`.
            if let Some(j) = rest.find('/') {
                return rest[j + 1..].to_string();
            }
        }
    }
    path.to_string()
}

/// `file:line (function)`, `file (function)` or `function`, shortened.
pub fn site(f: &Frame) -> String {
    let place = match (f.file.is_empty(), f.line) {
        (true, _) => String::new(),
        (false, 0) => short_path(&f.file),
        (false, line) => format!("{}:{line}", short_path(&f.file)),
    };
    match (place.is_empty(), f.function.is_empty()) {
        (true, true) => "<unknown>".to_string(),
        (true, false) => f.function.clone(),
        (false, true) => place,
        (false, false) => format!("{place} ({})", short_function(&f.function)),
    }
}

/// A site as tables show it under its context (see `leaktrace::site_label`):
/// the context first when the site is not the program's own code.
pub fn site_in(f: &Frame, context: Option<&str>) -> String {
    match context {
        None => site(f),
        // Grouped by context, the group is the context itself.
        Some(ctx) if f.file.is_empty() && f.function == ctx => ctx.to_string(),
        Some(ctx) if leaktrace::is_program_frame(f) => format!("{} [{ctx}]", site(f)),
        Some(ctx) => format!("{ctx} › {}", site(f)),
    }
}

/// The births of a site as a bar, oldest age range on the left, one column
/// per range that the snapshot's epoch reaches back to: `▁▁▂▃▅█` is born
/// all along, `█     ` all at one old time, `     █` all just now.
pub fn age_bar(births: &[leaktrace::Birth], epoch: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let bucket = |age: u64| if age == 0 { 0 } else { ((64 - age.leading_zeros()) as usize).min(15) };
    let columns = bucket(epoch) + 1;
    let mut slots = vec![0u64; columns];
    for b in births {
        let i = bucket(epoch.saturating_sub(b.epoch_last.max(b.epoch))).min(columns - 1);
        slots[i] += b.size;
    }
    let hi = slots.iter().copied().max().unwrap_or(0);
    slots
        .iter()
        .rev()
        .map(|&v| match v {
            0 => ' ',
            _ => BARS[((v as f64 / hi.max(1) as f64) * 7.0).round() as usize],
        })
        .collect()
}

/// A function name without the closure noise of async code
/// (`a::b::{{closure}}::{{closure}}` reads `a::b::{closure}`).
fn short_function(f: &str) -> String {
    let mut s = f.replace("{{closure}}", "{closure}").replace("{{constant}}", "{constant}");
    while s.contains("::{closure}::{closure}") {
        s = s.replace("::{closure}::{closure}", "::{closure}");
    }
    s
}

/// Eight levels of a series between its own minimum and maximum.
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let picked: Vec<u64> = if values.len() <= width {
        values.to_vec()
    } else {
        (0..width).map(|i| values[i * (values.len() - 1) / (width - 1).max(1)]).collect()
    };
    let lo = *picked.iter().min().unwrap_or(&0);
    let hi = *picked.iter().max().unwrap_or(&0);
    picked
        .iter()
        .map(|&v| if hi == lo { BARS[0] } else { BARS[(((v - lo) as f64 / (hi - lo) as f64) * 7.0).round() as usize] })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell; the last column is left ragged.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    /// Lines printed under a row (a traceback), indented.
    notes: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new(), notes: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>, notes: Vec<String>) {
        self.rows.push(cells);
        self.notes.push(notes);
    }

    fn render(&self, out: &mut String) {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                let header = self.columns[c].0.chars().count();
                self.rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(header)
            })
            .collect();
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len() - 1;
            let mut s = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                if c == last {
                    s.push_str(cell);
                } else if self.columns[c].1 == Align::Right {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
                if c != last {
                    s.push_str("  ");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(self.columns.iter().map(|c| c.0).collect(), out);
        for (row, notes) in self.rows.iter().zip(&self.notes) {
            line(row.iter().map(String::as_str).collect(), out);
            for n in notes {
                let _ = writeln!(out, "        {n}");
            }
        }
    }
}

const R: Align = Align::Right;
const L: Align = Align::Left;

/// The frames of a traceback after the first (the site is in the row).
fn traceback_notes(traceback: &Traceback, with: bool) -> Vec<String> {
    if !with {
        return Vec::new();
    }
    traceback.iter().skip(1).map(|f| format!("at {}", site(f))).collect()
}

/// A diff as tracemalloc's `compare_to` listing, one row per site.
pub fn diff_table(diff: &SnapshotDiff, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "diff {:?} -> {:?}: {:.2} s apart, grouped by {}",
        diff.from.label,
        diff.to.label,
        diff.elapsed_seconds,
        diff.group_by.as_str()
    );
    let _ = writeln!(
        out,
        "total: {} in {} blocks (traced {} -> {})\n",
        signed_bytes(diff.totals.size_diff),
        signed(diff.totals.count_diff),
        bytes(diff.from.current_bytes),
        bytes(diff.to.current_bytes)
    );
    let with_tb = diff.group_by == leaktrace::GroupBy::Traceback;
    let mut t = Table::new(&[
        ("rank", R),
        ("size", R),
        ("size_diff", R),
        ("count", R),
        ("count_diff", R),
        ("growth", R),
        ("site", L),
    ]);
    for s in diff.sites.iter().take(top) {
        t.row(
            vec![
                format!("#{}", s.rank),
                bytes(s.size),
                signed_bytes(s.size_diff),
                s.count.to_string(),
                signed(s.count_diff),
                rate(s.growth_bytes_per_sec),
                site_in(&s.location, s.context.as_deref()),
            ],
            traceback_notes(&s.traceback, with_tb),
        );
    }
    if diff.sites.is_empty() {
        out.push_str("(no live sites)\n");
    } else {
        t.render(&mut out);
        more(&mut out, diff.sites.len(), top);
    }
    let tasks: Vec<_> = diff.tasks.iter().filter(|t| t.live_diff != 0 || t.live > 0).collect();
    if !tasks.is_empty() {
        out.push_str("\nlive tasks by spawn site:\n");
        let mut t = Table::new(&[("live", R), ("live_diff", R), ("spawned", R), ("site", L)]);
        for task in tasks.iter().take(top) {
            t.row(
                vec![task.live.to_string(), signed(task.live_diff), task.spawned.to_string(), site(&task.location)],
                Vec::new(),
            );
        }
        t.render(&mut out);
    }
    out
}

fn more(out: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(out, "... {} more (--top 0 lists all)", total - shown);
    }
}

/// A snapshot's statistics, largest first.
pub fn show_table(snap: &Snapshot, stats: &[Statistic], group_by: leaktrace::GroupBy, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "snapshot {:?} taken {} by pid {} ({}, {}, {} frames per trace)",
        snap.label, snap.taken_at, snap.pid, snap.mode, snap.capture, snap.frames_per_trace
    );
    let t = &snap.totals;
    let mut line = format!(
        "traced: {} in {} blocks, peak {}; tracker {}",
        bytes(t.traced_bytes),
        t.blocks,
        bytes(t.peak_bytes),
        bytes(t.tracker_bytes)
    );
    if let Some(p) = &snap.process {
        let _ = write!(line, "; process RSS {}", bytes(p.rss_bytes));
    }
    if t.untracked_blocks > 0 {
        let _ = write!(line, "; {} blocks untracked", t.untracked_blocks);
    }
    let _ = writeln!(out, "{line}");
    let total: u64 = stats.iter().map(|s| s.size).sum();
    let _ = writeln!(out, "grouped by {}: {} sites\n", group_by.as_str(), stats.len());
    let with_tb = group_by == leaktrace::GroupBy::Traceback;
    // Sites whose live blocks were born all along (accumulating) first,
    // above larger ones born at one time: the likelier leaks. Within each
    // part, largest first as `statistics()` gives them.
    let with_births = stats.iter().any(|s| s.shape.is_some());
    let mut order: Vec<&Statistic> = stats.iter().collect();
    order.sort_by_key(|s| s.shape != Some(leaktrace::BirthShape::Accumulating));
    let mut columns = vec![("rank", R), ("size", R), ("share", R), ("count", R), ("average", R)];
    if with_births {
        columns.extend([("shape", L), ("born (old → new)", L)]);
    }
    columns.push(("site", L));
    let mut table = Table::new(&columns);
    for (i, s) in order.iter().take(top).enumerate() {
        let share = if total == 0 { 0.0 } else { s.size as f64 * 100.0 / total as f64 };
        let avg = s.size.checked_div(s.count).unwrap_or(0);
        let mut row =
            vec![format!("#{}", i + 1), bytes(s.size), format!("{share:.1}%"), s.count.to_string(), bytes(avg)];
        if with_births {
            row.push(s.shape.map_or("-", |x| x.as_str()).to_string());
            row.push(format!("|{}|", age_bar(&s.births, snap.epoch)));
        }
        row.push(site_in(&s.location, s.context.as_deref()));
        table.row(row, traceback_notes(&s.traceback, with_tb));
    }
    if stats.is_empty() {
        out.push_str("(no live sites)\n");
    } else {
        table.render(&mut out);
        more(&mut out, stats.len(), top);
    }
    let tasks: Vec<_> = snap.tasks.iter().filter(|t| t.live > 0).collect();
    if !tasks.is_empty() {
        out.push_str("\nlive tasks by spawn site:\n");
        let mut t = Table::new(&[("live", R), ("spawned", R), ("site", L)]);
        for task in tasks.iter().take(top) {
            t.row(vec![task.live.to_string(), task.spawned.to_string(), site(&task.location)], Vec::new());
        }
        t.render(&mut out);
    }
    out
}

/// A trend: one row per site, steady growth first.
pub fn trend_table(trend: &Trend, top: usize) -> String {
    let mut out = String::new();
    let n = trend.snapshots.len();
    let (first, last) = (trend.snapshots.first(), trend.snapshots.last());
    if let (Some(a), Some(b)) = (first, last) {
        let _ = writeln!(
            out,
            "trend over {n} snapshots, {:?} -> {:?}: {:.2} s, grouped by {}",
            a.label,
            b.label,
            b.offset_seconds - a.offset_seconds,
            trend.group_by.as_str()
        );
        let _ = writeln!(
            out,
            "traced: {} -> {}; steady sites: {}\n",
            bytes(a.current_bytes),
            bytes(b.current_bytes),
            trend.steady().count()
        );
    }
    let intervals = n.saturating_sub(1);
    let with_tb = trend.group_by == leaktrace::GroupBy::Traceback;
    let mut t = Table::new(&[
        ("rank", R),
        ("verdict", L),
        ("first", R),
        ("last", R),
        ("slope", R),
        ("theil-sen", R),
        ("p", R),
        ("grew", R),
        ("sizes", L),
        ("site", L),
    ]);
    for s in trend.sites.iter().take(top) {
        t.row(trend_row(s, intervals), traceback_notes(&s.traceback, with_tb));
    }
    if trend.sites.is_empty() {
        out.push_str("(no live sites)\n");
    } else {
        t.render(&mut out);
        more(&mut out, trend.sites.len(), top);
    }
    out
}

fn trend_row(s: &TrendSite, intervals: usize) -> Vec<String> {
    let grew = (s.grew_fraction * intervals as f64).round() as usize;
    vec![
        format!("#{}", s.rank),
        s.verdict.as_str().to_string(),
        bytes(s.size_first),
        bytes(s.size_last),
        rate(s.slope_bytes_per_sec),
        rate(s.theil_sen_bytes_per_sec),
        p_value(s.p_value),
        format!("{grew}/{intervals}"),
        sparkline(&s.sizes, 16),
        site_in(&s.location, s.context.as_deref()),
    ]
}

/// A trend's one-sided p-value, to three places ("<0.001" below).
fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(signed_bytes(-512), "-512 B");
        assert_eq!(signed_bytes(i64::MIN), "-8388608.0 TiB");
        assert_eq!(signed_bytes(2048), "+2.0 KiB");
        assert_eq!(rate(0.2), "0 B/s");
        assert_eq!(rate(-1e300), "-8388608.0 TiB/s");
        assert_eq!(rate(f64::NAN), "-");
        assert_eq!(signed(3), "+3");
        assert_eq!(signed(-3), "-3");
    }

    #[test]
    fn trend_p_values() {
        assert_eq!(p_value(0.0004), "<0.001");
        assert_eq!(p_value(0.0123), "0.012");
        assert_eq!(p_value(1.0), "1.000");
    }

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], 16), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5, 5, 5], 16), "▁▁▁");
        assert_eq!(sparkline(&(0..100).collect::<Vec<_>>(), 8).chars().count(), 8);
        assert_eq!(sparkline(&[], 8), "");
    }

    #[test]
    fn paths_and_functions() {
        assert_eq!(
            short_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/task/spawn.rs"),
            "tokio-1.54.1/src/task/spawn.rs"
        );
        assert_eq!(short_path("/elsewhere/src/a.rs"), "/elsewhere/src/a.rs");
        assert_eq!(
            short_path("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs"),
            "<rustc>/library/core/src/future/future.rs"
        );
        assert_eq!(short_function("a::b::{{closure}}::{{closure}}"), "a::b::{closure}");
        let f = Frame::new("", "/x/y.rs", 0);
        assert_eq!(site(&f), "/x/y.rs");
    }
}
