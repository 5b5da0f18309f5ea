//! PAM: `pam/service-vanished` (incident 1: the admin's `/etc/pam.d/imap`
//! deleted by an upgrade, naming the daemons that use the service and the
//! logins that now fail), `pam/moved-to-vendor`, `pam/module-missing` and
//! `pam/include-missing` (following `include`, `substack`, `@include`),
//! a missing module rated by its line's control.

use std::collections::{BTreeMap, BTreeSet};

use super::{line_evidence, Check, Context, Files, Live};
use crate::diff::Change;
use crate::report::{Evidence, Finding, Severity};
use crate::store::{Entry, FileKind};
use crate::sysroot::SysPath;

pub struct Pam;

/// Where Linux-PAM looks for a service, in order: the admin's dir wins,
/// then the vendor dirs openSUSE moved the package files to.
pub const PAM_DIRS: &[&str] = &["/etc/pam.d", "/usr/lib/pam.d", "/usr/etc/pam.d"];
const VENDOR_DIRS: &[&str] = &["/usr/lib/pam.d", "/usr/etc/pam.d"];
const MODULE_DIRS: &[&str] = &[
    "/lib/security",
    "/lib64/security",
    "/usr/lib/security",
    "/usr/lib64/security",
];

/// A daemon configured to authenticate through a PAM service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// "saslauthd for cyrus imapd"
    pub daemon: String,
    /// "IMAP"
    pub logins: String,
    pub evidence: Vec<Evidence>,
}

/// `KEY = value` / `KEY: value` / `KEY=value` settings of simple config
/// files, with their line numbers (1-based). Comments (`#`) are skipped.
fn settings(text: &str, seps: &[char]) -> Vec<(usize, String, String, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some(pos) = l.find(seps) else { continue };
        let k = l[..pos].trim().to_string();
        let v = l[pos + 1..].trim().trim_matches('"').trim_matches('\'');
        out.push((i + 1, k, v.to_string(), raw.to_string()));
    }
    out
}

fn first_setting(
    files: &dyn Files,
    paths: &[&str],
    key: &str,
    seps: &[char],
) -> Option<(SysPath, usize, String, String)> {
    for p in paths {
        let p = SysPath::new(p);
        let Some(t) = files.text(&p) else { continue };
        if let Some((n, _, v, raw)) = settings(&t, seps)
            .into_iter()
            .find(|(_, k, _, _)| k.eq_ignore_ascii_case(key))
        {
            return Some((p, n, v, raw));
        }
    }
    None
}

/// The settings that choose saslauthd's mechanisms, one per distribution's
/// packaging: Debian's `MECHANISMS=`, openSUSE's `SASLAUTHD_AUTHMECH=` and
/// Fedora's `MECH=`. Each init script reads only its own key, so any of
/// them saying `pam` means the daemons behind saslauthd use PAM.
const SASLAUTHD_MECH_KEYS: &[&str] = &["MECHANISMS", "SASLAUTHD_AUTHMECH", "MECH"];

/// saslauthd with the `pam` mechanism.
fn saslauthd_pam(files: &dyn Files) -> Option<Evidence> {
    SASLAUTHD_MECH_KEYS.iter().find_map(|key| {
        let (p, n, v, raw) = first_setting(
            files,
            &["/etc/sysconfig/saslauthd", "/etc/default/saslauthd"],
            key,
            &['='],
        )?;
        v.split_whitespace()
            .any(|m| m == "pam")
            .then(|| line_evidence(&p, n, &raw, "saslauthd checks passwords through PAM"))
    })
}

