//! Writes that survive a kill: a child process writes reports of several
//! MiB in a loop, with `Snapshot::write_json` and with `write_atomic`, and
//! is SIGKILLed at a different moment each round. After each kill every
//! report on disk is a complete one (it parses, and its sequence number
//! never goes backwards); the temporary file a killed writer leaves behind
//! is hidden and not `*.json`, so directory readers skip it, and the next
//! writer removes it.
//!
//! The test runs itself as the child (`LEAKTRACE_WRITE_KILL_DIR` set),
//! under a deadline, so a hung writer fails the test instead of CI.

use leaktrace::{Frame, Snapshot, Totals, Trace};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "LEAKTRACE_WRITE_KILL_DIR";
const SEQ_ENV: &str = "LEAKTRACE_WRITE_KILL_SEQ";
const ROUNDS: u64 = 10;
/// For the whole test; a writer that stops making progress fails it.
const DEADLINE: Duration = Duration::from_secs(120);
/// Frames per report: about 4 MiB of JSON.
const FRAMES: usize = 24_000;
/// Of the label: "seq-" and nine digits, patched in place in `raw.json`.
const SEQ_DIGITS: usize = 9;

/// The snapshot written as `snap.json`, numbered `seq` (label and
/// `totals.blocks`, so a reader can check that the two agree).
fn report(seq: u64) -> Snapshot {
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|i| Frame {
            function: format!("app::module_{i}::Type<alloc::vec::Vec<u8>>::function_with_a_long_name_{i}"),
            file: format!("/work/app/src/module_{i}/a/rather/deep/path/file.rs"),
            line: i as u32,
            ..Frame::default()
        })
        .collect();
    let traces = (0..FRAMES / 4)
        .map(|i| Trace {
            size: i as u64,
            count: 1,
            frames: (4 * i..4 * i + 4).map(|f| f as u32).collect(),
            ..Trace::default()
        })
        .collect();
    Snapshot {
        label: format!("seq-{seq:0SEQ_DIGITS$}"),
        taken_at: "2026-11-25T02:26:11.395Z".into(),
        unix_seconds: 1_795_573_571.395,
        monotonic_seconds: 1005.5,
        pid: std::process::id(),
        mode: "exact".into(),
        mean_bytes: None,
        capture: "unwinder".into(),
        frames_per_trace: 4,
        totals: Totals { blocks: seq, ..Totals::default() },
        process: None,
        frames,
        traces,
        tasks: Vec::new(),
        epoch: 0,
        contexts: Vec::new(),
        modules: Vec::new(),
    }
}

/// The writer: both reports, over and over, until killed (or after a
/// minute, should the parent be gone).
fn child(dir: &Path, first_seq: u64) {
    let snap_path = dir.join("snap.json");
    let raw_path = dir.join("raw.json");
    // `raw.json` is the same text with the label's digits patched: most of
    // the loop is then spent inside `write_atomic`, where a kill matters.
    let mut raw = report(first_seq).to_json().into_bytes();
    let label_at = raw.windows(4).position(|w| w == b"seq-").expect("label") + 4;
    let started = Instant::now();
    let mut seq = first_seq;
    while started.elapsed() < Duration::from_secs(60) {
        let snap = report(seq);
        snap.write_json(&snap_path).expect("write snap.json");
        let digits = format!("{seq:0SEQ_DIGITS$}");
        raw[label_at..label_at + SEQ_DIGITS].copy_from_slice(digits.as_bytes());
        leaktrace::write_atomic(&raw_path, &raw).expect("write raw.json");
        if seq == first_seq {
            println!("writer-ready {}", std::process::id());
        }
        seq += 1;
        // Then `raw.json` for a while: building and serializing `snap.json`
        // takes longer than writing it, and the kills should mostly land
        // in a write.
        let phase = Instant::now();
        while phase.elapsed() < Duration::from_millis(400) {
            let digits = format!("{seq:0SEQ_DIGITS$}");
            raw[label_at..label_at + SEQ_DIGITS].copy_from_slice(digits.as_bytes());
            leaktrace::write_atomic(&raw_path, &raw).expect("write raw.json");
            seq += 1;
        }
    }
}

