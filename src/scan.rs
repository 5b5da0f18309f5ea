//! Walks the live system into manifest entries: the config scope (metadata,
//! xattrs, content hashes), the capability ledger, enabled units and
//! os-release. Content goes to a [`Sink`]: the store for a snapshot, a bare
//! hash for `check`. A stat cache (the newest snapshot) skips re-hashing
//! files whose (dev, ino, size, mtime, ctime) did not change.

use std::collections::{BTreeMap, BTreeSet};

// foldhash, not SipHash: these maps hold a snapshot's paths and hashes,
// which guard hashes thousands of times a run; SipHash was ~0.25 ms of a
// ~10 ms timer snapshot.
use foldhash::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{Mode, OFlags};
use serde::Deserialize;

use crate::pkg;
use crate::store::{CapEntry, EnabledUnit, Entry, FileKind, Manifest, ScanError, Store, Time};
use crate::sysroot::{SysPath, SysRoot};
use crate::ui::Ui;
use crate::xattr;

/// The directories every snapshot walks, when present.
pub const DEFAULT_SCOPE: &[&str] = &[
    "/etc",
    "/usr/lib/pam.d",
    "/usr/etc",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Churn that is never worth a finding.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/etc/mtab",
    "/etc/ld.so.cache",
    "/etc/adjtime",
    "/etc/.pwd.lock",
    // the previous version the shadow tools (useradd, usermod, passwd,
    // vipw, groupadd …) keep at every change of the real file: one useradd
    // was four `file/modified` warnings for copies nothing reads, and the
    // real files are in every snapshot
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
    "/etc/.updated",
    "/etc/*.lock",
    "/etc/pacman.d/gnupg/S.*",
    "/etc/pacman.d/gnupg/random_seed",
    "/etc/pacman.d/gnupg/*.lock",
];

/// Where file capabilities are looked for (`lib*` is every top-level dir
/// whose name starts with `lib`).
pub const CAPS_ROOTS: &[&str] = &["/usr", "/opt", "/bin", "/sbin"];

/// Files larger than this are streamed into the store instead of read whole.
const STREAM_ABOVE: u64 = 16 << 20;

/// `ROOT/etc/guard/guard.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub version: u32,
    /// Extra paths to snapshot (absolute inside the root).
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns (absolute inside the root) never recorded.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Drop the built-in excludes (`/etc/mtab`, `/etc/ld.so.cache`, …).
    #[serde(default)]
    pub no_default_excludes: bool,
    /// How `timer` snapshots get the capability ledger.
    #[serde(default)]
    pub timer_ledger: TimerLedger,
}

/// `timer-ledger` in guard.toml.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerLedger {
    /// Carry the newest full walk (at most a day old) forward and probe
    /// every file on it again.
    #[default]
    Carry,
    /// Walk the caps roots in full, like every other snapshot.
    Walk,
}

pub const CONFIG_PATH: &str = "/etc/guard/guard.toml";

impl Config {
    pub fn load(root: &SysRoot) -> Result<Config> {
        let raw = root
            .read_follow(&SysPath::new(CONFIG_PATH))
            .with_context(|| format!("cannot read {CONFIG_PATH}"))?;
        let Some(raw) = raw else {
            return Ok(Config {
                version: 1,
                ..Default::default()
            });
        };
        let text = String::from_utf8(raw).map_err(|e| {
            anyhow!(
                "{CONFIG_PATH} is not UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        Config::parse(&text)
    }

    /// guard.toml's text, checked. Every error is one line that says where:
    /// a monitoring system shows a failed check's first line only, and
    /// toml's own rendering spans several (a snippet and a caret).
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let msg = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            match e.span().and_then(|s| text.get(..s.start)) {
                Some(before) => {
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    anyhow!("{CONFIG_PATH} line {line}, column {column}: {msg}")
                }
                None => anyhow!("{CONFIG_PATH}: {msg}"),
            }
        })?;
        if cfg.version != 1 {
            bail!(
                "{CONFIG_PATH}: version {} is not supported (expected 1)",
                cfg.version
            );
        }
        // Paths are taken as they are written, never resolved: `..` would
        // name a tree twice (or walk it under a name nothing else uses),
        // and a relative pattern never matches the absolute paths recorded.
        for (what, p) in cfg
            .include
            .iter()
            .map(|p| ("include", p))
            .chain(cfg.exclude.iter().map(|p| ("exclude", p)))
        {
            if !p.starts_with('/') || p.split('/').any(|c| c == "." || c == "..") {
                bail!(
                    "{CONFIG_PATH}: {what} {p:?} must be an absolute path inside the root, without . or .."
                );
            }
        }
        for p in &cfg.exclude {
            let x = Exclude::new(exclude_pattern(p))
                .map_err(|e| anyhow!("{CONFIG_PATH}: exclude {p:?}: {e}"))?;
            if x.matches("/etc") {
                bail!("{CONFIG_PATH}: exclude {p:?} would leave all of /etc out of every snapshot");
            }
        }
        Ok(cfg)
    }
}

/// An exclude as written, but a trailing `/` (`/etc/myapp/`), which would
/// match nothing: paths are recorded without one.
fn exclude_pattern(p: &str) -> &str {
    match p.trim_end_matches('/') {
        "" => "/",
        t => t,
    }
}

/// An exclude pattern with the literal text before its first and after its
/// last wildcard: a path that does not start and end with those cannot
/// match, and that byte test is far cheaper than glob matching (it runs for
/// every entry of every walk).
#[derive(Debug, Clone)]
struct Exclude {
    pattern: glob::Pattern,
    prefix: String,
    suffix: String,
}

impl Exclude {
    fn new(p: &str) -> std::result::Result<Exclude, glob::PatternError> {
        let pattern = glob::Pattern::new(p)?;
        let special = |c: char| matches!(c, '*' | '?' | '[' | ']');
        let (prefix, suffix) = match (p.find(special), p.rfind(special)) {
            (Some(first), Some(last)) => (p[..first].to_string(), p[last + 1..].to_string()),
            _ => (p.to_string(), p.to_string()),
        };
        Ok(Exclude {
            pattern,
            prefix,
            suffix,
        })
    }

    fn matches(&self, text: &str) -> bool {
        text.starts_with(&self.prefix)
            && text.ends_with(&self.suffix)
            && self.pattern.matches_with(
                text,
                glob::MatchOptions {
                    require_literal_separator: true,
                    ..Default::default()
                },
            )
    }
}

/// What to walk and what to leave out.
#[derive(Debug, Clone)]
pub struct Scope {
    pub roots: Vec<SysPath>,
    /// The roots guard.toml asked for: one that cannot be walked is an
    /// error (a default one that is absent, or reached through a symlink
    /// like `/lib -> usr/lib`, is simply not there).
    includes: Vec<SysPath>,
    excludes: Vec<Exclude>,
    /// Excluded exactly (the store when it lies inside the root).
    excluded_paths: Vec<SysPath>,
}

