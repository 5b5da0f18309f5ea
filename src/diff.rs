//! Pure comparison of two manifests: which paths were added, vanished or
//! changed (content, and each piece of metadata spelled out), what happened
//! to file capabilities, packages and enabled units. No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::{CapEntry, EnabledUnit, Entry, FileKind, Manifest};
use crate::sysroot::SysPath;

/// One piece of metadata that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaChange {
    /// `kind`, `mode`, `owner`, `group`, `target`, `acl`, `caps`, `xattr NAME`
    pub what: String,
    pub old: String,
    pub new: String,
}

impl std::fmt::Display for MetaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.what, self.old, self.new)
    }
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per changed path
pub enum Change {
    Added(Entry),
    Vanished(Entry),
    Modified {
        old: Entry,
        new: Entry,
        /// The content differs (both sides hashed and different).
        content: bool,
        meta: Vec<MetaChange>,
    },
}

impl Change {
    pub fn path(&self) -> &SysPath {
        match self {
            Change::Added(e) | Change::Vanished(e) => &e.path,
            Change::Modified { new, .. } => &new.path,
        }
    }
}

fn owner(name: &Option<String>, id: u32) -> String {
    match name {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// Whether anyone who can see a file's metadata can also read this xattr's
/// value: `security.*` (capabilities, labels) and POSIX ACLs can be read
/// without read permission on the file, `user.*` (and `trusted.*`) only
/// with it. The latter are the file's own data, as secret as its content.
fn xattr_public(name: &str) -> bool {
    name.starts_with("security.") || name.starts_with("system.posix_acl_")
}

/// A POSIX ACL xattr (`system.posix_acl_access`/`_default`: version 2,
/// then (tag u16, perm u16, id u32) little-endian) the way `getfacl` writes
/// it, entries joined by commas: `user::rw-,user:1000:r--,group::r--,
/// mask::r--,other::r--`. `None` when it is not such a value.
pub fn acl_text(raw: &[u8]) -> Option<String> {
    let (head, body) = raw.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != 2 || body.is_empty() || body.len() % 8 != 0 {
        return None;
    }
    let entries: Option<Vec<String>> = body
        .chunks_exact(8)
        .map(|c| {
            let tag = u16::from_le_bytes([c[0], c[1]]);
            let perm = u16::from_le_bytes([c[2], c[3]]);
            let id = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            let who = match tag {
                0x01 => "user::".to_string(),
                0x02 => format!("user:{id}:"),
                0x04 => "group::".to_string(),
                0x08 => format!("group:{id}:"),
                0x10 => "mask::".to_string(),
                0x20 => "other::".to_string(),
                _ => return None,
            };
            let bit = |b: u16, c: char| if perm & b != 0 { c } else { '-' };
            Some(format!(
                "{who}{}{}{}",
                bit(4, 'r'),
                bit(2, 'w'),
                bit(1, 'x')
            ))
        })
        .collect();
    Some(entries?.join(","))
}

fn xattr_text(
    name: &str,
    hexval: Option<&String>,
    caps: &Option<String>,
    values_shown: bool,
) -> String {
    match hexval {
        None => "(none)".into(),
        Some(_) if name == crate::xattr::CAPABILITY => {
            caps.clone().unwrap_or_else(|| "(set)".into())
        }
        Some(v) if name.starts_with("system.posix_acl_") => {
            let raw = hex::decode(v).unwrap_or_default();
            acl_text(&raw).unwrap_or_else(|| crate::plural(raw.len(), "byte"))
        }
        Some(v) if !values_shown && !xattr_public(name) => crate::plural(v.len() / 2, "byte"),
        Some(v) => {
            let raw = hex::decode(v).unwrap_or_default();
            match std::str::from_utf8(&raw) {
                Ok(t) if !t.contains('\0') || t.ends_with('\0') => {
                    format!("{:?}", t.trim_end_matches('\0'))
                }
                _ => crate::plural(raw.len(), "byte"),
            }
        }
    }
}

/// Metadata differences between two records of the same path. mtime alone
/// is not a change worth reporting: it moves with every content change and
/// with harmless touches. `values_shown` is whether others may read the
/// file on both sides ([`Manifest::world_readable`]); when not, the values
/// of its `user.*`/`trusted.*` xattrs are not shown, only their size.
pub fn meta_changes(old: &Entry, new: &Entry, values_shown: bool) -> Vec<MetaChange> {
    // Nearly every pair is unchanged: compare before formatting anything.
    if old.kind == new.kind
        && old.mode == new.mode
        && old.uid == new.uid
        && old.gid == new.gid
        && old.user == new.user
        && old.group == new.group
        && old.target == new.target
        && old.rdev == new.rdev
        && old.xattrs == new.xattrs
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |what: &str, o: String, n: String| {
        if o != n {
            out.push(MetaChange {
                what: what.into(),
                old: o,
                new: n,
            })
        }
    };
    push("kind", old.kind.as_str().into(), new.kind.as_str().into());
    push(
        "mode",
        format!("{:04o}", old.mode),
        format!("{:04o}", new.mode),
    );
    push(
        "owner",
        owner(&old.user, old.uid),
        owner(&new.user, new.uid),
    );
    push(
        "group",
        owner(&old.group, old.gid),
        owner(&new.group, new.gid),
    );
    push(
        "target",
        old.target
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        new.target
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
    );
    if matches!(old.kind, FileKind::CharDevice | FileKind::BlockDevice) {
        push(
            "device",
            format!("{:?}", old.rdev),
            format!("{:?}", new.rdev),
        );
    }
    let names: BTreeSet<&String> = old.xattrs.keys().chain(new.xattrs.keys()).collect();
    for name in names {
        let (o, n) = (old.xattrs.get(name), new.xattrs.get(name));
        if o == n {
            continue;
        }
        let what = match name.as_str() {
            "system.posix_acl_access" => "acl".to_string(),
            "system.posix_acl_default" => "default acl".to_string(),
            crate::xattr::CAPABILITY => "caps".to_string(),
            other if !values_shown && !xattr_public(other) => {
                format!("xattr {other} (value not shown: not world-readable)")
            }
            other => format!("xattr {other}"),
        };
        out.push(MetaChange {
            what,
            old: xattr_text(name, o, &old.caps, values_shown),
            new: xattr_text(name, n, &new.caps, values_shown),
        });
    }
    out
}

/// Compares the config scope of two manifests. `in_scope` decides whether a
/// path missing from `new` is really gone or merely no longer recorded.
pub fn files(old: &Manifest, new: &Manifest, in_scope: &dyn Fn(&SysPath) -> bool) -> Vec<Change> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&old.entries, &new.entries);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.path.cmp(&y.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                if in_scope(&a[i].path) {
                    out.push(Change::Vanished(a[i].clone()));
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(Change::Added(b[j].clone()));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (o, n) = (&a[i], &b[j]);
                let content = o.kind == FileKind::File
                    && n.kind == FileKind::File
                    && matches!((&o.blake3, &n.blake3), (Some(x), Some(y)) if x != y);
                // (readability costs a lookup per ancestor: only asked
                // when an xattr differs, the one place it matters)
                let shown =
                    o.xattrs == n.xattrs || (old.world_readable(o) && new.world_readable(n));
                let meta = meta_changes(o, n, shown);
                if content || !meta.is_empty() {
                    out.push(Change::Modified {
                        old: o.clone(),
                        new: n.clone(),
                        content,
                        meta,
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `p` as it reads once `from` has moved to `to`; `None` when `p` is not
/// `from` or under it.
pub fn rebased(p: &SysPath, from: &SysPath, to: &SysPath) -> Option<SysPath> {
    let rest = p.as_bytes().strip_prefix(from.as_bytes())?;
    (rest.is_empty() || rest[0] == b'/').then(|| {
        let mut v = to.as_bytes().to_vec();
        v.extend_from_slice(rest);
        SysPath::new(v)
    })
}

/// Moves what `m` recorded under `from` to `to` (see
/// [`crate::scan::merged_dirs`]): after a usr-merge the snapshot's
/// `/lib/systemd/system/cron.service` is compared with the live
/// `/usr/lib/systemd/system/cron.service`, so a migration that only moved
/// files reports nothing, while a unit it changed or lost is still seen.
/// Where both places were recorded, the entry already under `to` wins (the
/// merge keeps one of two identical files).
pub fn rebase(m: &mut Manifest, from: &SysPath, to: &SysPath) {
    let moved = |p: &SysPath| rebased(p, from, to);
    let have: BTreeSet<SysPath> = m
        .entries
        .iter()
        .map(|e| e.path.clone())
        .chain(m.caps.iter().map(|c| c.path.clone()))
        .filter(|p| p.starts_with(to))
        .collect();
    m.entries.retain_mut(|e| match moved(&e.path) {
        Some(p) if have.contains(&p) => false,
        Some(p) => {
            e.path = p;
            true
        }
        None => true,
    });
    m.caps.retain_mut(|c| match moved(&c.path) {
        Some(p) if have.contains(&p) => false,
        Some(p) => {
            c.path = p;
            true
        }
        None => true,
    });
    for u in &mut m.units {
        if let Some(p) = moved(&u.link) {
            u.link = p;
        }
    }
    m.sort();
    m.units.dedup();
}

/// What happened to a file that had capabilities.
#[derive(Debug, Clone, PartialEq)]
pub enum CapChange {
    /// The file no longer has a `security.capability` (or is gone).
    Lost { old: CapEntry },
    /// It has different capabilities now.
    Changed { old: CapEntry, new: CapEntry },
    /// A file gained capabilities since the snapshot.
    Added { new: CapEntry },
}

pub fn caps(old: &[CapEntry], new: &[CapEntry]) -> Vec<CapChange> {
    let newm: BTreeMap<&SysPath, &CapEntry> = new.iter().map(|c| (&c.path, c)).collect();
    let oldm: BTreeMap<&SysPath, &CapEntry> = old.iter().map(|c| (&c.path, c)).collect();
    let mut out = Vec::new();
    for o in old {
        match newm.get(&o.path) {
            None => out.push(CapChange::Lost { old: o.clone() }),
            Some(n) if n.xattr != o.xattr => out.push(CapChange::Changed {
                old: o.clone(),
                new: (*n).clone(),
            }),
            Some(_) => {}
        }
    }
    for n in new {
        if !oldm.contains_key(&n.path) {
            out.push(CapChange::Added { new: n.clone() });
        }
    }
    out
}

/// A package upgraded, added or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

pub fn packages(old: &Manifest, new: &Manifest) -> Vec<PkgChange> {
    let (a, b) = (&old.packages.installed, &new.packages.installed);
    if a == b {
        // the usual case, settled by one ordered walk without a name set
        return Vec::new();
    }
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| PkgChange {
            name: n.clone(),
            old: a.get(n).cloned(),
            new: b.get(n).cloned(),
        })
        .collect()
}

/// Units enabled in `old` and not in `new` (matched by unit and wanting
/// target, wherever the link lives). Snapshots taken before guard read
/// only symlinks there list a regular file in a `.wants/` dir as enabled;
/// systemd ignores such a file, so it was never enabled and is not now.
pub fn units_disabled<'a>(old: &'a Manifest, new: &Manifest) -> Vec<&'a EnabledUnit> {
    let now: BTreeSet<(&str, &str)> = new
        .units
        .iter()
        .map(|u| (u.unit.as_str(), u.wanted_by.as_str()))
        .collect();
    old.units
        .iter()
        .filter(|u| !now.contains(&(u.unit.as_str(), u.wanted_by.as_str())))
        .filter(|u| {
            old.entry(&u.link)
                .is_none_or(|e| e.kind == FileKind::Symlink)
        })
        .collect()
}

/// How long one file's diff may search for the shortest edit script. Myers'
/// algorithm is O(N·D): two versions of a generated 4 MB file that differ
/// on most lines kept `guard diff` busy for over ten minutes. Past the
/// deadline the diff is still correct, only coarser (larger hunks).
const DIFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Content that is safe and sensible to show as a unified diff: both sides
/// UTF-8 text without NULs. Callers must check world-readability first.
pub fn unified(old: &[u8], new: &[u8], old_name: &str, new_name: &str) -> Option<String> {
    let a = std::str::from_utf8(old).ok()?;
    let b = std::str::from_utf8(new).ok()?;
    if a.contains('\0') || b.contains('\0') {
        return None;
    }
    Some(
        similar::TextDiff::configure()
            .timeout(DIFF_TIMEOUT)
            .diff_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(old_name, new_name)
            .to_string(),
    )
}

/// The lines of a detail (a unified diff) as a terminal should show them:
/// split at `\n` only, a carriage return kept visible as `\r` (a file
/// turned from LF to CRLF otherwise shows `-l1` `+l1`, the same line
/// removed and added) and other control characters as `\xNN`, so a file's
/// content cannot move the cursor or recolour the terminal.
pub fn display_lines(detail: &str) -> impl Iterator<Item = String> + '_ {
    detail
        .strip_suffix('\n')
        .unwrap_or(detail)
        .split('\n')
        .filter(move |_| !detail.is_empty())
        .map(|l| {
            let mut out = String::with_capacity(l.len());
            for c in l.chars() {
                match c {
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push(c),
                    c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SnapshotKind, Time};

    fn e(p: &str, h: &str, mode: u32) -> Entry {
        Entry {
            path: SysPath::new(p),
            kind: FileKind::File,
            mode,
            uid: 0,
            gid: 0,
            user: Some("root".into()),
            group: Some("root".into()),
            mtime: Time::default(),
            size: 1,
            blake3: Some(h.into()),
            target: None,
            rdev: None,
            xattrs: Default::default(),
            caps: None,
            owners: vec![],
            dev: 1,
            ino: 1,
            ctime: Time::default(),
        }
    }

    fn m(entries: Vec<Entry>) -> Manifest {
        Manifest {
            version: 1,
            id: "x".into(),
            created: String::new(),
            kind: SnapshotKind::Manual,
            label: None,
            root: "/".into(),
            guard_version: String::new(),
            scope: vec![],
            os_release: Default::default(),
            packages: Default::default(),
            units: vec![],
            entries,
            caps: vec![],
            ledger_from: None,
            errors: vec![],
            unreadable_xattrs: 0,
            vms: vec![],
            closed_above: vec![],
        }
    }

    #[test]
    fn a_plain_file_an_old_snapshot_listed_as_enabled_is_not_disabled_later() {
        let link = SysPath::new("/etc/systemd/system/multi-user.target.wants/a.service");
        let mut old = m(vec![e(
            "/etc/systemd/system/multi-user.target.wants/a.service",
            "h",
            0o644,
        )]);
        old.units = vec![EnabledUnit {
            unit: "a.service".into(),
            wanted_by: "multi-user.target".into(),
            link: link.clone(),
        }];
        assert!(units_disabled(&old, &m(vec![])).is_empty());
        old.entries[0].kind = FileKind::Symlink;
        assert_eq!(units_disabled(&old, &m(vec![])).len(), 1);
    }

    #[test]
    fn added_vanished_modified_and_meta() {
        let old = m(vec![
            e("/etc/a", "1", 0o644),
            e("/etc/b", "2", 0o644),
            e("/etc/c", "3", 0o644),
        ]);
        let mut c2 = e("/etc/c", "3", 0o600);
        c2.xattrs.insert("user.note".into(), hex::encode("hi"));
        let new = m(vec![e("/etc/b", "9", 0o644), c2, e("/etc/d", "4", 0o644)]);
        let ch = files(&old, &new, &|_| true);
        assert_eq!(ch.len(), 4);
        assert!(matches!(&ch[0], Change::Vanished(x) if x.path == SysPath::new("/etc/a")));
        assert!(matches!(&ch[1], Change::Modified { content: true, meta, .. } if meta.is_empty()));
        match &ch[2] {
            Change::Modified { content, meta, .. } => {
                assert!(!content);
                assert_eq!(meta[0].to_string(), "mode: 0644 -> 0600");
                // (0600 now: the value is the file's data, not shown)
                assert_eq!(
                    meta[1].to_string(),
                    "xattr user.note (value not shown: not world-readable): (none) -> 2 bytes"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&ch[3], Change::Added(x) if x.path == SysPath::new("/etc/d")));
        // out of scope now: not reported as vanished
        assert_eq!(
            files(&old, &new, &|p| p != &SysPath::new("/etc/a")).len(),
            3
        );
    }

    fn dir(p: &str, mode: u32) -> Entry {
        Entry {
            kind: FileKind::Dir,
            blake3: None,
            ..e(p, "", mode)
        }
    }

    #[test]
    fn readable_by_others_needs_every_recorded_directory_open() {
        let key = e("/etc/wireguard/wg0.conf", "1", 0o644);
        let mut closed = m(vec![dir("/etc", 0o755), dir("/etc/wireguard", 0o700)]);
        closed.entries.push(key.clone());
        assert!(
            !closed.world_readable(&key),
            "a 0700 directory keeps it private"
        );
        let mut open = m(vec![dir("/etc", 0o755), dir("/etc/wireguard", 0o711)]);
        open.entries.push(key.clone());
        assert!(open.world_readable(&key), "o+x is enough to reach it");
        assert!(!open.world_readable(&e("/etc/wireguard/wg0.conf", "1", 0o640)));
        // directories not recorded (above the scope) do not count
        assert!(m(vec![]).world_readable(&key));
    }

    #[test]
    fn user_xattr_values_of_private_files_stay_hidden() {
        let with = |mode: u32, v: &str| {
            let mut x = e("/etc/app.conf", "1", mode);
            x.xattrs.insert("user.note".into(), hex::encode(v));
            x.xattrs
                .insert("security.selinux".into(), hex::encode(format!("{v}_t")));
            x
        };
        let ch = files(
            &m(vec![with(0o600, "SECRET1")]),
            &m(vec![with(0o600, "SECRET2")]),
            &|_| true,
        );
        let Change::Modified { meta, .. } = &ch[0] else {
            panic!("{ch:?}")
        };
        let text: Vec<String> = meta.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [
                // labels are readable by anyone who can see the file
                "xattr security.selinux: \"SECRET1_t\" -> \"SECRET2_t\"",
                "xattr user.note (value not shown: not world-readable): 7 bytes -> 7 bytes",
            ]
        );
        let ch = files(
            &m(vec![with(0o644, "a")]),
            &m(vec![with(0o644, "b")]),
            &|_| true,
        );
        let Change::Modified { meta, .. } = &ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!(meta[1].to_string(), "xattr user.note: \"a\" -> \"b\"");
    }

    #[test]
    fn unified_diff_only_for_text() {
        let d = unified(b"a\nb\n", b"a\nc\n", "/etc/x (snapshot)", "/etc/x").unwrap();
        assert!(d.contains("-b\n+c\n"), "{d}");
        assert!(unified(b"\0\x01", b"x", "a", "b").is_none());
    }

    #[test]
    fn acls_are_spelled_out() {
        let mut old = e("/etc/f", "1", 0o644);
        let mut new = old.clone();
        // setfacl -m u:nobody:r on a 0644 file, as the kernel stores it
        let acl = |extra: bool| {
            let mut v = 2u32.to_le_bytes().to_vec();
            let mut add = |tag: u16, perm: u16, id: u32| {
                v.extend(tag.to_le_bytes());
                v.extend(perm.to_le_bytes());
                v.extend(id.to_le_bytes());
            };
            add(0x01, 6, u32::MAX);
            if extra {
                add(0x02, 4, 65534);
            }
            add(0x04, 4, u32::MAX);
            add(0x10, 4, u32::MAX);
            add(0x20, 4, u32::MAX);
            hex::encode(v)
        };
        old.xattrs
            .insert("system.posix_acl_access".into(), acl(false));
        new.xattrs
            .insert("system.posix_acl_access".into(), acl(true));
        let ch = meta_changes(&old, &new, true);
        assert_eq!(
            ch[0].to_string(),
            "acl: user::rw-,group::r--,mask::r--,other::r-- -> \
             user::rw-,user:65534:r--,group::r--,mask::r--,other::r--"
        );
        // an ACL that is not one is still not shown raw
        assert_eq!(acl_text(b"junk"), None);
    }

    #[test]
    fn line_ends_and_control_characters_stay_visible() {
        let d = unified(b"l1\nl2\n", b"l1\r\nl2\x1b[2J\n", "a", "b").unwrap();
        let shown: Vec<String> = display_lines(&d).collect();
        assert!(shown.contains(&"-l1".to_string()), "{shown:?}");
        assert!(shown.contains(&"+l1\\r".to_string()), "{shown:?}");
        assert!(shown.contains(&"+l2\\x1b[2J".to_string()), "{shown:?}");
        assert_eq!(display_lines("").count(), 0);
        assert_eq!(display_lines("a\n\nb").collect::<Vec<_>>(), ["a", "", "b"]);
    }

    #[test]
    fn a_large_file_changed_on_most_lines_is_diffed_in_bounded_time() {
        let text = |seed: u64| -> String {
            // every line differs between the two seeds, but few enough to
            // keep a common subsequence for Myers to hunt for
            (0..60_000u64)
                .map(|i| format!("line {i} {}\n", (i * 7 + seed * (i % 3)) % 10))
                .collect()
        };
        let (a, b) = (text(1), text(2));
        let t = std::time::Instant::now();
        let d = unified(a.as_bytes(), b.as_bytes(), "a", "b").unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
        // coarser past the deadline, but still the whole change
        assert!(d.contains("+line 59999 "), "{}", &d[..200]);
    }
}
