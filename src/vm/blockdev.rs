//! Rules for a block device a clone's disk is copied onto: big enough, not
//! another guest's disk, and not carrying a filesystem or partition table
//! unless the person types its name (DESIGN §2, destructive steps).

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::exec::{self, Cmd};
use crate::ui::Ui;

/// What `blkid -p` finds on a device: a filesystem, LUKS header, partition
/// table… ("" when the device is blank).
pub fn signature(dev: &Path) -> Result<String> {
    let out = exec::output(&Cmd::new("blkid").args(["-p", "-o", "export"]).arg(dev))?;
    match out.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut found: Vec<String> = text
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("TYPE=")
                        .or_else(|| l.strip_prefix("PTTYPE="))
                        .map(str::to_string)
                })
                .collect();
            if found.is_empty() {
                found.push("unknown signature".into());
            }
            Ok(found.join(", "))
        }
        // 2: nothing found
        Some(2) => Ok(String::new()),
        _ => bail!(
            "blkid -p {} failed: {}",
            dev.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Checks a block-device target; `used_by` names the guests whose disks
/// already point at it. Asks the person to type the device's name when it
/// carries data.
pub fn check_target(dev: &Path, needed: u64, used_by: &[String], ui: &dyn Ui) -> Result<()> {
    let f = File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
    if !f.metadata()?.file_type().is_block_device() {
        bail!("{} is not a block device", dev.display());
    }
    if !used_by.is_empty() {
        bail!(
            "{} is already a disk of guest {}: refusing to overwrite it",
            dev.display(),
            used_by.join(", ")
        );
    }
    let size = super::copy::size_of(&f)?;
    if size < needed {
        bail!(
            "{} holds {size} bytes but the disk needs {needed}: too small",
            dev.display()
        );
    }
    let d = dev.to_string_lossy();
    if d.starts_with("/dev/mapper/") && !d.starts_with("/dev/mapper/cr_") {
        ui.say(&format!(
            "note: {d} is a device-mapper device not named cr_…; for a LUKS move the opened mapping (/dev/mapper/cr_NAME) is the expected target"
        ));
    }
    let sig = signature(dev)?;
    if !sig.is_empty() {
        let what = format!(
            "{} carries {sig}; copying the disk onto it destroys that",
            dev.display()
        );
        if !ui.confirm_destructive("vm-clone", &d, &what)? {
            bail!("{what}: not confirmed, refused");
        }
    }
    Ok(())
}
