//! Return-address capture, with no symbol lookup and no lock.
//!
//! Three methods, chosen once at `start()`:
//! - a frame-pointer walk, bounded by the current thread's stack, used when
//!   [`walk_works`] confirmed that this build keeps frame pointers (tens of
//!   nanoseconds for a deep stack);
//! - a DWARF unwinder with a shared cache of unwind rules (`dwarf.rs`),
//!   for builds without frame pointers;
//! - libgcc's unwinder through `backtrace::trace_unsynchronized`, correct for
//!   every build but about 4 µs per capture: the fallback.
//!
//! The walk never reads memory outside `[current stack pointer, top of this
//! thread's stack)`, and frame addresses must strictly increase, so a broken
//! chain ends the walk instead of faulting or looping.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The most return addresses captured for one block.
pub(crate) const MAX_DEPTH: usize = 128;

thread_local! {
    /// `(low, high)` bounds of this thread's stack; `(0, 0)` until looked up,
    /// `(1, 1)` when they cannot be known (the walk is then not used).
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Capture with libgcc's unwinder.
pub(crate) const LIBGCC: u8 = 0;
/// Capture by walking frame pointers.
pub(crate) const FRAME_POINTERS: u8 = 1;
/// Capture with the cached DWARF unwinder.
pub(crate) const DWARF: u8 = 2;

/// A capture buffer on the stack, not zeroed first (1 KiB of memset per
/// allocation showed in profiles); only the captured prefix is ever read.
pub(crate) struct Buf {
    words: [std::mem::MaybeUninit<usize>; MAX_DEPTH],
}

impl Buf {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Buf { words: [std::mem::MaybeUninit::uninit(); MAX_DEPTH] }
    }

    /// Captures up to `depth` return addresses with `method`.
    #[inline(always)]
    pub(crate) fn fill(&mut self, depth: usize, method: u8) -> &[usize] {
        let depth = depth.min(MAX_DEPTH);
        let n = capture(&mut self.words[..depth], method).min(depth);
        // SAFETY: the capture functions initialised the first `n` words
        // (they write `buf[i]` for every `i < n` they report), and
        // `MaybeUninit<usize>` has the layout of `usize`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const usize, n) }
    }
}

/// Captures return addresses into `buf` with `method`; returns how many.
#[inline]
pub(crate) fn capture(buf: &mut [MaybeUninit<usize>], method: u8) -> usize {
    let fast = match method {
        FRAME_POINTERS => capture_fp(buf),
        DWARF => super::dwarf::capture_dwarf(buf),
        _ => None,
    };
    match fast {
        Some(n) => n,
        None => capture_unwind(buf),
    }
}

