//! The snapshot store's handle: open and lock, the layout's paths, the
//! fd-based access beneath the store directory, atomic writes, and the small
//! documents other modules keep in the store (acks, journals).
//!
//! Layout (see `snapshots/FORMAT.md`): `objects/ab/cdef…` (content named by
//! its blake3, mode 0400), `snapshots/ID.json` (written last, atomically),
//! `tmp/` (partial writes; emptied by the next writer), `lock`. The store dir
//! is 0700: it holds a copy of `/etc/shadow`.
//!
//! Durability invariant: a snapshot file is renamed into place only after a
//! `syncfs` of the store's filesystem has made every object it names durable,
//! so a crash at any moment leaves either no snapshot or a whole one.
//!
//! Everything inside the store is reached from an fd on the store directory
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or the walk of
//! `sysroot.rs` that answers the same on older kernels) and the `*at` calls,
//! never by a path the kernel resolves on its own: the default store of a
//! `--root` (`ROOT/var/lib/guard`) was written by that system, and a symlink
//! it left for `tmp`, `objects/ab` or `snapshots` would otherwise have guard,
//! as root, empty, write or read a directory of the host. The helpers for
//! that live here, private to the store, and the other files of this module
//! reach everything through them:
//!
//! * `objects.rs`: put, read and sync objects, the `unsynced` mark;
//! * `snapshots.rs`: snapshot ids, files, headers and their commit;
//! * `gc.rs`: what the snapshots still need: verify, forget, prune;
//! * `manifest.rs`: what a snapshot records.

mod gc;
pub mod manifest;
mod objects;
mod snapshots;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

use anyhow::{anyhow, bail, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::sysroot::Resolve;

pub use gc::{GcReport, KeptClone, ProblemKind, VerifyProblem, VerifyReport};
pub use manifest::*;
pub use objects::{is_hash, SparseWriter};
pub use snapshots::{id_time, Listed};

pub struct Store {
    dir: PathBuf,
    /// The store directory, from which everything in it is opened (see
    /// the top of this file). `None` for a read handle on a store that did
    /// not exist yet: it is opened on each use then.
    fd: Option<OwnedFd>,
    /// Held for the lifetime of a writing handle.
    _lock: Option<File>,
    tmp_counter: AtomicU64,
    /// Set when this handle has stored (or found already stored) an object
    /// since its last commit: such an object may have been written by a
    /// run that died before its sync, so the next commit must sync. A
    /// commit whose every hash came from the committed (hence synced)
    /// cache snapshot has nothing to sync.
    unsynced: AtomicBool,
    /// Whether this handle has put the [`UNSYNCED`] mark in the store.
    marked: std::sync::Mutex<bool>,
}

/// A write into the store failed. Fatal to a snapshot, unlike a live file
/// that cannot be read, which is reported and counted: callers tell them
/// apart by this type, never by the message.
#[derive(Debug)]
pub struct StoreWriteError(String);

impl std::fmt::Display for StoreWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreWriteError {}

fn write_failed(what: impl std::fmt::Display, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(StoreWriteError(format!("{what}: {e}")))
}

fn io_ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| anyhow!("{}: {}", what(), e))
}

/// Opens `rel` beneath the store directory `base` without following a
/// symlink anywhere on the way, the last component included: one there is
/// damage to report (`InvalidData`, "a symlink"), never a way out of the
/// store. `CLOEXEC` always; `mode` only with `CREATE` or `TMPFILE`.
fn open_beneath(base: BorrowedFd, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    // (no O_NOFOLLOW: with it a symlink in a directory's place reads as
    // ENOTDIR; `Resolve::Exact` refuses the last component too)
    crate::sysroot::open_at(base, Path::new(rel), Resolve::Exact, flags, mode).map_err(|e| {
        if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
            io::Error::new(io::ErrorKind::InvalidData, "a symlink")
        } else {
            e
        }
    })
}

/// Opens the store directory (following a symlink to it: where the store
/// lies is the admin's to say, see `App::new`).
fn open_store_dir(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The store directory's fd: the handle's own, or a fresh one.
enum Base<'a> {
    Held(BorrowedFd<'a>),
    Fresh(OwnedFd),
}

impl AsFd for Base<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Base::Held(fd) => *fd,
            Base::Fresh(fd) => fd.as_fd(),
        }
    }
}

/// A directory beneath `base` (see [`open_beneath`]).
fn dir_beneath(base: BorrowedFd, rel: &str) -> io::Result<OwnedFd> {
    open_beneath(base, rel, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
}

/// Makes the directory `name` (0700) in `parent` unless it is there, and
/// opens it: a symlink or file of that name is refused, not followed.
fn make_dir_in(parent: BorrowedFd, name: &str) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    dir_beneath(parent, name)
}