impl Scope {
    pub fn new(cfg: &Config, store_dir: Option<&Path>, root: &SysRoot) -> Result<Scope> {
        let mut roots: Vec<SysPath> = DEFAULT_SCOPE.iter().map(SysPath::new).collect();
        let mut includes = Vec::new();
        for inc in &cfg.include {
            if !inc.starts_with('/') {
                bail!("{CONFIG_PATH}: include {inc:?} must be an absolute path inside the root");
            }
            includes.push(SysPath::new(inc));
        }
        roots.extend(includes.iter().cloned());
        // A root inside another is walked once, as part of the outer one.
        roots.sort();
        roots.dedup();
        let outer: Vec<SysPath> = roots
            .iter()
            .filter(|r| !roots.iter().any(|o| o != *r && r.starts_with(o)))
            .cloned()
            .collect();
        let mut pats: Vec<&str> = Vec::new();
        if !cfg.no_default_excludes {
            pats.extend(DEFAULT_EXCLUDES);
        }
        pats.extend(cfg.exclude.iter().map(|p| exclude_pattern(p)));
        let excludes = pats
            .iter()
            .map(|p| Exclude::new(p).map_err(|e| anyhow!("{CONFIG_PATH}: exclude {p:?}: {e}")))
            .collect::<Result<_>>()?;
        let mut excluded_paths = Vec::new();
        if let Some(sd) = store_dir.and_then(|d| std::fs::canonicalize(d).ok()) {
            if let Some(p) = root.sys_path(&sd) {
                excluded_paths.push(p);
            }
        }
        Ok(Scope {
            roots: outer,
            includes,
            excludes,
            excluded_paths,
        })
    }

    pub fn excludes(&self, p: &SysPath) -> bool {
        // Called for every entry: borrow the bytes when they are UTF-8.
        let owned;
        let text = match std::str::from_utf8(p.as_bytes()) {
            Ok(t) => t,
            Err(_) => {
                owned = p.to_string();
                &owned
            }
        };
        self.excluded_paths.iter().any(|x| p.starts_with(x))
            || self.excludes.iter().any(|g| g.matches(text))
    }

    /// Whether a snapshot records `p`: beneath a root, and neither it nor a
    /// directory above it excluded (the walk never enters an excluded
    /// directory, so what an older snapshot recorded beneath one is not
    /// gone, just no longer looked at).
    pub fn contains(&self, p: &SysPath) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
            && !self.excludes(p)
            && !p.ancestors().iter().any(|a| self.excludes(a))
    }
}

/// Users and groups of the root (its own `/etc/passwd` and `/etc/group`,
/// never the host's).
#[derive(Debug, Default, Clone)]
pub struct Accounts {
    pub users: BTreeMap<u32, String>,
    pub groups: BTreeMap<u32, String>,
}

impl Accounts {
    pub fn load(root: &SysRoot) -> Accounts {
        fn parse(text: Option<String>) -> BTreeMap<u32, String> {
            let mut m = BTreeMap::new();
            for line in text.unwrap_or_default().lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 3 && !f[0].starts_with('#') {
                    if let Ok(id) = f[2].parse::<u32>() {
                        m.entry(id).or_insert_with(|| f[0].to_string());
                    }
                }
            }
            m
        }
        Accounts {
            users: parse(root.read_text("/etc/passwd")),
            groups: parse(root.read_text("/etc/group")),
        }
    }

    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.users.iter().find(|(_, n)| *n == name).map(|(i, _)| *i)
    }

    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(i, _)| *i)
    }
}

/// Where file content goes.
pub enum Sink<'a> {
    /// Into the store (a snapshot), which has lost these objects of the
    /// cached snapshot (see [`Store::missing_objects`]): files whose hash
    /// the cache vouches for are stored again when their object is gone.
    Store(&'a Store, &'a HashSet<String>),
    /// Hashed only (a check of the live system).
    HashOnly,
}

/// What a scan found, before it becomes a snapshot.
pub struct Capture {
    pub manifest: Manifest,
    pub new_objects: u64,
}

fn time(sec: i64, nsec: i64) -> Time {
    Time {
        sec,
        nsec: nsec as u32,
    }
}

fn kind_of_mode(mode: u32) -> FileKind {
    use rustix::fs::FileType as T;
    match T::from_raw_mode(mode) {
        T::Symlink => FileKind::Symlink,
        T::Directory => FileKind::Dir,
        T::Fifo => FileKind::Fifo,
        T::CharacterDevice => FileKind::CharDevice,
        T::BlockDevice => FileKind::BlockDevice,
        T::Socket => FileKind::Socket,
        _ => FileKind::File,
    }
}

/// An entry as the walk's `lstat` saw it: no names, hashes or xattrs yet.
fn entry_from_stat(path: SysPath, st: &rustix::fs::Stat) -> Entry {
    let kind = kind_of_mode(st.st_mode);
    Entry {
        path,
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        user: None,
        group: None,
        mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
        size: if kind == FileKind::Dir {
            0
        } else {
            st.st_size as u64
        },
        blake3: None,
        target: None,
        rdev: matches!(kind, FileKind::CharDevice | FileKind::BlockDevice).then_some(st.st_rdev),
        xattrs: BTreeMap::new(),
        caps: None,
        owners: Vec::new(),
        dev: st.st_dev,
        ino: st.st_ino,
        ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
    }
}

/// Same identity as a cached entry: content and xattrs can be reused.
fn same_identity(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.dev == b.dev
        && a.ino == b.ino
        && a.size == b.size
        && a.mtime == b.mtime
        && a.ctime == b.ctime
}

fn set_xattrs(e: &mut Entry, x: BTreeMap<String, Vec<u8>>) {
    if let Some(raw) = x.get(xattr::CAPABILITY) {
        e.caps = xattr::decode_caps(raw);
    }
    e.xattrs = x.into_iter().map(|(k, v)| (k, hex::encode(v))).collect();
}

/// A scan's entries with what went wrong on the way.
struct Walked {
    entries: Vec<Entry>,
    errors: Vec<ScanError>,
    unreadable_xattrs: u64,
}

/// One getdents buffer per walker thread: big enough that most directories
/// take a single call (rustix's `Dir` starts at 768 bytes and grows slowly).
const DIRENT_BUF: usize = 32 << 10;

/// Calls `f(name, type)` for every entry of the open directory `fd` but `.`
/// and `..`; a `d_type` the filesystem does not fill in is asked of `lstat`.
fn for_each_entry(
    fd: &OwnedFd,
    buf: &mut [MaybeUninit<u8>],
    mut f: impl FnMut(&CStr, rustix::fs::FileType),
) -> std::io::Result<()> {
    use rustix::fs::FileType;
    let mut dir = rustix::fs::RawDir::new(fd, buf);
    while let Some(de) = dir.next() {
        let de = de?;
        let name = de.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let ft = match de.file_type() {
            FileType::Unknown => {
                match rustix::fs::statat(fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                }
            }
            ft => ft,
        };
        f(name, ft);
    }
    Ok(())
}

