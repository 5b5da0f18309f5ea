//! Paths inside `--root`, and opening them without ever following a symlink
//! out of it.
//!
//! Every path guard shows or records is a [`SysPath`]: absolute as seen
//! *inside* the root (`/etc/pam.d/imap`), raw bytes so names that are not
//! UTF-8 round-trip. [`SysRoot`] holds an fd on the root directory and opens
//! paths relative to it with `openat2`: `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
//! for anything guard writes or records (a symlink anywhere on the way is an
//! error, not a detour), `RESOLVE_IN_ROOT` for reading live configuration the
//! way the system itself would (absolute symlinks resolve inside the root).
//!
//! `openat2` came with Linux 5.6. The systems guard is for are often older
//! (Leap 42.3 runs 4.4, Leap 15.0-15.3 4.12 and 5.3, an Arch box left alone
//! for years, Debian 10 4.19), and a container's seccomp profile may refuse
//! it: there [`open_at`] resolves the path itself, one component at a time
//! from the held directory fd, each opened `O_PATH | O_NOFOLLOW` and looked
//! at before it is used, with the same answers (`ELOOP` for a symlink where
//! none may be, `EXDEV` for `..` beneath, symlinks re-rooted inside).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An absolute path inside the root, as raw bytes (`/etc/pam.d/imap`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysPath(Vec<u8>);

impl SysPath {
    /// Builds a path from bytes; a missing leading `/` is added, trailing `/`
    /// and `//` runs are folded so lookups compare equal.
    pub fn new(bytes: impl AsRef<[u8]>) -> SysPath {
        let mut out = Vec::with_capacity(bytes.as_ref().len() + 1);
        for part in bytes.as_ref().split(|b| *b == b'/') {
            if part.is_empty() || part == b"." {
                continue;
            }
            out.push(b'/');
            out.extend_from_slice(part);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        SysPath(out)
    }

    pub fn root() -> SysPath {
        SysPath(b"/".to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The path relative to the root (`etc/pam.d/imap`), for `openat`.
    pub fn relative(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0[1..]))
    }

    pub fn is_root(&self) -> bool {
        self.0 == b"/"
    }

    pub fn join(&self, name: impl AsRef<[u8]>) -> SysPath {
        let mut v = self.0.clone();
        if v != b"/" {
            v.push(b'/');
        }
        v.extend_from_slice(name.as_ref());
        SysPath::new(v)
    }

    pub fn parent(&self) -> Option<SysPath> {
        if self.is_root() {
            return None;
        }
        let i = self.0.iter().rposition(|b| *b == b'/').unwrap_or(0);
        Some(SysPath::new(&self.0[..i]))
    }

    pub fn file_name(&self) -> &[u8] {
        let i = self.0.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
        &self.0[i..]
    }

    /// True when `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &SysPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.get(other.0.len()) == Some(&b'/'))
    }

    /// Every ancestor from the top down, excluding `/` and `self`.
    pub fn ancestors(&self) -> Vec<SysPath> {
        let mut out = Vec::new();
        let mut p = self.parent();
        while let Some(q) = p {
            if q.is_root() {
                break;
            }
            p = q.parent();
            out.push(q);
        }
        out.reverse();
        out
    }

    /// The extension-like suffix after the last `.` of the file name.
    pub fn lossy(&self) -> String {
        self.to_string()
    }
}

