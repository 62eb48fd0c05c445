//! Command-line arguments (clap derive). The names here are a contract:
//! commands, flags and their values are documented in the README's CLI
//! section and used by scripts.

use crate::scenarios;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "alloc-probe",
    version,
    about = "Show, diff and trend leaktrace snapshots; run the leak-pattern scenarios",
    long_about = "Show, diff and trend leaktrace snapshots (leaktrace.snapshot.v1 JSON files); \
                  run the asyncio guide's leak patterns as async-Rust scenarios under tracing.\n\n\
                  Exit status: 0 success, 1 --fail-over tripped, 2 bad input (arguments or files).",
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ranked difference between two snapshots: the sites that grew most
    /// first (tracemalloc's compare_to)
    Diff(DiffArgs),
    /// One snapshot's statistics, largest site first
    Show(ShowArgs),
    /// Follow every site across a series of snapshots and rank leak suspects:
    /// steady growth first, a one-time load (step) below it
    Trend(TrendArgs),
    /// Run a leak pattern (leaky, or --fixed) in-process under tracing, write
    /// its snapshots, diff and trend, and print the top sites
    Scenario(ScenarioArgs),
    /// Convert a snapshot or a diff for other tools: a gzipped pprof profile
    /// (go tool pprof, Parca, Pyroscope, Grafana)
    Export(ExportArgs),
    /// Draw live bytes by stack as a flame graph (SVG); with two snapshots,
    /// the growth from OLD to NEW (differential)
    Flamegraph(FlamegraphArgs),
    /// One self-contained HTML page: the likely leak first, ranked suspects
    /// with their verdicts and charts, totals and RSS over time, live tasks,
    /// and the flame graph
    Report(ReportArgs),
    /// Resolve a snapshot's unresolved frames (symbolization off, stripped
    /// binary) from the binary or debug files found by build id
    Symbolize(crate::symbolize::SymbolizeArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A snapshot (leaktrace.snapshot.v1) or a diff (leaktrace.diff.v1),
    /// told apart by its `format`
    #[arg(value_name = "SNAPSHOT.json|DIFF.json")]
    pub input: PathBuf,
    /// The output format
    #[arg(short = 'f', long, value_enum, default_value_t = ExportFormat::Pprof)]
    pub format: ExportFormat,
    /// Where to write it (atomically); `-` for stdout
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Gzipped profile.proto as Go writes heap profiles: alloc_objects,
    /// alloc_space, inuse_objects, inuse_space (a diff: inuse_* changes)
    Pprof,
}

