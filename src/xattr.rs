//! Extended attributes: reading them all without following symlinks,
//! reading and setting them on a symlink or device node itself, and
//! decoding `security.capability` the way `getcap` shows it.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::io::Errno;

pub const CAPABILITY: &str = "security.capability";

/// All xattrs of a path (not followed), plus how many could not be read
/// (namespaces we lack the privilege for: counted, not fatal).
pub fn read_all_path(path: &Path) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    let names = list(
        |buf| rustix::fs::llistxattr(path, buf),
        || rustix::fs::llistxattr_query(path),
    )?;
    collect(
        names,
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
        |name| rustix::fs::lgetxattr_query(path, name),
    )
}

/// All xattrs of an open file.
pub fn read_all_fd(fd: impl AsFd) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    let fd = fd.as_fd();
    let names = list(
        |buf| rustix::fs::flistxattr(fd, buf),
        || rustix::fs::flistxattr_query(fd),
    )?;
    collect(
        names,
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
        |name| rustix::fs::fgetxattr_query(fd, name),
    )
}

fn list(
    get: impl Fn(&mut [u8]) -> Result<usize, Errno>,
    query: impl Fn() -> Result<usize, Errno>,
) -> io::Result<Vec<Vec<u8>>> {
    let mut small = [0u8; 1024];
    let raw: Vec<u8> = match get(&mut small) {
        Ok(n) => small[..n].to_vec(),
        Err(Errno::RANGE) => {
            let n = query()?;
            let mut big = vec![0u8; n + 256];
            let n = get(&mut big)?;
            big.truncate(n);
            big
        }
        // Filesystems without xattr support simply have none.
        Err(Errno::NOTSUP) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn collect(
    names: Vec<Vec<u8>>,
    get: impl Fn(&str, &mut [u8]) -> Result<usize, Errno>,
    query: impl Fn(&str) -> Result<usize, Errno>,
) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    let mut out = BTreeMap::new();
    let mut unreadable = 0;
    for name in names {
        // The manifest keys xattrs by UTF-8 string. A lossy conversion
        // would name another attribute (ENODATA, silently dropped), so a
        // name that is not UTF-8 is counted as unreadable: the snapshot
        // then says it left something out.
        let Ok(name) = String::from_utf8(name) else {
            unreadable += 1;
            continue;
        };
        let mut buf = [0u8; 512];
        let value = match get(&name, &mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(Errno::RANGE) => {
                let n = query(&name)?;
                let mut big = vec![0u8; n + 64];
                match get(&name, &mut big) {
                    Ok(n) => {
                        big.truncate(n);
                        big
                    }
                    Err(_) => {
                        unreadable += 1;
                        continue;
                    }
                }
            }
            Err(Errno::NODATA) => continue,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        out.insert(name, value);
    }
    Ok((out, unreadable))
}

/// Only `security.capability` of a path (not followed); the fast probe of
/// the capability ledger: one syscall per file, `ENODATA` for nearly all.
pub fn capability_of(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 64];
    match rustix::fs::lgetxattr(path, CAPABILITY, &mut buf[..]) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The `*xattrat(2)` family (Linux 6.13): one path component looked up from
/// a directory fd, with `AT_SYMLINK_NOFOLLOW`. New syscalls share one number
/// on every architecture since the table was unified.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// Set once a `*xattrat` call said `ENOSYS` (a kernel before 6.13, or a
/// seccomp filter that does not know them): the family came together, so
/// every caller falls back from then on without asking again.
static NO_XATTRAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn xattrat_available() -> bool {
    !NO_XATTRAT.load(std::sync::atomic::Ordering::Relaxed)
}

/// `struct xattr_args` of the `*xattrat` calls.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// A raw syscall's result as rustix's `Errno`; `ENOSYS` also marks the
/// `*xattrat` family as missing.
fn sys_result(r: libc::c_long) -> Result<usize, Errno> {
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    if e == Errno::NOSYS {
        NO_XATTRAT.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Err(e)
}

fn getxattrat(dir: BorrowedFd, name: &CStr, attr: &str, buf: &mut [u8]) -> Result<usize, Errno> {
    let attr = CString::new(attr).map_err(|_| Errno::INVAL)?;
    let mut args = XattrArgs {
        value: buf.as_mut_ptr() as u64,
        size: buf.len() as u32,
        flags: 0,
    };
    // SAFETY: every pointer refers to a live local (or `buf`) of the size
    // given; the kernel writes at most `args.size` bytes into `buf`.
    sys_result(unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            attr.as_ptr(),
            &mut args as *mut XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    })
}

/// `security.capability` of `name` in the directory `dir` (not followed):
/// the capability ledger's probe. `getxattrat(2)` (Linux 6.13) looks up one
/// component from the directory fd instead of walking the whole path again
/// for each of the ~100k files under /usr; older kernels get `lgetxattr`.
pub fn capability_at(
    dir: impl AsFd,
    name: &std::ffi::CStr,
    full: &Path,
) -> io::Result<Option<Vec<u8>>> {
    if xattrat_available() {
        let mut buf = [0u8; 64];
        match getxattrat(dir.as_fd(), name, CAPABILITY, &mut buf) {
            Ok(n) => return Ok(Some(buf[..n].to_vec())),
            Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => return Ok(None),
            // ENOSYS (remembered), too large for the probe buffer, or
            // anything else: let the path-based call answer with its own
            // buffer handling.
            Err(_) => {}
        }
    }
    capability_of(full)
}

/// `*xattrat(2)` reading every xattr of `name` in `dir` (not followed).
fn read_all_xattrat(dir: BorrowedFd, name: &CStr) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    let listat = |buf: &mut [u8]| {
        // SAFETY: `buf` is a live slice of the length given; the kernel
        // writes at most that many bytes (none for a size query).
        sys_result(unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                buf.as_mut_ptr(),
                buf.len(),
            )
        })
    };
    let names = list(listat, || listat(&mut []))?;
    collect(
        names,
        |attr, buf| getxattrat(dir, name, attr, buf),
        |attr| getxattrat(dir, name, attr, &mut []),
    )
}

