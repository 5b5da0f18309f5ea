//! Walks the live system into manifest entries: the config scope (metadata,
//! xattrs, content hashes), the capability ledger, enabled units and
//! os-release. Content goes to a [`Sink`]: the store for a snapshot, a bare
//! hash for `check`. A stat cache (the newest snapshot) skips re-hashing
//! files whose (dev, ino, size, mtime, ctime) did not change.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use walkdir::WalkDir;

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
}

pub const CONFIG_PATH: &str = "/etc/guard/guard.toml";

impl Config {
    pub fn load(root: &SysRoot) -> Result<Config> {
        let Some(raw) = root.read_follow(&SysPath::new(CONFIG_PATH))? else {
            return Ok(Config {
                version: 1,
                ..Default::default()
            });
        };
        let text = String::from_utf8(raw).context("guard.toml is not UTF-8")?;
        let cfg: Config =
            toml::from_str(&text).map_err(|e| anyhow!("{CONFIG_PATH}: {}", e.message()))?;
        if cfg.version != 1 {
            bail!(
                "{CONFIG_PATH}: version {} is not supported (expected 1)",
                cfg.version
            );
        }
        Ok(cfg)
    }
}

/// What to walk and what to leave out.
#[derive(Debug, Clone)]
pub struct Scope {
    pub roots: Vec<SysPath>,
    excludes: Vec<glob::Pattern>,
    /// Excluded exactly (the store when it lies inside the root).
    excluded_paths: Vec<SysPath>,
}

