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

/// `name:x:uid:…` → name → `uid gid` (nothing else of the line).
pub fn accounts(text: &str, with_gid: bool) -> Table {
    let mut t = Table::new();
    for (i, l) in text.lines().enumerate() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 && !f[0].starts_with('#') && !f[0].is_empty() {
            let id = if with_gid && f.len() > 3 {
                format!("uid {} gid {}", f[2], f[3])
            } else if with_gid {
                format!("uid {}", f[2])
            } else {
                format!("gid {}", f[2])
            };
            t.insert(f[0].to_string(), (i + 1, id));
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

struct Spec {
    path: &'static str,
    id: &'static str,
    what: &'static str,
    parse: fn(&str) -> Table,
}

const SPECS: &[Spec] = &[
    Spec {
        path: "/etc/nsswitch.conf",
        id: "nss/changed",
        what: "name service sources",
        parse: nss,
    },
    Spec {
        path: "/etc/crypttab",
        id: "storage/crypttab-changed",
        what: "encrypted volumes",
        parse: |t| table(t, 0),
    },
    Spec {
        path: "/etc/fstab",
        id: "storage/fstab-changed",
        what: "mounts",
        parse: |t| table(t, 1),
    },
    Spec {
        path: "/etc/passwd",
        id: "accounts/changed",
        what: "users",
        parse: |t| accounts(t, true),
    },
    Spec {
        path: "/etc/group",
        id: "accounts/changed",
        what: "groups",
        parse: |t| accounts(t, false),
    },
];

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
            let Some((old_e, new_e)) = touched(cx, &p) else {
                continue;
            };
            let old = (s.parse)(&rec.text(&p).unwrap_or_default());
            let new = (s.parse)(&live.text(&p).unwrap_or_default());
            let diffs = compare(&old, &new);
            if diffs.is_empty() {
                continue; // comments or spacing only
            }
            // the content of a file others cannot read is never shown
            let secret =
                !old_e.is_world_readable() || new_e.is_some_and(|n| !n.is_world_readable());
            let msg = if secret {
                format!(
                    "{} changed: {} entries differ (not shown: not world-readable)",
                    s.path,
                    diffs.len()
                )
            } else if new_e.is_none() {
                format!("{} vanished: all {} are gone", s.path, s.what)
            } else {
                format!("{} changed: {}", s.what, diffs.join("; "))
            };
            let mut f = Finding::new(s.id, Severity::Warning, &[&p], msg).fix(format!(
                "guard diff; guard restore {} if the change was not intended",
                s.path
            ));
            if !secret {
                for (k, (line, v)) in &new {
                    if old.get(k).map(|o| &o.1) != Some(v) {
                        f = f.evidence(super::line_evidence(&p, *line, v, format!("{k} now")));
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
            "root:x:0:0::/root:/bin/bash\nmail:x:8:12::/:/bin/false\n",
            true,
        );
        let b = accounts("root:x:0:0::/root:/bin/bash\n", true);
        assert_eq!(compare(&a, &b), ["mail removed (was: uid 8 gid 12)"]);
        let f = table(
            "# c\nUUID=1 / ext4 defaults 0 1\n/dev/vdb /srv xfs noatime 0 0\n",
            1,
        );
        assert_eq!(f["/srv"].0, 3);
    }
}
