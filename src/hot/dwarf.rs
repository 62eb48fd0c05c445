//! A cached DWARF unwinder for builds without frame pointers.
//!
//! libgcc's `_Unwind_Backtrace` parses CFI afresh for every frame of every
//! capture (about 4 µs per allocation). Here framehop does the same work
//! once per return address: each thread keeps a fixed-size cache of unwind
//! rules by address, so a hot call site's frames cost a cache probe and two
//! stack reads each. framehop does not allocate while unwinding
//! (`MustNotAllocateDuringUnwind`).
//!
//! [`load_modules`] runs at `start()`, not in a hook: it enumerates the
//! loaded objects with `dl_iterate_phdr` and hands framehop each one's
//! `.eh_frame_hdr` and `.eh_frame`, read in place from memory. Objects
//! loaded later fall back to framehop's frame-pointer heuristics, bounded
//! like every stack read here. Objects must not be unloaded (`dlclose`)
//! while tracing: their unwind tables are read where they are mapped.

use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder};
use std::cell::RefCell;
use std::sync::atomic::{AtomicPtr, Ordering::*};

#[cfg(target_arch = "x86_64")]
use framehop::x86_64::{CacheX86_64 as Cache, UnwindRegsX86_64 as Regs, UnwinderX86_64 as FhUnwinder};

type Data = &'static [u8];
#[cfg(target_arch = "x86_64")]
type Fast = FhUnwinder<Data, MustNotAllocateDuringUnwind>;
#[cfg(target_arch = "x86_64")]
type FastCache = Cache<MustNotAllocateDuringUnwind>;

/// The unwinder built by the last `load_modules`; replaced ones are leaked
/// (a hook on another thread may still be using one).
#[cfg(target_arch = "x86_64")]
static UNWINDER: AtomicPtr<Fast> = AtomicPtr::new(std::ptr::null_mut());

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// This thread's rule cache, made on first use (inside a hook, with
    /// `BUSY` set, so the allocation is the tracker's own). Gone during
    /// thread exit, when captures fall back to libgcc.
    static CACHE: RefCell<Option<Box<FastCache>>> = const { RefCell::new(None) };
}

/// One loaded object's unwind sections, as found in memory.
#[derive(Debug, Clone)]
pub(crate) struct ModuleInfo {
    pub(crate) name: String,
    pub(crate) bias: u64,
    pub(crate) text_svma: std::ops::Range<u64>,
    pub(crate) eh_frame_hdr_svma: std::ops::Range<u64>,
    pub(crate) eh_frame_svma: std::ops::Range<u64>,
}

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// Decodes the `.eh_frame_hdr`'s pointer to `.eh_frame` (an absolute
/// address); `hdr_avma` is where the header is mapped.
fn eh_frame_ptr(hdr: &[u8], hdr_avma: u64, bias: u64) -> Option<u64> {
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let enc = hdr[1];
    let field_avma = hdr_avma + 4;
    let raw = &hdr[4..];
    let value: i64 = match enc & 0x0f {
        0x00 | 0x04 => i64::from_le_bytes(raw.get(..8)?.try_into().ok()?), // absptr, udata8
        0x03 => u32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as i64,  // udata4
        0x0b => i32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as i64,  // sdata4
        0x0c => i64::from_le_bytes(raw.get(..8)?.try_into().ok()?),         // sdata8
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some((value as u64).wrapping_add(bias)), // absolute svma
        0x10 => Some(field_avma.wrapping_add(value as u64)), // pcrel
        0x30 => Some(hdr_avma.wrapping_add(value as u64)), // datarel: from the header
        _ => None,
    }
}

/// Lists the loaded objects that have `.eh_frame_hdr`.
pub(crate) fn loaded_modules() -> Vec<ModuleInfo> {
    let mut out: Vec<ModuleInfo> = Vec::new();
    unsafe extern "C" fn callback(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of
        // the call, and `data` is the `&mut Vec<ModuleInfo>` given below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<ModuleInfo>)) };
        let bias = info.dlpi_addr;
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let loads: Vec<(u64, u64, u32)> = phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| (p.p_vaddr, p.p_vaddr + p.p_memsz, p.p_flags))
            .collect();
        let Some(hdr) = phdrs.iter().find(|p| p.p_type == PT_GNU_EH_FRAME) else {
            return 0;
        };
        let Some(&(ts, te, _)) = loads.iter().find(|l| l.2 & PF_X != 0) else {
            return 0;
        };
        let hdr_avma = bias.wrapping_add(hdr.p_vaddr);
        // SAFETY: the PT_GNU_EH_FRAME segment is mapped readable for as long
        // as the object is loaded, `p_memsz` bytes from its address.
        let hdr_bytes = unsafe { std::slice::from_raw_parts(hdr_avma as *const u8, hdr.p_memsz as usize) };
        let Some(eh_avma) = eh_frame_ptr(hdr_bytes, hdr_avma, bias) else {
            return 0;
        };
        let eh_svma = eh_avma.wrapping_sub(bias);
        // `.eh_frame` has no length of its own here: it runs at most to the
        // end of the segment that holds it; the header's table says where
        // each entry starts, so trailing bytes are never parsed.
        let Some(&(_, seg_end, _)) = loads.iter().find(|l| l.0 <= eh_svma && eh_svma < l.1) else {
            return 0;
        };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string.
            unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
        };
        out.push(ModuleInfo {
            name,
            bias,
            text_svma: ts..te,
            eh_frame_hdr_svma: hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz,
            eh_frame_svma: eh_svma..seg_end,
        });
        0
    }
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects
    // and only reads what it is handed; `out` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(callback), &mut out as *mut Vec<ModuleInfo> as *mut libc::c_void) };
    out
}

