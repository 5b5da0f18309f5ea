//! What one snapshot records: the manifest model and its serde form.
//!
//! The on-disk layout is documented in `snapshots/FORMAT.md`; a change here
//! that older stores cannot read needs a new `FORMAT_VERSION` and a reader for
//! the old one (the golden stores under `snapshots/` are the test).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sysroot::SysPath;

/// Version of the snapshot document. Readers accept every version up to this.
/// Version 2 added `ledger_from` to the manifest.
pub const FORMAT_VERSION: u32 = 2;

/// Why a snapshot was taken; decides which one is the baseline (DESIGN §2).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    Manual,
    Pre,
    Post,
    Timer,
    Safety,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Manual => "manual",
            SnapshotKind::Pre => "pre",
            SnapshotKind::Post => "post",
            SnapshotKind::Timer => "timer",
            SnapshotKind::Safety => "safety",
        }
    }

    /// Only what an admin took by hand or a hook took *before* a transaction
    /// can be the default baseline: a timer snapshot taken after a bad
    /// upgrade must not hide the damage.
    pub fn is_baseline_candidate(self) -> bool {
        matches!(self, SnapshotKind::Manual | SnapshotKind::Pre)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::CharDevice => "char-device",
            FileKind::BlockDevice => "block-device",
            FileKind::Socket => "socket",
        }
    }
}

/// Seconds and nanoseconds since the epoch.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default, PartialOrd, Ord)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// One recorded filesystem entry.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: SysPath,
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub mtime: Time,
    pub size: u64,
    /// blake3 of the content, regular files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Symlink target, raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SysPathRaw>,
    /// Device number of char/block devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Every readable xattr, value hex-encoded (POSIX ACLs and
    /// `security.capability` included).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// `security.capability` decoded for humans (`cap_net_bind_service=ep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<String>,
    /// Packages that own the path; empty for an admin's own file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Identity for the stat cache: a file whose (dev, ino, size, mtime,
    /// ctime) is unchanged has unchanged content and xattrs.
    pub dev: u64,
    pub ino: u64,
    pub ctime: Time,
}

impl Entry {
    pub fn is_world_readable(&self) -> bool {
        self.mode & 0o004 != 0
    }
}

/// A symlink target: raw bytes, relative or absolute, never normalised.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SysPathRaw(pub Vec<u8>);

impl Serialize for SysPathRaw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::sysroot::bytes_serde::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for SysPathRaw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::sysroot::bytes_serde::deserialize(d).map(SysPathRaw)
    }
}

impl std::fmt::Display for SysPathRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::sysroot::escape_bytes(&self.0))
    }
}

/// A file outside the config scope that carries a `security.capability`
/// xattr, with enough identity to tell "same file lost its caps" from "the
/// package replaced the file".
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct CapEntry {
    pub path: SysPath,
    /// Raw `security.capability`, hex.
    pub xattr: String,
    pub caps: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Time,
    pub dev: u64,
    pub ino: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
}

/// A unit enabled through a `*.wants/` or `*.requires/` link.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct EnabledUnit {
    pub unit: String,
    /// The target or unit whose `.wants`/`.requires` directory holds the link.
    pub wanted_by: String,
    /// Where the link lives (`/etc/systemd/system/multi-user.target.wants/x`).
    pub link: SysPath,
}

/// Something the scan could not read; reported and counted, never fatal.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScanError {
    pub path: SysPath,
    pub error: String,
}

/// The packages of the root, read from its own database.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// `pacman`, `rpm`, `dpkg`; empty when the root has none.
    #[serde(default)]
    pub managers: Vec<String>,
    /// name → version
    #[serde(default)]
    pub installed: BTreeMap<String, String>,
    /// Identity (path, size, mtime, inode) of the package databases when
    /// they were read: equal stamps mean equal ownership, so a scan can
    /// reuse the recorded owners instead of reading ~100k packaged paths.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stamp: String,
}

/// A libvirt guest cloned as part of the snapshot (`--vm`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    pub domain: String,
    pub uri: String,
    pub clone: String,
    pub source_xml: String,
    #[serde(default)]
    pub disks: Vec<VmDisk>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct VmDisk {
    pub target: String,
    pub source: String,
    pub copy: String,
}

/// A snapshot: header, then everything recorded.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub kind: SnapshotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The root as the host saw it when the snapshot was taken.
    pub root: String,
    pub guard_version: String,
    /// The scope roots that were walked (`/etc`, `/usr/lib/pam.d`, …).
    #[serde(default)]
    pub scope: Vec<SysPath>,
    #[serde(default)]
    pub os_release: BTreeMap<String, String>,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub units: Vec<EnabledUnit>,
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub caps: Vec<CapEntry>,
    /// When the capability ledger was carried forward from an earlier
    /// snapshot's full walk of the caps roots (and its files re-probed)
    /// instead of walked by this one: that snapshot's id. `timer`
    /// snapshots do this (see `app::ledger_plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_from: Option<String>,
    #[serde(default)]
    pub errors: Vec<ScanError>,
    /// xattrs in namespaces guard could not read (`trusted.*` without
    /// CAP_SYS_ADMIN): counted and said, not fatal.
    #[serde(default)]
    pub unreadable_xattrs: u64,
    #[serde(default)]
    pub vms: Vec<VmRecord>,
}

impl Manifest {
    /// Entry by path; entries are kept sorted by path.
    pub fn entry(&self, p: &SysPath) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.cmp(p))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.caps.sort_by(|a, b| a.path.cmp(&b.path));
        self.units.sort();
    }

    /// Every object hash this snapshot needs, with the paths that need it.
    pub fn objects(&self) -> BTreeMap<&str, Vec<&SysPath>> {
        let mut m: BTreeMap<&str, Vec<&SysPath>> = BTreeMap::new();
        for e in &self.entries {
            if let Some(h) = &e.blake3 {
                m.entry(h.as_str()).or_default().push(&e.path);
            }
        }
        m
    }

    /// Sum of the sizes of the regular files recorded.
    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.size)
            .sum()
    }

    pub fn os_name(&self) -> String {
        self.os_release
            .get("PRETTY_NAME")
            .or_else(|| self.os_release.get("NAME"))
            .cloned()
            .unwrap_or_else(|| "unknown system".into())
    }
}

/// The header of a snapshot file: enough to list and pick a baseline without
/// hashing the whole manifest.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Header {
    pub id: String,
    pub created: String,
    pub kind: SnapshotKind,
    #[serde(default)]
    pub label: Option<String>,
    /// Guests cloned with the snapshot (`DOMAIN -> CLONE`), so `list` can
    /// show them without reading the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<String>,
}

impl From<&Manifest> for Header {
    fn from(m: &Manifest) -> Header {
        Header {
            id: m.id.clone(),
            created: m.created.clone(),
            kind: m.kind,
            label: m.label.clone(),
            vms: m
                .vms
                .iter()
                .map(|v| format!("{} -> {}", v.domain, v.clone))
                .collect(),
        }
    }
}
