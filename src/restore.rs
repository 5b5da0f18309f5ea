//! Restore: a pure plan from a snapshot and the live root, then its
//! application, one atomic write at a time.
//!
//! Every file is written as an unnamed `O_TMPFILE` in its target directory
//! (a named temp file where the filesystem lacks it), given its content,
//! owner, mode, xattrs (ACLs, capabilities) and mtime, fsynced, and only then
//! linked or renamed into place, and the directory fsynced: a crash or a full
//! disk leaves the original or the restored file, never a torn one.
//! Directories are reached with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`
//! from the root fd (or, on kernels without it, the walk of `sysroot.rs`
//! that answers the same), so no symlink can lead a write out of the root.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, bail, Context as _, Result};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;

use crate::checks::files;
use crate::pkg::VersionChange;
use crate::scan::{Accounts, Scope};
use crate::store::{CapEntry, Entry, FileKind, Manifest, Store};
use crate::sysroot::{SysPath, SysRoot};
use crate::ui::Progress;
use crate::xattr::Node;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a missing directory, or put back a directory's metadata.
    Dir {
        entry: Entry,
        exists: bool,
    },
    /// Write a regular file (new, or replacing a modified one).
    File {
        entry: Entry,
        exists: bool,
    },
    Symlink {
        entry: Entry,
        exists: bool,
    },
    /// fifo or device node
    Special {
        entry: Entry,
    },
    /// Re-apply a recorded `security.capability`.
    Caps {
        cap: CapEntry,
        replaced: bool,
    },
    /// Put back the mtime of a path whose content and metadata already
    /// match, without rewriting it.
    Mtime {
        entry: Entry,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub path: SysPath,
    pub action: Action,
    /// Set when the packages dropped this vanished path on purpose since
    /// the snapshot; `None`: nothing says it is not a loss.
    pub dropped: Option<Dropped>,
    /// Set when the recorded user or group no longer exists here: what
    /// the path will get instead (see `owner`).
    pub owner: Option<String>,
}

impl Item {
    fn new(path: SysPath, action: Action) -> Item {
        Item {
            path,
            action,
            dropped: None,
            owner: None,
        }
    }
}

