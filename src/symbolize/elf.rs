//! One object's symbols: its DWARF line tables and inlining, read through
//! `addr2line` over a read-only map of the file, and its symbol table.
//!
//! Why a map and not reads: `addr2line` parses lazily (unit headers up
//! front, then the line program and functions of each unit an address
//! falls in), so only the pages of the units asked about are touched, and
//! they are clean file pages the kernel can drop; reading the sections
//! into the heap would make all of `.debug_info` resident at once. The
//! whole [`DebugObject`] is dropped after a snapshot's batch (see
//! `super::Batch`), which unmaps the file and frees the parsed units.
//!
//! The debug data is looked for in the binary itself, then by build id
//! (`DIR/.build-id/xx/rest.debug`, for each debug directory and
//! `/usr/lib/debug`), then by `.gnu_debuglink` (next to the binary, in its
//! `.debug/`, and under each debug directory).

use gimli::{EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection};
use std::path::{Path, PathBuf};

type Slice = EndianSlice<'static, RunTimeEndian>;

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
        // `drop`. The `'static` is a lie told to `addr2line`, kept honest by
        // `DebugObject`: it drops everything that borrows the bytes before
        // the maps (fields drop in declaration order), and hands out only
        // owned copies. A file truncated by someone else while mapped makes
        // reads past its end fault (SIGBUS), as with every mmap-based reader.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
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

/// The symbols of one object. Field order matters: the parsed data borrows
/// from the maps below it and must be dropped first.
pub(crate) struct DebugObject {
    ctx: Option<addr2line::Context<Slice>>,
    symbols: object::SymbolMap<object::SymbolMapName<'static>>,
    /// Where the DWARF came from (the binary or a debug file).
    pub(crate) debug_path: Option<PathBuf>,
    _debug_map: Option<Mapped>,
    _map: Option<Mapped>,
}

// SAFETY: `DebugObject` owns its maps and everything borrowing them; no
// `Rc` or thread-bound state inside (gimli's readers are plain slices).
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
        let symbols_of = |f: &object::File<'static>| f.symbol_map();
        // A binary with line tables of its own is used as it is.
        if let Some(f) = file.as_ref().filter(|f| has_dwarf(f)) {
            let ctx = context(f)?;
            return Ok(DebugObject {
                ctx: Some(ctx),
                symbols: symbols_of(f),
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
            let ctx = context(&dfile)?;
            let symbols = match &file {
                Some(f) if !f.symbol_map().symbols().is_empty() => symbols_of(f),
                _ => symbols_of(&dfile),
            };
            return Ok(DebugObject {
                ctx: Some(ctx),
                symbols,
                debug_path: Some(candidate),
                _debug_map: Some(dmap),
                _map: map,
            });
        }
        match &file {
            // Symbol names without lines: better than nothing.
            Some(f) => {
                Ok(DebugObject { ctx: None, symbols: symbols_of(f), debug_path: None, _debug_map: None, _map: map })
            }
            None => Err(format!(
                "{}: not found, and no debug file for its build id {}",
                binary.display(),
                super::modules::hex(&build_id)
            )),
        }
    }

    /// Whether file and line can be had (DWARF was found).
    pub(crate) fn has_lines(&self) -> bool {
        self.ctx.is_some()
    }

    /// The frames at `probe` (an address in the object's numbering, inside
    /// the call instruction), innermost inlined frame first.
    pub(crate) fn frames(&self, probe: u64) -> Vec<RawFrame> {
        let mut out = Vec::new();
        if let Some(ctx) = &self.ctx {
            let comp_dir = ctx
                .find_dwarf_and_unit(probe)
                .skip_all_loads()
                .and_then(|u| u.comp_dir.map(|d| d.to_string_lossy().into_owned()));
            if let Ok(mut frames) = ctx.find_frames(probe).skip_all_loads() {
                while let Ok(Some(f)) = frames.next() {
                    let function = f.function.as_ref().and_then(|n| n.raw_name().ok()).map(|n| demangle(&n));
                    let (file, line) = match f.location {
                        Some(l) => (l.file.map(str::to_string), l.line.unwrap_or(0)),
                        None => (None, 0),
                    };
                    out.push(RawFrame { function, file, comp_dir: comp_dir.clone(), line });
                }
            }
        }
        // The outermost frame is the function the address is in: the symbol
        // table names it when the DWARF does not.
        let symbol = || self.symbols.containing(probe).map(|s| demangle(s.name()));
        match out.last_mut() {
            Some(last) if last.function.is_none() => last.function = symbol(),
            Some(_) => {}
            None => out.push(RawFrame { function: symbol(), ..RawFrame::default() }),
        }
        out
    }
}

fn has_dwarf(f: &object::File<'static>) -> bool {
    f.section_by_name(".debug_line").is_some_and(|s| s.size() > 0 && s.data().is_ok_and(|d| !d.is_empty()))
}

/// An `addr2line` context over the object's DWARF sections, as mapped.
/// Compressed sections (`SHF_COMPRESSED`) are not supported.
fn context(f: &object::File<'static>) -> Result<addr2line::Context<Slice>, String> {
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
    addr2line::Context::from_dwarf(dwarf).map_err(|e| format!("reading DWARF: {e}"))
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
