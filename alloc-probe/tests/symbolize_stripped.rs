//! A stripped binary's snapshot, taken with symbolization off, resolved
//! later by `alloc-probe symbolize` from its debug file (found by build id
//! under `--debug-dir`), finds the leaking `file:line`s exactly as the
//! unstripped build does in-process.

mod common;
mod symbolize_fixture;

use std::path::Path;
use std::process::Command;
use symbolize_fixture as fx;

fn objcopy(args: &[&str], file: &Path) {
    let status = Command::new("objcopy").args(args).arg(file).status().expect("objcopy (binutils) is installed");
    assert!(status.success(), "objcopy {args:?} {}", file.display());
}

#[test]
fn stripped_binary_resolved_later_from_its_debug_file() {
    let bin = fx::build(&fx::tmp("fixture-a"), &fx::tmp("fixture-target-a"));
    let dir = tempfile::tempdir().unwrap();

    // The reference: unstripped, symbolized in the process.
    let reference = dir.path().join("reference.json");
    fx::run(&bin, &reference, true);
    let expected = fx::own_sites(&fx::read_json(&reference));
    let main_line = fx::line_of(fx::MAIN_RS, "MARK: main leak") as u64;
    let db_line = fx::line_of(fx::DB_RS, "MARK: db insert") as u64;
    // 100 blocks of 1000 bytes, and the vector holding them.
    let main_site = expected.get(&("src/main.rs".into(), main_line)).copied().unwrap_or_default();
    assert!(main_site.0 >= 100_000 && main_site.1 == 101, "{expected:?}");
    assert!(expected.contains_key(&("src/db.rs".into(), db_line)), "{expected:?}");

    // Split the debug info off, strip the binary, run it with symbolization off.
    let stripped = dir.path().join("leakfix");
    std::fs::copy(&bin, &stripped).unwrap();
    let debug = dir.path().join("leakfix.debug");
    std::fs::copy(&bin, &debug).unwrap();
    objcopy(&["--only-keep-debug"], &debug);
    objcopy(&["--strip-debug"], &stripped);
    let raw = dir.path().join("raw.json");
    fx::run(&stripped, &raw, false);
    let raw_json = fx::read_json(&raw);
    assert!(fx::own_sites(&raw_json).is_empty(), "nothing resolved in the process");
    let build_id = raw_json["modules"][0]["build_id"].as_str().unwrap().to_string();
    assert!(build_id.len() > 8, "{}", raw_json["modules"]);

    // `show` says how to resolve them.
    let show = common::probe_in(None, ["show".as_ref(), raw.as_os_str()]);
    show.ok();
    assert!(show.stderr.contains("unresolved") && show.stderr.contains("alloc-probe symbolize"), "{show:#?}");

    // The /usr/lib/debug layout under --debug-dir.
    let debug_dir = dir.path().join("debug");
    let (head, rest) = build_id.split_at(2);
    std::fs::create_dir_all(debug_dir.join(".build-id").join(head)).unwrap();
    std::fs::rename(&debug, debug_dir.join(".build-id").join(head).join(format!("{rest}.debug"))).unwrap();
    let out = dir.path().join("symbolized.json");
    let run = common::probe_in(
        None,
        [
            "symbolize".as_ref(),
            raw.as_os_str(),
            "--debug-dir".as_ref(),
            debug_dir.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
    );
    run.ok();
    assert!(run.stderr.contains("frame(s) resolved"), "{run:#?}");
    let resolved = fx::read_json(&out);
    assert_eq!(fx::own_sites(&resolved), expected, "same sites as the unstripped build");
    assert!(resolved["frames_per_trace"] == raw_json["frames_per_trace"]);
    for t in resolved["traces"].as_array().unwrap() {
        assert!(t["frames"].as_array().unwrap().len() <= 16, "tracebacks cut to frames_per_trace again");
    }
    let show = common::probe_in(None, ["show".as_ref(), out.as_os_str()]);
    assert!(show.ok().contains("src/main.rs:"), "{show:#?}");

    // Without the debug file: the frames stay unresolved, and it says why.
    let again = dir.path().join("again.json");
    let run = common::probe_in(None, ["symbolize".as_ref(), raw.as_os_str(), "-o".as_ref(), again.as_os_str()]);
    run.ok();
    assert!(run.stderr.contains("no debug info found"), "{run:#?}");

    // Bad input: one line naming the file, exit 2.
    let missing = dir.path().join("missing.json");
    common::probe_in(None, ["symbolize".as_ref(), missing.as_os_str(), "-o".as_ref(), again.as_os_str()])
        .assert_bad_input(&["missing.json"]);
    common::probe_in(
        None,
        [
            "symbolize".as_ref(),
            raw.as_os_str(),
            "--debug-dir".as_ref(),
            missing.as_os_str(),
            "-o".as_ref(),
            again.as_os_str(),
        ],
    )
    .assert_bad_input(&["missing.json", "not a directory"]);
}