impl Scope {
    pub fn new(cfg: &Config, store_dir: Option<&Path>, root: &SysRoot) -> Result<Scope> {
        let mut roots: Vec<SysPath> = DEFAULT_SCOPE.iter().map(SysPath::new).collect();
        for inc in &cfg.include {
            if !inc.starts_with('/') {
                bail!("{CONFIG_PATH}: include {inc:?} must be an absolute path inside the root");
            }
            roots.push(SysPath::new(inc));
        }
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
        pats.extend(cfg.exclude.iter().map(String::as_str));
        let excludes = pats
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| anyhow!("{CONFIG_PATH}: exclude {p:?}: {e}"))
            })
            .collect::<Result<_>>()?;
        let mut excluded_paths = Vec::new();
        if let Some(sd) = store_dir.and_then(|d| std::fs::canonicalize(d).ok()) {
            if let Some(p) = root.sys_path(&sd) {
                excluded_paths.push(p);
            }
        }
        Ok(Scope {
            roots: outer,
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
            || self.excludes.iter().any(|g| {
                g.matches_with(
                    text,
                    glob::MatchOptions {
                        require_literal_separator: true,
                        ..Default::default()
                    },
                )
            })
    }

    pub fn contains(&self, p: &SysPath) -> bool {
        self.roots.iter().any(|r| p.starts_with(r)) && !self.excludes(p)
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
    /// Into the store (a snapshot).
    Store(&'a Store),
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

fn kind_of(md: &Metadata) -> FileKind {
    let ft = md.file_type();
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_socket() {
        FileKind::Socket
    } else {
        FileKind::File
    }
}

fn entry_from(path: SysPath, md: &Metadata, acc: &Accounts) -> Entry {
    let kind = kind_of(md);
    Entry {
        path,
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        user: acc.users.get(&md.uid()).cloned(),
        group: acc.groups.get(&md.gid()).cloned(),
        mtime: time(md.mtime(), md.mtime_nsec()),
        size: if kind == FileKind::Dir { 0 } else { md.size() },
        blake3: None,
        target: None,
        rdev: matches!(kind, FileKind::CharDevice | FileKind::BlockDevice).then(|| md.rdev()),
        xattrs: BTreeMap::new(),
        caps: None,
        owners: Vec::new(),
        dev: md.dev(),
        ino: md.ino(),
        ctime: time(md.ctime(), md.ctime_nsec()),
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

struct Walked {
    entries: Vec<Entry>,
    errors: Vec<ScanError>,
    unreadable_xattrs: u64,
}

fn walk_scope(
    root: &SysRoot,
    scope: &Scope,
    acc: &Accounts,
    cache: &HashMap<&SysPath, &Entry>,
) -> Walked {
    // Units of work for both cores: the top level of each scope root (the
    // root itself and its direct entries), and each of its subdirectories
    // as a whole tree.
    let mut units: Vec<(PathBuf, bool, Option<Walked>)> = Vec::new();
    for sr in &scope.roots {
        // A scope root reached through a symlink (e.g. /lib -> usr/lib) is
        // recorded elsewhere or not at all: never walk through it.
        if root.open_dir(sr).is_err() {
            continue;
        }
        units.push((root.host_path(sr), false, None));
        for name in root.list_dir(sr) {
            let child = sr.join(&name);
            if !scope.excludes(&child) && root.open_dir(&child).is_ok() {
                units.push((root.host_path(&child), true, None));
            }
        }
    }
    parallel(&mut units, |(dir, recurse, out)| {
        *out = Some(walk_unit(root, scope, acc, cache, dir, *recurse));
    });
    let mut w = Walked {
        entries: Vec::new(),
        errors: Vec::new(),
        unreadable_xattrs: 0,
    };
    for (_, _, part) in units {
        let part = part.expect("every unit walked");
        w.entries.extend(part.entries);
        w.errors.extend(part.errors);
        w.unreadable_xattrs += part.unreadable_xattrs;
    }
    w.entries.sort_by(|a, b| a.path.cmp(&b.path));
    w.entries.dedup_by(|a, b| a.path == b.path);
    w
}

/// One unit of the scope walk: `dir` and its direct entries, or (with
/// `recurse`) everything beneath `dir` (whose own entry the top level has).
fn walk_unit(
    root: &SysRoot,
    scope: &Scope,
    acc: &Accounts,
    cache: &HashMap<&SysPath, &Entry>,
    dir: &Path,
    recurse: bool,
) -> Walked {
    let mut w = Walked {
        entries: Vec::new(),
        errors: Vec::new(),
        unreadable_xattrs: 0,
    };
    let mut it = WalkDir::new(dir)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(if recurse { 1 } else { 0 })
        .max_depth(if recurse { usize::MAX } else { 1 })
        .into_iter();
    while let Some(next) = it.next() {
        let de = match next {
            Ok(de) => de,
            Err(e) => {
                let p = e
                    .path()
                    .and_then(|p| root.sys_path(p))
                    .or_else(|| root.sys_path(dir))
                    .unwrap_or_else(SysPath::root);
                w.errors.push(ScanError {
                    path: p,
                    error: e.io_error().map_or(e.to_string(), |io| io.to_string()),
                });
                continue;
            }
        };
        let Some(path) = root.sys_path(de.path()) else {
            continue;
        };
        if scope.excludes(&path) {
            if de.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let md = match de.metadata() {
            Ok(md) => md,
            Err(e) => {
                w.errors.push(ScanError {
                    path,
                    error: e.to_string(),
                });
                continue;
            }
        };
        let mut e = entry_from(path, &md, acc);
        if let Some(c) = cache.get(&e.path).filter(|c| same_identity(c, &e)) {
            e.blake3 = c.blake3.clone();
            e.xattrs = c.xattrs.clone();
            e.caps = c.caps.clone();
            e.target = c.target.clone();
            w.entries.push(e);
            continue;
        }
        if e.kind == FileKind::Symlink {
            match std::fs::read_link(de.path()) {
                Ok(t) => {
                    e.target = Some(crate::store::SysPathRaw(t.as_os_str().as_bytes().to_vec()))
                }
                Err(err) => w.errors.push(ScanError {
                    path: e.path.clone(),
                    error: err.to_string(),
                }),
            }
        }
        match xattr::read_all_path(de.path()) {
            Ok((x, unreadable)) => {
                w.unreadable_xattrs += unreadable;
                set_xattrs(&mut e, x);
            }
            Err(err) => w.errors.push(ScanError {
                path: e.path.clone(),
                error: format!("xattrs: {err}"),
            }),
        }
        w.entries.push(e);
    }
    w
}

/// Reads, hashes and (for a snapshot) stores one file. The fd is opened
/// without symlinks and its fstat is authoritative over the walk's lstat, so
/// a file swapped in between is recorded as it really was read.
fn hash_file(root: &SysRoot, e: &mut Entry, sink: &Sink) -> Result<bool> {
    let mut f = root
        .open_exact(&e.path)
        .with_context(|| format!("cannot open {}", e.path))?;
    let md = f.metadata()?;
    if !md.is_file() {
        bail!("{} changed kind while being read", e.path);
    }
    if md.ino() != e.ino || md.ctime() != e.ctime.sec || md.ctime_nsec() as u32 != e.ctime.nsec {
        e.ino = md.ino();
        e.size = md.size();
        e.mode = md.mode() & 0o7777;
        e.mtime = time(md.mtime(), md.mtime_nsec());
        e.ctime = time(md.ctime(), md.ctime_nsec());
    }
    let (hash, new) = match sink {
        Sink::Store(store) if md.size() > STREAM_ABOVE => {
            let (h, n, new) = store.put_reader(&mut f)?;
            e.size = n;
            (h, new)
        }
        Sink::Store(store) => {
            let mut buf = Vec::with_capacity(md.size() as usize);
            f.read_to_end(&mut buf)?;
            e.size = buf.len() as u64;
            store.put(&buf)?
        }
        Sink::HashOnly => {
            let mut h = blake3::Hasher::new();
            let n = std::io::copy(&mut f, &mut h)?;
            e.size = n;
            (h.finalize().to_hex().to_string(), false)
        }
    };
    e.blake3 = Some(hash);
    Ok(new)
}

/// Runs `f` over `items` on every core, handing out indices one by one.
pub fn parallel<T: Send>(items: &mut [T], f: impl Fn(&mut T) + Sync) {
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
/// a `security.capability` xattr. Directories go through a shared queue so
/// both cores stay busy however lopsided the tree; each is opened relative to
/// its parent's fd-resolved path without following symlinks, its entries'
/// `d_type` tells regular files apart without a stat, and each file costs one
/// `getxattrat` (see [`xattr::capability_at`]).
pub fn caps_ledger(root: &SysRoot, acc: &Accounts) -> (Vec<CapEntry>, Vec<ScanError>) {
    let _ = acc;
    let mut tops: Vec<SysPath> = CAPS_ROOTS.iter().map(SysPath::new).collect();
    tops.extend(
        root.list_dir(&SysPath::root())
            .into_iter()
            .filter(|n| n.starts_with(b"lib"))
            .map(|n| SysPath::root().join(n)),
    );
    struct Queue {
        dirs: Vec<SysPath>,
        busy: usize,
    }
    let queue = Mutex::new(Queue {
        dirs: tops,
        busy: 0,
    });
    let wake = std::sync::Condvar::new();
    let found: Mutex<Vec<CapEntry>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<ScanError>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let dir = {
                    let mut q = queue.lock().unwrap();
                    loop {
                        if let Some(d) = q.dirs.pop() {
                            q.busy += 1;
                            break Some(d);
                        }
                        if q.busy == 0 {
                            break None;
                        }
                        q = wake.wait(q).unwrap();
                    }
                };
                let Some(dir) = dir else {
                    wake.notify_all();
                    return;
                };
                let mut subdirs = Vec::new();
                ledger_dir(root, &dir, &mut subdirs, &found, &errors);
                let mut q = queue.lock().unwrap();
                q.dirs.extend(subdirs);
                q.busy -= 1;
                wake.notify_all();
            });
        }
    });
    let mut caps = found.into_inner().unwrap();
    caps.sort_by(|a, b| a.path.cmp(&b.path));
    (caps, errors.into_inner().unwrap())
}

/// One directory of the ledger walk: files probed, subdirectories queued.
fn ledger_dir(
    root: &SysRoot,
    dir: &SysPath,
    subdirs: &mut Vec<SysPath>,
    found: &Mutex<Vec<CapEntry>>,
    errors: &Mutex<Vec<ScanError>>,
) {
    use rustix::fs::FileType;
    // Absent, or a symlink like /bin -> usr/bin: never walked through.
    let Ok(fd) = root.open_dir(dir) else { return };
    let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
        return;
    };
    let host = root.host_path(dir);
    for de in entries.flatten() {
        let name = de.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let ft = match de.file_type() {
            FileType::Unknown => {
                match rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                }
            }
            ft => ft,
        };
        match ft {
            FileType::Directory => subdirs.push(dir.join(bytes)),
            FileType::RegularFile => {
                let full = host.join(std::ffi::OsStr::from_bytes(bytes));
                match xattr::capability_at(&fd, name, &full) {
                    Ok(None) => {}
                    Ok(Some(raw)) => {
                        if let Some(c) = cap_entry(root, &fd, dir.join(bytes), name, &raw) {
                            found.lock().unwrap().push(c);
                        }
                    }
                    Err(e) => errors.lock().unwrap().push(ScanError {
                        path: dir.join(bytes),
                        error: e.to_string(),
                    }),
                }
            }
            _ => {}
        }
    }
}

