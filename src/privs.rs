//! Least privilege: guard's read-only work (snapshot, check) needs uid 0
//! (the store is root's) and CAP_DAC_READ_SEARCH (to read files only root
//! may, such as a mode-0000 /etc/shadow), nothing else (DESIGN §4). Run as
//! root with every capability, `guard snapshot` and `guard check` give up
//! the others themselves, so a bug in parsing a hostile root's files, or a
//! package manager they query, cannot use them.

use anyhow::{bail, Context as _, Result};
use rustix::io::Errno;
use rustix::thread::{self, CapabilitySet, CapabilitySets};

/// The calling thread's capability sets, from the kernel (capget) rather
/// than /proc: /proc is missing in an alpm hook's chroot or an unshared
/// mount namespace, and a check that gives up there is a check anyone can
/// turn off.
fn caps() -> Result<CapabilitySets> {
    thread::capabilities(None).context("cannot read guard's capabilities")
}

/// Keeps CAP_DAC_READ_SEARCH (or, lacking it, CAP_DAC_OVERRIDE, which also
/// reads everything) and, for guard itself only, CAP_SYS_ADMIN when it has
/// it: the kernel shows `trusted.*` xattrs to nothing less, and a snapshot
/// taken by a full root must not lose what it could read (restore puts them
/// back). Every other capability goes from the effective, permitted,
/// inheritable, ambient and bounding sets, and no_new_privs is set. The
/// bounding set matters most: a root process that execs gets its whole
/// bounding set back as permitted, so without it every `rpm`/`pacman` guard
/// runs would have all capabilities again; they get CAP_DAC_READ_SEARCH.
///
/// Capabilities are per thread and a new thread copies its creator's, so
/// this must run before guard starts any thread (the walk's, a spinner's):
/// the caller does it first thing. Not for commands that write the system
/// (restore, run, a snapshot with `--vm` cloning a guest): they need more.
pub fn drop_to_read_caps() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let now = caps()?;
    let read = if now.permitted.contains(CapabilitySet::DAC_READ_SEARCH) {
        CapabilitySet::DAC_READ_SEARCH
    } else {
        now.permitted & CapabilitySet::DAC_OVERRIDE
    };
    let own = read | (now.permitted & CapabilitySet::SYS_ADMIN);
    // Bounding set first: shrinking it needs CAP_SETPCAP, dropped below.
    // Without CAP_SETPCAP (a bounding set someone already cut, as the units
    // and setpriv do) it stays as it was given.
    if now.effective.contains(CapabilitySet::SETPCAP) {
        for bit in 0..64u32 {
            let cap = CapabilitySet::from_bits_retain(1u64 << bit);
            if read.contains(cap) {
                continue;
            }
            match thread::remove_capability_from_bounding_set(cap) {
                Ok(()) => {}
                // past the kernel's last capability
                Err(Errno::INVAL) => break,
                Err(e) => bail!("cannot drop capability {bit} from the bounding set: {e}"),
            }
        }
    }
    // Ambient capabilities would survive an exec; EINVAL: a kernel older
    // than 4.3 has none.
    match thread::clear_ambient_capability_set() {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => bail!("cannot clear the ambient capabilities: {e}"),
    }
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: own,
            permitted: own,
            inheritable: CapabilitySet::empty(),
        },
    )
    .context("cannot drop capabilities")?;
    // setuid and file-capability binaries then cannot raise a child above
    // what is left.
    thread::set_no_new_privs(true).context("cannot set no_new_privs")?;
    Ok(())
}

/// Refuses early, naming the capability, when guard runs as root but could
/// not read root's files: a snapshot missing /etc/shadow would look fine and
/// then restore nothing. An unprivileged user reading their own test root is
/// left alone.
pub fn require_read_caps() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let eff = caps()?.effective;
    if !eff.intersects(CapabilitySet::DAC_READ_SEARCH | CapabilitySet::DAC_OVERRIDE) {
        bail!(
            "guard runs as root without CAP_DAC_READ_SEARCH, so it cannot read files only root may read (such as /etc/shadow); grant it that capability (AmbientCapabilities=CAP_DAC_READ_SEARCH, or setpriv --inh-caps=+dac_read_search --ambient-caps=+dac_read_search)"
        );
    }
    Ok(())
}