/// Why a vanished path is no admin's loss: the packages went on without
/// it since the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    /// For a package's path, its owners in the snapshot, each upgraded to
    /// a version that no longer ships it or removed. For a link of no
    /// package, the changed owners of the file it leads to (empty when
    /// that file is gone: no record names its package).
    pub by: Vec<VersionChange>,
    /// For a link of no package: the package's file it led to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_to: Option<SysPath>,
    /// For a file a trust-store tool writes from its sources (see
    /// `files::generated_by`): that tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<&'static str>,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by: Vec<String> = self.by.iter().map(|c| c.to_string()).collect();
        if let Some(tool) = self.generated_by {
            return write!(f, "written by {tool}, which dropped it");
        }
        match (&self.link_to, by.is_empty()) {
            (None, _) if self.by.iter().all(|c| c.to.is_none()) => write!(f, "{}", by.join(", ")),
            (None, _) => write!(f, "dropped by {}", by.join(", ")),
            (Some(t), true) => match files::generated_by(t) {
                Some(tool) => write!(f, "a link to {t}, which {tool} removed"),
                None => write!(f, "a link to {t}, which its package removed"),
            },
            (Some(t), false) => write!(f, "a link to {t}, dropped with {}", by.join(", ")),
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.action_line(f)?;
        if let Some(o) = &self.owner {
            write!(f, " ({o})")?;
        }
        match &self.dropped {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
}

impl Item {
    fn action_line(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Dir {
                entry,
                exists: false,
            } => write!(f, "create dir  {} ({:04o})", self.path, entry.mode),
            Action::Dir {
                entry,
                exists: true,
            } => write!(f, "fix dir     {} ({:04o})", self.path, entry.mode),
            Action::File { entry, exists } => write!(
                f,
                "{} {} ({}, {:04o} {}:{}{})",
                if *exists {
                    "overwrite  "
                } else {
                    "write      "
                },
                self.path,
                crate::plural(entry.size, "byte"),
                entry.mode,
                entry.user.clone().unwrap_or_else(|| entry.uid.to_string()),
                entry.group.clone().unwrap_or_else(|| entry.gid.to_string()),
                entry
                    .caps
                    .as_ref()
                    .map(|c| format!(", caps {c}"))
                    .unwrap_or_default()
            ),
            Action::Symlink { entry, .. } => write!(
                f,
                "symlink     {} -> {}{}",
                self.path,
                entry
                    .target
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                with_xattrs(entry)
            ),
            Action::Special { entry } => write!(
                f,
                "mknod       {} ({}){}",
                self.path,
                entry.kind.as_str(),
                with_xattrs(entry)
            ),
            Action::Mtime { entry } => write!(
                f,
                "set mtime   {} to {} (nothing else differs)",
                self.path,
                jiff::Timestamp::new(entry.mtime.sec, entry.mtime.nsec as i32)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| format!("{}.{:09}", entry.mtime.sec, entry.mtime.nsec))
            ),
            Action::Caps { cap, replaced } => write!(
                f,
                "setcap      {} {}{}",
                self.path,
                cap.caps,
                if *replaced {
                    " (binary changed since the snapshot)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The recorded xattrs of a node whose plan line says nothing else about
/// them: they may be all that differs.
fn with_xattrs(e: &Entry) -> String {
    if e.xattrs.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = e.xattrs.keys().map(String::as_str).collect();
    format!(" with xattrs {}", names.join(", "))
}

/// What will be done, and what will not and why.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub from: String,
    pub items: Vec<Item>,
    pub skipped: Vec<(SysPath, String)>,
}

impl Plan {
    /// Keeps only the chosen items, plus the directories a kept item needs.
    pub fn select(&mut self, keep: &[usize]) {
        // (by index and by path, not item against item: `--yes` keeps
        // every item, and a 50,000-item plan took 10^9 comparisons here)
        let mut chosen = vec![false; self.items.len()];
        for &k in keep {
            if let Some(c) = chosen.get_mut(k) {
                *c = true;
            }
        }
        let made: foldhash::HashMap<&SysPath, usize> = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, it)| matches!(it.action, Action::Dir { exists: false, .. }))
            .map(|(j, it)| (&it.path, j))
            .collect();
        let mut needed: Vec<usize> = Vec::new();
        for (i, it) in self.items.iter().enumerate() {
            if chosen[i] {
                needed.extend(
                    it.path
                        .ancestors()
                        .iter()
                        .filter_map(|a| made.get(a).copied()),
                );
            }
        }
        for j in needed {
            chosen[j] = true;
        }
        let mut k = 0;
        self.items.retain(|_| {
            k += 1;
            chosen[k - 1]
        });
    }
}

fn kind_of(st_mode: u32) -> Option<FileKind> {
    use rustix::fs::FileType as T;
    Some(match T::from_raw_mode(st_mode) {
        T::RegularFile => FileKind::File,
        T::Directory => FileKind::Dir,
        T::Symlink => FileKind::Symlink,
        T::Fifo => FileKind::Fifo,
        T::CharacterDevice => FileKind::CharDevice,
        T::BlockDevice => FileKind::BlockDevice,
        T::Socket => FileKind::Socket,
        _ => return None,
    })
}

/// Does the live path match the recorded entry (content and metadata,
/// the mtime aside)?
fn live_matches(root: &SysRoot, e: &Entry) -> Option<bool> {
    let st = root.lstat(&e.path).ok()?;
    if kind_of(st.st_mode) != Some(e.kind) {
        return Some(false);
    }
    if st.st_mode & 0o7777 != e.mode || st.st_uid != e.uid || st.st_gid != e.gid {
        return Some(false);
    }
    match e.kind {
        // A repointed link (/etc/localtime, a *.wants/ entry, an
        // alternative) keeps its kind, mode and owner: only the target
        // tells it apart. Read it from the parent fd, never through a path
        // a symlink on the way could redirect.
        FileKind::Symlink => {
            let dir = root.open_dir(&e.path.parent()?).ok()?;
            let live =
                rustix::fs::readlinkat(&dir, OsStr::from_bytes(e.path.file_name()), []).ok()?;
            if Some(live.as_bytes()) != e.target.as_ref().map(|t| t.0.as_slice()) {
                return Some(false);
            }
        }
        // A device node with the same mode and owner may name another device.
        FileKind::CharDevice | FileKind::BlockDevice if Some(st.st_rdev) != e.rdev => {
            return Some(false);
        }
        _ => {}
    }
    match e.kind {
        FileKind::File => {
            let mut f = root.open_exact(&e.path).ok()?;
            let mut h = blake3::Hasher::new();
            io::copy(&mut f, &mut h).ok()?;
            if Some(h.finalize().to_hex().to_string()) != e.blake3 {
                return Some(false);
            }
            xattrs_match(crate::xattr::read_all_fd(f.as_fd()), e)
        }
        // A directory's default ACL (what new files in it inherit) or a
        // label may be all that changed. Opened no-follow and beneath the
        // root, like every directory restore writes into.
        FileKind::Dir => xattrs_match(crate::xattr::read_all_fd(root.open_dir(&e.path).ok()?), e),
        // A link's or a node's label may be all that changed, too: read
        // from the node itself, never through the link.
        _ => {
            let dir = root.open_dir(&e.path.parent()?).ok()?;
            let name = CString::new(e.path.file_name()).ok()?;
            let pinned = pin(&dir, &name).ok()?;
            let node = Node {
                dir: dir.as_fd(),
                name: &name,
                pinned: pinned.as_fd(),
            };
            xattrs_match(node.read_all(), e)
        }
    }
}

/// Is the live mtime (of the entry itself, not followed) the recorded one?
fn mtime_matches(root: &SysRoot, e: &Entry) -> bool {
    root.lstat(&e.path)
        .map(|st| (st.st_mtime, st.st_mtime_nsec as i64) == (e.mtime.sec, e.mtime.nsec as i64))
        .unwrap_or(false)
}

fn xattrs_match(
    read: io::Result<(std::collections::BTreeMap<String, Vec<u8>>, u64)>,
    e: &Entry,
) -> Option<bool> {
    let (x, _) = read.ok()?;
    let x: std::collections::BTreeMap<String, String> =
        x.into_iter().map(|(k, v)| (k, hex::encode(v))).collect();
    Some(x == e.xattrs)
}

/// An `O_PATH | O_NOFOLLOW` fd on `name` in `dir`: the node itself (a
/// symlink is not followed), held so that later steps act on this inode
/// whatever the name comes to hold.
fn pin(dir: &OwnedFd, name: &std::ffi::CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn action_for(e: &Entry, exists: bool) -> Option<Action> {
    let entry = e.clone();
    Some(match e.kind {
        FileKind::Dir => Action::Dir { entry, exists },
        FileKind::File => Action::File { entry, exists },
        FileKind::Symlink => Action::Symlink { entry, exists },
        FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice => Action::Special { entry },
        _ => return None,
    })
}

/// Adds directories of the snapshot that are missing above `p`.
fn add_parents(base: &Manifest, root: &SysRoot, p: &SysPath, plan: &mut Plan, seen: &mut Seen) {
    for a in p.ancestors() {
        if seen.contains(&a) {
            continue;
        }
        if !root.exists(&a) {
            if let Some(e) = base.entry(&a) {
                plan.items.push(Item::new(
                    a.clone(),
                    Action::Dir {
                        entry: e.clone(),
                        exists: false,
                    },
                ));
            }
        }
        seen.insert(a);
    }
}

/// The ancestors [`add_parents`] has settled (there, or in the plan) and
/// the paths a plan holds: looked up by hash, since a plan of 50,000
/// vanished files searched its items once per ancestor of each (4.97 s
/// for `restore --vanished --dry-run`, most of it here).
type Seen = foldhash::HashSet<SysPath>;

/// Every path of the snapshot that no longer exists (within the scope).
pub fn plan_vanished(base: &Manifest, root: &SysRoot, scope: &Scope) -> Plan {
    let mut plan = Plan {
        from: base.id.clone(),
        ..Default::default()
    };
    let mut seen = Seen::default();
    for e in &base.entries {
        if !scope.contains(&e.path) || root.exists(&e.path) {
            continue;
        }
        add_parents(base, root, &e.path, &mut plan, &mut seen);
        seen.insert(e.path.clone());
        match action_for(e, false) {
            Some(a) => plan.items.push(Item::new(e.path.clone(), a)),
            None => plan.skipped.push((
                e.path.clone(),
                format!("a {} cannot be restored", e.kind.as_str()),
            )),
        }
    }
    sort_items(&mut plan.items);
    mark_dropped(&mut plan, base, root);
    mark_owners(&mut plan, root);
    plan
}

/// The directories PAM reads service files from.
const PAM_DIRS: &[&str] = &["/etc/pam.d", "/usr/lib/pam.d", "/usr/etc/pam.d"];

/// Whether `p` is a PAM service file, a PAM directory, or a directory one
/// lies beneath (which must be made first).
fn is_pam(p: &SysPath) -> bool {
    PAM_DIRS.iter().any(|d| {
        let d = SysPath::new(d);
        p.starts_with(&d) || d.starts_with(p)
    })
}

/// Keeps the vanished PAM service files no package dropped on purpose, and
/// the directories they need: incident 1's imap and smtp, not the files a
/// new version moved to /usr/lib/pam.d, which restored into /etc would
/// shadow the vendor's newer ones.
pub fn keep_lost_pam_files(plan: &mut Plan) {
    plan.items
        .retain(|i| is_pam(&i.path) && i.dropped.is_none());
    // a directory kept for files that are all gone from the plan: nothing
    // to make it for, unless it is a PAM dir that itself vanished
    let files: Vec<SysPath> = plan
        .items
        .iter()
        .filter(|i| !matches!(i.action, Action::Dir { .. }))
        .map(|i| i.path.clone())
        .collect();
    plan.items.retain(|i| {
        !matches!(i.action, Action::Dir { .. })
            || PAM_DIRS.iter().any(|d| i.path == SysPath::new(d))
            || files.iter().any(|f| f.starts_with(&i.path))
    });
}

/// Parents before children, one item per path, and the PAM service files
/// first (DESIGN §1): they are what the logins that fail after an upgrade
/// need, and whatever stops the restore later leaves them done.
fn sort_items(items: &mut Vec<Item>) {
    items.sort_by(|a, b| a.path.cmp(&b.path));
    items.dedup_by(|a, b| a.path == b.path);
    // stable: parents still come before their children in each part
    items.sort_by_key(|i| !is_pam(&i.path));
}

/// Marks the items the packages dropped on purpose: after a release
/// upgrade most of what vanished is old units, init scripts, conffiles
/// and the links maintainer scripts made, which the admin must be able to
/// tell from their own lost files. The live package databases are read
/// for these paths (and the files such links lead to) only; one that
/// cannot be read proves nothing, and only links to files that are gone
/// are marked then.
fn mark_dropped(plan: &mut Plan, base: &Manifest, root: &SysRoot) {
    if plan.items.is_empty() {
        return;
    }
    let paths: Vec<SysPath> = plan.items.iter().map(|i| i.path.clone()).collect();
    let live = (!base.packages.managers.is_empty())
        .then(|| {
            files::live_owners_of_targets(paths.iter().filter_map(|p| base.entry(p)), root, &paths)
        })
        .flatten();
    for item in &mut plan.items {
        let Some(e) = base.entry(&item.path) else {
            continue;
        };
        item.dropped = if let Some(to) = files::link_to_removed_file(e, base, root) {
            Some(Dropped {
                by: Vec::new(),
                link_to: Some(to),
                generated_by: None,
            })
        } else if let Some(tool) =
            files::generated_by(&e.path).filter(|_| e.owners.is_empty() && e.kind != FileKind::Dir)
        {
            Some(Dropped {
                by: Vec::new(),
                link_to: None,
                generated_by: Some(tool),
            })
        } else if let Some(live) = &live {
            let by = files::dropped_by(e, base, live);
            if !by.is_empty() {
                Some(Dropped {
                    by,
                    link_to: None,
                    generated_by: None,
                })
            } else {
                files::link_into_changed_package(e, base, root, live).map(|(to, by)| Dropped {
                    by,
                    link_to: Some(to),
                    generated_by: None,
                })
            }
        } else {
            None
        };
    }
}

/// The given paths (and, for a directory, what lies beneath it) where they
/// differ from the snapshot.
pub fn plan_paths(base: &Manifest, root: &SysRoot, paths: &[SysPath]) -> Result<Plan> {
    let mut plan = Plan {
        from: base.id.clone(),
        ..Default::default()
    };
    let mut seen = Seen::default();
    for p in paths {
        let Some(top) = base.entry(p) else {
            bail!("{p} is not in snapshot {}", base.id);
        };
        let under: Vec<&Entry> = if top.kind == FileKind::Dir {
            base.entries
                .iter()
                .filter(|e| e.path.starts_with(p))
                .collect()
        } else {
            vec![top]
        };
        add_parents(base, root, p, &mut plan, &mut seen);
        for e in under {
            let exists = root.exists(&e.path);
            match live_matches(root, e) {
                Some(true) if mtime_matches(root, e) => {
                    plan.skipped
                        .push((e.path.clone(), "already as in the snapshot".into()));
                    continue;
                }
                // `guard check` leaves an mtime alone unreported (it moves
                // with harmless touches), but a path named here is to be
                // as recorded, and the mtime is part of that: tools decide
                // by it (postfix warns of a .db older than its source, the
                // Makefiles of /etc/mail and /var/yp rebuild by it, `rpm -V`
                // and `pacman -Qkk` flag it). Setting it is cheap and
                // rewrites nothing.
                Some(true) => {
                    plan.items.push(Item::new(
                        e.path.clone(),
                        Action::Mtime { entry: e.clone() },
                    ));
                    continue;
                }
                _ if exists && e.kind != FileKind::Dir => {
                    // Replacing a directory by a file (or the reverse) could
                    // destroy data guard never recorded: refuse.
                    let st = root.lstat(&e.path)?;
                    let now_dir = rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory;
                    if now_dir {
                        plan.skipped.push((
                            e.path.clone(),
                            format!(
                                "is now a directory, was a {}; not replaced",
                                e.kind.as_str()
                            ),
                        ));
                        continue;
                    }
                }
                _ => {}
            }
            match action_for(e, exists) {
                Some(a) => {
                    seen.insert(e.path.clone());
                    plan.items.push(Item::new(e.path.clone(), a));
                }
                None => plan.skipped.push((
                    e.path.clone(),
                    format!("a {} cannot be restored", e.kind.as_str()),
                )),
            }
        }
    }
    sort_items(&mut plan.items);
    mark_owners(&mut plan, root);
    Ok(plan)
}

/// Recorded capabilities for files that exist but no longer carry them.
pub fn plan_caps(base: &Manifest, root: &SysRoot) -> Plan {
    let mut plan = Plan {
        from: base.id.clone(),
        ..Default::default()
    };
    for c in &base.caps {
        let st = match root.lstat(&c.path) {
            Ok(st) => st,
            Err(_) => {
                plan.skipped.push((
                    c.path.clone(),
                    "the file is gone: reinstall its package first".into(),
                ));
                continue;
            }
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            plan.skipped
                .push((c.path.clone(), "no longer a regular file".into()));
            continue;
        }
        // read relative to its directory, opened beneath the root without
        // following symlinks (as the ledger reads it)
        let live = c
            .path
            .parent()
            .and_then(|p| root.open_dir(&p).ok())
            .zip(std::ffi::CString::new(c.path.file_name()).ok())
            .and_then(|(dir, name)| {
                crate::xattr::capability_at(&dir, &name, &root.host_path(&c.path)).ok()
            })
            .flatten();
        if live.as_deref().map(hex::encode).as_deref() == Some(c.xattr.as_str()) {
            continue;
        }
        let replaced =
            st.st_ino != c.ino || st.st_size as u64 != c.size || st.st_mtime != c.mtime.sec;
        plan.items.push(Item::new(
            c.path.clone(),
            Action::Caps {
                cap: c.clone(),
                replaced,
            },
        ));
    }
    plan
}

/// What was applied.
#[derive(Debug, Default, Serialize)]
pub struct Applied {
    pub restored: Vec<String>,
    /// Restored, but without everything the snapshot records for it (an
    /// xattr the kernel refused on a symlink or device node): the path and
    /// what is missing. Not fatal for the other paths.
    pub incomplete: Vec<(String, String)>,
    /// Not restored for what guard found at the item's own path (a symlink
    /// on the way, something swapped in since the plan): the path and why.
    /// Not fatal for the other paths either.
    pub refused: Vec<(String, String)>,
    /// The error that stopped the restore (the disk full, the store
    /// unreadable…): the items after it were not touched.
    pub failed: Option<(String, String)>,
    pub not_done: Vec<String>,
    /// A signal (SIGTERM, Ctrl-C) that came while the last item was being
    /// written, so that the plan was done when it was seen: the admin
    /// still asked guard to stop, and is told the plan was done whole.
    pub interrupted: Option<String>,
}

/// A refusal that concerns one item alone (see [`Applied::refused`]): the
/// restore goes on with the others, which do not need it.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(msg: String) -> anyhow::Error {
    anyhow::Error::new(Refused(msg))
}

fn errno(e: Errno, what: &str, p: &SysPath) -> anyhow::Error {
    // The errno stays in the chain (shown as before: "what p: message"):
    // `own_cause` reads it to tell a cause at the item's own path from one
    // that concerns the whole restore.
    anyhow::Error::new(io::Error::from(e)).context(format!("{what} {p}"))
}

/// The errno of the first OS error in `err`'s chain.
fn errno_of(err: &anyhow::Error) -> Option<Errno> {
    err.chain()
        .find_map(|c| c.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
        .map(Errno::from_raw_os_error)
}

/// The `statx` attributes of `p` itself (not followed) that the kernel
/// reports, or none where it cannot say (no `statx` before Linux 4.11, a
/// filesystem that does not report them).
fn attributes(root: &SysRoot, p: &SysPath) -> rustix::fs::StatxAttributes {
    use rustix::fs::{StatxAttributes as A, StatxFlags};
    let Some(parent) = p.parent() else {
        return A::empty();
    };
    root.open_dir(&parent)
        .ok()
        .and_then(|dir| {
            rustix::fs::statx(
                &dir,
                OsStr::from_bytes(p.file_name()),
                AtFlags::SYMLINK_NOFOLLOW,
                StatxFlags::BASIC_STATS,
            )
            .ok()
        })
        .map_or(A::empty(), |x| x.stx_attributes & x.stx_attributes_mask)
}

/// Why an item failed, when the cause lies at the item's own path and
/// concerns no other item: the file or its directory made immutable or
/// append-only (`chattr +i`/`+a`, which even root cannot write through;
/// the kernel says only EPERM), or something mounted on the path (EBUSY:
/// a rename never replaces a mount point). `None` for everything else (the
/// disk full, a read-only filesystem, an I/O error), which stops the
/// restore.
fn own_cause(root: &SysRoot, p: &SysPath, err: &anyhow::Error) -> Option<String> {
    use rustix::fs::StatxAttributes as A;
    match errno_of(err)? {
        Errno::PERM | Errno::ACCESS => {
            let dir = p.parent()?;
            [(p.clone(), ""), (dir, "its directory ")]
                .into_iter()
                .find_map(|(at, whose)| {
                    let a = attributes(root, &at);
                    let (flag, what) = if a.contains(A::IMMUTABLE) {
                        ("i", "immutable")
                    } else if a.contains(A::APPEND) {
                        ("a", "append-only")
                    } else {
                        return None;
                    };
                    Some(format!(
                        "{whose}{at} is {what} (chattr +{flag}), which even root cannot \
                         write through: {err:#}; run chattr -{flag} {at} and restore again"
                    ))
                })
        }
        Errno::BUSY if attributes(root, p).contains(A::MOUNT_ROOT) => Some(format!(
            "{p} is a mount point (something is mounted on it), which guard does not \
             replace: {err:#}; unmount it and restore again"
        )),
        Errno::BUSY => Some(format!(
            "{p} is busy (a mount point?): {err:#}; not replaced"
        )),
        _ => None,
    }
}

fn open_parent(root: &SysRoot, p: &SysPath) -> Result<OwnedFd> {
    let parent = p.parent().ok_or_else(|| anyhow!("cannot restore /"))?;
    root.open_dir(&parent).map_err(|e| {
        // Name the symlink, if one is on the way: that is what the admin
        // needs to look at.
        let mut on_the_way = p.ancestors();
        on_the_way.push(parent.clone());
        let link = on_the_way.into_iter().find(|a| {
            root.lstat(a)
                .map(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
                })
                .unwrap_or(false)
        });
        if let Some(l) = link {
            return refused(format!(
                "refusing to write {p}: {l} is a symlink (guard never writes through one)"
            ));
        }
        // An upgrade that put a file where a directory was: that concerns
        // the paths beneath it alone, and guard does not replace it unasked
        // (as `make_dir` refuses the directory itself).
        if e.kind() == io::ErrorKind::NotADirectory {
            let mut on_the_way = p.ancestors();
            on_the_way.push(parent.clone());
            let now = on_the_way.into_iter().find_map(|a| {
                let kind = kind_of(root.lstat(&a).ok()?.st_mode)?;
                (kind != FileKind::Dir).then_some((a, kind))
            });
            if let Some((a, kind)) = now {
                return refused(format!(
                    "refusing to write {p}: {a} is a {} now, where the snapshot has a \
                     directory (not replaced unasked: remove it and restore {a} to have \
                     the directory back)",
                    kind.as_str()
                ));
            }
        }
        anyhow!("cannot open {}: {e}", parent)
    })
}

/// The owner to give a restored path, and what its line must say when that
/// is not the recorded user or group. Names first: an upgrade may have
/// recreated a system user with another uid, and the file belongs to the
/// user, not the number. A recorded name that no longer exists (the
/// package that made the user was removed) keeps its number while no
/// account holds it, as the snapshot has it, said so: a user made later
/// with that uid would own the file. A number now another account's is not
/// given to it (it would read what the snapshot kept from it, a key, a
/// password map): root gets the path instead, said so.
fn owner(e: &Entry, acc: &Accounts) -> (u32, u32, Vec<String>) {
    let mut notes = Vec::new();
    let mut pick = |kind: &str,
                    id_kind: &str,
                    name: Option<&str>,
                    id: u32,
                    known: &std::collections::BTreeMap<u32, String>,
                    by_name: Option<u32>| {
        // (0 is root whatever it is called; a root with no account file
        // to go by, or whose own /etc/passwd is among what vanished, says
        // nothing about anyone)
        let Some(name) = name.filter(|_| id != 0 && !known.is_empty()) else {
            return id;
        };
        if let Some(n) = by_name {
            return n;
        }
        match known.get(&id) {
            None => {
                notes.push(format!(
                    "{kind} {name} no longer exists: {id_kind} {id} kept, which no {kind} has now"
                ));
                id
            }
            Some(other) => {
                notes.push(format!(
                    "{kind} {name} no longer exists and {id_kind} {id} is now {other}'s: \
                     given to root instead"
                ));
                0
            }
        }
    };
    let uid = pick(
        "user",
        "uid",
        e.user.as_deref(),
        e.uid,
        &acc.users,
        e.user.as_deref().and_then(|n| acc.uid_of(n)),
    );
    let gid = pick(
        "group",
        "gid",
        e.group.as_deref(),
        e.gid,
        &acc.groups,
        e.group.as_deref().and_then(|n| acc.gid_of(n)),
    );
    (uid, gid, notes)
}

/// Marks the items whose recorded user or group no longer exists in the
/// root's accounts (see [`owner`]), so the plan says so before the
/// question: the admin may want to create the user first.
fn mark_owners(plan: &mut Plan, root: &SysRoot) {
    if plan.items.is_empty() {
        return;
    }
    let acc = Accounts::load(root);
    for item in &mut plan.items {
        let e = match &item.action {
            Action::Dir { entry, .. }
            | Action::File { entry, .. }
            | Action::Symlink { entry, .. }
            | Action::Special { entry } => entry,
            Action::Caps { .. } | Action::Mtime { .. } => continue,
        };
        let (_, _, notes) = owner(e, &acc);
        if !notes.is_empty() {
            item.owner = Some(notes.join("; "));
        }
    }
}

fn ts(t: crate::store::Time) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as _,
    }
}