fn cap_entry(
    root: &SysRoot,
    dirfd: &std::os::fd::OwnedFd,
    path: SysPath,
    name: &std::ffi::CStr,
    raw: &[u8],
) -> Option<CapEntry> {
    let st = rustix::fs::statat(dirfd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    // Capped files are few; hashing them makes "replaced" certain.
    let blake3 = root.open_exact(&path).ok().and_then(|mut f| {
        let mut h = blake3::Hasher::new();
        std::io::copy(&mut f, &mut h).ok()?;
        Some(h.finalize().to_hex().to_string())
    });
    Some(CapEntry {
        caps: xattr::decode_caps(raw).unwrap_or_else(|| "(undecodable)".into()),
        xattr: hex::encode(raw),
        path,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
        dev: st.st_dev,
        ino: st.st_ino,
        blake3,
        owners: Vec::new(),
    })
}

/// Units enabled through `*.wants/` and `*.requires/` links, read from the
/// unit dirs so it works on a root that is not running.
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
            for unit in root.list_dir(&sub) {
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
            eprintln!(
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
    /// Probe only these recorded files (a check: `caps/lost` and
    /// `caps/changed` are about what the baseline had; walking ~100k files
    /// of /usr for them would cost far more than the whole rest of a check).
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
            if let Some(e) = cap_entry(root, &fd, c.path.clone(), &name, &raw) {
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
    let spin = ui.spinner("walking the configuration");
    let mut w = walk_scope(root, scope, &acc, &cache_map);
    spin.finish();
    timer.phase("walk");

    // Hash what the cache could not vouch for (and, for a snapshot, what
    // the store lost), in parallel.
    let store = match sink {
        Sink::Store(s) => Some(*s),
        Sink::HashOnly => None,
    };
    let mut todo: Vec<&mut Entry> = w
        .entries
        .iter_mut()
        .filter(|e| {
            e.kind == FileKind::File
                && match (&e.blake3, store) {
                    (None, _) => true,
                    (Some(h), Some(s)) => !s.has_object(h),
                    (Some(_), None) => false,
                }
        })
        .collect();
    let bar = ui.progress(todo.len() as u64, "hashing");
    let new_objects = AtomicU64::new(0);
    let errors: Mutex<Vec<ScanError>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    parallel(&mut todo, |e| {
        e.blake3 = None;
        match hash_file(root, e, sink) {
            Ok(new) => {
                if new {
                    new_objects.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A store that cannot be written is fatal; a file that cannot
            // be read is reported and counted.
            Err(err) if err.to_string().contains("store") => {
                fatal.lock().unwrap().get_or_insert(err);
            }
            Err(err) => errors.lock().unwrap().push(ScanError {
                path: e.path.clone(),
                error: format!("{err:#}"),
            }),
        }
        bar.inc(1);
    });
    bar.finish();
    if let Some(e) = fatal.into_inner().unwrap() {
        return Err(e);
    }
    w.errors.extend(errors.into_inner().unwrap());
    timer.phase("hash+store");

    let spin = ui.spinner("capability ledger");
    let (caps, cap_errors) = match ledger {
        Ledger::Full => caps_ledger(root, &acc),
        Ledger::Only(recorded) => (caps_probe(root, recorded), Vec::new()),
    };
    spin.finish();
    w.errors.extend(cap_errors);
    timer.phase("caps ledger");

    let spin = ui.spinner("package database");
    let stamp = pkg::stamp(root);
    let reuse = cache.filter(|c| !stamp.is_empty() && c.packages.stamp == stamp);
    let wanted: std::collections::HashSet<&SysPath> = w
        .entries
        .iter()
        .map(|e| &e.path)
        .chain(caps.iter().map(|c| &c.path))
        .collect();
    let pk = match reuse {
        Some(c) => pkg::PackageInfo::from_manifest(c),
        None => pkg::read_for(root, Some(&wanted)),
    }
    .unwrap_or_else(|e| {
        w.errors.push(ScanError {
            path: SysPath::root(),
            error: format!("package database: {e:#}"),
        });
        pkg::PackageInfo::default()
    });
    // A database that is present but unreadable: its paths look unowned.
    w.errors.extend(pk.errors.iter().map(|e| ScanError {
        path: SysPath::root(),
        error: format!("package database: {e}"),
    }));
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
        errors: w.errors,
        unreadable_xattrs: w.unreadable_xattrs,
        vms: Vec::new(),
    };
    for e in &mut m.entries {
        e.owners = pk.owners_of(&e.path);
    }
    for c in &mut m.caps {
        c.owners = pk.owners_of(&c.path);
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
        let ui = crate::ui::Scripted::new(Default::default(), false);
        let cap = capture(&root, &scope, None, &Sink::Store(&store), &ui, Ledger::Full).unwrap();
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
        let again = capture(
            &root,
            &scope,
            Some(m),
            &Sink::Store(&store),
            &ui,
            Ledger::Full,
        )
        .unwrap();
        assert_eq!(again.new_objects, 0);
        assert_eq!(again.manifest.entries, m.entries);
    }
}
