//! Ctrl-C, SIGTERM and SIGHUP during work that must stop at a boundary
//! rather than die in the middle: a guest clone stops at its next chunk
//! with an error, so the caller's normal rollback runs (instead of leaving a
//! half-written copy, which also blocks the next run, since guard never
//! overwrites a file); a restore stops between two items and says what it
//! did and what it did not.
//!
//! Plain `sigaction` through libc (already a dependency) rather than a crate
//! such as signal-hook: the handler only stores to an atomic, which is
//! async-signal-safe, and nothing else is needed.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Result};

/// The signal that arrived (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    INTERRUPTED.store(sig, Ordering::SeqCst);
}

/// Installs `on_signal` for [`SIGNALS`]; returns the actions it replaced.
fn install() -> Result<Vec<(libc::c_int, libc::sigaction)>> {
    let mut old = Vec::new();
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the handler is an
        // `extern "C" fn(c_int)` that only touches an atomic.
        let (rc, prev) = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let mut prev: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // restart interrupted reads and writes: the flag is polled
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            (libc::sigaction(sig, &sa, &mut prev), prev)
        };
        if rc != 0 {
            bail!(
                "installing a handler for signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
        old.push((sig, prev));
    }
    Ok(old)
}

/// From now on SIGINT, SIGTERM and SIGHUP set the flag [`check`] reports
/// instead of ending the process.
pub fn catch_signals() -> Result<()> {
    install().map(drop)
}

/// The signals caught (as [`catch_signals`]) while this lives; dropped, the
/// actions before it are back, so a process that goes on (a playbook walk
/// after its restore step) still ends on SIGTERM as before.
pub struct Caught(Vec<(libc::c_int, libc::sigaction)>);

/// Catches the signals until the returned guard is dropped.
pub fn catch_for_now() -> Result<Caught> {
    // (a signal an earlier stretch caught was answered there)
    INTERRUPTED.store(0, Ordering::SeqCst);
    install().map(Caught)
}

impl Drop for Caught {
    fn drop(&mut self) {
        for (sig, prev) in &self.0 {
            // SAFETY: `prev` is the action the kernel gave back for `sig`.
            unsafe {
                libc::sigaction(*sig, prev, std::ptr::null_mut());
            }
        }
    }
}

/// The name of the signal that arrived, if one did.
pub fn arrived() -> Option<&'static str> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGHUP => Some("SIGHUP"),
        _ => Some("a signal"),
    }
}

/// An error once one of the signals arrived.
pub fn check() -> Result<()> {
    if arrived().is_some() {
        bail!("interrupted by a signal");
    }
    Ok(())
}