/// Owner, mode, xattrs on an open fd, in the order the kernel needs: chown
/// clears capabilities and set-id bits, so it comes first; ACLs after the
/// mode (they carry the group bits); capabilities last. Returns what the
/// path got other than recorded (an owner gone, an xattr the filesystem
/// refused): the path is still restored with the rest, as a symlink or node
/// is (`set_node_xattrs`), and its line says what is missing.
fn apply_meta(fd: impl AsFd, e: &Entry, acc: &Accounts) -> Result<Vec<String>> {
    let fd = fd.as_fd();
    let (uid, gid, mut notes) = owner(e, acc);
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|x| errno(x, "chown", &e.path))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(e.mode)).map_err(|x| errno(x, "chmod", &e.path))?;
    let (live, _) = crate::xattr::read_all_fd(fd).unwrap_or_default();
    for name in live.keys() {
        if !e.xattrs.contains_key(name) {
            let _ = rustix::fs::fremovexattr(fd, name.as_str());
        }
    }
    let mut names: Vec<&String> = e.xattrs.keys().collect();
    names.sort_by_key(|n| n.as_str() == crate::xattr::CAPABILITY);
    for name in names {
        let v =
            hex::decode(&e.xattrs[name]).map_err(|_| anyhow!("bad xattr value for {}", e.path))?;
        match rustix::fs::fsetxattr(fd, name.as_str(), &v, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // What this filesystem or kernel does not take (an ACL where it
            // is mounted without ACLs or has none, a security.* label it
            // refuses, a name it does not know) concerns this path alone.
            // A full disk (ENOSPC), a read-only or failing one still stops
            // the restore.
            Err(
                x @ (Errno::OPNOTSUPP
                | Errno::PERM
                | Errno::ACCESS
                | Errno::INVAL
                | Errno::TOOBIG
                | Errno::RANGE),
            ) => {
                let err = io::Error::from(x);
                if name == "system.posix_acl_access" {
                    // The mode's group bits are the ACL's mask: without the
                    // ACL they would go to the owning group, which the ACL
                    // may have given less. Give it its own entry's bits: no
                    // one gets more than the snapshot gave.
                    let own = acl_group_obj(&v).unwrap_or(0);
                    let mode = (e.mode & !0o070) | (own << 3);
                    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
                        .map_err(|x| errno(x, "chmod", &e.path))?;
                    notes.push(format!(
                        "ACL refused: {err}; mode {mode:04o} instead of {:04o}, so the users \
                         and groups it named lose their access",
                        e.mode
                    ));
                } else {
                    notes.push(format!("xattr {name} refused: {err}"));
                }
            }
            Err(x) => return Err(errno(x, &format!("set xattr {name} on"), &e.path)),
        }
    }
    Ok(notes)
}

