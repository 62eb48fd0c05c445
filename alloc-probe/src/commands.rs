//! One function per command: read the inputs, let the library compute,
//! print or write the result, pick the exit status.

use crate::cli::{Cli, Command, DiffArgs, Format, ScenarioArgs, ShowArgs, SortBy, TrendArgs, View};
use crate::{input, output, render, scenarios};
use anyhow::{bail, Context};
use leaktrace::{GroupBy, Snapshot, Verdict};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--fail-over` tripped.
const EXIT_GREW: u8 = 1;

/// Runs the command; `Err` is bad input (status 2, printed by `main`).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Diff(args) => diff(args),
        Command::Show(args) => show(args),
        Command::Trend(args) => trend(args),
        Command::Scenario(args) => scenario(args),
        Command::Export(args) => crate::export::run(args),
        Command::Flamegraph(args) => crate::flamegraph::run(args),
        Command::Report(args) => crate::html::run(args),
        Command::Symbolize(args) => crate::symbolize::run(args),
    }
}

/// How many sites to list: `--top`, else 10 in tables and all in JSON; 0 is all.
fn top(view: &View) -> usize {
    match (view.top, view.format) {
        (Some(0), _) => usize::MAX,
        (Some(n), _) => n,
        (None, Format::Table) => 10,
        (None, Format::Json) => usize::MAX,
    }
}

fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let old = input::read_snapshot(&args.old)?;
    let new = input::read_snapshot(&args.new)?;
    crate::symbolize::note(&args.old, &old);
    crate::symbolize::note(&args.new, &new);
    if new.unix_seconds < old.unix_seconds {
        eprintln!(
            "alloc-probe: note: {} was taken after {} ({} > {}); the diff is NEW minus OLD as given",
            args.old.display(),
            args.new.display(),
            old.taken_at,
            new.taken_at
        );
    }
    let view = &args.view;
    let filters = input::filters(&view.include, &view.exclude);
    let group_by: GroupBy = view.group_by.into();
    let mut diff = new.filter_traces(&filters).compare_to(&old.filter_traces(&filters), group_by);
    // Every site counts for --fail-over, not only the ones listed.
    let over: Vec<(String, i64)> = match args.fail_over {
        Some(limit) => diff
            .sites
            .iter()
            .filter(|s| s.size_diff > 0 && s.size_diff as u64 > limit)
            .map(|s| (render::site(&s.location), s.size_diff))
            .collect(),
        None => Vec::new(),
    };
    let n = top(view);
    let text = match view.format {
        Format::Table => render::diff_table(&diff, n),
        Format::Json => {
            diff.sites.truncate(n);
            diff.tasks.truncate(n);
            diff.to_json() + "\n"
        }
    };
    output::emit(&text, view.output.as_deref())?;
    if let (Some(limit), Some((site, grew))) = (args.fail_over, over.first()) {
        eprintln!(
            "alloc-probe: fail-over: {} site(s) grew by more than {} ({limit} bytes); #1 {site} grew by {} ({grew} bytes)",
            over.len(),
            render::bytes(limit),
            render::signed_bytes(*grew),
        );
        return Ok(ExitCode::from(EXIT_GREW));
    }
    Ok(ExitCode::SUCCESS)
}

/// `show --format json`: the statistics of one snapshot.
#[derive(Serialize)]
struct StatisticsDoc<'a> {
    format: &'static str,
    label: &'a str,
    taken_at: &'a str,
    pid: u32,
    group_by: GroupBy,
    totals: &'a leaktrace::Totals,
    statistics: Vec<RankedStatistic<'a>>,
    tasks: &'a [leaktrace::TaskStat],
}

#[derive(Serialize)]
struct RankedStatistic<'a> {
    rank: usize,
    #[serde(flatten)]
    stat: &'a leaktrace::Statistic,
}

/// The `format` of `show --format json` output; `trend` skips such files
/// in a directory as it skips diffs.
const STATISTICS_FORMAT: &str = "leaktrace.statistics.v1";

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let snap = input::read_snapshot(&args.snapshot)?;
    crate::symbolize::note(&args.snapshot, &snap);
    let view = &args.view;
    let filters = input::filters(&view.include, &view.exclude);
    let group_by: GroupBy = view.group_by.into();
    let filtered = snap.filter_traces(&filters);
    // Sorted by allocations, lines whose blocks were all freed count too:
    // they may be the ones that allocate the most.
    let stats = if args.sort == SortBy::Alloc {
        let mut all = filtered.statistics_with_freed(group_by);
        crate::alloc_view::sort_by_alloc(&mut all);
        all
    } else {
        filtered.statistics(group_by)
    };
    let n = top(view);
    let text = match view.format {
        Format::Table if args.sort == SortBy::Alloc => crate::alloc_view::show_table(&snap, &stats, group_by, n),
        Format::Table => render::show_table(&snap, &stats, group_by, n),
        Format::Json => {
            let doc = StatisticsDoc {
                format: STATISTICS_FORMAT,
                label: &snap.label,
                taken_at: &snap.taken_at,
                pid: snap.pid,
                group_by,
                totals: &snap.totals,
                statistics: stats
                    .iter()
                    .take(n)
                    .enumerate()
                    .map(|(i, stat)| RankedStatistic { rank: i + 1, stat })
                    .collect(),
                tasks: &snap.tasks,
            };
            serde_json::to_string_pretty(&doc).context("serializing the statistics")? + "\n"
        }
    };
    output::emit(&text, view.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn trend(args: TrendArgs) -> anyhow::Result<ExitCode> {
    let snapshots = input::read_series(&args.inputs)?;
    crate::symbolize::note_series(&snapshots);
    let view = &args.view;
    let filters = input::filters(&view.include, &view.exclude);
    let snapshots: Vec<Snapshot> =
        if filters.is_empty() { snapshots } else { snapshots.iter().map(|s| s.filter_traces(&filters)).collect() };
    let mut trend = leaktrace::trend(&snapshots, view.group_by.into());
    let over: Vec<(i128, String)> = match args.fail_over {
        Some(limit) => trend
            .sites
            .iter()
            .filter(|s| s.verdict == Verdict::Steady)
            .map(|s| (s.size_last as i128 - s.size_first as i128, render::site(&s.location)))
            .filter(|(grew, _)| *grew > limit as i128)
            .collect(),
        None => Vec::new(),
    };
    let n = top(view);
    let text = match view.format {
        Format::Table => render::trend_table(&trend, n),
        Format::Json => {
            trend.sites.truncate(n);
            trend.to_json() + "\n"
        }
    };
    output::emit(&text, view.output.as_deref())?;
    if let (Some(limit), Some((grew, site))) = (args.fail_over, over.first()) {
        eprintln!(
            "alloc-probe: fail-over: {} steady site(s) grew by more than {} ({limit} bytes); #1 {site} grew by {} ({grew} bytes)",
            over.len(),
            render::bytes(limit),
            render::signed_bytes(i64::try_from(*grew).unwrap_or(i64::MAX)),
        );
        return Ok(ExitCode::from(EXIT_GREW));
    }
    Ok(ExitCode::SUCCESS)
}

fn scenario(args: ScenarioArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        output::print(&scenarios::list_text())?;
        return Ok(ExitCode::SUCCESS);
    }
    let plan = scenarios::Plan::new(args.steps, args.seconds, args.interval_ms);
    if args.all {
        return run_all(&args, &plan);
    }
    // clap requires NAME unless --list or --all, and checks it is one of ours.
    let name = args.name.as_deref().context("a scenario NAME is required (see --list)")?;
    let Some(scenario) = scenarios::find(name) else {
        bail!("unknown scenario {name:?} (see --list)");
    };
    let variant = if args.fixed { scenarios::Variant::Fixed } else { scenarios::Variant::Leaky };
    let dir = args.out.clone().unwrap_or_else(|| default_dir(Path::new("reports/scenarios"), scenario.name, variant));
    let report = scenarios::run_and_write(scenario, variant, &plan, &dir, args.top)?;
    output::print(&report)?;
    Ok(ExitCode::SUCCESS)
}

fn default_dir(root: &Path, name: &str, variant: scenarios::Variant) -> PathBuf {
    match variant {
        scenarios::Variant::Leaky => root.join(name),
        scenarios::Variant::Fixed => root.join(format!("{name}-fixed")),
    }
}

/// `scenario --all`: every scenario, both variants, each in a child process
/// of this binary, so each run starts with fresh tracer tables, statics and
/// runtime.
fn run_all(args: &ScenarioArgs, plan: &scenarios::Plan) -> anyhow::Result<ExitCode> {
    let root = args.out.clone().unwrap_or_else(|| PathBuf::from("reports/scenarios"));
    let exe = std::env::current_exe().context("finding this program's path")?;
    for s in scenarios::ALL {
        for variant in [scenarios::Variant::Leaky, scenarios::Variant::Fixed] {
            let dir = default_dir(&root, s.name, variant);
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("scenario").arg(s.name).arg("--out").arg(&dir);
            cmd.arg("--steps").arg(plan.steps.to_string());
            cmd.arg("--interval-ms").arg(plan.interval.as_millis().to_string());
            cmd.arg("--top").arg(args.top.to_string());
            if variant == scenarios::Variant::Fixed {
                cmd.arg("--fixed");
            }
            let status = cmd.status().with_context(|| format!("{}: running scenario {}", exe.display(), s.name))?;
            if !status.success() {
                bail!("{}: scenario {} ({}) failed with {status}", dir.display(), s.name, variant.as_str());
            }
            output::print("\n")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
