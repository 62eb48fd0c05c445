//! `Config`: what `start()` sets up.

#![forbid(unsafe_code)]

use crate::Frame;

/// How blocks are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every block is recorded with its stack: exact per-site bytes and counts.
    Full,
    /// Poisson sampling by bytes: on average one sample per `mean_bytes`
    /// allocated, per thread. Per-site figures are unbiased estimates; the
    /// totals of `traced_memory()` stay exact (the peak to within 64 KiB
    /// per thread).
    Sampled {
        /// Mean distance between samples, in bytes (e.g. 512 KiB).
        mean_bytes: usize,
    },
}

/// How return addresses are captured on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMethod {
    /// The fastest method that passes a check at `start()` (a capture
    /// through a known call chain must find each caller and agree with
    /// libgcc): frame pointers, else the cached DWARF unwinder, else libgcc.
    Auto,
    /// Walk frame pointers (bounded by the thread's stack, so never
    /// faulting, but wrong where code was built without them).
    FramePointers,
    /// A DWARF unwinder over `.eh_frame`, with a shared cache
    /// of unwind rules by address: right for builds without frame pointers.
    Dwarf,
    /// libgcc's `_Unwind_Backtrace` via the `backtrace` crate: right for
    /// every build, and slow (several microseconds per allocation).
    Unwinder,
}

impl CaptureMethod {
    /// The name used in snapshots: `"frame-pointers"`, `"dwarf"`,
    /// `"libgcc"` (or `"auto"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Auto => "auto",
            CaptureMethod::FramePointers => "frame-pointers",
            CaptureMethod::Dwarf => "dwarf",
            CaptureMethod::Unwinder => "libgcc",
        }
    }
}

/// Which frames may be a block's call site, beyond the default rule (the
/// first frame of the program's own code, skipping leaktrace, the standard
/// library and dependencies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteRules {
    ignore: Vec<String>,
    count: Vec<String>,
}

impl SiteRules {
    /// Frames whose function or file matches `pattern` are never the site.
    pub fn ignore(mut self, pattern: impl Into<String>) -> Self {
        self.ignore.push(pattern.into());
        self
    }

    /// Frames whose function or file matches `pattern` count as the
    /// program's own (e.g. `"*/tokio-*"` or `"tokio::*"` for one dependency).
    pub fn count(mut self, pattern: impl Into<String>) -> Self {
        self.count.push(pattern.into());
        self
    }

    pub(crate) fn ignored(&self, f: &Frame) -> bool {
        self.ignore.iter().any(|p| frame_matches(p, f))
    }

    pub(crate) fn counted(&self, f: &Frame) -> bool {
        self.count.iter().any(|p| frame_matches(p, f))
    }
}

/// A pattern matches a frame's function, its file as written (portable,
/// `src/db.rs`) or its absolute path (`*/tokio-*` keeps working on
/// `/root/.cargo/registry/src/.../tokio-1.47.1/src/lib.rs`).
fn frame_matches(pattern: &str, f: &Frame) -> bool {
    glob_match(pattern, &f.function)
        || glob_match(pattern, &f.file)
        || (!f.path_abs.is_empty() && glob_match(pattern, &f.path_abs))
}

/// What `start()` sets up. `Config::default()` is exact mode, 16 frames per
/// trace, automatic capture method.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) frames: usize,
    pub(crate) mode: Mode,
    pub(crate) capture: CaptureMethod,
    pub(crate) rules: SiteRules,
    pub(crate) sample_seed: Option<u64>,
    pub(crate) symbolize: bool,
    pub(crate) max_stacks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frames: 16,
            mode: Mode::Full,
            capture: CaptureMethod::Auto,
            rules: SiteRules::default(),
            sample_seed: None,
            symbolize: true,
            max_stacks: Config::DEFAULT_MAX_STACKS,
        }
    }
}

impl Config {
    /// Frames kept per traceback, from the call site outward (like
    /// `tracemalloc.start(nframe)`); at least 1, at most 64.
    pub fn frames(mut self, n: usize) -> Self {
        self.frames = n.clamp(1, 64);
        self
    }

    /// Exact or sampled recording.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How stacks are captured.
    pub fn capture(mut self, method: CaptureMethod) -> Self {
        self.capture = method;
        self
    }

    /// Frames whose function or file matches the glob `pattern` (`*` and `?`)
    /// never count as the call site.
    pub fn ignore_frames(mut self, pattern: impl Into<String>) -> Self {
        self.rules = self.rules.ignore(pattern);
        self
    }

    /// Frames whose function or file matches the glob `pattern` count as the
    /// program's own code, e.g. to attribute blocks to one dependency's lines.
    pub fn count_frames(mut self, pattern: impl Into<String>) -> Self {
        self.rules = self.rules.count(pattern);
        self
    }

    /// Replaces the site rules at once.
    pub fn site_rules(mut self, rules: SiteRules) -> Self {
        self.rules = rules;
        self
    }

    /// The most distinct stacks the tracker keeps, by default
    /// [`Config::DEFAULT_MAX_STACKS`]. Blocks from stacks past the cap are
    /// still counted, under one site, `[other stacks]`, in every report: a
    /// program with a million distinct call paths costs the tracker a
    /// bounded table (at most about 0.6 KiB per stack), not a million.
    pub fn max_stacks(mut self, stacks: usize) -> Self {
        self.max_stacks = stacks.max(1);
        self
    }

    /// The default of [`Config::max_stacks`]: 65,536 stacks.
    pub const DEFAULT_MAX_STACKS: usize = 1 << 16;

    /// Seeds sampled mode's generators, for reproducible runs.
    pub fn sample_seed(mut self, seed: u64) -> Self {
        self.sample_seed = Some(seed);
        self
    }

    /// Whether snapshots resolve addresses to functions, files and lines
    /// (default true). With `false` the process never reads debug info:
    /// snapshots keep each frame as its object and offset (see
    /// `Snapshot::modules`), and `alloc-probe symbolize` resolves them later,
    /// from the binary or from a debug file found by build id. For stripped
    /// production binaries, where there is nothing to read anyway.
    pub fn symbolize(mut self, on: bool) -> Self {
        self.symbolize = on;
        self
    }

    /// Whether snapshots are symbolized in the process (see [`symbolize`](Self::symbolize)).
    pub fn symbolizes(&self) -> bool {
        self.symbolize
    }

    /// The frames kept per traceback.
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// The recording mode.
    pub fn recording_mode(&self) -> Mode {
        self.mode
    }

    /// The capture method asked for (see `leaktrace::capture_method()` for
    /// the one that runs).
    pub fn capture_method(&self) -> CaptureMethod {
        self.capture
    }
}

/// Glob match of the whole `text` against `pattern`: `*` is any run of
/// characters (slashes included), `?` any one character.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*/tokio-*", "/root/.cargo/registry/src/x/tokio-1.0/src/lib.rs"));
        assert!(glob_match("src/*.rs", "src/cache.rs"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("*.rs", "main.py"));
        assert!(glob_match("*cache*", "/x/src/cache.rs"));
        assert!(glob_match("app::*::insert", "app::cache::Cache::insert"));
    }

    #[test]
    fn builder_clamps_frames() {
        assert_eq!(Config::default().frame_count(), 16);
        assert_eq!(Config::default().frames(0).frame_count(), 1);
        assert_eq!(Config::default().frames(1000).frame_count(), 64);
    }
}