/// The permission bits of the owning group's entry (`ACL_GROUP_OBJ`) in a
/// `system.posix_acl_access` value: a 4-byte version, then 8-byte entries
/// of tag (u16), perm (u16) and id (u32), little-endian.
fn acl_group_obj(v: &[u8]) -> Option<u32> {
    const ACL_GROUP_OBJ: u16 = 0x04;
    v.get(4..)?.chunks_exact(8).find_map(|c| {
        (u16::from_le_bytes([c[0], c[1]]) == ACL_GROUP_OBJ)
            .then(|| u32::from(u16::from_le_bytes([c[2], c[3]]) & 0o7))
    })
}

fn copy_object(store: &Store, e: &Entry, out: &mut std::fs::File) -> Result<()> {
    let hash = e
        .blake3
        .as_deref()
        .ok_or_else(|| anyhow!("{}: the snapshot has no content for it", e.path))?;
    let mut src = store.open_object(hash)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    // (the holes of a sparse file stay holes: a restored 3 GB image with
    // no data would otherwise take 3 GB of the target's filesystem)
    let mut w = crate::store::SparseWriter::new(out);
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write(&buf[..n])
            .map_err(|x| anyhow!("write {}: {x}", e.path))?;
    }
    w.finish().map_err(|x| anyhow!("write {}: {x}", e.path))?;
    if h.finalize().to_hex().as_str() != hash {
        bail!(
            "object {hash} for {} is corrupt in the store; run guard verify",
            e.path
        );
    }
    Ok(())
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How much of the target's name a temp name carries: enough for an admin
/// who finds a leftover to see what it was, short enough that the whole temp
/// name stays far below NAME_MAX (255 bytes) for any target name. The pid
/// and sequence number, not the name, make it unique.
const TMP_NAME_PART: usize = 64;

