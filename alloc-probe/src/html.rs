//! `report`: one self-contained HTML page about a series of snapshots. No
//! script, font, style sheet or image is fetched: the CSS is inline, the
//! charts are inline SVG, the flame graph is inline SVG without its script
//! (its frames keep their tooltips).
//!
//! The page opens with the verdict: "Likely leak: FILE:LINE", the first
//! site the trend judges `steady`, or says that nothing grew steadily.
//! Then the ranked suspects with verdicts and sparklines, a chart of each
//! top site's bytes over time, traced bytes and RSS over time, live tasks by
//! spawn site, and the growth flame graph from the first snapshot to the last.

use crate::cli::ReportArgs;
use crate::flamegraph::{self, Graph};
use crate::render::{bytes, rate, short_path, signed_bytes};
use crate::{export, input};
use leaktrace::{Frame, GroupBy, Snapshot, Trend, TrendSite, Verdict};
use std::fmt::Write;
use std::process::ExitCode;

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `src/x.rs:42`, shortened as in the tables.
fn place(f: &Frame) -> String {
    match (f.file.is_empty(), f.line) {
        (true, _) if f.function.is_empty() => "<unknown>".to_string(),
        (true, _) => f.function.clone(),
        (false, 0) => short_path(&f.file),
        (false, line) => format!("{}:{line}", short_path(&f.file)),
    }
}

