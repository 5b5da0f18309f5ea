//! The snapshot store: blake3 objects, manifests, the lock, verify and prune.
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
//! as root, empty, write or read a directory of the host.

pub mod manifest;

use foldhash::HashSet;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::sysroot::Resolve;

pub use manifest::*;

/// A snapshot file as stored: a header for fast listing, the manifest's
/// blake3 (over the raw manifest text, so corruption is detectable without
/// re-serialising), then `"manifest":` and the manifest (appended as text
/// by [`Store::commit`], so it is serialised once and never re-parsed).
#[derive(Serialize)]
struct SnapshotHeadOut {
    format: &'static str,
    version: u32,
    #[serde(flatten)]
    header: Header,
    blake3: String,
}

#[derive(Deserialize)]
struct SnapshotDocIn {
    format: String,
    version: u32,
    #[serde(flatten)]
    header: Header,
    blake3: String,
    manifest: Box<RawValue>,
}

/// The header fields of a snapshot file, spelled out rather than
/// `#[serde(flatten)]`ed (flatten buffers every field first, and `list` and
/// the baseline search read many headers). Other fields are ignored.
#[derive(Deserialize)]
struct HeadIn {
    format: String,
    version: u32,
    id: String,
    created: String,
    kind: SnapshotKind,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    vms: Vec<String>,
    #[serde(default)]
    blake3: Option<String>,
}

impl HeadIn {
    fn header(self) -> Header {
        Header {
            id: self.id,
            created: self.created,
            kind: self.kind,
            label: self.label,
            vms: self.vms,
        }
    }
}

const FORMAT_NAME: &str = "guard-snapshot";

/// An object as `forget` finds it: its fan-out directory and its name there.
type ObjectName = (String, String);

/// How a listed snapshot looks: its header, or why it cannot be read.
pub type Listed = (String, Result<Header, String>);

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

/// A file in the store that exists, durably, from before the first object
/// of a run is linked in until that run's `syncfs`: when a writer finds it,
/// a run died with objects the disk may hold torn (FORMAT.md, Durability).
const UNSYNCED: &str = "unsynced";

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

/// The result of `verify`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub snapshots: Vec<String>,
    pub objects_checked: u64,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Debug, Serialize)]
pub struct VerifyProblem {
    pub snapshot: String,
    /// The object hash, or null for a manifest problem.
    pub object: Option<String>,
    pub kind: ProblemKind,
    pub problem: String,
    pub paths: Vec<String>,
}

/// What `verify` found wrong with an object or manifest. `Missing` and
/// `Corrupt` are damage (exit 2); `Unreadable` (permission denied, an I/O
/// error) means verify could not look, which proves nothing either way
/// (exit 3, DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    Corrupt,
    Unreadable,
}

impl VerifyReport {
    /// Whether any problem is known damage, as opposed to something verify
    /// could not read.
    pub fn damaged(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.kind != ProblemKind::Unreadable)
    }

    pub fn unreadable(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unreadable)
            .count()
    }
}

/// What `forget`/`prune` would remove, and then did (their JSON, with
/// `dry_run`, is made in `app::show_gc`).
#[derive(Debug, Default)]
pub struct GcReport {
    pub snapshots: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Guests cloned with the dropped snapshots (`--vm`). forget/prune
    /// never delete a guest: the clones stay, and this is the last record
    /// of them, so it is said (with how to remove them).
    pub kept_clones: Vec<KeptClone>,
    /// What the plan was decided from: the snapshots kept and the objects
    /// found unneeded. Under the lock, `forget_as_planned` reuses it when
    /// the store still lists exactly the same snapshots (a snapshot never
    /// changes once listed, so the same ones need the same objects),
    /// instead of reading every kept manifest a second time.
    basis: Option<GcBasis>,
}

#[derive(Debug)]
struct GcBasis {
    dropped: Vec<String>,
    kept: Vec<String>,
    objects: Vec<(ObjectName, u64)>,
}

/// A guest clone that outlives its dropped snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeptClone {
    pub snapshot: String,
    pub domain: String,
    pub clone: String,
    pub uri: String,
    /// The clone's disk copies and nvram (full copies: they take space).
    pub files: Vec<String>,
    /// How to remove it by hand.
    pub remove: String,
}

impl KeptClone {
    fn of(snapshot: &str, r: &VmRecord) -> KeptClone {
        let mut files: Vec<String> = r.disks.iter().map(|d| d.copy.clone()).collect();
        files.extend(r.nvram.iter().cloned());
        let mut remove = format!("virsh -c {} undefine --nvram {}", r.uri, r.clone);
        if !r.disks.is_empty() {
            remove.push_str("; rm --");
            for d in &r.disks {
                remove.push(' ');
                remove.push_str(&d.copy);
            }
        }
        KeptClone {
            snapshot: snapshot.to_string(),
            domain: r.domain.clone(),
            clone: r.clone.clone(),
            uri: r.uri.clone(),
            files,
            remove,
        }
    }
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

/// The UTC time a snapshot id encodes (`20261123-003318-891`), or `None`
/// for an id not made by [`Store::new_id`].
pub fn id_time(id: &str) -> Option<jiff::Timestamp> {
    let t = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S-%3f", id).ok()?;
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Whether `s` is an object name: 64 lowercase hex digits, so that it can
/// never be a path that leads out of `objects/`.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Writes a stream of content into a fresh file, leaving whole blocks of
/// zeros as holes (the content reads back the same). A sparse disk image
/// or database in an include is mostly holes: written out densely, a 3 GB
/// image with no data took 3 GB in the store and 9.9 s to snapshot, and
/// its restore filled 3 GB of the target's filesystem too.
pub struct SparseWriter<'a> {
    f: &'a mut File,
    len: u64,
    /// Zeros seeked over and not yet followed by data.
    hole: u64,
}

/// The unit checked for zeros: the common filesystem block, so the holes
/// left are ones the filesystem can keep.
const SPARSE_BLOCK: usize = 4096;

/// Compared with as a slice (one `memcmp`, not a loop over bytes).
static ZEROS: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];

