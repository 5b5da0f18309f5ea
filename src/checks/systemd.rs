//! systemd units: `systemd/unit-disabled` (enabled in the snapshot, not
//! now, or masked since), `systemd/dropin-vanished` (an `*.d/*.conf` override lost) and
//! `systemd/hardening-lost` (incident 6: a unit replaced or an override
//! dropped, and `AmbientCapabilities=`, `ProtectSystem=` … no longer apply).
//! Also finds the units whose `ExecStart` runs a binary (for `caps/*`).

use std::collections::{BTreeMap, BTreeSet};

use super::{line_evidence, Check, Context, Files, Live, Recorded};
use crate::diff::{self, Change};
use crate::report::{Evidence, Finding, Severity};
use crate::store::{FileKind, Manifest};
use crate::sysroot::SysPath;

pub struct Systemd;

/// Unit dirs, highest priority first.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Directives that confine a service. Losing any of them runs it with more
/// power than it was given: `DynamicUser=` lost means root, `PrivateNetwork=`
/// lost means the network, the `Protect*`/`Restrict*` ones what the sandbox
/// kept from the kernel (guard's own units set most of them, see units.rs).
pub const HARDENING: &[&str] = &[
    "User",
    "Group",
    "DynamicUser",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateUsers",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "IPAddressDeny",
    "RestrictNamespaces",
    "RestrictSUIDSGID",
    "RestrictRealtime",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "LockPersonality",
    "MemoryDenyWriteExecute",
];

/// Directives whose assignments add up (an empty one resets the list).
const LISTS: &[&str] = &[
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "IPAddressDeny",
];

/// Where a directive got its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: SysPath,
    pub line: usize,
    pub text: String,
}

/// The hardening a unit ends up with: directive → (value, where set).
pub type Hardening = BTreeMap<String, (String, Vec<Source>)>;

/// The unit file and its drop-ins, in the order systemd applies them.
pub fn unit_files(files: &dyn Files, unit: &str) -> Vec<SysPath> {
    let mut out = Vec::new();
    if let Some(p) = UNIT_DIRS
        .iter()
        .map(|d| SysPath::new(d).join(unit))
        .find(|p| files.text(p).is_some())
    {
        out.push(p);
    }
    // drop-ins: by file name across dirs, the higher-priority dir wins,
    // applied in lexical order of the name
    let mut dropins: BTreeMap<Vec<u8>, SysPath> = BTreeMap::new();
    for d in UNIT_DIRS.iter().rev() {
        let dir = SysPath::new(d).join(format!("{unit}.d"));
        for n in files.names(&dir) {
            if n.ends_with(b".conf") {
                let p = dir.join(&n);
                dropins.insert(n, p);
            }
        }
    }
    out.extend(dropins.into_values());
    out
}

fn falsy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        // `default`: ProtectProc= without hardening
        "" | "no" | "false" | "0" | "off" | "root" | "default"
    )
}

/// Computes the hardening directives of a unit.
pub fn hardening(files: &dyn Files, unit: &str) -> Hardening {
    let mut h: Hardening = BTreeMap::new();
    for p in unit_files(files, unit) {
        let Some(text) = files.text(&p) else { continue };
        let mut section = String::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.starts_with('[') {
                section = l.to_string();
                continue;
            }
            if section != "[Service]" || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if !HARDENING.contains(&k) {
                continue;
            }
            let src = Source {
                path: p.clone(),
                line: i + 1,
                text: raw.to_string(),
            };
            let e = h.entry(k.to_string()).or_default();
            if LISTS.contains(&k) && !v.is_empty() {
                if !e.0.is_empty() {
                    e.0.push(' ');
                }
                e.0.push_str(v);
                e.1.push(src);
            } else {
                *e = (v.to_string(), vec![src]);
            }
        }
    }
    h.retain(|_, (v, _)| !falsy(v));
    h
}

