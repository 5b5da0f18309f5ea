//! Extended attributes: reading them all without following symlinks, and
//! decoding `security.capability` the way `getcap` shows it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
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

/// `security.capability` of `name` in the directory `dir` (not followed):
/// the capability ledger's probe. `getxattrat(2)` (Linux 6.13) looks up one
/// component from the directory fd instead of walking the whole path again
/// for each of the ~100k files under /usr; older kernels get `lgetxattr`.
pub fn capability_at(
    dir: impl AsFd,
    name: &std::ffi::CStr,
    full: &Path,
) -> io::Result<Option<Vec<u8>>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NO_GETXATTRAT: AtomicBool = AtomicBool::new(false);
    if !NO_GETXATTRAT.load(Ordering::Relaxed) {
        #[repr(C)]
        struct XattrArgs {
            value: u64,
            size: u32,
            flags: u32,
        }
        const SYS_GETXATTRAT: libc::c_long = 464;
        let mut buf = [0u8; 64];
        let mut args = XattrArgs {
            value: buf.as_mut_ptr() as u64,
            size: buf.len() as u32,
            flags: 0,
        };
        // SAFETY: every pointer refers to a live local of the size given;
        // the kernel writes at most `args.size` bytes into `buf`.
        let r = unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                std::os::fd::AsRawFd::as_raw_fd(&dir.as_fd()),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                c"security.capability".as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        };
        if r >= 0 {
            return Ok(Some(buf[..r as usize].to_vec()));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => return Ok(None),
            Some(libc::ENOSYS) => NO_GETXATTRAT.store(true, Ordering::Relaxed),
            // Too large for the probe buffer, or anything else: let the
            // path-based call answer with its own buffer handling.
            _ => {}
        }
    }
    capability_of(full)
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