/// Builds a framehop unwinder over the loaded objects and publishes it.
/// Returns how many objects it covers. Runs at `start()`, never in a hook.
#[cfg(target_arch = "x86_64")]
pub(crate) fn load_modules() -> usize {
    let modules = loaded_modules();
    let mut unwinder: Fast = FhUnwinder::new();
    for m in &modules {
        let slice = |r: &std::ops::Range<u64>| -> Data {
            // SAFETY: the range lies within a loaded segment of this object
            // (checked in `loaded_modules`), mapped readable while it stays
            // loaded; leaktrace documents that traced objects are not unloaded.
            unsafe { std::slice::from_raw_parts(m.bias.wrapping_add(r.start) as *const u8, (r.end - r.start) as usize) }
        };
        let info = framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(m.text_svma.clone()),
            eh_frame_svma: Some(m.eh_frame_svma.clone()),
            eh_frame: Some(slice(&m.eh_frame_svma)),
            eh_frame_hdr_svma: Some(m.eh_frame_hdr_svma.clone()),
            eh_frame_hdr: Some(slice(&m.eh_frame_hdr_svma)),
            ..Default::default()
        };
        let avma = m.bias.wrapping_add(m.text_svma.start)..m.bias.wrapping_add(m.text_svma.end);
        unwinder.add_module(framehop::Module::new(m.name.clone(), avma, m.bias, info));
    }
    UNWINDER.store(Box::into_raw(Box::new(unwinder)), Release);
    modules.len()
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn load_modules() -> usize {
    0
}

/// Captures return addresses with the cached unwinder; `None` when it is
/// not loaded or this thread's cache is gone (the caller falls back).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(crate) fn capture_dwarf(buf: &mut [usize]) -> Option<usize> {
    let uw = UNWINDER.load(Acquire);
    if uw.is_null() {
        return None;
    }
    // SAFETY: published unwinders are leaked, never freed or mutated.
    let uw = unsafe { &*uw };
    let (_, high) = super::stack::stack_bounds()?;
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers; touches no memory.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        )
    };
    let mut read = |addr: u64| -> Result<u64, ()> {
        if addr < sp || addr % 8 != 0 || addr.checked_add(8).is_none_or(|end| end > high as u64) {
            return Err(());
        }
        // SAFETY: `addr .. addr + 8` is aligned and lies between this
        // frame's stack pointer and the top of this thread's stack: live,
        // mapped stack memory.
        Ok(unsafe { (addr as *const u64).read_volatile() })
    };
    CACHE
        .try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            let cache = slot.get_or_insert_with(|| Box::new(FastCache::new_in()));
            let mut frames = uw.iter_frames(pc, Regs::new(pc, sp, bp), cache, &mut read);
            let mut n = 0;
            while n < buf.len() {
                match frames.next() {
                    Ok(Some(FrameAddress::ReturnAddress(ret))) => {
                        buf[n] = ret.get() as usize;
                        n += 1;
                    }
                    Ok(Some(FrameAddress::InstructionPointer(_))) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            Some(n)
        })
        .ok()
        .flatten()
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn capture_dwarf(_buf: &mut [usize]) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_executable_and_libc() {
        let mods = loaded_modules();
        assert!(mods.len() >= 2, "{mods:?}");
        assert!(mods.iter().any(|m| m.name.is_empty()), "the executable itself");
        for m in &mods {
            assert!(m.eh_frame_svma.start < m.eh_frame_svma.end);
            assert!(m.text_svma.start < m.text_svma.end);
        }
    }

    #[test]
    fn decodes_header_pointer_encodings() {
        // version 1, pcrel|sdata4, then -16 relative to the field at hdr+4.
        let hdr = [1u8, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_ptr(&hdr, 0x1000, 0), Some(0x1004 - 16));
        let abs = [1u8, 0x03, 0x03, 0x3b, 0x00, 0x20, 0x00, 0x00];
        assert_eq!(eh_frame_ptr(&abs, 0x1000, 0x10_0000), Some(0x10_2000));
        assert_eq!(eh_frame_ptr(&[2u8, 0x1b, 0, 0, 0, 0, 0, 0], 0, 0), None);
        assert_eq!(eh_frame_ptr(&[1u8, 0x1b], 0, 0), None);
    }
}
