//! `pkg/pending-merge`: configuration the package manager set aside
//! (`.pacnew`, `.rpmnew`, `.dpkg-dist`, …) that appeared or was rewritten
//! since the baseline and waits for the admin to merge it, with a diff
//! against the active file.

use super::{Check, Context};
use crate::diff::{self, Change};
use crate::report::{Finding, Severity};
use crate::store::{Entry, FileKind};
use crate::sysroot::SysPath;

pub struct Merges;

/// (suffix, the file holds the *new* version, hint)
const SUFFIXES: &[(&str, bool, &str)] = &[
    (".pacnew", true, "pacdiff (pacman-contrib) merges it"),
    (
        ".pacsave",
        false,
        "pacdiff (pacman-contrib) shows what was saved",
    ),
    (".rpmnew", true, "rpmconf -a merges it"),
    (".rpmsave", false, "rpmconf -a shows what was saved"),
    (".dpkg-dist", true, "merge by hand, then remove it"),
    (
        ".dpkg-new",
        true,
        "an unpacked but unconfigured package: dpkg --configure -a",
    ),
    (
        ".dpkg-old",
        false,
        "your old version: merge by hand, then remove it",
    ),
    (".ucf-dist", true, "merge by hand (ucf), then remove it"),
];

/// The suffix entry and the active path for a merge file.
pub fn classify(p: &SysPath) -> Option<(&'static (&'static str, bool, &'static str), SysPath)> {
    let name = p.file_name();
    SUFFIXES.iter().find_map(|s| {
        let base = name.strip_suffix(s.0.as_bytes())?;
        (!base.is_empty()).then(|| (s, p.parent().unwrap_or_else(SysPath::root).join(base)))
    })
}

fn finding(cx: &Context, e: &Entry) -> Option<Finding> {
    let (s, active) = classify(&e.path)?;
    let (_, is_new, hint) = *s;
    let msg = if is_new {
        format!("{} waits to be merged into {active}", e.path)
    } else {
        format!("{} keeps the old version of {active}", e.path)
    };
    let mut f = Finding::new("pkg/pending-merge", Severity::Warning, &[&e.path], msg).fix(format!(
        "{hint}, or: diff -u {active} {}, merge, then remove {}",
        e.path, e.path
    ));
    // Both files are read as the system resolves them: the active file is
    // often a symlink (mode 0777 itself) to a private file, so its own
    // entry cannot vouch for what it leads to; judge where it really is,
    // live and in the snapshot (as for any quoted content).
    let readable = cx.live.world_readable(e)
        && super::may_quote(cx, &e.path)
        && (!cx.root.exists(&active) || super::may_quote(cx, &active));
    f.detail = Some(if !readable {
        "content not shown: the file is not world-readable".into()
    } else {
        let cur = cx.root.read_follow(&active).ok().flatten();
        let other = cx.root.read_follow(&e.path).ok().flatten();
        match (cur, other) {
            (Some(a), Some(b)) => {
                let (old, new, on, nn) = if is_new {
                    (a, b, active.to_string(), e.path.to_string())
                } else {
                    (b, a, e.path.to_string(), active.to_string())
                };
                diff::unified(&old, &new, &on, &nn)
                    .unwrap_or_else(|| "binary content differs".into())
            }
            (None, Some(_)) => format!("{active} does not exist"),
            _ => "cannot read the files".into(),
        }
    });
    Some(f)
}

impl Check for Merges {
    fn name(&self) -> &'static str {
        "merges"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let mut out = Vec::new();
        match cx.baseline {
            Some(_) => {
                for c in cx.changes {
                    // a merge file the upgrade wrote anew over one already
                    // waiting (pacman and rpm overwrite it) holds another
                    // version to merge, not an admin's edit
                    let e = match c {
                        Change::Added(e) => e,
                        Change::Modified {
                            new, content: true, ..
                        } => new,
                        _ => continue,
                    };
                    if e.kind == FileKind::File {
                        out.extend(finding(cx, e));
                    }
                }
            }
            // no baseline: every merge file waiting is worth saying
            None => {
                for e in &cx.live.entries {
                    if e.kind == FileKind::File {
                        out.extend(finding(cx, e));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_suffix() {
        let (s, a) = classify(&SysPath::new("/etc/ssh/sshd_config.pacnew")).unwrap();
        assert_eq!(s.0, ".pacnew");
        assert_eq!(a, SysPath::new("/etc/ssh/sshd_config"));
        let (s, a) = classify(&SysPath::new("/etc/pam.d/imap.rpmsave")).unwrap();
        assert!(!s.1);
        assert_eq!(a, SysPath::new("/etc/pam.d/imap"));
        assert!(classify(&SysPath::new("/etc/default/grub.ucf-dist")).is_some());
        assert!(classify(&SysPath::new("/etc/.pacnew")).is_none());
        assert!(classify(&SysPath::new("/etc/motd")).is_none());
    }
}
