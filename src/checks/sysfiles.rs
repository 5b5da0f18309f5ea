//! System tables whose change quietly breaks logins or boot:
//! `nss/changed` (sources of `nsswitch.conf`, e.g. `sss` dropped from
//! `passwd`), `storage/crypttab-changed`, `storage/fstab-changed`, and
//! `accounts/changed` (users or groups added/removed; shadow hashes are
//! never read for output).

use std::collections::BTreeMap;

use super::{Check, Context, Files, Live, Recorded};
use crate::diff::Change;
use crate::report::{Finding, Severity};
use crate::store::Entry;
use crate::sysroot::SysPath;

pub struct SysFiles;

/// Key → (line number, the line's fields) of a table file.
type Table = BTreeMap<String, (usize, String)>;

/// `passwd: files sss` → `passwd` → `files sss`.
pub fn nss(text: &str) -> Table {
    let mut t = Table::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("").trim();
        if let Some((db, src)) = l.split_once(':') {
            let src = src.split_whitespace().collect::<Vec<_>>().join(" ");
            t.insert(db.trim().to_string(), (i + 1, src));
        }
    }
    t
}

/// Whitespace tables keyed by one column (fstab: mount point, column 2;
/// crypttab: name, column 1).
pub fn table(text: &str, key_col: usize) -> Table {
    let mut t = Table::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("").trim();
        let f: Vec<&str> = l.split_whitespace().collect();
        if let Some(k) = f.get(key_col) {
            t.insert(k.to_string(), (i + 1, f.join(" ")));
        }
    }
    t
}

/// fstab by mount point, except swap: every swap line has the mount point
/// `none` (or `swap`), so keyed by it a second swap area hid the first and
/// its removal went unseen; swap is keyed by its device instead.
pub fn fstab(text: &str) -> Table {
    let mut t = Table::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("").trim();
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(mp) = f.get(1) else { continue };
        let key = if f.get(2) == Some(&"swap") {
            format!("swap {}", f[0])
        } else if matches!(*mp, "none" | "swap") {
            format!("{mp} {}", f[0])
        } else {
            mp.to_string()
        };
        t.insert(key, (i + 1, f.join(" ")));
    }
    t
}

/// `name:x:uid:gid:gecos:home:shell` → name → `uid gid home shell`, and
/// `name:x:gid:members` → name → `gid members`: a user whose shell became
/// `nologin` or who left `wheel` or `mail` is as locked out as a removed
/// one. The password field is never read (it may hold a hash where there
/// is no shadow file), nor the GECOS field (personal data).
pub fn accounts(text: &str, user: bool) -> Table {
    let mut t = Table::new();
    for (i, l) in text.lines().enumerate() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 && !f[0].starts_with('#') && !f[0].is_empty() {
            let field = |n: usize| f.get(n).copied().unwrap_or("");
            let v = if user {
                format!(
                    "uid {} gid {} home {} shell {}",
                    field(2),
                    field(3),
                    field(5),
                    field(6)
                )
            } else {
                // member order means nothing to the system
                let mut m: Vec<&str> = field(3).split(',').filter(|m| !m.is_empty()).collect();
                m.sort_unstable();
                if m.is_empty() {
                    format!("gid {}", field(2))
                } else {
                    format!("gid {} members {}", field(2), m.join(","))
                }
            };
            t.insert(f[0].to_string(), (i + 1, v));
        }
    }
    t
}

/// What differs between two tables, one phrase per key.
pub fn compare(old: &Table, new: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (k, (_, v)) in old {
        match new.get(k) {
            None => out.push(format!("{k} removed (was: {v})")),
            Some((_, n)) if n != v => out.push(format!("{k}: {v} -> {n}")),
            _ => {}
        }
    }
    for (k, (_, v)) in new {
        if !old.contains_key(k) {
            out.push(format!("{k} added: {v}"));
        }
    }
    out
}

/// Which accounts file a spec is, for the owners of files it names.
#[derive(Clone, Copy, PartialEq)]
enum Names {
    None,
    Users,
    Groups,
}

struct Spec {
    path: &'static str,
    /// For `/etc/passwd` and `/etc/group`: whose names it gives files.
    names: Names,
    /// Where the system reads the table when `path` is absent (openSUSE's
    /// glibc falls back to `/usr/etc/nsswitch.conf`).
    vendor: Option<&'static str>,
    id: &'static str,
    what: &'static str,
    parse: fn(&str) -> Table,
    /// Files the shadow tools (`useradd`, `usermod`, `userdel`,
    /// `groupadd` …) write together with this one: one `useradd` rewrites
    /// `/etc/passwd`, `/etc/shadow` and `/etc/subuid`. Changed too, they
    /// are part of this finding (not a `file/modified` warning each), and
    /// its fix restores them together: `/etc/passwd` restored without
    /// `/etc/shadow` leaves the two disagreeing about who exists.
    companions: &'static [&'static str],
}