/// The names in a directory opened by fd, with their types (`.` and `..`
/// left out, and names that are not UTF-8, which guard never makes).
fn entries(dir: &OwnedFd) -> io::Result<Vec<(String, FileType)>> {
    Ok(raw_entries(dir)?
        .into_iter()
        .filter_map(|(n, t)| Some((n.into_string().ok()?, t)))
        .collect())
}

/// As [`entries`], every name.
fn raw_entries(dir: &OwnedFd) -> io::Result<Vec<(std::ffi::CString, FileType)>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name();
        if name != c"." && name != c".." {
            out.push((name.to_owned(), e.file_type()));
        }
    }
    Ok(out)
}

/// Writes the concatenation of `parts` to `name` in `dir` atomically: a temp
/// file beside it (created exclusively, never through a symlink, private
/// from the start), fsync, rename, fsync of the dir. `mode` is set before
/// the rename. `shown` is the directory as messages name it.
fn atomic_write_at(
    dir: &OwnedFd,
    shown: &Path,
    name: &str,
    parts: &[&[u8]],
    mode: u32,
) -> Result<()> {
    let tmp = format!(".{name}.tmp.{}", std::process::id());
    let res = (|| -> io::Result<()> {
        // (a leftover of a writer that died with this pid; writers hold
        // the store's lock one at a time)
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o600),
        )?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        let mut f = File::from(fd);
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        Ok(rustix::fs::fsync(dir)?)
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    io_ctx(res, || {
        format!("cannot write {}", shown.join(name).display())
    })
}

impl Store {
    /// Opens the store for reading. A store that does not exist yet reads as
    /// empty; nothing is created.
    pub fn open_read(dir: &Path) -> Result<Store> {
        if dir.exists() && !dir.is_dir() {
            bail!("store {} is not a directory", dir.display());
        }
        let fd = match open_store_dir(dir) {
            Ok(fd) => Some(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return io_ctx(Err(e), || format!("cannot open store {}", dir.display())),
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            fd,
            _lock: None,
            tmp_counter: AtomicU64::new(0),
            unsynced: AtomicBool::new(false),
            marked: std::sync::Mutex::new(false),
        })
    }

    /// Opens the store for writing: creates it (0700), takes the exclusive
    /// lock without waiting, and clears what a killed writer left in `tmp/`.
    pub fn open_write(dir: &Path) -> Result<Store> {
        Store::open_write_inner(dir, None)
    }

    /// As `open_write`, but waits up to `max` for another guard to release
    /// the lock, calling `waiting` once when it starts to wait. For work
    /// already done that must be recorded (a playbook's journal): refusing
    /// there would lose the record, not prevent the work.
    pub fn open_write_waiting(
        dir: &Path,
        max: std::time::Duration,
        waiting: &mut dyn FnMut(),
    ) -> Result<Store> {
        Store::open_write_inner(dir, Some((max, waiting)))
    }