/// Walks the trees under `tops` on every core while `meanwhile` runs on the
/// calling thread (a snapshot's or check's manifest load overlaps the
/// walk). Directories go through a shared queue so the cores stay busy
/// however lopsided the tree. Each directory is opened either by name from
/// its parent's fd while that is open (`O_NOFOLLOW`), or beneath the root
/// with no symlink on the way ([`SysRoot::open_dir`]); `visit` gets its fd
/// (or why it could not be opened) and pushes the subdirectories to walk
/// next. Every worker keeps its own state
/// `S` (no lock per entry); all of them are returned.
fn walk_dirs<S: Send, T>(
    root: &SysRoot,
    tops: Vec<SysPath>,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(
            &mut S,
            &SysPath,
            Result<&OwnedFd, &std::io::Error>,
            &mut [MaybeUninit<u8>],
            &mut Vec<SysPath>,
        ) + Sync,
    meanwhile: impl FnOnce() -> T,
) -> (Vec<S>, T) {
    /// Directories waiting, some already opened relative to their parent
    /// (one name looked up instead of a path from the root), as many as
    /// [`OPEN_AHEAD`] allows: a wide tree must not run out of fds.
    struct Queue {
        dirs: Vec<(SysPath, Option<OwnedFd>)>,
        open: usize,
        busy: usize,
    }
    const OPEN_AHEAD: usize = 256;
    let queue = Mutex::new(Queue {
        dirs: tops.into_iter().map(|d| (d, None)).collect(),
        open: 0,
        busy: 0,
    });
    let wake = std::sync::Condvar::new();
    // Every thread runs this until the queue is empty and nobody is busy.
    let work = || {
        let mut state = init();
        let mut buf = vec![MaybeUninit::<u8>::uninit(); DIRENT_BUF];
        let mut subdirs = Vec::new();
        loop {
            let dir = {
                let mut q = queue.lock().expect("not poisoned");
                loop {
                    if let Some(d) = q.dirs.pop() {
                        q.busy += 1;
                        q.open -= usize::from(d.1.is_some());
                        break Some(d);
                    }
                    if q.busy == 0 {
                        break None;
                    }
                    q = wake.wait(q).expect("not poisoned");
                }
            };
            let Some((dir, fd)) = dir else {
                wake.notify_all();
                return state;
            };
            let fd = match fd {
                Some(fd) => Ok(fd),
                None => root.open_dir(&dir),
            };
            visit(&mut state, &dir, fd.as_ref(), &mut buf, &mut subdirs);
            // Open the subdirectories from this one while it is open: a
            // single name, never followed if it became a symlink meanwhile
            // (O_NOFOLLOW), so nothing can lead out of the root.
            let room = {
                let q = queue.lock().expect("not poisoned");
                OPEN_AHEAD.saturating_sub(q.open).min(64)
            };
            let mut opened: Vec<(SysPath, Option<OwnedFd>)> = subdirs
                .drain(..)
                .enumerate()
                .map(|(i, d)| {
                    let sub = match &fd {
                        Ok(parent) if i < room => rustix::fs::openat(
                            parent,
                            OsStr::from_bytes(d.file_name()),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .ok(),
                        _ => None,
                    };
                    (d, sub)
                })
                .collect();
            drop(fd);
            let mut q = queue.lock().expect("not poisoned");
            let more = !opened.is_empty();
            q.open += opened.iter().filter(|d| d.1.is_some()).count();
            q.dirs.append(&mut opened);
            q.busy -= 1;
            if more || q.busy == 0 {
                wake.notify_all();
            }
        }
    };
    // One thread per core but this one, which first runs `meanwhile` and
    // then joins the walk: more threads than cores would only take turns
    // (and a fresh thread preempting this one delays `meanwhile`).
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..cores).map(|_| s.spawn(work)).collect();
        let t = meanwhile();
        let mut states = vec![work()];
        states.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("walker panicked")),
        );
        (states, t)
    })
}

/// How a snapshot's errors name a package database that could not be read.
const PKG_ERROR: &str = "package database";

/// The scope as the walk saw it: every entry's `lstat`, nothing read yet.
/// [`capture`] completes it against the stat cache.
pub struct RawWalk {
    entries: Vec<Entry>,
    errors: Vec<ScanError>,
}

/// How a scan error begins when a directory's entries could not be read:
/// what an older snapshot recorded beneath it is not known to be gone
/// (see [`unlisted`]).
pub const UNLISTED: &str = "cannot list directory";

/// The directories `m` could not list: nothing beneath them was compared.
pub fn unlisted(m: &Manifest) -> Vec<SysPath> {
    m.errors
        .iter()
        .filter(|e| e.error.starts_with(UNLISTED))
        .map(|e| e.path.clone())
        .collect()
}

/// Walks the scope on every core while `meanwhile` runs on this thread
/// (loading the manifest the walk will be compared with). Each directory is
/// opened beneath the root without symlinks and each entry costs one
/// `lstat` relative to its directory's fd; a default scope root that is
/// absent or reached through a symlink (e.g. `/lib -> usr/lib`) is recorded
/// elsewhere or not at all. A root guard.toml includes is an error then
/// (never silently left out), and one that is a file is recorded alone.
pub fn walk_while<T>(root: &SysRoot, scope: &Scope, meanwhile: impl FnOnce() -> T) -> (RawWalk, T) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut tops = Vec::new();
    for sr in &scope.roots {
        if !scope.contains(sr) {
            continue;
        }
        let included = scope.includes.contains(sr);
        let fail = |error: String| ScanError {
            path: sr.clone(),
            error,
        };
        let (st, opened) = (root.lstat(sr), root.open_dir(sr));
        if let (Ok(st), Ok(_)) = (&st, &opened) {
            entries.push(entry_from_stat(sr.clone(), st));
            tops.push(sr.clone());
            continue;
        }
        if let Some(link) = root.symlink_on_the_way(sr) {
            if included {
                errors.push(fail(format!(
                    "included, but {link} is a symlink: guard never follows one (include what it points at)"
                )));
            }
            continue;
        }
        match (st, opened) {
            (Ok(_), Ok(_)) => {}
            (Ok(st), Err(e)) => {
                entries.push(entry_from_stat(sr.clone(), &st));
                if kind_of_mode(st.st_mode) == FileKind::Dir {
                    errors.push(fail(format!("{UNLISTED}: {e}")));
                }
            }
            (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound && !included => {}
            (Err(e), _) if included => errors.push(fail(format!(
                "included, but {}",
                crate::lowercase_first(&e.to_string())
            ))),
            (Err(e), _) => errors.push(fail(e.to_string())),
        }
    }
    let (parts, t) = walk_dirs(
        root,
        tops,
        || (Vec::with_capacity(1024), Vec::new()),
        |(found, errs): &mut (Vec<Entry>, Vec<ScanError>), dir, fd, buf, subdirs| {
            let fd = match fd {
                Ok(fd) => fd,
                Err(e) => {
                    errs.push(ScanError {
                        path: dir.clone(),
                        error: format!("{UNLISTED}: {e}"),
                    });
                    return;
                }
            };
            let res = for_each_entry(fd, buf, |name, _| {
                let path = dir.join(name.to_bytes());
                if scope.excludes(&path) {
                    return;
                }
                match rustix::fs::statat(fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => {
                        let e = entry_from_stat(path, &st);
                        if e.kind == FileKind::Dir {
                            subdirs.push(e.path.clone());
                        }
                        found.push(e);
                    }
                    Err(e) => errs.push(ScanError {
                        path,
                        error: std::io::Error::from(e).to_string(),
                    }),
                }
            });
            if let Err(e) = res {
                errs.push(ScanError {
                    path: dir.clone(),
                    error: format!("{UNLISTED}: {e}"),
                });
            }
        },
        meanwhile,
    );
    // (sized up front: a manifest's worth of entries grown by doubling
    // is ~0.5 MB copied and as many fresh pages faulted in)
    entries.reserve(parts.iter().map(|(f, _)| f.len()).sum());
    for (found, errs) in parts {
        entries.extend(found);
        errors.extend(errs);
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    (RawWalk { entries, errors }, t)
}

/// How far the clock may be past a change before the change can no longer
/// share a timestamp with a later one: the coarsest timestamps Linux keeps
/// (FAT's 2 s; ext4 with 128-byte inodes and ext3 keep whole seconds, most
/// others one clock tick).
const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// The nanoseconds of a recorded ctime that marks it "read too soon after
/// the change" (see [`settle`]): no kernel reports it, so the entry never
/// matches the stat cache and the next scan reads it again.
const RACY_NSEC: u32 = u32::MAX;

fn nanos(t: Time) -> i128 {
    i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec)
}

fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

/// Marks an entry read at `started` (before its stat) whose ctime is within
/// [`RACY_WINDOW_NS`] of it. A change in the same timestamp granule after
/// the read (a file rewritten in place twice within a second on a
/// filesystem that keeps whole seconds, or one clock tick elsewhere) would
/// leave (dev, ino, size, mtime, ctime) exactly as recorded, and the stat
/// cache would vouch for what was read before it — for good. Only once the
/// clock is past the ctime's granule does every later change get a newer
/// ctime; so an entry read sooner is recorded as it is but with a ctime
/// that never matches, and the next scan reads it again (git's "racily
/// clean" entries, smudged the same way).
fn settle(e: &mut Entry, started: Time) {
    if nanos(e.ctime) >= nanos(started) - RACY_WINDOW_NS {
        e.ctime.nsec = RACY_NSEC;
    }
}

/// Reads what the stat cache could not vouch for of an entry that is not a
/// regular file (a file's xattrs come from its open fd, see [`hash_file`]):
/// the symlink target and every xattr. Both are looked up by name from its
/// directory opened beneath the root without symlinks: a directory swapped
/// for a symlink since the walk leads nowhere, never to the host's files
/// the way a path from the root would. Unreadable xattr namespaces are
/// counted, not fatal.
fn read_details(root: &SysRoot, e: &mut Entry) -> (Vec<ScanError>, u64) {
    let path = e.path.clone();
    let fail = |what: &str, err: &dyn std::fmt::Display| ScanError {
        path: path.clone(),
        error: format!("{what}{err}"),
    };
    // `/` itself (an include of the whole root) is `.` of the root
    let (dir, name) = match e.path.parent() {
        Some(parent) => (root.open_dir(&parent), e.path.file_name()),
        None => (root.open_dir(&SysPath::root()), &b"."[..]),
    };
    let dir = match dir {
        Ok(dir) => dir,
        Err(err) => return (vec![fail("cannot open its directory: ", &err)], 0),
    };
    // (a name read from a directory never holds a NUL)
    let Ok(name) = std::ffi::CString::new(name) else {
        return (vec![fail("", &"a NUL in the name")], 0);
    };
    let mut errors = Vec::new();
    if e.kind == FileKind::Symlink {
        match rustix::fs::readlinkat(&dir, name.as_c_str(), Vec::new()) {
            Ok(t) => e.target = Some(crate::store::SysPathRaw(t.into_bytes())),
            Err(err) => errors.push(fail("", &std::io::Error::from(err))),
        }
    }
    let mut unreadable = 0;
    match xattr::read_all_at(dir.as_fd(), &name, &root.host_path(&e.path)) {
        Ok((x, n)) => {
            unreadable = n;
            set_xattrs(e, x);
        }
        Err(err) => errors.push(fail("xattrs: ", &err)),
    }
    (errors, unreadable)
}

/// What [`hash_file`] did besides hashing.
struct Hashed {
    /// The content was new to the store.
    new: bool,
    /// xattrs that could not be read (counted, not fatal).
    unreadable: u64,
    xattr_error: Option<std::io::Error>,
}

/// Reads, hashes and (for a snapshot) stores one file, and reads its
/// xattrs. The fd is opened without symlinks, and the entry's identity and
/// metadata are all taken from its fstat, before the xattrs and the content
/// are read through the same fd: what is recorded is never older than the
/// identity recorded with it. (Read the other way round, a change landing
/// in between would be recorded under the new identity with the old data,
/// and the stat cache would vouch for the old data from then on.) A file
/// swapped in since the walk is recorded as it really was read.
fn hash_file(
    root: &SysRoot,
    e: &mut Entry,
    sink: &Sink,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Hashed> {
    let started = now();
    let mut f = root
        .open_exact(&e.path)
        .with_context(|| format!("cannot open {}", e.path))?;
    let st = rustix::fs::fstat(&f)?;
    if kind_of_mode(st.st_mode) != FileKind::File {
        bail!("{} changed kind while being read", e.path);
    }
    let fresh = entry_from_stat(SysPath::root(), &st);
    e.mode = fresh.mode;
    e.uid = fresh.uid;
    e.gid = fresh.gid;
    e.mtime = fresh.mtime;
    e.size = fresh.size;
    e.dev = fresh.dev;
    e.ino = fresh.ino;
    e.ctime = fresh.ctime;
    let (unreadable, xattr_error) = match xattr::read_all_fd(&f) {
        Ok((x, n)) => {
            set_xattrs(e, x);
            (n, None)
        }
        Err(err) => (0, Some(err)),
    };
    let (hash, new) = match sink {
        Sink::Store(store, _) if fresh.size > STREAM_ABOVE => {
            let (h, n, new) = store.put_reader(Counted::new(&mut f, progress))?;
            e.size = n;
            (h, new)
        }
        Sink::Store(store, _) => {
            let mut buf = Vec::with_capacity(fresh.size as usize);
            f.read_to_end(&mut buf)?;
            e.size = buf.len() as u64;
            store.put(&buf)?
        }
        Sink::HashOnly => {
            let mut h = blake3::Hasher::new();
            let n = std::io::copy(&mut Counted::new(&mut f, progress), &mut h)?;
            e.size = n;
            (h.finalize().to_hex().to_string(), false)
        }
    };
    e.blake3 = Some(hash);
    settle(e, started);
    Ok(Hashed {
        new,
        unreadable,
        xattr_error,
    })
}

/// A reader that tells `progress` how much it has read, every
/// [`Counted::EVERY`] bytes: a large file in an include is one item of the
/// hashing bar, which otherwise stood still for the 20 s a 5 GB one takes.
struct Counted<'a, R> {
    r: R,
    done: u64,
    told: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<'a, R: Read> Counted<'a, R> {
    const EVERY: u64 = 64 << 20;

    fn new(r: R, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        Counted {
            r,
            done: 0,
            told: 0,
            progress,
        }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.done += n as u64;
        if self.done - self.told >= Self::EVERY {
            self.told = self.done;
            (self.progress)(self.done);
        }
        Ok(n)
    }
}

/// Runs `f` over `items` on every core, handing out indices one by one.
pub fn parallel<T: Send>(items: &mut [T], f: impl Fn(&mut T) + Sync) {
    if items.is_empty() {
        return;
    }
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cell) = cells.get(i) else { break };
                f(&mut cell.lock().expect("not poisoned"));
            });
        }
    });
}