const SPECS: &[Spec] = &[
    Spec {
        path: "/etc/nsswitch.conf",
        names: Names::None,
        vendor: Some("/usr/etc/nsswitch.conf"),
        id: "nss/changed",
        what: "name service sources",
        parse: nss,
        companions: &[],
    },
    Spec {
        path: "/etc/crypttab",
        names: Names::None,
        vendor: None,
        id: "storage/crypttab-changed",
        what: "encrypted volumes",
        parse: |t| table(t, 0),
        companions: &[],
    },
    Spec {
        path: "/etc/fstab",
        names: Names::None,
        vendor: None,
        id: "storage/fstab-changed",
        what: "mounts",
        parse: fstab,
        companions: &[],
    },
    Spec {
        path: "/etc/passwd",
        names: Names::Users,
        vendor: None,
        id: "accounts/changed",
        what: "users",
        parse: |t| accounts(t, true),
        companions: &["/etc/shadow", "/etc/subuid"],
    },
    Spec {
        path: "/etc/group",
        names: Names::Groups,
        vendor: None,
        id: "accounts/changed",
        what: "groups",
        parse: |t| accounts(t, false),
        companions: &["/etc/gshadow", "/etc/subgid"],
    },
];

/// Files whose owner (or group) kept its id but lost or changed its name
/// since the snapshot: the accounts file renamed it, not the file. One
/// line per name, with how many files and the first few of them.
fn renamed_owners(cx: &Context, names: Names) -> (usize, bool, Vec<String>) {
    let mut by: BTreeMap<(String, String), Vec<&SysPath>> = BTreeMap::new();
    for c in cx.changes {
        let Change::Modified { old, new, .. } = c else {
            continue;
        };
        let (id, o, n) = match names {
            Names::Users if old.uid == new.uid => (old.uid, &old.user, &new.user),
            Names::Groups if old.gid == new.gid => (old.gid, &old.group, &new.group),
            _ => continue,
        };
        if o == n {
            continue;
        }
        let name = |x: &Option<String>| {
            x.as_deref()
                .map_or(format!("{id}"), |x| format!("{x} ({id})"))
        };
        by.entry((name(o), name(n))).or_default().push(&new.path);
    }
    let total = by.values().map(Vec::len).sum();
    // (the new side has no name: it is the bare id)
    let unresolved = by.keys().all(|(_, n)| !n.ends_with(')'));
    let lines = by
        .iter()
        .map(|((o, n), ps)| {
            const SHOWN: usize = 5;
            let mut l: Vec<String> = ps.iter().take(SHOWN).map(|p| p.to_string()).collect();
            if ps.len() > SHOWN {
                l.push(format!("and {} more", ps.len() - SHOWN));
            }
            format!(
                "{o} -> {n}: {}: {}",
                crate::plural(ps.len(), "file"),
                l.join(", ")
            )
        })
        .collect();
    (total, unresolved, lines)
}

fn touched<'a>(cx: &'a Context, p: &SysPath) -> Option<(&'a Entry, Option<&'a Entry>)> {
    cx.changes.iter().find_map(|c| match c {
        Change::Vanished(e) if &e.path == p => Some((e, None)),
        Change::Modified {
            old,
            new,
            content: true,
            ..
        } if &old.path == p => Some((old, Some(new))),
        _ => None,
    })
}

