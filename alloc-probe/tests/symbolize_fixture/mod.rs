//! A small program under leaktrace, built with cargo into the test's temp
//! directory, for the tests that need a real binary (stripping it, building
//! it in two places). The first build compiles leaktrace's dependencies;
//! the target directory stays under `CARGO_TARGET_TMPDIR`, so later runs
//! only relink.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MAIN_RS: &str = r#"
mod db;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

#[inline(never)]
fn leak(keep: &mut Vec<Vec<u8>>) {
    for i in 0..100 {
        keep.push(vec![i as u8; 1000]); // MARK: main leak
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let symbolize = args.get(2).map(String::as_str) != Some("off");
    leaktrace::start(leaktrace::Config::default().symbolize(symbolize));
    let mut keep = Vec::new();
    leak(&mut keep);
    let mut table = Vec::new();
    db::insert(&mut table);
    let snap = leaktrace::take_snapshot("fixture");
    snap.write_json(&args[1]).unwrap();
    std::hint::black_box((keep, table));
}
"#;

pub const DB_RS: &str = r#"
#[inline(never)]
pub fn insert(table: &mut Vec<String>) {
    for i in 0..50 {
        table.push(format!("{i:>2000}")); // MARK: db insert
    }
}
"#;

/// The 1-based line of `marker` in `src`.
pub fn line_of(src: &str, marker: &str) -> u32 {
    src.lines().position(|l| l.contains(marker)).expect("marker") as u32 + 1
}

pub fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Writes the fixture's sources into `dir`.
pub fn write_sources(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"leakfix\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n\
         [dependencies]\nleaktrace = {{ path = {:?} }}\n",
        root.display().to_string()
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    // The same versions as the workspace, resolved without the network.
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    if !dir.join("Cargo.lock").exists() {
        std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
    }
    write_if_changed(&dir.join("src/main.rs"), MAIN_RS);
    write_if_changed(&dir.join("src/db.rs"), DB_RS);
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

/// Builds the fixture in `src` into `target`; returns the binary.
pub fn build(src: &Path, target: &Path) -> PathBuf {
    write_sources(src);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--offline"])
        .current_dir(src)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "building the fixture: {}", String::from_utf8_lossy(&out.stderr));
    target.join("debug/leakfix")
}

/// Runs `bin`, which writes its snapshot to `out`.
pub fn run(bin: &Path, out: &Path, symbolize: bool) {
    let status =
        Command::new(bin).arg(out).arg(if symbolize { "on" } else { "off" }).status().expect("run the fixture");
    assert!(status.success(), "{}: {status}", bin.display());
}

/// `(file, line) -> (size, count)` of the program's own sites (`src/...`).
pub fn own_sites(snap: &serde_json::Value) -> std::collections::BTreeMap<(String, u64), (u64, u64)> {
    let frames = snap["frames"].as_array().unwrap();
    let mut out = std::collections::BTreeMap::new();
    for t in snap["traces"].as_array().unwrap() {
        let Some(i) = t["frames"][0].as_u64() else { continue };
        let f = &frames[i as usize];
        let file = f["file"].as_str().unwrap_or_default().to_string();
        if file.starts_with("src/") && t["size"].as_u64().unwrap() > 0 {
            let e = out.entry((file, f["line"].as_u64().unwrap())).or_insert((0, 0));
            e.0 += t["size"].as_u64().unwrap();
            e.1 += t["count"].as_u64().unwrap();
        }
    }
    out
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
