//! The workload on the system allocator: the base for leaktrace and dhat.

use leaktrace_perf::{params_from_env, result_line, workload};

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() {
    let (params, rest) = params_from_env("perf-system [--threads N] [--scale F]");
    if !rest.is_empty() {
        eprintln!("error: unexpected arguments {rest:?}");
        std::process::exit(2);
    }
    let out = workload::run(&params);
    let blocks = out.retained.blocks();
    drop(out.retained);
    println!("{}", result_line("system", &params, out.wall, out.checksum, &[("live_blocks", blocks.to_string())]));
}
