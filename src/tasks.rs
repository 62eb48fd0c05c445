//! Live tasks by spawn site: a guard a task holds for its life.
//!
//! Cheap: the first spawn at a site registers it (one lock, once per site);
//! after that a spawn costs a read lock and an atomic add, a drop one atomic
//! subtract. No stack is captured: the site is `#[track_caller]`'s location.

#![forbid(unsafe_code)]

use crate::{Frame, TaskStat};
use hashbrown::HashMap;
use once_cell::sync::Lazy;
use parking_lot::RwLock;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct SiteCounts {
    location: &'static Location<'static>,
    live: AtomicU64,
    spawned: AtomicU64,
}

type Key = (&'static str, u32, u32);

static SITES: Lazy<RwLock<HashMap<Key, &'static SiteCounts>>> = Lazy::new(|| RwLock::new(HashMap::new()));

/// Held by a task for its life; counts it live at its spawn site until dropped.
#[must_use = "the task is counted live only while the guard is held"]
pub struct TaskGuard {
    site: &'static SiteCounts,
}

impl std::fmt::Debug for TaskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskGuard({}:{})", self.site.location.file(), self.site.location.line())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.site.live.fetch_sub(1, Relaxed);
    }
}

fn counts_for(location: &'static Location<'static>) -> &'static SiteCounts {
    let key = (location.file(), location.line(), location.column());
    if let Some(c) = SITES.read().get(&key) {
        return c;
    }
    // Registering a site is the tracker's own memory, once per site.
    let _ignore = crate::hot::guard::Guard::with(crate::hot::guard::IGNORE);
    let mut w = SITES.write();
    w.entry(key).or_insert_with(|| {
        Box::leak(Box::new(SiteCounts {
            location,
            live: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
        }))
    })
}

/// Counts the calling task live at the caller's location until the returned
/// guard is dropped. Hold the guard inside the task (move it into the future).
#[track_caller]
pub fn track_task() -> TaskGuard {
    track_task_at(Location::caller())
}

/// Like [`track_task`], at an explicit location.
pub fn track_task_at(location: &'static Location<'static>) -> TaskGuard {
    let site = counts_for(location);
    site.spawned.fetch_add(1, Relaxed);
    site.live.fetch_add(1, Relaxed);
    TaskGuard { site }
}

/// Live and total tasks per spawn site, most live first.
pub fn live_tasks() -> Vec<TaskStat> {
    task_stats()
}

pub(crate) fn task_stats() -> Vec<TaskStat> {
    let _ignore = crate::hot::guard::Guard::with(crate::hot::guard::IGNORE);
    let mut v: Vec<TaskStat> = SITES
        .read()
        .values()
        .map(|c| TaskStat {
            location: Frame {
                function: String::new(),
                file: c.location.file().to_string(),
                line: c.location.line(),
            },
            live: c.live.load(Relaxed),
            spawned: c.spawned.load(Relaxed),
        })
        .collect();
    v.sort_by(|a, b| b.live.cmp(&a.live).then(a.location.file.cmp(&b.location.file)).then(a.location.line.cmp(&b.location.line)));
    v
}
