//! What one snapshot records: the manifest model and its serde form.
//!
//! The on-disk layout is documented in `snapshots/FORMAT.md`; a change here
//! that older stores cannot read needs a new `FORMAT_VERSION` and a reader for
//! the old one (the golden stores under `snapshots/` are the test).

use std::collections::{BTreeMap, BTreeSet};

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

/// One recorded filesystem entry. Stored as an array of its fields in this
/// order (format 2; see FORMAT.md): an object per entry spelled every field
/// name ~1,500 times in a manifest, which made it half keys and slowed every
/// load and write. Format 1's object form is still read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub path: SysPath,
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub mtime: Time,
    pub size: u64,
    /// blake3 of the content, regular files only.
    pub blake3: Option<String>,
    /// Symlink target, raw.
    pub target: Option<SysPathRaw>,
    /// Device number of char/block devices.
    pub rdev: Option<u64>,
    /// Every readable xattr, value hex-encoded (POSIX ACLs and
    /// `security.capability` included).
    pub xattrs: BTreeMap<String, String>,
    /// `security.capability` decoded for humans (`cap_net_bind_service=ep`).
    pub caps: Option<String>,
    /// Packages that own the path; empty for an admin's own file.
    pub owners: Vec<String>,
    /// Identity for the stat cache: a file whose (dev, ino, size, mtime,
    /// ctime) is unchanged has unchanged content and xattrs.
    pub dev: u64,
    pub ino: u64,
    pub ctime: Time,
}

/// An entry as format 1 stored it: an object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryV1 {
    path: SysPath,
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    mtime: Time,
    size: u64,
    #[serde(default)]
    blake3: Option<String>,
    #[serde(default)]
    target: Option<SysPathRaw>,
    #[serde(default)]
    rdev: Option<u64>,
    #[serde(default)]
    xattrs: BTreeMap<String, String>,
    #[serde(default)]
    caps: Option<String>,
    #[serde(default)]
    owners: Vec<String>,
    dev: u64,
    ino: u64,
    ctime: Time,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry {
            path: e.path,
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            user: e.user,
            group: e.group,
            mtime: e.mtime,
            size: e.size,
            blake3: e.blake3,
            target: e.target,
            rdev: e.rdev,
            xattrs: e.xattrs,
            caps: e.caps,
            owners: e.owners,
            dev: e.dev,
            ino: e.ino,
            ctime: e.ctime,
        }
    }
}

/// Reads the entries into a vector sized for a typical server's /etc up
/// front: JSON says nothing of an array's length, and growing ~1,500
/// entries by doubling copied half a megabyte and faulted in fresh pages on
/// every load.
fn entries_sized<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<Entry>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<Entry>, A::Error> {
            let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).max(2048));
            while let Some(e) = a.next_element()? {
                v.push(e);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(V)
}

/// The number of fields of a stored entry (format 2).
const ENTRY_FIELDS: usize = 18;

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(ENTRY_FIELDS)?;
        t.serialize_element(&self.path)?;
        t.serialize_element(&self.kind)?;
        t.serialize_element(&self.mode)?;
        t.serialize_element(&self.uid)?;
        t.serialize_element(&self.gid)?;
        t.serialize_element(&self.user)?;
        t.serialize_element(&self.group)?;
        t.serialize_element(&(self.mtime.sec, self.mtime.nsec))?;
        t.serialize_element(&self.size)?;
        t.serialize_element(&self.blake3)?;
        t.serialize_element(&self.target)?;
        t.serialize_element(&self.rdev)?;
        t.serialize_element(&(!self.xattrs.is_empty()).then_some(&self.xattrs))?;
        t.serialize_element(&self.caps)?;
        t.serialize_element(&(!self.owners.is_empty()).then_some(&self.owners))?;
        t.serialize_element(&self.dev)?;
        t.serialize_element(&self.ino)?;
        t.serialize_element(&(self.ctime.sec, self.ctime.nsec))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        use serde::de::{Error, SeqAccess, Visitor};
        struct V;
        fn el<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
            a: &mut A,
            i: usize,
        ) -> Result<T, A::Error> {
            a.next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &"an entry of 18 fields"))
        }
        fn time((sec, nsec): (i64, u32)) -> Time {
            Time { sec, nsec }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an entry: an array (format 2) or an object (format 1)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Entry, A::Error> {
                let e = Entry {
                    path: el(&mut a, 0)?,
                    kind: el(&mut a, 1)?,
                    mode: el(&mut a, 2)?,
                    uid: el(&mut a, 3)?,
                    gid: el(&mut a, 4)?,
                    user: el(&mut a, 5)?,
                    group: el(&mut a, 6)?,
                    mtime: time(el(&mut a, 7)?),
                    size: el(&mut a, 8)?,
                    blake3: el(&mut a, 9)?,
                    target: el(&mut a, 10)?,
                    rdev: el(&mut a, 11)?,
                    xattrs: el::<_, Option<_>>(&mut a, 12)?.unwrap_or_default(),
                    caps: el(&mut a, 13)?,
                    owners: el::<_, Option<_>>(&mut a, 14)?.unwrap_or_default(),
                    dev: el(&mut a, 15)?,
                    ino: el(&mut a, 16)?,
                    ctime: time(el(&mut a, 17)?),
                };
                // as strict as format 1's deny_unknown_fields
                if a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(
                        ENTRY_FIELDS + 1,
                        &"an entry of 18 fields",
                    ));
                }
                Ok(e)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<Entry, A::Error> {
                EntryV1::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(Entry::from)
            }
        }
        d.deserialize_any(V)
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
    /// The clone's nvram file, copied by guard (UEFI guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvram: Option<String>,
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
    #[serde(deserialize_with = "entries_sized")]
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
    /// Directories above the recorded tree (not recorded themselves: the
    /// parents of an `include` such as a 0700 `/srv/mail` above
    /// `/srv/mail/etc`) that others cannot pass, as the live root has them
    /// now: what lies beneath is not world-readable either. Not stored;
    /// filled in by [`Manifest::mark_closed_above`] before content is shown.
    #[serde(skip)]
    pub closed_above: Vec<SysPath>,
}