/// Units whose `Exec*=` lines run `binary` (as the program or as an
/// argument, e.g. an interpreter's script).
pub fn units_running(files: &dyn Files, binary: &SysPath) -> Vec<(String, Evidence)> {
    let want = binary.to_string();
    let mut out: Vec<(String, Evidence)> = Vec::new();
    let mut seen = BTreeSet::new();
    for d in UNIT_DIRS {
        let dir = SysPath::new(d);
        for n in files.list(&dir) {
            if !n.ends_with(".service") || !seen.insert(n.clone()) {
                continue;
            }
            for p in unit_files(files, &n) {
                let Some(text) = files.text(&p) else { continue };
                for (i, raw) in text.lines().enumerate() {
                    let l = raw.trim();
                    let Some((k, v)) = l.split_once('=') else {
                        continue;
                    };
                    if !k.trim().starts_with("Exec") {
                        continue;
                    }
                    let hit = v
                        .split_whitespace()
                        .any(|t| t.trim_start_matches(['@', '-', ':', '+', '!']) == want);
                    if hit && !out.iter().any(|(u, _)| *u == n) {
                        out.push((
                            n.clone(),
                            line_evidence(&p, i + 1, raw, format!("{n} runs it")),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The `/etc/systemd/system` entry that masks `unit` in `m`, if any: a
/// symlink to `/dev/null` or an empty file (systemd treats both as masked),
/// named after the unit or, for an instance (`getty@tty1.service`), after
/// its template (`getty@.service`), which masks every instance.
fn mask(m: &Manifest, unit: &str) -> Option<SysPath> {
    let mut names = vec![unit.to_string()];
    if let Some((prefix, rest)) = unit.split_once('@') {
        if let Some((_, suffix)) = rest.rsplit_once('.') {
            names.push(format!("{prefix}@.{suffix}"));
        }
    }
    names
        .iter()
        .map(|n| SysPath::new("/etc/systemd/system").join(n))
        .find(|p| {
            m.entry(p).is_some_and(|e| match e.kind {
                FileKind::Symlink => e.target.as_ref().is_some_and(|t| t.0 == b"/dev/null"),
                FileKind::File => e.size == 0,
                _ => false,
            })
        })
}

/// The unit file systemd loads for `unit` in `m` (the first unit dir that
/// has it, or for an instance its template), a link followed within `m`.
fn unit_file_in(m: &Manifest, unit: &str) -> Option<SysPath> {
    let mut names = vec![unit.to_string()];
    if let Some((prefix, rest)) = unit.split_once('@') {
        if let Some((_, suffix)) = rest.rsplit_once('.') {
            names.push(format!("{prefix}@.{suffix}"));
        }
    }
    names.iter().find_map(|n| {
        UNIT_DIRS
            .iter()
            .map(|d| SysPath::new(d).join(n))
            .find(|p| super::recorded_file(m, p).is_some())
    })
}

/// Units still enabled (their `*.wants/` link is there) whose unit file
/// vanished: systemd finds no unit by that name and starts nothing, while
/// every enablement list still names it. A package that renames its unit
/// (cyrus-imapd's `cyrus.service` became `cyrus-imapd.service` in Leap
/// 15) leaves exactly this: the admin's link to the old name, and the new
/// unit not enabled. One finding for the links and the vanished file,
/// naming the units the same package ships now that nothing enables.
fn unit_files_gone(cx: &Context, base: &Manifest) -> Vec<Finding> {
    let mut by_unit: BTreeMap<&str, Vec<&SysPath>> = BTreeMap::new();
    for u in &base.units {
        let still = cx
            .live
            .units
            .iter()
            .any(|n| n.unit == u.unit && n.link == u.link);
        if still {
            by_unit.entry(u.unit.as_str()).or_default().push(&u.link);
        }
    }
    let enabled_now: BTreeSet<&str> = cx.live.units.iter().map(|u| u.unit.as_str()).collect();
    let gone: Vec<(&str, Vec<&SysPath>, SysPath)> = by_unit
        .into_iter()
        .filter_map(|(unit, links)| {
            // masked (now or then) it does not start either way: the mask
            // has its own finding
            if mask(cx.live, unit).is_some() || mask(base, unit).is_some() {
                return None;
            }
            // a unit file outside the dirs guard records is not compared
            let file = unit_file_in(base, unit)?;
            unit_file_in(cx.live, unit)
                .is_none()
                .then_some((unit, links, file))
        })
        .collect();
    if gone.is_empty() {
        return Vec::new();
    }
    // whether the packages dropped the files: the live database, read for
    // these paths only (it proves nothing when it cannot be read)
    let files: Vec<SysPath> = gone.iter().map(|(_, _, f)| f.clone()).collect();
    let live_db = super::files::live_owners_of_targets(std::iter::empty(), cx.root, &files);
    let mut out = Vec::new();
    for (unit, links, file) in gone {
        let Some(e) = base.entry(&file) else { continue };
        let dropped = live_db
            .as_ref()
            .map(|live| crate::restore::dropped_by(e, base, live))
            .unwrap_or_default();
        // the units the packages that dropped it ship now and nothing enables
        let successors: Vec<String> = cx
            .live
            .entries
            .iter()
            .filter(|n| {
                n.kind == FileKind::File
                    && n.owners
                        .iter()
                        .any(|o| dropped.iter().any(|c| c.package == *o))
                    && UNIT_DIRS
                        .iter()
                        .any(|d| n.path.parent() == Some(SysPath::new(d)))
                    && base.entry(&n.path).is_none()
            })
            .map(|n| String::from_utf8_lossy(n.path.file_name()).into_owned())
            .filter(|n| n.ends_with(".service") && !enabled_now.contains(n.as_str()))
            .collect();
        let why = if !dropped.is_empty() {
            let how: Vec<String> = dropped.iter().map(|c| c.to_string()).collect();
            format!("dropped by {}", how.join(", "))
        } else if e.owners.is_empty() {
            "owned by no package".to_string()
        } else {
            format!("owned by {}", e.owners.join(", "))
        };
        let mut msg = format!(
            "{unit} will not start: its unit file {file} vanished ({why}), though {} still \
             {} it",
            links
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if links.len() == 1 {
                "enables"
            } else {
                "enable"
            }
        );
        if !successors.is_empty() {
            let pkgs: Vec<&str> = dropped.iter().map(|c| c.package.as_str()).collect();
            msg.push_str(&format!(
                "; {} now ships {}, not enabled",
                pkgs.join(", "),
                successors.join(", ")
            ));
        }
        let rm = links
            .iter()
            .map(|l| crate::exec::shell_quote(l.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ");
        let fix = match successors.as_slice() {
            // deleted, not dropped: the file is what was lost
            _ if dropped.is_empty() => format!(
                "guard restore {}; systemctl daemon-reload",
                crate::exec::shell_quote(file.as_bytes())
            ),
            [one] => format!("systemctl enable {one}; rm {rm}"),
            [] => format!("enable the unit that replaces {unit}, then rm {rm}"),
            _ => format!(
                "enable the one of {} that replaces {unit}, then rm {rm}",
                successors.join(", ")
            ),
        };
        let mut paths = links.clone();
        paths.push(&file);
        out.push(Finding::new("systemd/unit-disabled", Severity::Warning, &paths, msg).fix(fix));
    }
    out
}

fn is_dropin(p: &SysPath) -> bool {
    let Some(parent) = p.parent() else {
        return false;
    };
    p.file_name().ends_with(b".conf")
        && parent.file_name().ends_with(b".d")
        && UNIT_DIRS
            .iter()
            .any(|d| parent.parent() == Some(SysPath::new(d)))
}

fn unit_of_dropin(p: &SysPath) -> String {
    let parent = p.parent().unwrap_or_else(SysPath::root);
    let n = String::from_utf8_lossy(parent.file_name()).into_owned();
    n.trim_end_matches(".d").to_string()
}

impl Check for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let Some(base) = cx.baseline else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Masked since the snapshot: the unit's `.wants` link may still be
        // there, so it looks enabled, but systemd will not start it; only
        // the mask link itself would show, as an info `file/added`.
        let masked_now = |unit: &str| mask(cx.live, unit).filter(|_| mask(base, unit).is_none());
        for u in diff::units_disabled(base, cx.live) {
            // `systemctl enable` refuses a masked unit
            let fix = match masked_now(&u.unit) {
                Some(m) => format!(
                    "systemctl unmask {} && systemctl enable {}",
                    String::from_utf8_lossy(m.file_name()),
                    u.unit
                ),
                None => format!("systemctl enable {}", u.unit),
            };
            out.push(
                Finding::new(
                    "systemd/unit-disabled",
                    Severity::Warning,
                    &[&u.link],
                    format!(
                        "{} is no longer enabled (was wanted by {})",
                        u.unit, u.wanted_by
                    ),
                )
                .fix(fix),
            );
        }
        out.extend(unit_files_gone(cx, base));
        let mut seen = BTreeSet::new();
        for u in &base.units {
            let Some(m) = masked_now(&u.unit) else {
                continue;
            };
            if !seen.insert(m.clone()) {
                continue; // one finding per mask, however many links
            }
            let name = String::from_utf8_lossy(m.file_name()).into_owned();
            let how = if cx
                .live
                .entry(&m)
                .is_some_and(|e| e.kind == FileKind::Symlink)
            {
                "linked to /dev/null"
            } else {
                "an empty unit file"
            };
            out.push(
                Finding::new(
                    "systemd/unit-disabled",
                    Severity::Warning,
                    &[&m],
                    format!(
                        "{} is masked ({m} is {how}): systemd will not start it, though it was \
                         enabled (wanted by {})",
                        u.unit, u.wanted_by
                    ),
                )
                .fix(format!(
                    "systemctl unmask {name}; systemctl start {}",
                    u.unit
                )),
            );
        }
        let before = Recorded {
            manifest: base,
            store: cx.store,
        };
        let live = Live(cx.root);
        // Hardening comes only from files in the unit dirs, which are all in
        // the snapshot's scope: when none of them changed, no unit can have
        // lost any, and re-reading ~200 units twice is skipped.
        let unit_dirs: Vec<SysPath> = UNIT_DIRS.iter().map(SysPath::new).collect();
        let touched = cx
            .changes
            .iter()
            .any(|c| unit_dirs.iter().any(|d| c.path().starts_with(d)));
        // units to judge: every service with a file or drop-in in the snapshot
        let mut units: BTreeSet<String> = BTreeSet::new();
        for e in base.entries.iter().filter(|_| touched) {
            if let Some(parent) = e.path.parent() {
                let n = String::from_utf8_lossy(e.path.file_name()).into_owned();
                if UNIT_DIRS.iter().any(|d| parent == SysPath::new(d)) && n.ends_with(".service") {
                    units.insert(n);
                } else if is_dropin(&e.path) {
                    units.insert(unit_of_dropin(&e.path));
                }
            }
        }
        let mut lost_by_unit: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for unit in &units {
            if mask(cx.live, unit).is_some() {
                // it does not run at all (said above when that is new); an
                // empty mask file would also hide the vendor unit's lines
                continue;
            }
            let old = hardening(&before, unit);
            if old.is_empty() {
                continue;
            }
            let new = hardening(&live, unit);
            let mut lost = Vec::new();
            let mut evidence = Vec::new();
            for (k, (v, srcs)) in &old {
                let now = new.get(k).map(|(v, _)| v.as_str());
                if now == Some(v.as_str()) {
                    continue;
                }
                lost.push(match now {
                    None => format!("{k}={v}"),
                    Some(n) => format!("{k}={v} (now {n})"),
                });
                for s in srcs {
                    evidence.push(line_evidence(
                        &s.path,
                        s.line,
                        &s.text,
                        if cx.root.exists(&s.path) {
                            "set here in the snapshot"
                        } else {
                            "set here in the snapshot; the file is gone"
                        },
                    ));
                }
            }
            if lost.is_empty() {
                continue;
            }
            lost_by_unit.insert(unit.clone(), lost.clone());
            let unit_path = unit_files(&live, unit)
                .into_iter()
                .next()
                .unwrap_or_else(|| SysPath::new("/etc/systemd/system").join(unit));
            let mut f = Finding::new(
                "systemd/hardening-lost",
                Severity::Warning,
                &[&unit_path],
                format!("{unit} lost its hardening: {}", lost.join(", ")),
            )
            .fix(format!(
                "put the lost lines back in a drop-in: systemctl edit {unit} (or guard restore the \
                 override), then systemctl daemon-reload && systemctl restart {unit}"
            ));
            f.evidence = evidence;
            out.push(f);
        }
        for c in cx.changes {
            let Change::Vanished(e) = c else { continue };
            if e.kind != FileKind::File || !is_dropin(&e.path) {
                continue;
            }
            let unit = unit_of_dropin(&e.path);
            let mut msg = format!("override {} of {unit} vanished", e.path);
            if let Some(l) = lost_by_unit.get(&unit) {
                msg.push_str(&format!(" (hardening lost: {})", l.join(", ")));
            }
            out.push(
                Finding::new(
                    "systemd/dropin-vanished",
                    Severity::Warning,
                    &[&e.path],
                    msg,
                )
                .fix(format!("guard restore {}; systemctl daemon-reload", e.path)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::SysRoot;

    #[test]
    fn dropins_override_and_lists_reset() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system/web.service.d")).unwrap();
        std::fs::create_dir_all(r.join("etc/systemd/system/web.service.d")).unwrap();
        std::fs::write(
            r.join("usr/lib/systemd/system/web.service"),
            "[Unit]\nUser=nobody\n[Service]\nExecStart=/usr/bin/web --port 80\nUser=web\n\
             CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nPrivateTmp=yes\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/systemd/system/web.service.d/10-harden.conf"),
            "[Service]\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_CHOWN\nPrivateTmp=no\n\
             NoNewPrivileges=true\n",
        )
        .unwrap();
        let root = SysRoot::open(r).unwrap();
        let live = Live(&root);
        let h = hardening(&live, "web.service");
        assert_eq!(h["User"].0, "web");
        assert_eq!(h["CapabilityBoundingSet"].0, "CAP_CHOWN");
        assert!(!h.contains_key("PrivateTmp"), "reset by the drop-in");
        assert_eq!(h["NoNewPrivileges"].1[0].line, 5);
        let users = units_running(&live, &SysPath::new("/usr/bin/web"));
        assert_eq!(users[0].0, "web.service");
        assert_eq!(users[0].1.line, Some(4));
    }
}
