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
    (
        ".ucf-new",
        true,
        "the package's new version (ucf): merge by hand, then remove it",
    ),
    (
        ".ucf-old",
        false,
        "your old version (ucf): merge by hand, then remove it",
    ),
    // dpkg-maintscript-helper rm_conffile / mv_conffile: a conffile the
    // admin modified, which the new version drops or moves, is set aside
    // under this name instead of removed
    (
        ".dpkg-bak",
        false,
        "your modified version, set aside by dpkg: carry its settings over to \
         where the new version reads them, then remove it",
    ),
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
    // The old version set aside while the file itself is gone (dpkg's
    // `.dpkg-bak` of a conffile the new version dropped: Debian 13's procps
    // no longer ships /etc/sysctl.conf, and the admin's edited one is
    // moved away): the admin's settings no longer apply at all. That is
    // the damage, and this finding is the one for both paths.
    let gone = !is_new
        && !cx.root.exists(&active)
        && cx
            .baseline
            .is_none_or(|b| b.entry(&active).is_some_and(|a| a.kind != FileKind::Dir));
    // A PAM file the new version moved to a vendor dir: `pam/moved-to-vendor`
    // says what PAM reads now and names this copy; one finding, not two.
    if gone && cx.baseline.is_some() && super::pam::vendor_copy(cx, &active).is_some() {
        return None;
    }
    let msg = if gone {
        format!(
            "{active} is gone and its old version was set aside as {}: \
             the settings in it no longer apply",
            e.path
        )
    } else if is_new {
        format!("{} waits to be merged into {active}", e.path)
    } else if cx.root.exists(&active) {
        // rpm writes `.rpmsave` beside a plain %config file it replaced
        // because it was edited (cyrus-imapd's /etc/cyrus.conf); dpkg's
        // `.dpkg-old` is the admin's version when the maintainer's was
        // taken: the edits are no longer what the service reads
        format!(
            "{active} was replaced by the package's version; the one it replaced is kept \
             as {}: the changes made to it no longer apply",
            e.path
        )
    } else {
        format!("{} keeps the old version of {active}", e.path)
    };
    // the active file's own finding (`file/modified`: the package changed
    // it) is this damage told again: one finding for both paths
    let paths: Vec<&SysPath> =
        if cx.baseline.is_some() && (gone || (!is_new && cx.root.exists(&active))) {
            vec![&e.path, &active]
        } else {
            vec![&e.path]
        };
    let fix = if gone {
        format!("{hint} ({})", crate::exec::shell_quote(e.path.as_bytes()))
    } else {
        format!(
            "{hint}, or: diff -u {active} {}, merge, then remove {}",
            e.path, e.path
        )
    };
    let mut f = Finding::new("pkg/pending-merge", Severity::Warning, &paths, msg).fix(fix);
    // a version waiting to be merged is work to do; settings that no
    // longer apply (`gone`, or an edited file the package's version
    // replaced) are damage done
    let replaced = !is_new && cx.baseline.is_some() && cx.root.exists(&active);
    if !gone && !replaced {
        f = f.todo();
    }
    // Both files are read as the system resolves them: the active file is
    // often a symlink (mode 0777 itself) to a private file, so its own
    // entry cannot vouch for what it leads to; judge where it really is,
    // live and in the snapshot (as for any quoted content).
    let readable = cx.live.world_readable(e)
        && super::may_quote(cx, &e.path)
        && (!cx.root.exists(&active) || super::may_quote(cx, &active));
    f.detail = Some(if !readable {
        "content not shown: the file is not world-readable".into()
    } else if gone {
        // what no longer applies: its settings, not its comments
        let text = cx
            .root
            .read_follow(&e.path)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let set: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .collect();
        if set.is_empty() {
            format!("{} sets nothing (only comments)", e.path)
        } else {
            format!(
                "settings in {} that no longer apply:\n{}",
                e.path,
                set.join("\n")
            )
        }
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
        let (s, a) = classify(&SysPath::new("/etc/sysctl.conf.dpkg-bak")).unwrap();
        assert!(!s.1);
        assert_eq!(a, SysPath::new("/etc/sysctl.conf"));
        assert!(classify(&SysPath::new("/etc/x.ucf-old")).is_some_and(|(s, _)| !s.1));
        assert!(classify(&SysPath::new("/etc/x.ucf-new")).is_some_and(|(s, _)| s.1));
        assert!(classify(&SysPath::new("/etc/.pacnew")).is_none());
        assert!(classify(&SysPath::new("/etc/motd")).is_none());
    }
}
