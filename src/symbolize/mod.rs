//! Return addresses to frames, with bounded caches; the first-own-frame rule.
//!
//! Runs only when a snapshot is taken, never in a hook. An address is
//! looked up in the object it belongs to ([`modules`]) with gimli ([`dwarf`])
//! over a map of the file ([`elf`]): a snapshot's addresses are read in one
//! pass per unit they fall in, keeping only the rows and inlined calls at
//! those addresses, inlined frames expanded innermost first. The open debug
//! info lives for one [`Batch`] (a
//! snapshot's worth of stacks) and is dropped when it ends, so the RSS it
//! took is given back; what stays is a bounded cache of resolved frames
//! per address and of chosen tracebacks per stack ([`cache`]), so later
//! snapshots of the same stacks read no debug info at all.
//!
//! With symbolization off (`Config::symbolize(false)`), or for an object
//! without debug info, a frame keeps its object and offset (`app+0x1a2b`,
//! `Frame::module`, `Frame::offset`); a stack whose site cannot be told
//! then keeps all its frames, for `alloc-probe symbolize` to resolve later
//! and choose the site by the same rule ([`offline`]).
//!
//! Paths are written portable ([`paths`]); the rule looks at the absolute
//! path, kept as `Frame::path_abs`.

mod cache;
mod dwarf;
mod elf;
pub(crate) mod modules;
pub(crate) mod offline;
mod paths;

use crate::config::SiteRules;
use crate::hot::control::StackId;
use crate::Frame;
use cache::GenCache;
use hashbrown::HashMap;
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// What a frame is, for choosing the call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// The program's own code: the first such frame is the site.
    Own,
    /// A dependency (cargo registry or git checkout) or a library without
    /// source paths.
    Dependency,
    /// The standard library, including its bundled dependencies.
    Std,
    /// leaktrace itself, the `__rust_alloc` shims, or a frame the rules skip.
    Tracker,
    /// Nothing could be resolved.
    Unknown,
}

/// This crate's sources: generic code of ours instantiated in the program
/// still resolves here.
const OWN_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

const SHIMS: &[&str] = &[
    "__rust_alloc",
    "__rust_realloc",
    "__rust_dealloc",
    "__rg_alloc",
    "__rg_realloc",
    "__rg_dealloc",
    "__rdl_alloc",
    "__rdl_realloc",
    "__rdl_dealloc",
    "__rust_alloc_error_handler",
];

const STD_PATHS: &[&str] = &["/rustc/", "/rust/deps/", "/lib/rustlib/src/rust/", "/library/std/src/"];
const DEP_PATHS: &[&str] = &["/.cargo/registry/", "/registry/src/", "/.cargo/git/", "/git/checkouts/"];
const STD_CRATES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "hashbrown::",
    "<std::",
    "<core::",
    "<alloc::",
    "<hashbrown::",
    "<&",
    "<[",
    "<(",
    "<usize",
    "<u8",
    "<str",
];

/// Classifies one resolved frame under `rules`.
pub(crate) fn classify(frame: &Frame, rules: &SiteRules) -> FrameKind {
    if rules.ignored(frame) {
        return FrameKind::Tracker;
    }
    if rules.counted(frame) {
        return FrameKind::Own;
    }
    let f = frame.function.as_str();
    if SHIMS.iter().any(|s| f.contains(s)) {
        return FrameKind::Tracker;
    }
    if is_placeholder(frame) {
        return FrameKind::Unknown;
    }
    // The markers are absolute paths: `path_abs` when the file was written
    // portable.
    let file = if frame.path_abs.is_empty() { frame.file.as_str() } else { frame.path_abs.as_str() };
    if file.starts_with(OWN_SRC) || (file.is_empty() && (f.starts_with("leaktrace::") || f.starts_with("<leaktrace::")))
    {
        return FrameKind::Tracker;
    }
    if file.is_empty() {
        if f.is_empty() || f == UNKNOWN {
            return FrameKind::Unknown;
        }
        if STD_CRATES.iter().any(|p| f.starts_with(p)) {
            return FrameKind::Std;
        }
        return FrameKind::Dependency;
    }
    if file.starts_with("<rustc>/") || STD_PATHS.iter().any(|p| file.contains(p)) {
        return FrameKind::Std;
    }
    if DEP_PATHS.iter().any(|p| file.contains(p)) {
        return FrameKind::Dependency;
    }
    if !file.ends_with(".rs") {
        // C, C++ or assembly: libc's thread start, a -sys crate's library.
        return FrameKind::Dependency;
    }
    FrameKind::Own
}