impl<'a> SparseWriter<'a> {
    /// The file must be empty, its offset at 0.
    pub fn new(f: &'a mut File) -> SparseWriter<'a> {
        SparseWriter { f, len: 0, hole: 0 }
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut rest = data;
        while !rest.is_empty() {
            // a run of data blocks is written at once, a run of zero
            // blocks skipped at once
            let zero = |b: &[u8]| b == &ZEROS[..b.len()];
            let first = &rest[..rest.len().min(SPARSE_BLOCK)];
            let is_zero = zero(first);
            let mut n = first.len();
            while n < rest.len() {
                let next = &rest[n..rest.len().min(n + SPARSE_BLOCK)];
                if zero(next) != is_zero {
                    break;
                }
                n += next.len();
            }
            if is_zero {
                self.hole += n as u64;
            } else {
                if self.hole > 0 {
                    self.f.seek(SeekFrom::Current(self.hole as i64))?;
                    self.hole = 0;
                }
                self.f.write_all(&rest[..n])?;
            }
            self.len += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Gives the file its full length (a trailing hole is not written);
    /// returns that length.
    pub fn finish(self) -> io::Result<u64> {
        if self.hole > 0 {
            self.f.set_len(self.len)?;
        }
        Ok(self.len)
    }
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

    /// The objects `m` names that the store does not have (damage: prune
    /// never removes an object a remaining snapshot needs).
    /// Which objects named by `m`, a snapshot of this store, are missing.
    ///
    /// Every object `m` names was stored or found during `m`'s own run,
    /// which began after the snapshot before it (writers hold the lock one
    /// at a time) had its id. An object can only vanish by an unlink from
    /// its fan-out directory, which sets that directory's ctime — a time
    /// nobody can set back short of moving the clock. So a fan-out
    /// directory whose ctime is older than that earlier id (less a margin
    /// for filesystems that keep whole seconds) is skipped with one `stat`;
    /// the objects of the others are looked up one by one. Ids are names,
    /// so a copied or relabelled snapshot file changes nothing; a cache id
    /// in the future (the clock went back) turns the shortcut off. On an
    /// unchanged store that is one `stat` per fan-out directory (~220
    /// here) instead of one per object (~530).
    pub fn missing_objects(&self, m: &Manifest) -> foldhash::HashSet<String> {
        use rustix::fs::statat;
        let objects = self.dir_in("objects");
        let untouched_before = self.ids().ok().and_then(|ids| {
            let before = ids.iter().rev().find(|id| id.as_str() < m.id.as_str())?;
            let (before, this) = (id_time(before)?, id_time(&m.id)?);
            (this <= jiff::Timestamp::now()).then(|| before - jiff::SignedDuration::from_secs(2))
        });
        // sorted, each object once, grouped by fan-out directory below
        let (mut hashes, odd): (Vec<&str>, Vec<&str>) = m
            .entries
            .iter()
            .filter_map(|e| e.blake3.as_deref())
            .partition(|h| is_hash(h));
        hashes.sort_unstable();
        hashes.dedup();
        let mut lost: foldhash::HashSet<String> = odd.into_iter().map(str::to_string).collect();
        let Ok(dir) = &objects else {
            lost.extend(hashes.into_iter().map(str::to_string));
            return lost;
        };
        let mut name = String::with_capacity(65);
        for group in hashes.chunk_by(|a, b| a[..2] == b[..2]) {
            let fan = &group[0][..2];
            let fan_st = statat(dir, fan, AtFlags::SYMLINK_NOFOLLOW);
            // (a fan-out name that is not a directory holds no object: a
            // symlink there is not followed to one elsewhere)
            if !fan_st
                .as_ref()
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            {
                lost.extend(group.iter().map(|h| h.to_string()));
                continue;
            }
            let untouched = match (fan_st, untouched_before) {
                (Ok(st), Some(t)) => {
                    jiff::Timestamp::new(st.st_ctime, st.st_ctime_nsec as i32).is_ok_and(|c| c < t)
                }
                _ => false,
            };
            if untouched {
                continue;
            }
            for h in group {
                name.clear();
                name.push_str(fan);
                name.push('/');
                name.push_str(&h[2..]);
                if statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_err() {
                    lost.insert(h.to_string());
                }
            }
        }
        lost
    }

    /// Opens an object for reading: never a symlink (on the way or in its
    /// place) nor anything but a regular file (a fifo would hang a
    /// restore, a device would feed it without end).
    pub fn open_object(&self, hash: &str) -> Result<File> {
        if !is_hash(hash) {
            bail!("invalid object name {hash:?}");
        }
        match self.open_stored(&Self::object_rel(hash)) {
            Ok(f) => Ok(f),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                bail!("object {hash} is missing from the store: {e}")
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                bail!("object {hash} is corrupt in the store ({e}); run guard verify")
            }
            Err(e) => bail!("cannot read object {hash}: {e}"),
        }
    }

    /// Reads an object and checks it is what its name says.
    pub fn read_object(&self, hash: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_object(hash)?.read_to_end(&mut buf)?;
        if blake3::hash(&buf).to_hex().as_str() != hash {
            bail!("object {hash} is corrupt (its content does not match its name)");
        }
        Ok(buf)
    }

    /// A new temp file in `tmp/` for an object (0400 from the start),
    /// with the directory it is in and its name there.
    fn tmp_file(&self) -> Result<(OwnedFd, String, File)> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("obj.{}.{n}", std::process::id());
        let dir = self.dir_in("tmp").map_err(|e| self.write_err(e))?;
        let f = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o400),
        )
        .map_err(|e| self.write_err(io::Error::from(e)))?;
        Ok((dir, name, File::from(f)))
    }

    /// Makes (if need be) and opens the fan-out directory of an object
    /// (`objects/ab`): one that is a symlink is refused, never written
    /// through.
    fn fan_out_dir(&self, hash: &str) -> Result<OwnedFd> {
        let fail = |e: io::Error| {
            write_failed(
                format_args!(
                    "cannot write {}",
                    self.dir.join("objects").join(&hash[..2]).display()
                ),
                e,
            )
        };
        let objects = self.dir_in("objects").map_err(fail)?;
        make_dir_in(objects.as_fd(), &hash[..2]).map_err(fail)
    }

    /// Puts the [`UNSYNCED`] mark in the store, durably, before this run
    /// links in its first object: a power cut can leave a linked object
    /// empty or torn until the commit's `syncfs`, and the mark tells the
    /// next writer to look (see [`Self::recover_unsynced`]).
    fn mark_unsynced(&self) -> Result<()> {
        let mut marked = self.marked.lock().expect("not poisoned");
        if *marked {
            return Ok(());
        }
        let base = self.base().map_err(|e| self.write_err(e))?;
        let f = File::from(
            open_beneath(
                base.as_fd(),
                UNSYNCED,
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| self.write_err(e))?,
        );
        f.sync_all().map_err(|e| self.write_err(e))?;
        rustix::fs::fsync(base.as_fd()).map_err(|e| self.write_err(io::Error::from(e)))?;
        *marked = true;
        Ok(())
    }

    /// Run by a writer that found the [`UNSYNCED`] mark of a run that died:
    /// every object linked in since the mark (its fan-out directory and
    /// its own ctime are not older) is hashed again, a torn one removed,
    /// and the rest synced before the mark goes. Objects are written once
    /// and never changed, so nothing older can be torn. Only directories
    /// and regular files are looked at: nothing is followed out of the
    /// store to be hashed and removed.
    fn recover_unsynced(&self, lock: &File) -> Result<()> {
        let base = self.base().map_err(|e| self.write_err(e))?;
        let Ok(md) = rustix::fs::statat(base.as_fd(), UNSYNCED, AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(());
        };
        // (a margin for filesystems that keep whole seconds)
        let since = (md.st_ctime - 2, 0i64);
        let newer = |st: &rustix::fs::Stat| (st.st_ctime, st.st_ctime_nsec as i64) >= since;
        let objects = dir_beneath(base.as_fd(), "objects").ok();
        for (fan, _) in objects
            .as_ref()
            .map(entries)
            .and_then(|r| r.ok())
            .unwrap_or_default()
        {
            let Some(objects) = &objects else { break };
            let Ok(fan_fd) = dir_beneath(objects.as_fd(), &fan) else {
                continue;
            };
            if !rustix::fs::fstat(&fan_fd).is_ok_and(|st| newer(&st)) {
                continue;
            }
            for (obj, kind) in entries(&fan_fd).unwrap_or_default() {
                if kind != FileType::RegularFile && kind != FileType::Unknown {
                    continue;
                }
                let Ok(f) = open_beneath(
                    fan_fd.as_fd(),
                    &obj,
                    OFlags::RDONLY | OFlags::NONBLOCK,
                    Mode::empty(),
                ) else {
                    continue;
                };
                let mut f = File::from(f);
                if !f.metadata().is_ok_and(|m| m.is_file())
                    || !rustix::fs::fstat(&f).is_ok_and(|st| newer(&st))
                {
                    continue;
                }
                let name = format!("{fan}{obj}");
                let mut h = blake3::Hasher::new();
                let whole =
                    io::copy(&mut f, &mut h).is_ok() && h.finalize().to_hex().as_str() == name;
                if !whole {
                    rustix::fs::unlinkat(&fan_fd, obj.as_str(), AtFlags::empty()).map_err(|e| {
                        write_failed(
                            format_args!(
                                "cannot remove torn object {}",
                                self.dir.join("objects").join(&fan).join(&obj).display()
                            ),
                            io::Error::from(e),
                        )
                    })?;
                }
            }
        }
        rustix::fs::syncfs(lock).map_err(|e| {
            write_failed(format_args!("cannot sync store {}", self.dir.display()), e)
        })?;
        rustix::fs::unlinkat(base.as_fd(), UNSYNCED, AtFlags::empty())
            .map_err(|e| self.write_err(io::Error::from(e)))
    }

    /// An object of this name that is there whole (the right size) in the
    /// fan-out directory `fan`; one that is not is removed so it can be
    /// written again.
    fn have_object(&self, fan: &OwnedFd, hash: &str, size: u64) -> Result<bool> {
        match rustix::fs::statat(fan, &hash[2..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_size as u64 == size =>
            {
                Ok(true)
            }
            Ok(_) => {
                rustix::fs::unlinkat(fan, &hash[2..], AtFlags::empty()).map_err(|e| {
                    write_failed(
                        format_args!(
                            "cannot replace damaged object {}",
                            self.object_path(hash).display()
                        ),
                        io::Error::from(e),
                    )
                })?;
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    /// Writes a new object whose hash is known as an unnamed `O_TMPFILE`
    /// in its fan-out directory and links it in under its name: a crash
    /// leaves nothing behind, and on this kind of filesystem it measured
    /// 2.5 times faster than creating a named temp file and renaming it.
    /// `Ok(false)` when the filesystem or the privileges do not allow it
    /// (the caller then takes the named-temp path).
    fn put_unnamed(&self, dirfd: &OwnedFd, hash: &str, data: &[u8]) -> Result<bool> {
        let fd = match rustix::fs::openat(
            dirfd,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o400),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::OPNOTSUPP)
            | Err(rustix::io::Errno::ISDIR)
            | Err(rustix::io::Errno::INVAL) => return Ok(false),
            Err(e) => return Err(self.write_err(e)),
        };
        let mut f = File::from(fd);
        f.write_all(data).map_err(|e| self.write_err(e))?;
        match rustix::fs::linkat(&f, "", dirfd, &hash[2..], rustix::fs::AtFlags::EMPTY_PATH) {
            // (already there: stored meanwhile, with the same content)
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(true),
            // linking an fd needs CAP_DAC_READ_SEARCH on older kernels
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::PERM) => Ok(false),
            Err(e) => Err(write_failed(
                format_args!("cannot write object {}", self.object_path(hash).display()),
                e,
            )),
        }
    }

    /// Renames the temp file `name` in `tmp` to the object `hash` in its
    /// fan-out directory `fan`.
    fn link_object(&self, tmp: &OwnedFd, name: &str, fan: &OwnedFd, hash: &str) -> Result<()> {
        rustix::fs::renameat(tmp, name, fan, &hash[2..]).map_err(|e| {
            write_failed(
                format_args!("cannot write object {}", self.object_path(hash).display()),
                e,
            )
        })
    }

    /// Stores `data` unless an object of that content exists. Returns the
    /// hash and whether a new object was written. Not synced here: the
    /// snapshot commit syncs the filesystem once for all objects.
    pub fn put(&self, data: &[u8]) -> Result<(String, bool)> {
        self.unsynced.store(true, Ordering::SeqCst);
        let hash = blake3::hash(data).to_hex().to_string();
        let fan = self.fan_out_dir(&hash)?;
        if self.have_object(&fan, &hash, data.len() as u64)? {
            return Ok((hash, false));
        }
        self.mark_unsynced()?;
        if !self.put_unnamed(&fan, &hash, data)? {
            self.put_named(&fan, &hash, data)?;
        }
        Ok((hash, true))
    }

    /// [`Self::put_unnamed`]'s fallback: a named temp file in `tmp/`,
    /// renamed into place.
    fn put_named(&self, fan: &OwnedFd, hash: &str, data: &[u8]) -> Result<()> {
        let (tmp, name, mut f) = self.tmp_file()?;
        let res = f
            .write_all(data)
            .map_err(|e| self.write_err(e))
            .and_then(|_| self.link_object(&tmp, &name, fan, hash));
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&tmp, name.as_str(), AtFlags::empty());
        }
        res
    }

    /// Streams a large file into the store while hashing it. A read error
    /// is the file's (an ordinary error); a write error is the store's
    /// ([`StoreWriteError`]).
    pub fn put_reader(&self, mut r: impl Read) -> Result<(String, u64, bool)> {
        self.unsynced.store(true, Ordering::SeqCst);
        let (tmp, name, mut f) = self.tmp_file()?;
        let res = (|| -> Result<(String, u64, bool)> {
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut w = SparseWriter::new(&mut f);
            loop {
                let k = r.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
                w.write(&buf[..k]).map_err(|e| self.write_err(e))?;
            }
            let n = w.finish().map_err(|e| self.write_err(e))?;
            let hash = h.finalize().to_hex().to_string();
            let fan = self.fan_out_dir(&hash)?;
            if self.have_object(&fan, &hash, n)? {
                let _ = rustix::fs::unlinkat(&tmp, name.as_str(), AtFlags::empty());
                return Ok((hash, n, false));
            }
            self.mark_unsynced()?;
            self.link_object(&tmp, &name, &fan, &hash)?;
            Ok((hash, n, true))
        })();
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&tmp, name.as_str(), AtFlags::empty());
        }
        res
    }

    /// Whether objects were stored or found since the last sync, so that
    /// [`Self::sync_objects`] has work to do.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced.load(Ordering::SeqCst)
    }

    /// Makes every object stored or found so far durable: one `syncfs`
    /// (nothing when there is none). [`Self::commit`] calls it; a snapshot
    /// calls it earlier, on a thread of its own while the capability ledger
    /// walks, so the commit finds nothing left to wait for. Not to be run
    /// while another thread stores objects: one stored during the `syncfs`
    /// may be missed.
    pub fn sync_objects(&self) -> Result<()> {
        let Some(lock) = &self._lock else {
            bail!("internal: sync on a read-only store handle");
        };
        if self.unsynced.swap(false, Ordering::SeqCst) {
            // On the lock's fd, opened before this handle wrote anything:
            // `syncfs` reports a writeback error to each fd opened before
            // it, so one that another process's `syncfs` has already seen
            // is still reported here.
            let synced = rustix::fs::syncfs(lock).map_err(io::Error::from);
            if synced.is_err() {
                self.unsynced.store(true, Ordering::SeqCst);
            }
            io_ctx(synced, || {
                format!("cannot sync store {}", self.dir.display())
            })?;
            let mut marked = self.marked.lock().expect("not poisoned");
            if *marked {
                // (a mark whose removal a crash undoes only costs the next
                // writer a look at this run's objects)
                if let Ok(base) = self.base() {
                    let _ = rustix::fs::unlinkat(base.as_fd(), UNSYNCED, AtFlags::empty());
                }
                *marked = false;
            }
        }
        Ok(())
    }

    /// Makes a snapshot exist: one `syncfs` for every object written so
    /// far (unless [`Self::sync_objects`] did it already), then the
    /// snapshot file, atomically. Only after this returns may the id be
    /// printed.
    pub fn commit(&self, m: &Manifest) -> Result<()> {
        self.sync_objects()?;
        // sized for the manifest up front (~220 bytes an entry) rather
        // than grown by doubling through a third of a megabyte
        let mut body = Vec::with_capacity(64 * 1024 + m.entries.len() * 256);
        serde_json::to_writer(&mut body, m)?;
        let head = SnapshotHeadOut {
            format: FORMAT_NAME,
            version: FORMAT_VERSION,
            header: Header::from(m),
            blake3: blake3::hash(&body).to_hex().to_string(),
        };
        // `{header…,"blake3":"…"}` with its closing brace replaced by the
        // manifest member: the document readers parse (FORMAT.md).
        let head = serde_json::to_vec(&head)?;
        let Some(head) = head.strip_suffix(b"}") else {
            bail!("internal: the snapshot header did not serialise as an object");
        };
        let shown = self.dir.join("snapshots");
        let dir = io_ctx(self.dir_in("snapshots"), || {
            format!("cannot open {}", shown.display())
        })?;
        atomic_write_at(
            &dir,
            &shown,
            &format!("{}.json", m.id),
            &[head, br#","manifest":"#, &body, b"}"],
            0o600,
        )
    }

    /// A new id: UTC time to the millisecond, so ids sort by time (see
    /// [`id_time`]).
    pub fn new_id(&self) -> String {
        let mut t = jiff::Timestamp::now();
        loop {
            let id = t.strftime("%Y%m%d-%H%M%S-%3f").to_string();
            let taken = self.base().is_ok_and(|b| {
                rustix::fs::statat(
                    b.as_fd(),
                    Self::snapshot_rel(&id).as_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok()
            });
            if !taken {
                return id;
            }
            t += jiff::SignedDuration::from_millis(1);
        }
    }

    /// Every snapshot id on disk, oldest first.
    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("snapshots");
        let names = match self.dir_in("snapshots").and_then(|fd| entries(&fd)) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return io_ctx(Err(e), || format!("cannot read store {}", dir.display())),
        };
        let mut ids: Vec<String> = names
            .into_iter()
            .filter_map(|(name, _)| {
                if name.starts_with('.') {
                    return None;
                }
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every snapshot with its header, or the reason it cannot be read.
    pub fn list(&self) -> Result<Vec<Listed>> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| {
                let h = self.header(&id).map_err(|e| format!("{e:#}"));
                (id, h)
            })
            .collect())
    }

    /// Opens a snapshot file (see [`open_stored`]).
    fn open_doc(&self, id: &str) -> io::Result<File> {
        self.open_stored(&Self::snapshot_rel(id))
    }

    fn read_doc_raw(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut f = self.open_doc(id)?;
        let mut raw = Vec::new();
        f.read_to_end(&mut raw)?;
        Ok(raw)
    }

    fn read_doc(&self, id: &str) -> Result<Vec<u8>> {
        match self.read_doc_raw(id) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no snapshot {id}"),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                bail!("snapshot {id} is corrupt: {e}")
            }
            Err(e) => io_ctx(Err(e), || format!("cannot read snapshot {id}")),
        }
    }

    /// The header of a snapshot without parsing its manifest: the header
    /// fields are written before `"manifest"`, and the byte sequence
    /// `,"manifest":` cannot occur inside a JSON string (its quotes would be
    /// escaped), so the prefix up to it, closed with `}`, is the header. A
    /// store with many hook snapshots is listed (and its baseline found) by
    /// reading a few hundred bytes of each.
    pub fn header(&self, id: &str) -> Result<Header> {
        let mut f = match self.open_doc(id) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no snapshot {id}"),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                bail!("snapshot {id} is corrupt: {e}")
            }
            Err(e) => return io_ctx(Err(e), || format!("cannot read snapshot {id}")),
        };
        // A snapshot file always ends with the manifest's and the
        // document's closing braces: a truncated one is corrupt.
        let mut tail = [0u8; 2];
        use std::io::{Seek, SeekFrom};
        let whole =
            f.seek(SeekFrom::End(-2)).is_ok() && f.read_exact(&mut tail).is_ok() && &tail == b"}}";
        if !whole {
            bail!("snapshot {id} is corrupt: the file is truncated");
        }
        f.seek(SeekFrom::Start(0))?;
        // The header is a few hundred bytes: read 4 KiB at a time, up to
        // 64 KiB, rather than a large manifest's first 64 KiB every time.
        let mut head = Vec::with_capacity(4096);
        let mut prefix = None;
        while head.len() < 64 * 1024 {
            let before = head.len();
            (&mut f).take(4096).read_to_end(&mut head)?;
            let from = before.saturating_sub(11);
            if let Some(i) = head[from..]
                .windows(12)
                .position(|w| w == br#","manifest":"#)
            {
                prefix = Some([&head[..from + i], b"}"].concat());
                break;
            }
            if head.len() == before {
                break;
            }
        }
        let parsed: serde_json::Result<HeadIn> = match prefix {
            Some(p) => serde_json::from_slice(&p),
            None => serde_json::from_slice(&self.read_doc(id)?),
        };
        let h = parsed.map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
        check_format(id, &h.format, h.version)?;
        Ok(h.header())
    }

    /// Loads a snapshot and checks the manifest against its recorded hash.
    pub fn load(&self, id: &str) -> Result<Manifest> {
        let raw = self.read_doc(id)?;
        parse_doc(id, &raw)
    }

    /// Resolves a user-given id: exact, or a unique prefix.
    pub fn resolve(&self, given: &str) -> Result<String> {
        if given.is_empty() || given.contains('/') {
            bail!("invalid snapshot id {given:?}");
        }
        let ids = self.ids()?;
        if ids.iter().any(|i| i == given) {
            return Ok(given.to_string());
        }
        let hits: Vec<&String> = ids.iter().filter(|i| i.starts_with(given)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("no snapshot {given} in store {}", self.dir.display()),
            many => bail!(
                "snapshot id {given} is ambiguous: {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The newest `manual` or `pre` snapshot (DESIGN §2). A corrupt snapshot
    /// newer than every good candidate is an error, not skipped: silently
    /// falling back to an older baseline could hide damage.
    pub fn baseline(&self) -> Result<Option<String>> {
        // newest first, reading headers only until the baseline is found
        for id in self.ids()?.into_iter().rev() {
            match self.header(&id).map_err(|e| format!("{e:#}")) {
                Ok(h) if h.kind.is_baseline_candidate() => return Ok(Some(id)),
                Ok(_) => continue,
                Err(e) => bail!("{e}; run `guard verify` or `guard forget {id}`"),
            }
        }
        Ok(None)
    }

    /// The newest snapshot of any kind that reads; used as the stat cache.
    pub fn latest_readable(&self) -> Option<Manifest> {
        self.ids()
            .ok()?
            .iter()
            .rev()
            .find_map(|id| self.load(id).ok())
    }

    /// Re-hashes every object and manifest the given snapshots need.
    ///
    /// One manifest at a time: each is read, its objects checked, and it
    /// is dropped before the next is read. Holding them all made verify's
    /// memory the sum of every manifest (1.8 GB for 1,000 snapshots of a
    /// 2,500-entry /etc); what is kept across them is one verdict per
    /// distinct object. Problems are reported as before: the manifests
    /// that could not be read first, then the objects, snapshot by
    /// snapshot.
    pub fn verify(&self, ids: &[String], progress: &dyn crate::ui::Progress) -> VerifyReport {
        let mut rep = VerifyReport::default();
        let mut good: foldhash::HashMap<String, Result<(), (ProblemKind, String)>> =
            foldhash::HashMap::default();
        let mut object_problems = Vec::new();
        // The bar counts the objects each snapshot needs; the count of
        // those not read yet is estimated from the ones read so far.
        let (mut counted, mut loaded_n) = (0u64, 0u64);
        for (i, id) in ids.iter().enumerate() {
            rep.snapshots.push(id.clone());
            // Read here rather than through `load`, to tell a manifest that
            // cannot be read from one that reads and is wrong.
            let loaded = match self.read_doc_raw(id) {
                Ok(raw) => parse_doc(id, &raw).map_err(|e| {
                    let kind = if e.is::<NewerFormat>() {
                        ProblemKind::Unreadable
                    } else {
                        ProblemKind::Corrupt
                    };
                    (kind, format!("{e:#}"))
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err((ProblemKind::Missing, format!("no snapshot {id}")))
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => Err((
                    ProblemKind::Corrupt,
                    format!("snapshot {id} is corrupt: {e}"),
                )),
                Err(e) => Err((
                    ProblemKind::Unreadable,
                    format!("snapshot {id} is unreadable: {e}"),
                )),
            };
            let m = match loaded {
                Ok(m) => m,
                Err((kind, problem)) => {
                    rep.problems.push(VerifyProblem {
                        snapshot: id.clone(),
                        object: None,
                        kind,
                        problem,
                        paths: vec![],
                    });
                    continue;
                }
            };
            let objects = m.objects();
            counted += objects.len() as u64;
            loaded_n += 1;
            let left = (ids.len() - i - 1) as u64;
            progress.set_length(counted + counted / loaded_n * left);
            for (hash, paths) in objects {
                let res = good
                    .entry(hash.to_string())
                    .or_insert_with(|| {
                        rep.objects_checked += 1;
                        self.check_object(hash)
                    })
                    .clone();
                progress.inc(1);
                if let Err((kind, problem)) = res {
                    object_problems.push(VerifyProblem {
                        snapshot: m.id.clone(),
                        object: Some(hash.to_string()),
                        kind,
                        problem,
                        paths: paths.iter().map(|p| p.to_string()).collect(),
                    });
                }
            }
        }
        progress.set_length(counted);
        rep.problems.extend(object_problems);
        progress.finish();
        // Verify takes no lock (a long one must not hold off a hook's
        // snapshot), so a `forget` may have removed a snapshot listed
        // above, and then its objects, while this ran. Such a snapshot is
        // not damaged, it is gone: it is not reported. Snapshot files go
        // before their objects, so one that is still listed now had its
        // problems while listed.
        if let Ok(now) = self.ids() {
            let listed = |id: &String| now.binary_search(id).is_ok();
            rep.snapshots.retain(listed);
            rep.problems.retain(|p| listed(&p.snapshot));
        }
        rep
    }

    /// Re-hashes one object. Only what verify saw decides damage: an
    /// object that is not there (or whose fan-out name is not a directory)
    /// is missing, one that reads with other content, or is not a regular
    /// file, is corrupt. One it cannot open or read (EACCES as a user
    /// without root's rights, EIO) is unreadable: its content is unknown.
    fn check_object(&self, hash: &str) -> Result<(), (ProblemKind, String)> {
        let unreadable = |e: io::Error| (ProblemKind::Unreadable, format!("unreadable: {e}"));
        let mut f = match self.open_stored(&Self::object_rel(hash)) {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err((ProblemKind::Missing, "missing".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err((ProblemKind::Corrupt, format!("corrupt: {e}")))
            }
            Err(e) => return Err(unreadable(e)),
        };
        let mut h = blake3::Hasher::new();
        if let Err(e) = io::copy(&mut f, &mut h) {
            return Err(unreadable(e));
        }
        if h.finalize().to_hex().as_str() != hash {
            return Err((
                ProblemKind::Corrupt,
                "corrupt: content does not match its hash".into(),
            ));
        }
        Ok(())
    }

    /// What [`Self::forget`] of `ids` would remove, removing nothing: the
    /// snapshots (each once) and every object no other snapshot needs,
    /// with their bytes. Refused like `forget` itself.
    pub fn forget_plan(&self, ids: &[String]) -> Result<GcReport> {
        let (ids, kept, objects) = self.gc_plan(ids, None)?;
        let kept_clones = self.clones_of(&ids);
        Ok(GcReport {
            objects: objects.len() as u64,
            bytes: objects.iter().map(|(_, n)| n).sum(),
            kept_clones,
            basis: Some(GcBasis {
                dropped: ids.clone(),
                kept,
                objects,
            }),
            snapshots: ids,
        })
    }

    /// [`Self::forget`] of `ids` after `plan` (a [`Self::forget_plan`]
    /// made without the lock) was shown: the same, but when the store
    /// lists the snapshots the plan was made from, its objects are taken
    /// from the plan instead of reading every kept manifest again.
    pub fn forget_as_planned(&self, ids: &[String], plan: &GcReport) -> Result<GcReport> {
        self.forget_with(ids, plan.basis.as_ref())
    }

    /// Removes snapshot files, then every object no remaining snapshot
    /// needs. Which objects those are is decided first, from every other
    /// manifest: when one cannot be read (it may need any object) or an
    /// id is not there, nothing at all is removed. The removed snapshot
    /// files are made durable before any object goes, so a crash or power
    /// cut at any moment leaves every listed snapshot whole.
    pub fn forget(&self, ids: &[String]) -> Result<GcReport> {
        self.forget_with(ids, None)
    }

    fn forget_with(&self, ids: &[String], basis: Option<&GcBasis>) -> Result<GcReport> {
        if !self.is_writable() {
            bail!("internal: forget on a read-only store handle");
        }
        let (ids, _, objects) = self.gc_plan(ids, basis)?;
        // read before the snapshot files go: they are the only record
        let kept_clones = self.clones_of(&ids);
        let snapshots = io_ctx(self.dir_in("snapshots"), || {
            format!("cannot open {}", self.dir.join("snapshots").display())
        })?;
        for id in &ids {
            io_ctx(
                rustix::fs::unlinkat(&snapshots, format!("{id}.json").as_str(), AtFlags::empty())
                    .map_err(io::Error::from),
                || format!("cannot remove snapshot {id}"),
            )?;
        }
        if !ids.is_empty() {
            // An unsynced unlink of a snapshot file can be undone by a
            // power cut while the object unlinks below are not: the
            // snapshot would come back without its objects.
            io_ctx(
                rustix::fs::fsync(&snapshots).map_err(io::Error::from),
                || {
                    format!(
                        "cannot sync store {}; snapshots removed, no object removed",
                        self.dir.display()
                    )
                },
            )?;
        }
        let mut rep = GcReport {
            snapshots: ids,
            kept_clones,
            ..GcReport::default()
        };
        let objects_dir = self.dir_in("objects");
        let mut fan: Option<(String, OwnedFd)> = None;
        for ((f, name), size) in objects {
            let Ok(all) = &objects_dir else { break };
            if fan.as_ref().is_none_or(|(open, _)| *open != f) {
                fan = dir_beneath(all.as_fd(), &f).ok().map(|fd| (f, fd));
            }
            let Some((_, fd)) = &fan else { continue };
            if rustix::fs::unlinkat(fd, name.as_str(), AtFlags::empty()).is_ok() {
                rep.objects += 1;
                rep.bytes += size;
            }
        }
        Ok(rep)
    }

    /// The guest clones recorded by the snapshots `ids` (only those whose
    /// header names one are read in full). A manifest that cannot be read
    /// still gives the header's `DOMAIN -> CLONE`.
    fn clones_of(&self, ids: &[String]) -> Vec<KeptClone> {
        let mut out = Vec::new();
        for id in ids {
            let Ok(h) = self.header(id) else { continue };
            if h.vms.is_empty() {
                continue;
            }
            match self.load(id) {
                Ok(m) => out.extend(m.vms.iter().map(|r| KeptClone::of(id, r))),
                Err(_) => out.extend(h.vms.iter().map(|v| {
                    let (domain, clone) = v.split_once(" -> ").unwrap_or(("", v));
                    KeptClone {
                        snapshot: id.clone(),
                        domain: domain.to_string(),
                        clone: clone.to_string(),
                        uri: String::new(),
                        files: Vec::new(),
                        remove: format!(
                            "virsh undefine --nvram {clone} (and delete its disk copies)"
                        ),
                    }
                })),
            }
        }
        out
    }

    /// The snapshots of `ids` (sorted, each once: `forget ID ID` removes
    /// it once), the snapshots kept, and the objects that go. `basis`, a
    /// plan made earlier, is reused when it dropped and kept exactly these.
    #[allow(clippy::type_complexity)]
    fn gc_plan(
        &self,
        ids: &[String],
        basis: Option<&GcBasis>,
    ) -> Result<(Vec<String>, Vec<String>, Vec<(ObjectName, u64)>)> {
        let drop: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let all = self.ids()?;
        if let Some(gone) = drop.iter().find(|id| !all.iter().any(|a| a == *id)) {
            bail!(
                "no snapshot {gone} in store {}; nothing removed",
                self.dir.display()
            );
        }
        let dropped: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
        let kept: Vec<String> = all
            .into_iter()
            .filter(|id| !drop.contains(id.as_str()))
            .collect();
        if let Some(b) = basis.filter(|b| b.dropped == dropped && b.kept == kept) {
            // Objects stored since the plan belong to no listed snapshot
            // (a snapshot that committed would be listed): they stay, for
            // the next forget to collect.
            return Ok((dropped, kept, b.objects.clone()));
        }
        let needed = self.objects_needed_by(&kept)?;
        let objects = self.unreferenced(&needed);
        Ok((dropped, kept, objects))
    }

    /// Every object the snapshots `ids` name, their manifests read on
    /// every core (with 1,000 snapshots that read is most of a `forget`).
    /// A manifest that cannot be read may need any object: that is an
    /// error, and the caller removes nothing.
    fn objects_needed_by(&self, ids: &[String]) -> Result<HashSet<String>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = ids.len().div_ceil(cores).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = ids
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || -> Result<HashSet<String>> {
                        let mut needed = HashSet::default();
                        for id in chunk {
                            let m = self.load(id).with_context(|| {
                                format!("cannot decide which objects are still needed (run `guard verify`, or `guard forget {id}`); nothing removed")
                            })?;
                            needed.extend(m.entries.into_iter().filter_map(|e| e.blake3));
                        }
                        Ok(needed)
                    })
                })
                .collect();
            let mut needed = HashSet::default();
            for w in workers {
                let part = w
                    .join()
                    .map_err(|_| anyhow!("internal: a manifest reader panicked"))??;
                if needed.is_empty() {
                    needed = part;
                } else {
                    needed.extend(part);
                }
            }
            Ok(needed)
        })
    }

    /// Which snapshots the retention policy drops (DESIGN §4): all but the
    /// newest `keep` of each automatic kind (`pre`, `post`, `timer`, and
    /// `safety`, which `restore` takes); `manual` ones are always kept,
    /// and so are the baseline (the newest `manual` or `pre`, which
    /// `check` compares against: `--keep 0` must not change what it says)
    /// and the snapshots in `pinned` (what an unfinished playbook walk
    /// will check or restore against).
    pub fn prune_plan(&self, keep: usize, pinned: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut by_kind: BTreeMap<SnapshotKind, Vec<String>> = BTreeMap::new();
        let mut baseline = None;
        for (id, h) in self.list()? {
            let h = h.map_err(|e| anyhow!("{e}; run `guard verify` before pruning"))?;
            if h.kind.is_baseline_candidate() {
                // (ids come oldest first)
                baseline = Some(id.clone());
            }
            by_kind.entry(h.kind).or_default().push(id);
        }
        let mut drop = Vec::new();
        for (kind, mut ids) in by_kind {
            if kind == SnapshotKind::Manual {
                continue;
            }
            ids.sort();
            if ids.len() > keep {
                drop.extend(ids[..ids.len() - keep].iter().cloned());
            }
        }
        drop.retain(|id| Some(id) != baseline.as_ref() && !pinned.contains(id));
        drop.sort();
        Ok(drop)
    }

    /// Objects not in `needed`, with their sizes, fan-out directory by
    /// fan-out directory. A fan-out directory that cannot be read is passed
    /// over: nothing in it is removed; so is anything else there (a symlink
    /// to a directory would have its target's files removed).
    fn unreferenced(&self, needed: &HashSet<String>) -> Vec<(ObjectName, u64)> {
        let mut out = Vec::new();
        let Ok(objects) = self.dir_in("objects") else {
            return out;
        };
        for (fan, kind) in entries(&objects).unwrap_or_default() {
            if kind != FileType::Directory && kind != FileType::Unknown {
                continue;
            }
            let Ok(fan_fd) = dir_beneath(objects.as_fd(), &fan) else {
                continue;
            };
            for (obj, _) in entries(&fan_fd).unwrap_or_default() {
                if !needed.contains(&format!("{fan}{obj}")) {
                    let size = rustix::fs::statat(&fan_fd, obj.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| st.st_size as u64)
                        .unwrap_or(0);
                    out.push(((fan.clone(), obj), size));
                }
            }
        }
        out
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

/// A snapshot written by a newer guard: this one cannot read it, which says
/// nothing about whether it is whole (`verify` counts it as unreadable,
/// exit 3, not as corrupt).
#[derive(Debug)]
struct NewerFormat(String);

impl std::fmt::Display for NewerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NewerFormat {}

fn check_format(id: &str, format: &str, version: u32) -> Result<()> {
    if format != FORMAT_NAME {
        bail!("snapshot {id} is corrupt: not a guard snapshot");
    }
    if version > FORMAT_VERSION {
        return Err(NewerFormat(format!(
            "snapshot {id} has format version {version}; this guard reads up to {FORMAT_VERSION} (upgrade guard)"
        ))
        .into());
    }
    Ok(())
}

/// The manifest of a snapshot file parsed in one pass: the file is split at
/// the header/manifest boundary (see [`Store::header`]), the manifest's
/// bytes are hashed and parsed once. `None` when anything about the layout
/// is unexpected; the full parse below then decides.
fn parse_doc_fast(id: &str, raw: &[u8]) -> Option<Manifest> {
    const KEY: &[u8] = br#","manifest":"#;
    let i = raw.windows(KEY.len()).position(|w| w == KEY)?;
    let body = raw[i + KEY.len()..].trim_ascii_end().strip_suffix(b"}")?;
    let h: HeadIn = serde_json::from_slice(&[&raw[..i], b"}"].concat()).ok()?;
    check_format(id, &h.format, h.version).ok()?;
    if blake3::hash(body).to_hex().as_str() != h.blake3.as_deref()? {
        return None;
    }
    let m: Manifest = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    (m.id == h.id && m.kind == h.kind).then_some(m)
}

fn parse_doc(id: &str, raw: &[u8]) -> Result<Manifest> {
    if let Some(m) = parse_doc_fast(id, raw) {
        return Ok(m);
    }
    let doc: SnapshotDocIn =
        serde_json::from_slice(raw).map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
    check_format(id, &doc.format, doc.version)?;
    let actual = blake3::hash(doc.manifest.get().as_bytes()).to_hex();
    if actual.as_str() != doc.blake3 {
        bail!("snapshot {id} is corrupt: its manifest does not match its recorded blake3");
    }
    let m: Manifest = serde_json::from_str(doc.manifest.get())
        .map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
    if m.id != doc.header.id || m.kind != doc.header.kind {
        bail!("snapshot {id} is corrupt: header and manifest disagree");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// What SparseWriter leaves reads back byte for byte, whatever the
    /// pieces it is given and wherever zeros start and end in them.
    #[test]
    fn sparse_writes_read_back_as_written() {
        let mut data = vec![0u8; 40_000];
        data[5] = 1;
        data[9000..9100].fill(7);
        data[20_480..24_576].fill(9); // one aligned block of data
        let mut data2 = data.clone();
        data2.extend(vec![0u8; 70_000]); // a trailing hole
        for content in [data, data2, vec![0u8; 10_000], vec![]] {
            let t = tempfile::tempfile().unwrap();
            let mut f = t.try_clone().unwrap();
            let mut w = SparseWriter::new(&mut f);
            for piece in content.chunks(3001) {
                w.write(piece).unwrap();
            }
            assert_eq!(w.finish().unwrap(), content.len() as u64);
            let mut back = Vec::new();
            let mut r = t;
            std::io::Seek::rewind(&mut r).unwrap();
            r.read_to_end(&mut back).unwrap();
            assert!(back == content, "{} bytes", content.len());
        }
    }

    #[test]
    fn ids_encode_their_time() {
        let t = id_time("20261123-003318-891").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T00:33:18.891Z");
        assert!(id_time("not-an-id").is_none());
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let now = jiff::Timestamp::now();
        let made = id_time(&s.new_id()).unwrap();
        assert!(now.duration_since(made).abs() < jiff::SignedDuration::from_secs(5));
    }

    /// One snapshot of each (id, kind), each recording one file whose
    /// content is its id.
    fn commit_kinds(s: &Store, snaps: &[(&str, SnapshotKind)]) {
        for &(id, kind) in snaps {
            s.commit(&manifest(id, kind, &[("/etc/a", id)], s)).unwrap();
        }
    }

    fn manifest(id: &str, kind: SnapshotKind, data: &[(&str, &str)], store: &Store) -> Manifest {
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
    fn objects_are_deduplicated_private_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(&d.path().join("store")).unwrap();
        let (h1, new1) = s.put(b"hello").unwrap();
        let (h2, new2) = s.put(b"hello").unwrap();
        assert_eq!(h1, h2);
        assert!(new1 && !new2);
        let md = fs::metadata(s.object_path(&h1)).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o400);
        let md = fs::metadata(s.dir()).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        assert_eq!(s.read_object(&h1).unwrap(), b"hello");
    }

    #[test]
    fn both_ways_of_storing_an_object_leave_the_same_read_only_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let (h, new) = s.put(b"unnamed").unwrap();
        assert!(new);
        let named = blake3::hash(b"named").to_hex().to_string();
        s.put_named(&s.fan_out_dir(&named).unwrap(), &named, b"named")
            .unwrap();
        for (h, body) in [(&h, &b"unnamed"[..]), (&named, &b"named"[..])] {
            assert_eq!(s.read_object(h).unwrap(), body);
            let mode = fs::metadata(s.object_path(h)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o400, "{h}");
        }
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(s.put(b"named").unwrap(), (named, false));
    }

    #[test]
    fn an_object_unlinked_after_its_snapshot_is_found_missing() {
        use std::collections::HashSet;
        let missing = |s: &Store, m: &Manifest| {
            s.missing_objects(m)
                .into_iter()
                .collect::<HashSet<String>>()
        };
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let hash = |c: &str| blake3::hash(c.as_bytes()).to_hex().to_string();
        let data = [("/etc/a", "one"), ("/etc/b", "two"), ("/etc/c", "three")];
        let first = manifest(&s.new_id(), SnapshotKind::Manual, &data, &s);
        s.commit(&first).unwrap();
        // no snapshot before it: every object is looked up
        fs::remove_file(s.object_path(&hash("one"))).unwrap();
        assert_eq!(missing(&s, &first), HashSet::from([hash("one")]));
        s.put(b"one").unwrap();
        // the store left alone past the shortcut's margin, as between
        // timer runs; this snapshot finds every object already there
        std::thread::sleep(std::time::Duration::from_millis(2200));
        for _ in 0..2 {
            s.commit(&manifest(&s.new_id(), SnapshotKind::Timer, &data, &s))
                .unwrap();
        }
        let m = s.latest_readable().unwrap();
        assert!(missing(&s, &m).is_empty());
        fs::remove_file(s.object_path(&hash("one"))).unwrap();
        assert_eq!(missing(&s, &m), HashSet::from([hash("one")]));
        // the snapshot file's own metadata (a chmod, a relabel, a copy)
        // plays no part
        fs::set_permissions(s.snapshot_path(&m.id), fs::Permissions::from_mode(0o400)).unwrap();
        fs::remove_file(s.object_path(&hash("three"))).unwrap();
        assert_eq!(missing(&s, &m), HashSet::from([hash("one"), hash("three")]));
        // An object in an untouched directory is taken on trust, which
        // holds only for a snapshot this store's own run wrote: one naming
        // a hash it never stored shows the shortcut at work...
        let two = hash("two");
        let stranger = (0..)
            .map(|i| hash(&format!("x{i}")))
            .find(|h| h[..2] == two[..2] && *h != two)
            .unwrap();
        let mut odd = m.clone();
        odd.entries[1].blake3 = Some(stranger.clone());
        assert!(!missing(&s, &odd).contains(&stranger));
        // ...and with a cache id in the future (the clock went back since)
        // there is no shortcut: every object is looked up.
        odd.id = "20991231-000000-000".into();
        assert!(missing(&s, &odd).contains(&stranger));
    }

    #[test]
    fn a_run_that_died_before_its_sync_leaves_a_mark_the_next_writer_heeds() {
        let d = tempfile::tempdir().unwrap();
        let hash = |c: &str| blake3::hash(c.as_bytes()).to_hex().to_string();
        {
            let s = Store::open_write(d.path()).unwrap();
            s.put(b"whole").unwrap();
            assert!(d.path().join(UNSYNCED).exists(), "marked before the link");
            // dies here: no commit
        }
        // what a power cut can leave: a linked object of the right size
        // whose bytes never reached the disk
        let torn = hash("torn!");
        let path = d.path().join("objects").join(&torn[..2]).join(&torn[2..]);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"\0\0\0\0\0").unwrap();
        let s = Store::open_write(d.path()).unwrap();
        assert!(!path.exists(), "the torn object is removed");
        assert!(!d.path().join(UNSYNCED).exists());
        assert_eq!(s.read_object(&hash("whole")).unwrap(), b"whole");
        assert_eq!(s.put(b"torn!").unwrap(), (torn.clone(), true));
        assert!(d.path().join(UNSYNCED).exists());
        s.commit(&manifest(
            &s.new_id(),
            SnapshotKind::Manual,
            &[("/etc/t", "torn!")],
            &s,
        ))
        .unwrap();
        assert!(
            !d.path().join(UNSYNCED).exists(),
            "the commit's sync clears it"
        );
        assert_eq!(s.read_object(&torn).unwrap(), b"torn!");
    }

    #[test]
    fn an_object_of_the_wrong_size_is_written_again() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let (h, _) = s.put(b"content").unwrap();
        let path = s.object_path(&h);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"").unwrap();
        assert_eq!(s.put(b"content").unwrap(), (h.clone(), true));
        assert_eq!(s.read_object(&h).unwrap(), b"content");
        let big = vec![7u8; 3 << 20];
        let (h, _, _) = s.put_reader(&big[..]).unwrap();
        fs::remove_file(s.object_path(&h)).unwrap();
        fs::write(s.object_path(&h), &big[..100]).unwrap();
        assert!(s.put_reader(&big[..]).unwrap().2);
        assert_eq!(s.read_object(&h).unwrap(), big);
    }

    #[test]
    fn a_commit_syncs_whenever_an_object_was_stored_or_found() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let unsynced = || s.unsynced.load(Ordering::SeqCst);
        assert!(!unsynced());
        s.commit(&manifest(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "x")],
            &s,
        ))
        .unwrap();
        assert!(!unsynced(), "the commit synced what put() wrote");
        // an object that is already there may come from a run killed
        // before its sync: finding it counts as storing it
        s.put(b"x").unwrap();
        assert!(unsynced());
        s.commit(&manifest(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[],
            &s,
        ))
        .unwrap();
        assert!(!unsynced());
        // nothing stored since: nothing to sync, and the commit still lands
        s.commit(&manifest(
            "20260103-000000-000",
            SnapshotKind::Timer,
            &[],
            &s,
        ))
        .unwrap();
        assert!(!unsynced());
        assert_eq!(s.ids().unwrap().len(), 3);
    }

    #[test]
    fn baseline_skips_timer_post_and_safety() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        commit_kinds(
            &s,
            &[
                ("20260101-000000-000", SnapshotKind::Manual),
                ("20260102-000000-000", SnapshotKind::Pre),
                ("20260103-000000-000", SnapshotKind::Post),
                ("20260104-000000-000", SnapshotKind::Timer),
                ("20260105-000000-000", SnapshotKind::Safety),
            ],
        );
        assert_eq!(
            s.baseline().unwrap().as_deref(),
            Some("20260102-000000-000")
        );
        assert_eq!(s.resolve("20260104").unwrap(), "20260104-000000-000");
        assert!(s.resolve("2026010").is_err());
    }

    #[test]
    fn corrupt_manifest_and_object_are_detected() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A"), ("/etc/b", "B")],
            &s,
        );
        s.commit(&m).unwrap();
        assert_eq!(s.load(&m.id).unwrap(), m);
        let ids = vec![m.id.clone()];
        assert!(s.verify(&ids, &crate::ui::NoProgress).problems.is_empty());

        // flip one byte of an object
        let h = m.entries[0].blake3.clone().unwrap();
        let p = s.object_path(&h);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"X").unwrap();
        let rep = s.verify(&ids, &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].paths, vec!["/etc/a"]);

        // flip one byte inside the manifest
        let sp = s.snapshot_path(&m.id);
        let text = fs::read_to_string(&sp).unwrap().replace("/etc/b", "/etc/c");
        fs::write(&sp, text).unwrap();
        let err = s.load(&m.id).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    /// An object path that holds a directory, or whose fan-out name is a
    /// file, is damage verify can see (exit 2), not an error that leaves
    /// the object undecided like EACCES (exit 3).
    #[test]
    fn an_object_that_is_not_a_file_is_damage_not_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A")],
            &s,
        );
        s.commit(&m).unwrap();
        let ids = vec![m.id.clone()];
        let kinds = || {
            let rep = s.verify(&ids, &crate::ui::NoProgress);
            assert!(rep.damaged() && rep.unreadable() == 0, "{rep:?}");
            rep.problems.iter().map(|p| p.kind).collect::<Vec<_>>()
        };
        let p = s.object_path(m.entries[0].blake3.as_deref().unwrap());
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        // a fifo is reported at once, not waited on for a writer
        fs::remove_dir(&p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        // a symlink to an intact copy elsewhere is not followed
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, "A").unwrap();
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        let fan = p.parent().unwrap();
        fs::remove_dir_all(fan).unwrap();
        fs::write(fan, b"").unwrap();
        assert_eq!(kinds(), [ProblemKind::Missing]);
    }

    /// A fifo or a symlink where a snapshot file belongs is damage that
    /// verify, list and load report at once: never waited on, never
    /// followed (to an intact copy elsewhere, or out of the store).
    #[test]
    fn a_fifo_or_symlink_in_a_snapshots_place_is_corrupt_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest("20260101-000000-000", SnapshotKind::Manual, &[], &s);
        s.commit(&m).unwrap();
        let path = s.snapshot_path(&m.id);
        let copy = d.path().join("copy.json");
        fs::copy(&path, &copy).unwrap();
        fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let check = |what: &str| {
            let rep = s.verify(std::slice::from_ref(&m.id), &crate::ui::NoProgress);
            assert_eq!(rep.problems.len(), 1, "{what}: {rep:?}");
            assert_eq!(rep.problems[0].kind, ProblemKind::Corrupt, "{what}");
            let err = format!("{:#}", s.load(&m.id).unwrap_err());
            assert!(err.contains("is corrupt"), "{what}: {err}");
            let err = format!("{:#}", s.header(&m.id).unwrap_err());
            assert!(err.contains("is corrupt"), "{what}: {err}");
        };
        check("fifo");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&copy, &path).unwrap();
        check("symlink");
    }

    /// A snapshot a newer guard wrote is not damage: this guard cannot
    /// read it, so verify cannot decide (exit 3), and says to upgrade.
    #[test]
    fn a_snapshot_of_a_newer_format_is_unreadable_not_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest("20260101-000000-000", SnapshotKind::Manual, &[], &s);
        s.commit(&m).unwrap();
        let path = s.snapshot_path(&m.id);
        let doc = fs::read_to_string(&path).unwrap();
        let newer = doc.replacen(
            &format!("\"version\":{FORMAT_VERSION}"),
            &format!("\"version\":{}", FORMAT_VERSION + 1),
            1,
        );
        assert_ne!(doc, newer);
        fs::write(&path, newer).unwrap();
        let rep = s.verify(std::slice::from_ref(&m.id), &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1, "{rep:?}");
        assert_eq!(rep.problems[0].kind, ProblemKind::Unreadable);
        assert!(rep.problems[0].problem.contains("upgrade guard"), "{rep:?}");
        assert!(!rep.damaged());
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

    #[test]
    fn forget_takes_a_snapshot_named_twice_once() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "B")],
            &s,
        );
        s.commit(&a).unwrap();
        s.commit(&b).unwrap();
        // `guard forget ID ID` (or an id and its prefix, resolved): the
        // second removal found nothing and failed before the objects went
        let rep = s.forget(&[a.id.clone(), a.id.clone()]).unwrap();
        assert_eq!(rep.snapshots, vec![a.id.clone()]);
        assert_eq!(rep.objects, 1);
        assert_eq!(s.ids().unwrap(), vec![b.id.clone()]);
        assert!(s
            .verify(&s.ids().unwrap(), &crate::ui::NoProgress)
            .problems
            .is_empty());
    }

    #[test]
    fn forget_removes_nothing_while_another_manifest_cannot_be_read() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A")],
            &s,
        );
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/b", "B")],
            &s,
        );
        s.commit(&a).unwrap();
        s.commit(&b).unwrap();
        // a flipped byte in b's manifest: its header still reads
        let sp = s.snapshot_path(&b.id);
        let text = fs::read_to_string(&sp).unwrap().replace("/etc/b", "/etc/c");
        fs::write(&sp, text).unwrap();
        let err = s.forget(std::slice::from_ref(&a.id)).unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
        assert_eq!(
            s.ids().unwrap(),
            vec![a.id.clone(), b.id.clone()],
            "refused, so nothing removed"
        );
        assert_eq!(
            s.read_object(a.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"A"
        );
        assert_eq!(
            s.read_object(b.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"B"
        );
        assert!(
            s.forget_plan(std::slice::from_ref(&a.id)).is_err(),
            "the dry run says so too"
        );
        // the corrupt one itself can be forgotten: nothing else is unreadable
        let rep = s.forget(std::slice::from_ref(&b.id)).unwrap();
        assert_eq!(rep.objects, 1);
        assert_eq!(s.ids().unwrap(), vec![a.id.clone()]);
    }

    #[test]
    fn forget_refuses_an_id_that_is_not_there_and_removes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        s.commit(&a).unwrap();
        let err = s
            .forget(&[a.id.clone(), "20260102-000000-000".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no snapshot 20260102-000000-000"), "{err}");
        assert_eq!(s.ids().unwrap(), vec![a.id.clone()]);
    }

    #[test]
    fn the_plan_counts_what_forget_then_removes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "AAAA"), ("/etc/s", "same")],
            &s,
        );
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "B"), ("/etc/s", "same")],
            &s,
        );
        s.commit(&a).unwrap();
        s.commit(&b).unwrap();
        let plan = s.forget_plan(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(
            (plan.objects, plan.bytes),
            (1, 4),
            "the shared object stays"
        );
        assert_eq!(s.ids().unwrap().len(), 2, "a plan removes nothing");
        let rep = s.forget(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(
            (rep.snapshots, rep.objects, rep.bytes),
            (plan.snapshots, 1, 4)
        );
    }

    /// The plan shown before the confirmation is reused under the lock
    /// only while the store lists the same snapshots: one committed in
    /// between (a hook's, during the question) that needs an object the
    /// plan found unneeded keeps it.
    #[test]
    fn a_shown_plan_is_reused_only_while_the_store_is_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "AAAA"), ("/etc/s", "same")],
            &s,
        );
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "B"), ("/etc/s", "same")],
            &s,
        );
        s.commit(&a).unwrap();
        s.commit(&b).unwrap();
        let plan = s.forget_plan(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(plan.objects, 1);
        // a new snapshot holds A's content again, committed after the plan
        let c = manifest(
            "20260103-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "AAAA")],
            &s,
        );
        s.commit(&c).unwrap();
        let rep = s
            .forget_as_planned(std::slice::from_ref(&a.id), &plan)
            .unwrap();
        assert_eq!(rep.objects, 0, "the plan's object is needed again");
        assert_eq!(
            s.read_object(c.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"AAAA"
        );

        // unchanged since its plan: the plan's objects go, the rest stays
        let plan = s.forget_plan(std::slice::from_ref(&b.id)).unwrap();
        // ("B" and "same": c holds only A's content)
        assert_eq!((plan.objects, plan.bytes), (2, 5));
        let rep = s
            .forget_as_planned(std::slice::from_ref(&b.id), &plan)
            .unwrap();
        assert_eq!((rep.objects, rep.bytes), (2, 5));
        assert_eq!(s.ids().unwrap(), vec![c.id.clone()]);
        assert!(s
            .read_object(b.entries[0].blake3.as_deref().unwrap())
            .is_err());
        assert_eq!(
            s.read_object(c.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"AAAA"
        );
        // a plan for other snapshots than those forgotten is not reused
        let plan = s.forget_plan(&[]).unwrap();
        assert!(
            s.forget_as_planned(std::slice::from_ref(&c.id), &plan)
                .unwrap()
                .objects
                >= 1
        );
        assert!(s.ids().unwrap().is_empty());
    }

    #[test]
    fn forget_removes_nothing_through_a_symlink_in_objects() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(&d.path().join("store")).unwrap();
        let a = manifest(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        s.commit(&a).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("precious"), b"not the store's").unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.dir().join("objects").join("zz")).unwrap();
        let rep = s.forget(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(rep.objects, 1);
        assert!(elsewhere.join("precious").exists());
    }

    #[test]
    fn prune_never_drops_the_baseline_nor_a_pinned_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        commit_kinds(
            &s,
            &[
                ("20260101-000000-000", SnapshotKind::Manual),
                ("20260102-000000-000", SnapshotKind::Pre),
                ("20260103-000000-000", SnapshotKind::Pre),
                ("20260104-000000-000", SnapshotKind::Post),
                ("20260105-000000-000", SnapshotKind::Timer),
                ("20260106-000000-000", SnapshotKind::Safety),
            ],
        );
        assert_eq!(
            s.baseline().unwrap().as_deref(),
            Some("20260103-000000-000")
        );
        // --keep 0: every automatic one goes but the newest pre, which
        // `check` compares against by default
        let none = BTreeSet::new();
        assert_eq!(
            s.prune_plan(0, &none).unwrap(),
            vec![
                "20260102-000000-000",
                "20260104-000000-000",
                "20260105-000000-000",
                "20260106-000000-000"
            ]
        );
        // a snapshot an unfinished playbook walk will restore from stays
        let pinned = BTreeSet::from(["20260102-000000-000".to_string()]);
        assert_eq!(s.prune_plan(1, &pinned).unwrap(), Vec::<String>::new());
    }

    /// `verify` takes no lock (a long verify must not hold off the hooks'
    /// snapshots), so a `forget` may remove a snapshot it has listed, and
    /// that snapshot's objects, while it runs.
    #[test]
    fn verify_does_not_report_a_snapshot_forgotten_while_it_ran() {
        struct ForgetOnFirstStep<'a>(&'a Store, String, AtomicBool);
        impl crate::ui::Progress for ForgetOnFirstStep<'_> {
            fn set_length(&self, _: u64) {}
            fn inc(&self, _: u64) {
                if !self.2.swap(true, Ordering::SeqCst) {
                    self.0.forget(std::slice::from_ref(&self.1)).unwrap();
                }
            }
            fn set_message(&self, _: &str) {}
            fn finish(&self) {}
        }
        let d = tempfile::tempdir().unwrap();
        let w = Store::open_write(d.path()).unwrap();
        let data = [("/etc/a", "A"), ("/etc/b", "B"), ("/etc/c", "C")];
        let a = manifest("20260101-000000-000", SnapshotKind::Timer, &data, &w);
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Manual,
            &[("/etc/k", "K")],
            &w,
        );
        w.commit(&a).unwrap();
        w.commit(&b).unwrap();
        let r = Store::open_read(d.path()).unwrap();
        let rep = r.verify(
            &r.ids().unwrap(),
            &ForgetOnFirstStep(&w, a.id.clone(), AtomicBool::new(false)),
        );
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert_eq!(rep.snapshots, vec![b.id.clone()]);
        // a snapshot still listed keeps its problems
        let k = b.entries[0].blake3.clone().unwrap();
        fs::remove_file(w.object_path(&k)).unwrap();
        let rep = r.verify(&r.ids().unwrap(), &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].object.as_deref(), Some(k.as_str()));
    }

    #[test]
    fn prune_keeps_manual_and_newest_of_each_kind_and_drops_orphans() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        for i in 0..4 {
            let id = format!("2026010{i}-000000-000");
            let kind = if i == 0 {
                SnapshotKind::Manual
            } else {
                SnapshotKind::Timer
            };
            s.commit(&manifest(&id, kind, &[("/etc/x", &id)], &s))
                .unwrap();
        }
        let plan = s.prune_plan(1, &BTreeSet::new()).unwrap();
        assert_eq!(plan, vec!["20260101-000000-000", "20260102-000000-000"]);
        let rep = s.forget(&plan).unwrap();
        assert_eq!(rep.objects, 2);
        assert_eq!(
            s.ids().unwrap(),
            vec!["20260100-000000-000", "20260103-000000-000"]
        );
    }
}