fn tmp_name(p: &SysPath) -> Vec<u8> {
    let mut n = b".guard-restore.".to_vec();
    let name = p.file_name();
    // Names are bytes: a cut inside a UTF-8 sequence is still a valid name.
    n.extend_from_slice(&name[..name.len().min(TMP_NAME_PART)]);
    n.extend_from_slice(
        format!(
            ".{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
        .as_bytes(),
    );
    n
}

/// Fails with EPERM, before a temp name is made in `dir`, when `dir` is
/// append-only or immutable (`chattr +a`/`+i`): an append-only directory
/// takes a new name but lets none be renamed or removed, so the temp name
/// would stay beside the target for good. `own_cause` then names the flag.
fn temp_name_allowed(dir: &OwnedFd, p: &SysPath) -> Result<()> {
    use rustix::fs::{StatxAttributes as A, StatxFlags};
    let locked = rustix::fs::statx(dir, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
        .map(|x| x.stx_attributes & x.stx_attributes_mask)
        .is_ok_and(|a| a.intersects(A::APPEND | A::IMMUTABLE));
    if locked {
        return Err(errno(Errno::PERM, "rename onto", p));
    }
    Ok(())
}

/// Puts a fully written fd in place under `name` in `dir`.
fn install(
    dir: &OwnedFd,
    tmp: Option<&[u8]>,
    fd: &OwnedFd,
    name: &[u8],
    p: &SysPath,
) -> Result<()> {
    let name = OsStr::from_bytes(name);
    match tmp {
        // Named temp: rename over the target (atomic replace).
        Some(t) => rustix::fs::renameat(dir, OsStr::from_bytes(t), dir, name)
            .map_err(|x| errno(x, "rename onto", p)),
        // O_TMPFILE: link it in; if the name exists, link under a temp name
        // and rename over it.
        None => match rustix::fs::linkat(fd, "", dir, name, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                temp_name_allowed(dir, p)?;
                let t = tmp_name(p);
                rustix::fs::linkat(fd, "", dir, OsStr::from_bytes(&t), AtFlags::EMPTY_PATH)
                    .map_err(|x| errno(x, "link", p))?;
                rustix::fs::renameat(dir, OsStr::from_bytes(&t), dir, name).map_err(|x| {
                    let _ = rustix::fs::unlinkat(dir, OsStr::from_bytes(&t), AtFlags::empty());
                    errno(x, "rename onto", p)
                })
            }
            Err(x) => Err(errno(x, "link", p)),
        },
    }
}

fn write_file(root: &SysRoot, store: &Store, e: &Entry, acc: &Accounts) -> Result<Vec<String>> {
    let dir = open_parent(root, &e.path)?;
    let (fd, tmp) = match rustix::fs::openat(
        &dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => (fd, None),
        Err(Errno::OPNOTSUPP) | Err(Errno::ISDIR) | Err(Errno::INVAL) => {
            temp_name_allowed(&dir, &e.path)?;
            let t = tmp_name(&e.path);
            let fd = rustix::fs::openat(
                &dir,
                OsStr::from_bytes(&t),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|x| errno(x, "create temp file for", &e.path))?;
            (fd, Some(t))
        }
        Err(x) => return Err(errno(x, "create temp file for", &e.path)),
    };
    let res = (|| -> Result<Vec<String>> {
        let mut f = std::fs::File::from(fd.try_clone()?);
        copy_object(store, e, &mut f)?;
        let notes = apply_meta(&fd, e, acc)?;
        rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: ts(e.mtime),
                last_modification: ts(e.mtime),
            },
        )
        .map_err(|x| errno(x, "set mtime of", &e.path))?;
        rustix::fs::fsync(&fd).map_err(|x| errno(x, "fsync", &e.path))?;
        install(&dir, tmp.as_deref(), &fd, e.path.file_name(), &e.path)?;
        rustix::fs::fsync(&dir).map_err(|x| errno(x, "fsync dir of", &e.path))?;
        Ok(notes)
    })();
    if res.is_err() {
        if let Some(t) = &tmp {
            let _ = rustix::fs::unlinkat(&dir, OsStr::from_bytes(t), AtFlags::empty());
        }
    }
    res
}