/// All xattrs of `name` in the directory `dir` (not followed), plus how many
/// could not be read: what a snapshot records of an entry it does not open
/// (a directory, symlink, fifo, device node or socket). `dir` was opened
/// beneath the root without symlinks and only `name` is looked up from it,
/// so a directory swapped for a symlink since the walk cannot lead to the
/// host's files the way a path from the root would. Before Linux 6.13
/// (no `*xattrat`) the `l*` calls go through `/proc/self/fd/N/name`, the
/// magic link jumping straight to `dir`; only with no /proc either (an
/// alpm hook's chroot on an old kernel) is `host` itself used.
pub fn read_all_at(
    dir: BorrowedFd,
    name: &CStr,
    host: &Path,
) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    if xattrat_available() {
        match read_all_xattrat(dir, name) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            done => return done,
        }
    }
    let proc_fd = Path::new("/proc/self/fd");
    if !proc_fd.is_dir() {
        return read_all_path(host);
    }
    let mut via = proc_fd
        .join(dir.as_raw_fd().to_string())
        .into_os_string()
        .into_vec();
    via.push(b'/');
    via.extend_from_slice(name.to_bytes());
    read_all_path(Path::new(std::ffi::OsStr::from_bytes(&via)))
}

/// A directory entry that cannot be opened for I/O: a symlink (opening
/// follows it) or a fifo or device node (opening blocks, or opens the
/// device). Its xattrs are read and set on the node itself, never on what a
/// link points at, and never outside the directory it is in:
///
/// * with `*xattrat(2)` (Linux 6.13): `name` relative to `dir` with
///   `AT_SYMLINK_NOFOLLOW`: one component looked up from a directory fd
///   that was opened beneath the root, and a link there is acted on, not
///   followed. It goes by name, so a writer that swaps the name between
///   the calls gets the xattrs on its own entry in the same directory,
///   never on anything outside it; restore checks that the name still
///   holds `pinned` before it renames a new node into place;
/// * before that: through `/proc/self/fd/N` of `pinned`, an
///   `O_PATH | O_NOFOLLOW` fd opened on `name` in `dir`. That is a magic
///   link: resolving it jumps straight to the inode the fd holds — the
///   symlink itself, not its target (the kernel does not follow a link it
///   reached through a magic link), and not whatever the name holds by now
///   — so the *following* calls (`setxattr`, not `lsetxattr`, which would
///   act on the /proc link and fail with `EOPNOTSUPP`) reach the node and
///   nothing else. The plain `f*xattr` calls, and `*xattrat` with
///   `AT_EMPTY_PATH`, refuse an `O_PATH` fd (`EBADF`, up to 6.18 at least),
///   so the fd alone is not enough. It needs /proc mounted, as setting
///   the mode and mtime of a new node already does.
///
/// `user.*` is refused on all of these kinds by the kernel (`EPERM`);
/// `trusted.*` and `security.*` are allowed to root.
pub struct Node<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a CStr,
    pub pinned: BorrowedFd<'a>,
}

