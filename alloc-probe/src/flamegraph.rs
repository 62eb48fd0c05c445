//! `flamegraph`: live bytes by stack as an SVG flame graph (inferno), or the
//! growth between two snapshots as a differential one.
//!
//! Each trace becomes one folded stack, outermost frame first, weighted by
//! its live bytes. A frame reads `function (file:line)`, the path shortened
//! as in the tables, so the call site (the top of each tower) names its line.

use crate::cli::FlamegraphArgs;
use crate::render::short_path;
use crate::{export, input};
use anyhow::Context;
use leaktrace::{Frame, Snapshot};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// The label of one frame in a folded stack. `;` separates frames in that
/// format, so one inside a name (`[u8; 4]`) becomes `,`.
pub fn frame_label(f: &Frame) -> String {
    let function = if f.function.is_empty() { "<unknown>" } else { f.function.as_str() };
    let function = function.replace("{{closure}}", "{closure}");
    let label = match (f.file.is_empty(), f.line) {
        (true, _) => function,
        (false, 0) => format!("{function} ({})", short_path(&f.file)),
        (false, line) => format!("{function} ({}:{line})", short_path(&f.file)),
    };
    label.replace(';', ",")
}

/// Live bytes per folded stack (outermost frame first), stacks with no
/// live bytes left out.
pub fn folded(snap: &Snapshot) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    // Each frame is labelled once, for all the stacks it is in.
    let labels: Vec<String> = snap.frames.iter().map(frame_label).collect();
    for trace in snap.traces.iter().filter(|t| t.size > 0) {
        let stack: Vec<&str> =
            trace.frames.iter().rev().filter_map(|&i| labels.get(i as usize)).map(String::as_str).collect();
        let stack = if stack.is_empty() { "<unknown>".to_string() } else { stack.join(";") };
        *out.entry(stack).or_insert(0) += trace.size;
    }
    out
}

/// What to draw.
pub enum Graph<'a> {
    /// One snapshot: width is live bytes.
    Live(&'a Snapshot),
    /// Two: width is live bytes in the newer, red where a stack grew since
    /// the older, blue where it shrank.
    Growth(&'a Snapshot, &'a Snapshot),
}

/// The SVG of `graph`. `javascript` off gives a static picture (tooltips
/// only) that can be inlined into an HTML page.
pub fn svg(graph: &Graph, title: &str, javascript: bool) -> anyhow::Result<Vec<u8>> {
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = title.to_string();
    opt.count_name = "bytes".to_string();
    opt.name_type = "Frame:".to_string();
    opt.colors = "mem".parse().map_err(|e| anyhow::anyhow!("inferno palette: {e:?}"))?;
    opt.hash = true;
    opt.no_javascript = !javascript;
    let lines: Vec<String> = match graph {
        Graph::Live(snap) => {
            let total: u64 = snap.traces.iter().map(|t| t.size).sum();
            opt.subtitle = Some(format!(
                "{} live in {} blocks, {} ({}); width is live bytes",
                crate::render::bytes(total),
                snap.traces.iter().map(|t| t.count).sum::<u64>(),
                snap.taken_at,
                snap.mode
            ));
            folded(snap).into_iter().map(|(stack, bytes)| format!("{stack} {bytes}")).collect()
        }
        Graph::Growth(old, new) => {
            let (before, after) = (folded(old), folded(new));
            let grown: i128 =
                after.values().map(|&v| v as i128).sum::<i128>() - before.values().map(|&v| v as i128).sum::<i128>();
            opt.subtitle = Some(format!(
                "{:?} -> {:?}: {} overall; width is live bytes in {:?}, red grew, blue shrank",
                old.label,
                new.label,
                crate::render::signed_bytes(i64::try_from(grown).unwrap_or(i64::MAX)),
                new.label
            ));
            let mut stacks: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for (s, &v) in &before {
                stacks.entry(s).or_default().0 = v;
            }
            for (s, &v) in &after {
                stacks.entry(s).or_default().1 = v;
            }
            stacks.into_iter().map(|(stack, (a, b))| format!("{stack} {a} {b}")).collect()
        }
    };
    let mut out = Vec::new();
    if lines.is_empty() {
        // inferno refuses an empty profile; a picture that says so is more use.
        return Ok(empty_svg(title).into_bytes());
    }
    inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut out)
        .context("drawing the flame graph")?;
    Ok(out)
}

/// A small SVG that says there is nothing to draw.
fn empty_svg(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\">\
         <text x=\"10\" y=\"24\" font-family=\"Verdana\" font-size=\"17\">{}</text>\
         <text x=\"10\" y=\"48\" font-family=\"Verdana\" font-size=\"12\">no live bytes to draw</text></svg>\n",
        crate::html::escape(title)
    )
}

pub fn run(args: FlamegraphArgs) -> anyhow::Result<ExitCode> {
    let filters = input::filters(&args.include, &args.exclude);
    let mut snaps = Vec::new();
    for path in &args.inputs {
        snaps.push(input::read_snapshot(path)?.filter_traces(&filters));
    }
    let (graph, default_title) = match snaps.as_slice() {
        [one] => (Graph::Live(one), format!("Live bytes by stack: {:?}", one.label)),
        [old, new] => (Graph::Growth(old, new), format!("Growth by stack: {:?} -> {:?}", old.label, new.label)),
        // clap takes one or two.
        _ => anyhow::bail!("flamegraph takes one snapshot or two (OLD NEW)"),
    };
    let title = args.title.unwrap_or(default_title);
    export::write_output(&args.output, &svg(&graph, &title, true)?)?;
    Ok(ExitCode::SUCCESS)
}