impl Manifest {
    /// Entry by path; entries are kept sorted by path.
    pub fn entry(&self, p: &SysPath) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.cmp(p))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Whether a user who is neither `e`'s owner nor in its group can read
    /// it: its mode grants others read *and* every directory above it that
    /// this manifest records lets others through (o+x). A 0644 key in a
    /// 0700 `/etc/wireguard` or a 0710 `/etc/ssl/private` is as secret as a
    /// 0600 one, so the file's own mode alone cannot decide what guard may
    /// show (DESIGN §2, "secrets never leave the store"). Directories the
    /// manifest does not record (above an `include`) count as
    /// [`Manifest::closed_above`] has them; `/` itself does not count.
    pub fn world_readable(&self, e: &Entry) -> bool {
        e.mode & 0o004 != 0
            && !self.closed_above.iter().any(|d| e.path.starts_with(d))
            && e.path.ancestors().iter().all(|d| {
                self.entry(d)
                    .is_none_or(|d| d.kind != FileKind::Dir || d.mode & 0o001 != 0)
            })
    }

    /// Fills [`Manifest::closed_above`]: every directory above the
    /// recorded entries that the manifest does not record itself (`/`
    /// aside) and that is, in `root` now, not a directory others may pass
    /// (o+x), or cannot be told. A snapshot does not record them, so its
    /// entries are judged by the live root's directories too: the best
    /// there is, and an include moved under a private directory since then
    /// is private on both sides.
    pub fn mark_closed_above(&mut self, root: &crate::sysroot::SysRoot) {
        let mut seen = BTreeSet::new();
        let mut closed = Vec::new();
        // Only the tops of the recorded trees have unrecorded parents: the
        // scope's roots (the walked directories and the includes). Looking
        // only at those costs a few lookups, not two per entry on every
        // check. (A manifest without a scope: every entry whose parent is
        // unrecorded.)
        let tops: Vec<&SysPath> = if self.scope.is_empty() {
            self.entries
                .iter()
                .filter(|e| {
                    e.path
                        .parent()
                        .is_some_and(|p| !p.is_root() && self.entry(&p).is_none())
                })
                .map(|e| &e.path)
                .collect()
        } else {
            self.scope.iter().collect()
        };
        for top in tops {
            for d in top.ancestors() {
                if self.entry(&d).is_some() || !seen.insert(d.clone()) {
                    continue;
                }
                let passable = root.lstat(&d).is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                        && st.st_mode & 0o001 != 0
                });
                if !passable {
                    closed.push(d);
                }
            }
        }
        self.closed_above = closed;
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

#[cfg(test)]
mod entry_form_tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            path: SysPath::new(b"/etc/caf\xe9.conf"),
            kind: FileKind::Symlink,
            mode: 0o4755,
            uid: 0,
            gid: 42,
            user: Some("root".into()),
            group: None,
            mtime: Time { sec: 1, nsec: 2 },
            size: 3,
            blake3: None,
            target: Some(SysPathRaw(b"../x".to_vec())),
            rdev: Some(7),
            xattrs: BTreeMap::from([("user.a".into(), "00ff".into())]),
            caps: Some("cap_net_raw=ep".into()),
            owners: vec!["pkg".into()],
            dev: 8,
            ino: 9,
            ctime: Time { sec: 10, nsec: 11 },
        }
    }

    #[test]
    fn entries_round_trip_as_arrays_and_format_1_objects_still_read() {
        let e = sample();
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.starts_with('['), "{text}");
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        let bare = Entry {
            xattrs: BTreeMap::new(),
            owners: vec![],
            ..sample()
        };
        let text = serde_json::to_string(&bare).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), bare);

        let v1 = r#"{"path":"/etc/x","kind":"file","mode":420,"uid":0,"gid":0,
            "mtime":{"sec":1,"nsec":2},"size":5,"blake3":"ab","owners":["p"],
            "dev":1,"ino":2,"ctime":{"sec":3,"nsec":4}}"#;
        let e: Entry = serde_json::from_str(v1).unwrap();
        assert_eq!(e.path, SysPath::new("/etc/x"));
        assert_eq!(e.owners, ["p"]);
        assert_eq!(e.ctime, Time { sec: 3, nsec: 4 });

        // as strict as format 1: a field too many or too few is corrupt
        let mut long: serde_json::Value = serde_json::to_value(&bare).unwrap();
        long.as_array_mut().unwrap().push(serde_json::json!(1));
        assert!(serde_json::from_value::<Entry>(long.clone()).is_err());
        long.as_array_mut().unwrap().truncate(17);
        assert!(serde_json::from_value::<Entry>(long).is_err());
        assert!(serde_json::from_str::<Entry>(r#"{"path":"/x","bogus":1}"#).is_err());
    }
}
