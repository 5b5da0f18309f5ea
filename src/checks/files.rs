//! Generic file findings: `file/vanished`, `file/modified`, `file/added`,
//! `file/meta-changed`. A vanished or added directory is one finding, not
//! one per entry beneath it.

use super::{Check, Context};
use crate::diff::{self, Change};
use crate::report::{Finding, Severity};
use crate::store::{Entry, FileKind, Manifest};
use crate::sysroot::{SysPath, SysRoot};

pub struct FileChanges;

/// Largest file whose diff goes into a finding's detail (or `guard
/// diff`'s output): both sides are read whole into memory and diffed line
/// by line, which a multi-GB image or log in an include must not cost.
pub const DIFF_LIMIT: u64 = 256 * 1024;

fn owned_by(e: &Entry) -> String {
    if e.owners.is_empty() {
        "owned by no package: an admin's own file".into()
    } else {
        format!("owned by {}", e.owners.join(", "))
    }
}

/// Did the owning package change version between the two manifests?
fn package_changed(e: &Entry, base: &Manifest, live: &Manifest) -> Option<String> {
    e.owners.iter().find_map(|p| {
        let (a, b) = (
            base.packages.installed.get(p),
            live.packages.installed.get(p),
        );
        (a != b).then(|| {
            format!(
                "{p} {} -> {}",
                a.map_or("(absent)", String::as_str),
                b.map_or("(removed)", String::as_str)
            )
        })
    })
}

/// Trees only packages install into: a file there that is gone was
/// removed by its package (`/usr/local` is the admin's).
fn in_vendor_tree(p: &SysPath) -> bool {
    let local = SysPath::new("/usr/local");
    [
        "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
    ]
    .iter()
    .any(|t| p.starts_with(&SysPath::new(t)))
        && !p.starts_with(&local)
}

/// Trees a trust-store tool writes wholly from its sources whenever a
/// certificate package changes (Arch runs `update-ca-trust` as an alpm
/// hook: `trust extract` into `cadir/`, then links all of it into
/// `/etc/ssl/certs`): nothing there is an admin's, whose own certificates
/// go into the sources (`trust-source/anchors/`), and a file there that
/// went was dropped with its certificate. (tree, the tool)
const GENERATED: &[(&str, &str)] = &[
    ("/etc/ca-certificates/extracted", "update-ca-trust"),
    ("/etc/pki/ca-trust/extracted", "update-ca-trust"),
];

/// Keyrings a tool keeps in /etc, which package transactions rewrite:
/// pacman-key's GnuPG home is refreshed by archlinux-keyring's install
/// script (`pacman-key --populate`) and by the keyring step of an Arch
/// upgrade. A change there is the keyring being brought up to date, and
/// restoring the old files would undo it (incident 4 again: signatures
/// from "unknown trust"). (tree, the tool)
const KEYRINGS: &[(&str, &str)] = &[("/etc/pacman.d/gnupg", "pacman-key")];

/// Trees in /etc a tool writes, rewrites and prunes by itself, with no
/// admin's hand in them. LVM archives a volume group's metadata before
/// each change to it (`/etc/lvm/archive/VG_NNNNN-RANDOM.vg`) and deletes
/// the oldest archives past `retain_min` and `retain_days` (lvm.conf: 10
/// and 30); it rewrites `/etc/lvm/backup/VG` after each change. On a
/// server whose backup script takes a nightly LVM snapshot an archive
/// went every night, each an admin's own file vanished: critical, a page.
/// Their churn is info without a fix; they are still recorded (for
/// `vgcfgrestore`; `guard restore PATH` brings one back by name).
/// (tree, what it is)
const TOOL_STATE: &[(&str, &str)] = &[
    (
        "/etc/lvm/archive",
        "LVM's metadata archive: lvm adds one before each change to a volume \
         group and prunes the old ones itself (retain_min, retain_days in lvm.conf)",
    ),
    (
        "/etc/lvm/backup",
        "LVM's metadata backup: lvm rewrites it after each change to the volume \
         group and removes it with the group",
    ),
];

/// What `p` is, when it lies in a [`TOOL_STATE`] tree.
fn tool_state(p: &SysPath) -> Option<&'static str> {
    TOOL_STATE
        .iter()
        .find(|(t, _)| {
            let t = SysPath::new(t);
            *p != t && p.starts_with(&t)
        })
        .map(|(_, what)| *what)
}