/// Whether a site is a frame of the program's own code under the default
/// rules (for how reports show it, see `crate::site_label`).
pub(crate) fn is_own(frame: &Frame) -> bool {
    classify(frame, &SiteRules::default()) == FrameKind::Own
}

/// Index of the site among `frames`: the first own frame; else the first
/// dependency frame; else the first frame that is not the tracker's; else 0.
#[cfg(test)]
pub(crate) fn choose_site(frames: &[Frame], rules: &SiteRules) -> usize {
    let kinds: Vec<FrameKind> = frames.iter().map(|f| classify(f, rules)).collect();
    choose_site_kinds(&kinds)
}

fn choose_site_kinds(kinds: &[FrameKind]) -> usize {
    let first = |k: FrameKind| kinds.iter().position(|&x| x == k);
    first(FrameKind::Own).or_else(|| first(FrameKind::Dependency)).or_else(|| first(FrameKind::Std)).unwrap_or(0)
}

/// The name given to a frame nothing could be resolved for.
pub(crate) const UNKNOWN: &str = "<unknown>";

/// Addresses with their frames kept, per generation (see [`cache`]): a few
/// thousand cover a service's allocation stacks; the bound is for a
/// program whose stacks never repeat.
const IP_CACHE_ENTRIES: usize = 8192;
/// Chosen tracebacks kept per generation.
const STACK_CACHE_ENTRIES: usize = 8192;

static IPS: Lazy<Mutex<GenCache<usize, Arc<[Frame]>>>> = Lazy::new(|| Mutex::new(GenCache::new(IP_CACHE_ENTRIES)));
static STACKS: Lazy<Mutex<GenCache<StackId, Arc<[Frame]>>>> =
    Lazy::new(|| Mutex::new(GenCache::new(STACK_CACHE_ENTRIES)));

/// Whether addresses are resolved in this process (`Config::symbolize`).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns symbolization in the process on or off (at `start()`); the caches
/// are emptied when it changes, as their frames were made the other way.
pub(crate) fn set_enabled(on: bool) {
    if ENABLED.swap(on, Relaxed) != on {
        let _ignore = crate::hot::control::ignore();
        IPS.lock().clear();
        STACKS.lock().clear();
    }
}

/// The debug info opened during the batches in progress, by module index
/// (`None`: the object cannot be read).
struct Loader {
    batches: usize,
    objects: HashMap<u32, Option<elf::DebugObject>>,
    /// Whether the batches in progress resolved the interned stacks'
    /// addresses up front (see [`prefetch_interned`]).
    prefetched: bool,
}

static LOADER: Lazy<Mutex<Loader>> =
    Lazy::new(|| Mutex::new(Loader { batches: 0, objects: HashMap::new(), prefetched: false }));

/// A batch of lookups (a snapshot's stacks): the debug info opened during
/// it is kept until the last batch in progress ends, then dropped (maps
/// unmapped, parsed units freed). A lookup outside any batch is a batch of
/// its own.
pub(crate) struct Batch(());

