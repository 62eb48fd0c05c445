//! Return addresses to frames, with a cache; the first-own-frame rule.
//!
//! Runs only when a snapshot is taken, never in a hook. Every address is
//! resolved once per process (with inlined frames expanded, innermost
//! first) and kept; every stack's chosen site is kept until the rules change.

#![forbid(unsafe_code)]

use crate::config::SiteRules;
use crate::hot::control::StackId;
use crate::Frame;
use hashbrown::HashMap;
use once_cell::sync::Lazy;
use parking_lot::Mutex;
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
    let file = frame.file.as_str();
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
    if STD_PATHS.iter().any(|p| file.contains(p)) {
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
pub(crate) fn choose_site(frames: &[Frame], rules: &SiteRules) -> usize {
    let kinds: Vec<FrameKind> = frames.iter().map(|f| classify(f, rules)).collect();
    let first = |k: FrameKind| kinds.iter().position(|&x| x == k);
    first(FrameKind::Own).or_else(|| first(FrameKind::Dependency)).or_else(|| first(FrameKind::Std)).unwrap_or(0)
}

/// Drops a leading `./` (debug info records paths relative to the build
/// directory as `./src/x.rs`), so files read as `file!()` writes them.
fn normalize_path(p: &str) -> String {
    let mut s = p;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.to_string()
}

/// The name given to a frame nothing could be resolved for.
pub(crate) const UNKNOWN: &str = "<unknown>";

static IPS: Lazy<Mutex<HashMap<usize, Arc<[Frame]>>>> = Lazy::new(|| Mutex::new(HashMap::new()));
static STACKS: Lazy<Mutex<HashMap<StackId, Arc<[Frame]>>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// The frames of one return address, innermost inlined frame first.
pub(crate) fn resolve_ip(ip: usize) -> Arc<[Frame]> {
    if let Some(f) = IPS.lock().get(&ip) {
        return f.clone();
    }
    // Resolve without the cache lock held: the first call parses debug info
    // and can take a second.
    let mut frames = Vec::new();
    backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
        let function = sym.name().map(|n| format!("{n:#}")).unwrap_or_else(|| UNKNOWN.to_string());
        let file = sym.filename().map(|p| normalize_path(&p.display().to_string())).unwrap_or_default();
        let line = sym.lineno().unwrap_or(0);
        frames.push(Frame { function, file, line });
    });
    if frames.is_empty() {
        frames.push(Frame { function: UNKNOWN.to_string(), file: String::new(), line: 0 });
    }
    let frames: Arc<[Frame]> = frames.into();
    IPS.lock().insert(ip, frames.clone());
    frames
}

/// The traceback of a stack, from its site outward, at most `nframes` long.
pub(crate) fn resolve_stack(id: StackId, ips: &[usize], rules: &SiteRules, nframes: usize) -> Arc<[Frame]> {
    if let Some(f) = STACKS.lock().get(&id) {
        return f.clone();
    }
    let mut all = Vec::new();
    for &ip in ips {
        all.extend(resolve_ip(ip).iter().cloned());
    }
    let tb: Arc<[Frame]> = if all.is_empty() {
        vec![Frame { function: UNKNOWN.to_string(), file: String::new(), line: 0 }].into()
    } else {
        let site = choose_site(&all, rules);
        all.drain(..site);
        all.truncate(nframes.max(1));
        all.into()
    };
    STACKS.lock().insert(id, tb.clone());
    tb
}

/// Forgets the per-stack choices (the rules or the frame count changed).
pub(crate) fn forget_sites() {
    STACKS.lock().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(function: &str, file: &str) -> Frame {
        Frame { function: function.into(), file: file.into(), line: 1 }
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

    #[test]
    fn c_frames_and_relative_paths() {
        let rules = SiteRules::default();
        assert_eq!(classify(&fr("start_thread", "./nptl/pthread_create.c"), &rules), FrameKind::Dependency);
        assert_eq!(normalize_path("./tests/a.rs"), "tests/a.rs");
        assert_eq!(normalize_path("/abs/a.rs"), "/abs/a.rs");
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