/// The tool that keeps `p`, when it lies in a [`KEYRINGS`] tree.
fn keyring_tool(p: &SysPath) -> Option<&'static str> {
    KEYRINGS
        .iter()
        .find(|(t, _)| p.starts_with(&SysPath::new(t)))
        .map(|(_, by)| *by)
}

/// The tool that writes `p`, when it lies in a [`GENERATED`] tree.
pub fn generated_by(p: &SysPath) -> Option<&'static str> {
    GENERATED
        .iter()
        .find(|(t, _)| {
            let t = SysPath::new(t);
            *p != t && p.starts_with(&t)
        })
        .map(|(_, by)| *by)
}

/// A vanished symlink of no package that led to a package's file which is
/// gone as well: the file it points at, followed through the links the
/// snapshot recorded that vanished with it (`/etc/ssl/certs/5273a94c.0 ->
/// E-Tugra_….pem -> /usr/share/ca-certificates/mozilla/E-Tugra_….crt`), is
/// one the snapshot records as a package's, or lies where only packages
/// install (`/usr`, not `/usr/local`). Such links are made by maintainer
/// scripts and triggers (update-ca-certificates, postinsts), which remove
/// them with their target when an upgrade drops it: that is no admin's
/// loss, and restored the link would dangle. Returns the file it led to.
pub fn link_to_removed_file(e: &Entry, base: &Manifest, root: &SysRoot) -> Option<SysPath> {
    if e.kind != FileKind::Symlink || !e.owners.is_empty() {
        return None;
    }
    let mut link = e;
    // (a chain of links in /etc is short; this bounds a loop of them)
    for _ in 0..8 {
        let t = &link.target.as_ref()?.0;
        let to = super::normalize(&if t.starts_with(b"/") {
            SysPath::new(t)
        } else {
            link.path.parent()?.join(t)
        });
        if root.resolves(&to) {
            return None; // restored, the link would work
        }
        match base.entry(&to) {
            Some(next) if next.kind == FileKind::Symlink && !root.exists(&to) => link = next,
            Some(file) => {
                return (!file.owners.is_empty() || generated_by(&to).is_some()).then_some(to)
            }
            None => return (in_vendor_tree(&to) || generated_by(&to).is_some()).then_some(to),
        }
    }
    None
}

/// Where a recorded link points, as a path inside the root.
fn target_of(link: &Entry) -> Option<SysPath> {
    let t = &link.target.as_ref()?.0;
    Some(super::normalize(&if t.starts_with(b"/") {
        SysPath::new(t)
    } else {
        link.path.parent()?.join(t)
    }))
}

/// For a vanished link of no package whose target is still there, where
/// only packages install: that target, whose owner decides
/// [`link_into_changed_package`] (read from the live database, since the
/// snapshot records nothing under `/usr/share`).
pub fn live_target(e: &Entry, root: &SysRoot) -> Option<SysPath> {
    if e.kind != FileKind::Symlink || !e.owners.is_empty() {
        return None;
    }
    let to = target_of(e)?;
    (in_vendor_tree(&to) && root.resolves(&to)).then_some(to)
}

/// A vanished link of no package to a package's file that is still there,
/// whose package was upgraded (or removed) since the snapshot: such links
/// are made by maintainer scripts (postfix's postinst in bookworm linked
/// `/etc/postfix/makedefs.out` to `/usr/share/postfix/makedefs.out`; the
/// trixie one removes it), and the upgrade that changed the package took
/// it. An admin could have made it too, so it stays a warning, not info;
/// a link into a package that did not change, or into `/etc` or
/// `/usr/local`, stays the admin's. Returns the file and the changes of
/// its owners.
pub fn link_into_changed_package(
    e: &Entry,
    base: &Manifest,
    root: &SysRoot,
    live: &crate::pkg::PackageInfo,
) -> Option<(SysPath, Vec<crate::pkg::VersionChange>)> {
    let to = live_target(e, root)?;
    let changes: Vec<_> = live
        .owners_of(&to)
        .iter()
        .filter_map(|p| crate::pkg::version_change(p, &base.packages, &live.packages))
        .collect();
    (!changes.is_empty()).then_some((to, changes))
}

