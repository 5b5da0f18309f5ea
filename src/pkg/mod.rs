//! Package managers of the root: which are present, what is installed, who
//! owns each path, read from the root's own database in one pass per manager
//! (never one process per file).
//!
//! * pacman: `var/lib/pacman/local/*/{desc,files}` read directly (`pacman.rs`);
//! * dpkg: `var/lib/dpkg/status` and `info/*.list` read directly (`dpkg.rs`);
//! * rpm: one `rpm --root ROOT --dbpath DB -qa --qf …` listing, because its
//!   database (BerkeleyDB, ndb or sqlite) is only readable through rpm
//!   (`rpm.rs`).
//!
//! A root with none of them is fine. A manager whose database cannot be read
//! is reported in [`PackageInfo::errors`] and the others still count.

mod dpkg;
mod pacman;
mod rpm;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use anyhow::Result;

use crate::store::Packages;
use crate::sysroot::{SysPath, SysRoot};

/// What the root's package databases say.
#[derive(Debug, Default, Clone)]
pub struct PackageInfo {
    pub packages: Packages,
    /// path → owning packages (sorted, no duplicates)
    pub owners: HashMap<SysPath, Vec<String>>,
    /// Databases that were present but could not be read, one line each.
    pub errors: Vec<String>,
}

impl PackageInfo {
    pub fn owners_of(&self, p: &SysPath) -> Vec<String> {
        self.owners.get(p).cloned().unwrap_or_default()
    }
}

/// A package whose version differs between a snapshot and now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionChange {
    pub package: String,
    /// its version in the snapshot
    pub from: String,
    /// its version now; `None`: no longer installed
    pub to: Option<String>,
}

impl std::fmt::Display for VersionChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.to {
            Some(to) => write!(f, "{} {} -> {to}", self.package, self.from),
            None => write!(f, "{} removed", self.package),
        }
    }
}

/// `package`'s change from `then` to `now`, if it was installed then and
/// is at another version now or gone.
pub fn version_change(package: &str, then: &Packages, now: &Packages) -> Option<VersionChange> {
    let from = then.installed.get(package)?;
    let to = now.installed.get(package);
    (to != Some(from)).then(|| VersionChange {
        package: package.to_string(),
        from: from.clone(),
        to: to.cloned(),
    })
}

/// One manager's database, as its reader returns it.
#[derive(Debug, Default)]
pub(crate) struct Db {
    /// name → version (`1.0-1`, with `EPOCH:` when the package has one)
    pub installed: BTreeMap<String, String>,
    /// (path, package) pairs; directories included
    pub files: Vec<(SysPath, String)>,
}

/// Files whose identity changes whenever packages are installed, removed or
/// upgraded (every manager rewrites them; ucf's registry is rewritten by
/// the maintainer scripts that create or drop such files). dpkg's `updates` directory
/// changes with every state dpkg notes, which it writes there first: a dpkg
/// killed before it rewrote `status` (e.g. in a preinst, before any
/// `info/*.list` changed) leaves its `status` and `info` as they were.
const DB_FILES: &[&str] = &[
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/info",
    "/var/lib/dpkg/updates",
    "/var/lib/ucf/registry",
    "/var/lib/pacman/local",
    "/var/lib/rpm",
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages",
    "/var/lib/rpm/Packages.db",
    "/usr/lib/sysimage/rpm",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/Packages",
    "/usr/lib/sysimage/rpm/Packages.db",
];

/// The identity of the root's package databases (see `Packages::stamp`);
/// empty when it has none.
pub fn stamp(root: &SysRoot) -> String {
    let mut parts = Vec::new();
    for p in DB_FILES {
        if let Ok(st) = root.lstat(&SysPath::new(p)) {
            parts.push(format!(
                "{p}:{}:{}.{}:{}:{}.{}",
                st.st_size, st.st_mtime, st.st_mtime_nsec, st.st_ino, st.st_ctime, st.st_ctime_nsec
            ));
        }
    }
    parts.join(";")
}

/// Packages a failed or interrupted transaction left unfinished, with their
/// state (`half-configured`, `unpacked`, …): dpkg's only. pacman and rpm
/// keep no such state; a pacman killed mid-transaction leaves its lock,
/// which cannot be told from a pacman still running.
pub fn unfinished(root: &SysRoot) -> Vec<(String, String)> {
    dpkg::unfinished(root)
}

pub use dpkg::Run as DpkgRun;

/// The dpkg runs the root's log records, oldest first (none without dpkg).
pub fn dpkg_runs(root: &SysRoot) -> Vec<DpkgRun> {
    dpkg::runs(root)
}

/// One manager's reader: `Ok(None)` when the root does not use it.
type Reader = fn(&SysRoot) -> Result<Option<Db>>;

/// Reads every package database the root has; a root with none is fine.
/// A database that is there but unreadable goes to `errors`; it is never
/// silently treated as "nothing installed" without saying so.
pub fn read(root: &SysRoot) -> PackageInfo {
    assemble(root, read_dbs(root), None)
}

