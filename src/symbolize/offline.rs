//! Symbolizing a snapshot after the fact (`alloc-probe symbolize`): the
//! frames a process could not resolve (symbolization off, a stripped
//! binary) are looked up in the binary or in a debug file found by build
//! id, and each trace whose site could not be told gets it by the same rule
//! as in the process (`super::site_traceback`).

#![forbid(unsafe_code)]

use super::elf::DebugObject;
use crate::config::SiteRules;
use crate::snapshot::{Birth, Snapshot, Trace};
use crate::Frame;
use hashbrown::HashMap;
use std::path::{Path, PathBuf};

/// What [`symbolize_snapshot`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolizeOutcome {
    /// Frames that got a file and line.
    pub resolved_frames: usize,
    /// Frames still without one.
    pub unresolved_frames: usize,
    /// Per object that had unresolved frames.
    pub modules: Vec<ModuleOutcome>,
}

/// One object's part in a [`SymbolizeOutcome`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleOutcome {
    /// The object's path, as the snapshot records it.
    pub path: String,
    /// Its build id (hex).
    pub build_id: String,
    /// Where its DWARF was found; `None`: nowhere.
    pub debug_file: Option<PathBuf>,
    /// Why nothing could be read, when it could not.
    pub error: Option<String>,
    /// Frames resolved, and left unresolved, in it.
    pub resolved_frames: usize,
    /// Frames left unresolved in it.
    pub unresolved_frames: usize,
}