/// The owners of `e` in the snapshot, when every one of them has since
/// dropped it: upgraded to a version whose file list no longer names it,
/// or removed. Empty when any owner still ships it (then someone else
/// deleted it), kept its version (nothing upgraded it away), or when no
/// package owned it (an admin's own file).
pub fn dropped_by(
    e: &Entry,
    base: &Manifest,
    live: &crate::pkg::PackageInfo,
) -> Vec<crate::pkg::VersionChange> {
    let now = live.owners_of(&e.path);
    let mut out = Vec::new();
    for p in &e.owners {
        match crate::pkg::version_change(p, &base.packages, &live.packages) {
            Some(c) if !now.contains(p) => out.push(c),
            _ => return Vec::new(),
        }
    }
    out
}

/// The live database's owners of the files the vanished links of no
/// package in `vanished` lead to; `None` when there are none or the
/// database cannot be read (which proves nothing).
pub fn live_owners_of_targets<'a>(
    vanished: impl Iterator<Item = &'a Entry>,
    root: &SysRoot,
    extra: &[SysPath],
) -> Option<crate::pkg::PackageInfo> {
    let targets: Vec<SysPath> = vanished.filter_map(|e| live_target(e, root)).collect();
    if targets.is_empty() && extra.is_empty() {
        return None;
    }
    let wanted: foldhash::HashSet<&SysPath> = targets.iter().chain(extra).collect();
    let live = crate::pkg::assemble(root, crate::pkg::read_dbs(root), Some(&wanted));
    live.errors.is_empty().then_some(live)
}

/// Collapses changes beneath a directory that itself vanished (or
/// appeared) into that directory's finding.
fn collapse(items: Vec<&Entry>) -> Vec<(&Entry, Vec<&Entry>)> {
    let mut out: Vec<(&Entry, Vec<&Entry>)> = Vec::new();
    for e in items {
        if let Some((top, under)) = out.last_mut() {
            if top.kind == FileKind::Dir && e.path.starts_with(&top.path) {
                under.push(e);
                continue;
            }
        }
        out.push((e, Vec::new()));
    }
    out
}

