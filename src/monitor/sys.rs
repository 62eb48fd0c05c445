//! The monitor's few libc calls: a signal's disposition, the `atexit` hook,
//! `RLIMIT_AS`. The only `unsafe` of `src/monitor`.

#![allow(unsafe_code)]

/// What a signal does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Disposition {
    Default,
    Ignore,
    /// A handler the program (or a library) installed.
    Handler,
}

/// The disposition of `signal`, read without changing it.
pub(super) fn disposition(signal: i32) -> Option<Disposition> {
    // SAFETY: `sigaction` with a null new action only writes the current
    // one into `old`, a valid, writable, zero-initialized struct (all-zero
    // is a valid `sigaction`: a null handler, empty mask, no flags).
    let old = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
            return None;
        }
        old
    };
    Some(match old.sa_sigaction {
        libc::SIG_DFL => Disposition::Default,
        libc::SIG_IGN => Disposition::Ignore,
        _ => Disposition::Handler,
    })
}

/// Registers `hook` to run inside `exit()`; `false` if libc refused.
pub(super) fn at_exit(hook: extern "C" fn()) -> bool {
    // SAFETY: `hook` is a plain `extern "C" fn()` with a 'static lifetime
    // (code, not a closure); it catches its own panics, so none unwinds
    // into libc.
    unsafe { libc::atexit(hook) == 0 }
}

/// The soft `RLIMIT_AS`, if there is one.
pub(super) fn address_space_limit() -> Option<u64> {
    // SAFETY: all-zero is a valid `rlimit`; `getrlimit` writes into it and
    // reads nothing else.
    let lim = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_AS, &mut lim) != 0 {
            return None;
        }
        lim
    };
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as u64)
}