/// Writes bytes that are not UTF-8 as `\xNN` (DESIGN §2), and so the bytes
/// of a control character too (a newline or an escape sequence in a file
/// name): a name is shown on one line as it is, and one named
/// `z\n  write /etc/shadow` cannot add a line to a restore plan or a
/// report.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if valid.chars().any(char::is_control) {
            for c in valid.chars() {
                if c.is_control() {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        s.push_str(&format!("\\x{b:02x}"));
                    }
                } else {
                    s.push(c);
                }
            }
        } else {
            s.push_str(valid);
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

impl fmt::Display for SysPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

impl fmt::Debug for SysPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl From<&str> for SysPath {
    fn from(s: &str) -> Self {
        SysPath::new(s)
    }
}

/// Raw bytes in JSON: a plain string when they are UTF-8, else
/// `{"hex": "…"}`, so the manifest stays readable and every name
/// round-trips exactly. Shared by paths and symlink targets.
pub mod bytes_serde {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex::encode(bytes))?;
                m.end()
            }
        }
    }

    /// A visitor rather than an untagged enum: untagged enums buffer every
    /// value first, and a manifest has a path per entry.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path string or {\"hex\": \"…\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Vec<u8>, E> {
                Ok(v.into_bytes())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = None;
                while let Some(k) = m.next_key::<String>()? {
                    if k != "hex" || out.is_some() {
                        return Err(serde::de::Error::unknown_field(&k, &["hex"]));
                    }
                    let h: String = m.next_value()?;
                    out = Some(hex::decode(h).map_err(serde::de::Error::custom)?);
                }
                out.ok_or_else(|| serde::de::Error::missing_field("hex"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for SysPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        bytes_serde::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for SysPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bytes_serde::deserialize(d).map(SysPath)
    }
}

/// The system guard looks after: a directory and an fd on it.
#[derive(Debug)]
pub struct SysRoot {
    path: PathBuf,
    fd: OwnedFd,
}

/// How [`open_at`] resolves a path beneath a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// No symlink anywhere on the way, the last component included, and no
    /// `..`: `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`. What guard records and
    /// writes.
    Exact,
    /// As the system inside the directory would see it: symlinks followed,
    /// an absolute target and `..` kept inside it (`RESOLVE_IN_ROOT`).
    InRoot,
}

/// Set once `openat2` turned out to be missing (ENOSYS) or refused by a
/// seccomp filter: every later open resolves in user space at once.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` beneath the directory `base` the way `how` says. `CLOEXEC`
/// always; `mode` only counts with `CREATE` or `TMPFILE`. See the top of
/// this file for the kernels without `openat2`.
pub fn open_at(
    base: BorrowedFd,
    rel: &Path,
    how: Resolve,
    oflags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let flags = match how {
            Resolve::Exact => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            Resolve::InRoot => ResolveFlags::IN_ROOT,
        } | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(base, rel, oflags | OFlags::CLOEXEC, mode, flags) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // a seccomp filter's answer, or this open's own (O_NOATIME on
            // another's file): a plain openat2 of the directory tells
            Err(Errno::PERM)
                if rustix::fs::openat2(
                    base,
                    ".",
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::empty(),
                )
                .is_err() =>
            {
                NO_OPENAT2.store(true, Ordering::Relaxed)
            }
            r => return r.map_err(io::Error::from),
        }
    }
    walk_at(base, rel.as_os_str().as_bytes(), how, oflags, mode)
}

