//! The libvirt-free half of the vm commands: reading and rewriting domain
//! XML, planning a clone (name, UUID, MACs, which disks are copied where),
//! the sparse verified disk copy and the block-device target rules. The
//! libvirt calls live in the `guard-vm` binary only, so the `guard` binary
//! never links libvirt (DESIGN §2; asserted by tests/vm_link.rs).

pub mod blockdev;
pub mod copy;
pub use crate::interrupt;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use xml::{DomainXml, NewSource, Rewrite};

/// Random bytes from the kernel (a clone's UUID and MACs).
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(b)
}

/// A random (version 4) UUID.
pub fn new_uuid() -> Result<String> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A random MAC with QEMU/KVM's 52:54:00 prefix, unique against `taken`
/// (lower-case, every defined guest's MACs).
pub fn new_mac(taken: &BTreeSet<String>) -> Result<String> {
    for _ in 0..1000 {
        let b: [u8; 3] = random_bytes()?;
        let mac = format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]);
        if !taken.contains(&mac) {
            return Ok(mac);
        }
    }
    bail!("no free MAC address found")
}

/// `NAME-clone`, then `NAME-clone1`, … : the first name no guest has.
pub fn default_name(name: &str, taken: &BTreeSet<String>) -> String {
    let base = format!("{name}-clone");
    if !taken.contains(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken.contains(n))
        .expect("an unbounded range")
}

/// What happens to one disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskPlan {
    pub target: String,
    pub device: String,
    pub source: Option<String>,
    pub format: Option<String>,
    /// `copy` or `share`
    pub action: String,
    /// why a disk is shared
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<NewSource>,
    /// the path the copy lands at (block device, file, or volume path)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
    /// the storage pool the copy is created in as a volume: the source's
    /// pool, only when no `--disk-target` sends the disk elsewhere
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// The host's view of a disk source a plan needs: is it in a libvirt pool?
#[derive(Debug, Clone)]
pub struct PoolInfo {
    pub pool: String,
    /// the pool's target directory (dir pools) for new volumes
    pub dir: Option<String>,
}

/// Inputs of a clone plan the caller gathers from libvirt.
#[derive(Debug, Default)]
pub struct PlanInput {
    pub new_name: Option<String>,
    /// TARGET=PATH from `--disk-target`
    pub disk_targets: Vec<String>,
    /// every defined guest's name
    pub names: BTreeSet<String>,
    /// every defined guest's MACs (lower-case)
    pub macs: BTreeSet<String>,
    /// disk path → pool it lives in (only for pool-managed volumes)
    pub pools: BTreeMap<String, PoolInfo>,
    /// `POOL/VOLUME` of `<disk type='volume'>` → the volume's path
    pub volumes: BTreeMap<String, String>,
}

/// A complete clone plan: the new XML and what to copy where.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub domain: String,
    pub name: String,
    pub uuid: String,
    pub macs: Vec<String>,
    pub disks: Vec<DiskPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvram: Option<(String, String)>,
    pub xml: String,
}

fn parse_targets(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for s in list {
        let Some((t, p)) = s.split_once('=') else {
            bail!("--disk-target wants TARGET=PATH (e.g. vda=/dev/mapper/cr_mail), got {s:?}");
        };
        if t.is_empty() || !p.starts_with('/') {
            bail!("--disk-target {s:?}: TARGET must be a disk target and PATH absolute");
        }
        if m.insert(t.to_string(), p.to_string()).is_some() {
            bail!("--disk-target names {t} twice");
        }
    }
    Ok(m)
}