impl Batch {
    pub(crate) fn begin() -> Batch {
        let _ignore = crate::hot::control::ignore();
        LOADER.lock().batches += 1;
        Batch(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Freed untraced, as it was allocated (see `crate::hand_over`).
        let _ignore = crate::hot::control::ignore();
        let released = {
            let mut l = LOADER.lock();
            l.batches -= 1;
            if l.batches == 0 {
                l.prefetched = false;
                std::mem::take(&mut l.objects)
            } else {
                HashMap::new()
            }
        };
        if !released.is_empty() {
            drop(released);
            give_back_freed_memory();
        }
    }
}

/// The parsed units were many small blocks, now free: glibc keeps freed
/// heap memory for reuse, so without a trim the RSS they took would stay
/// (about 11 MiB on the benchmark's binary). `malloc_trim` returns the free
/// pages to the kernel; with another allocator under leaktrace it frees
/// nothing of its and costs a walk of glibc's (then empty) arenas.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` has no preconditions; it only returns free
        // memory of glibc's arenas to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Whether some debug info is open now (for tests of the release).
#[cfg(test)]
fn debug_info_open() -> usize {
    LOADER.lock().objects.len()
}

/// The frames of one return address, innermost inlined frame first.
pub(crate) fn resolve_ip(ip: usize) -> Arc<[Frame]> {
    let _ignore = crate::hot::control::ignore();
    if let Some(f) = IPS.lock().get(&ip) {
        return f;
    }
    // Resolve without the cache lock held: reading debug info takes
    // milliseconds.
    let frames: Arc<[Frame]> = {
        let _batch = Batch::begin();
        lookup_all(&[ip]).pop().unwrap_or_default().into()
    };
    IPS.lock().insert(ip, frames.clone());
    frames
}

/// Resolves and caches, in one go, the addresses of every interned stack
/// not resolved yet, once per batch: a snapshot asks for its stacks one by
/// one, but the debug info is read best in one pass per unit over all the
/// addresses in it (see [`dwarf`]), and a later snapshot that meets a few
/// new stacks then reads only the units their addresses are in.
fn prefetch_interned() {
    {
        let mut l = LOADER.lock();
        if l.batches == 0 || l.prefetched {
            return;
        }
        l.prefetched = true;
    }
    let mut ips: Vec<usize> = Vec::new();
    {
        let stacks = STACKS.lock();
        let cached = IPS.lock();
        for id in 0..crate::hot::control::stack_count() as StackId {
            if !stacks.contains(&id) {
                ips.extend(crate::hot::control::stack_ips(id).iter().filter(|ip| !cached.contains(ip)));
            }
        }
    }
    ips.sort_unstable();
    ips.dedup();
    // More than the cache holds would push out what this batch needs.
    ips.truncate(IP_CACHE_ENTRIES);
    let frames = lookup_all(&ips);
    let mut cache = IPS.lock();
    for (ip, f) in ips.into_iter().zip(frames) {
        cache.insert(ip, f.into());
    }
}

/// The frames of each of `ips`, each object's debug info read once for all
/// the addresses in it.
fn lookup_all(ips: &[usize]) -> Vec<Vec<Frame>> {
    let mut out: Vec<Vec<Frame>> = vec![Vec::new(); ips.len()];
    let mut by_module: HashMap<u32, (modules::LoadedModule, Vec<usize>)> = HashMap::new();
    for (i, &ip) in ips.iter().enumerate() {
        match modules::find(ip as u64) {
            Some((index, module)) => by_module.entry(index).or_insert_with(|| (module, Vec::new())).1.push(i),
            None => out[i] = vec![Frame::new(UNKNOWN, "", 0)],
        }
    }
    let enabled = ENABLED.load(Relaxed);
    for (index, (module, slots)) in by_module {
        let offsets: Vec<u64> = slots.iter().map(|&i| (ips[i] as u64).wrapping_sub(module.bias)).collect();
        if !enabled {
            for (&i, &offset) in slots.iter().zip(&offsets) {
                out[i] = vec![placeholder(index, module.name(), offset)];
            }
            continue;
        }
        let mut loader = LOADER.lock();
        let object = loader.objects.entry(index).or_insert_with(|| {
            elf::DebugObject::open(std::path::Path::new(&module.path), &module.build_id, &[])
                .map_err(|e| log::debug!("leaktrace: {e}"))
                .ok()
        });
        // The call instruction, not the one after it.
        let probes: Vec<u64> = offsets.iter().map(|o| o.saturating_sub(1)).collect();
        let raw = match object {
            Some(o) => o.frames_of_all(&probes),
            None => vec![Vec::new(); probes.len()],
        };
        for ((&i, &offset), r) in slots.iter().zip(&offsets).zip(raw) {
            out[i] = frames_of(r, index, module.name(), offset);
        }
    }
    out
}

/// A frame known only by its object and offset.
fn placeholder(module: u32, name: &str, offset: u64) -> Frame {
    Frame { function: format!("{name}+{offset:#x}"), module: Some(module), offset: Some(offset), ..Frame::default() }
}

/// Whether `frame` is known only by its object and offset (no symbol).
fn is_placeholder(frame: &Frame) -> bool {
    match frame.offset {
        Some(off) if frame.file.is_empty() => frame.function.ends_with(&format!("+{off:#x}")),
        _ => false,
    }
}

/// Turns what the debug info says into frames: portable paths, and an
/// object and offset on frames without a file.
fn frames_of(raw: Vec<elf::RawFrame>, module: u32, name: &str, offset: u64) -> Vec<Frame> {
    let mut out: Vec<Frame> = raw
        .into_iter()
        .map(|r| {
            let (file, path_abs) = match r.file {
                Some(abs) => {
                    let p = paths::portable(&abs, r.comp_dir.as_deref());
                    if p == abs {
                        (p, String::new())
                    } else {
                        (p, abs)
                    }
                }
                None => (String::new(), String::new()),
            };
            let mut f = Frame {
                function: r.function.unwrap_or_default(),
                file,
                line: if path_abs.is_empty() && r.line == 0 { 0 } else { r.line },
                path_abs,
                ..Frame::default()
            };
            if f.file.is_empty() {
                if f.function.is_empty() {
                    f = placeholder(module, name, offset);
                } else {
                    f.module = Some(module);
                    f.offset = Some(offset);
                }
            }
            f
        })
        .collect();
    if out.is_empty() {
        out.push(placeholder(module, name, offset));
    }
    out
}

/// The C runtime's libraries (by file name): a frame in one of them is
/// never the program's own code, with or without its symbols (libc's
/// thread start, below every thread's stack, has none on most systems).
const SYSTEM_LIBS: &[&str] = &[
    "libc.so",
    "libc.musl",
    "ld-linux",
    "ld-musl",
    "linux-vdso.so",
    "libm.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libgcc_s.so",
    "libstdc++.so",
];

/// Whether a frame known only by object and offset is in a system library.
fn in_system_lib(frame: &Frame) -> bool {
    let object = frame.function.rsplit_once('+').map_or("", |(object, _)| object);
    SYSTEM_LIBS.iter().any(|lib| object.starts_with(lib))
}

/// Whether `frame` might be the program's own code, were it resolved: no
/// file, and no symbol or a Rust one outside std (a C symbol is C), and
/// not in a system library.
fn maybe_own(frame: &Frame, rules: &SiteRules) -> bool {
    frame.is_unresolved()
        && ((is_placeholder(frame) && !in_system_lib(frame))
            || (frame.function.contains("::") && classify(frame, rules) == FrameKind::Dependency))
}

/// Whether the site of `frames` cannot be told yet: no frame is the
/// program's own, and some frame without debug info might be.
fn site_undecided(frames: &[Frame], kinds: &[FrameKind], rules: &SiteRules) -> bool {
    !kinds.contains(&FrameKind::Own) && frames.iter().any(|f| maybe_own(f, rules))
}

/// From all the frames of a stack, its traceback: from the site outward,
/// at most `nframes` long. When no frame is the program's own and some
/// frame without debug info might be, the site cannot be told yet: all
/// frames past the tracker's own are kept, for `alloc-probe symbolize`
/// (the tracker's frames are never a site, and would show as one).
pub(crate) fn site_traceback(mut all: Vec<Frame>, rules: &SiteRules, nframes: usize) -> Vec<Frame> {
    if all.is_empty() {
        return vec![Frame::new(UNKNOWN, "", 0)];
    }
    let kinds: Vec<FrameKind> = all.iter().map(|f| classify(f, rules)).collect();
    if site_undecided(&all, &kinds, rules) {
        let tracker = kinds.iter().take_while(|&&k| k == FrameKind::Tracker).count();
        all.drain(..tracker.min(all.len() - 1));
        return all;
    }
    let site = choose_site_kinds(&kinds);
    all.drain(..site);
    all.truncate(nframes.max(1));
    all
}

/// Whether a traceback was kept whole, its site not chosen (see
/// [`site_traceback`]). Reports of earlier versions kept the tracker's
/// frames in front: a traceback that starts with one needs a site too.
pub(crate) fn needs_site(frames: &[Frame], rules: &SiteRules) -> bool {
    let first = match frames.first() {
        Some(f) => f,
        None => return false,
    };
    if matches!(classify(first, rules), FrameKind::Tracker | FrameKind::Unknown) || maybe_own(first, rules) {
        return true;
    }
    let kinds: Vec<FrameKind> = frames.iter().map(|f| classify(f, rules)).collect();
    site_undecided(frames, &kinds, rules)
}

/// The traceback of a stack, from its site outward, at most `nframes` long.
pub(crate) fn resolve_stack(id: StackId, ips: &[usize], rules: &SiteRules, nframes: usize) -> Arc<[Frame]> {
    let _ignore = crate::hot::control::ignore();
    if let Some(f) = STACKS.lock().get(&id) {
        return f;
    }
    let tb: Arc<[Frame]> = {
        let _batch = Batch::begin();
        prefetch_interned();
        let mut all = Vec::new();
        for &ip in ips {
            all.extend(resolve_ip(ip).iter().cloned());
        }
        site_traceback(all, rules, nframes).into()
    };
    STACKS.lock().insert(id, tb.clone());
    tb
}

/// Forgets the per-stack choices (the rules or the frame count changed).
pub(crate) fn forget_sites() {
    let _ignore = crate::hot::control::ignore();
    STACKS.lock().clear();
}

/// Frames cached, addresses and stacks.
#[cfg(test)]
pub(crate) fn cached_entries() -> (usize, usize) {
    let _ignore = crate::hot::control::ignore();
    (IPS.lock().len(), STACKS.lock().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(function: &str, file: &str) -> Frame {
        Frame::new(function, file, 1)
    }

    #[test]
    fn skips_tracker_shim_std_and_deps() {
        let rules = SiteRules::default();
        let frames = vec![
            fr("leaktrace::hot::on_alloc", &format!("{OWN_SRC}hot/mod.rs")),
            fr(
                "<leaktrace::TrackingAllocator<A> as core::alloc::global::GlobalAlloc>::alloc",
                &format!("{OWN_SRC}hot/alloc.rs"),
            ),
            fr("__rustc::__rust_alloc", "/home/me/app/src/main.rs"),
            fr("alloc::raw_vec::finish_grow", "/rustc/abc/library/alloc/src/raw_vec.rs"),
            fr("hashbrown::raw::RawTable<T,A>::reserve_rehash", "/rust/deps/hashbrown-0.15.2/src/raw/mod.rs"),
            fr("tokio::runtime::task::spawn", "/root/.cargo/registry/src/index.crates.io-1/tokio-1.0/src/x.rs"),
            fr("app::cache::insert", "/home/me/app/src/cache.rs"),
            fr("app::main", "/home/me/app/src/main.rs"),
        ];
        assert_eq!(choose_site(&frames, &rules), 6);
        assert_eq!(classify(&frames[5], &rules), FrameKind::Dependency);
        assert_eq!(classify(&frames[4], &rules), FrameKind::Std);
        assert_eq!(classify(&frames[2], &rules), FrameKind::Tracker);
    }

    #[inline(never)]
    fn here() -> usize {
        // A return address inside this function: the call below returns here.
        std::hint::black_box(super::modules::hex(&[1]));
        here as fn() -> usize as usize + 1
    }

    #[test]
    fn resolves_this_file_portable_and_releases_the_debug_info() {
        let frames = resolve_ip(here());
        let f = frames.iter().find(|f| f.function.ends_with("tests::here")).unwrap_or_else(|| panic!("{frames:?}"));
        assert_eq!(f.file, "src/symbolize/mod.rs", "{f:?}");
        assert_eq!(f.path_abs, concat!(env!("CARGO_MANIFEST_DIR"), "/src/symbolize/mod.rs"));
        assert!(f.line > 0 && f.module.is_none() && f.offset.is_none(), "{f:?}");
        // Released after its batch (other tests of this binary may hold
        // a batch of their own for a moment: wait for them).
        let released = (0..500).any(|_| {
            let open = debug_info_open() == 0;
            if !open {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            open
        });
        assert!(released, "debug info released after its batch");
        assert!(cached_entries().0 >= 1);
        // Turned off: an object and offset, no file.
        set_enabled(false);
        let off = resolve_ip(here() + 2);
        set_enabled(true);
        assert!(off[0].is_unresolved() && is_placeholder(&off[0]), "{off:?}");
        assert_eq!(classify(&off[0], &SiteRules::default()), FrameKind::Unknown);
    }

    #[test]
    fn c_frames_and_relative_paths() {
        let rules = SiteRules::default();
        assert_eq!(classify(&fr("start_thread", "./nptl/pthread_create.c"), &rules), FrameKind::Dependency);
    }

    #[test]
    fn falls_back_to_dependency_then_std() {
        let rules = SiteRules::default();
        let frames = vec![
            fr("alloc::raw_vec::finish_grow", "/rustc/abc/library/alloc/src/raw_vec.rs"),
            fr("tokio::spawn", "/root/.cargo/registry/src/x/tokio-1.0/src/lib.rs"),
        ];
        assert_eq!(choose_site(&frames, &rules), 1);
        assert_eq!(choose_site(&frames[..1], &rules), 0);
    }

    fn unresolved(object: &str, offset: u64) -> Frame {
        placeholder(0, object, offset)
    }

    #[test]
    fn libc_without_symbols_below_a_thread_does_not_hold_the_site_open() {
        let rules = SiteRules::default();
        // A monitor-like thread: the tracker, std, a dependency, then
        // libc's thread start known only by offset.
        let frames = vec![
            fr("leaktrace::hot::stack::capture", &format!("{OWN_SRC}hot/stack.rs")),
            fr("leaktrace::hot::record", &format!("{OWN_SRC}hot/mod.rs")),
            fr("__rustc::__rust_alloc", "/home/me/app/src/main.rs"),
            fr("alloc::vec::Vec<T>::with_capacity", "/rustc/abc/library/alloc/src/vec/mod.rs"),
            fr(
                "parking_lot_core::parking_lot::HashTable::new",
                "/root/.cargo/registry/src/x/parking_lot_core-0.9/src/p.rs",
            ),
            fr("std::thread::lifecycle::spawn_unchecked", "/rustc/abc/library/std/src/thread/lifecycle.rs"),
            unresolved("libc.so.6", 0x891f5),
            unresolved("libc.so.6", 0x1098ec),
        ];
        let tb = site_traceback(frames.clone(), &rules, 16);
        assert_eq!(tb[0].function, "parking_lot_core::parking_lot::HashTable::new", "{tb:?}");
        assert!(!needs_site(&tb, &rules));
        // The program's own object without debug info might hold the site:
        // kept for `alloc-probe symbolize`, but without the tracker's frames.
        let mut stripped = frames.clone();
        stripped.insert(6, unresolved("myservice", 0x1234));
        let tb = site_traceback(stripped, &rules, 16);
        assert_eq!(tb.len(), 6, "{tb:?}");
        assert_eq!(tb[0].function, "alloc::vec::Vec<T>::with_capacity", "{tb:?}");
        assert!(needs_site(&tb, &rules), "{tb:?}");
        // A report of an earlier version, the tracker's frames in front.
        assert!(needs_site(&frames, &rules));
    }

    #[test]
    fn rules_can_count_a_dependency_or_skip_own_frames() {
        let rules = SiteRules::default().count("*/tokio-*").ignore("app::util::*");
        let frames = vec![
            fr("app::util::grow", "/home/me/app/src/util.rs"),
            fr("tokio::spawn", "/root/.cargo/registry/src/x/tokio-1.0/src/lib.rs"),
            fr("app::main", "/home/me/app/src/main.rs"),
        ];
        assert_eq!(choose_site(&frames, &rules), 1);
    }
}