    fn open_write_inner(
        dir: &Path,
        mut wait: Option<(std::time::Duration, &mut dyn FnMut())>,
    ) -> Result<Store> {
        if !dir.exists() {
            io_ctx(
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir),
                || format!("cannot create store {}", dir.display()),
            )?;
        }
        if !dir.is_dir() {
            bail!("store {} is not a directory", dir.display());
        }
        let not_writable = || format!("store {} is not writable", dir.display());
        // The store directory itself is where the admin (or, for the
        // default store of a --root, `App::new`, which refuses a symlink on
        // its way) says; everything in it is reached from this fd.
        let fd = io_ctx(open_store_dir(dir), || {
            format!("cannot open store {}", dir.display())
        })?;
        // The store holds /etc/shadow: never leave it readable by others,
        // whatever the umask or an earlier tool did.
        let st = io_ctx(rustix::fs::fstat(&fd).map_err(io::Error::from), || {
            format!("cannot open store {}", dir.display())
        })?;
        if st.st_mode & 0o077 != 0 {
            io_ctx(
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(io::Error::from),
                not_writable,
            )?;
        }
        // 0600 like everything else here: the 0700 store dir keeps others
        // out today, but nothing in it should rely on the umask for that
        let lock = File::from(
            open_beneath(
                fd.as_fd(),
                "lock",
                OFlags::RDWR | OFlags::CREATE,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => {
                    anyhow!("cannot open {}: {e}", dir.join("lock").display())
                }
                _ => anyhow!("{}: {e}", not_writable()),
            })?,
        );
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => match &mut wait {
                    Some((max, waiting)) if start.elapsed() < *max => {
                        if !told {
                            waiting();
                            told = true;
                        }
                        // Polling rather than a blocking flock: a timer's
                        // snapshot holds the lock for seconds, and a bounded
                        // wait needs no signal or thread to interrupt it.
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Some((max, _)) => bail!(
                        "store {} is still locked by another guard process after {} s",
                        dir.display(),
                        max.as_secs()
                    ),
                    None => bail!(
                        "store {} is locked by another guard process; try again when it has finished",
                        dir.display()
                    ),
                },
                Err(e) => bail!("cannot lock store {}: {}", dir.display(), e),
            }
        }
        let mut tmp = None;
        for sub in ["objects", "snapshots", "tmp"] {
            let made = make_dir_in(fd.as_fd(), sub).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::NotADirectory => {
                    anyhow!("cannot open {}: {e}", dir.join(sub).display())
                }
                _ => anyhow!("{}: {e}", not_writable()),
            })?;
            if sub == "tmp" {
                tmp = Some(made);
            }
        }
        let tmp = tmp.expect("made above");
        // We hold the lock: anything in tmp/ is from a writer that died.
        for (name, _) in raw_entries(&tmp).unwrap_or_default() {
            let _ = rustix::fs::unlinkat(&tmp, name.as_c_str(), AtFlags::empty());
        }
        // Probe writability once so a read-only store fails before any work.
        io_ctx(
            rustix::fs::openat(
                &tmp,
                ".probe",
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(io::Error::from),
            not_writable,
        )?;
        let _ = rustix::fs::unlinkat(&tmp, ".probe", AtFlags::empty());
        let store = Store {
            dir: dir.to_path_buf(),
            fd: Some(fd),
            _lock: None,
            tmp_counter: AtomicU64::new(0),
            unsynced: AtomicBool::new(false),
            marked: std::sync::Mutex::new(false),
        };
        store.recover_unsynced(&lock)?;
        Ok(Store {
            _lock: Some(lock),
            ..store
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// "cannot write to store DIR: …", as a [`StoreWriteError`].
    fn write_err(&self, e: impl std::fmt::Display) -> anyhow::Error {
        write_failed(
            format_args!("cannot write to store {}", self.dir.display()),
            e,
        )
    }

    pub fn is_writable(&self) -> bool {
        self._lock.is_some()
    }

    /// The store directory, from which everything in it is opened.
    fn base(&self) -> io::Result<Base<'_>> {
        match &self.fd {
            Some(fd) => Ok(Base::Held(fd.as_fd())),
            None => open_store_dir(&self.dir).map(Base::Fresh),
        }
    }

    /// Opens `rel` in the store, no symlink on the way (see [`open_beneath`]).
    fn open_in(&self, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        open_beneath(self.base()?.as_fd(), rel, flags, mode)
    }

    /// A directory of the store (see [`open_beneath`]).
    fn dir_in(&self, rel: &str) -> io::Result<OwnedFd> {
        dir_beneath(self.base()?.as_fd(), rel)
    }

    /// A file of the store (an object, a snapshot file) opened for reading,
    /// never through a symlink and never blocking on a fifo planted in its
    /// place: either is damage to report (`InvalidData`: "a symlink", "not
    /// a regular file"), not a file to follow out of the store or to wait
    /// on.
    fn open_stored(&self, rel: &str) -> io::Result<File> {
        let f = File::from(self.open_in(
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// `objects/ab/cdef…`, as [`Self::open_in`] takes it.
    fn object_rel(hash: &str) -> String {
        format!("objects/{}/{}", &hash[..2], &hash[2..])
    }

    fn snapshot_rel(id: &str) -> String {
        format!("snapshots/{id}.json")
    }

    fn object_path(&self, hash: &str) -> PathBuf {
        self.dir.join("objects").join(&hash[..2]).join(&hash[2..])
    }

    #[cfg(test)]
    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.dir.join("snapshots").join(format!("{id}.json"))
    }

    /// Free space on the store's filesystem, in bytes and as a fraction.
    pub fn free_space(&self) -> Option<(u64, f64)> {
        let probe = if self.dir.exists() {
            self.dir.clone()
        } else {
            self.dir.ancestors().find(|p| p.exists())?.to_path_buf()
        };
        let st = rustix::fs::statvfs(&probe).ok()?;
        let free = st.f_bavail * st.f_frsize;
        let total = st.f_blocks * st.f_frsize;
        Some((
            free,
            if total == 0 {
                1.0
            } else {
                free as f64 / total as f64
            },
        ))
    }

    /// The names of the documents in a store directory (`journals`),
    /// sorted; none when it does not exist.
    pub fn doc_names(&self, sub: &str) -> Result<Vec<String>> {
        let dir = self.dir.join(sub);
        let names = match self.dir_in(sub).and_then(|fd| entries(&fd)) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return io_ctx(Err(e), || format!("cannot read {}", dir.display())),
        };
        let mut names: Vec<String> = names
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads a small store document (acks, journals) if it exists; one
    /// that is a symlink or not a regular file is an error, never followed.
    pub fn read_doc_file(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let read = self.open_stored(rel).and_then(|mut f| {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map(|_| b)
        });
        match read {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => io_ctx(Err(e), || {
                format!("cannot read {}", self.dir.join(rel).display())
            }),
        }
    }

    /// Makes (if need be) and opens a directory of the store, each level
    /// 0700 and none a symlink (`journals`, `luks`).
    pub fn make_dir(&self, rel: &str) -> Result<OwnedFd> {
        let shown = self.dir.join(rel);
        let fail = |e: io::Error| anyhow!("cannot create {}: {e}", shown.display());
        let mut dir = match self.base().map_err(fail)? {
            Base::Held(fd) => fd.try_clone_to_owned().map_err(fail)?,
            Base::Fresh(fd) => fd,
        };
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                bail!("internal: store directory {rel} leads out of the store");
            }
            dir = make_dir_in(dir.as_fd(), part).map_err(fail)?;
        }
        Ok(dir)
    }

    /// Writes a small store document atomically (mode 0600).
    pub fn write_doc_file(&self, rel: &str, data: &[u8]) -> Result<()> {
        if !self.is_writable() {
            bail!("internal: write on a read-only store handle");
        }
        let (sub, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            bail!("bad document name {rel}");
        }
        let dir = self.make_dir(sub)?;
        atomic_write_at(&dir, &self.dir.join(sub), name, &[data], 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One snapshot of each (id, kind), each recording one file whose
    /// content is its id.
    pub(super) fn commit_kinds(s: &Store, snaps: &[(&str, SnapshotKind)]) {
        for &(id, kind) in snaps {
            s.commit(&manifest(id, kind, &[("/etc/a", id)], s)).unwrap();
        }
    }

    /// [`manifest`], committed.
    pub(super) fn committed(
        id: &str,
        kind: SnapshotKind,
        data: &[(&str, &str)],
        store: &Store,
    ) -> Manifest {
        let m = manifest(id, kind, data, store);
        store.commit(&m).unwrap();
        m
    }

    pub(super) fn manifest(
        id: &str,
        kind: SnapshotKind,
        data: &[(&str, &str)],
        store: &Store,
    ) -> Manifest {
        let entries = data
            .iter()
            .map(|(p, content)| {
                let (h, _) = store.put(content.as_bytes()).unwrap();
                Entry {
                    path: crate::sysroot::SysPath::new(p),
                    kind: FileKind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    user: None,
                    group: None,
                    mtime: Time::default(),
                    size: content.len() as u64,
                    blake3: Some(h),
                    target: None,
                    rdev: None,
                    xattrs: Default::default(),
                    caps: None,
                    owners: vec![],
                    dev: 0,
                    ino: 0,
                    ctime: Time::default(),
                }
            })
            .collect();
        Manifest {
            version: FORMAT_VERSION,
            id: id.into(),
            created: "2026-11-22T00:00:00Z".into(),
            kind,
            label: None,
            root: "/".into(),
            guard_version: "test".into(),
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
    fn second_writer_is_refused_while_the_lock_is_held() {
        let d = tempfile::tempdir().unwrap();
        let _a = Store::open_write(d.path()).unwrap();
        let err = Store::open_write(d.path()).err().unwrap().to_string();
        assert!(err.contains("locked by another guard process"), "{err}");
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_once_released_and_gives_up_in_time() {
        use std::time::{Duration, Instant};
        let d = tempfile::tempdir().unwrap();
        let a = Store::open_write(d.path()).unwrap();
        let mut told = 0;
        let t = Instant::now();
        let err =
            Store::open_write_waiting(d.path(), Duration::from_millis(300), &mut || told += 1)
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("still locked"), "{err}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(told, 1, "says once that it waits");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(a);
        });
        let b = Store::open_write_waiting(d.path(), Duration::from_secs(20), &mut || {});
        assert!(b.is_ok(), "{:?}", b.err());
        release.join().unwrap();
    }
}
