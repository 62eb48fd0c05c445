//! Portable source paths: the same line of the same program reads the same
//! whichever directory, machine or container it was built in.
//!
//! | absolute path (as the debug info records it)                 | portable                       |
//! |--------------------------------------------------------------|--------------------------------|
//! | `/rustc/<commit>/library/std/src/thread/mod.rs`              | `<rustc>/library/std/src/thread/mod.rs` |
//! | `~/.rustup/toolchains/*/lib/rustlib/src/rust/library/...`    | `<rustc>/library/...`          |
//! | `/rust/deps/hashbrown-0.15.2/src/raw/mod.rs` (std's own deps) | `<rustc>/deps/hashbrown-0.15.2/src/raw/mod.rs` |
//! | `~/.cargo/registry/src/<index>/tokio-1.47.1/src/lib.rs`      | `tokio-1.47.1/src/lib.rs`      |
//! | `~/.cargo/git/checkouts/<repo>-<hash>/<rev>/src/lib.rs`      | `<repo>-<hash>/<rev>/src/lib.rs` |
//! | `/ci/build/app/src/db.rs`, the unit compiled in `/ci/build/app` | `src/db.rs`                 |
//! | `/ci/build/app/member/src/lib.rs`, a workspace member        | `member/src/lib.rs`            |
//!
//! The own-code rule uses the unit's compilation directory, which cargo
//! sets to the workspace root (it runs rustc there), so it needs no source
//! tree: a binary symbolized in a container or on another machine gets the
//! same paths. Without one (or for a file outside it), the nearest
//! directory with a `Cargo.toml` is looked for on disk, and for a workspace
//! member the workspace root above it; failing that, the path stays
//! absolute. The `<rustc>` form is the one `alloc-probe` has always shown.
//!
//! The site rule (`super::classify`) looks at the absolute path, which the
//! frame keeps as `path_abs`.

#![forbid(unsafe_code)]

use std::path::Path;

const STD_PREFIXES: &[&str] = &["/lib/rustlib/src/rust/"];
const REGISTRY: &[&str] = &["/registry/src/"];
const GIT: &[&str] = &["/git/checkouts/"];

/// The portable form of `abs`, a path from unit `comp_dir`.
pub(crate) fn portable(abs: &str, comp_dir: Option<&str>) -> String {
    let abs = strip_dot(abs);
    if let Some(rest) = abs.strip_prefix("/rustc/") {
        // `/rustc/<commit>/library/...`
        return match rest.find('/') {
            Some(j) => format!("<rustc>/{}", &rest[j + 1..]),
            None => abs.to_string(),
        };
    }
    if let Some(rest) = abs.strip_prefix("/rust/deps/") {
        return format!("<rustc>/deps/{rest}");
    }
    for p in STD_PREFIXES {
        if let Some(i) = abs.find(p) {
            return format!("<rustc>/{}", &abs[i + p.len()..]);
        }
    }
    for m in REGISTRY {
        if let Some(i) = abs.find(m) {
            let rest = &abs[i + m.len()..];
            // Skip the index directory: `crate-x.y.z/...` is the same on
            // every machine.
            if let Some(j) = rest.find('/') {
                return rest[j + 1..].to_string();
            }
        }
    }
    for m in GIT {
        if let Some(i) = abs.find(m) {
            return abs[i + m.len()..].to_string();
        }
    }
    if !abs.starts_with('/') {
        return abs.to_string();
    }
    if let Some(dir) = comp_dir.map(|d| d.trim_end_matches('/')).filter(|d| d.starts_with('/') && d.len() > 1) {
        if let Some(rest) = abs.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            return strip_dot(rest).to_string();
        }
    }
    match workspace_root(Path::new(abs)) {
        Some(root) => match Path::new(abs).strip_prefix(&root) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => abs.to_string(),
        },
        None => abs.to_string(),
    }
}

fn strip_dot(mut p: &str) -> &str {
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// The root of the workspace `file` belongs to: the nearest directory above
/// it with a `Cargo.toml`, or, if a `Cargo.toml` further up declares a
/// `[workspace]`, that one's directory.
fn workspace_root(file: &Path) -> Option<std::path::PathBuf> {
    let mut dir = file.parent();
    let mut package: Option<&Path> = None;
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if manifest.is_file() {
            let is_workspace =
                std::fs::read_to_string(&manifest).is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"));
            if is_workspace {
                return Some(d.to_path_buf());
            }
            package.get_or_insert(d);
        }
        dir = d.parent();
    }
    package.map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_and_dependencies() {
        assert_eq!(
            portable("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/thread/mod.rs", None),
            "<rustc>/library/std/src/thread/mod.rs"
        );
        assert_eq!(
            portable("/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/alloc/src/vec/mod.rs", None),
            "<rustc>/library/alloc/src/vec/mod.rs"
        );
        assert_eq!(
            portable("/rust/deps/hashbrown-0.15.2/src/raw/mod.rs", None),
            "<rustc>/deps/hashbrown-0.15.2/src/raw/mod.rs"
        );
        assert_eq!(
            portable(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.47.1/src/lib.rs",
                Some("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.47.1")
            ),
            "tokio-1.47.1/src/lib.rs"
        );
        assert_eq!(
            portable("/home/me/.cargo/git/checkouts/foo-1a2b/3c4d5e6/src/lib.rs", None),
            "foo-1a2b/3c4d5e6/src/lib.rs"
        );
    }

    #[test]
    fn own_code_relative_to_the_compilation_directory() {
        assert_eq!(portable("/ci/build/app/src/db.rs", Some("/ci/build/app")), "src/db.rs");
        assert_eq!(portable("/ci/build/app/member/src/lib.rs", Some("/ci/build/app/")), "member/src/lib.rs");
        assert_eq!(portable("./tests/a.rs", None), "tests/a.rs");
        assert_eq!(portable("src/x.rs", Some("/a")), "src/x.rs");
        // Nothing on disk and outside the compilation directory: absolute.
        assert_eq!(portable("/nonexistent/zz/src/x.rs", Some("/ci/build/app")), "/nonexistent/zz/src/x.rs");
    }

    #[test]
    fn own_code_found_on_disk() {
        // This file, through the workspace's Cargo.toml.
        let abs = concat!(env!("CARGO_MANIFEST_DIR"), "/src/symbolize/paths.rs");
        assert_eq!(portable(abs, None), "src/symbolize/paths.rs");
    }
}