fn make_dir(root: &SysRoot, e: &Entry, exists: bool, acc: &Accounts) -> Result<Vec<String>> {
    let dir = open_parent(root, &e.path)?;
    let name = OsStr::from_bytes(e.path.file_name());
    if !exists {
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(x) => return Err(errno(x, "mkdir", &e.path)),
        }
    }
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|x| match x {
        // something else where the directory was (a symlink the upgrade
        // left, a file): never followed, never replaced unasked
        Errno::NOTDIR | Errno::LOOP => {
            let now = root
                .lstat(&e.path)
                .ok()
                .and_then(|st| kind_of(st.st_mode))
                .map_or("something else", |k| k.as_str());
            refused(format!(
                "refusing to restore the directory {}: a {now} is there now (remove it \
                 and restore again to have the directory back)",
                e.path
            ))
        }
        x => errno(x, "open dir", &e.path),
    })?;
    let notes = apply_meta(&fd, e, acc)?;
    rustix::fs::fsync(&dir).map_err(|x| errno(x, "fsync dir of", &e.path))?;
    Ok(notes)
}

fn set_dir_mtime(root: &SysRoot, e: &Entry) {
    if let Ok(fd) = root.open_dir(&e.path) {
        let _ = rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: ts(e.mtime),
                last_modification: ts(e.mtime),
            },
        );
    }
}

/// Sets the recorded xattrs on a symlink or node restore just made, and
/// removes any it got that the snapshot does not record (an inherited
/// label). The kernel may refuse one (`user.*` on these kinds, a label the
/// LSM rejects): that is returned, not raised, so the node still goes in
/// place with all it could get, the rest of the restore goes on, and the
/// result names what is missing.
fn set_node_xattrs(node: &Node, e: &Entry) -> Result<Vec<String>> {
    let mut refused = Vec::new();
    let (live, _) = node.read_all().unwrap_or_default();
    for name in live.keys().filter(|n| !e.xattrs.contains_key(*n)) {
        if let Err(x) = node.remove(name) {
            refused.push(format!(
                "xattr {name} (not in the snapshot) not removed: {x}"
            ));
        }
    }
    for (name, v) in &e.xattrs {
        let v = hex::decode(v).map_err(|_| anyhow!("bad xattr value for {}", e.path))?;
        if let Err(x) = node.set(name, &v) {
            refused.push(format!("xattr {name} refused: {x}"));
        }
    }
    Ok(refused)
}

/// Fails unless `name` in `dir` still holds the inode `pinned` holds: the
/// `*xattrat` calls and the rename that puts a new node in place go by
/// name, so a name swapped since it was pinned is refused rather than
/// installed.
fn still_pinned(dir: &OwnedFd, name: &std::ffi::CStr, pinned: &OwnedFd, e: &Entry) -> Result<()> {
    let a = rustix::fs::fstat(pinned).map_err(|x| errno(x, "stat new node", &e.path))?;
    let b = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|x| errno(x, "stat new node", &e.path))?;
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(refused(format!(
            "{}: the new {} was replaced by something else before it was put in place",
            e.path,
            e.kind.as_str()
        )));
    }
    Ok(())
}