impl Check for FileChanges {
    fn name(&self) -> &'static str {
        "files"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let Some(base) = cx.baseline else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let vanished: Vec<&Entry> = cx
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Vanished(e) => Some(e),
                _ => None,
            })
            .collect();
        // Package files whose every owner changed version since: the live
        // database says whether the new versions still ship them (pacman
        // removes what a new version no longer ships, as rpm does).
        let maybe_dropped: Vec<SysPath> = vanished
            .iter()
            .filter(|e| {
                !e.owners.is_empty()
                    && e.owners.iter().all(|p| {
                        crate::pkg::version_change(p, &base.packages, &cx.live.packages).is_some()
                    })
            })
            .map(|e| e.path.clone())
            .collect();
        let live_pkgs = live_owners_of_targets(vanished.iter().copied(), cx.root, &maybe_dropped);
        for (top, under) in collapse(vanished) {
            // A package manager's merge leftover (`.rpmnew`, `.pacnew`,
            // `.dpkg-dist`…) is owned by no package but is not the admin's
            // own file either: removing it is what `pkg/pending-merge` asks
            // for once merged.
            let admins = |e: &&Entry| {
                e.owners.is_empty()
                    && e.kind != FileKind::Dir
                    && super::merges::classify(&e.path).is_none()
                    && tool_state(&e.path).is_none()
            };
            let unowned = std::iter::once(top)
                .chain(under.iter().copied())
                .any(|e| admins(&e));
            let leftover = super::merges::classify(&top.path).is_some();
            if under.is_empty() {
                if let Some(to) = link_to_removed_file(top, base, cx.root) {
                    out.push(Finding::new(
                        "file/vanished",
                        Severity::Info,
                        &[&top.path],
                        format!(
                            "{} vanished (a link of no package to {to}, which {} \
                             removed: the link went with it, and restored it would dangle)",
                            top.path,
                            generated_by(&to).unwrap_or("a package")
                        ),
                    ));
                    continue;
                }
                if let Some(what) = tool_state(&top.path).filter(|_| top.owners.is_empty()) {
                    out.push(Finding::new(
                        "file/vanished",
                        Severity::Info,
                        &[&top.path],
                        format!("{} vanished ({what})", top.path),
                    ));
                    continue;
                }
                if let Some(by) = generated_by(&top.path).filter(|_| top.owners.is_empty()) {
                    out.push(Finding::new(
                        "file/vanished",
                        Severity::Info,
                        &[&top.path],
                        format!(
                            "{} vanished (written by {by} from the trust sources, which no \
                             longer hold its certificate: restored, it would be stale)",
                            top.path
                        ),
                    ));
                    continue;
                }
                if let Some((to, changes)) = live_pkgs
                    .as_ref()
                    .and_then(|live| link_into_changed_package(top, base, cx.root, live))
                {
                    let owners: Vec<&str> = changes.iter().map(|c| c.package.as_str()).collect();
                    let how: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                    out.push(
                        Finding::new(
                            "file/vanished",
                            Severity::Warning,
                            &[&top.path],
                            format!(
                                "{} vanished (a link of no package to {to}, a file of {}, which \
                                 changed since the snapshot: {}; maintainer scripts make and \
                                 remove such links, so the upgrade most likely took it: restore \
                                 it only if you made it yourself)",
                                top.path,
                                owners.join(", "),
                                how.join(", ")
                            ),
                        )
                        .fix(format!(
                            "guard restore {}",
                            crate::exec::shell_quote(top.path.as_bytes())
                        )),
                    );
                    continue;
                }
            }
            let sev = if unowned || (under.is_empty() && top.owners.is_empty() && !leftover) {
                Severity::Critical
            } else if under.is_empty() && leftover {
                Severity::Info
            } else {
                Severity::Warning
            };
            let dropped = match &live_pkgs {
                Some(live) if under.is_empty() => dropped_by(top, base, live),
                _ => Vec::new(),
            };
            let msg = if !dropped.is_empty() {
                // said as the restore plan says it: the package dropped it
                // on purpose, which a bare "owned by" left to guess
                let how: Vec<String> = dropped
                    .iter()
                    .map(|c| match c.to {
                        Some(_) => format!("{c} no longer ships it"),
                        None => format!("{} was removed", c.package),
                    })
                    .collect();
                format!(
                    "{} vanished ({}; {})",
                    top.path,
                    owned_by(top),
                    how.join(", ")
                )
            } else if under.is_empty() {
                format!("{} vanished ({})", top.path, owned_by(top))
            } else {
                // "(0 owned by no package)" left a purged package's
                // config directory unexplained: say whose it was and that
                // the package is gone, as a single file's finding does
                let own = under.iter().filter(|e| admins(e)).count();
                let mut removed: Vec<String> = std::iter::once(top)
                    .chain(under.iter().copied())
                    .flat_map(|e| e.owners.iter())
                    .filter_map(|p| {
                        crate::pkg::version_change(p, &base.packages, &cx.live.packages)
                            .filter(|c| c.to.is_none())
                            .map(|c| c.to_string())
                    })
                    .collect();
                removed.sort();
                removed.dedup();
                let whose = match own {
                    0 => "none of them an admin's own file".to_string(),
                    n => format!(
                        "{} owned by no package: an admin's own",
                        crate::plural(n, "file")
                    ),
                };
                let gone = if removed.is_empty() {
                    String::new()
                } else {
                    format!("; {}", removed.join(", "))
                };
                format!(
                    "{} vanished with {} beneath it ({whose}{gone})",
                    top.path,
                    crate::plural(under.len(), "entry")
                )
            };
            out.push(
                Finding::new("file/vanished", sev, &[&top.path], msg).fix(format!(
                    "guard restore {}",
                    crate::exec::shell_quote(top.path.as_bytes())
                )),
            );
        }

        let added: Vec<&Entry> = cx
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Added(e) => Some(e),
                _ => None,
            })
            .collect();
        for (top, under) in collapse(added) {
            let msg = if under.is_empty() {
                format!("{} was added ({})", top.path, owned_by(top))
            } else {
                format!(
                    "{} was added with {} beneath it",
                    top.path,
                    crate::plural(under.len(), "entry")
                )
            };
            out.push(Finding::new(
                "file/added",
                Severity::Info,
                &[&top.path],
                msg,
            ));
        }

        // read once, and only when an admin's own file changed
        let dpkg_runs = std::cell::OnceCell::new();
        for c in cx.changes {
            let Change::Modified {
                old,
                new,
                content,
                meta,
            } = c
            else {
                continue;
            };
            if *content {
                out.push(modified(cx, base, old, new, &dpkg_runs));
            }
            // An owner or group whose id is unchanged but whose name is
            // not is a change of /etc/passwd or /etc/group, not of the
            // file: `accounts/changed` says it once, with how many files
            // it touches (a vanished /etc/group renamed every file).
            let list: Vec<String> = meta
                .iter()
                .filter(|m| !renamed_only(m, old, new))
                .map(|m| m.to_string())
                .collect();
            // A file the package's new version ships as a symlink (Leap 15's
            // openSUSE-release makes /etc/os-release a link to
            // /usr/lib/os-release), or a link it points elsewhere, changed
            // what the path *is*, as a content change does: the package
            // did it, and restored, the old release file would lie about
            // the system. One `file/modified` like any content the
            // package changed; the mode that came with the new kind is
            // part of it.
            let replaced = old.kind != new.kind || (!*content && old.target != new.target);
            if replaced && !list.is_empty() && !old.owners.is_empty() && !new.owners.is_empty() {
                if let Some(up) = package_changed(new, base, cx.live) {
                    out.push(
                        Finding::new(
                            "file/modified",
                            Severity::Info,
                            &[&new.path],
                            format!(
                                "{} {} (the package changed it: {up})",
                                new.path,
                                replacement(old, new, &list)
                            ),
                        )
                        .fix(format!(
                            "guard diff; guard restore {}",
                            crate::exec::shell_quote(new.path.as_bytes())
                        )),
                    );
                    continue;
                }
            }
            if !list.is_empty() {
                out.push(
                    Finding::new(
                        "file/meta-changed",
                        Severity::Warning,
                        &[&new.path],
                        format!("{} metadata changed: {}", new.path, list.join("; ")),
                    )
                    .fix(format!(
                        "guard restore {}",
                        crate::exec::shell_quote(new.path.as_bytes())
                    )),
                );
            }
        }
        out
    }
}

