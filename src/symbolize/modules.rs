//! The objects loaded in this process (the executable, shared libraries):
//! path, build id, load address, and where their segments are mapped.
//!
//! Found with `dl_iterate_phdr`, which reads the loader's own list (no
//! file is opened), so it works for a binary deleted or replaced since it
//! started. The build id is read from the `PT_NOTE` segments in memory.
//! The table only grows: a frame's module index stays valid for the
//! process's life, also for an object unloaded since (`dlclose`).

use crate::snapshot::Module;
use parking_lot::Mutex;

/// One loaded object.
#[derive(Clone, Debug)]
pub(crate) struct LoadedModule {
    /// The file it was loaded from (the executable's as `/proc/self/exe` tells).
    pub(crate) path: String,
    /// The `NT_GNU_BUILD_ID` note, empty when there is none.
    pub(crate) build_id: Vec<u8>,
    /// Load address: an address in the object's own numbering plus this is
    /// where it is mapped.
    pub(crate) bias: u64,
    /// Mapped `PT_LOAD` segments, `[start, end)` in this process.
    ranges: Vec<(u64, u64)>,
}

impl LoadedModule {
    pub(crate) fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= addr && addr < e)
    }

    /// The file name alone (`app`, `libc.so.6`).
    pub(crate) fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

static MODULES: Mutex<Vec<LoadedModule>> = Mutex::new(Vec::new());

/// The module holding `addr` and its index, enumerating the loaded objects
/// again when no known one holds it (an object loaded since).
pub(crate) fn find(addr: u64) -> Option<(u32, LoadedModule)> {
    let hit = |mods: &[LoadedModule]| mods.iter().position(|m| m.contains(addr)).map(|i| (i as u32, mods[i].clone()));
    if let Some(found) = hit(&MODULES.lock()) {
        return Some(found);
    }
    refresh();
    hit(&MODULES.lock())
}

/// Every module known so far, for a snapshot's `modules`.
pub(crate) fn list() -> Vec<Module> {
    if MODULES.lock().is_empty() {
        refresh();
    }
    MODULES
        .lock()
        .iter()
        .map(|m| Module { path: m.path.clone(), build_id: hex(&m.build_id), load_address: m.bias })
        .collect()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds the objects loaded since the last call.
pub(crate) fn refresh() {
    let found = enumerate();
    let mut mods = MODULES.lock();
    for m in found {
        if !mods.iter().any(|k| k.path == m.path && k.bias == m.bias) {
            mods.push(m);
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;

fn enumerate() -> Vec<LoadedModule> {
    let mut out: Vec<LoadedModule> = Vec::new();
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of
        // the call, and `data` is the `&mut Vec<LoadedModule>` given below,
        // not otherwise borrowed while the iteration runs.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<LoadedModule>)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers, valid
        // while the object is loaded, which it is during the callback.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let bias = info.dlpi_addr;
        let ranges: Vec<(u64, u64)> = phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| (bias.wrapping_add(p.p_vaddr), bias.wrapping_add(p.p_vaddr + p.p_memsz)))
            .collect();
        let mut build_id = Vec::new();
        for p in phdrs.iter().filter(|p| p.p_type == PT_NOTE) {
            // SAFETY: a PT_NOTE segment lies inside a PT_LOAD one (the
            // linker places notes in the first, read-only segment), so
            // its `p_memsz` bytes are mapped readable while the object is
            // loaded.
            let notes =
                unsafe { std::slice::from_raw_parts(bias.wrapping_add(p.p_vaddr) as *const u8, p.p_memsz as usize) };
            if let Some(id) = gnu_build_id(notes) {
                build_id = id.to_vec();
                break;
            }
        }
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned
            // by the loader, valid during the callback.
            unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
        };
        let path = if name.is_empty() && out.is_empty() {
            // The first entry is the executable, with an empty name.
            std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default()
        } else {
            name
        };
        // The vDSO has a name but no file; neither can be symbolized here.
        if !path.starts_with('/') {
            return 0;
        }
        out.push(LoadedModule { path, build_id, bias, ranges });
        0
    }
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects,
    // and `data` points to `out`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), &mut out as *mut Vec<LoadedModule> as *mut libc::c_void);
    }
    out
}

/// The `NT_GNU_BUILD_ID` descriptor among ELF notes (4-byte aligned).
pub(crate) fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(&notes[0..]) as usize, word(&notes[4..]) as usize, word(&notes[8..]));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            return Some(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_found_with_its_build_id() {
        fn anchor() {}
        let (i, m) = find(anchor as fn() as usize as u64).expect("this test binary is a loaded module");
        assert_eq!(i, 0, "{m:?}");
        assert!(m.path.ends_with(std::env::current_exe().unwrap().file_name().unwrap().to_str().unwrap()));
        assert!(!m.build_id.is_empty(), "rustc links with --build-id on Linux");
        assert_eq!(list()[0].build_id, hex(&m.build_id));
    }
}