fn make_symlink(root: &SysRoot, e: &Entry, acc: &Accounts) -> Result<Vec<String>> {
    let dir = open_parent(root, &e.path)?;
    let target = e
        .target
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no recorded target", e.path))?;
    temp_name_allowed(&dir, &e.path)?;
    let t = tmp_name(&e.path);
    rustix::fs::symlinkat(OsStr::from_bytes(&target.0), &dir, OsStr::from_bytes(&t))
        .map_err(|x| errno(x, "symlink", &e.path))?;
    let (uid, gid, notes) = owner(e, acc);
    let res = (|| -> Result<Vec<String>> {
        // Temp names are built from a path's bytes, which hold no NUL.
        let name = CString::new(t.clone())?;
        let pinned = pin(&dir, &name).map_err(|x| errno(x, "open new symlink", &e.path))?;
        let st = rustix::fs::fstat(&pinned).map_err(|x| errno(x, "stat new symlink", &e.path))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Symlink {
            return Err(refused(format!(
                "{}: the new symlink was replaced by something else before its owner was set",
                e.path
            )));
        }
        rustix::fs::chownat(
            &pinned,
            "",
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(|x| errno(x, "chown", &e.path))?;
        let mut refused = notes;
        refused.extend(set_node_xattrs(
            &Node {
                dir: dir.as_fd(),
                name: &name,
                pinned: pinned.as_fd(),
            },
            e,
        )?);
        let _ = rustix::fs::utimensat(
            &dir,
            OsStr::from_bytes(&t),
            &Timestamps {
                last_access: ts(e.mtime),
                last_modification: ts(e.mtime),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
        still_pinned(&dir, &name, &pinned, e)?;
        rustix::fs::renameat(
            &dir,
            OsStr::from_bytes(&t),
            &dir,
            OsStr::from_bytes(e.path.file_name()),
        )
        .map_err(|x| errno(x, "rename onto", &e.path))?;
        rustix::fs::fsync(&dir).map_err(|x| errno(x, "fsync dir of", &e.path))?;
        Ok(refused)
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(&dir, OsStr::from_bytes(&t), AtFlags::empty());
    }
    res
}

fn make_special(root: &SysRoot, e: &Entry, acc: &Accounts) -> Result<Vec<String>> {
    let dir = open_parent(root, &e.path)?;
    let ft = match e.kind {
        FileKind::Fifo => rustix::fs::FileType::Fifo,
        FileKind::CharDevice => rustix::fs::FileType::CharacterDevice,
        FileKind::BlockDevice => rustix::fs::FileType::BlockDevice,
        _ => bail!("{}: cannot create a {}", e.path, e.kind.as_str()),
    };
    // Made under a temp name and renamed over the target, like a symlink:
    // a node that names another device (or a file where a fifo was) is
    // replaced in one step, and the target never stands half made.
    temp_name_allowed(&dir, &e.path)?;
    let t = tmp_name(&e.path);
    let name = OsStr::from_bytes(&t);
    rustix::fs::mknodat(
        &dir,
        name,
        ft,
        Mode::from_raw_mode(e.mode),
        e.rdev.unwrap_or(0),
    )
    .map_err(|x| errno(x, "mknod", &e.path))?;
    let (uid, gid, notes) = owner(e, acc);
    let res = (|| -> Result<Vec<String>> {
        let mut refused = notes;
        refused.extend(finish_special(&dir, name, ft, e, uid, gid)?);
        rustix::fs::renameat(&dir, name, &dir, OsStr::from_bytes(e.path.file_name()))
            .map_err(|x| errno(x, "rename onto", &e.path))?;
        rustix::fs::fsync(&dir).map_err(|x| errno(x, "fsync dir of", &e.path))?;
        Ok(refused)
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
    }
    res
}

/// Owner, mode, xattrs and mtime of the node `make_special` just made, set
/// through an `O_PATH` fd on it rather than by name: `chmodat` and
/// `utimensat` by name follow a symlink, and the name could have been
/// swapped for one between `mknod` and here (a directory another user can
/// write to). The fd pins the inode; its type (and device number) is
/// checked first, and that the name still holds it last. Returns the
/// xattrs the kernel refused.
fn finish_special(
    dir: &OwnedFd,
    name: &OsStr,
    ft: rustix::fs::FileType,
    e: &Entry,
    uid: u32,
    gid: u32,
) -> Result<Vec<String>> {
    // Temp names are built from a path's bytes, which hold no NUL.
    let name = CString::new(name.as_bytes())?;
    let fd = pin(dir, &name).map_err(|x| errno(x, "open new node", &e.path))?;
    let st = rustix::fs::fstat(&fd).map_err(|x| errno(x, "stat new node", &e.path))?;
    let is_dev = matches!(e.kind, FileKind::CharDevice | FileKind::BlockDevice);
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != ft
        || (is_dev && Some(st.st_rdev) != e.rdev)
    {
        return Err(refused(format!(
            "{}: the new {} was replaced by something else before its owner and mode were set",
            e.path,
            e.kind.as_str()
        )));
    }
    rustix::fs::chownat(
        &fd,
        "",
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH,
    )
    .map_err(|x| errno(x, "chown", &e.path))?;
    // fchmod and futimens refuse an O_PATH fd, and rustix has no
    // fchmodat(AT_EMPTY_PATH); the fd's /proc link resolves to the inode
    // itself, never to whatever the name now holds.
    let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmod(via.as_str(), Mode::from_raw_mode(e.mode))
        .map_err(|x| errno(x, "chmod", &e.path))?;
    let refused = set_node_xattrs(
        &Node {
            dir: dir.as_fd(),
            name: &name,
            pinned: fd.as_fd(),
        },
        e,
    )?;
    rustix::fs::utimensat(
        rustix::fs::CWD,
        via.as_str(),
        &Timestamps {
            last_access: ts(e.mtime),
            last_modification: ts(e.mtime),
        },
        AtFlags::empty(),
    )
    .map_err(|x| errno(x, "set mtime of", &e.path))?;
    still_pinned(dir, &name, &fd, e)?;
    Ok(refused)
}

/// Sets the recorded mtime on a path that is otherwise as in the snapshot,
/// through an `O_PATH | O_NOFOLLOW` fd pinned on it, as `finish_special`
/// does: a symlink gets its own mtime, never its target's, and a name
/// swapped since the plan is checked, not followed. The atime is left
/// alone: the snapshot does not record it.
fn put_back_mtime(root: &SysRoot, e: &Entry) -> Result<()> {
    let dir = open_parent(root, &e.path)?;
    let name = CString::new(e.path.file_name())?;
    let fd = pin(&dir, &name).map_err(|x| errno(x, "open", &e.path))?;
    let st = rustix::fs::fstat(&fd).map_err(|x| errno(x, "stat", &e.path))?;
    if kind_of(st.st_mode) != Some(e.kind) {
        return Err(refused(format!(
            "{}: no longer a {} as the plan saw it; mtime not set",
            e.path,
            e.kind.as_str()
        )));
    }
    // utimensat by fd refuses an O_PATH fd; the fd's /proc link resolves
    // to the inode itself (see `crate::xattr::Node`).
    let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::utimensat(
        rustix::fs::CWD,
        via.as_str(),
        &Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: ts(e.mtime),
        },
        AtFlags::empty(),
    )
    .map_err(|x| errno(x, "set mtime of", &e.path))
}

fn set_caps(root: &SysRoot, c: &CapEntry) -> Result<()> {
    let f = root
        .open_exact(&c.path)
        .with_context(|| format!("cannot open {}", c.path))?;
    let raw =
        hex::decode(&c.xattr).map_err(|_| anyhow!("bad recorded capability for {}", c.path))?;
    rustix::fs::fsetxattr(
        &f,
        crate::xattr::CAPABILITY,
        &raw,
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|x| errno(x, "setcap", &c.path))?;
    rustix::fs::fsync(&f).map_err(|x| errno(x, "fsync", &c.path))
}

/// Applies a plan in order; stops at the first failure (the files already
/// restored stay restored, the failed one is as it was). An xattr the
/// kernel refuses on a symlink or node is no such failure: the node is
/// restored without it, listed in `incomplete`, and the plan goes on.
pub fn apply(plan: &Plan, root: &SysRoot, store: &Store, progress: &dyn Progress) -> Applied {
    let mut acc = Accounts::load(root);
    let mut out = Applied::default();
    let mut dirs: Vec<&Entry> = Vec::new();
    for (i, item) in plan.items.iter().enumerate() {
        // SIGTERM or Ctrl-C (caught by the caller): stop between two items,
        // where every path is either restored or as it was, and say so.
        if let Some(sig) = crate::interrupt::arrived() {
            out.failed = Some((
                item.path.to_string(),
                format!("interrupted by {sig} before it was restored"),
            ));
            out.not_done = plan.items[i + 1..]
                .iter()
                .map(|it| it.path.to_string())
                .collect();
            break;
        }
        progress.set_message(&item.path.to_string());
        let res = match &item.action {
            Action::Dir { entry, exists } => {
                dirs.push(entry);
                make_dir(root, entry, *exists, &acc)
            }
            Action::File { entry, .. } => write_file(root, store, entry, &acc),
            Action::Symlink { entry, .. } => make_symlink(root, entry, &acc),
            Action::Special { entry } => make_special(root, entry, &acc),
            Action::Caps { cap, .. } => set_caps(root, cap).map(|()| Vec::new()),
            Action::Mtime { entry } => {
                // a directory's children may still be written below
                if entry.kind == FileKind::Dir {
                    dirs.push(entry);
                }
                put_back_mtime(root, entry).map(|()| Vec::new())
            }
        };
        progress.inc(1);
        match res {
            Ok(refused) => {
                // the accounts the paths after it are given to by name
                if ["/etc/passwd", "/etc/group"].contains(&item.path.to_string().as_str()) {
                    acc = Accounts::load(root);
                }
                out.restored.push(item.path.to_string());
                if !refused.is_empty() {
                    out.incomplete
                        .push((item.path.to_string(), refused.join("; ")));
                }
            }
            Err(e) if e.chain().any(|c| c.is::<Refused>()) => {
                out.refused.push((item.path.to_string(), format!("{e:#}")));
            }
            Err(e) => {
                if let Some(why) = own_cause(root, &item.path, &e) {
                    out.refused.push((item.path.to_string(), why));
                    continue;
                }
                out.failed = Some((item.path.to_string(), format!("{e:#}")));
                out.not_done = plan.items[i + 1..]
                    .iter()
                    .map(|it| it.path.to_string())
                    .collect();
                break;
            }
        }
    }
    // Writing children moved the directories' mtimes: put them back last,
    // deepest first.
    for d in dirs.iter().rev() {
        set_dir_mtime(root, d);
    }
    // A signal seen by no item (it came during the last one) still ends
    // the command as one: taken for nothing, a walk would go on to its
    // next step after the admin pressed Ctrl-C.
    if out.failed.is_none() {
        out.interrupted = crate::interrupt::arrived().map(|sig| sig.to_string());
    }
    progress.finish();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::store::Time;

    fn fifo_entry(mode: u32) -> Entry {
        Entry {
            path: SysPath::new("/etc/n"),
            kind: FileKind::Fifo,
            mode,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Time {
                sec: 1_600_000_000,
                nsec: 5,
            },
            size: 0,
            blake3: None,
            target: None,
            rdev: None,
            xattrs: BTreeMap::new(),
            caps: None,
            owners: Vec::new(),
            dev: 0,
            ino: 0,
            ctime: Time { sec: 0, nsec: 0 },
        }
    }

    fn open(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap()
    }

    #[test]
    fn a_node_swapped_for_a_symlink_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "host file\n").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::metadata(&outside).unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("d/n")).unwrap();

        let dir = open(&t.path().join("d"));
        let e = fifo_entry(0o4777);
        let err = finish_special(&dir, OsStr::new("n"), rustix::fs::FileType::Fifo, &e, 0, 0)
            .unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err:#}");
        let after = std::fs::metadata(&outside).unwrap();
        assert_eq!(after.mode(), before.mode());
        assert_eq!(after.mtime(), before.mtime());
    }

    #[test]
    fn a_new_fifo_gets_its_mode_and_mtime() {
        let t = tempfile::tempdir().unwrap();
        let dir = open(t.path());
        rustix::fs::mknodat(
            &dir,
            "n",
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = fifo_entry(0o640);
        finish_special(&dir, OsStr::new("n"), rustix::fs::FileType::Fifo, &e, 0, 0).unwrap();
        let md = std::fs::symlink_metadata(t.path().join("n")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 5));
    }

    /// What `select` keeps: the chosen items and the directories to be
    /// made that a chosen item lies beneath, nothing else (it works by
    /// index and path lookups now, no longer item against item).
    #[test]
    fn select_keeps_the_chosen_items_and_the_directories_they_need() {
        let item = |p: &str, dir: bool, exists: bool| {
            let mut e = fifo_entry(0o755);
            e.path = SysPath::new(p);
            e.kind = if dir { FileKind::Dir } else { FileKind::File };
            let action = if dir {
                Action::Dir { entry: e, exists }
            } else {
                Action::File { entry: e, exists }
            };
            Item::new(SysPath::new(p), action)
        };
        let mut plan = Plan {
            from: "test".into(),
            items: vec![
                item("/etc/a", true, false),
                item("/etc/a/b", true, false),
                item("/etc/a/b/f", false, false),
                item("/etc/a/bb", true, false),
                item("/etc/c", true, true),
                item("/etc/c/g", false, false),
                item("/etc/d", true, false),
            ],
            skipped: Vec::new(),
        };
        plan.select(&[2, 5, 99]);
        let kept: Vec<String> = plan.items.iter().map(|i| i.path.to_string()).collect();
        assert_eq!(kept, ["/etc/a", "/etc/a/b", "/etc/a/b/f", "/etc/c/g"]);
    }

    #[test]
    fn an_xattr_the_kernel_refuses_on_a_node_is_reported_and_the_plan_goes_on() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        let root = SysRoot::open(t.path()).unwrap();
        let store = Store::open_read(&t.path().join("store")).unwrap();
        let hexed = |v: &str| hex::encode(v);
        // user.* on a symlink, which the kernel refuses (EPERM): a stand-in
        // for what it refuses in practice (a label the running LSM policy
        // does not know, a namespace another kernel allowed)
        let mut link = fifo_entry(0o777);
        link.path = SysPath::new("/etc/l");
        link.kind = FileKind::Symlink;
        link.target = Some(crate::store::SysPathRaw(b"n".to_vec()));
        link.xattrs = BTreeMap::from([
            ("trusted.ok".to_string(), hexed("1")),
            ("user.refused".to_string(), hexed("2")),
        ]);
        let mut fifo = fifo_entry(0o600);
        fifo.xattrs = BTreeMap::from([("trusted.ok".to_string(), hexed("3"))]);
        let plan = Plan {
            from: "test".into(),
            items: vec![
                Item::new(
                    link.path.clone(),
                    Action::Symlink {
                        entry: link,
                        exists: false,
                    },
                ),
                Item::new(fifo.path.clone(), Action::Special { entry: fifo }),
            ],
            skipped: Vec::new(),
        };
        let out = apply(&plan, &root, &store, &crate::ui::NoProgress);
        assert_eq!(out.failed, None);
        assert_eq!(out.restored, ["/etc/l", "/etc/n"]);
        assert_eq!(out.incomplete.len(), 1, "{:?}", out.incomplete);
        let (p, why) = &out.incomplete[0];
        assert_eq!(p, "/etc/l");
        assert!(why.contains("xattr user.refused refused"), "{why}");
        assert!(why.contains("not permitted"), "{why}");
        // everything the kernel did accept is there, on the nodes themselves
        let read = |p: &str| crate::xattr::read_all_path(&t.path().join(p)).unwrap().0;
        assert_eq!(
            read("etc/l"),
            BTreeMap::from([("trusted.ok".to_string(), b"1".to_vec())])
        );
        assert_eq!(
            read("etc/n"),
            BTreeMap::from([("trusted.ok".to_string(), b"3".to_vec())])
        );
        assert_eq!(
            std::fs::read_link(t.path().join("etc/l")).unwrap(),
            std::path::Path::new("n")
        );
        // and no temp name is left beside them
        assert_eq!(std::fs::read_dir(t.path().join("etc")).unwrap().count(), 2);
    }
}