/// Resolves the unresolved frames of `snap` (see [`Frame::is_unresolved`])
/// from each object's file or a debug file for its build id (in
/// `debug_dirs`, as `DIR/.build-id/xx/rest.debug` or `DIR/NAME.debug`, then
/// `/usr/lib/debug`), chooses the site of each trace kept whole, and merges
/// traces that become the same. Frames nothing is found for stay as they
/// are.
pub fn symbolize_snapshot(snap: &Snapshot, debug_dirs: &[PathBuf]) -> (Snapshot, SymbolizeOutcome) {
    let mut wanted: Vec<u32> = snap.frames.iter().filter(|f| f.is_unresolved()).filter_map(|f| f.module).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut outcome = SymbolizeOutcome::default();
    let mut objects: HashMap<u32, (usize, Option<DebugObject>)> = HashMap::new();
    for m in wanted {
        let Some(module) = snap.modules.get(m as usize) else { continue };
        let build_id = unhex(&module.build_id);
        let (object, error) = match DebugObject::open(Path::new(&module.path), &build_id, debug_dirs) {
            Ok(o) if o.has_lines() => (Some(o), None),
            Ok(o) => {
                let why = format!("no debug info found for build id {} (give --debug-dir)", module.build_id);
                (Some(o), Some(why))
            }
            Err(e) => (None, Some(e)),
        };
        outcome.modules.push(ModuleOutcome {
            path: module.path.clone(),
            build_id: module.build_id.clone(),
            debug_file: object.as_ref().and_then(|o| o.debug_path.clone()),
            error,
            ..ModuleOutcome::default()
        });
        objects.insert(m, (outcome.modules.len() - 1, object));
    }
    // The debug info of each object is read once, for all its frames.
    let mut probes: HashMap<u32, Vec<u64>> = HashMap::new();
    for f in snap.frames.iter().filter(|f| f.is_unresolved()) {
        if let (Some(m), Some(offset)) = (f.module, f.offset) {
            probes.entry(m).or_default().push(offset.saturating_sub(1));
        }
    }
    let mut raw: HashMap<(u32, u64), Vec<super::elf::RawFrame>> = HashMap::new();
    for (m, list) in probes {
        if let Some((_, Some(o))) = objects.get(&m) {
            for (probe, frames) in list.iter().zip(o.frames_of_all(&list)) {
                raw.insert((m, *probe), frames);
            }
        }
    }
    // Each old frame's replacement (several when inlined frames unfold).
    let mut replaced: HashMap<usize, Vec<Frame>> = HashMap::new();
    for (i, f) in snap.frames.iter().enumerate() {
        let (Some(m), Some(offset)) = (f.module, f.offset) else { continue };
        if !f.is_unresolved() {
            continue;
        }
        let Some((slot, object)) = objects.get(&m) else {
            outcome.unresolved_frames += 1;
            continue;
        };
        let name = snap.modules.get(m as usize).map_or("?", |md| md.path.rsplit('/').next().unwrap_or("?"));
        let frames = match object {
            Some(_) => {
                let r = raw.get(&(m, offset.saturating_sub(1))).cloned().unwrap_or_default();
                super::frames_of(r, m, name, offset)
            }
            None => Vec::new(),
        };
        let ok = frames.iter().any(|f| !f.file.is_empty());
        let counts = &mut outcome.modules[*slot];
        if ok {
            counts.resolved_frames += 1;
            outcome.resolved_frames += 1;
        } else {
            counts.unresolved_frames += 1;
            outcome.unresolved_frames += 1;
        }
        if !frames.is_empty() && (ok || frames.iter().any(|n| n.function != f.function)) {
            replaced.insert(i, frames);
        }
    }
    let rules = SiteRules::default();
    let nframes = snap.frames_per_trace.max(1);
    let mut out = snap.clone();
    out.frames.clear();
    let mut frame_ids: HashMap<Frame, u32> = HashMap::new();
    // The new index of each old frame that stays as it is, looked up once
    // for all the traces that share it.
    let mut kept: Vec<Option<u32>> = vec![None; snap.frames.len()];
    let mut merged: HashMap<(Vec<u32>, Option<u32>), Trace> = HashMap::new();
    for trace in &snap.traces {
        let changed = trace.frames.iter().any(|&i| replaced.contains_key(&(i as usize)));
        let key: Vec<u32> = if changed {
            let old: Vec<Frame> = snap.traceback(trace);
            let all: Vec<Frame> = trace
                .frames
                .iter()
                .flat_map(|&i| match replaced.get(&(i as usize)) {
                    Some(new) => new.clone(),
                    None => snap.frames.get(i as usize).cloned().into_iter().collect(),
                })
                .collect();
            let tb: Vec<Frame> = if super::needs_site(&old, &rules) {
                super::site_traceback(all, &rules, nframes)
            } else {
                all.into_iter().take(nframes.max(old.len())).collect()
            };
            tb.iter().map(|f| intern(&mut out.frames, &mut frame_ids, f)).collect()
        } else {
            trace
                .frames
                .iter()
                .filter_map(|&i| {
                    let f = snap.frames.get(i as usize)?;
                    Some(*kept[i as usize].get_or_insert_with(|| intern(&mut out.frames, &mut frame_ids, f)))
                })
                .collect()
        };
        let t = merged.entry((key, trace.context)).or_insert_with_key(|(frames, context)| Trace {
            frames: frames.clone(),
            context: *context,
            ..Trace::default()
        });
        t.size += trace.size;
        t.count += trace.count;
        t.alloc_size += trace.alloc_size;
        t.alloc_count += trace.alloc_count;
        merge_births(&mut t.births, &trace.births);
    }
    let mut traces: Vec<Trace> = merged.into_values().collect();
    crate::snapshot::sort_traces(&mut traces);
    out.traces = traces;
    (out, outcome)
}

/// The index of `f` in `frames`, added at the end if new.
fn intern(frames: &mut Vec<Frame>, ids: &mut HashMap<Frame, u32>, f: &Frame) -> u32 {
    if let Some(&i) = ids.get(f) {
        return i;
    }
    frames.push(f.clone());
    ids.insert(f.clone(), frames.len() as u32 - 1);
    frames.len() as u32 - 1
}

fn merge_births(into: &mut Vec<Birth>, from: &[Birth]) {
    for b in from {
        match into.iter_mut().find(|x| x.epoch == b.epoch && x.epoch_last == b.epoch_last) {
            Some(x) => {
                x.size += b.size;
                x.count += b.count;
            }
            None => into.push(*b),
        }
    }
    into.sort_by_key(|b| b.epoch);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| s.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// How many traces of `snap` have a site that is not resolved (their first
/// frame has no file and an object and offset): `show`, `diff` and `trend`
/// say so, with the command that resolves them.
pub fn unresolved_sites(snap: &Snapshot) -> usize {
    snap.traces.iter().filter(|t| snap.site(t).is_some_and(|f| f.is_unresolved())).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00ff1a"), vec![0, 255, 26]);
        assert_eq!(super::super::modules::hex(&[0, 255, 26]), "00ff1a");
    }
}
