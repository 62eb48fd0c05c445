//! A traced multi-threaded program forks, with `libc::fork` and with
//! `Command::pre_exec`: the child allocates and frees and exits cleanly,
//! with no deadlock on a tracker lock another thread held at the fork
//! (before the fix: a futex wait in the first run tried). The child is
//! untraced (`start()` there is ignored); every child runs under a deadline
//! and is killed past it, so the test cannot hang.

use leaktrace::Config;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits for `pid` up to the deadline; kills it past that. Its exit status.
fn wait_with_deadline(pid: libc::pid_t) -> Result<i32, String> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain syscall with an out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                Ok(libc::WEXITSTATUS(status))
            } else {
                Err(format!("child {pid} ended by signal {}", libc::WTERMSIG(status)))
            };
        }
        if start.elapsed() > DEADLINE {
            // SAFETY: `pid` is our un-reaped child (waitpid has not returned it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err(format!("child {pid} still running after {DEADLINE:?}: deadlock"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn churn_in_child() -> i32 {
    let mut kept = Vec::new();
    for i in 0..20_000usize {
        let v = vec![i as u8; 16 + i % 512];
        if i % 7 == 0 {
            kept.push(v);
        }
    }
    leaktrace::start(Config::default()); // ignored in a forked child
    let snap = leaktrace::take_snapshot("in the child");
    if leaktrace::is_tracing() || !snap.traces.is_empty() {
        return 3;
    }
    drop(kept);
    0
}

#[test]
fn a_forked_child_allocates_without_deadlock() {
    leaktrace::start(Config::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Relaxed) {
                    keep.push(vec![t as u8; 8 + (i * 31) % 2000]);
                    if keep.len() > 256 {
                        keep.drain(..128);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..40 {
        // SAFETY: the child only allocates, frees and exits with `_exit`;
        // that the allocator is usable there is what this test checks.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = churn_in_child();
            // SAFETY: ends the child without running the parent's atexit
            // handlers or test harness.
            unsafe { libc::_exit(code) };
        }
        assert_eq!(wait_with_deadline(pid), Ok(0), "round {round}");
        // `Command` with `pre_exec`: the closure allocates in the child.
        let mut cmd = std::process::Command::new("true");
        // SAFETY: the closure allocates (which this test checks is safe in
        // the child) and does nothing else.
        unsafe {
            cmd.pre_exec(|| {
                let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
                std::hint::black_box(v);
                Ok(())
            })
        };
        let child = cmd.spawn().expect("spawn true");
        let pid = child.id() as libc::pid_t;
        // Reaped by `wait_with_deadline`; the handle must not wait again.
        std::mem::forget(child);
        assert_eq!(wait_with_deadline(pid), Ok(0), "pre_exec round {round}");
    }
    stop.store(true, Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(leaktrace::is_tracing(), "the parent keeps tracing");
}
