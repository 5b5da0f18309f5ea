//! `keyring/stale` (incident 4): packages in the root's pacman sync
//! databases are signed by keys its keyring (`etc/pacman.d/gnupg`) does not
//! hold or trust, or `var/log/pacman.log` shows signature failures since
//! the baseline. The sync databases are read with `bsdtar` (fed on stdin,
//! so no path of the root is handed to it), the issuer of each `%PGPSIG%`
//! is read from the OpenPGP packet, and the keyring is listed by `gpg` on a
//! private copy so the root's keyring is never written.

use std::collections::BTreeMap;

use super::{line_evidence, Check, Context};
use crate::exec::{self, Cmd};
use crate::report::{Evidence, Finding, Severity};
use crate::sysroot::SysPath;

pub struct Keyring;

const SYNC: &str = "/var/lib/pacman/sync";
const GNUPG: &str = "/etc/pacman.d/gnupg";
const LOG: &str = "/var/log/pacman.log";
const CACHE: &str = "/var/cache/pacman/pkg";
const PHRASES: &[&str] = &[
    "unknown trust",
    "invalid or corrupted package (PGP signature)",
    "required key missing from keyring",
];

/// Standard base64 (pacman's `%PGPSIG%`), whitespace ignored.
pub fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The issuer of an OpenPGP signature packet: the fingerprint (issuer
/// fingerprint subpacket) when present, else the 64-bit key id, as
/// uppercase hex.
pub fn issuer(sig: &[u8]) -> Option<String> {
    let tag = *sig.first()?;
    if tag & 0x80 == 0 {
        return None;
    }
    // packet header: new or old format
    let (ptype, body) = if tag & 0x40 != 0 {
        let l0 = *sig.get(1)? as usize;
        let (len, hdr) = match l0 {
            0..=191 => (l0, 2),
            192..=223 => (((l0 - 192) << 8) + *sig.get(2)? as usize + 192, 3),
            255 => (
                u32::from_be_bytes(sig.get(2..6)?.try_into().ok()?) as usize,
                6,
            ),
            _ => return None,
        };
        (tag & 0x3f, sig.get(hdr..hdr + len)?)
    } else {
        let lt = tag & 3;
        let (len, hdr) = match lt {
            0 => (*sig.get(1)? as usize, 2),
            1 => (
                u16::from_be_bytes(sig.get(1..3)?.try_into().ok()?) as usize,
                3,
            ),
            2 => (
                u32::from_be_bytes(sig.get(1..5)?.try_into().ok()?) as usize,
                5,
            ),
            _ => (sig.len() - 1, 1),
        };
        ((tag >> 2) & 0x0f, sig.get(hdr..(hdr + len).min(sig.len()))?)
    };
    if ptype != 2 {
        return None;
    }
    match *body.first()? {
        3 => Some(hex::encode_upper(body.get(7..15)?)),
        4 | 5 => {
            let hl = u16::from_be_bytes(body.get(4..6)?.try_into().ok()?) as usize;
            let hashed = body.get(6..6 + hl)?;
            let ul = u16::from_be_bytes(body.get(6 + hl..8 + hl)?.try_into().ok()?) as usize;
            let unhashed = body.get(8 + hl..8 + hl + ul)?;
            let mut keyid = None;
            for area in [hashed, unhashed] {
                let mut i = 0;
                while i < area.len() {
                    let l0 = area[i] as usize;
                    let (len, skip) = match l0 {
                        0..=191 => (l0, 1),
                        192..=254 => (((l0 - 192) << 8) + *area.get(i + 1)? as usize + 192, 2),
                        _ => (
                            u32::from_be_bytes(area.get(i + 1..i + 5)?.try_into().ok()?) as usize,
                            5,
                        ),
                    };
                    let sp = area.get(i + skip..i + skip + len)?;
                    match sp.first().map(|t| t & 0x7f) {
                        Some(33) if sp.len() > 2 => return Some(hex::encode_upper(&sp[2..])),
                        Some(16) if sp.len() == 9 => keyid = Some(hex::encode_upper(&sp[1..])),
                        _ => {}
                    }
                    i += skip + len;
                }
            }
            keyid
        }
        _ => None,
    }
}

/// name → issuer of every package with a `%PGPSIG%` in one sync database
/// (the concatenated `desc` files).
pub fn signers(descs: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name = String::new();
    let mut lines = descs.lines();
    while let Some(l) = lines.next() {
        match l.trim() {
            "%NAME%" => name = lines.next().unwrap_or("").trim().to_string(),
            "%PGPSIG%" => {
                if let Some(k) = lines
                    .next()
                    .and_then(|s| base64(s.trim()))
                    .and_then(|b| issuer(&b))
                {
                    out.insert(name.clone(), k);
                }
            }
            _ => {}
        }
    }
    out
}

/// A key of the keyring: fingerprint, key id, gpg's validity letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub fpr: String,
    pub validity: char,
}