#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    /// One snapshot (live bytes by stack), or OLD.json NEW.json (growth)
    #[arg(value_name = "SNAPSHOT.json | OLD.json NEW.json", required = true, num_args = 1..=2)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the SVG (atomically); `-` for stdout
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// The title (default: the snapshot's label, or OLD -> NEW)
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Keep only stacks whose call-site file or function matches PAT (as
    /// for show --include). Repeatable
    #[arg(short = 'i', long, value_name = "PAT")]
    pub include: Vec<String>,
    /// Drop stacks whose call-site file or function matches PAT. Repeatable
    #[arg(short = 'x', long, value_name = "PAT")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Two or more snapshots, or a directory of them (as for trend)
    #[arg(value_name = "SNAP.json... | DIR", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the HTML page (atomically); `-` for stdout
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Suspects to list and chart
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// The page's title
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

/// How to group, filter, cut and print a report.
#[derive(Debug, Args)]
pub struct View {
    /// Group sites by call-site line, function, file, or whole traceback
    #[arg(short = 'g', long, value_enum, default_value_t = GroupByArg::Line)]
    pub group_by: GroupByArg,
    /// Sites to list: 10 by default in a table, all in JSON; 0 lists all
    #[arg(short = 'n', long, value_name = "N")]
    pub top: Option<usize>,
    /// Keep only sites whose file path or function name matches PAT (a glob:
    /// `*` any run of characters, `?` one; a PAT with neither matches as a
    /// substring). Repeatable: a site must match one of them
    #[arg(short = 'i', long, value_name = "PAT")]
    pub include: Vec<String>,
    /// Drop sites whose file path or function name matches PAT (glob or
    /// substring, as for --include). Repeatable
    #[arg(short = 'x', long, value_name = "PAT")]
    pub exclude: Vec<String>,
    /// Print a table for people or the JSON document for programs
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE (atomically: a reader never sees half of it)
    /// instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot (leaktrace.snapshot.v1 JSON)
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,
    /// The newer snapshot
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,
    #[command(flatten)]
    pub view: View,
    /// Exit with status 1 when a site (any, not only those listed; after
    /// --include/--exclude) grew by more than BYTES (e.g. 1048576, 512KiB,
    /// 10MiB, 1GB), for CI
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub fail_over: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The snapshot (leaktrace.snapshot.v1 JSON)
    #[arg(value_name = "SNAPSHOT.json")]
    pub snapshot: PathBuf,
    #[command(flatten)]
    pub view: View,
    /// Order statistics by live bytes (`size`, the default) or by bytes
    /// allocated since start, freed or not (`alloc`)
    #[arg(long, value_enum, default_value_t = SortBy::Size)]
    pub sort: SortBy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Live bytes, largest first
    Size,
    /// Bytes allocated since start (`alloc_size`), largest first
    Alloc,
}

#[derive(Debug, Args)]
pub struct TrendArgs {
    /// Two or more snapshots, or a directory: every leaktrace snapshot
    /// (*.json) in it. Other leaktrace files there (diffs, trends) are
    /// skipped; any other JSON file is an error. Ordered by `taken_at`
    #[arg(value_name = "SNAP.json... | DIR", required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub view: View,
    /// Exit with status 1 when a site judged `steady` grew by more than
    /// BYTES from the first snapshot to the last (a one-time `step` does not
    /// trip it)
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub fail_over: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// The scenario to run (see --list)
    #[arg(
        value_name = "NAME",
        required_unless_present_any = ["list", "all"],
        conflicts_with_all = ["list", "all"],
        value_parser = clap::builder::PossibleValuesParser::new(scenarios::names()),
    )]
    pub name: Option<String>,
    /// List the scenarios, with the guide's pattern and the fix of each
    #[arg(long, conflicts_with_all = ["fixed", "all", "out", "seconds", "steps", "interval_ms"])]
    pub list: bool,
    /// Run every scenario, leaky and fixed, each in a child process, into
    /// DIR/NAME and DIR/NAME-fixed (DIR defaults to reports/scenarios)
    #[arg(long, conflicts_with = "fixed")]
    pub all: bool,
    /// Run the fixed variant instead of the leaky one
    #[arg(long)]
    pub fixed: bool,
    /// Where to write the snapshots, diff.json and trend.json (default
    /// reports/scenarios/NAME, or NAME-fixed). Files of an earlier run there
    /// are replaced
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How long to run: one step per --interval-ms
    #[arg(long, value_name = "S", default_value_t = 3.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Run exactly N steps instead (overrides --seconds)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub steps: Option<u32>,
    /// Pause after each step, letting the pattern's background work run
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub interval_ms: u64,
    /// Sites to print in each table
    #[arg(short = 'n', long, value_name = "N", default_value_t = 5)]
    pub top: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GroupByArg {
    /// The call site's file and line
    Line,
    /// The call site's function
    Function,
    /// The call site's file
    File,
    /// The whole traceback
    Traceback,
    /// The context (route, span) the blocks were allocated under
    Context,
}

impl From<GroupByArg> for leaktrace::GroupBy {
    fn from(g: GroupByArg) -> Self {
        match g {
            GroupByArg::Line => leaktrace::GroupBy::Line,
            GroupByArg::Function => leaktrace::GroupBy::Function,
            GroupByArg::File => leaktrace::GroupBy::File,
            GroupByArg::Traceback => leaktrace::GroupBy::Traceback,
            GroupByArg::Context => leaktrace::GroupBy::Context,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with KiB/MiB units
    Table,
    /// The leaktrace JSON document
    Json,
}

/// `1048576`, `512KiB`, `10 MiB`, `1.5G`, `2MB`: K/M/G and KiB/MiB/GiB are
/// powers of 1024, KB/MB/GB powers of 1000.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 1048576, 512KiB, 10MiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => return Err(format!("unknown unit {other:?} in {s:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s:?}: expected seconds above 0 and at most 86400"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("1e30GiB").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("inf").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
