//! Least privilege: guard's read-only work (snapshot, check) needs uid 0
//! (the store is root's) and CAP_DAC_READ_SEARCH (to read files only root
//! may, such as a mode-0000 /etc/shadow), nothing else (DESIGN §4).

use anyhow::{bail, Result};

/// Bit numbers in the kernel's capability sets.
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;

/// The effective capability set from /proc; None where /proc is absent
/// (an alpm hook's chroot), then guard does not guess.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Refuses early, naming the capability, when guard runs as root but could
/// not read root's files: a snapshot missing /etc/shadow would look fine and
/// then restore nothing. An unprivileged user reading their own test root is
/// left alone.
pub fn require_read_caps() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let Some(eff) = effective_caps() else {
        return Ok(());
    };
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    if !has(CAP_DAC_READ_SEARCH) && !has(CAP_DAC_OVERRIDE) {
        bail!(
            "guard runs as root without CAP_DAC_READ_SEARCH, so it cannot read files only root may read (such as /etc/shadow); grant it that capability (AmbientCapabilities=CAP_DAC_READ_SEARCH, or setpriv --inh-caps=+dac_read_search --ambient-caps=+dac_read_search)"
        );
    }
    Ok(())
}