/// What a path became when its kind or link target changed: "was a file,
/// now a symlink to ../usr/lib/os-release", not the metadata fields that
/// change with the kind (mode 0644 -> 0777, target (none) -> …).
fn replacement(old: &Entry, new: &Entry, list: &[String]) -> String {
    let target = |e: &Entry| {
        e.target
            .as_ref()
            .map(|t| String::from_utf8_lossy(&t.0).into_owned())
            .unwrap_or_default()
    };
    match (old.kind, new.kind) {
        (FileKind::Symlink, FileKind::Symlink) => {
            format!("now links to {}, not {}", target(new), target(old))
        }
        (o, FileKind::Symlink) => format!("was a {}, now a symlink to {}", o.as_str(), target(new)),
        (o, n) => format!(
            "was a {}, now a {} ({})",
            o.as_str(),
            n.as_str(),
            list.join("; ")
        ),
    }
}

/// Whether `m` is an owner or group change of the name alone: the id the
/// kernel checks is the same, the accounts file names it differently (or
/// no longer at all).
pub fn renamed_only(m: &diff::MetaChange, old: &Entry, new: &Entry) -> bool {
    match m.what.as_str() {
        "owner" => old.uid == new.uid,
        "group" => old.gid == new.gid,
        _ => false,
    }
}

/// The dpkg run during which `e`'s content was last written: both
/// its mtime and its ctime fall within one run dpkg's log records. Files
/// no package owns (`/etc/shells`, the `pam-auth-update` files,
/// `ca-certificates.crt`, a `main.cf` a postinst edits) are rewritten by
/// maintainer scripts and triggers during the upgrade, and the admin
/// deserves to know it was not someone's hand. A preserved mtime (`cp -p`)
/// misses; the ctime keeps a later write or `touch -d` from being taken
/// for dpkg's.
fn written_by_dpkg<'a>(
    cx: &Context,
    runs: &'a std::cell::OnceCell<Vec<crate::pkg::DpkgRun>>,
    e: &Entry,
) -> Option<&'a crate::pkg::DpkgRun> {
    // (a ctime read within 2 s of the change carries the scan's
    // "read again" mark in its nanoseconds: the second still holds)
    let at =
        |t: crate::store::Time| jiff::Timestamp::new(t.sec, t.nsec.min(999_999_999) as i32).ok();
    let (m, c) = (at(e.mtime)?, at(e.ctime)?);
    runs.get_or_init(|| crate::pkg::dpkg_runs(cx.root))
        .iter()
        .find(|r| r.covers(m) && r.covers(c))
}

