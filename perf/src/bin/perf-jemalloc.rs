//! The workload on jemalloc built with profiling support
//! (tikv-jemallocator's `profiling` feature). Profiling is off unless
//! `_RJEM_MALLOC_CONF` turns it on, e.g. `prof:true,lg_prof_sample:19`
//! (a sample every 512 KiB on average) or `prof:true,lg_prof_sample:0`
//! (every allocation). The settings in force are read back with `mallctl`
//! and printed, so a run whose variable was not honoured is visible.

use leaktrace_perf::{params_from_env, result_line, workload};
use std::ffi::{c_void, CStr};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Reads a jemalloc option of type `T` (`bool` or `size_t`/`ssize_t`).
fn opt<T: Copy + Default>(name: &CStr) -> Option<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `value` is a valid, writable `T` of `len` bytes, and `name` is
    // NUL-terminated; jemalloc writes at most `len` bytes and checks that the
    // option's size equals `len`, failing (non-zero) otherwise.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0).then_some(value)
}

fn main() {
    let (params, rest) = params_from_env("perf-jemalloc [--threads N] [--scale F]");
    if !rest.is_empty() {
        eprintln!("error: unexpected arguments {rest:?}");
        std::process::exit(2);
    }
    let prof = opt::<bool>(c"opt.prof");
    let lg_sample = opt::<usize>(c"opt.lg_prof_sample");
    let out = workload::run(&params);
    let blocks = out.retained.blocks();
    drop(out.retained);
    let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    println!(
        "{}",
        result_line(
            "jemalloc",
            &params,
            out.wall,
            out.checksum,
            &[
                ("prof", show(prof.map(|p| p.to_string()))),
                ("lg_prof_sample", show(lg_sample.map(|v| v.to_string()))),
                ("live_blocks", blocks.to_string()),
            ]
        )
    );
}