impl Node<'_> {
    /// All xattrs of the node, plus how many could not be read.
    pub fn read_all(&self) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
        if xattrat_available() {
            match self.read_all_at() {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
                done => return done,
            }
        }
        self.read_all_proc()
    }

    /// Sets one xattr on the node (created or replaced).
    pub fn set(&self, attr: &str, value: &[u8]) -> io::Result<()> {
        if xattrat_available() {
            match self.set_at(attr, value) {
                Err(Errno::NOSYS) => {}
                done => return done.map_err(Into::into),
            }
        }
        self.set_proc(attr, value)
    }

    /// Removes one xattr from the node.
    pub fn remove(&self, attr: &str) -> io::Result<()> {
        if xattrat_available() {
            match self.remove_at(attr) {
                Err(Errno::NOSYS) => {}
                done => return done.map_err(Into::into),
            }
        }
        self.remove_proc(attr)
    }

    fn read_all_at(&self) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
        read_all_xattrat(self.dir, self.name)
    }

    fn set_at(&self, attr: &str, value: &[u8]) -> Result<(), Errno> {
        let attr = CString::new(attr).map_err(|_| Errno::INVAL)?;
        let args = XattrArgs {
            value: value.as_ptr() as u64,
            size: value.len() as u32,
            flags: 0,
        };
        // SAFETY: every pointer refers to a live value of the size given;
        // the kernel only reads them.
        sys_result(unsafe {
            libc::syscall(
                SYS_SETXATTRAT,
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                attr.as_ptr(),
                &args as *const XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        })
        .map(drop)
    }

    fn remove_at(&self, attr: &str) -> Result<(), Errno> {
        let attr = CString::new(attr).map_err(|_| Errno::INVAL)?;
        // SAFETY: both strings are live and NUL-terminated.
        sys_result(unsafe {
            libc::syscall(
                SYS_REMOVEXATTRAT,
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                attr.as_ptr(),
            )
        })
        .map(drop)
    }

    fn via_proc(&self) -> String {
        format!("/proc/self/fd/{}", self.pinned.as_raw_fd())
    }

    fn read_all_proc(&self) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
        let via = self.via_proc();
        let names = list(
            |buf| rustix::fs::listxattr(via.as_str(), buf),
            || rustix::fs::listxattr_query(via.as_str()),
        )?;
        collect(
            names,
            |attr, buf| rustix::fs::getxattr(via.as_str(), attr, buf),
            |attr| rustix::fs::getxattr_query(via.as_str(), attr),
        )
    }

    fn set_proc(&self, attr: &str, value: &[u8]) -> io::Result<()> {
        rustix::fs::setxattr(
            self.via_proc().as_str(),
            attr,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(Into::into)
    }

    fn remove_proc(&self, attr: &str) -> io::Result<()> {
        rustix::fs::removexattr(self.via_proc().as_str(), attr).map_err(Into::into)
    }
}

const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

fn cap_name(i: u32) -> String {
    CAP_NAMES
        .get(i as usize)
        .map(|n| format!("cap_{n}"))
        .unwrap_or_else(|| format!("cap_{i}"))
}

