//! The workload under dhat-rs heap profiling (`dhat::Alloc`, a heap
//! profiler). Its JSON goes to the temporary directory and is removed.

use leaktrace_perf::{params_from_env, result_line, workload};
use std::time::Instant;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let (params, rest) = params_from_env("perf-dhat [--threads N] [--scale F]");
    if !rest.is_empty() {
        eprintln!("error: unexpected arguments {rest:?}");
        std::process::exit(2);
    }
    let json = std::env::temp_dir().join(format!("leaktrace-perf-dhat-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&json).build();
    let out = workload::run(&params);
    let blocks = out.retained.blocks();
    drop(out.retained);
    // Writing the profile is part of the tool's cost, not of the workload's.
    let t = Instant::now();
    drop(profiler);
    let write_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&json);
    println!(
        "{}",
        result_line(
            "dhat",
            &params,
            out.wall,
            out.checksum,
            &[("live_blocks", blocks.to_string()), ("profile_write_s", format!("{write_s:.3}"))]
        )
    );
}
