//! The messages of pprof's `profile.proto` (package `perftools.profiles`),
//! written out as `prost-build` generates them, so the crate needs neither
//! `protoc` nor a build script.
//!
//! Checked in from `proto/profile.proto` of google/pprof (proto3). Field
//! numbers are the wire contract: keep them as they are. Every string field
//! is an index into [`Profile::string_table`], whose entry 0 is `""`.
//! Left out: `Sample.breakdown`, `Profile.tick_unit` and `label_set`, which
//! not every reader knows and leaktrace does not write.

#![forbid(unsafe_code)]
// Field docs are those of profile.proto, shortened.
#![allow(missing_docs)]

/// A profile: samples with their stacks, and the tables they index.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Profile {
    /// What each `Sample.value` measures, e.g. `[["inuse_space","bytes"]]`.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: ::prost::alloc::vec::Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: ::prost::alloc::vec::Vec<Sample>,
    /// Loaded objects; `mapping[0]` is the main binary.
    #[prost(message, repeated, tag = "3")]
    pub mapping: ::prost::alloc::vec::Vec<Mapping>,
    /// Program locations.
    #[prost(message, repeated, tag = "4")]
    pub location: ::prost::alloc::vec::Vec<Location>,
    /// Functions referenced by locations.
    #[prost(message, repeated, tag = "5")]
    pub function: ::prost::alloc::vec::Vec<Function>,
    /// Every string; `string_table[0]` must be `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: ::prost::alloc::vec::Vec<::prost::alloc::string::String>,
    /// Regexp (string index) of frames dropped with their callees.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp (string index) of frames kept even if `drop_frames` matches.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// Time of collection, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Duration of the profile, if one makes sense.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between sampled occurrences, e.g. `["space","bytes"]`.
    #[prost(message, optional, tag = "11")]
    pub period_type: ::core::option::Option<ValueType>,
    /// The number of events between sampled occurrences.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form text (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: ::prost::alloc::vec::Vec<i64>,
    /// String index of the preferred sample type; unset means the last.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// The meaning and unit of one value (string indices).
#[derive(Clone, Copy, PartialEq, ::prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// Values measured at one stack.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Sample {
    /// `Location.id`s, the leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: ::prost::alloc::vec::Vec<u64>,
    /// One value per `Profile.sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: ::prost::alloc::vec::Vec<i64>,
    /// Extra context: a thread, a request, an allocation size.
    #[prost(message, repeated, tag = "3")]
    pub label: ::prost::alloc::vec::Vec<Label>,
}

/// A key with a string or a number (string indices for key, str, num_unit).
#[derive(Clone, Copy, PartialEq, ::prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A loaded object and its address range.
#[derive(Clone, Copy, PartialEq, ::prost::Message)]
pub struct Mapping {
    /// Unique, nonzero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// String index of the object's path (or `[vdso]`).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// String index of the build id.
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// A program location: an address and its source lines, the innermost
/// (inlined) first, the function it was inlined into last.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Location {
    /// Unique, nonzero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: ::prost::alloc::vec::Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// One source line of a location.
#[derive(Clone, Copy, PartialEq, ::prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function (string indices for the names and the file).
#[derive(Clone, Copy, PartialEq, ::prost::Message)]
pub struct Function {
    /// Unique, nonzero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}