/// [`open_at`] without `openat2`. Each component is opened `O_PATH |
/// O_NOFOLLOW` relative to the directory before it and looked at (fstat)
/// before anything goes through it, so a symlink swapped in mid-walk is
/// seen, never followed; the last one is opened for real with `O_NOFOLLOW`,
/// so a swap there fails (`ELOOP`) instead of leading elsewhere.
pub(crate) fn walk_at(
    base: BorrowedFd,
    rel: &[u8],
    how: Resolve,
    oflags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    use rustix::fs::FileType;
    use std::collections::VecDeque;
    // as openat2 answers: an absolute path is not beneath anything
    if how == Resolve::Exact && rel.first() == Some(&b'/') {
        return Err(Errno::XDEV.into());
    }
    let parts = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut todo: VecDeque<Vec<u8>> = parts(rel).into();
    // the directories entered below `base`: `..` steps back one
    let mut stack: Vec<OwnedFd> = Vec::new();
    // the directory reached so far, opened itself (a path that ends there)
    let this_dir = |stack: &[OwnedFd]| -> io::Result<OwnedFd> {
        let here = stack.last().map_or(base, |d| d.as_fd());
        Ok(rustix::fs::openat(
            here,
            ".",
            oflags | OFlags::CLOEXEC,
            mode,
        )?)
    };
    // the last component opened for real, never through a link (one
    // swapped in since it was looked at fails with ELOOP)
    let open_last = |here: BorrowedFd, name: &OsStr| -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            here,
            name,
            oflags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )?)
    };
    if todo.is_empty() {
        return this_dir(&stack);
    }
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let last = todo.is_empty();
        if name == b".." {
            // back to the directory this walk entered from (never the
            // physical parent of one moved meanwhile: still beneath);
            // above `base` is refused (Exact) or `base` itself (InRoot,
            // as in a chroot)
            if stack.pop().is_none() && how == Resolve::Exact {
                return Err(Errno::XDEV.into());
            }
            if last {
                return this_dir(&stack);
            }
            continue;
        }
        let here = stack.last().map_or(base, |d| d.as_fd());
        let name = OsStr::from_bytes(&name);
        let fd = match rustix::fs::openat(
            here,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // nothing there yet: the last one may be created
            Err(Errno::NOENT) if last && oflags.contains(OFlags::CREATE) => {
                return open_last(here, name);
            }
            Err(e) => return Err(e.into()),
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind == FileType::Symlink {
            // O_NOFOLLOW on the last one: the link itself, or as the
            // kernel answers (ENOTDIR where a directory was asked for)
            let keep = last && oflags.contains(OFlags::NOFOLLOW);
            if keep && oflags.contains(OFlags::DIRECTORY) {
                return Err(Errno::NOTDIR.into());
            }
            if keep && oflags.contains(OFlags::PATH) {
                return Ok(fd);
            }
            if how == Resolve::Exact || keep {
                return Err(Errno::LOOP.into());
            }
            links += 1;
            if links > 40 {
                return Err(Errno::LOOP.into());
            }
            let target = rustix::fs::readlinkat(&fd, "", Vec::new())?.into_bytes();
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            for c in parts(&target).into_iter().rev() {
                todo.push_front(c);
            }
            if todo.is_empty() {
                // a link to `/` (or to `.`): the directory reached so far
                return this_dir(&stack);
            }
            continue;
        }
        if !last {
            if kind != FileType::Directory {
                return Err(Errno::NOTDIR.into());
            }
            stack.push(fd);
            continue;
        }
        if oflags.contains(OFlags::PATH) {
            if oflags.contains(OFlags::DIRECTORY) && kind != FileType::Directory {
                return Err(Errno::NOTDIR.into());
            }
            return Ok(fd);
        }
        return open_last(here, name);
    }
    unreachable!("the loop returns at the last component")
}

fn resolve(flags: Resolve, root: &OwnedFd, rel: &Path, oflags: OFlags) -> io::Result<OwnedFd> {
    open_at(root.as_fd(), rel, flags, oflags, Mode::empty())
}

