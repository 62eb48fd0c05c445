//! Exact mode gives identical per-site counts whichever capture method ran;
//! the frame-pointer walk never faults on a chain it cannot trust.

mod common;

use common::{is_file, marker_line};
use leaktrace::{CaptureMethod, Config, GroupBy};
use std::collections::BTreeMap;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("capture_methods.rs");

#[inline(never)]
fn leaf(out: &mut Vec<Box<[u8]>>, n: usize) {
    out.push(vec![1u8; 100 + n].into_boxed_slice()); // MARK: leaf
}

#[inline(never)]
fn recurse(out: &mut Vec<Box<[u8]>>, depth: usize) {
    if depth == 0 {
        leaf(out, depth);
        return;
    }
    out.push(vec![2u8; 40].into_boxed_slice()); // MARK: recurse
    recurse(out, depth - 1);
    std::hint::black_box(&out);
}

fn workload() -> Vec<Box<[u8]>> {
    let mut out = Vec::with_capacity(10_000);
    for i in 0..200 {
        recurse(&mut out, i % 12);
        leaf(&mut out, i);
    }
    let strings: Vec<String> = (0..300).map(|i| format!("string {i}")).collect(); // MARK: strings
    out.extend(strings.into_iter().map(|s| s.into_bytes().into_boxed_slice()));
    out
}

/// Per-line (size, count) of this file's sites after running the workload.
fn sites_with(method: CaptureMethod) -> (CaptureMethod, BTreeMap<u32, (u64, u64)>) {
    leaktrace::start(Config::default().capture(method));
    let ran = leaktrace::capture_method();
    let kept = workload();
    let snap = leaktrace::take_snapshot("w");
    drop(kept);
    leaktrace::stop();
    let sites = snap
        .statistics(GroupBy::Line)
        .into_iter()
        .filter(|s| is_file(&s.location.file, "capture_methods.rs"))
        // libtest's generated `main` (line 1 of this file) may allocate on
        // the harness's own thread meanwhile; only libgcc's unwinder walks
        // that far up. The workload's sites are what is compared.
        .filter(|s| !s.location.function.ends_with("::main"))
        .map(|s| (s.location.line, (s.size, s.count)))
        .collect();
    (ran, sites)
}

/// Corrupts the frame-pointer register, then allocates: the walk must stop
/// at the first frame it cannot trust instead of faulting.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn allocate_with_garbage_frame_pointer() -> Vec<u8> {
    let v: Vec<u8>;
    // SAFETY: rbp is saved and restored around the call; the callee is a
    // plain Rust function that does not depend on rbp holding a frame
    // pointer (it may or may not push it). Between the two, rbp holds a
    // value that points nowhere valid.
    unsafe {
        let mut out = std::mem::MaybeUninit::<Vec<u8>>::uninit();
        let p = out.as_mut_ptr();
        core::arch::asm!(
            "push rbp",
            "sub rsp, 8",
            "mov rbp, 0xdead0000beef",
            "call {f}",
            "add rsp, 8",
            "pop rbp",
            f = sym make_vec,
            in("rdi") p,
            clobber_abi("C"),
        );
        v = out.assume_init();
    }
    v
}

extern "C" fn make_vec(out: *mut Vec<u8>) {
    // SAFETY: `out` points to uninitialised space for one Vec<u8>.
    unsafe { out.write(vec![9u8; 777]) };
}

#[test]
fn identical_sites_whichever_method_ran() {
    let leaf_line = marker_line(SRC, "MARK: leaf");
    let recurse_line = marker_line(SRC, "MARK: recurse");
    let strings_line = marker_line(SRC, "MARK: strings");

    let (ran, reference) = sites_with(CaptureMethod::Unwinder);
    assert_eq!(ran, CaptureMethod::Unwinder);
    assert_eq!(reference.get(&leaf_line).map(|x| x.1), Some(400));
    let recursed: u64 = (0..200u64).map(|i| i % 12).sum();
    assert_eq!(reference.get(&recurse_line).copied(), Some((recursed * 40, recursed)));
    assert_eq!(reference.get(&strings_line).map(|x| x.1), Some(300));

    let (ran, dwarf) = sites_with(CaptureMethod::Dwarf);
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(ran, CaptureMethod::Dwarf, "the DWARF unwinder passes its check on this platform");
    }
    assert_eq!(dwarf, reference, "cached DWARF unwinder vs libgcc");

    let (auto, auto_sites) = sites_with(CaptureMethod::Auto);
    assert_ne!(auto, CaptureMethod::Auto);
    assert_eq!(auto_sites, reference, "auto picked {auto:?}");
    eprintln!("auto capture method in this build: {}", auto.as_str());
    if auto == CaptureMethod::FramePointers {
        // Built with frame pointers: the walk is trusted and must agree too.
        let (ran, fp) = sites_with(CaptureMethod::FramePointers);
        assert_eq!(ran, CaptureMethod::FramePointers);
        assert_eq!(fp, reference, "frame-pointer walk vs libgcc");
    }

    // A forced walk over a garbage chain: no fault, the block still counted.
    #[cfg(target_arch = "x86_64")]
    {
        leaktrace::start(Config::default().capture(CaptureMethod::FramePointers));
        let before = leaktrace::traced_memory().current;
        let v = allocate_with_garbage_frame_pointer();
        assert_eq!(v.len(), 777);
        assert!(leaktrace::traced_memory().current >= before + 777);
        let snap = leaktrace::take_snapshot("garbage");
        assert!(snap.traces.iter().any(|t| t.size >= 777));
        drop(v);
        leaktrace::stop();
    }
}