/// Plans a clone of the guest `xml`.
pub fn plan(xml_text: &str, input: &PlanInput) -> Result<Plan> {
    let d: DomainXml = xml::parse(xml_text)?;
    let name = match &input.new_name {
        Some(n) => {
            if input.names.contains(n) {
                bail!("a guest named {n} already exists: choose another --name");
            }
            n.clone()
        }
        None => default_name(&d.name, &input.names),
    };
    if name.is_empty() || name.contains('/') {
        bail!("{name:?} is not a usable guest name");
    }
    let mut targets = parse_targets(&input.disk_targets)?;
    let mut taken = input.macs.clone();
    let mut macs = Vec::new();
    for _ in &d.nics {
        let m = new_mac(&taken)?;
        taken.insert(m.clone());
        macs.push(m);
    }
    let mut disks = Vec::new();
    let mut news = Vec::new();
    let mut dests = BTreeSet::new();
    for disk in &d.disks {
        let share = if disk.readonly || disk.device == "cdrom" || disk.device == "floppy" {
            Some("read-only")
        } else if disk.shareable {
            Some("shareable")
        } else if disk.path.is_none() && disk.volume.is_none() {
            Some("empty")
        } else if disk.kind == "network" {
            Some("network disk (not copied)")
        } else {
            None
        };
        let explicit = targets.remove(&disk.target);
        if let Some(reason) = share {
            if explicit.is_some() {
                bail!(
                    "disk {} is {reason} and is shared, not copied: drop its --disk-target",
                    disk.target
                );
            }
            disks.push(DiskPlan {
                target: disk.target.clone(),
                device: disk.device.clone(),
                source: disk.path.clone(),
                format: disk.format.clone(),
                action: "share".into(),
                reason: Some(reason.into()),
                to: None,
                to_path: None,
                pool: None,
            });
            news.push(None);
            continue;
        }
        let src = match (&disk.path, &disk.pool, &disk.volume) {
            (Some(p), _, _) => p.clone(),
            (None, Some(pool), Some(vol)) => match input.volumes.get(&format!("{pool}/{vol}")) {
                Some(p) => p.clone(),
                None => bail!(
                    "disk {}: volume {vol} not found in pool {pool}",
                    disk.target
                ),
            },
            _ => bail!("disk {}: no source to copy", disk.target),
        };
        let pool = input.pools.get(&src);
        let into_pool = explicit
            .is_none()
            .then(|| pool.map(|pi| pi.pool.clone()))
            .flatten();
        let (to, to_path) = match explicit {
            // a device by any name (a by-id or LVM link outside /dev too)
            Some(p) if p.starts_with("/dev/") || is_block_device(&p) => {
                (NewSource::Block { path: p.clone() }, p)
            }
            Some(p) => (NewSource::File { path: p.clone() }, p),
            None => {
                let p = rename_disk_path(&src, &d.name, &name);
                match (pool, disk.kind.as_str()) {
                    (Some(pi), _) => {
                        let vol = p.rsplit('/').next().unwrap_or(&p).to_string();
                        let dir = pi.dir.clone().unwrap_or_else(|| parent(&src));
                        let path = format!("{}/{}", dir.trim_end_matches('/'), vol);
                        if disk.kind == "volume" {
                            (NewSource::Volume { pool: pi.pool.clone(), volume: vol }, path)
                        } else if disk.kind == "block" || src.starts_with("/dev/") {
                            // a block-backed pool (logical, zfs): the new
                            // volume is a device too, a block source
                            (NewSource::Block { path: path.clone() }, path)
                        } else {
                            (NewSource::File { path: path.clone() }, path)
                        }
                    }
                    (None, "block") => bail!(
                        "disk {} is the block device {src}: name a target with --disk-target {}=PATH",
                        disk.target, disk.target
                    ),
                    (None, _) => (NewSource::File { path: p.clone() }, p),
                }
            }
        };
        if to_path == src || !dests.insert(to_path.clone()) {
            bail!(
                "disk {}: target {to_path} is the source or another disk's target",
                disk.target
            );
        }
        disks.push(DiskPlan {
            target: disk.target.clone(),
            device: disk.device.clone(),
            source: Some(src),
            format: disk.format.clone(),
            action: "copy".into(),
            reason: None,
            to: Some(to.clone()),
            to_path: Some(to_path),
            pool: into_pool,
        });
        news.push(Some(to));
    }
    if let Some(t) = targets.keys().next() {
        bail!("--disk-target {t}: the guest has no disk with that target");
    }
    let nvram = d
        .nvram
        .as_ref()
        .map(|p| (p.clone(), rename_path_nvram(p, &d.name, &name)));
    let uuid = new_uuid()?;
    let rw = Rewrite {
        old_name: d.name.clone(),
        name: name.clone(),
        uuid: uuid.clone(),
        macs: macs.clone(),
        disks: news,
        nvram: nvram.as_ref().map(|(_, n)| n.clone()),
    };
    let new_xml = xml::rewrite(xml_text, &rw)?;
    Ok(Plan {
        domain: d.name,
        name,
        uuid,
        macs,
        disks,
        nvram,
        xml: new_xml,
    })
}

fn is_block_device(p: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].into(),
        None => ".".into(),
    }
}

/// `…/mail.qcow2` of guest `mail` → `…/mail-clone.qcow2`; a file that does
/// not carry the guest's name keeps its name with the clone's as prefix.
pub fn rename_disk_path(src: &str, old: &str, new: &str) -> String {
    xml::rename_path(src, old, new)
}

fn rename_path_nvram(src: &str, old: &str, new: &str) -> String {
    xml::rename_path(src, old, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_macs() {
        let taken: BTreeSet<String> = ["mail-clone".to_string(), "mail-clone1".into()].into();
        assert_eq!(default_name("mail", &taken), "mail-clone2");
        assert_eq!(
            rename_disk_path("/v/mail.qcow2", "mail", "m2"),
            "/v/m2.qcow2"
        );
        assert_eq!(
            rename_disk_path("/v/disk0.img", "mail", "m2"),
            "/v/m2-disk0.img"
        );
        // a name inside the file name that is not its start is left alone
        assert_eq!(
            rename_disk_path("/v/a-mail.img", "mail", "m2"),
            "/v/m2-a-mail.img"
        );
        let all: BTreeSet<String> = (0..=255u32)
            .flat_map(|a| (0..=255u32).map(move |b| format!("52:54:00:{a:02x}:{b:02x}:00")))
            .collect();
        let m = new_mac(&all).unwrap();
        assert!(m.starts_with("52:54:00:") && !all.contains(&m));
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn a_disk_of_a_block_backed_pool_is_cloned_as_a_block_device() {
        let x = "<domain><name>g</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><devices>\
                 <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg/g'/><target dev='vda'/></disk>\
                 </devices></domain>";
        let mut input = PlanInput::default();
        input.pools.insert(
            "/dev/vg/g".into(),
            PoolInfo {
                pool: "vg".into(),
                dir: Some("/dev/vg".into()),
            },
        );
        let p = plan(x, &input).unwrap();
        assert_eq!(p.disks[0].to_path.as_deref(), Some("/dev/vg/g-clone"));
        assert_eq!(p.disks[0].pool.as_deref(), Some("vg"));
        let d = xml::parse(&p.xml).unwrap();
        assert_eq!(d.disks[0].kind, "block", "{}", p.xml);
        assert_eq!(d.disks[0].path.as_deref(), Some("/dev/vg/g-clone"));
    }

    #[test]
    fn disk_target_syntax() {
        assert!(parse_targets(&["vda".into()]).is_err());
        assert!(parse_targets(&["vda=rel/path".into()]).is_err());
        assert!(parse_targets(&["vda=/a".into(), "vda=/b".into()]).is_err());
        assert_eq!(
            parse_targets(&["vda=/dev/mapper/cr_mail".into()]).unwrap()["vda"],
            "/dev/mapper/cr_mail"
        );
    }
}