/// Decodes a `vfs_cap_data` value (revisions 1–3) into getcap's text form,
/// e.g. `cap_net_bind_service=ep`; capabilities with the same flags are
/// grouped, groups ordered by their first capability.
pub fn decode_caps(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u32> {
        raw.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let magic = word(0)?;
    let effective = magic & 1 != 0;
    let (words, rootid) = match magic & 0xff00_0000 {
        0x0100_0000 if raw.len() >= 12 => (1, None),
        0x0200_0000 if raw.len() >= 20 => (2, None),
        0x0300_0000 if raw.len() >= 24 => (2, word(5)),
        _ => return None,
    };
    let mut permitted = 0u64;
    let mut inheritable = 0u64;
    for w in 0..words {
        permitted |= (word(1 + 2 * w)? as u64) << (32 * w);
        inheritable |= (word(2 + 2 * w)? as u64) << (32 * w);
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for bit in 0..64u32 {
        let p = permitted >> bit & 1 == 1;
        let i = inheritable >> bit & 1 == 1;
        if !p && !i {
            continue;
        }
        let mut flags = String::new();
        if effective && p {
            flags.push('e');
        }
        if i {
            flags.push('i');
        }
        if p {
            flags.push('p');
        }
        match groups.iter_mut().find(|(f, _)| *f == flags) {
            Some((_, names)) => names.push(cap_name(bit)),
            None => groups.push((flags, vec![cap_name(bit)])),
        }
    }
    let mut text = groups
        .iter()
        .map(|(f, n)| format!("{}={f}", n.join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        text = "=".into();
    }
    if let Some(uid) = rootid.filter(|u| *u != 0) {
        text.push_str(&format!(" [rootid={uid}]"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(effective: bool, permitted: u64, inheritable: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(0x0200_0000u32 | effective as u32).to_le_bytes());
        v.extend_from_slice(&(permitted as u32).to_le_bytes());
        v.extend_from_slice(&(inheritable as u32).to_le_bytes());
        v.extend_from_slice(&((permitted >> 32) as u32).to_le_bytes());
        v.extend_from_slice(&((inheritable >> 32) as u32).to_le_bytes());
        v
    }

    #[test]
    fn a_name_that_is_not_utf8_is_counted_not_dropped() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"user.caf\xe9");
        rustix::fs::setxattr(&f, odd, b"1", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&f, "user.plain", b"2", rustix::fs::XattrFlags::empty()).unwrap();
        for (x, unreadable) in [
            read_all_path(&f).unwrap(),
            read_all_fd(std::fs::File::open(&f).unwrap()).unwrap(),
        ] {
            assert_eq!(x, BTreeMap::from([("user.plain".into(), b"2".to_vec())]));
            assert_eq!(unreadable, 1);
        }
    }

    /// A link to a file beside it, with an `O_PATH` fd pinned on the link.
    fn link_node(t: &Path) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        use rustix::fs::{Mode, OFlags};
        std::fs::write(t.join("target"), "x").unwrap();
        std::os::unix::fs::symlink("target", t.join("link")).unwrap();
        let dir = rustix::fs::open(t, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let pinned = rustix::fs::openat(
            &dir,
            "link",
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, pinned)
    }

    #[test]
    fn both_ways_to_reach_a_node_act_on_the_link_not_its_target() {
        let t = tempfile::tempdir().unwrap();
        let (dir, pinned) = link_node(t.path());
        let node = Node {
            dir: dir.as_fd(),
            name: c"link",
            pinned: pinned.as_fd(),
        };
        let link = t.path().join("link");
        let target = t.path().join("target");
        // the *xattrat way runs only on Linux 6.13 and later
        let at = node.set_at("trusted.at", b"1") != Err(Errno::NOSYS);
        node.set_proc("trusted.proc", b"2").unwrap();
        let (x, _) = read_all_path(&link).unwrap();
        let mut want = BTreeMap::from([("trusted.proc".to_string(), b"2".to_vec())]);
        if at {
            want.insert("trusted.at".into(), b"1".to_vec());
            assert_eq!(node.read_all_at().unwrap(), (want.clone(), 0));
        }
        assert_eq!(x, want);
        assert_eq!(node.read_all_proc().unwrap(), (want, 0));
        assert_eq!(read_all_path(&target).unwrap(), (BTreeMap::new(), 0));
        // user.* is the kernel's to refuse on a symlink, both ways
        assert_eq!(
            node.set_proc("user.x", b"1").unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        if at {
            assert_eq!(node.set_at("user.x", b"1"), Err(Errno::PERM));
            node.remove_at("trusted.at").unwrap();
        }
        node.remove_proc("trusted.proc").unwrap();
        assert_eq!(read_all_path(&link).unwrap(), (BTreeMap::new(), 0));
    }

    #[test]
    fn decodes_like_getcap() {
        assert_eq!(
            decode_caps(&v2(true, 1 << 10, 0)).unwrap(),
            "cap_net_bind_service=ep"
        );
        assert_eq!(
            decode_caps(&v2(true, 1 << 2 | 1 << 10, 0)).unwrap(),
            "cap_dac_read_search,cap_net_bind_service=ep"
        );
        assert_eq!(
            decode_caps(&v2(false, 1 << 13, 1 << 13)).unwrap(),
            "cap_net_raw=ip"
        );
        assert_eq!(decode_caps(&v2(true, 1 << 39, 0)).unwrap(), "cap_bpf=ep");
        assert!(decode_caps(b"junk").is_none());
    }
}
