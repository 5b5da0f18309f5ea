//! Rules for a block device a clone's disk is copied onto: big enough, not
//! another guest's disk (by device number, whatever name either side uses),
//! not held by the system, and not carrying a filesystem or partition table
//! unless the person types its name (DESIGN §2, destructive steps).

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::exec::{self, Cmd};
use crate::ui::Ui;

/// Which disk a path is on this host. Names are no identity: /dev/vg/x,
/// /dev/mapper/vg-x, /dev/dm-3 and a by-id link are one device, so a device
/// is its device number (and the whole disk's, for a partition) and a file
/// its (st_dev, st_ino).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskId {
    Block { dev: u64, whole: u64 },
    File { dev: u64, ino: u64 },
}

impl DiskId {
    /// The disk `path` names (symlinks followed); None when it does not exist.
    pub fn of(path: &Path) -> Option<DiskId> {
        std::fs::metadata(path).ok().map(|m| DiskId::of_meta(&m))
    }

    pub fn of_meta(m: &Metadata) -> DiskId {
        if m.file_type().is_block_device() {
            DiskId::Block {
                dev: m.rdev(),
                whole: whole_disk(m.rdev()),
            }
        } else {
            DiskId::File {
                dev: m.dev(),
                ino: m.ino(),
            }
        }
    }

    /// Whether writing one overwrites data of the other: the same disk, or a
    /// whole disk and one of its partitions. Two partitions of one disk do
    /// not overlap.
    pub fn overlaps(&self, o: &DiskId) -> bool {
        match (self, o) {
            (DiskId::Block { dev: a, whole: wa }, DiskId::Block { dev: b, whole: wb }) => {
                a == b || a == wb || wa == b
            }
            _ => self == o,
        }
    }
}

/// The whole disk a partition belongs to (sysfs: a partition's directory
/// has a `partition` file and sits inside its disk's), else `rdev` itself.
fn whole_disk(rdev: u64) -> u64 {
    let sys = format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev));
    if !Path::new(&sys).join("partition").exists() {
        return rdev;
    }
    std::fs::read_to_string(format!("{sys}/../dev"))
        .ok()
        .and_then(|t| {
            let (ma, mi) = t.trim().split_once(':')?;
            Some(libc::makedev(ma.parse().ok()?, mi.parse().ok()?))
        })
        .unwrap_or(rdev)
}

/// Opens a block-device target for writing, exclusively: the kernel then
/// refuses it (EBUSY) while it is mounted, an LVM, md or dm-crypt member, or
/// opened by another guard run, none of which a blank signature shows; and
/// while guard holds it nobody else can claim it. The copy writes through
/// this handle, never the path again, so the name cannot be swapped under it.
pub fn open_target(dev: &Path) -> Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
    {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => bail!(
            "{} is in use by the system (mounted, part of LVM, md or dm-crypt, or held by another program or guard run): refusing to overwrite it",
            dev.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {}", dev.display())),
    }
}

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

/// Refuses a target that is (or overlaps) a disk of the guests `used_by`.
pub fn refuse_used(dev: &Path, used_by: &[String]) -> Result<()> {
    if !used_by.is_empty() {
        bail!(
            "{} is already a disk of guest {}: refusing to overwrite it",
            dev.display(),
            used_by.join(", ")
        );
    }
    Ok(())
}

/// Checks a block-device target `f` (opened by [`open_target`] from
/// `dev`). Asks the person to type the device's name when it carries data.
pub fn check_target(dev: &Path, f: &File, needed: u64, ui: &dyn Ui) -> Result<()> {
    if !f.metadata()?.file_type().is_block_device() {
        bail!("{} is not a block device", dev.display());
    }
    let size = super::copy::size_of(f)?;
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
