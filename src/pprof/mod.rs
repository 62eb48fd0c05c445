//! Snapshots and diffs as pprof profiles: gzipped `profile.proto`, as Go's
//! `runtime/pprof` writes heap profiles, for `go tool pprof`, Parca,
//! Pyroscope, Grafana and every other reader of that format.
//!
//! ```no_run
//! # fn main() -> Result<(), leaktrace::Error> {
//! let snap = leaktrace::Snapshot::read_json("after.json")?;
//! leaktrace::write_atomic("heap.pb.gz".as_ref(), &leaktrace::pprof::from_snapshot(&snap))?;
//! // go tool pprof -top -sample_index=inuse_space heap.pb.gz
//! # Ok(()) }
//! ```
//!
//! What a snapshot profile holds:
//!
//! | sample type | unit | from |
//! | --- | --- | --- |
//! | `alloc_objects` | count | [`Trace::alloc_count`](crate::Trace::alloc_count) |
//! | `alloc_space` | bytes | [`Trace::alloc_size`](crate::Trace::alloc_size) |
//! | `inuse_objects` | count | [`Trace::count`](crate::Trace::count) |
//! | `inuse_space` | bytes | [`Trace::size`](crate::Trace::size) |
//!
//! One sample per trace, its locations the trace's frames (the call site
//! first, as pprof puts the leaf first); a `context` label when the trace has
//! one. Values are the snapshot's, already scaled to estimates in sampled
//! mode (as Go scales its own), so `period_type` is `space/bytes` and
//! `period` is the mean distance between samples (1 in exact mode, where
//! every byte is seen). The alloc values are at least the live ones:
//! snapshots written before the alloc totals existed carry 0 there.
//!
//! Locations: a snapshot keeps symbolized frames, not addresses, with
//! inlined calls already expanded into frames of their own. Nothing tells
//! which frames shared one address, so each frame is a location with one
//! line and address 0. pprof shows the same graph either way (it splits
//! inlined lines into nodes of their own too); only `-noinlines` and
//! `-addresses` differ. In-process profiles ([`heap_profile`],
//! [`allocs_profile`]) list every executable mapping of `/proc/self/maps`,
//! the main binary first; a profile of a file has one mapping, named after
//! the process. Every mapping says it has functions, files and lines, so
//! pprof never tries to symbolize.
//!
//! A diff profile ([`from_diff`]) has `inuse_objects` and `inuse_space`
//! only, the changes (negative for sites that shrank), one sample per site
//! at the traceback of the site's largest trace. For pprof's own diff of
//! two profiles, export both snapshots and use `-diff_base`.

#![forbid(unsafe_code)]

pub mod maps;
mod profile;
pub mod proto;

use crate::{Snapshot, SnapshotDiff};
use prost::Message;

pub use maps::MappedObject;
pub use profile::{profile_from_diff, profile_from_snapshot, Defaults};

/// `snap` as a gzipped heap profile (`inuse_space` shown by default).
pub fn from_snapshot(snap: &Snapshot) -> Vec<u8> {
    encode(&profile_from_snapshot(snap, Defaults::Heap, &[]))
}

/// `snap` as a gzipped allocs profile: the same samples, `alloc_space`
/// shown by default (Go's `/debug/pprof/allocs`).
pub fn allocs_from_snapshot(snap: &Snapshot) -> Vec<u8> {
    encode(&profile_from_snapshot(snap, Defaults::Allocs, &[]))
}

/// `diff` as a gzipped profile of changes: `inuse_objects` and
/// `inuse_space`, negative where a site shrank.
pub fn from_diff(diff: &SnapshotDiff) -> Vec<u8> {
    encode(&profile_from_diff(diff))
}

/// Takes a snapshot now and returns it as a gzipped heap profile, with this
/// process's mappings (what Go serves at `/debug/pprof/heap`). Its own
/// memory is not traced.
pub fn heap_profile() -> Vec<u8> {
    in_process(Defaults::Heap)
}

/// Like [`heap_profile`], with `alloc_space` shown by default (Go's
/// `/debug/pprof/allocs`).
pub fn allocs_profile() -> Vec<u8> {
    in_process(Defaults::Allocs)
}

fn in_process(defaults: Defaults) -> Vec<u8> {
    let bytes = crate::untraced(|| {
        let snap = crate::take_snapshot(defaults.label());
        encode(&profile_from_snapshot(&snap, defaults, &maps::self_mappings()))
    });
    crate::hand_over(bytes)
}

/// Serializes and gzips `profile`, as pprof files are stored.
pub fn encode(profile: &proto::Profile) -> Vec<u8> {
    use std::io::Write;
    let raw = profile.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// Reads a profile: gzipped (as pprof writes them) or plain `profile.proto`
/// bytes. An error says what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> std::io::Result<proto::Profile> {
    use std::io::Read;
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| invalid(format!("gzip: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    proto::Profile::decode(raw.as_slice()).map_err(|e| invalid(format!("not a profile.proto message: {e}")))
}