const PALETTE: [&str; 8] = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1.headline { font-size: 26px; margin: 0 0 6px 0; }
h1.headline.leak { color: #b00020; }
h1.headline.clean { color: #1b7f3b; }
p.summary { margin: 0 0 18px 0; color: #444; }
h2 { font-size: 18px; margin-top: 30px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #eee; vertical-align: middle; }
th { background: #f4f4f4; }
td.site, th.site { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
td.site small { color: #777; }
span.v { padding: 1px 6px; border-radius: 3px; font-size: 12px; color: #fff; }
span.v-steady { background: #b00020; } span.v-step { background: #e08a00; } span.v-churn { background: #6a6ad0; }
span.v-flat { background: #888; } span.v-shrinking { background: #1b7f3b; }
div.charts { display: flex; flex-wrap: wrap; gap: 14px; }
div.chart { border: 1px solid #ddd; padding: 6px; }
div.chart p { margin: 0 0 4px 0; font-size: 12px; font-family: ui-monospace, Menlo, Consolas, monospace; }
div.flame svg { max-width: 100%; height: auto; }
footer { margin-top: 30px; font-size: 12px; color: #777; }
";

/// A line chart of one or more series over time, in bytes (or a count).
struct Chart<'a> {
    times: &'a [f64],
    series: Vec<(String, &'static str, Vec<u64>)>,
    width: f64,
    height: f64,
    unit_bytes: bool,
}

impl Chart<'_> {
    fn svg(&self, label: &str) -> String {
        let (w, h) = (self.width, self.height);
        let (left, right, top, bottom) = (70.0, 10.0, 10.0, 26.0);
        let t_max = self.times.iter().cloned().fold(0.0_f64, f64::max).max(1e-9);
        let y_max = self.series.iter().flat_map(|s| s.2.iter().copied()).max().unwrap_or(0).max(1) as f64;
        let x = |t: f64| left + (t / t_max) * (w - left - right);
        let y = |v: u64| top + (1.0 - v as f64 / y_max) * (h - top - bottom);
        let fmt = |v: u64| if self.unit_bytes { bytes(v) } else { v.to_string() };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
            escape(label)
        );
        let _ = write!(s, "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>");
        for i in 0..=4 {
            let v = (y_max * i as f64 / 4.0).round() as u64;
            let yy = y(v);
            let _ = write!(
                s,
                "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                w - right,
                left - 4.0,
                yy + 3.0,
                escape(&fmt(v))
            );
        }
        let _ = write!(
            s,
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"10\" fill=\"#555\">0 s</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{:.1} s</text>",
            h - 8.0,
            w - right,
            h - 8.0,
            t_max
        );
        for (name, color, values) in &self.series {
            let points: Vec<String> =
                self.times.iter().zip(values).map(|(&t, &v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                points.join(" "),
                escape(name)
            );
            for (&t, &v) in self.times.iter().zip(values) {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"><title>{}: {} at {t:.1} s</title></circle>",
                    x(t),
                    y(v),
                    escape(name),
                    escape(&fmt(v))
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// A tiny line of `values`, for a table cell.
fn sparkline(values: &[u64], color: &str) -> String {
    let (w, h) = (120.0, 22.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!("{:.1},{:.1}", 2.0 + i as f64 * (w - 4.0) / n as f64, h - 2.0 - v as f64 / max * (h - 4.0))
        })
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\"><polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

fn verdict_badge(v: Verdict) -> String {
    format!("<span class=\"v v-{v}\">{v}</span>")
}

/// The page's first line: the likeliest leak, or that none grew steadily.
fn headline(trend: &Trend, span: f64) -> (String, String) {
    match trend.sites.iter().find(|s| s.verdict == Verdict::Steady) {
        Some(s) => (
            "leak".into(),
            format!(
                "Likely leak: {} — {} over {span:.1} s ({}), grew in {:.0}% of intervals",
                place(&s.location),
                signed_bytes(s.size_last as i64 - s.size_first as i64),
                rate(s.slope_bytes_per_sec),
                s.grew_fraction * 100.0
            ),
        ),
        None => (
            "clean".into(),
            match trend.sites.first() {
                Some(s) => format!(
                    "No steady growth: the top site {} is {} ({} over {span:.1} s)",
                    place(&s.location),
                    s.verdict,
                    signed_bytes(s.size_last as i64 - s.size_first as i64)
                ),
                None => "No steady growth: no traced sites".into(),
            },
        ),
    }
}

fn suspects_table(out: &mut String, sites: &[&TrendSite]) {
    out.push_str(
        "<table><tr><th>rank</th><th>verdict</th><th>first</th><th>last</th><th>change</th><th>slope</th>\
         <th>grew in</th><th>blocks</th><th>over time</th><th class=\"site\">site</th></tr>\n",
    );
    for (i, s) in sites.iter().enumerate() {
        let function = if s.location.function.is_empty() { String::new() } else { s.location.function.clone() };
        let _ = writeln!(
            out,
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td><td>{}</td>\
             <td>{}</td><td class=\"site\">{}<br><small>{}</small></td></tr>",
            s.rank,
            verdict_badge(s.verdict),
            bytes(s.size_first),
            bytes(s.size_last),
            signed_bytes(s.size_last as i64 - s.size_first as i64),
            rate(s.slope_bytes_per_sec),
            s.grew_fraction * 100.0,
            s.count_last,
            sparkline(&s.sizes, PALETTE[i % PALETTE.len()]),
            escape(&place(&s.location)),
            escape(&function)
        );
    }
    out.push_str("</table>\n");
}

/// Live tasks per spawn site across the series: (site, live per snapshot, spawned last).
fn task_rows(snaps: &[Snapshot]) -> Vec<(Frame, Vec<u64>, u64)> {
    let mut rows: Vec<(Frame, Vec<u64>, u64)> = Vec::new();
    for (i, snap) in snaps.iter().enumerate() {
        for t in &snap.tasks {
            let idx = match rows.iter().position(|r| r.0 == t.location) {
                Some(idx) => idx,
                None => {
                    rows.push((t.location.clone(), vec![0; snaps.len()], 0));
                    rows.len() - 1
                }
            };
            rows[idx].1[i] = t.live;
            rows[idx].2 = t.spawned;
        }
    }
    rows.sort_by(|a, b| b.1.last().cmp(&a.1.last()).then(b.2.cmp(&a.2)));
    rows
}

/// inferno's SVG made fit to sit inside the page without a script: the XML
/// declaration and DOCTYPE dropped; its `<script>` (settings only, with
/// `no_javascript`), the `onload` that calls it, and the search and zoom
/// controls that only the script drives, removed. Frames keep their
/// `<title>` tooltips.
fn inline_svg(svg: &str) -> String {
    let mut s = svg[svg.find("<svg").unwrap_or(0)..].to_string();
    if let (Some(a), Some(b)) = (s.find("<script"), s.find("</script>")) {
        if a < b {
            s.replace_range(a..b + "</script>".len(), "");
        }
    }
    s = s.replacen(" onload=\"init(evt)\"", "", 1);
    for id in ["unzoom", "search", "matched"] {
        if let Some(a) = s.find(&format!("<text id=\"{id}\"")) {
            if let Some(len) = s[a..].find("</text>") {
                s.replace_range(a..a + len + "</text>".len(), "");
            }
        }
    }
    s
}

/// The whole page.
pub fn page(snaps: &mut [Snapshot], top: usize, title: Option<&str>) -> anyhow::Result<String> {
    snaps.sort_by(|a, b| a.unix_seconds.total_cmp(&b.unix_seconds));
    let trend = leaktrace::trend(snaps, GroupBy::Line);
    let times: Vec<f64> = trend.snapshots.iter().map(|p| p.offset_seconds).collect();
    let span = times.last().copied().unwrap_or(0.0);
    let (class, head) = headline(&trend, span);
    let (first, last) = (&snaps[0], &snaps[snaps.len() - 1]);
    let title = title.map(str::to_owned).unwrap_or_else(|| format!("leaktrace report: {head}"));

    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(out, "<h1 class=\"headline {class}\" id=\"headline\">{}</h1>", escape(&head));
    let _ = writeln!(
        out,
        "<p class=\"summary\">{} snapshots over {span:.1} s, {:?} ({}) to {:?} ({}), pid {}, {} mode; sites grouped by line. \
         Traced {} → {}.</p>",
        snaps.len(),
        first.label,
        escape(&first.taken_at),
        last.label,
        escape(&last.taken_at),
        last.pid,
        escape(&last.mode),
        bytes(first.totals.current_bytes),
        bytes(last.totals.current_bytes)
    );

    let shown: Vec<&TrendSite> = trend.sites.iter().take(top.max(1)).collect();
    out.push_str("<h2>Suspects, likeliest leak first</h2>\n");
    if shown.is_empty() {
        out.push_str("<p>No traced sites.</p>\n");
    } else {
        suspects_table(&mut out, &shown);
        let _ = writeln!(
            out,
            "<p class=\"summary\">steady: a significant upward trend still there at the end (a leak's shape); \
             plateau: grew, then stopped (a cache that filled); step: a one-time load; churn: up and down; flat; \
             shrinking. {} sites in all.</p>",
            trend.sites.len()
        );
    }

    out.push_str("<h2>Top sites over time</h2>\n<div class=\"charts\">\n");
    for (i, s) in shown.iter().take(6).enumerate() {
        let chart = Chart {
            times: &times,
            series: vec![(place(&s.location), PALETTE[i % PALETTE.len()], s.sizes.clone())],
            width: 380.0,
            height: 170.0,
            unit_bytes: true,
        };
        let _ = writeln!(
            out,
            "<div class=\"chart\"><p>#{} {} {}</p>{}</div>",
            s.rank,
            verdict_badge(s.verdict),
            escape(&place(&s.location)),
            chart.svg(&format!("bytes at {} over time", place(&s.location)))
        );
    }
    out.push_str("</div>\n");

    out.push_str("<h2>Traced bytes and RSS over time</h2>\n<div class=\"charts\">\n");
    // Each on its own scale: RSS counts the runtime, the binary and freed
    // pages kept by the allocator, and would flatten the traced line.
    let mut totals: Vec<(&str, &'static str, Vec<u64>)> =
        vec![("traced bytes", "#d62728", snaps.iter().map(|s| s.totals.current_bytes).collect())];
    if snaps.iter().all(|s| s.process.is_some()) {
        totals.push(("RSS", "#1f77b4", snaps.iter().map(|s| s.process.as_ref().map_or(0, |p| p.rss_bytes)).collect()));
    }
    for (name, color, values) in totals {
        let (v0, v1) = (values[0], values[values.len() - 1]);
        let chart = Chart {
            times: &times,
            series: vec![(name.to_string(), color, values)],
            width: 380.0,
            height: 170.0,
            unit_bytes: true,
        };
        let _ = writeln!(
            out,
            "<div class=\"chart\"><p>{name}: {} → {} ({})</p>{}</div>",
            bytes(v0),
            bytes(v1),
            signed_bytes(v1 as i64 - v0 as i64),
            chart.svg(&format!("{name} over time"))
        );
    }
    out.push_str("</div>\n");

    out.push_str("<h2>Live tasks by spawn site</h2>\n");
    let tasks = task_rows(snaps);
    if tasks.is_empty() {
        out.push_str("<p>No tracked tasks (see <code>leaktrace::track_task</code>).</p>\n");
    } else {
        out.push_str("<table><tr><th>live first</th><th>live last</th><th>spawned</th><th>over time</th><th class=\"site\">spawn site</th></tr>\n");
        for (i, (site, live, spawned)) in tasks.iter().take(top.max(1)).enumerate() {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{spawned}</td><td>{}</td><td class=\"site\">{}</td></tr>",
                live[0],
                live[live.len() - 1],
                sparkline(live, PALETTE[i % PALETTE.len()]),
                escape(&place(site))
            );
        }
        out.push_str("</table>\n");
    }

    let _ = writeln!(
        out,
        "<h2>Flame graph: growth from {:?} to {:?}</h2>\n<p class=\"summary\">Width is live bytes at the last \
         snapshot; red frames grew since the first, blue shrank. Hover a frame for its bytes.</p>",
        first.label, last.label
    );
    let svg = flamegraph::svg(
        &Graph::Growth(first, last),
        &format!("Growth by stack: {:?} -> {:?}", first.label, last.label),
        false,
    )?;
    let _ = writeln!(out, "<div class=\"flame\">{}</div>", inline_svg(&String::from_utf8_lossy(&svg)));

    let _ = writeln!(
        out,
        "<footer>Written by alloc-probe {} from leaktrace snapshots. Self-contained: nothing on this page is fetched.</footer>\n</body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(out)
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut snaps = input::read_series(&args.inputs)?;
    let html = page(&mut snaps, args.top, args.title.as_deref())?;
    export::write_output(&args.output, html.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
