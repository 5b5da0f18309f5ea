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
    names.extend(template_of(unit));
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

/// The template of an instance (`getty@tty1.service` -> `getty@.service`).
fn template_of(unit: &str) -> Option<String> {
    let (prefix, rest) = unit.split_once('@')?;
    let (inst, suffix) = rest.rsplit_once('.')?;
    (!inst.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// The unit file systemd loads for `unit`: by its name in the first unit
/// dir that has it, else (an instance) its template's.
fn unit_file(files: &dyn Files, unit: &str) -> Option<SysPath> {
    let mut names = vec![unit.to_string()];
    names.extend(template_of(unit));
    names.iter().find_map(|n| {
        UNIT_DIRS
            .iter()
            .map(|d| SysPath::new(d).join(n))
            .find(|p| files.text(p).is_some())
    })
}

/// The program of a unit file's first `ExecStart=` (prefixes like `-` and
/// `@` stripped).
fn exec_start(files: &dyn Files, p: &SysPath) -> Option<String> {
    let text = files.text(p)?;
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k.trim() == "ExecStart")
            .then(|| v.split_whitespace().next())
            .flatten()
            .map(|t| t.trim_start_matches(['@', '-', ':', '+', '!']).to_string())
            .filter(|t| !t.is_empty())
    })
}

/// A unit whose unit file the snapshot had and the root no longer has
/// (not masked: a mask says more and is reported as such).
struct Gone {
    /// the unit file as the snapshot had it
    old: SysPath,
    /// what the packages owning it did (`mailgate 1.0-1 -> 2.0-1`,
    /// `mailgate removed`); empty when no package changed
    by: Vec<crate::pkg::VersionChange>,
    /// the packages that still ship it: someone else deleted it
    kept_by: Vec<String>,
    /// units that took its place: (name, unit file)
    successors: Vec<(String, SysPath)>,
}

impl Gone {
    /// `mailgate 1.0-1 -> 2.0-1 no longer ships it`, `mailgate was
    /// removed`; empty when no owning package changed.
    fn by(&self, what: &str) -> String {
        let by: Vec<String> = self
            .by
            .iter()
            .map(|c| match c.to {
                Some(_) => format!("{c} no longer ships {what}"),
                None => format!("{} was removed", c.package),
            })
            .collect();
        by.join(", ")
    }

    fn successor_names(&self) -> String {
        let names: Vec<&str> = self.successors.iter().map(|(n, _)| n.as_str()).collect();
        names.join(" and ")
    }

    /// The successors as `systemctl` arguments.
    fn successor_names_list(&self) -> String {
        let names: Vec<&str> = self.successors.iter().map(|(n, _)| n.as_str()).collect();
        names.join(" ")
    }
}