impl Check for SysFiles {
    fn name(&self) -> &'static str {
        "sysfiles"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let Some(base) = cx.baseline else {
            return Vec::new();
        };
        let rec = Recorded {
            manifest: base,
            store: cx.store,
        };
        let live = Live(cx.root);
        let mut out = Vec::new();
        for s in SPECS {
            let p = SysPath::new(s.path);
            let Some((_, new_e)) = touched(cx, &p) else {
                continue;
            };
            let vendor = s.vendor.map(SysPath::new);
            // the file the system reads on each side, and its text
            let read = |f: &dyn Files| -> (SysPath, String) {
                match (f.text(&p), &vendor) {
                    (Some(t), _) => (p.clone(), t),
                    (None, Some(v)) => match f.text(v) {
                        Some(t) => (v.clone(), t),
                        None => (p.clone(), String::new()),
                    },
                    (None, None) => (p.clone(), String::new()),
                }
            };
            let (old_from, old_text) = read(&rec);
            let (now_from, new_text) = read(&live);
            let old = (s.parse)(&old_text);
            let new = (s.parse)(&new_text);
            let diffs = compare(&old, &new);
            if diffs.is_empty() {
                continue; // comments or spacing only
            }
            // the content of a file others cannot read is never shown: on
            // each side, the file the text came from decides (with /etc's
            // gone, that is the vendor file, whose mode is its own)
            let secret = !super::recorded_readable(base, &old_from)
                || (!new_text.is_empty() && !super::live_readable(cx.root, &now_from));
            let msg = if secret {
                format!(
                    "{} changed: {} {} (not shown: not world-readable)",
                    s.path,
                    crate::plural(diffs.len(), "entry"),
                    if diffs.len() == 1 {
                        "differs"
                    } else {
                        "differ"
                    }
                )
            } else if new_e.is_none() && now_from != p {
                format!(
                    "{} vanished, {} are now read from {now_from}: {}",
                    s.path,
                    s.what,
                    diffs.join("; ")
                )
            } else if new_e.is_none() {
                format!("{} vanished: all {} are gone", s.path, s.what)
            } else if new.is_empty() {
                format!("{} was emptied: all {} are gone", s.path, s.what)
            } else {
                format!("{} changed: {}", s.what, diffs.join("; "))
            };
            // Without any users (or groups) nobody logs in, sudo and su
            // fail, daemons cannot start as their user: as bad as the
            // vanished admin's file the generic finding would have been.
            let sev = if s.names != Names::None && new.is_empty() && !old.is_empty() {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let (renamed, unresolved, lines) = renamed_owners(cx, s.names);
            let msg = if renamed > 0 {
                let whose = if s.names == Names::Users {
                    "owner"
                } else {
                    "group"
                };
                let how = if unresolved {
                    "no longer resolve"
                } else {
                    "changed with it"
                };
                format!(
                    "{msg} (the {whose} names of {} {how}; their ids did not change)",
                    crate::plural(renamed, "file")
                )
            } else {
                msg
            };
            // the files written with it that changed since as well
            let along: Vec<SysPath> = s
                .companions
                .iter()
                .map(SysPath::new)
                .filter(|c| matches!(touched(cx, c), Some((_, Some(_)))))
                .collect();
            let msg = if along.is_empty() {
                msg
            } else {
                let names: Vec<String> = along.iter().map(|c| c.to_string()).collect();
                format!(
                    "{msg} ({} changed with it)",
                    if names.len() == 1 {
                        names[0].clone()
                    } else {
                        names.join(" and ")
                    }
                )
            };
            let mut paths: Vec<&SysPath> = vec![&p];
            paths.extend(along.iter());
            let restore: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            let mut f = Finding::new(s.id, sev, &paths, msg).fix(format!(
                "guard diff; guard restore {} if the change was not intended",
                restore.join(" ")
            ));
            if !lines.is_empty() {
                f = f.detail(lines.join("\n"));
            }
            if !secret {
                for (k, (line, v)) in &new {
                    if old.get(k).map(|o| &o.1) != Some(v) {
                        f = f.evidence(super::line_evidence(
                            &now_from,
                            *line,
                            v,
                            format!("{k} now"),
                        ));
                    }
                }
            }
            out.push(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nss_sources_compare() {
        let a = nss("passwd: files sss\ngroup:  files sss # x\n");
        let b = nss("passwd: files\ngroup: files sss\nhosts: files dns\n");
        assert_eq!(
            compare(&a, &b),
            ["passwd: files sss -> files", "hosts added: files dns"]
        );
    }

    #[test]
    fn accounts_show_no_hash_and_fstab_keys_by_mountpoint() {
        let a = accounts(
            "root:x:0:0::/root:/bin/bash\nmail:$6$HASH:8:12:Mail Person:/:/bin/false\n",
            true,
        );
        let b = accounts("root:x:0:0::/root:/bin/bash\n", true);
        assert_eq!(
            compare(&a, &b),
            ["mail removed (was: uid 8 gid 12 home / shell /bin/false)"]
        );
        assert!(!format!("{a:?}").contains("HASH") && !format!("{a:?}").contains("Person"));
        let f = fstab("# c\nUUID=1 / ext4 defaults 0 1\n/dev/vdb /srv xfs noatime 0 0\n");
        assert_eq!(f["/srv"].0, 3);
    }

    #[test]
    fn a_second_swap_area_does_not_hide_the_first() {
        let a = fstab("/dev/sda2 none swap sw 0 0\n/dev/sdb2 none swap sw 0 0\n");
        let b = fstab("/dev/sdb2 none swap sw 0 0\n");
        assert_eq!(
            compare(&a, &b),
            ["swap /dev/sda2 removed (was: /dev/sda2 none swap sw 0 0)"]
        );
    }

    #[test]
    fn group_members_and_login_shells_count() {
        let a = accounts("mail:x:12:postfix,dovecot\nwheel:x:10:alice\n", false);
        let b = accounts("mail:x:12:dovecot,postfix\nwheel:x:10:\n", false);
        assert_eq!(
            compare(&a, &b),
            ["wheel: gid 10 members alice -> gid 10"],
            "member order is not a change"
        );
        let a = accounts("cyrus:x:96:12::/var/lib/imap:/bin/sh\n", true);
        let b = accounts("cyrus:x:96:12::/var/lib/imap:/usr/sbin/nologin\n", true);
        assert_eq!(compare(&a, &b).len(), 1);
    }
}
