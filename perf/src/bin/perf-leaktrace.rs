//! The workload under `leaktrace::TrackingAllocator`, mode from argv:
//! `off` (installed, `start` not called), `sampled` (512 KiB, or
//! `sampled:BYTES`) or `exact`.

use leaktrace::{Config, Mode};
use leaktrace_perf::{params_from_env, result_line, workload};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const USAGE: &str = "perf-leaktrace off|sampled[:BYTES]|exact [--threads N] [--scale F]";

fn main() {
    let (params, rest) = params_from_env(USAGE);
    let [mode] = rest.as_slice() else {
        eprintln!("error: want one mode\nusage: {USAGE}");
        std::process::exit(2);
    };
    let config = match mode.as_str() {
        "off" => None,
        "exact" => Some(Config::default()),
        m => match m.strip_prefix("sampled") {
            Some("") => Some(Config::default().mode(Mode::Sampled { mean_bytes: 512 * 1024 })),
            Some(n) => match n.strip_prefix(':').and_then(|n| n.parse().ok()) {
                Some(mean_bytes) => Some(Config::default().mode(Mode::Sampled { mean_bytes })),
                None => {
                    eprintln!("error: bad mode {m}\nusage: {USAGE}");
                    std::process::exit(2);
                }
            },
            None => {
                eprintln!("error: bad mode {m}\nusage: {USAGE}");
                std::process::exit(2);
            }
        },
    };
    let tracing = config.is_some();
    if let Some(config) = config {
        leaktrace::start(config);
    }
    let out = workload::run(&params);
    // The tracker's tables with the workload's data still live.
    let tracker = leaktrace::tracker_memory();
    let traced = leaktrace::traced_memory();
    let blocks = out.retained.blocks();
    drop(out.retained);
    let capture = if tracing { leaktrace::capture_method().as_str() } else { "none" };
    println!(
        "{}",
        result_line(
            "leaktrace",
            &params,
            out.wall,
            out.checksum,
            &[
                ("mode", mode.clone()),
                ("capture", capture.to_string()),
                ("live_blocks", blocks.to_string()),
                ("tracker_bytes", tracker.to_string()),
                ("traced_peak_bytes", traced.peak.to_string()),
            ],
        )
    );
}
