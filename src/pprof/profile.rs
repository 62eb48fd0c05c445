//! Building `profile.proto` messages from snapshots and diffs: the string
//! table, functions, locations and samples, each interned once.

#![forbid(unsafe_code)]

use super::maps::MappedObject;
use super::proto;
use crate::{Frame, Snapshot, SnapshotDiff};
use std::collections::HashMap;

/// Which sample type a reader shows first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defaults {
    /// `inuse_space`, as Go's `/debug/pprof/heap` (the last sample type,
    /// pprof's default when none is named).
    Heap,
    /// `alloc_space`, as Go's `/debug/pprof/allocs`.
    Allocs,
}

impl Defaults {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Defaults::Heap => "pprof heap",
            Defaults::Allocs => "pprof allocs",
        }
    }
}

/// Interns strings, functions and locations.
struct Tables {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(String, String), u64>,
    locations: Vec<proto::Location>,
    location_ids: HashMap<Frame, u64>,
    /// The mapping every location is put in (the main binary's).
    mapping_id: u64,
}

impl Tables {
    fn new() -> Tables {
        let mut t = Tables {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            mapping_id: 1,
        };
        t.string("");
        t
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> proto::ValueType {
        proto::ValueType { r#type: self.string(ty), unit: self.string(unit) }
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let name = if name.is_empty() { crate::symbolize::UNKNOWN } else { name };
        if let Some(&id) = self.function_ids.get(&(name.to_owned(), file.to_owned())) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let (name_id, file_id) = (self.string(name), self.string(file));
        self.functions.push(proto::Function {
            id,
            name: name_id,
            system_name: name_id,
            filename: file_id,
            start_line: 0,
        });
        self.function_ids.insert((name.to_owned(), file.to_owned()), id);
        id
    }

    fn location(&mut self, frame: &Frame) -> u64 {
        if let Some(&id) = self.location_ids.get(frame) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        let function_id = self.function(&frame.function, &frame.file);
        self.locations.push(proto::Location {
            id,
            mapping_id: self.mapping_id,
            address: 0,
            line: vec![proto::Line { function_id, line: i64::from(frame.line), column: 0 }],
            is_folded: false,
        });
        self.location_ids.insert(frame.clone(), id);
        id
    }

    fn label_str(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label { key: self.string(key), str: self.string(value), num: 0, num_unit: 0 }
    }

    fn mapping(&mut self, id: u64, object: &MappedObject) -> proto::Mapping {
        proto::Mapping {
            id,
            memory_start: object.start,
            memory_limit: object.limit,
            file_offset: object.offset,
            filename: self.string(&object.path),
            build_id: self.string(&object.build_id),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        }
    }

    fn finish(self, mut profile: proto::Profile) -> proto::Profile {
        profile.function = self.functions;
        profile.location = self.locations;
        profile.string_table = self.strings;
        profile
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn nanos(seconds: f64) -> i64 {
    let n = seconds * 1e9;
    if n.is_finite() && n > 0.0 && n < i64::MAX as f64 {
        n as i64
    } else {
        0
    }
}

/// The profile of `snap`: one sample per trace with
/// `[alloc_objects, alloc_space, inuse_objects, inuse_space]`.
///
/// `mappings` are the loaded objects, the main binary first (see
/// `/proc/self/maps`); empty for a snapshot read from a file, which gets one
/// mapping named after its process.
pub fn profile_from_snapshot(snap: &Snapshot, defaults: Defaults, mappings: &[MappedObject]) -> proto::Profile {
    let mut t = Tables::new();
    let mut profile = proto::Profile {
        sample_type: vec![
            t.value_type("alloc_objects", "count"),
            t.value_type("alloc_space", "bytes"),
            t.value_type("inuse_objects", "count"),
            t.value_type("inuse_space", "bytes"),
        ],
        period_type: Some(t.value_type("space", "bytes")),
        period: saturating_i64(snap.mean_bytes.filter(|_| snap.mode == "sampled").unwrap_or(1)),
        time_nanos: nanos(snap.unix_seconds),
        ..proto::Profile::default()
    };
    if defaults == Defaults::Allocs {
        profile.default_sample_type = t.string("alloc_space");
    }
    let comment = format!("leaktrace snapshot {:?} taken at {}, {} mode", snap.label, snap.taken_at, snap.mode);
    profile.comment.push(t.string(&comment));
    profile.mapping = if mappings.is_empty() {
        let object = MappedObject::named(format!("[leaktrace pid {}]", snap.pid));
        vec![t.mapping(1, &object)]
    } else {
        mappings.iter().enumerate().map(|(i, m)| t.mapping(i as u64 + 1, m)).collect()
    };
    // Frame index -> location id, so shared frames are looked up once.
    let mut frame_locations: Vec<u64> = vec![0; snap.frames.len()];
    for trace in &snap.traces {
        let alloc_count = trace.alloc_count.max(trace.count);
        let alloc_size = trace.alloc_size.max(trace.size);
        if alloc_size == 0 && alloc_count == 0 {
            continue;
        }
        let mut location_id = Vec::with_capacity(trace.frames.len());
        for &i in &trace.frames {
            let Some(frame) = snap.frames.get(i as usize) else { continue };
            let slot = &mut frame_locations[i as usize];
            if *slot == 0 {
                *slot = t.location(frame);
            }
            location_id.push(*slot);
        }
        if location_id.is_empty() {
            location_id.push(t.location(&unknown_frame()));
        }
        let label = match snap.context_of(trace) {
            Some(ctx) => vec![t.label_str("context", ctx)],
            None => Vec::new(),
        };
        profile.sample.push(proto::Sample {
            location_id,
            value: vec![
                saturating_i64(alloc_count),
                saturating_i64(alloc_size),
                saturating_i64(trace.count),
                saturating_i64(trace.size),
            ],
            label,
        });
    }
    t.finish(profile)
}

fn unknown_frame() -> Frame {
    Frame { function: crate::symbolize::UNKNOWN.to_owned(), file: String::new(), line: 0, ..Frame::default() }
}

/// The profile of `diff`: one sample per site with
/// `[inuse_objects, inuse_space]` changes, at the traceback of the site's
/// largest trace.
pub fn profile_from_diff(diff: &SnapshotDiff) -> proto::Profile {
    let mut t = Tables::new();
    let mut profile = proto::Profile {
        sample_type: vec![t.value_type("inuse_objects", "count"), t.value_type("inuse_space", "bytes")],
        period_type: Some(t.value_type("space", "bytes")),
        period: 1,
        time_nanos: crate::clock::parse_rfc3339(&diff.to.taken_at).map_or(0, nanos),
        duration_nanos: nanos(diff.elapsed_seconds),
        ..proto::Profile::default()
    };
    let comment = format!(
        "leaktrace diff: {:?} ({}) minus {:?} ({}), grouped by {}",
        diff.to.label,
        diff.to.taken_at,
        diff.from.label,
        diff.from.taken_at,
        diff.group_by.as_str()
    );
    profile.comment.push(t.string(&comment));
    profile.mapping = vec![t.mapping(1, &MappedObject::named("[leaktrace diff]".to_owned()))];
    for site in &diff.sites {
        if site.size_diff == 0 && site.count_diff == 0 {
            continue;
        }
        let location_id = if site.traceback.is_empty() {
            vec![t.location(&site.location)]
        } else {
            site.traceback.iter().map(|f| t.location(f)).collect()
        };
        let label = match &site.context {
            Some(ctx) => vec![t.label_str("context", ctx)],
            None => Vec::new(),
        };
        profile.sample.push(proto::Sample { location_id, value: vec![site.count_diff, site.size_diff], label });
    }
    t.finish(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trace;

    fn snap() -> Snapshot {
        let f = |function: &str, file: &str, line| Frame {
            function: function.into(),
            file: file.into(),
            line,
            ..Frame::default()
        };
        Snapshot {
            label: "t".into(),
            taken_at: "2026-11-25T00:00:00.000Z".into(),
            unix_seconds: 1_795_564_800.0,
            monotonic_seconds: 1.0,
            pid: 7,
            mode: "sampled".into(),
            mean_bytes: Some(4096),
            capture: "unwinder".into(),
            frames_per_trace: 16,
            totals: Default::default(),
            process: None,
            frames: vec![f("app::leak", "/app/src/leak.rs", 42), f("app::main", "/app/src/main.rs", 3)],
            traces: vec![
                Trace {
                    size: 2048,
                    count: 2,
                    frames: vec![0, 1],
                    alloc_size: 4096,
                    alloc_count: 4,
                    ..Trace::default()
                },
                Trace { size: 0, count: 0, frames: vec![1], ..Trace::default() },
                Trace { size: 100, count: 1, frames: vec![1], context: Some(0), ..Trace::default() },
            ],
            tasks: Vec::new(),
            epoch: 0,
            contexts: vec!["GET /x".into()],
            modules: Vec::new(),
        }
    }

    #[test]
    fn samples_locations_and_strings() {
        let p = profile_from_snapshot(&snap(), Defaults::Allocs, &[]);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        let types: Vec<(&str, &str)> = p.sample_type.iter().map(|v| (s(v.r#type), s(v.unit))).collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        assert_eq!(s(p.default_sample_type), "alloc_space");
        assert_eq!(p.period, 4096);
        assert_eq!(p.sample.len(), 2, "the empty trace is left out");
        assert_eq!(p.sample[0].value, [4, 4096, 2, 2048]);
        assert_eq!(p.sample[1].value, [1, 100, 1, 100], "alloc is at least what is live");
        assert_eq!(s(p.sample[1].label[0].key), "context");
        assert_eq!(s(p.sample[1].label[0].str), "GET /x");
        assert_eq!(p.location.len(), 2);
        assert_eq!(p.sample[0].location_id, [1, 2]);
        let leaf = &p.location[0];
        assert_eq!(leaf.line[0].line, 42);
        let func = &p.function[leaf.line[0].function_id as usize - 1];
        assert_eq!((s(func.name), s(func.filename)), ("app::leak", "/app/src/leak.rs"));
        assert_eq!(s(p.mapping[0].filename), "[leaktrace pid 7]");
        let back = super::super::decode(&super::super::encode(&p)).unwrap();
        assert_eq!(back, p);
    }
}