fn modified(
    cx: &Context,
    base: &Manifest,
    old: &Entry,
    new: &Entry,
    runs: &std::cell::OnceCell<Vec<crate::pkg::DpkgRun>>,
) -> Finding {
    if let Some(tool) = keyring_tool(&new.path).filter(|_| old.owners.is_empty()) {
        let mut f = Finding::new(
            "file/modified",
            Severity::Info,
            &[&new.path],
            format!(
                "{} was modified (the keyring {tool} keeps: refreshed keys or trust, as \
                 the keyring package's install script does; restored, the old keyring \
                 would no longer trust the new packagers)",
                new.path
            ),
        );
        f.detail = Some(content_diff(cx, old, new));
        return f;
    }
    if let Some(what) = tool_state(&new.path).filter(|_| old.owners.is_empty()) {
        let mut f = Finding::new(
            "file/modified",
            Severity::Info,
            &[&new.path],
            format!("{} was rewritten ({what})", new.path),
        );
        f.detail = Some(content_diff(cx, old, new));
        return f;
    }
    // Ownership in the baseline decides: an admin's own file that a package
    // has since taken over and overwritten is damage, not a package update.
    let (sev, why) = match package_changed(new, base, cx.live) {
        _ if old.owners.is_empty() && !new.owners.is_empty() => (
            Severity::Warning,
            format!(
                "an admin's own file in the snapshot, now overwritten by {}",
                new.owners.join(", ")
            ),
        ),
        Some(up) if !new.owners.is_empty() => {
            (Severity::Info, format!("the package changed it: {up}"))
        }
        _ if new.owners.is_empty() => match written_by_dpkg(cx, runs, new) {
            // Still a warning (DESIGN §2: an admin's own file modified):
            // the script may have rewritten what the admin put there.
            Some(run) => (
                Severity::Warning,
                format!(
                    "owned by no package, but written during the dpkg run of {} to {} \
                     (dpkg.log): a maintainer script or trigger rewrote it",
                    run.span().0,
                    run.span().1
                ),
            ),
            None => (Severity::Warning, owned_by(new)),
        },
        _ => (
            Severity::Warning,
            format!("{}, whose version did not change", owned_by(new)),
        ),
    };
    let mut f = Finding::new(
        "file/modified",
        sev,
        &[&new.path],
        format!("{} was modified ({why})", new.path),
    )
    .fix(format!(
        "guard diff; guard restore {}",
        crate::exec::shell_quote(new.path.as_bytes())
    ));
    f.detail = Some(content_diff(cx, old, new));
    f
}

/// A unified diff of recorded vs live content, or why there is none.
/// Content of a file that is not world-readable is never shown.
pub fn content_diff(cx: &Context, old: &Entry, new: &Entry) -> String {
    let recorded = cx.baseline.is_some_and(|b| b.world_readable(old));
    if !recorded || !cx.live.world_readable(new) {
        return "content changed (not shown: the file is not world-readable)".into();
    }
    if old.size > DIFF_LIMIT || new.size > DIFF_LIMIT {
        return format!("content changed ({} -> {} bytes)", old.size, new.size);
    }
    let Some(h) = &old.blake3 else {
        return "content changed".into();
    };
    let (Ok(a), Some(b)) = (cx.store.read_object(h), super::live_content(cx.root, new)) else {
        return "content changed".into();
    };
    let label = |p: &SysPath, s: &str| format!("{p} ({s})");
    diff::unified(
        &a,
        &b,
        &label(&old.path, "snapshot"),
        &label(&new.path, "now"),
    )
    .unwrap_or_else(|| {
        format!(
            "binary content changed ({} -> {} bytes)",
            old.size, new.size
        )
    })
}
