//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// The 1-based line of the only line of `src` containing `marker`.
pub fn marker_line(src: &str, marker: &str) -> u32 {
    let hits: Vec<usize> = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker) && !l.contains("marker_line("))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "marker {marker:?} must appear exactly once, found at {hits:?}");
    hits[0] as u32
}

/// Whether a recorded file path is the test file `name` (e.g. "exact_sites.rs").
pub fn is_file(path: &str, name: &str) -> bool {
    std::path::Path::new(path).ends_with(std::path::Path::new("tests").join(name))
}
