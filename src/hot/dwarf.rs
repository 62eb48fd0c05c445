//! A DWARF unwinder for builds without frame pointers, with a global cache
//! of unwind rules by address.
//!
//! libgcc's `_Unwind_Backtrace` parses CFI afresh for every frame of every
//! capture (about 4 µs per allocation). Here the CFI row for a return
//! address is computed once (with gimli, on the first capture that meets
//! it), reduced to a rule of one word, and stored in a lock-free table that
//! every thread shares: unwind rules are facts about the code, the same for
//! all threads, so a hot call site's frames cost a hash probe (loads only)
//! and one or two stack reads each. A per-thread cache would be the wrong
//! shape: a small direct-mapped one thrashes when hot addresses collide,
//! which with ASLR happens on some runs and not others.
//!
//! [`load_modules`] runs at `start()`, not in a hook: it enumerates the
//! loaded objects with `dl_iterate_phdr` and keeps each one's
//! `.eh_frame_hdr` and `.eh_frame`, read in place from memory. An address
//! in no known object ends the walk. Objects must not be unloaded
//! (`dlclose`) while tracing: their unwind tables are read where mapped.
//!
//! Rule word:
//!
//! | bits   | meaning                                                       |
//! |--------|---------------------------------------------------------------|
//! | 7..0   | kind: 1 = CFA is rsp + offset, 2 = CFA is rbp + offset, 3 = stop |
//! | 31..16 | where rbp was saved, as an offset from the CFA (0 = unchanged) |
//! | 63..32 | CFA offset (i32)                                               |
//!
//! The return address is always at CFA - 8 (x86-64 SysV); a row saying
//! otherwise, or using DWARF expressions (signal frames), is a stop.

use super::sites::mix;
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};

type Slice = EndianSlice<'static, LittleEndian>;

/// One loaded object's unwind sections, as found in memory.
#[derive(Debug, Clone)]
pub(crate) struct ModuleInfo {
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
        0x03 => u32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as i64, // udata4
        0x0b => i32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as i64, // sdata4
        0x0c => i64::from_le_bytes(raw.get(..8)?.try_into().ok()?),        // sdata8
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some((value as u64).wrapping_add(bias)),     // absolute svma
        0x10 => Some(field_avma.wrapping_add(value as u64)), // pcrel
        0x30 => Some(hdr_avma.wrapping_add(value as u64)),   // datarel: from the header
        _ => None,
    }
}