/// Whether `unit`'s unit file is gone since the snapshot, and what came in
/// its place. A package that renames a unit (`mailgate.service` ->
/// `mailgated.service`) leaves the admin's `*.wants/` link to the old name
/// dangling and their `mailgate.service.d/` override applying to nothing,
/// while the new unit runs the same program without either: a successor
/// is a unit of the same type added since the snapshot that a package
/// owning the old unit file ships, or whose `Exec*=` runs the program the
/// old unit's `ExecStart=` ran.
fn gone(cx: &Context, base: &Manifest, before: &dyn Files, unit: &str) -> Option<Gone> {
    let live = Live(cx.root);
    if unit_file(&live, unit).is_some() || mask(cx.live, unit).is_some() {
        return None;
    }
    let old = unit_file(before, unit)?;
    let entry = super::recorded_file(base, &old);
    let owners = entry.map(|e| e.owners.clone()).unwrap_or_default();
    // whether its packages dropped it or still ship it (then someone
    // deleted it): the live database, read for this path only, says; one
    // that cannot be read proves neither
    let live_db = (!owners.is_empty())
        .then(|| {
            super::files::live_owners_of_targets(
                std::iter::empty(),
                cx.root,
                std::slice::from_ref(&old),
            )
        })
        .flatten();
    let (by, kept_by) = match (entry, &live_db) {
        (Some(e), Some(db)) => {
            let now = db.owners_of(&old);
            let kept: Vec<String> = owners.iter().filter(|o| now.contains(o)).cloned().collect();
            (super::files::dropped_by(e, base, db), kept)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let program = exec_start(before, &old).map(SysPath::new);
    let suffix = unit.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
    let mut successors: Vec<(String, SysPath, bool)> = Vec::new();
    for c in cx.changes {
        let Change::Added(e) = c else { continue };
        let Some(parent) = e.path.parent() else {
            continue;
        };
        let name = String::from_utf8_lossy(e.path.file_name()).into_owned();
        if !UNIT_DIRS.iter().any(|d| parent == SysPath::new(d))
            || name.rsplit_once('.').map(|(_, s)| s) != Some(suffix)
            || name.contains('@') != unit.contains('@')
            || successors.iter().any(|(n, _, _)| *n == name)
        {
            continue;
        }
        let same_package = e.owners.iter().any(|o| owners.contains(o));
        let same_program = program
            .as_ref()
            .is_some_and(|prog| units_running(&live, prog).iter().any(|(n, _)| *n == name));
        if same_package || same_program {
            successors.push((name, e.path.clone(), same_program));
        }
    }
    // a package that adds other services besides the renamed one: the
    // one running the same program is the successor
    if successors.iter().any(|s| s.2) {
        successors.retain(|s| s.2);
    }
    let successors = successors.into_iter().map(|(n, p, _)| (n, p)).collect();
    Some(Gone {
        old,
        by,
        kept_by,
        successors,
    })
}

/// What of `old`'s hardening `new` lacks or sets otherwise: one
/// `Key=value` (or `Key=value (now other)`) per directive, each with the
/// lines that had set it, and `note` saying of each such line what became
/// of it.
fn lost_hardening(
    old: &Hardening,
    new: &Hardening,
    note: impl Fn(&Source) -> String,
) -> (Vec<String>, Vec<Evidence>) {
    let mut lost = Vec::new();
    let mut evidence = Vec::new();
    for (k, (v, srcs)) in old {
        let now = new.get(k).map(|(v, _)| v.as_str());
        if now == Some(v.as_str()) {
            continue;
        }
        lost.push(match now {
            None => format!("{k}={v}"),
            Some(n) => format!("{k}={v} (now {n})"),
        });
        for s in srcs {
            evidence.push(line_evidence(&s.path, s.line, &s.text, note(s)));
        }
    }
    (lost, evidence)
}

/// `systemd/hardening-lost` for each unit that took the place of `unit`
/// (see [`gone`]) and lacks hardening `unit` had.
fn renamed_unit_hardening(cx: &Context, old: &Hardening, unit: &str, g: &Gone) -> Vec<Finding> {
    let live = Live(cx.root);
    // the admin's drop-ins of the old name that are still there, doing nothing
    let orphans: Vec<SysPath> = unit_files(&live, unit)
        .into_iter()
        .filter(is_dropin)
        .collect();
    let mut out = Vec::new();
    for (name, path) in &g.successors {
        let (lost, evidence) = lost_hardening(old, &hardening(&live, name), |s| {
            if orphans.contains(&s.path) {
                format!("set here for {unit}, which no longer exists")
            } else {
                "set here in the snapshot; the file is gone".to_string()
            }
        });
        if lost.is_empty() {
            continue;
        }
        let mut paths: Vec<&SysPath> = vec![path];
        paths.extend(orphans.iter());
        let by = g.by(unit);
        let mut msg = format!(
            "{name} replaced {unit}{} and runs without the hardening {unit} had: {}",
            if by.is_empty() {
                String::new()
            } else {
                format!(" ({by})")
            },
            lost.join(", ")
        );
        if !orphans.is_empty() {
            let o: Vec<String> = orphans.iter().map(|p| p.to_string()).collect();
            msg.push_str(&format!(" ({} now applies to no unit)", o.join(", ")));
        }
        let fix = if orphans.is_empty() {
            format!(
                "put the lost lines in a drop-in: systemctl edit {name}, then systemctl \
                 daemon-reload && systemctl restart {name}"
            )
        } else {
            let q = |p: &SysPath| crate::exec::shell_quote(p.as_bytes());
            let new_dir = SysPath::new("/etc/systemd/system").join(format!("{name}.d"));
            let files: Vec<String> = orphans.iter().map(q).collect();
            format!(
                "move the override to the new unit: mkdir -p {d} && mv {} {d}/, then \
                 systemctl daemon-reload && systemctl restart {name}",
                files.join(" "),
                d = q(&new_dir)
            )
        };
        let mut f = Finding::new("systemd/hardening-lost", Severity::Warning, &paths, msg).fix(fix);
        f.evidence = evidence;
        out.push(f);
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
        let before = Recorded {
            manifest: base,
            store: cx.store,
        };
        let live = Live(cx.root);
        // Masked since the snapshot: the unit's `.wants` link may still be
        // there, so it looks enabled, but systemd will not start it; only
        // the mask link itself would show, as an info `file/added`.
        let masked_now = |unit: &str| mask(cx.live, unit).filter(|_| mask(base, unit).is_none());
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
        // Enabled in the snapshot and no longer: the link is gone, or it
        // is still there but its unit file is not, and systemd, finding no
        // unit of that name, starts nothing. pacman leaves the admin's
        // `*.wants/` link behind when a package drops or renames a unit
        // (no preset or scriptlet removes it), so a link alone does not say
        // the unit is enabled.
        let disabled: BTreeSet<&SysPath> = diff::units_disabled(base, cx.live)
            .into_iter()
            .map(|u| &u.link)
            .collect();
        let linked_now: BTreeSet<(&str, &str)> = cx
            .live
            .units
            .iter()
            .map(|u| (u.unit.as_str(), u.wanted_by.as_str()))
            .collect();
        for u in &base.units {
            let link_gone = disabled.contains(&u.link);
            let dangles = !link_gone
                && linked_now.contains(&(u.unit.as_str(), u.wanted_by.as_str()))
                && live.text(&u.link).is_none();
            if !link_gone && !dangles {
                continue;
            }
            let masked = masked_now(&u.unit);
            let Some(g) = masked
                .is_none()
                .then(|| gone(cx, base, &before, &u.unit))
                .flatten()
            else {
                if dangles {
                    continue; // its unit file was not there before either
                }
                // `systemctl enable` refuses a masked unit
                let fix = match &masked {
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
                continue;
            };
            // renamed, and the unit in its place enabled instead: done
            if g.successors
                .iter()
                .any(|(n, _)| linked_now.contains(&(n.as_str(), u.wanted_by.as_str())))
            {
                continue;
            }
            let mut why: Vec<String> = vec![g.by("it")];
            if !g.kept_by.is_empty() {
                why.push(format!(
                    "owned by {}, which still ships it",
                    g.kept_by.join(", ")
                ));
            }
            if !g.successors.is_empty() {
                why.push(format!("{} came in its place", g.successor_names()));
            }
            why.retain(|w| !w.is_empty());
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            };
            let link = crate::exec::shell_quote(u.link.as_bytes());
            let fix = match (g.successors.is_empty(), dangles) {
                // deleted, not dropped: the file is what was lost
                (true, true) if !g.kept_by.is_empty() => format!(
                    "guard restore {}; systemctl daemon-reload",
                    crate::exec::shell_quote(g.old.as_bytes())
                ),
                (false, true) => format!(
                    "systemctl enable {}, then remove the dangling link: rm {link}",
                    g.successor_names_list()
                ),
                (false, false) => format!("systemctl enable {}", g.successor_names_list()),
                (true, true) => format!(
                    "rm {link} if {} is no longer wanted; else put its unit back \
                     (guard restore {}) and systemctl daemon-reload",
                    u.unit, g.old
                ),
                (true, false) => format!(
                    "if {} is still wanted: guard restore {} && systemctl enable {}",
                    u.unit, g.old, u.unit
                ),
            };
            let msg = if dangles {
                format!(
                    "{} is no longer started (wanted by {}): its unit file {} is gone{why}, \
                     and the link {} dangles",
                    u.unit, u.wanted_by, g.old, u.link
                )
            } else {
                format!(
                    "{} is no longer enabled (was wanted by {}), and its unit file {} is gone{why}",
                    u.unit, u.wanted_by, g.old
                )
            };
            out.push(
                Finding::new(
                    "systemd/unit-disabled",
                    Severity::Warning,
                    &[&u.link, &g.old],
                    msg,
                )
                .fix(fix),
            );
        }
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
        // renamed units whose successors have all their hardening: an
        // override of the old name that vanished was moved, not lost
        let mut moved: BTreeSet<String> = BTreeSet::new();
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
            // A unit renamed by its package: what it had applies to nothing
            // now (the admin's override sits in the old name's `.d`), and
            // the unit in its place runs the program without it.
            if let Some(g) = gone(cx, base, &before, unit).filter(|g| !g.successors.is_empty()) {
                let lost = renamed_unit_hardening(cx, &old, unit, &g);
                if lost.is_empty() {
                    moved.insert(unit.clone());
                }
                out.extend(lost);
                continue;
            }
            let (lost, evidence) = lost_hardening(&old, &hardening(&live, unit), |s| {
                if cx.root.exists(&s.path) {
                    "set here in the snapshot"
                } else {
                    "set here in the snapshot; the file is gone"
                }
                .to_string()
            });
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
            if moved.contains(&unit) {
                continue;
            }
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