/// Every manager's database as its reader returned it, not yet filtered:
/// the slow half of reading them (files to read, or an `rpm` to run), which
/// needs no list of wanted paths and so can start before that list exists.
pub struct RawDbs(Vec<(&'static str, Result<Option<Db>>)>);

pub fn read_dbs(root: &SysRoot) -> RawDbs {
    let readers: [(&str, Reader); 3] = [
        ("pacman", pacman::read),
        ("dpkg", dpkg::read),
        ("rpm", rpm::read),
    ];
    RawDbs(readers.into_iter().map(|(n, r)| (n, r(root))).collect())
}

/// The fast half: owners of the `wanted` paths (all paths when `None`),
/// usr-merge aliases included. A system has ~100k packaged files and a
/// snapshot records a few thousand, so building the full map would cost
/// more than the rest of the snapshot.
pub fn assemble(root: &SysRoot, dbs: RawDbs, wanted: Option<&HashSet<&SysPath>>) -> PackageInfo {
    let mut info = PackageInfo::default();
    let aliases = usr_merge_aliases(root);
    for (name, db) in dbs.0 {
        match db {
            Ok(None) => {}
            Ok(Some(db)) => {
                info.packages.managers.push(name.to_string());
                merge(&mut info, db, &aliases, wanted);
            }
            Err(e) => {
                info.packages.managers.push(name.to_string());
                info.errors.push(format!("{name}: {e:#}"));
            }
        }
    }
    for v in info.owners.values_mut() {
        v.sort();
        v.dedup();
    }
    info
}

fn merge(
    info: &mut PackageInfo,
    db: Db,
    aliases: &[(SysPath, SysPath)],
    wanted: Option<&HashSet<&SysPath>>,
) {
    let want = |p: &SysPath| wanted.is_none_or(|w| w.contains(p));
    for (name, version) in db.installed {
        // The same name from two managers (rare: a foreign rpm on Debian)
        // keeps both versions so a change in either shows.
        info.packages
            .installed
            .entry(name)
            .and_modify(|v| {
                if *v != version {
                    *v = format!("{v}, {version}");
                }
            })
            .or_insert(version);
    }
    for (path, pkg) in db.files {
        if path.is_root() {
            continue;
        }
        if let Some(alias) = alias_of(&path, aliases).filter(|a| want(a)) {
            info.owners.entry(alias).or_default().push(pkg.clone());
        }
        if want(&path) {
            info.owners.entry(path).or_default().push(pkg);
        }
    }
}

/// Merged /usr: `/lib -> usr/lib` and friends. A package (Debian's lists
/// in particular) may name `/lib/systemd/system/x.service` while guard walks
/// the real directory `/usr/lib/systemd/system` and never through the
/// symlink, so each owned path under such a link is also recorded under its
/// target. Other directory symlinks (`/etc/foo -> /opt/foo`) are not
/// resolved: a path reached only through one keeps no owner.
fn usr_merge_aliases(root: &SysRoot) -> Vec<(SysPath, SysPath)> {
    let mut out = Vec::new();
    for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let link = SysPath::root().join(name);
        let Ok(t) = std::fs::read_link(root.host_path(&link)) else {
            continue;
        };
        let t = t.as_os_str().as_encoded_bytes().to_vec();
        let target = SysPath::new(&t);
        if t.starts_with(b"usr/") || t.starts_with(b"/usr/") {
            out.push((link, target));
        }
    }
    out
}

fn alias_of(p: &SysPath, aliases: &[(SysPath, SysPath)]) -> Option<SysPath> {
    aliases.iter().find_map(|(link, target)| {
        if !p.starts_with(link) || p == link {
            return None;
        }
        let rest = &p.as_bytes()[link.as_bytes().len()..];
        let mut v = target.as_bytes().to_vec();
        v.extend_from_slice(rest);
        Some(SysPath::new(v))
    })
}

/// Splits a text database (dpkg status, pacman desc) into blank-line
/// separated paragraphs; runs of blank lines count as one.
pub(crate) fn paragraphs(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (para, next) = match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let trimmed = para.strip_prefix(b"\n").unwrap_or(para);
        if !trimmed.is_empty() {
            return Some(trimmed);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_on_blank_lines() {
        let t = b"a: 1\nb: 2\n\n\nc: 3\n\nd: 4";
        let p: Vec<&[u8]> = paragraphs(t).collect();
        assert_eq!(
            p,
            [
                b"a: 1\nb: 2".as_slice(),
                b"c: 3".as_slice(),
                b"d: 4".as_slice()
            ]
        );
    }

    #[test]
    fn usr_merge_paths_are_owned_under_their_real_dir_too() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", d.path().join("lib")).unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let aliases = usr_merge_aliases(&root);
        let mut info = PackageInfo::default();
        merge(
            &mut info,
            Db {
                installed: [("foo".to_string(), "1-1".to_string())].into(),
                files: vec![
                    (
                        SysPath::new("/lib/systemd/system/foo.service"),
                        "foo".into(),
                    ),
                    (SysPath::new("/libexec/x"), "foo".into()),
                ],
            },
            &aliases,
            None,
        );
        assert_eq!(
            info.owners_of(&SysPath::new("/usr/lib/systemd/system/foo.service")),
            ["foo"]
        );
        assert_eq!(
            info.owners_of(&SysPath::new("/lib/systemd/system/foo.service")),
            ["foo"]
        );
        assert!(info.owners_of(&SysPath::new("/usr/libexec/x")).is_empty());
    }

    #[test]
    fn a_root_without_package_managers_is_fine() {
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let info = read(&root);
        assert!(info.packages.managers.is_empty());
        assert!(info.owners.is_empty());
        assert!(info.errors.is_empty());
    }
}