impl SysRoot {
    pub fn open(path: &Path) -> Result<SysRoot> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open root {}", path.display()))?;
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("cannot resolve root {}", path.display()))?;
        Ok(SysRoot { path, fd })
    }

    /// The root as the host sees it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `ROOT/rel` on the host, for tools that take a path (`rpm --root`) and
    /// for walking. Never used to write: writes go through [`Self::open_dir`].
    pub fn host_path(&self, p: &SysPath) -> PathBuf {
        let mut out = self.path.clone().into_os_string().into_vec();
        if out.last() == Some(&b'/') {
            out.pop();
        }
        out.extend_from_slice(p.as_bytes());
        PathBuf::from(OsString::from_vec(out))
    }

    /// Turns a host path under the root back into a [`SysPath`].
    pub fn sys_path(&self, host: &Path) -> Option<SysPath> {
        host.strip_prefix(&self.path)
            .ok()
            .map(|r| SysPath::new(r.as_os_str().as_bytes()))
    }

    /// Opens a file for reading; no symlink anywhere on the way, including the
    /// last component. This is what snapshots record.
    pub fn open_exact(&self, p: &SysPath) -> io::Result<File> {
        resolve(
            Resolve::Exact,
            &self.fd,
            p.relative(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        )
        .map(File::from)
    }

    /// Opens a file the way the system would see it: symlinks are followed
    /// but resolved inside the root (an absolute target means ROOT/target).
    pub fn open_follow(&self, p: &SysPath) -> io::Result<File> {
        let f = resolve(
            Resolve::InRoot,
            &self.fd,
            p.relative(),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        )?;
        let st = rustix::fs::fstat(&f)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(File::from(f))
    }

    /// Reads live configuration as the system would (see [`Self::open_follow`]).
    /// `Ok(None)` when the file does not exist. A file larger than
    /// [`READ_MAX`] is not read (`InvalidData`): configuration and the logs
    /// the checks look at are far smaller, and a guarded root can hold a
    /// sparse 6 GiB "drop-in" that would otherwise be read whole into
    /// memory by every `check`.
    pub fn read_follow(&self, p: &SysPath) -> io::Result<Option<Vec<u8>>> {
        match self.open_follow(p) {
            Ok(f) => {
                let too_big = || {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("larger than {} MiB: not read", READ_MAX >> 20),
                    )
                };
                if f.metadata()?.len() > READ_MAX {
                    return Err(too_big());
                }
                // (and should it grow while read)
                let mut buf = Vec::new();
                f.take(READ_MAX + 1).read_to_end(&mut buf)?;
                if buf.len() as u64 > READ_MAX {
                    return Err(too_big());
                }
                Ok(Some(buf))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Self::read_follow`], as text (lossy).
    pub fn read_text(&self, p: impl Into<SysPath>) -> Option<String> {
        self.read_follow(&p.into())
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Opens a directory for writing into; no symlink anywhere on the way.
    pub fn open_dir(&self, p: &SysPath) -> io::Result<OwnedFd> {
        resolve(
            Resolve::Exact,
            &self.fd,
            p.relative(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW,
        )
    }

    /// `lstat` of a path inside the root; the parent is reached without
    /// symlinks, the last component is not followed.
    pub fn lstat(&self, p: &SysPath) -> io::Result<rustix::fs::Stat> {
        if p.is_root() {
            return Ok(rustix::fs::fstat(&self.fd)?);
        }
        let parent = self.open_dir(&p.parent().unwrap_or_else(SysPath::root))?;
        Ok(rustix::fs::statat(
            &parent,
            OsStr::from_bytes(p.file_name()),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// The target of a symlink inside the root (its parent reached without
    /// symlinks); `None` when `p` is not a symlink.
    pub fn read_link(&self, p: &SysPath) -> Option<Vec<u8>> {
        let parent = self.open_dir(&p.parent()?).ok()?;
        let t = rustix::fs::readlinkat(&parent, OsStr::from_bytes(p.file_name()), []).ok()?;
        Some(t.into_bytes())
    }

    /// The first of `p` and the directories above it that is a symlink.
    pub fn symlink_on_the_way(&self, p: &SysPath) -> Option<SysPath> {
        p.ancestors().into_iter().chain([p.clone()]).find(|a| {
            self.lstat(a).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
            })
        })
    }

    pub fn exists(&self, p: &SysPath) -> bool {
        self.lstat(p).is_ok()
    }

    /// Whether `p` leads to something the way the system would resolve it
    /// (symlinks followed inside the root): false for a dangling link.
    pub fn resolves(&self, p: &SysPath) -> bool {
        resolve(Resolve::InRoot, &self.fd, p.relative(), OFlags::PATH).is_ok()
    }

    /// Names in a directory of the root (followed the system's way), sorted.
    pub fn list_dir(&self, p: &SysPath) -> Vec<Vec<u8>> {
        let Ok(fd) = resolve(
            Resolve::InRoot,
            &self.fd,
            p.relative(),
            OFlags::DIRECTORY | OFlags::RDONLY,
        ) else {
            return Vec::new();
        };
        // One 32 KiB getdents buffer: rustix's `Dir` starts at 768 bytes
        // and grows slowly, which cost a unit directory of ~300 entries a
        // dozen calls. Reading stops at the first error, as before.
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 << 10];
        let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
        let mut names = Vec::new();
        while let Some(Ok(e)) = dir.next() {
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        names
    }
}

/// The most [`SysRoot::read_follow`] reads of one file.
pub const READ_MAX: u64 = 64 << 20;

/// Fails when the root is not usable at all (so commands say so at once).
pub fn check_root(path: &Path) -> Result<()> {
    let md = std::fs::metadata(path)
        .with_context(|| format!("root {} is not accessible", path.display()))?;
    if !md.is_dir() {
        bail!("root {} is not a directory", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name is shown on one line, as it is: control characters (a
    /// newline, a tab, an escape, C1) and bytes that are not UTF-8 as
    /// `\xNN`, everything else untouched.
    #[test]
    fn names_are_escaped_onto_one_line() {
        assert_eq!(escape_bytes(b"/etc/pam.d/imap"), "/etc/pam.d/imap");
        assert_eq!(
            escape_bytes("/etc/z\n  write /etc/shadow".as_bytes()),
            "/etc/z\\x0a  write /etc/shadow"
        );
        assert_eq!(escape_bytes(b"/a\tb\x1b]0;x\x07"), "/a\\x09b\\x1b]0;x\\x07");
        assert_eq!(escape_bytes("/c\u{85}é".as_bytes()), "/c\\xc2\\x85é");
        assert_eq!(escape_bytes(b"/d\xff"), "/d\\xff");
    }

    /// A sparse "config file" of 6 GiB in a guarded root is refused
    /// without being read (it took 16 s and 6 GB of memory per `check`);
    /// one of exactly the limit is read.
    #[test]
    fn a_huge_file_is_not_read_as_configuration() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/ssh/sshd_config.d")).unwrap();
        let huge = d.path().join("etc/ssh/sshd_config.d/a.conf");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(6 << 30)
            .unwrap();
        let limit = d.path().join("etc/limit");
        std::fs::File::create(&limit)
            .unwrap()
            .set_len(READ_MAX)
            .unwrap();
        let r = SysRoot::open(d.path()).unwrap();
        let t = std::time::Instant::now();
        let e = r
            .read_follow(&"/etc/ssh/sshd_config.d/a.conf".into())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(r.read_text("/etc/ssh/sshd_config.d/a.conf"), None);
        assert_eq!(
            r.read_follow(&"/etc/limit".into()).unwrap().unwrap().len() as u64,
            READ_MAX
        );
    }

    #[test]
    fn syspath_normalises_and_relates() {
        let p = SysPath::new("etc//pam.d/imap/");
        assert_eq!(p.to_string(), "/etc/pam.d/imap");
        assert_eq!(p.parent().unwrap().to_string(), "/etc/pam.d");
        assert_eq!(p.file_name(), b"imap");
        assert!(p.starts_with(&SysPath::new("/etc")));
        assert!(!SysPath::new("/etcetera").starts_with(&SysPath::new("/etc")));
        assert_eq!(
            p.ancestors()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["/etc", "/etc/pam.d"]
        );
    }

    #[test]
    fn non_utf8_round_trips_through_json() {
        let p = SysPath::new(b"/etc/caf\xe9".as_slice());
        assert_eq!(p.to_string(), "/etc/caf\\xe9");
        let json = serde_json::to_string(&p).unwrap();
        let back: SysPath = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let plain: SysPath = serde_json::from_str("\"/etc/motd\"").unwrap();
        assert_eq!(plain, SysPath::new("/etc/motd"));
    }

    #[test]
    fn never_leaves_the_root_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("etc/abs"))
            .unwrap();
        std::os::unix::fs::symlink("../../../../../../../../tmp", root.path().join("etc/up"))
            .unwrap();
        let r = SysRoot::open(root.path()).unwrap();
        assert!(r.open_exact(&"/etc/abs".into()).is_err());
        // followed the system's way, an absolute target lands inside the root
        assert!(r.read_follow(&"/etc/abs".into()).unwrap().is_none());
        assert!(r.open_dir(&"/etc/up".into()).is_err());
    }

    /// The user-space resolver kernels before 5.6 get gives what `openat2`
    /// gives, path for path and flag for flag: the same file (device and
    /// inode) or the same errno.
    #[test]
    fn the_walk_without_openat2_answers_as_openat2_does() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::write(r.join("etc/file"), b"x").unwrap();
        std::fs::write(r.join("etc/sub/deep"), b"y").unwrap();
        symlink("/etc/file", r.join("etc/abs")).unwrap();
        symlink("file", r.join("etc/rel")).unwrap();
        symlink("../../../etc/file", r.join("etc/up")).unwrap();
        symlink("loop", r.join("etc/loop")).unwrap();
        symlink("/nope", r.join("etc/dangling")).unwrap();
        symlink("/etc", r.join("etc/dirlink")).unwrap();
        symlink("sub/../file", r.join("etc/dotdot")).unwrap();
        symlink("/", r.join("etc/slash")).unwrap();
        symlink("/tmp", r.join("out")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("etc/fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let base = rustix::fs::open(r, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let id = |fd: &OwnedFd| {
            let st = rustix::fs::fstat(fd).unwrap();
            (st.st_dev, st.st_ino)
        };
        let paths = [
            "",
            ".",
            "etc",
            "etc/file",
            "etc/abs",
            "etc/rel",
            "etc/up",
            "etc/loop",
            "etc/dangling",
            "etc/dirlink",
            "etc/dirlink/file",
            "etc/dirlink/sub/deep",
            "etc/dotdot",
            "etc/slash",
            "etc/slash/etc/file",
            "out",
            "out/x",
            "etc/../etc/file",
            "../etc/file",
            "/etc/file",
            "etc/file/x",
            "etc/nope",
            "etc/fifo",
            "etc/sub/../file",
            "etc//sub/./deep",
        ];
        let flags = [
            OFlags::RDONLY | OFlags::NONBLOCK,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW,
            OFlags::PATH,
            OFlags::PATH | OFlags::NOFOLLOW,
            OFlags::DIRECTORY | OFlags::RDONLY,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW,
        ];
        for how in [Resolve::Exact, Resolve::InRoot] {
            let kernel = match how {
                Resolve::Exact => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
                Resolve::InRoot => ResolveFlags::IN_ROOT,
            } | ResolveFlags::NO_MAGICLINKS;
            for p in paths {
                for f in flags {
                    let want = rustix::fs::openat2(
                        &base,
                        if p.is_empty() { "." } else { p },
                        f | OFlags::CLOEXEC,
                        Mode::empty(),
                        kernel,
                    );
                    let got = walk_at(base.as_fd(), p.as_bytes(), how, f, Mode::empty());
                    match (&want, &got) {
                        (Ok(w), Ok(g)) => assert_eq!(id(w), id(g), "{how:?} {p:?} {f:?}"),
                        (Err(w), Err(g)) => assert_eq!(
                            w.raw_os_error(),
                            g.raw_os_error().unwrap(),
                            "{how:?} {p:?} {f:?}: openat2 {w}, walk {g}"
                        ),
                        _ => panic!("{how:?} {p:?} {f:?}: openat2 {want:?}, walk {got:?}"),
                    }
                }
            }
            // creating the last component, never through a link
            let f = OFlags::CREATE | OFlags::WRONLY;
            for p in ["etc/new", "etc/dangling", "etc/abs", "etc/nodir/new"] {
                let want = rustix::fs::openat2(
                    &base,
                    p,
                    f | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                    kernel,
                );
                let made = r.join(p).symlink_metadata().is_ok_and(|m| m.is_file());
                if made && p == "etc/new" {
                    std::fs::remove_file(r.join(p)).unwrap();
                }
                let got = walk_at(
                    base.as_fd(),
                    p.as_bytes(),
                    how,
                    f,
                    Mode::from_raw_mode(0o600),
                );
                match (&want, &got) {
                    (Ok(w), Ok(g)) if p == "etc/new" => {
                        let _ = w;
                        assert!(r.join(p).is_file(), "{how:?} {p:?}");
                        let _ = g;
                        std::fs::remove_file(r.join(p)).unwrap();
                    }
                    (Ok(w), Ok(g)) => assert_eq!(id(w), id(g), "{how:?} {p:?}"),
                    (Err(w), Err(g)) => {
                        assert_eq!(w.raw_os_error(), g.raw_os_error().unwrap(), "{how:?} {p:?}")
                    }
                    _ => panic!("{how:?} {p:?} create: openat2 {want:?}, walk {got:?}"),
                }
            }
        }
        // nothing was created outside the root nor through a link
        assert!(!Path::new("/nope").exists());
    }
}