fn words(v: &str) -> Vec<String> {
    v.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Cyrus SASL `pwcheck_method: saslauthd` in a SASL application file.
fn sasl_app_uses_saslauthd(files: &dyn Files, paths: &[&str]) -> Option<Evidence> {
    let (p, n, v, raw) = first_setting(files, paths, "pwcheck_method", &[':', '='])?;
    words(&v)
        .iter()
        .any(|w| w == "saslauthd")
        .then(|| line_evidence(&p, n, &raw, "Cyrus SASL asks saslauthd"))
}

fn cyrus(files: &dyn Files, service: &str, sasl: &Evidence) -> Option<User> {
    let logins = match service {
        "imap" => "IMAP",
        "pop" => "POP3",
        "sieve" => "Sieve",
        _ => return None,
    };
    let (p, n, v, raw) = first_setting(files, &["/etc/imapd.conf"], "sasl_pwcheck_method", &[':'])?;
    if !words(&v).iter().any(|w| w == "saslauthd") {
        return None;
    }
    Some(User {
        daemon: "saslauthd for cyrus imapd".into(),
        logins: logins.into(),
        evidence: vec![
            line_evidence(&p, n, &raw, "cyrus imapd authenticates through saslauthd"),
            sasl.clone(),
        ],
    })
}

fn postfix(files: &dyn Files, service: &str, sasl: Option<&Evidence>) -> Option<User> {
    let main = SysPath::new("/etc/postfix/main.cf");
    let text = files.text(&main)?;
    let set = settings(&text, &['=']);
    // postfix: the last setting of a parameter wins
    let get = |k: &str| set.iter().rev().find(|(_, key, _, _)| key == k);
    let enable = get("smtpd_sasl_auth_enable")?;
    if !enable.2.eq_ignore_ascii_case("yes") {
        return None;
    }
    let kind = get("smtpd_sasl_type").map_or("cyrus".to_string(), |s| s.2.clone());
    let name = get("smtpd_sasl_service").map_or("smtp".to_string(), |s| s.2.clone());
    if kind != "cyrus" || name != service {
        return None;
    }
    let sasl = sasl?;
    let app = sasl_app_uses_saslauthd(
        files,
        &[
            "/etc/sasl2/smtpd.conf",
            "/etc/postfix/sasl/smtpd.conf",
            "/usr/lib/sasl2/smtpd.conf",
        ],
    )?;
    Some(User {
        daemon: "saslauthd for postfix smtpd".into(),
        logins: "SMTP".into(),
        evidence: vec![
            line_evidence(
                &main,
                enable.0,
                &enable.3,
                "postfix offers SMTP AUTH via Cyrus SASL",
            ),
            app,
            sasl.clone(),
        ],
    })
}

/// Dovecot `passdb { driver = pam; args = … }` blocks, in every config file.
fn dovecot(files: &dyn Files, service: &str) -> Option<User> {
    let mut paths = vec![SysPath::new("/etc/dovecot/dovecot.conf")];
    let confd = SysPath::new("/etc/dovecot/conf.d");
    paths.extend(
        files
            .names(&confd)
            .into_iter()
            .filter(|n| n.ends_with(b".conf") || n.ends_with(b".ext"))
            .map(|n| confd.join(n)),
    );
    for p in paths {
        let Some(text) = files.text(&p) else { continue };
        let mut depth_in: Option<(usize, usize, String)> = None; // (depth, line, text)
        let mut depth = 0usize;
        let mut driver_pam: Option<(usize, String)> = None;
        let mut args: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.starts_with("passdb") && l.ends_with('{') {
                depth += 1;
                depth_in = Some((depth, i + 1, raw.to_string()));
                // dovecot 2.4 names the driver in the block: `passdb pam {`
                driver_pam =
                    (l.split_whitespace().nth(1) == Some("pam")).then(|| (i + 1, raw.to_string()));
                args = None;
                continue;
            }
            if l.ends_with('{') {
                depth += 1;
                continue;
            }
            if l == "}" {
                if let Some((d, _, _)) = &depth_in {
                    if *d == depth {
                        if let Some((n, t)) = driver_pam.take() {
                            // the service name: the last word of args that is
                            // no option; `%s` is the protocol; default dovecot
                            let name = args
                                .as_deref()
                                .and_then(|a| a.split_whitespace().rfind(|w| !w.contains('=')))
                                .unwrap_or("dovecot")
                                .to_string();
                            let (matches, logins) = match name.as_str() {
                                "%s" | "%{protocol}" => (
                                    ["imap", "pop3", "submission", "sieve"].contains(&service),
                                    service.to_uppercase(),
                                ),
                                n => (n == service, "IMAP/POP3".to_string()),
                            };
                            if matches {
                                return Some(User {
                                    daemon: "dovecot".into(),
                                    logins,
                                    evidence: vec![line_evidence(
                                        &p,
                                        n,
                                        &t,
                                        format!("dovecot passdb uses PAM service {name}"),
                                    )],
                                });
                            }
                        }
                        depth_in = None;
                    }
                }
                depth = depth.saturating_sub(1);
                continue;
            }
            if depth_in.is_some() {
                if let Some((k, v)) = l.split_once('=') {
                    match k.trim() {
                        "driver" if v.trim() == "pam" => driver_pam = Some((i + 1, raw.into())),
                        "args" => args = Some(v.trim().to_string()),
                        // dovecot 2.4: the service name is its own setting
                        "service_name" | "pam_service_name" => {
                            args = Some(v.trim().trim_matches('"').to_string())
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    None
}

fn vsftpd(files: &dyn Files, service: &str) -> Option<User> {
    for p in ["/etc/vsftpd.conf", "/etc/vsftpd/vsftpd.conf"] {
        let p = SysPath::new(p);
        let Some(text) = files.text(&p) else { continue };
        let found = settings(&text, &['='])
            .into_iter()
            .find(|(_, k, _, _)| k == "pam_service_name");
        let (name, ev) = match found {
            Some((n, _, v, raw)) => (
                v.clone(),
                line_evidence(&p, n, &raw, format!("vsftpd uses PAM service {v}")),
            ),
            // vsftpd's compiled-in default
            None => (
                "ftp".to_string(),
                Evidence::new(&p, None, None, "vsftpd uses PAM service ftp (its default)"),
            ),
        };
        if name == service {
            return Some(User {
                daemon: "vsftpd".into(),
                logins: "FTP".into(),
                evidence: vec![ev],
            });
        }
    }
    None
}

fn sshd(files: &dyn Files, service: &str) -> Option<User> {
    if service != "sshd" {
        return None;
    }
    let cfg = super::ssh::effective(files, &super::ssh::main_config(files)?);
    let v = cfg.global.get("usepam")?;
    if v.value != "yes" {
        return None;
    }
    Some(User {
        daemon: "sshd".into(),
        logins: "ssh".into(),
        evidence: vec![line_evidence(&v.path, v.line, &v.text, "sshd uses PAM")],
    })
}

/// The daemons configured to authenticate through PAM service `service`.
pub fn users_of(files: &dyn Files, service: &str) -> Vec<User> {
    let sasl = saslauthd_pam(files);
    let mut out = Vec::new();
    if let Some(s) = &sasl {
        out.extend(cyrus(files, service, s));
    }
    out.extend(postfix(files, service, sasl.as_ref()));
    out.extend(dovecot(files, service));
    out.extend(vsftpd(files, service));
    out.extend(sshd(files, service));
    out
}

/// One line of a PAM service file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamLine {
    pub line: usize,
    pub text: String,
    /// `auth`, `account`, `password`, `session`, or `@include`.
    pub kind: String,
    /// A leading `-`: PAM does not log a missing module, but still runs
    /// the line as a failing one (see [`PamLine::ignores_missing`]).
    pub optional: bool,
    /// `required`, `optional`, `[success=1 default=ignore]`, ….
    pub control: String,
    pub module: Option<String>,
    pub include: Option<String>,
}

impl PamLine {
    /// Whether the stack's result is the same when this line's module is
    /// missing. libpam turns a module it cannot load (with or without a
    /// leading `-`) into one that returns PAM_MODULE_UNKNOWN; only the
    /// control decides what that does. `optional` ignores it. A bracket
    /// control ignores it when `module_unknown` (else `default`, which
    /// itself defaults to `bad`) is `ignore`, but only if success would
    /// not have jumped or ended the stack either: Debian's
    /// `[success=1 default=ignore] pam_unix.so` skips the `pam_deny.so`
    /// after it, and without the module pam_deny runs. `required`,
    /// `requisite` and `sufficient` change the result.
    pub fn ignores_missing(&self) -> bool {
        let c = self.control.as_str();
        if c == "optional" {
            return true;
        }
        let Some(inner) = c.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
            return false;
        };
        let (mut unknown, mut default, mut success) = (None, None, None);
        for kv in inner.split_whitespace() {
            match kv.split_once('=') {
                Some(("module_unknown", v)) => unknown = Some(v),
                Some(("default", v)) => default = Some(v),
                Some(("success", v)) => success = Some(v),
                _ => {}
            }
        }
        let on_missing = unknown.or(default).unwrap_or("bad");
        let on_success = success.or(default).unwrap_or("bad");
        on_missing == "ignore" && matches!(on_success, "ok" | "ignore")
    }
}

/// Parses a PAM service file (comments, `[...]` controls, includes).
pub fn parse(text: &str) -> Vec<PamLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let mut toks = l.split_whitespace();
        let Some(first) = toks.next() else { continue };
        let mut pl = PamLine {
            line: i + 1,
            text: raw.to_string(),
            kind: first.trim_start_matches('-').to_ascii_lowercase(),
            optional: first.starts_with('-'),
            control: String::new(),
            module: None,
            include: None,
        };
        if first == "@include" {
            pl.include = toks.next().map(str::to_string);
            out.push(pl);
            continue;
        }
        let Some(mut control) = toks.next().map(str::to_string) else {
            continue;
        };
        if control.starts_with('[') {
            while !control.ends_with(']') {
                match toks.next() {
                    Some(t) => {
                        control.push(' ');
                        control.push_str(t);
                    }
                    None => break,
                }
            }
        }
        let target = toks.next().map(str::to_string);
        pl.control = control.to_ascii_lowercase();
        if control == "include" || control == "substack" {
            pl.include = target;
        } else {
            pl.module = target;
        }
        out.push(pl);
    }
    out
}

/// The file PAM reads for a service name (or an absolute include path).
pub fn find_service(files: &dyn Files, name: &str) -> Option<(SysPath, String)> {
    if name.starts_with('/') {
        let p = SysPath::new(name);
        return files.text(&p).map(|t| (p, t));
    }
    PAM_DIRS.iter().find_map(|d| {
        let p = SysPath::new(d).join(name);
        files.text(&p).map(|t| (p, t))
    })
}

/// Every PAM module file name the root has, with the dirs searched.
pub fn modules(files: &dyn Files) -> (BTreeSet<String>, Vec<SysPath>) {
    let mut dirs: Vec<SysPath> = MODULE_DIRS.iter().map(SysPath::new).collect();
    for base in ["/lib", "/usr/lib"] {
        let b = SysPath::new(base);
        for n in files.list(&b) {
            if n.ends_with("-linux-gnu") {
                dirs.push(b.join(&n).join("security"));
            }
        }
    }
    let mut set = BTreeSet::new();
    for d in &dirs {
        set.extend(files.list(d));
    }
    (set, dirs)
}

/// All service names of the root (the admin's and the vendor's).
fn service_names(files: &dyn Files) -> BTreeSet<String> {
    PAM_DIRS
        .iter()
        .flat_map(|d| files.list(&SysPath::new(d)))
        .filter(|n| !n.contains('.') && !n.starts_with('#'))
        .collect()
}

struct Missing {
    /// module or include target → lines referencing it (file, line, services)
    modules: BTreeMap<String, Vec<(SysPath, PamLine, BTreeSet<String>)>>,
    includes: BTreeMap<(SysPath, String), (PamLine, BTreeSet<String>)>,
}

/// A service file found by name, parsed (shared between the services
/// that include it).
type Service = (SysPath, std::rc::Rc<Vec<PamLine>>);

fn walk(files: &dyn Files, mods: &BTreeSet<String>, check_modules: bool) -> Missing {
    let mut m = Missing {
        modules: BTreeMap::new(),
        includes: BTreeMap::new(),
    };
    // Every service includes the same few common files: each name is looked
    // up, read and parsed once per check, not once per service including it.
    let mut memo: BTreeMap<String, Option<Service>> = BTreeMap::new();
    let mut lookup = |name: &str| {
        memo.entry(name.to_string())
            .or_insert_with(|| {
                find_service(files, name).map(|(p, t)| (p, std::rc::Rc::new(parse(&t))))
            })
            .clone()
    };
    for svc in service_names(files) {
        let mut seen = BTreeSet::new();
        let mut stack = vec![svc.clone()];
        while let Some(name) = stack.pop() {
            let Some((path, lines)) = lookup(&name) else {
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            for pl in lines.iter() {
                if let Some(inc) = &pl.include {
                    if lookup(inc).is_some() {
                        stack.push(inc.clone());
                    } else {
                        m.includes
                            .entry((path.clone(), inc.clone()))
                            .or_insert_with(|| (pl.clone(), BTreeSet::new()))
                            .1
                            .insert(svc.clone());
                    }
                }
                let Some(module) = &pl.module else { continue };
                // A `-` line whose control ignores the missing module is
                // silent in every way: no log line, same result. Any other
                // `-` line (`-auth required`) fails like a plain one.
                if !check_modules || (pl.optional && pl.ignores_missing()) {
                    continue;
                }
                let present = if module.starts_with('/') {
                    let p = SysPath::new(module);
                    p.parent().is_some_and(|d| {
                        files.list(&d).iter().any(|n| n.as_bytes() == p.file_name())
                    })
                } else {
                    mods.contains(module.as_str())
                };
                if present {
                    continue;
                }
                let refs = m.modules.entry(module.clone()).or_default();
                match refs
                    .iter_mut()
                    .find(|(p, l, _)| *p == path && l.line == pl.line)
                {
                    Some(r) => {
                        r.2.insert(svc.clone());
                    }
                    None => refs.push((path.clone(), pl.clone(), BTreeSet::from([svc.clone()]))),
                }
            }
        }
    }
    m
}

/// The fix for an include whose target is missing, from what the snapshot
/// says went wrong. Only a target the snapshot recorded can be restored:
/// `guard restore` of a name that was never there fails, and an include
/// edited since (a typo, `common-auth` turned into `common-authx`) is
/// undone by restoring the file that holds it. Without a snapshot, or
/// when the snapshot had the same broken include, only the hand fixes it.
fn include_fix(cx: &Context, path: &SysPath, target: &str) -> String {
    let q = |p: &SysPath| crate::exec::shell_quote(p.as_bytes());
    let create = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/etc/pam.d/{target}")
    };
    let Some(base) = cx.baseline else {
        return format!("fix the include in {path}, or create {create}");
    };
    let rec = super::Recorded {
        manifest: base,
        store: cx.store,
    };
    if let Some((was, _)) = find_service(&rec, target) {
        return format!("guard restore {}, or fix the include in {path}", q(&was));
    }
    let included_then = rec.text(path).is_some_and(|t| {
        parse(&t)
            .iter()
            .any(|l| l.include.as_deref() == Some(target))
    });
    match rec.text(path) {
        Some(_) if !included_then => format!(
            "guard diff; guard restore {} (it did not include {target} in the \
             snapshot), or fix the include",
            q(path)
        ),
        _ => format!("fix the include in {path}, or create {create}"),
    }
}

fn list(v: &BTreeSet<String>) -> String {
    v.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Logins named for a finding message: "IMAP and SMTP".
fn logins_of(users: &[User]) -> String {
    let mut l: Vec<String> = Vec::new();
    for u in users {
        if !l.contains(&u.logins) {
            l.push(u.logins.clone());
        }
    }
    match l.len() {
        0 => String::new(),
        1 => l[0].clone(),
        _ => format!("{} and {}", l[..l.len() - 1].join(", "), l[l.len() - 1]),
    }
}

/// Whether `p` was written since the baseline (added, or its content
/// rewritten): an `.rpmsave` from an earlier upgrade says nothing of this one.
fn written_since(cx: &Context, p: &SysPath) -> bool {
    cx.changes.iter().any(|c| match c {
        Change::Added(e) => e.path == *p,
        Change::Modified { new, content, .. } => *content && new.path == *p,
        _ => false,
    })
}

/// The vendor copy PAM now reads for `/etc/pam.d/NAME`, when that /etc
/// file is gone: `pam/moved-to-vendor` is then the finding for the file
/// and for the `.rpmsave` rpm kept of it (`pkg/pending-merge` leaves it).
pub fn vendor_copy(cx: &Context, etc_file: &SysPath) -> Option<SysPath> {
    if etc_file.parent() != Some(SysPath::new("/etc/pam.d")) || cx.root.exists(etc_file) {
        return None;
    }
    let name = etc_file.file_name();
    VENDOR_DIRS
        .iter()
        .map(|d| SysPath::new(d).join(name))
        .find(|p| cx.root.exists(p))
}

/// `pam/moved-to-vendor`: `/etc/pam.d/NAME` (`e`, from the baseline)
/// vanished and PAM now reads the vendor file `v`.
fn moved_to_vendor(cx: &Context, e: &Entry, name: &str, v: &SysPath, rpmsave: &SysPath) -> Finding {
    let live = Live(cx.root);
    let recorded = cx.baseline.map(|b| super::Recorded {
        manifest: b,
        store: cx.store,
    });
    let before = recorded.as_ref().and_then(|r| r.text(&e.path));
    let now = live.text(v);
    let differs = before.is_some() && before != now;
    let saved = cx.root.exists(rpmsave);
    // rpm set the edited copy aside in this upgrade: the admin's changes
    let saved_now = saved && written_since(cx, rpmsave);
    // A package's /etc copy that differs from the vendor file is not yet a
    // loss: the new version may simply have changed it (Leap 15's pam and
    // openssh did). rpm keeps every edited %config file it removes as
    // `.rpmsave`, so on an rpm system no `.rpmsave` means the /etc copy was
    // the package's own and nothing of the admin's went; elsewhere (or with
    // an `.rpmsave` written now) a difference is taken as the admin's.
    let rpm = cx
        .baseline
        .is_some_and(|b| b.packages.managers.iter().any(|m| m == "rpm"));
    let changed = differs && (e.owners.is_empty() || saved_now || !rpm);
    // The admin's own file (no package owned it) replaced by a
    // different vendor file is incident 1 again: the vendor's
    // stack (pam_unix only) now decides the logins the admin's
    // stack (LDAP, sss) handled, and no upgrade brings the
    // file back. As critical as the file/vanished it replaces.
    let admins = changed && e.owners.is_empty();
    let users = if admins {
        users_of(&live, name)
    } else {
        Vec::new()
    };
    let mut daemons: Vec<String> = users.iter().map(|u| u.daemon.clone()).collect();
    daemons.dedup();
    let mut paths = vec![&e.path];
    if saved_now {
        paths.push(rpmsave);
    }
    let mut f = Finding::new(
        "pam/moved-to-vendor",
        if admins {
            Severity::Critical
        } else if changed {
            Severity::Warning
        } else {
            Severity::Info
        },
        &paths,
        if admins && !users.is_empty() {
            format!(
                "{} logins may fail: {} (used by {}) vanished, PAM now \
                 reads the different vendor file {v}",
                logins_of(&users),
                e.path,
                daemons.join(", ")
            )
        } else if admins {
            format!(
                "logins through PAM service {name} may fail: {} vanished, \
                 PAM now reads the different vendor file {v}",
                e.path
            )
        } else if changed && saved_now {
            format!(
                "{} moved to {v}: the changes made to the /etc copy no longer apply \
                 (rpm kept it as {rpmsave})",
                e.path
            )
        } else if changed {
            format!(
                "{} moved to {v}, losing the changes made to the /etc copy",
                e.path
            )
        } else if differs {
            format!(
                "{} moved to the vendor file {v}, which the new version changed \
                 (the /etc copy was the package's own: rpm set no edited copy aside)",
                e.path
            )
        } else {
            format!("{} moved to the vendor file {v} (unchanged)", e.path)
        },
    );
    for u in &users {
        f.evidence.extend(u.evidence.iter().cloned());
    }
    if admins {
        f = f.evidence(Evidence::new(
            &e.path,
            None,
            None,
            "owned by no package: an admin's own file, no upgrade will bring it back",
        ));
    }
    if saved {
        f = f.evidence(Evidence::new(
            rpmsave,
            None,
            None,
            "the upgrade kept the old /etc copy here",
        ));
    }
    if changed {
        f = f.fix(if saved_now {
            format!(
                "guard restore {} (a file in /etc/pam.d overrides {v}), then remove {rpmsave}",
                e.path
            )
        } else {
            format!(
                "guard restore {} (a file in /etc/pam.d overrides {v})",
                e.path
            )
        });
        // what the restore would change in what PAM reads, when both
        // files may be quoted
        if let (Some(b), Some(n)) = (&before, &now) {
            if super::may_quote(cx, &e.path) && super::may_quote(cx, v) {
                f.detail = crate::diff::unified(
                    n.as_bytes(),
                    b.as_bytes(),
                    &format!("{v} (read now)"),
                    &format!("{} (snapshot)", e.path),
                );
            }
        }
    }
    f
}

impl Check for Pam {
    fn name(&self) -> &'static str {
        "pam"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let live = Live(cx.root);
        let mut out = Vec::new();
        let etc = SysPath::new("/etc/pam.d");
        for c in cx.changes {
            let Change::Vanished(e) = c else { continue };
            if e.kind == FileKind::Dir || e.path.parent().as_ref() != Some(&etc) {
                continue;
            }
            let name = String::from_utf8_lossy(e.path.file_name()).into_owned();
            if name.contains('.') {
                continue; // .rpmsave and the like are no service
            }
            let vendor = VENDOR_DIRS
                .iter()
                .map(|d| SysPath::new(d).join(&name))
                .find(|p| cx.root.exists(p));
            let rpmsave = e.path.parent().unwrap().join(format!("{name}.rpmsave"));
            let saved = cx.root.exists(&rpmsave);
            if let Some(v) = vendor {
                out.push(moved_to_vendor(cx, e, &name, &v, &rpmsave));
                continue;
            }
            let users = users_of(&live, &name);
            let mut daemons: Vec<String> = users.iter().map(|u| u.daemon.clone()).collect();
            daemons.dedup();
            let msg = if users.is_empty() {
                format!(
                    "logins through PAM service {name} will fail: {} vanished \
                     (PAM falls back to /etc/pam.d/other)",
                    e.path
                )
            } else {
                format!(
                    "{} logins will fail: {} (used by {}) vanished",
                    logins_of(&users),
                    e.path,
                    daemons.join(", ")
                )
            };
            let mut f = Finding::new("pam/service-vanished", Severity::Critical, &[&e.path], msg)
                .fix(format!("guard restore {}", e.path));
            for u in &users {
                f.evidence.extend(u.evidence.iter().cloned());
            }
            if saved {
                f = f.evidence(Evidence::new(
                    &rpmsave,
                    None,
                    None,
                    "an older copy the package manager kept",
                ));
            }
            if e.owners.is_empty() {
                f = f.evidence(Evidence::new(
                    &e.path,
                    None,
                    None,
                    "owned by no package: no upgrade will bring it back",
                ));
            }
            out.push(f);
        }

        let (mods, dirs) = modules(&live);
        // A root with no PAM modules at all is no installed system (or
        // PAM lives elsewhere): every module would look missing.
        let check_modules = !mods.is_empty();
        let missing = walk(&live, &mods, check_modules);
        for (module, refs) in missing.modules {
            // A required/requisite/sufficient line fails its whole stack:
            // auth and account deny the login, and a failing session
            // stack makes pam_open_session fail ("Module is unknown"),
            // which ends the login too. An ignoring control (optional)
            // only costs a log line; password lines only password changes.
            let counts = |l: &PamLine| !l.ignores_missing();
            let crit = refs.iter().any(|(_, l, _)| {
                counts(l) && matches!(l.kind.as_str(), "auth" | "account" | "session")
            });
            let passwd = refs
                .iter()
                .any(|(_, l, _)| counts(l) && l.kind == "password");
            let mut paths: Vec<&SysPath> = refs.iter().map(|(p, _, _)| p).collect();
            paths.dedup();
            let services: BTreeSet<String> = refs
                .iter()
                .flat_map(|(_, _, s)| s.iter().cloned())
                .collect();
            let mut f = Finding::new(
                "pam/module-missing",
                if crit {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                &paths,
                format!(
                    "PAM module {module} is missing: {} for services {}",
                    if crit {
                        "logins fail"
                    } else if passwd {
                        "password changes fail"
                    } else {
                        "PAM logs an error, logins go on"
                    },
                    list(&services)
                ),
            )
            .fix(format!(
                "install the package that ships {module}, or remove it from {}",
                paths
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for (p, l, s) in &refs {
                f = f.evidence(line_evidence(
                    p,
                    l.line,
                    &l.text,
                    format!("{} {} line, reached by {}", l.kind, l.control, list(s)),
                ));
            }
            f.detail = Some(format!(
                "searched: {}",
                dirs.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            out.push(f);
        }
        for ((path, target), (l, services)) in missing.includes {
            let fix = include_fix(cx, &path, &target);
            out.push(
                Finding::new(
                    "pam/include-missing",
                    Severity::Critical,
                    &[&path],
                    format!(
                        "{path} includes {target}, which does not exist: logins for {} fail",
                        list(&services)
                    ),
                )
                .evidence(line_evidence(&path, l.line, &l.text, "the include"))
                .fix(fix),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::SysRoot;

    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let h = d.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(h.parent().unwrap()).unwrap();
            std::fs::write(h, t).unwrap();
        }
        d
    }

    #[test]
    fn parses_controls_includes_and_optional_lines() {
        let t = "#%PAM-1.0\nauth [success=1 default=ignore] pam_unix.so nullok\n\
                 -session optional pam_systemd.so\n@include common-auth\n\
                 account include  system-account # comment\npassword substack x\n";
        let p = parse(t);
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].module.as_deref(), Some("pam_unix.so"));
        assert!(p[1].optional && p[1].kind == "session");
        assert_eq!(p[2].include.as_deref(), Some("common-auth"));
        assert_eq!(p[3].include.as_deref(), Some("system-account"));
        assert_eq!(p[4].include.as_deref(), Some("x"));
    }

    #[test]
    fn controls_that_ignore_a_missing_module() {
        let c = |t: &str| parse(t)[0].ignores_missing();
        assert!(c("auth optional pam_x.so"));
        assert!(c("-session optional pam_x.so"));
        assert!(c("auth [success=ok default=ignore] pam_x.so"));
        assert!(c(
            "auth [module_unknown=ignore success=ok default=bad] pam_x.so"
        ));
        assert!(!c("auth required pam_x.so"));
        assert!(!c("-auth required pam_x.so"));
        assert!(!c("auth sufficient pam_x.so"));
        assert!(!c("session requisite pam_x.so"));
        // the missing module no longer jumps over the pam_deny after it
        assert!(!c("auth [success=1 default=ignore] pam_unix.so nullok"));
        // an unset default is `bad`
        assert!(!c("auth [success=ok] pam_x.so"));
    }

    #[test]
    fn names_cyrus_postfix_dovecot_vsftpd_users() {
        let d = root(&[
            (
                "/etc/sysconfig/saslauthd",
                "# x\nSASLAUTHD_AUTHMECH=x\nMECHANISMS=\"pam\"\n",
            ),
            (
                "/etc/imapd.conf",
                "configdirectory: /var/lib/imap\nsasl_pwcheck_method: saslauthd\n",
            ),
            (
                "/etc/postfix/main.cf",
                "smtpd_sasl_auth_enable = no\nsmtpd_sasl_auth_enable = yes\n",
            ),
            (
                "/etc/sasl2/smtpd.conf",
                "pwcheck_method: saslauthd\nmech_list: plain login\n",
            ),
            (
                "/etc/dovecot/conf.d/auth-system.conf.ext",
                "passdb {\n  driver = pam\n  args = session=yes dovecot2\n}\n",
            ),
            ("/etc/vsftpd.conf", "listen=YES\npam_service_name=vsftpd\n"),
        ]);
        let r = SysRoot::open(d.path()).unwrap();
        let live = Live(&r);
        let imap = users_of(&live, "imap");
        assert_eq!(imap.len(), 1);
        assert_eq!(imap[0].daemon, "saslauthd for cyrus imapd");
        assert_eq!(imap[0].evidence[0].line, Some(2));
        let smtp = users_of(&live, "smtp");
        assert_eq!(smtp[0].logins, "SMTP");
        assert_eq!(
            smtp[0].evidence[0].line,
            Some(2),
            "postfix: last value wins"
        );
        assert_eq!(users_of(&live, "dovecot2")[0].daemon, "dovecot");
        assert_eq!(users_of(&live, "vsftpd")[0].logins, "FTP");
        assert!(users_of(&live, "pop3").is_empty());
    }

    #[test]
    fn dovecot_protocol_service_and_24_syntax() {
        let d = root(&[(
            "/etc/dovecot/dovecot.conf",
            "protocols = imap pop3\npassdb {\n  driver = pam\n  args = %s\n}\n",
        )]);
        let r = SysRoot::open(d.path()).unwrap();
        let u = users_of(&Live(&r), "pop3");
        assert_eq!(u[0].logins, "POP3");
        assert_eq!(u[0].evidence[0].line, Some(3));
        let d = root(&[(
            "/etc/dovecot/conf.d/10-auth.conf",
            "passdb pam {\n  service_name = mail\n}\n",
        )]);
        let r = SysRoot::open(d.path()).unwrap();
        assert_eq!(users_of(&Live(&r), "mail")[0].daemon, "dovecot");
        assert!(users_of(&Live(&r), "dovecot").is_empty());
    }

    #[test]
    fn saslauthd_without_pam_uses_no_service() {
        let d = root(&[
            ("/etc/default/saslauthd", "MECHANISMS=\"ldap\"\n"),
            ("/etc/imapd.conf", "sasl_pwcheck_method: saslauthd\n"),
        ]);
        let r = SysRoot::open(d.path()).unwrap();
        assert!(users_of(&Live(&r), "imap").is_empty());
    }

    #[test]
    fn finds_missing_modules_through_includes() {
        let d = root(&[
            (
                "/etc/pam.d/imap",
                "auth include common-auth\naccount required pam_unix.so\n",
            ),
            (
                "/etc/pam.d/common-auth",
                "auth sufficient pam_sss.so\nauth required pam_unix.so\n",
            ),
            (
                "/etc/pam.d/smtp",
                "@include common-gone\n-session optional pam_nothere.so\n",
            ),
            ("/usr/lib/x86_64-linux-gnu/security/pam_unix.so", ""),
        ]);
        let r = SysRoot::open(d.path()).unwrap();
        let live = Live(&r);
        let (mods, _) = modules(&live);
        assert!(mods.contains("pam_unix.so"));
        let m = walk(&live, &mods, true);
        let sss = &m.modules["pam_sss.so"];
        assert_eq!(sss[0].0, SysPath::new("/etc/pam.d/common-auth"));
        assert!(sss[0].2.contains("imap"));
        assert!(
            !m.modules.contains_key("pam_nothere.so"),
            "-session is optional"
        );
        assert!(m
            .includes
            .contains_key(&(SysPath::new("/etc/pam.d/smtp"), "common-gone".to_string())));
    }
}
