//! One object's symbols: its DWARF line tables and inlining, read in one
//! pass per unit over a batch of addresses ([`super::dwarf`]) from a
//! read-only map of the file, and its symbol table.
//!
//! Why a map and not reads: only the pages of the units asked about are
//! touched, and they are clean file pages; they are dropped from the
//! process after each unit (`MADV_DONTNEED`), so the RSS they take is one
//! unit's at most. Reading the sections into the heap would make all of
//! `.debug_info` resident at once. The whole [`DebugObject`] is dropped
//! after a snapshot's batch (see `super::Batch`), which unmaps the file.
//!
//! The debug data is looked for in the binary itself, then by build id
//! (`DIR/.build-id/xx/rest.debug`, for each debug directory and
//! `/usr/lib/debug`), then by `.gnu_debuglink` (next to the binary, in its
//! `.debug/`, and under each debug directory).

use super::dwarf::{Sections, Slice};
use gimli::{EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection};
use once_cell::unsync::OnceCell;
use std::path::{Path, PathBuf};

/// A read-only private map of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the map is read-only and never remapped; sharing `&[u8]` views of
// it between threads is as sound as sharing any immutable byte slice.
unsafe impl Send for Mapped {}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "empty file"));
        }
        // SAFETY: mapping a file we opened for reading, read-only and
        // private, at an address of the kernel's choosing; the descriptor
        // may be closed afterwards (the map keeps its own reference).
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    /// The file's bytes, for as long as the map is alive; the caller must
    /// not let the reference outlive `self` (see [`DebugObject`]'s fields).
    fn bytes(&self) -> &'static [u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes until
        // `drop`. The `'static` is a lie told to gimli, kept honest by
        // `DebugObject`: it drops everything that borrows the bytes before
        // the maps (fields drop in declaration order), and hands out only
        // owned copies. A file truncated by someone else while mapped makes
        // reads past its end fault (SIGBUS), as with every mmap-based reader.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Mapped {
    /// Drops the pages of the map from this process (they stay in the page
    /// cache): a clean private file page read through the map counts in RSS
    /// until then. The next read faults the same bytes back in.
    fn drop_pages(&self) {
        // SAFETY: `ptr`/`len` are a live mapping of ours; `MADV_DONTNEED` on
        // a read-only private file mapping that was never written only
        // unmaps pages, whose contents reads then fetch again from the file.
        unsafe {
            libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned and nothing
        // borrows the bytes any more (see `bytes`).
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// A frame as the debug info tells it, before it becomes a [`crate::Frame`].
#[derive(Clone, Debug, Default)]
pub(crate) struct RawFrame {
    /// Demangled, without the hash; `None` when unknown.
    pub(crate) function: Option<String>,
    /// The absolute path, as `comp_dir` joined with the line table's.
    pub(crate) file: Option<String>,
    /// The compilation directory of the unit, when known.
    pub(crate) comp_dir: Option<String>,
    pub(crate) line: u32,
}

/// The symbols of one object. Field order matters: everything borrowing
/// the maps comes before them and is dropped first.
pub(crate) struct DebugObject {
    dwarf: Option<Sections>,
    /// The objects whose symbol tables name functions the DWARF does not:
    /// the binary's first, then the debug file's. The table is sorted only
    /// when a frame needs it (most have a DWARF name).
    symbol_files: Vec<object::File<'static>>,
    symbols: OnceCell<object::SymbolMap<object::SymbolMapName<'static>>>,
    /// Where the DWARF came from (the binary or a debug file).
    pub(crate) debug_path: Option<PathBuf>,
    _debug_map: Option<Mapped>,
    _map: Option<Mapped>,
}

// SAFETY: `DebugObject` owns its maps and everything borrowing them; no
// `Rc` or thread-bound state inside (gimli's and object's readers are plain
// slices).
unsafe impl Send for DebugObject {}

impl DebugObject {
    /// Opens `binary` (which may be gone: the debug file found by build id
    /// is then enough) and finds its DWARF. Errors say why nothing at all
    /// can be resolved.
    pub(crate) fn open(binary: &Path, build_id: &[u8], debug_dirs: &[PathBuf]) -> Result<DebugObject, String> {
        let map = Mapped::open(binary).ok();
        let file = match &map {
            Some(m) => Some(object::File::parse(m.bytes()).map_err(|e| format!("{}: {e}", binary.display()))?),
            None => None,
        };
        let build_id: Vec<u8> = match (&file, build_id) {
            (_, id) if !id.is_empty() => id.to_vec(),
            (Some(f), _) => f.build_id().ok().flatten().map(<[u8]>::to_vec).unwrap_or_default(),
            (None, _) => Vec::new(),
        };
        // A binary with line tables of its own is used as it is.
        if let Some(f) = file.as_ref().filter(|f| has_dwarf(f)) {
            let dwarf = sections(f)?;
            return Ok(DebugObject {
                dwarf: Some(dwarf),
                symbol_files: file.into_iter().collect(),
                symbols: OnceCell::new(),
                debug_path: Some(binary.to_path_buf()),
                _debug_map: None,
                _map: map,
            });
        }
        let debuglink = file
            .as_ref()
            .and_then(|f| f.gnu_debuglink().ok().flatten())
            .map(|(name, _crc)| String::from_utf8_lossy(name).into_owned());
        for candidate in debug_candidates(binary, &build_id, debuglink.as_deref(), debug_dirs) {
            let Ok(dmap) = Mapped::open(&candidate) else { continue };
            let Ok(dfile) = object::File::parse(dmap.bytes()) else { continue };
            // A debug file of another build would give wrong lines.
            let did = dfile.build_id().ok().flatten().unwrap_or_default();
            if !build_id.is_empty() && did != build_id.as_slice() {
                continue;
            }
            if !has_dwarf(&dfile) {
                continue;
            }
            let dwarf = sections(&dfile)?;
            return Ok(DebugObject {
                dwarf: Some(dwarf),
                symbol_files: file.into_iter().chain(Some(dfile)).collect(),
                symbols: OnceCell::new(),
                debug_path: Some(candidate),
                _debug_map: Some(dmap),
                _map: map,
            });
        }
        match file {
            // Symbol names without lines: better than nothing.
            Some(f) => Ok(DebugObject {
                dwarf: None,
                symbol_files: vec![f],
                symbols: OnceCell::new(),
                debug_path: None,
                _debug_map: None,
                _map: map,
            }),
            None => Err(format!(
                "{}: not found, and no debug file for its build id {}",
                binary.display(),
                super::modules::hex(&build_id)
            )),
        }
    }

    /// Whether file and line can be had (DWARF was found).
    pub(crate) fn has_lines(&self) -> bool {
        self.dwarf.is_some()
    }

    /// The frames at each of `probes` (addresses in the object's numbering,
    /// inside the call instruction; any order, repeats allowed), innermost
    /// inlined frame first: the DWARF is read in one pass per unit over all
    /// of them (see [`super::dwarf`]).
    pub(crate) fn frames_of_all(&self, probes: &[u64]) -> Vec<Vec<RawFrame>> {
        let mut sorted = probes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut found = match &self.dwarf {
            // The pages read for a unit are clean file pages, but counted
            // in RSS while mapped in: they are dropped after each unit, so
            // at most one unit's worth is resident at a time.
            Some(d) => d.frames(&sorted, || self.drop_pages()),
            None => vec![Vec::new(); sorted.len()],
        };
        for (frames, &probe) in found.iter_mut().zip(&sorted) {
            // The outermost frame is the function the address is in: the
            // symbol table names it when the DWARF does not.
            let symbol = || self.symbols().containing(probe).map(|s| demangle(s.name()));
            match frames.last_mut() {
                Some(last) if last.function.is_none() => last.function = symbol(),
                Some(_) => {}
                None => frames.push(RawFrame { function: symbol(), ..RawFrame::default() }),
            }
        }
        probes.iter().map(|p| sorted.binary_search(p).map(|i| found[i].clone()).unwrap_or_default()).collect()
    }

    fn symbols(&self) -> &object::SymbolMap<object::SymbolMapName<'static>> {
        self.symbols.get_or_init(|| {
            let mut maps = self.symbol_files.iter().map(|f| f.symbol_map());
            let first = maps.next().unwrap_or_else(|| object::SymbolMap::new(Vec::new()));
            if first.symbols().is_empty() {
                maps.next().unwrap_or(first)
            } else {
                first
            }
        })
    }

    /// Gives back the mapped pages read so far (see [`Mapped::drop_pages`]).
    pub(crate) fn drop_pages(&self) {
        for m in [&self._debug_map, &self._map].into_iter().flatten() {
            m.drop_pages();
        }
    }
}

fn has_dwarf(f: &object::File<'static>) -> bool {
    f.section_by_name(".debug_line").is_some_and(|s| s.size() > 0 && s.data().is_ok_and(|d| !d.is_empty()))
}

/// The object's DWARF sections, as mapped. Compressed sections
/// (`SHF_COMPRESSED`) are not supported.
fn sections(f: &object::File<'static>) -> Result<Sections, String> {
    let endian = if f.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
    let mut compressed = false;
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice, gimli::Error> {
        let data = match f.section_by_name(id.name()) {
            Some(s) => {
                if s.compressed_file_range().is_ok_and(|r| r.format != object::CompressionFormat::None) {
                    compressed = true;
                    &[][..]
                } else {
                    s.data().unwrap_or(&[])
                }
            }
            None => &[],
        };
        Ok(EndianSlice::new(data, endian))
    })
    .map_err(|e| format!("reading DWARF: {e}"))?;
    if compressed {
        return Err("compressed debug sections are not supported (objcopy --decompress-debug-sections)".into());
    }
    Ok(Sections::new(dwarf))
}

