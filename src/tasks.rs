//! Live tasks by spawn site: a guard a task holds for its life.
//!
//! Cost per spawn: a hash of the `Location` pointer, one or two acquire
//! loads in a fixed, lock-free table, and two relaxed atomic adds; per drop,
//! one relaxed atomic subtract. No lock and no stack capture on that path.
//!
//! The first spawn at a site registers it (cold: a mutex, one small leaked
//! allocation, and one capture of return addresses, raw, no symbols, with
//! no lock). Those
//! addresses name the site's function later, when tasks are listed: the
//! frame whose file and line match the `#[track_caller]` location.
//!
//! Sites are keyed by file and line: a site reached through several
//! `Location` statics (generic code instantiated in several codegen units,
//! two spawns on one line) is counted once.

#![forbid(unsafe_code)]

use crate::{Frame, TaskStat};
use parking_lot::Mutex;
use std::panic::Location;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Return addresses kept per site, enough to reach the spawning function
/// past the unwinder's, this module's and a spawn wrapper's frames.
const SITE_FRAMES: usize = 24;

/// The counters of one spawn site. Leaked: they live as long as the process.
pub(crate) struct SiteCounts {
    file: &'static str,
    line: u32,
    live: AtomicU64,
    spawned: AtomicU64,
    /// Return addresses at the site's first spawn, resolved only on demand.
    ips: [usize; SITE_FRAMES],
    ips_len: usize,
    /// The spawning function's name, resolved once from `ips`.
    function: OnceLock<String>,
}

impl SiteCounts {
    /// The spawning function, resolved from debug info on first use (slow
    /// once per binary, then cached); empty when it cannot be found.
    fn function(&self) -> &str {
        self.function.get_or_init(|| {
            let _ignore = crate::hot::control::ignore();
            resolve_function(self.file, self.line, &self.ips[..self.ips_len])
        })
    }

    pub(crate) fn location(&self) -> Frame {
        Frame::new(self.function(), self.file, self.line)
    }
}

/// One site's counts at one moment, not yet symbolized (for the monitor,
/// which keeps many of these and names only the ones it reports).
#[derive(Clone, Copy)]
pub(crate) struct TaskCount {
    pub(crate) site: &'static SiteCounts,
    pub(crate) live: u64,
    pub(crate) spawned: u64,
}

impl TaskCount {
    pub(crate) fn stat(&self) -> TaskStat {
        TaskStat { location: self.site.location(), live: self.live, spawned: self.spawned }
    }

    /// `file:line`, without resolving the function.
    pub(crate) fn file_line(&self) -> (&'static str, u32) {
        (self.site.file, self.site.line)
    }
}

/// Lock-free lookup from a `Location` pointer to its site. Slots are filled
/// under `REGISTRY`'s lock, always at the first empty slot of the probe
/// sequence, and never emptied, so a reader that meets an empty slot knows
/// the key is absent (or being added: it then takes the lock and looks again).
const SLOTS: usize = 4096;
const MAX_PROBE: usize = 32;
static FAST: [OnceLock<(usize, &'static SiteCounts)>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// Every site, in registration order. Also serializes registration.
static REGISTRY: Mutex<Vec<&'static SiteCounts>> = Mutex::new(Vec::new());

#[inline]
fn slot_of(key: usize) -> usize {
    // Fibonacci hashing of the pointer; statics are 8-aligned.
    ((key >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % SLOTS
}

#[inline]
fn counts_for(location: &'static Location<'static>) -> &'static SiteCounts {
    let key = location as *const Location<'static> as usize;
    let start = slot_of(key);
    for i in 0..MAX_PROBE {
        match FAST[(start + i) % SLOTS].get() {
            Some(&(k, site)) if k == key => return site,
            Some(_) => continue,
            None => break,
        }
    }
    register(location, key)
}

#[cold]
#[inline(never)]
fn register(location: &'static Location<'static>, key: usize) -> &'static SiteCounts {
    // The registry and the leaked counters are the tracker's own memory.
    let _ignore = crate::hot::control::ignore();
    // Raw return addresses with the allocator hook's lock-free capture (not
    // `backtrace::trace`, whose global lock is held for seconds while the
    // monitor first reads debug info: a first spawn must not wait for that).
    let mut ips = [0usize; SITE_FRAMES];
    let ips_len = crate::hot::control::capture_unwind(&mut ips);
    let mut registry = REGISTRY.lock();
    let start = slot_of(key);
    let mut free = None;
    for i in 0..MAX_PROBE {
        let slot = &FAST[(start + i) % SLOTS];
        match slot.get() {
            Some(&(k, site)) if k == key => return site,
            Some(_) => continue,
            None => {
                free = Some(slot);
                break;
            }
        }
    }
    let (file, line) = (location.file(), location.line());
    let site = match registry.iter().find(|s| s.file == file && s.line == line) {
        Some(site) => *site,
        None => {
            let site: &'static SiteCounts = Box::leak(Box::new(SiteCounts {
                file,
                line,
                live: AtomicU64::new(0),
                spawned: AtomicU64::new(0),
                ips,
                ips_len,
                function: OnceLock::new(),
            }));
            registry.push(site);
            site
        }
    };
    // A full probe sequence leaves this pointer on the slow path, still correct.
    if let Some(slot) = free {
        let _ = slot.set((key, site));
    }
    site
}

