//! Ctrl-C, SIGTERM and SIGHUP during a clone: instead of dying with a
//! half-written copy on disk (which also blocks the next run, since guard
//! never overwrites a file), guard notes the signal and the copy stops at
//! its next chunk with an error, so the caller's normal rollback runs.
//!
//! Plain `sigaction` through libc (already a dependency) rather than a crate
//! such as signal-hook: the handler only stores to an atomic flag, which is
//! async-signal-safe, and nothing else is needed.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP set the flag [`check`] reports
/// instead of ending the process.
pub fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler is an
        // `extern "C" fn(c_int)` that only touches an atomic.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // restart interrupted reads and writes: the flag is polled
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "installing a handler for signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// An error once one of the signals arrived.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted by a signal");
    }
    Ok(())
}