/// The capability ledger: every regular file under the caps roots that has
/// a `security.capability` xattr. The walk goes over every core (see
/// [`walk_dirs`]); entries' `d_type` tells regular files apart without a
/// stat, and each file costs one `getxattrat` relative to its directory (see
/// [`xattr::capability_at`]). Symlinks like `/bin -> usr/bin` are never
/// walked through.
pub fn caps_ledger(root: &SysRoot) -> (Vec<CapEntry>, Vec<ScanError>) {
    let mut tops: Vec<SysPath> = CAPS_ROOTS.iter().map(SysPath::new).collect();
    tops.extend(
        root.list_dir(&SysPath::root())
            .into_iter()
            .filter(|n| n.starts_with(b"lib"))
            .map(|n| SysPath::root().join(n)),
    );
    let (parts, ()) = walk_dirs(
        root,
        tops,
        || (Vec::new(), Vec::new()),
        |(found, errs): &mut (Vec<CapEntry>, Vec<ScanError>), dir, fd, buf, subdirs| {
            use rustix::fs::FileType;
            // absent, or a symlink: nothing to record
            let Ok(fd) = fd else { return };
            let host = root.host_path(dir);
            let _ = for_each_entry(fd, buf, |name, ft| match ft {
                FileType::Directory => subdirs.push(dir.join(name.to_bytes())),
                FileType::RegularFile => {
                    let full = host.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                    match xattr::capability_at(fd, name, &full) {
                        Ok(None) => {}
                        Ok(Some(raw)) => {
                            let path = dir.join(name.to_bytes());
                            found.extend(cap_entry(root, fd, path, name, &raw, None));
                        }
                        Err(e) => errs.push(ScanError {
                            path: dir.join(name.to_bytes()),
                            error: e.to_string(),
                        }),
                    }
                }
                _ => {}
            });
        },
        || (),
    );
    let mut caps = Vec::new();
    let mut errors = Vec::new();
    for (c, e) in parts {
        caps.extend(c);
        errors.extend(e);
    }
    caps.sort_by(|a, b| a.path.cmp(&b.path));
    (caps, errors)
}