/// Parses `gpg --with-colons --list-keys` (primary keys and subkeys).
pub fn keys(colons: &str) -> Vec<Key> {
    let mut out = Vec::new();
    let mut pending: Option<char> = None;
    let mut primary = '-';
    for l in colons.lines() {
        let f: Vec<&str> = l.split(':').collect();
        match f.first() {
            Some(&"pub") => {
                primary = f.get(1).and_then(|s| s.chars().next()).unwrap_or('-');
                pending = Some(primary);
            }
            Some(&"sub") => {
                let v = f.get(1).and_then(|s| s.chars().next()).unwrap_or('-');
                // a subkey is as valid as its primary unless itself bad
                pending = Some(if matches!(v, 'r' | 'e' | 'i' | 'd') {
                    v
                } else {
                    primary
                });
            }
            Some(&"fpr") => {
                if let (Some(v), Some(fpr)) = (pending.take(), f.get(9)) {
                    out.push(Key {
                        fpr: fpr.to_uppercase(),
                        validity: v,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn lookup<'a>(keys: &'a [Key], issuer: &str) -> Option<&'a Key> {
    keys.iter()
        .find(|k| k.fpr == issuer || k.fpr.ends_with(issuer))
}

/// Lists the root's keyring with gpg on a private copy of its files.
fn list_keyring(cx: &Context) -> Result<Option<String>, String> {
    let dir = SysPath::new(GNUPG);
    let names = cx.root.list_dir(&dir);
    let wanted: Vec<&Vec<u8>> = names
        .iter()
        .filter(|n| {
            matches!(
                n.as_slice(),
                b"pubring.gpg" | b"pubring.kbx" | b"trustdb.gpg" | b"gpg.conf"
            )
        })
        .collect();
    if !wanted.iter().any(|n| n.starts_with(b"pubring")) {
        return Ok(None);
    }
    let tmp = std::env::temp_dir().join(format!(
        "guard-keyring-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    let res = (|| -> Result<String, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| e.to_string())?;
        for n in &wanted {
            let p = dir.join(n);
            let data = cx
                .root
                .read_follow(&p)
                .map_err(|e| format!("{p}: {e}"))?
                .unwrap_or_default();
            let name = String::from_utf8_lossy(n).into_owned();
            // gpg.conf of the root could name programs; only the key files
            if name != "gpg.conf" {
                std::fs::write(tmp.join(name), data).map_err(|e| e.to_string())?;
            }
        }
        let out = exec::output(
            &Cmd::new("gpg")
                .arg("--homedir")
                .arg(&tmp)
                .args([
                    "--batch",
                    "--no-tty",
                    "--no-auto-check-trustdb",
                    "--with-colons",
                    "--fixed-list-mode",
                    "--list-keys",
                ])
                .env("GNUPGHOME", &tmp),
        )
        .map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    res.map(Some)
}

/// Signature failures in pacman.log after `since` (RFC 3339).
fn log_failures(cx: &Context, since: &str) -> Vec<Evidence> {
    let Some(text) = cx.root.read_text(LOG) else {
        return Vec::new();
    };
    let Ok(since) = since.parse::<jiff::Timestamp>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if !PHRASES.iter().any(|p| l.contains(p)) {
            continue;
        }
        let Some(stamp) = l.strip_prefix('[').and_then(|r| r.split(']').next()) else {
            continue;
        };
        let t = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%z", stamp)
            .ok()
            .or_else(|| {
                jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", stamp)
                    .ok()
                    .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp())
            });
        if t.is_some_and(|t| t >= since) {
            out.push(line_evidence(
                &SysPath::new(LOG),
                i + 1,
                l,
                "pacman could not verify a package",
            ));
        }
    }
    out
}

fn short(id: &str) -> String {
    id[id.len().saturating_sub(16)..].to_string()
}

impl Check for Keyring {
    fn name(&self) -> &'static str {
        "keyring"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let sync = SysPath::new(SYNC);
        let dbs: Vec<Vec<u8>> = cx
            .root
            .list_dir(&sync)
            .into_iter()
            .filter(|n| n.ends_with(b".db"))
            .collect();
        let mut signer_of: BTreeMap<String, String> = BTreeMap::new();
        let mut problems: Vec<String> = Vec::new();
        for db in &dbs {
            let p = sync.join(db);
            let Ok(Some(raw)) = cx.root.read_follow(&p) else {
                continue;
            };
            match exec::stdout_of(&Cmd::new("bsdtar").args(["-xOf", "-"]).stdin_bytes(raw)) {
                Ok(out) => signer_of.extend(signers(&String::from_utf8_lossy(&out))),
                Err(e) => problems.push(format!("{p}: {e:#}")),
            }
        }
        // Newer Arch databases carry no %PGPSIG%: the detached signatures
        // of packages downloaded since the snapshot (`pacman -Syuw`, or a
        // failed -Syu) say the same.
        let since = cx
            .baseline
            .and_then(|b| b.created.parse::<jiff::Timestamp>().ok())
            .map_or(i64::MIN, |t| t.as_second());
        let cache = SysPath::new(CACHE);
        for n in cx.root.list_dir(&cache) {
            let Some(pkg) = n.strip_suffix(b".sig") else {
                continue;
            };
            let p = cache.join(&n);
            // pacman sets a download's mtime to the mirror's file time (days
            // or weeks before the snapshot); its ctime is when it landed here
            let fresh = cx
                .root
                .lstat(&p)
                .is_ok_and(|st| st.st_mtime.max(st.st_ctime) >= since);
            if !fresh {
                continue;
            }
            if let Some(id) = cx
                .root
                .read_follow(&p)
                .ok()
                .flatten()
                .and_then(|b| issuer(&b))
            {
                signer_of.insert(String::from_utf8_lossy(pkg).into_owned(), id);
            }
        }
        let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut untrusted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // A keyring gpg could not list (gpg missing, unreadable files) says
        // nothing about which keys it holds: comparing against "no keys"
        // would call every signer unknown, a critical finding for a tool
        // missing here. Only a root with no keyring at all (pacman-key
        // --init never ran) really holds none.
        let keyring = if signer_of.is_empty() {
            None
        } else {
            match list_keyring(cx) {
                Ok(k) => Some(k.unwrap_or_default()),
                Err(e) => {
                    problems.push(format!("keyring: {e}"));
                    None
                }
            }
        };
        if let Some(keyring) = keyring {
            let ks = keys(&keyring);
            for (pkg, id) in &signer_of {
                match lookup(&ks, id) {
                    None => unknown.entry(id.clone()).or_default().push(pkg.clone()),
                    Some(k) if !matches!(k.validity, 'f' | 'u') => {
                        untrusted.entry(id.clone()).or_default().push(pkg.clone())
                    }
                    Some(_) => {}
                }
            }
        }
        let logged = cx
            .baseline
            .map(|b| log_failures(cx, &b.created))
            .unwrap_or_default();
        let mut out = Vec::new();
        if !problems.is_empty() {
            out.push(
                Finding::new(
                    "keyring/unreadable",
                    Severity::Info,
                    &[],
                    "the pacman sync databases or keyring could not be read: whether the \
                     keyring is stale is not known",
                )
                .detail(problems.join("\n")),
            );
        }
        if unknown.is_empty() && untrusted.is_empty() && logged.is_empty() {
            return out;
        }
        let count: usize = unknown
            .values()
            .chain(untrusted.values())
            .map(Vec::len)
            .sum();
        let mut parts = Vec::new();
        if !unknown.is_empty() {
            parts.push(format!(
                "signed by keys the keyring does not hold: {}",
                unknown
                    .keys()
                    .map(|k| short(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !untrusted.is_empty() {
            parts.push(format!(
                "signed by keys it does not trust: {}",
                untrusted
                    .keys()
                    .map(|k| short(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let msg = if count > 0 {
            format!(
                "pacman -Syu will fail: {} {}",
                crate::plural(count, "package"),
                parts.join("; ")
            )
        } else {
            format!(
                "pacman -Syu will fail: pacman.log shows {} since the snapshot",
                crate::plural(logged.len(), "signature failure")
            )
        };
        let mut f = Finding::new(
            "keyring/stale",
            Severity::Critical,
            &[&SysPath::new(GNUPG)],
            msg,
        )
        .fix(
            "pacman -Sy archlinux-keyring && pacman -Su; if pacman offers to delete \
             packages from the cache because of a bad signature, answer no",
        );
        f.evidence = logged;
        let mut detail = Vec::new();
        for (k, pkgs) in unknown
            .iter()
            .map(|x| (x, "unknown"))
            .chain(untrusted.iter().map(|x| (x, "untrusted")))
        {
            let ((id, list), why) = (k, pkgs);
            detail.push(format!("{why} key {id}: {}", list.join(" ")));
        }
        if !detail.is_empty() {
            f.detail = Some(detail.join("\n"));
        }
        out.push(f);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64("a*b").is_none());
    }

    #[test]
    fn reads_issuer_from_v4_signature() {
        // new-format packet, v4, hashed area: issuer fingerprint (33),
        // unhashed: issuer key id (16)
        let fpr: Vec<u8> = (1..=20).collect();
        let mut hashed = vec![22u8, 33, 4];
        hashed.extend(&fpr);
        let unhashed = [9u8, 16, 9, 10, 11, 12, 13, 14, 15, 16];
        let mut body = vec![4u8, 0, 1, 8];
        body.extend((hashed.len() as u16).to_be_bytes());
        body.extend(&hashed);
        body.extend((unhashed.len() as u16).to_be_bytes());
        body.extend(unhashed);
        body.extend([0u8, 0]); // hash prefix
        let mut pkt = vec![0xc2, body.len() as u8];
        pkt.extend(&body);
        assert_eq!(issuer(&pkt).unwrap(), hex::encode_upper(&fpr));
        // without the fingerprint subpacket: the key id
        let mut body = vec![4u8, 0, 1, 8, 0, 0];
        body.extend((unhashed.len() as u16).to_be_bytes());
        body.extend(unhashed);
        let mut pkt = vec![0x88, body.len() as u8]; // old format, tag 2
        pkt.extend(&body);
        assert_eq!(issuer(&pkt).unwrap(), "090A0B0C0D0E0F10");
    }

    #[test]
    fn parses_descs_and_colons() {
        let d = "%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%NAME%\na\n\n%PGPSIG%\nnotbase64*\n\n\
                 %FILENAME%\nb\n%NAME%\nb\n";
        assert!(signers(d).is_empty());
        let c = "tru::1:0:0:0:3:1\npub:f:255:22:AAAA:1:::-:::scESC::::::23::0:\n\
                 fpr:::::::::00112233AAAA:\nsub:-:255:18:BBBB:1::::::e::::::23:\n\
                 fpr:::::::::44556677BBBB:\npub:-:255:22:CCCC:1:::-:::scESC:\nfpr:::::::::8899CCCC:\n";
        let k = keys(c);
        assert_eq!(k.len(), 3);
        assert_eq!(k[1].validity, 'f', "subkey inherits validity");
        assert_eq!(lookup(&k, "AAAA").unwrap().validity, 'f');
        assert_eq!(lookup(&k, "8899CCCC").unwrap().validity, '-');
    }
}
