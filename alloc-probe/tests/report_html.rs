//! The HTML report and the flame graphs of a real scenario run, rendered by
//! headless Chromium: the leak's `file:line` is in the rendered text (the
//! report's first element), the page logs no console message, and it makes
//! no request of its own. Needs `chromium`; without it the test says so and
//! passes, unless `CI` is set.
//!
//! How console errors and requests are caught: Chromium runs with
//! `--enable-logging=stderr --v=0`, which prints every console message
//! (errors, uncaught exceptions, Content-Security-Policy refusals) as an
//! `INFO:CONSOLE` line, and with `--log-net-log`, which records every URL
//! request. A control page with a `console.error`, an uncaught exception
//! and an image on a loopback URL proves both detectors fire. Chromium's
//! own background requests (update and account checks) are sent to a dead
//! loopback proxy and a resolver that resolves nothing, and are told apart
//! by host. The files are also scanned for `src`/`href`/`url(`/`@import`
//! naming anything but the page itself.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium's own service hosts: it asks them whatever the page is.
const CHROMIUM_HOSTS: &[&str] =
    &["clients2.google.com", "update.googleapis.com", "accounts.google.com", "clients1.google.com", "www.google.com"];

fn have_chromium() -> bool {
    let ok = Command::new("chromium").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if ok.is_ok_and(|s| s.success()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "report_html: `chromium` is not installed, and CI is set (install chromium, as .ci/run does)");
    eprintln!("report_html: skipped: `chromium` is not installed (apt-get install chromium); set CI=true to make this a failure");
    false
}

/// What Chromium made of one file.
#[derive(Debug)]
struct Rendered {
    dom: String,
    console: Vec<String>,
    requests: Vec<String>,
}

/// Renders `file` headless, with a deadline, in a profile of its own.
fn render(file: &Path, work: &Path, extra: &[&str]) -> Rendered {
    let profile = tempfile::tempdir_in(work).unwrap();
    let netlog = profile.path().join("net.json");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-pings",
            "--disable-domain-reliability",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(extra)
        .arg("--dump-dom")
        .arg(file)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium still running after 120 s on {}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed on {}: {stderr}", file.display());
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    let mut requests: Vec<String> = Vec::new();
    for part in log.split("\"url\":\"").skip(1) {
        let url = part.split('"').next().unwrap_or("").to_string();
        let host = url.split("://").nth(1).and_then(|r| r.split(['/', ':', '?']).next()).unwrap_or("");
        if !CHROMIUM_HOSTS.contains(&host) && !requests.contains(&url) {
            requests.push(url);
        }
    }
    Rendered { dom: String::from_utf8_lossy(&out.stdout).into_owned(), console, requests }
}

/// URLs that a file names for loading: `src=`, `href=`, `url(`, `@import`
/// (namespace URIs in `xmlns` and the SVG DOCTYPE load nothing).
fn loaded_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["src=\"", "href=\"", "src='", "href='", "url(", "@import"] {
        for part in text.split(key).skip(1) {
            let end = part.find(['"', '\'', ')', ';', ' ']).unwrap_or(part.len());
            let target = part[..end].trim_start_matches(['"', '\'']);
            if !target.starts_with('#') && !target.starts_with("data:") {
                out.push(format!("{key}{target}"));
            }
        }
    }
    out
}

/// The visible text of a dumped DOM: tags dropped, entities decoded.
fn text_of(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&gt;", ">").replace("&lt;", "<").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[test]
fn report_and_flame_graphs_render_in_chromium() {
    if !have_chromium() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();

    // The detectors fire on a page that misbehaves.
    let control = work.join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><p>control</p><img src=\"http://127.0.0.1:9/pixel.png\">\
         <script>console.error('boom'); undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let r = render(&control, work, &[]);
    assert!(r.console.iter().any(|l| l.contains("boom")), "console.error caught: {r:#?}");
    assert!(r.console.iter().any(|l| l.contains("undefinedFunction")), "exception caught: {r:#?}");
    assert!(r.requests.iter().any(|u| u.contains("127.0.0.1:9/pixel.png")), "request caught: {r:#?}");
    assert_eq!(loaded_urls(&std::fs::read_to_string(&control).unwrap()), ["src=\"http://127.0.0.1:9/pixel.png"]);

    // A real run of the background_tasks scenario.
    let dir = work.join("background_tasks");
    probe(["scenario", "background_tasks", "--steps", "6", "--interval-ms", "40", "--out", &arg(&dir)]).ok();
    let line = marker_line(&scenario_source("background_tasks"), "LEAK: background_tasks");
    let site = format!("background_tasks.rs:{line}");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("snapshot-"))
        .collect();
    snaps.sort();
    let (first, last) = (snaps.first().unwrap(), snaps.last().unwrap());
    let (report, heap, growth) = (work.join("report.html"), work.join("heap.svg"), work.join("growth.svg"));
    probe(["report", &arg(&dir), "-o", &arg(&report)]).ok();
    probe(["flamegraph", &arg(last), "-o", &arg(&heap)]).ok();
    probe(["flamegraph", &arg(first), &arg(last), "-o", &arg(&growth)]).ok();

    for file in [&report, &heap, &growth] {
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(loaded_urls(&text), Vec::<String>::new(), "{} loads nothing", file.display());
        assert!(!text.contains("<script src") && !text.contains("<link"), "{}", file.display());
        let r = render(file, work, &[]);
        assert_eq!(r.console, Vec::<String>::new(), "{}: no console message", file.display());
        let own = format!("file://{}", file.display());
        let foreign: Vec<&String> = r.requests.iter().filter(|u| **u != own).collect();
        assert!(foreign.is_empty(), "{}: requests {foreign:?}", file.display());
        let shown = text_of(&r.dom);
        assert!(shown.contains(&site), "{}: {site} not in the rendered text", file.display());
    }

    // The report's first element is the headline naming the leak.
    let r = render(&report, work, &[]);
    let body = &r.dom[r.dom.find("<body").expect("a body")..];
    let first_tag = body[body.find('>').unwrap() + 1..].trim_start();
    assert!(first_tag.starts_with("<h1"), "first element: {}", &first_tag[..first_tag.len().min(200)]);
    let headline = text_of(&first_tag[..first_tag.find("</h1>").unwrap()]);
    assert!(headline.trim_start().starts_with("Likely leak: "), "{headline}");
    assert!(headline.contains(&format!("{site} ")), "{headline}");
    assert!(!report.with_extension("html.tmp").exists());

    // The interactive SVG's script ran: it sets up the frames' handlers and
    // leaves the details line it writes to.
    let r = render(&heap, work, &[]);
    assert!(r.dom.contains("id=\"details\""), "inferno's SVG rendered");
}