/// Whether two recorded paths name the same file: `Location::file()` is the
/// path given to rustc (`src/main.rs`), debug info may hold it absolute.
fn same_file(a: &str, b: &str) -> bool {
    let (a, b) = (Path::new(a), Path::new(b));
    a.ends_with(b) || b.ends_with(a)
}

fn resolve_function(file: &str, line: u32, ips: &[usize]) -> String {
    let mut same_file_fn = None;
    for &ip in ips {
        for frame in crate::symbolize::resolve_ip(ip).iter() {
            if !same_file(&frame.file, file) {
                continue;
            }
            if frame.line == line {
                return frame.function.clone();
            }
            // A call spread over several lines may be attributed to another
            // line of the same expression: the first frame in the file is
            // the next best answer.
            same_file_fn.get_or_insert_with(|| frame.function.clone());
        }
    }
    same_file_fn.unwrap_or_default()
}

/// Held by a task for its life; counts it live at its spawn site until dropped.
#[must_use = "the task is counted live only while the guard is held"]
pub struct TaskGuard {
    site: &'static SiteCounts,
}

impl TaskGuard {
    /// The spawn site's file, as `file!()` gives it.
    pub fn file(&self) -> &'static str {
        self.site.file
    }

    /// The spawn site's line.
    pub fn line(&self) -> u32 {
        self.site.line
    }
}

impl std::fmt::Debug for TaskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskGuard({}:{})", self.site.file, self.site.line)
    }
}

impl Drop for TaskGuard {
    #[inline]
    fn drop(&mut self) {
        self.site.live.fetch_sub(1, Relaxed);
    }
}

/// Counts the calling task live at the caller's location until the returned
/// guard is dropped. Hold the guard inside the task (move it into the
/// future or the thread's closure), so that it is dropped when the task
/// ends, panics or is aborted.
///
/// ```
/// let worker = std::thread::spawn({
///     let guard = leaktrace::track_task(); // counted at this line
///     move || {
///         let _guard = guard;
///         // ... the task's work ...
///     }
/// });
/// worker.join().unwrap();
/// ```
#[track_caller]
#[inline]
pub fn track_task() -> TaskGuard {
    track_task_at(Location::caller())
}

/// Like [`track_task`], at an explicit location (for spawn wrappers that
/// are themselves `#[track_caller]`).
#[inline]
pub fn track_task_at(location: &'static Location<'static>) -> TaskGuard {
    let site = counts_for(location);
    site.spawned.fetch_add(1, Relaxed);
    site.live.fetch_add(1, Relaxed);
    TaskGuard { site }
}

/// Live and total tasks per spawn site (file:line, and the spawning
/// function), most live first. Sites whose tasks have all ended are listed
/// with 0 live.
///
/// The first call after a new site appears resolves that site's function
/// name from debug info, which for a large binary can take a second the
/// first time symbols are read at all.
pub fn live_tasks() -> Vec<TaskStat> {
    crate::hand_over(task_stats())
}

/// The raw counts of every site, registration order, no symbols.
pub(crate) fn task_counts() -> Vec<TaskCount> {
    let _ignore = crate::hot::control::ignore();
    let sites: Vec<&'static SiteCounts> = REGISTRY.lock().clone();
    sites
        .into_iter()
        .map(|site| TaskCount { site, live: site.live.load(Relaxed), spawned: site.spawned.load(Relaxed) })
        .collect()
}

/// Orders counts for display: most live first, then file and line.
pub(crate) fn sort_counts(v: &mut [TaskCount]) {
    v.sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.file_line().cmp(&b.file_line())));
}

pub(crate) fn task_stats() -> Vec<TaskStat> {
    let _ignore = crate::hot::control::ignore();
    let mut counts = task_counts();
    sort_counts(&mut counts);
    counts.iter().map(TaskCount::stat).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_line_and_names_the_function() {
        let here = line!() + 2;
        let guards: Vec<TaskGuard> = (0..3)
            .map(|_| track_task()) // the site
            .collect();
        assert_eq!(guards[0].line(), here);
        let stat = live_tasks()
            .into_iter()
            .find(|s| s.location.line == here && same_file(&s.location.file, file!()))
            .expect("site listed");
        assert_eq!((stat.live, stat.spawned), (3, 3));
        assert!(stat.location.function.contains("counts_by_line"), "{:?}", stat.location);
        drop(guards);
        let stat = live_tasks().into_iter().find(|s| s.location.line == here).unwrap();
        assert_eq!((stat.live, stat.spawned), (0, 3));
    }

    #[test]
    fn same_file_matches_relative_and_absolute() {
        assert!(same_file("/work/app/src/main.rs", "src/main.rs"));
        assert!(same_file("src/main.rs", "src/main.rs"));
        assert!(!same_file("/work/app/src/xmain.rs", "src/main.rs"));
        assert!(!same_file("/work/app/tests/main.rs", "src/main.rs"));
    }
}