/// Where a debug file for `binary` may be, most specific first.
pub(crate) fn debug_candidates(
    binary: &Path,
    build_id: &[u8],
    debuglink: Option<&str>,
    debug_dirs: &[PathBuf],
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = debug_dirs.to_vec();
    dirs.push(PathBuf::from("/usr/lib/debug"));
    let mut out = Vec::new();
    if build_id.len() >= 2 {
        let hex = super::modules::hex(build_id);
        let (head, rest) = hex.split_at(2);
        for d in &dirs {
            out.push(d.join(".build-id").join(head).join(format!("{rest}.debug")));
            out.push(d.join(head).join(format!("{rest}.debug")));
        }
    }
    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = binary.parent().unwrap_or(Path::new("/"));
    if let Some(link) = debuglink {
        out.push(parent.join(link));
        out.push(parent.join(".debug").join(link));
        for d in &dirs {
            out.push(d.join(link));
            out.push(d.join(parent.strip_prefix("/").unwrap_or(parent)).join(link));
        }
    }
    // A directory of debug files named after their binaries.
    for d in debug_dirs {
        out.push(d.join(format!("{name}.debug")));
        out.push(d.join(&name));
    }
    out.dedup();
    out
}

/// `{:#}` of a Rust symbol (no hash); other names as they are.
pub(crate) fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}