/// Captures with libgcc's unwinder.
#[inline(never)]
pub(crate) fn capture_unwind(buf: &mut [MaybeUninit<usize>]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` is unsafe because some platform
    // unwinders (dbghelp on Windows) are not thread-safe; libgcc's
    // `_Unwind_Backtrace`, used on the Unix targets, is. The closure only
    // writes into `buf`: it does not allocate, panic or take a lock.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n >= buf.len() {
                return false;
            }
            let ip = frame.ip() as usize;
            if ip == 0 {
                return false;
            }
            buf[n] = MaybeUninit::new(ip);
            n += 1;
            true
        });
    }
    n
}

/// The bounds of the current thread's stack, cached per thread.
#[inline]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    let cached = BOUNDS.try_with(Cell::get).ok()?;
    match cached {
        (0, 0) => {
            let b = query_stack_bounds().unwrap_or((1, 1));
            let _ = BOUNDS.try_with(|c| c.set(b));
            (b != (1, 1)).then_some(b)
        }
        (1, 1) => None,
        b => Some(b),
    }
}

/// The main thread's stack, `[low, high)`, found at `start()` (0, 0 until
/// then). For the main thread glibc's `pthread_getattr_np` reads and parses
/// `/proc/self/maps`: file I/O that must not run inside an allocation hook,
/// so the main thread's bounds are read ahead, outside any hook, and a hook
/// on the main thread finds them here.
static MAIN_STACK: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Reads the main thread's stack bounds: the `[stack]` mapping's top, and
/// the stack size limit below it (the mapping grows down to it). Called by
/// `start()`, never in a hook.
pub(crate) fn note_main_stack() {
    if MAIN_STACK[1].load(Relaxed) != 0 {
        return;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(line) = maps.lines().find(|l| l.ends_with("[stack]")) else {
        return;
    };
    let Some((lo, hi)) = line.split_whitespace().next().and_then(|r| r.split_once('-')) else {
        return;
    };
    let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) else {
        return;
    };
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-parameter for getrlimit.
    let limited = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } == 0 && lim.rlim_cur != libc::RLIM_INFINITY;
    let low = if limited { hi.saturating_sub(lim.rlim_cur as usize).min(lo) } else { lo };
    MAIN_STACK[0].store(low, Relaxed);
    MAIN_STACK[1].store(hi, Relaxed);
}

#[cold]
#[inline(never)]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn query_stack_bounds() -> Option<(usize, usize)> {
    let here = 0u8;
    let here = std::ptr::addr_of!(here) as usize;
    let (low, high) = (MAIN_STACK[0].load(Relaxed), MAIN_STACK[1].load(Relaxed));
    if high != 0 && here >= low && here < high {
        return Some((low, high));
    }
    // Not the main thread: glibc answers from the thread's descriptor, with
    // no file I/O (it may allocate its CPU set; the caller holds BUSY, so
    // that goes straight to the inner allocator).
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read
    // and destroyed exactly once; `addr` and `size` are plain out-parameters.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() || size == 0 {
            return None;
        }
        let low = addr as usize;
        Some((low, low.checked_add(size)?))
    }
}

#[cold]
#[inline(never)]
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn query_stack_bounds() -> Option<(usize, usize)> {
    None
}

/// Reads the word at `addr` of this thread's stack, which the caller has
/// checked to be aligned and within `[current stack pointer, top of stack)`.
///
/// The walk reads stack words that may never have been written (padding,
/// a slot of a frame that did not store there yet). Reading uninitialised
/// memory as a `usize` is undefined behaviour in Rust's model, even through
/// `read_volatile`; an `asm!` load is outside that model: the register it
/// fills holds whatever bits the memory had, always a valid integer.
#[inline(always)]
#[cfg(target_arch = "x86_64")]
pub(crate) fn read_stack_word(addr: usize) -> usize {
    let v: usize;
    // SAFETY: the caller checked that `addr .. addr + 8` is aligned, mapped,
    // live stack memory of this thread; the load only reads it.
    unsafe {
        core::arch::asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(readonly, nostack, preserves_flags))
    };
    v
}

#[inline(always)]
#[cfg(target_arch = "aarch64")]
pub(crate) fn read_stack_word(addr: usize) -> usize {
    let v: usize;
    // SAFETY: as on x86_64: an aligned, mapped, live stack word of this thread.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(readonly, nostack, preserves_flags))
    };
    v
}

/// The frame pointer of the calling function.
#[inline(always)]
#[cfg(target_arch = "x86_64")]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register, touches no memory.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}

#[inline(always)]
#[cfg(target_arch = "aarch64")]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register, touches no memory.
    unsafe { core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}

/// Walks the frame-pointer chain; `None` when this thread's stack bounds are
/// unknown or the architecture has no walk (the caller falls back).
#[inline(never)]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn capture_fp(buf: &mut [MaybeUninit<usize>]) -> Option<usize> {
    let (_, high) = stack_bounds()?;
    let marker = 0u8;
    // Everything between a local of this frame and the top of the stack is
    // mapped: it is the live part of this thread's stack.
    let low = std::ptr::addr_of!(marker) as usize;
    let mut fp = frame_pointer();
    let mut n = 0;
    // The chain only goes up (a record whose next is not above it ends the
    // walk), so the lower bound needs checking once, not per frame.
    if fp < low {
        return Some(0);
    }
    let top = high - 2 * 8;
    // A frame record is two words: [fp] = caller's fp, [fp + 8] = return address.
    while n < buf.len() {
        if fp > top || fp % std::mem::align_of::<usize>() != 0 {
            break;
        }
        // `fp .. fp + 16` lies within `[low, high)`, the mapped, live part
        // of this thread's stack (checked above). The values may be garbage
        // if the chain is broken; they are only compared and stored, never
        // followed without the same check.
        let (next, ret) = (read_stack_word(fp), read_stack_word(fp + 8));
        if ret == 0 {
            break;
        }
        buf[n] = MaybeUninit::new(ret);
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    Some(n)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn capture_fp(_buf: &mut [MaybeUninit<usize>]) -> Option<usize> {
    None
}

/// Checks once, at `start()`, that capture `method` through a known call
/// chain of this crate finds each caller in turn and agrees with libgcc's
/// unwinder. Crates of one build share their codegen flags, so a pass for
/// the frame-pointer walk means the program's own code keeps frame pointers.
pub(crate) fn walk_works(method: u8) -> bool {
    let mut fast = [0usize; 8];
    let mut uw = [0usize; 64];
    let (nf, nu) = probe_a(method, as_uninit(&mut fast), as_uninit(&mut uw));
    let entries = [probe_c as *const () as usize, probe_b as *const () as usize, probe_a as *const () as usize];
    fp_matches(&fast[..nf], &uw[..nu], &entries)
}

/// True when the walk's first addresses are returns into `entries` (the
/// probe functions, innermost first) in order, and the unwinder agrees.
///
/// Without frame pointers `rbp` still points at some ancestor's valid frame
/// record, and a walk from there agrees with the unwinder further up; the
/// first check, that the walk starts in its immediate caller, catches that.
fn fp_matches(fp: &[usize], uw: &[usize], entries: &[usize]) -> bool {
    // A return address lies after its function's entry, within the probe's
    // few instructions.
    const BODY: usize = 1024;
    if fp.len() < entries.len() + 1 {
        return false;
    }
    let callers_ok = entries.iter().zip(fp).all(|(&entry, &ret)| ret > entry && ret - entry < BODY);
    // Past the probes (whose call sites differ between the two captures),
    // the walk and the unwinder see the same return addresses.
    let tail = &fp[1..entries.len() + 1];
    let unwinder_ok = uw.windows(tail.len()).any(|w| w == tail);
    callers_ok && unwinder_ok
}

/// A zeroed buffer seen as capture space (every word is initialised).
fn as_uninit(words: &mut [usize]) -> &mut [MaybeUninit<usize>] {
    // SAFETY: `MaybeUninit<usize>` has the layout of `usize`, and writing a
    // `usize` through it keeps every word initialised.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut MaybeUninit<usize>, words.len()) }
}

#[inline(never)]
fn probe_a(method: u8, fast: &mut [MaybeUninit<usize>], uw: &mut [MaybeUninit<usize>]) -> (usize, usize) {
    let r = probe_b(method, fast, uw);
    std::hint::black_box(r)
}

#[inline(never)]
fn probe_b(method: u8, fast: &mut [MaybeUninit<usize>], uw: &mut [MaybeUninit<usize>]) -> (usize, usize) {
    let r = probe_c(method, fast, uw);
    std::hint::black_box(r)
}

#[inline(never)]
fn probe_c(method: u8, fast: &mut [MaybeUninit<usize>], uw: &mut [MaybeUninit<usize>]) -> (usize, usize) {
    let nf = match method {
        FRAME_POINTERS => capture_fp(fast),
        DWARF => super::dwarf::capture_dwarf(fast),
        _ => None,
    };
    let nu = capture_unwind(uw);
    std::hint::black_box((nf.unwrap_or(0), nu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_needs_the_immediate_caller_in_order() {
        let entries = [1000, 2000, 3000];
        // Returns into probe_c, probe_b, probe_a, then their caller.
        let fp = [1010, 2010, 3010, 4010];
        assert!(fp_matches(&fp, &[1, 1005, 2010, 3010, 4010, 9], &entries));
        // A walk that starts at an ancestor's record agrees with the
        // unwinder, but not with the probes.
        assert!(!fp_matches(&[4010, 5010, 6010, 7010], &[1, 1005, 2010, 3010, 4010, 5010, 6010, 7010], &entries));
        assert!(!fp_matches(&fp, &[1, 1005, 2010, 0, 4010], &entries));
        assert!(!fp_matches(&fp[..3], &[1005, 2010, 3010], &entries));
        assert!(!fp_matches(&[], &[1, 2], &entries));
    }

    #[test]
    fn unwinder_captures_this_test() {
        let mut buf = [0usize; 32];
        let n = capture_unwind(as_uninit(&mut buf));
        assert!(n > 2, "captured {n} frames");
        assert!(buf[..n].iter().all(|&a| a != 0));
    }

    #[test]
    fn walk_on_a_garbage_chain_stops_without_faulting() {
        // Whatever the build, the walk must end inside the stack bounds.
        let mut buf = [0usize; MAX_DEPTH];
        if let Some(n) = capture_fp(as_uninit(&mut buf)) {
            assert!(n <= MAX_DEPTH);
        }
    }
}
