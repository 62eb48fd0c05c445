//! `alloc-probe`: reads leaktrace snapshots somewhere other than the process
//! that took them (show one, diff two, follow a series), and runs the leak
//! patterns of the asyncio guide as async-Rust scenarios under tracing.
//!
//! Exit codes: 0 success; 1 `--fail-over` tripped (the check ran and found
//! growth); 2 bad input (bad arguments, or a file that is missing, unreadable
//! or malformed). Data goes to stdout, messages to stderr, each error on one
//! line that starts with the file concerned.

#![forbid(unsafe_code)]

mod alloc_view;
mod cli;
mod commands;
mod export;
mod flamegraph;
mod html;
mod input;
mod output;
mod render;
mod scenarios;
mod symbolize;

use clap::Parser;
use std::process::ExitCode;

// The scenarios run in this process under tracing; the other commands only
// read files and pay one relaxed load per allocation for the allocator.
#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

/// Bad input: arguments, files, directories.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alloc-probe: {}", one_line(&format!("{err:#}")));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// A library error as one message. `leaktrace::Error` puts the OS error in
/// its own text ("path: No such file or directory (os error 2)") and also
/// returns it from `source()`, so `{:#}` on the chain would say it twice.
fn lib_error(e: leaktrace::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// `--help` and `--version` succeed; any other clap error is a usage error
/// (exit 2), told on one line.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout (`alloc-probe --help | head -1`) is not an error.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(EXIT_BAD_INPUT)
        }
        _ => {
            eprintln!("alloc-probe: {}", clap_one_line(&e.render().to_string()));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// clap's several-line error as one line: the problem, the tip or possible
/// values, and the usage, without the "For more information" footer.
fn clap_one_line(rendered: &str) -> String {
    let parts: Vec<String> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_string())
        .collect();
    let mut line = String::new();
    for part in parts {
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(&part);
    }
    line.push_str("; see --help");
    line
}

/// Error chains are joined with ": "; a message that spans lines (none of
/// ours, but a foreign one might) is folded so stderr gets exactly one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