/// Lists the loaded objects that have `.eh_frame_hdr`.
pub(crate) fn loaded_modules() -> Vec<ModuleInfo> {
    let mut out: Vec<ModuleInfo> = Vec::new();
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
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
        out.push(ModuleInfo {
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

/// One object, ready to answer CFI queries.
struct Module {
    avma: std::ops::Range<u64>,
    bias: u64,
    hdr: ParsedEhFrameHdr<Slice>,
    eh_frame: EhFrame<Slice>,
    bases: BaseAddresses,
}

/// The objects known since the last `start()`, sorted by address; replaced
/// ones are leaked (a hook may still be reading one).
static MODULES: AtomicPtr<Vec<Module>> = AtomicPtr::new(std::ptr::null_mut());

/// The rule cache: `KEYS[i]` is a return address (0 = empty), `RULES[i]`
/// its rule (0 = being written). Fixed size; replaced by `load_modules`.
struct RuleTable {
    mask: usize,
    keys: Box<[AtomicU64]>,
    rules: Box<[AtomicU64]>,
}

static RULES: AtomicPtr<RuleTable> = AtomicPtr::new(std::ptr::null_mut());
const RULE_SLOTS: usize = 1 << 16;
const PROBES: usize = 16;

const KIND_SP: u64 = 1;
const KIND_BP: u64 = 2;
const KIND_STOP: u64 = 3;
const STOP: u64 = KIND_STOP;

/// Builds the CFI readers for the loaded objects and a fresh rule cache,
/// and publishes them. Returns how many objects are covered. Runs at
/// `start()`, never in a hook.
pub(crate) fn load_modules() -> usize {
    let mut modules = Vec::new();
    for m in loaded_modules() {
        let slice = |r: &std::ops::Range<u64>| -> &'static [u8] {
            // SAFETY: the range lies within a loaded segment of this object
            // (checked in `loaded_modules`), mapped readable while it stays
            // loaded; leaktrace documents that traced objects are not unloaded.
            unsafe { std::slice::from_raw_parts(m.bias.wrapping_add(r.start) as *const u8, (r.end - r.start) as usize) }
        };
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(m.eh_frame_hdr_svma.start)
            .set_eh_frame(m.eh_frame_svma.start)
            .set_text(m.text_svma.start);
        let hdr_data = EndianSlice::new(slice(&m.eh_frame_hdr_svma), LittleEndian);
        let Ok(hdr) = EhFrameHdr::from(hdr_data).parse(&bases, 8) else {
            continue;
        };
        if hdr.table().is_none() {
            continue;
        }
        let mut eh_frame = EhFrame::from(EndianSlice::new(slice(&m.eh_frame_svma), LittleEndian));
        eh_frame.set_address_size(8);
        modules.push(Module {
            avma: m.bias.wrapping_add(m.text_svma.start)..m.bias.wrapping_add(m.text_svma.end),
            bias: m.bias,
            hdr,
            eh_frame,
            bases,
        });
    }
    modules.sort_by_key(|m| m.avma.start);
    let n = modules.len();
    // One rule table for the life of the process: rules are facts about
    // code, still true after a restart (objects are never unloaded while
    // traced), so a `start()` keeps the cache instead of leaking 1 MiB.
    if RULES.load(Acquire).is_null() {
        let table = RuleTable {
            mask: RULE_SLOTS - 1,
            keys: (0..RULE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            rules: (0..RULE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        };
        let fresh = Box::into_raw(Box::new(table));
        if RULES.compare_exchange(std::ptr::null_mut(), fresh, AcqRel, Acquire).is_err() {
            // SAFETY: `fresh` was never published; this is its only owner.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
    // The module list is replaced only when the loaded objects changed (a
    // `dlopen` since the last start); a replaced list is leaked, as a hook
    // may still be reading it, and it is a few hundred bytes per object.
    let cur = MODULES.load(Acquire);
    // SAFETY: published module lists are leaked, never freed or mutated.
    let same =
        !cur.is_null() && unsafe { &*cur }.iter().map(|m| m.avma.clone()).eq(modules.iter().map(|m| m.avma.clone()));
    if !same {
        MODULES.store(Box::into_raw(Box::new(modules)), Release);
    }
    n
}

/// gimli's unwind context kept inline, on the stack of the hook that needs
/// it: `UnwindContext::new()` boxes its storage with an infallible
/// allocation, which out of memory would abort the program from inside an
/// allocation. 32 register rules per row is far more than x86-64 CFI uses
/// (a row with more is an error, and the walk stops); 4 rows of state
/// stack, as gimli's default. About 4 KiB.
struct InlineStore;

const INLINE_RULES: usize = 32;
const INLINE_STACK: usize = 4;

impl UnwindContextStorage<usize> for InlineStore {
    type Rules = [(Register, RegisterRule<usize>); INLINE_RULES];
    type Stack = [UnwindTableRow<usize, Self>; INLINE_STACK];
}

/// Bytes the rule cache holds.
pub(crate) fn memory() -> usize {
    if RULES.load(Relaxed).is_null() {
        0
    } else {
        RULE_SLOTS * 16
    }
}

/// The rule for code address `addr` (a return address minus one, or the
/// first frame's pc): from the cache, else computed and cached.
#[inline]
fn rule_for(table: &RuleTable, addr: u64) -> u64 {
    let start = mix(addr) as usize;
    for i in 0..PROBES {
        let slot = (start + i) & table.mask;
        let key = table.keys[slot].load(Acquire);
        if key == addr {
            let rule = table.rules[slot].load(Acquire);
            if rule != 0 {
                return rule;
            }
            // Being written by another thread: compute it ourselves.
            return compute_rule(addr);
        }
        if key == 0 {
            let rule = compute_rule(addr);
            if table.keys[slot].compare_exchange(0, addr, AcqRel, Acquire).is_ok() {
                table.rules[slot].store(rule, Release);
            }
            return rule;
        }
    }
    compute_rule(addr)
}

/// Reads the CFI row for `addr` and reduces it to a rule word. Cold: once
/// per address. Allocates nothing: gimli's context lives on this frame
/// (see [`InlineStore`]).
#[cold]
#[inline(never)]
fn compute_rule(addr: u64) -> u64 {
    let modules = MODULES.load(Acquire);
    if modules.is_null() {
        return STOP;
    }
    // SAFETY: published module lists are leaked, never freed or mutated.
    let modules = unsafe { &*modules };
    let i = modules.partition_point(|m| m.avma.start <= addr);
    let Some(m) = i.checked_sub(1).map(|i| &modules[i]).filter(|m| m.avma.contains(&addr)) else {
        return STOP;
    };
    let Some(table) = m.hdr.table() else {
        return STOP;
    };
    let mut ctx = UnwindContext::<usize, InlineStore>::new_in();
    let svma = addr.wrapping_sub(m.bias);
    let Ok(row) =
        table.unwind_info_for_address(&m.eh_frame, &m.bases, &mut ctx, svma, |s, b, o| s.cie_from_offset(b, o))
    else {
        return STOP;
    };
    let (kind, cfa_off) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RSP => (KIND_SP, offset),
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RBP => (KIND_BP, offset),
        _ => return STOP,
    };
    if !matches!(row.register(gimli::X86_64::RA), Some(RegisterRule::Offset(-8))) {
        return STOP;
    }
    let bp_off: i64 = match row.register(gimli::X86_64::RBP) {
        Some(RegisterRule::Offset(o)) if o != 0 => o,
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => 0,
        _ => return STOP,
    };
    let (Ok(cfa_off), Ok(bp_off)) = (i32::try_from(cfa_off), i16::try_from(bp_off)) else {
        return STOP;
    };
    kind | ((bp_off as u16 as u64) << 16) | ((cfa_off as u32 as u64) << 32)
}

/// Captures return addresses with the cached rules; `None` when no module
/// is loaded (the caller falls back).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(crate) fn capture_dwarf(buf: &mut [std::mem::MaybeUninit<usize>]) -> Option<usize> {
    let table = RULES.load(Acquire);
    if table.is_null() {
        return None;
    }
    // SAFETY: published rule tables are leaked, never freed; their slots
    // are atomics.
    let table = unsafe { &*table };
    let (_, high) = super::stack::stack_bounds()?;
    let high = high as u64;
    let (mut pc, mut sp, mut bp): (u64, u64, u64);
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
    let low = sp;
    let read = |addr: u64| -> Option<u64> {
        if addr < low || addr % 8 != 0 || addr > high.checked_sub(8)? {
            return None;
        }
        Some(super::stack::read_stack_word(addr as usize) as u64)
    };
    let mut lookup = pc;
    let mut n = 0;
    while n < buf.len() {
        let rule = rule_for(table, lookup);
        let base = match rule & 0xff {
            KIND_SP => sp,
            KIND_BP => bp,
            _ => break,
        };
        let cfa = base.wrapping_add((rule >> 32) as i32 as i64 as u64);
        let Some(ret) = read(cfa.wrapping_sub(8)) else {
            break;
        };
        let bp_off = (rule >> 16) as u16 as i16;
        if bp_off != 0 {
            match read(cfa.wrapping_add(bp_off as i64 as u64)) {
                Some(v) => bp = v,
                None => break,
            }
        }
        if ret == 0 || cfa <= sp {
            break;
        }
        buf[n] = std::mem::MaybeUninit::new(ret as usize);
        n += 1;
        sp = cfa;
        pc = ret;
        lookup = pc - 1;
    }
    let _ = pc;
    Some(n)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn capture_dwarf(_buf: &mut [std::mem::MaybeUninit<usize>]) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_executable_and_libc() {
        let mods = loaded_modules();
        assert!(mods.len() >= 2, "{mods:?}");
        let here = finds_this_executable_and_libc as *const () as u64;
        assert!(
            mods.iter().any(|m| (m.bias + m.text_svma.start..m.bias + m.text_svma.end).contains(&here)),
            "the executable itself"
        );
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