fn cap_entry(
    root: &SysRoot,
    dirfd: &std::os::fd::OwnedFd,
    path: SysPath,
    name: &std::ffi::CStr,
    raw: &[u8],
    known: Option<&CapEntry>,
) -> Option<CapEntry> {
    let st = rustix::fs::statat(dirfd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let mtime = time(st.st_mtime, st.st_mtime_nsec as i64);
    // Capped files are few; hashing them makes "replaced" certain. A file
    // a check finds with the recorded inode, size and mtime is the one
    // that was hashed (any write would also have dropped its caps).
    let same = known.filter(|k| {
        k.dev == st.st_dev && k.ino == st.st_ino && k.size == st.st_size as u64 && k.mtime == mtime
    });
    let blake3 = match same {
        Some(k) if k.blake3.is_some() => k.blake3.clone(),
        _ => root.open_exact(&path).ok().and_then(|mut f| {
            let mut h = blake3::Hasher::new();
            std::io::copy(&mut f, &mut h).ok()?;
            Some(h.finalize().to_hex().to_string())
        }),
    };
    Some(CapEntry {
        caps: xattr::decode_caps(raw).unwrap_or_else(|| "(undecodable)".into()),
        xattr: hex::encode(raw),
        path,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        mtime,
        dev: st.st_dev,
        ino: st.st_ino,
        blake3,
        owners: Vec::new(),
    })
}

/// Top-level directories of `base` that the live root has since turned into
/// a symlink to another directory of the root: the usr-merge (`/lib ->
/// usr/lib`, `/bin -> usr/bin`, …). The walk never follows them (it opens
/// every directory without symlinks), so what the snapshot recorded under
/// `/lib/systemd/system` or as `/bin/ping`'s capabilities now lives under
/// `/usr`; [`crate::diff::rebase`] compares it there instead of calling it
/// gone. Pairs (old, new), e.g. (`/lib`, `/usr/lib`).
pub fn merged_dirs(root: &SysRoot, base: &Manifest) -> Vec<(SysPath, SysPath)> {
    let tops: BTreeSet<SysPath> = base
        .entries
        .iter()
        .map(|e| &e.path)
        .chain(base.caps.iter().map(|c| &c.path))
        .filter_map(|p| p.ancestors().into_iter().next())
        .collect();
    tops.into_iter()
        .filter_map(|top| {
            let t = root.read_link(&top)?;
            // `usr/lib` and `/usr/lib` both mean ROOT/usr/lib; only a real
            // directory one hop away counts (never a chain, never `..`)
            if t.split(|b| *b == b'/').any(|c| c == b"..") {
                return None;
            }
            let to = SysPath::new(&t);
            (to != top && !to.starts_with(&top) && root.open_dir(&to).is_ok()).then_some((top, to))
        })
        .collect()
}

/// Units enabled through `*.wants/` and `*.requires/` links, read from the
/// unit dirs so it works on a root that is not running. Only symlinks
/// count: systemd ignores anything else there ("dependency dropin … is not
/// a symlink, ignoring"), so a unit file copied into `multi-user.target.wants/`
/// enables nothing.
pub fn enabled_units(root: &SysRoot) -> Vec<EnabledUnit> {
    let mut out = Vec::new();
    for dir in [
        "/etc/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ] {
        let d = SysPath::new(dir);
        if root.open_dir(&d).is_err() {
            continue;
        }
        for name in root.list_dir(&d) {
            let n = String::from_utf8_lossy(&name).into_owned();
            let Some(owner) = n
                .strip_suffix(".wants")
                .or_else(|| n.strip_suffix(".requires"))
            else {
                continue;
            };
            let sub = d.join(&name);
            // The links are looked at from one fd on their directory
            // (reached with no symlink on the way, as `lstat` of each
            // would): re-resolving the directory for every link cost a
            // timer snapshot ~100 `openat2`s here.
            let Ok(fd) = root.open_dir(&sub) else {
                continue;
            };
            let mut buf = vec![MaybeUninit::<u8>::uninit(); DIRENT_BUF];
            let mut links = Vec::new();
            // (reading stops at the first error, as listing the dir did)
            let _ = for_each_entry(&fd, &mut buf, |unit, ft| {
                if ft == rustix::fs::FileType::Symlink {
                    links.push(unit.to_bytes().to_vec());
                }
            });
            for unit in links {
                out.push(EnabledUnit {
                    unit: String::from_utf8_lossy(&unit).into_owned(),
                    wanted_by: owner.to_string(),
                    link: sub.join(&unit),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `/etc/os-release`, else `/usr/lib/os-release`, as key → value.
pub fn os_release(root: &SysRoot) -> BTreeMap<String, String> {
    let text = root
        .read_text("/etc/os-release")
        .or_else(|| root.read_text("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim();
            if k.is_empty() || k.starts_with('#') {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Phase timings on stderr when `GUARD_TIMINGS` is set: the profile the
/// benchmark reports.
pub struct PhaseTimer(Option<std::cell::Cell<std::time::Instant>>);

impl PhaseTimer {
    pub fn new() -> PhaseTimer {
        PhaseTimer(
            std::env::var_os("GUARD_TIMINGS")
                .map(|_| std::cell::Cell::new(std::time::Instant::now())),
        )
    }

    pub fn phase(&self, name: &str) {
        if let Some(t) = &self.0 {
            let now = std::time::Instant::now();
            crate::err_out!(
                "guard timing: {name:<12} {:>8.1} ms",
                (now - t.get()).as_secs_f64() * 1e3
            );
            t.set(now);
        }
    }
}

impl Default for PhaseTimer {
    fn default() -> Self {
        Self::new()
    }
}

/// How much of the capability ledger a scan needs.
#[derive(Clone, Copy)]
pub enum Ledger<'a> {
    /// Walk every caps root (a snapshot: newly capped files must be seen).
    Full,
    /// Probe only these recorded files: a check (`caps/lost` and
    /// `caps/changed` are about what the baseline had; walking ~100k files
    /// of /usr for them would cost far more than the whole rest of a
    /// check), and a timer snapshot carrying a full walk forward
    /// (`app::ledger_plan`).
    Only(&'a [CapEntry]),
}

/// The live state of the recorded capped files.
pub fn caps_probe(root: &SysRoot, recorded: &[CapEntry]) -> Vec<CapEntry> {
    let mut out = Vec::new();
    for c in recorded {
        let Some(parent) = c.path.parent() else {
            continue;
        };
        let Ok(fd) = root.open_dir(&parent) else {
            continue;
        };
        let Ok(name) = std::ffi::CString::new(c.path.file_name()) else {
            continue;
        };
        if let Ok(Some(raw)) = xattr::capability_at(&fd, &name, &root.host_path(&c.path)) {
            if let Some(e) = cap_entry(root, &fd, c.path.clone(), &name, &raw, Some(c)) {
                out.push(e);
            }
        }
    }
    out
}

/// Walks everything a snapshot records. `cache` is the newest snapshot.
pub fn capture(
    root: &SysRoot,
    scope: &Scope,
    raw: RawWalk,
    cache: Option<&Manifest>,
    sink: &Sink,
    ui: &dyn Ui,
    ledger: Ledger,
) -> Result<Capture> {
    let timer = PhaseTimer::new();
    let acc = Accounts::load(root);
    let cache_map: HashMap<&SysPath, &Entry> = cache
        .map(|m| m.entries.iter().map(|e| (&e.path, e)).collect())
        .unwrap_or_default();
    let RawWalk {
        mut entries,
        errors: walk_errors,
    } = raw;
    let mut w = Walked {
        entries: Vec::new(),
        errors: walk_errors,
        unreadable_xattrs: 0,
    };
    // What the cache vouches for is taken from it; the rest needs its
    // symlink target and xattrs read (`detail`) and, for files, a hash.
    let mut todo: Vec<(&mut Entry, bool)> = Vec::new();
    let lost = match sink {
        Sink::Store(_, lost) => Some(*lost),
        Sink::HashOnly => None,
    };
    for e in entries.iter_mut() {
        match cache_map.get(&e.path).filter(|c| same_identity(c, e)) {
            Some(c) => {
                e.blake3.clone_from(&c.blake3);
                e.xattrs.clone_from(&c.xattrs);
                e.caps.clone_from(&c.caps);
                e.target.clone_from(&c.target);
                // for a snapshot, an object the store lost is stored again
                let lost = match (&e.blake3, lost) {
                    (Some(h), Some(l)) => l.contains(h),
                    _ => false,
                };
                if e.kind == FileKind::File && (e.blake3.is_none() || lost) {
                    todo.push((e, false));
                }
            }
            None => todo.push((e, true)),
        }
    }
    timer.phase("stat cache");

    // Read and hash the rest on every core.
    let hashing = todo
        .iter()
        .filter(|(e, _)| e.kind == FileKind::File)
        .count();
    let bar = ui.progress(hashing as u64, "hashing");
    let new_objects = AtomicU64::new(0);
    let unreadable = AtomicU64::new(0);
    let errors: Mutex<Vec<ScanError>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let details = |e: &mut Entry| {
        let (errs, n) = read_details(root, e);
        unreadable.fetch_add(n, Ordering::Relaxed);
        if !errs.is_empty() {
            errors.lock().unwrap().extend(errs);
        }
    };
    parallel(&mut todo, |(e, detail)| {
        if e.kind != FileKind::File {
            let started = now();
            details(e);
            settle(e, started);
            return;
        }
        e.blake3 = None;
        // a large file says how far it is, on the bar's message line
        let (path, size) = (e.path.to_string(), e.size);
        let told = |done: u64| {
            bar.set_message(&format!(
                "{path}: {} of {} MiB",
                done >> 20,
                size.max(done) >> 20
            ))
        };
        let res = hash_file(root, e, sink, &told);
        if size > STREAM_ABOVE {
            bar.set_message("");
        }
        match res {
            Ok(h) => {
                if h.new {
                    new_objects.fetch_add(1, Ordering::Relaxed);
                }
                unreadable.fetch_add(h.unreadable, Ordering::Relaxed);
                if let Some(err) = h.xattr_error {
                    errors.lock().unwrap().push(ScanError {
                        path: e.path.clone(),
                        error: format!("xattrs: {err}"),
                    });
                }
            }
            // A store that cannot be written is fatal; a file that cannot
            // be read is reported and counted.
            Err(err) if err.chain().any(|c| c.is::<crate::store::StoreWriteError>()) => {
                fatal.lock().unwrap().get_or_insert(err);
            }
            Err(err) => {
                errors.lock().unwrap().push(ScanError {
                    path: e.path.clone(),
                    error: format!("{err:#}"),
                });
                // its xattrs are still recorded, read without opening it
                if *detail {
                    let started = now();
                    details(e);
                    settle(e, started);
                }
            }
        }
        bar.inc(1);
    });
    drop(todo);
    // (names after hashing: a file's owner is the one its fstat saw)
    for e in entries.iter_mut() {
        e.user = acc.users.get(&e.uid).cloned();
        e.group = acc.groups.get(&e.gid).cloned();
    }
    w.entries = entries;
    w.unreadable_xattrs = unreadable.into_inner();
    bar.finish();
    if let Some(e) = fatal.into_inner().unwrap() {
        return Err(e);
    }
    w.errors.extend(errors.into_inner().unwrap());
    timer.phase("hash+store");

    // Same database as the cached snapshot: its packages and its owners
    // are still true, taken from it without reading the database again —
    // if that snapshot read the database cleanly and recorded every path
    // wanted now (known once the ledger is walked). (A path it lacks, e.g.
    // one a restore put back since, would otherwise be taken for an
    // admin's own file.)
    let mut stamp = pkg::stamp(root);
    let same_db = |c: &&Manifest| {
        !stamp.is_empty()
            && c.packages.stamp == stamp
            && !c.errors.iter().any(|e| e.error.starts_with(PKG_ERROR))
    };
    // When the cached database cannot be reused whatever the ledger finds
    // (no cache, or the databases changed: a cold or a post-upgrade
    // snapshot), the databases are read while the ledger walks, and the
    // objects stored above are synced meanwhile: reading the database
    // waits on files or on `rpm`, `syncfs` on the disk, so the cores the
    // walk leaves idle do that work and the commit has no sync left.
    let read_early = cache.filter(same_db).is_none();
    let spin = ui.spinner(if read_early {
        "capability ledger, package database"
    } else {
        "capability ledger"
    });
    let ((caps, cap_errors), early_dbs, synced) = std::thread::scope(|s| {
        let early = read_early.then(|| s.spawn(|| pkg::read_dbs(root)));
        let sync = match sink {
            Sink::Store(store, _) if store.has_unsynced() => Some(s.spawn(|| store.sync_objects())),
            _ => None,
        };
        let found = match ledger {
            Ledger::Full => caps_ledger(root),
            Ledger::Only(recorded) => (caps_probe(root, recorded), Vec::new()),
        };
        fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        }
        (found, early.map(join), sync.map(join))
    });
    spin.finish();
    synced.transpose()?;
    w.errors.extend(cap_errors);
    timer.phase("caps ledger");

    let spin = ui.spinner("package database");
    let wanted: HashSet<&SysPath> = w
        .entries
        .iter()
        .map(|e| &e.path)
        .chain(caps.iter().map(|c| &c.path))
        .collect();
    let reuse = cache.filter(same_db).filter(|c| {
        let cached_caps: HashSet<&SysPath> = c.caps.iter().map(|k| &k.path).collect();
        wanted
            .iter()
            .all(|p| cache_map.contains_key(p) || cached_caps.contains(p))
    });
    let pk = match (reuse, early_dbs) {
        (Some(c), _) => pkg::PackageInfo {
            packages: c.packages.clone(),
            ..Default::default()
        },
        (None, Some(dbs)) => pkg::assemble(root, dbs, Some(&wanted)),
        (None, None) => pkg::assemble(root, pkg::read_dbs(root), Some(&wanted)),
    };
    // A database that is present but unreadable: its paths look unowned.
    w.errors.extend(pk.errors.iter().map(|e| ScanError {
        path: SysPath::root(),
        error: format!("{PKG_ERROR}: {e}"),
    }));
    // A read that failed is never reused: the next snapshot reads again.
    if w.errors.iter().any(|e| e.error.starts_with(PKG_ERROR)) {
        stamp.clear();
    }
    spin.finish();
    timer.phase("packages");

    let mut m = Manifest {
        version: crate::store::FORMAT_VERSION,
        id: String::new(),
        created: String::new(),
        kind: crate::store::SnapshotKind::Manual,
        label: None,
        root: root.path().display().to_string(),
        guard_version: env!("CARGO_PKG_VERSION").to_string(),
        scope: scope.roots.clone(),
        os_release: os_release(root),
        packages: crate::store::Packages {
            stamp,
            ..pk.packages.clone()
        },
        units: enabled_units(root),
        entries: w.entries,
        caps,
        ledger_from: None,
        errors: w.errors,
        unreadable_xattrs: w.unreadable_xattrs,
        vms: Vec::new(),
        closed_above: vec![],
    };
    match reuse {
        Some(c) => {
            let cached_caps: HashMap<&SysPath, &CapEntry> =
                c.caps.iter().map(|k| (&k.path, k)).collect();
            for e in &mut m.entries {
                if let Some(k) = cache_map.get(&e.path) {
                    e.owners.clone_from(&k.owners);
                }
            }
            for k in &mut m.caps {
                if let Some(o) = cached_caps.get(&k.path) {
                    k.owners.clone_from(&o.owners);
                }
            }
        }
        None => {
            for e in &mut m.entries {
                e.owners = pk.owners_of(&e.path);
            }
            for c in &mut m.caps {
                c.owners = pk.owners_of(&c.path);
            }
        }
    }
    m.sort();
    Ok(Capture {
        manifest: m,
        new_objects: new_objects.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_wide_tree_is_walked_whole_with_a_bounded_number_of_open_dirs() {
        // more subdirectories than the walker opens ahead: the rest are
        // opened from the root when their turn comes
        let d = tempfile::tempdir().unwrap();
        for i in 0..600 {
            let dir = d.path().join(format!("etc/d{i}/sub"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f"), i.to_string()).unwrap();
        }
        let root = SysRoot::open(d.path()).unwrap();
        let scope = Scope::new(&Config::default(), None, &root).unwrap();
        let (raw, ()) = walk_while(&root, &scope, || ());
        assert!(raw.errors.is_empty(), "{:?}", raw.errors);
        let files = raw
            .entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .count();
        assert_eq!(files, 600);
        assert_eq!(raw.entries.len(), 1 + 600 * 3);
    }

    /// One scan of `r` (a snapshot when `store` is given) with `cache`.
    fn scan(r: &Path, store: Option<&Store>, cache: Option<&Manifest>) -> Manifest {
        let root = SysRoot::open(r).unwrap();
        let scope = Scope::new(&Config::default(), None, &root).unwrap();
        let ui = crate::ui::Scripted::new(Default::default());
        let lost = HashSet::default();
        let sink = match store {
            Some(s) => Sink::Store(s, &lost),
            None => Sink::HashOnly,
        };
        let (raw, ()) = walk_while(&root, &scope, || ());
        capture(&root, &scope, raw, cache, &sink, &ui, Ledger::Full)
            .unwrap()
            .manifest
    }

    #[test]
    fn an_entry_read_within_its_ctime_granule_is_read_again_next_time() {
        // A file rewritten in place in the same timestamp granule as the
        // read keeps (dev, ino, size, mtime, ctime): the hash recorded must
        // not be vouched for by the stat cache. Simulated here by a cached
        // hash and xattrs from before such a rewrite.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/d")).unwrap();
        std::fs::write(d.path().join("etc/app.conf"), "port = 2\n").unwrap();
        let mut cache = scan(d.path(), None, None);
        let path = SysPath::new("/etc/app.conf");
        let e = cache.entries.iter_mut().find(|e| e.path == path).unwrap();
        let good = e.blake3.clone();
        e.blake3 = Some(blake3::hash(b"port = 1\n").to_hex().to_string());
        let dir = SysPath::new("/etc/d");
        let e = cache.entries.iter_mut().find(|e| e.path == dir).unwrap();
        e.xattrs.insert("user.stale".into(), "00".into());
        let again = scan(d.path(), None, Some(&cache));
        assert_eq!(again.entry(&path).unwrap().blake3, good);
        assert!(again.entry(&dir).unwrap().xattrs.is_empty());

        // read well after its last change: the cache may vouch for it
        let mut e = again.entry(&path).unwrap().clone();
        let ctime = Time {
            sec: 1_700_000_000,
            nsec: 5,
        };
        e.ctime = ctime;
        settle(
            &mut e,
            Time {
                sec: ctime.sec + 3,
                nsec: 0,
            },
        );
        assert_eq!(e.ctime, ctime);
        settle(
            &mut e,
            Time {
                sec: ctime.sec + 1,
                nsec: ctime.nsec,
            },
        );
        assert_eq!(e.ctime.nsec, RACY_NSEC);
    }

    #[test]
    fn guard_toml_errors_are_one_line_that_says_where() {
        let err = |text: &str| format!("{:#}", Config::parse(text).unwrap_err());
        let e = err("version = 1\ninclude = [\"/srv\"\n");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains("guard.toml line 3, column 1:"), "{e}");
        let e = err("version = 1\nincludes = [\"/srv\"]\n");
        assert!(
            e.contains("line 2") && e.contains("unknown field `includes`"),
            "{e}"
        );
        assert!(err("include = []\n").contains("missing field `version`"));
        for bad in ["srv", "/srv/../etc", "/srv/./x"] {
            let e = err(&format!("version = 1\ninclude = [\"{bad}\"]\n"));
            assert!(e.contains("must be an absolute path"), "{e}");
            let e = err(&format!("version = 1\nexclude = [\"{bad}\"]\n"));
            assert!(e.contains("must be an absolute path"), "{e}");
        }
        for all in ["/etc", "/etc/", "/*", "/**", "/e*"] {
            let e = err(&format!("version = 1\nexclude = [\"{all}\"]\n"));
            assert!(e.contains("would leave all of /etc out"), "{e}");
        }
        let cfg = Config::parse("version = 1\nexclude = [\"/etc/app/\"]\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let scope = Scope::new(&cfg, None, &root).unwrap();
        assert!(
            scope.excludes(&SysPath::new("/etc/app")),
            "a trailing / is ignored"
        );
    }

    #[test]
    fn what_lies_beneath_an_excluded_directory_is_out_of_scope() {
        // The walk never enters it, so what an older snapshot recorded
        // there is not gone (no file/vanished, no restore --vanished).
        let cfg = Config {
            version: 1,
            exclude: vec!["/etc/app/cache".into(), "/usr/*".into()],
            ..Default::default()
        };
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let scope = Scope::new(&cfg, None, &root).unwrap();
        assert!(!scope.contains(&SysPath::new("/etc/app/cache")));
        assert!(!scope.contains(&SysPath::new("/etc/app/cache/x/y")));
        assert!(scope.contains(&SysPath::new("/etc/app/cached")));
        assert!(!scope.contains(&SysPath::new("/usr/lib/pam.d/login")));
        assert!(scope.contains(&SysPath::new("/etc/passwd")));
    }

    #[test]
    fn includes_that_cannot_be_walked_are_errors_and_a_file_is_recorded() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["etc", "srv/app", "usr/lib/systemd/system"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("srv/app/a.conf"), "a").unwrap();
        std::fs::write(r.join("srv/single.conf"), "s").unwrap();
        std::os::unix::fs::symlink("/tmp", r.join("srv/out")).unwrap();
        std::os::unix::fs::symlink("srv", r.join("lnk")).unwrap();
        // the usr-merge: /lib/systemd/system is reached through /lib
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        let cfg = Config {
            version: 1,
            include: [
                "/srv/app",
                "/srv/single.conf",
                "/srv/out",
                "/srv/missing",
                "/lnk/app",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        };
        let root = SysRoot::open(r).unwrap();
        let scope = Scope::new(&cfg, None, &root).unwrap();
        let (raw, ()) = walk_while(&root, &scope, || ());
        let paths: Vec<String> = raw.entries.iter().map(|e| e.path.to_string()).collect();
        assert!(paths.contains(&"/srv/app/a.conf".into()), "{paths:?}");
        assert!(paths.contains(&"/srv/single.conf".into()), "{paths:?}");
        let errors: BTreeMap<String, &str> = raw
            .errors
            .iter()
            .map(|e| (e.path.to_string(), e.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors["/srv/out"].contains("/srv/out is a symlink"));
        assert!(errors["/lnk/app"].contains("/lnk is a symlink"));
        assert!(errors["/srv/missing"].contains("included, but no such file"));
    }

    #[test]
    fn excludes_match_like_glob_with_the_literal_shortcut() {
        let cfg = Config {
            version: 1,
            exclude: vec![
                "/etc/cache/[ab]?.db".into(),
                "/etc/*/state".into(),
                "/etc/exact".into(),
            ],
            ..Default::default()
        };
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let scope = Scope::new(&cfg, None, &root).unwrap();
        let ex = |p: &str| scope.excludes(&SysPath::new(p));
        // built-in defaults
        assert!(ex("/etc/mtab"));
        assert!(ex("/etc/passwd.lock"));
        assert!(!ex("/etc/sub/passwd.lock"), "* never crosses a /");
        assert!(ex("/etc/pacman.d/gnupg/S.gpg-agent"));
        assert!(!ex("/etc/pacman.d/gnupg/pubring.gpg"));
        // the admin's
        assert!(ex("/etc/cache/a1.db"));
        assert!(!ex("/etc/cache/c1.db"));
        assert!(!ex("/etc/cache/a1.dbx"));
        assert!(ex("/etc/app/state"));
        assert!(!ex("/etc/app/x/state"));
        assert!(ex("/etc/exact"));
        assert!(!ex("/etc/exactly"));
        assert!(!ex("/etc/passwd"));
    }

    #[test]
    fn records_kinds_without_reading_special_files_and_caches_hashes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/pam.d")).unwrap();
        std::fs::write(r.join("etc/pam.d/imap"), "auth required pam_sss.so\n").unwrap();
        std::fs::write(r.join("etc/shadow"), "root:$6$x:1::::::\n").unwrap();
        std::fs::set_permissions(r.join("etc/shadow"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", r.join("etc/localtime")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("etc/fifo").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::write(r.join("etc/mtab"), "churn").unwrap();
        let root = SysRoot::open(r).unwrap();
        let scope = Scope::new(&Config::default(), None, &root).unwrap();
        let sd = tempfile::tempdir().unwrap();
        let store = Store::open_write(sd.path()).unwrap();
        let ui = crate::ui::Scripted::new(Default::default());
        let (raw, ()) = walk_while(&root, &scope, || ());
        let cap = capture(
            &root,
            &scope,
            raw,
            None,
            &Sink::Store(&store, &HashSet::default()),
            &ui,
            Ledger::Full,
        )
        .unwrap();
        let m = &cap.manifest;
        let get = |p: &str| m.entry(&SysPath::new(p)).unwrap();
        assert_eq!(get("/etc/pam.d/imap").kind, FileKind::File);
        assert!(get("/etc/pam.d/imap").blake3.is_some());
        assert_eq!(get("/etc/shadow").mode, 0o600);
        assert_eq!(get("/etc/fifo").kind, FileKind::Fifo);
        assert!(get("/etc/fifo").blake3.is_none());
        assert_eq!(
            get("/etc/localtime").target.as_ref().unwrap().to_string(),
            "/usr/share/zoneinfo/UTC"
        );
        assert!(
            m.entry(&SysPath::new("/etc/mtab")).is_none(),
            "default exclude"
        );
        assert_eq!(cap.new_objects, 2);

        // unchanged tree: everything comes from the cache, nothing new
        let (raw, ()) = walk_while(&root, &scope, || ());
        let again = capture(
            &root,
            &scope,
            raw,
            Some(m),
            &Sink::Store(&store, &HashSet::default()),
            &ui,
            Ledger::Full,
        )
        .unwrap();
        assert_eq!(again.new_objects, 0);
        assert_eq!(again.manifest.entries, m.entries);
    }
}
