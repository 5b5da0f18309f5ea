//! rpm's database, read through the real `rpm` in one pass:
//!
//! ```text
//! rpm --root ROOT --dbpath DB -qa --qf 'P\t%{NAME}\tVERSION\n[F\t%{=NAME}\t%{FILENAMES}\n]'
//! ```
//!
//! Traps handled (DESIGN §6):
//! * `%{NAME}` inside the `[…]` array makes rpm 4.18 print "array iterator
//!   used with different sized arrays", skip every package with more than
//!   one file and exit 0; `%{=NAME}` repeats the scalar instead.
//! * Debian's rpm defaults its database to `~/.rpmdb` even under `--root`,
//!   so every path would look unowned: guard finds the root's own database
//!   (`var/lib/rpm`, or `usr/lib/sysimage/rpm` on newer openSUSE, where
//!   `var/lib/rpm` is a symlink to it) and passes `--dbpath` (rpm resolves it
//!   inside `--root`).
//! * `rpm -qf` under `--root` looks at the host's path (before 4.19), and
//!   one process per file would be slow anyway: ownership comes from the
//!   listing.
//! * The database files are BerkeleyDB, ndb or sqlite depending on the
//!   distribution; only `rpm` reads them all, so guard never parses them.

use anyhow::{bail, Result};

use super::Db;
use crate::exec::{self, Cmd};
use crate::sysroot::{SysPath, SysRoot};

/// Where rpm keeps its database inside a root, newest layout first.
const DB_DIRS: &[&str] = &["/usr/lib/sysimage/rpm", "/var/lib/rpm"];
/// Files that mark a database of each backend (sqlite, ndb, bdb).
const DB_FILES: &[&str] = &["rpmdb.sqlite", "Packages.db", "Packages"];

/// The epoch, when there is one, then version-release.
const QUERY: &str =
    "P\t%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n[F\t%{=NAME}\t%{FILENAMES}\n]";

/// The root's own rpm database directory, if it has one. A directory
/// reached through a symlink is skipped (the real one is in the list too).
pub(crate) fn db_dir(root: &SysRoot) -> Option<SysPath> {
    DB_DIRS.iter().map(SysPath::new).find(|d| {
        root.open_dir(d).is_ok() && DB_FILES.iter().any(|f| root.lstat(&d.join(f)).is_ok())
    })
}

/// Parses the listing of [`QUERY`].
pub(crate) fn parse(out: &[u8]) -> Db {
    let mut db = Db::default();
    for line in out.split(|b| *b == b'\n') {
        // A file name with a newline in it would split here; rpm cannot
        // print it unambiguously and such names are not worth a second pass.
        let mut f = line.splitn(3, |b| *b == b'\t');
        match (f.next(), f.next(), f.next()) {
            (Some(b"P"), Some(name), Some(version)) => {
                let name = String::from_utf8_lossy(name).into_owned();
                let version = String::from_utf8_lossy(version).into_owned();
                // Several packages of one name (kernels, multilib) keep
                // every version, so a change in any of them shows.
                db.installed
                    .entry(name)
                    .and_modify(|v| {
                        if !v.split(", ").any(|x| x == version) {
                            *v = format!("{v}, {version}");
                        }
                    })
                    .or_insert(version);
            }
            (Some(b"F"), Some(name), Some(path)) if !path.is_empty() => {
                db.files
                    .push((SysPath::new(path), String::from_utf8_lossy(name).into()));
            }
            _ => {}
        }
    }
    db
}

pub(crate) fn read(root: &SysRoot) -> Result<Option<Db>> {
    let Some(dir) = db_dir(root) else {
        return Ok(None);
    };
    if !exec::available("rpm") {
        bail!("the root has an rpm database in {dir} but rpm is not installed to read it");
    }
    // The backend of the file that is there, said explicitly: left to
    // its own configuration, the host's rpm opens the backend *it* was
    // built for (Debian's: sqlite), finds an "empty" database, lists
    // nothing, exits 0 — and creates rpmdb.sqlite inside the root.
    let (file, backend) = DB_FILES
        .iter()
        .zip(["sqlite", "ndb", "bdb_ro"])
        .find(|(f, _)| root.lstat(&dir.join(f)).is_ok())
        .expect("db_dir found one of them");
    let cmd = Cmd::new("rpm")
        .arg("--root")
        .arg(root.path())
        .arg("--dbpath")
        .arg(dir.as_os_str())
        .args(["--define", &format!("_db_backend {backend}")])
        .args(["-qa", "--qf", QUERY]);
    let out = exec::output(&cmd)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            cmd.display(),
            out.status,
            stderr.trim()
        );
    }
    // A backend this rpm was built without (Debian's has no ndb) falls
    // back to a "dummy" database that lists nothing and exits 0: then the
    // ownership is unknown, not "nothing installed".
    if stderr.contains("dummy database") {
        bail!(
            "rpm on this host cannot read the root's {backend} database {dir}/{file} \
             (it fell back to a dummy database): ownership unknown"
        );
    }
    let db = parse(&out.stdout);
    Ok(Some(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_parses_with_epochs_and_duplicates() {
        let out = b"P\tfoo\t1.0-1\nF\tfoo\t/etc/foo/main.conf\nF\tfoo\t/usr/bin/fooctl\n\
P\tgpg-pubkey\tabc-123\n\
P\tkernel\t6.1-1\nF\tkernel\t/boot/vmlinuz-6.1\nP\tkernel\t6.2-1\n\
P\tbash\t1:5.2-3\nF\tbash\t/usr/bin/with\ttab\n";
        let db = parse(out);
        assert_eq!(db.installed["foo"], "1.0-1");
        assert_eq!(db.installed["gpg-pubkey"], "abc-123");
        assert_eq!(db.installed["kernel"], "6.1-1, 6.2-1");
        assert_eq!(db.installed["bash"], "1:5.2-3");
        // (the path's bytes: shown, the tab would be `\x09`)
        let files: Vec<String> = db
            .files
            .iter()
            .map(|(p, n)| format!("{} {n}", String::from_utf8_lossy(p.as_bytes())))
            .collect();
        assert_eq!(
            files,
            [
                "/etc/foo/main.conf foo",
                "/usr/bin/fooctl foo",
                "/boot/vmlinuz-6.1 kernel",
                "/usr/bin/with\ttab bash"
            ]
        );
    }

    #[test]
    fn the_roots_own_database_is_found_never_a_symlinked_one() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert!(db_dir(&SysRoot::open(r).unwrap()).is_none());
        std::fs::create_dir_all(r.join("usr/lib/sysimage/rpm")).unwrap();
        std::fs::write(r.join("usr/lib/sysimage/rpm/Packages.db"), b"x").unwrap();
        std::fs::create_dir_all(r.join("var/lib")).unwrap();
        std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", r.join("var/lib/rpm")).unwrap();
        assert_eq!(
            db_dir(&SysRoot::open(r).unwrap()).unwrap().to_string(),
            "/usr/lib/sysimage/rpm"
        );
    }

    /// The real rpm on a root with its own sqlite database (made by
    /// `rpm --initdb`): an empty database is read, not mistaken for none.
    #[test]
    fn real_rpm_reads_an_empty_root_database() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/rpm")).unwrap();
        exec::stdout_of(&Cmd::new("rpm").arg("--root").arg(d.path()).args([
            "--dbpath",
            "/var/lib/rpm",
            "--initdb",
        ]))
        .unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let info = super::super::read(&root);
        assert_eq!(info.packages.managers, ["rpm"], "{:?}", info.errors);
        assert!(info.errors.is_empty(), "{:?}", info.errors);
    }
}