/// The sequence number of a complete report, or a panic saying what is
/// wrong with it.
fn read_seq(path: &Path) -> u64 {
    let snap = Snapshot::read_json(path).unwrap_or_else(|e| panic!("half a report on disk: {e}"));
    assert_eq!(snap.frames.len(), FRAMES, "{}", path.display());
    assert_eq!(snap.traces.len(), FRAMES / 4, "{}", path.display());
    let seq: u64 = snap.label.strip_prefix("seq-").and_then(|d| d.parse().ok()).expect("seq label");
    if path.ends_with("snap.json") {
        assert_eq!(snap.totals.blocks, seq, "label and body from one write");
    }
    seq
}

/// Hidden temporary files in `dir`, with the pid in their name.
fn temps(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(rest) = name.strip_suffix(".tmp") {
            assert!(name.starts_with('.'), "a visible temp file: {name}");
            let pid = rest.rsplit('.').nth(1).and_then(|p| p.parse().ok()).expect("pid in temp name");
            out.push((name, pid));
        }
    }
    out
}

/// What a directory reader (`alloc-probe trend DIR`) looks at: visible
/// `*.json` files.
fn listed_reports(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.starts_with('.')
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[test]
fn reports_survive_sigkill_mid_write() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let seq = std::env::var(SEQ_ENV).ok().and_then(|s| s.parse().ok()).expect("first seq");
        child(Path::new(&dir), seq);
        return;
    }
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("leaktrace-write-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last_seq = [0u64; 2];
    let mut rounds_with_leftover = 0;
    let mut dead_pids: Vec<u32> = Vec::new();
    for round in 1..=ROUNDS {
        let first_seq = round * 1_000_000;
        let mut child = Command::new(&exe)
            .args(["--exact", "reports_survive_sigkill_mid_write", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(SEQ_ENV, first_seq.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait, under the deadline, for the child's first complete write.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest's "test NAME ... " may lead the line.
                if let Some(pid) = line.split("writer-ready ").nth(1) {
                    let _ = tx.send(pid.trim().to_string());
                }
            }
        });
        let left = DEADLINE.saturating_sub(start.elapsed());
        let Ok(ready) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("round {round}: the writer made no write in time");
        };
        let pid: u32 = ready.parse().expect("child pid");
        // The writer's first write removed what earlier, dead writers left
        // (unless the new writer got a dead one's pid back).
        let stale: Vec<_> = temps(&dir).into_iter().filter(|&(_, p)| p != pid && dead_pids.contains(&p)).collect();
        assert!(stale.is_empty(), "round {round}: stale temp files survived a write: {stale:?}");
        // Kill at a different point of the loop each round.
        std::thread::sleep(Duration::from_millis(10 + round * 37 % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        dead_pids.push(pid);

        let reports = listed_reports(&dir);
        assert_eq!(reports, [dir.join("raw.json"), dir.join("snap.json")], "round {round}");
        for (i, path) in [dir.join("raw.json"), dir.join("snap.json")].iter().enumerate() {
            let seq = read_seq(path);
            assert!(seq >= first_seq && seq >= last_seq[i], "round {round}: {} went back to {seq}", path.display());
            last_seq[i] = seq;
        }
        if !temps(&dir).is_empty() {
            rounds_with_leftover += 1;
        }
    }
    // The kills did land mid-write: some left a temporary file behind.
    assert!(rounds_with_leftover > 0, "no kill hit a write in {ROUNDS} rounds; the test proves nothing");
    // A later writer, in another process, cleans them up.
    leaktrace::write_atomic(&dir.join("raw.json"), report(u64::MAX / 2).to_json().as_bytes()).unwrap();
    assert_eq!(temps(&dir), Vec::new(), "temp files left after a clean write");
    assert_eq!(read_seq(&dir.join("raw.json")), u64::MAX / 2);
    println!("write_kill: {ROUNDS} kills, {rounds_with_leftover} left a temp file; last seqs {last_seq:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
