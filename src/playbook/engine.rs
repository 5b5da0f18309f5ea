//! The playbook engine: facts, variables, conditions, the walk itself (one
//! step at a time, confirmed, checked, journalled), resume, builtins and the
//! dry-run script renderer.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use super::model::{Playbook, Step, Test};
use crate::app::{self, App};
use crate::exec::{self, Cmd};
use crate::store::SnapshotKind;
use crate::sysroot::SysPath;
use crate::ui::StepChoice;

/// Lines of output kept per command in the journal and in error messages.
const TAIL: usize = 40;

pub type Vars = BTreeMap<String, String>;

// ---------------------------------------------------------------- conditions

/// A `when` condition: alternatives (`||`) of conjunctions (`&&`) of atoms.
#[derive(Debug, Clone)]
pub struct Cond(Vec<Vec<Atom>>);

#[derive(Debug, Clone)]
struct Atom {
    name: String,
    neg: bool,
    /// `(equal?, value)` for `==` / `!=`.
    cmp: Option<(bool, String)>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Cond {
    pub fn parse(s: &str) -> Result<Cond> {
        let mut ors = Vec::new();
        for alt in s.split("||") {
            let mut ands = Vec::new();
            for part in alt.split("&&") {
                let p = part.trim();
                let atom = if let Some((l, r)) = p.split_once("!=") {
                    Atom {
                        name: l.trim().into(),
                        neg: false,
                        cmp: Some((false, r.trim().into())),
                    }
                } else if let Some((l, r)) = p.split_once("==") {
                    Atom {
                        name: l.trim().into(),
                        neg: false,
                        cmp: Some((true, r.trim().into())),
                    }
                } else if let Some(n) = p.strip_prefix('!') {
                    Atom {
                        name: n.trim().into(),
                        neg: true,
                        cmp: None,
                    }
                } else {
                    Atom {
                        name: p.into(),
                        neg: false,
                        cmp: None,
                    }
                };
                if !valid_name(&atom.name) || atom.cmp.as_ref().is_some_and(|c| c.1.is_empty()) {
                    bail!("bad condition {s:?}: {p:?} is not `name`, `!name` or `name == value`");
                }
                ands.push(atom);
            }
            ors.push(ands);
        }
        Ok(Cond(ors))
    }

    /// Evaluates; a variable nobody set is false (and `!unset` is true), so
    /// an undetected fact never triggers a step by accident.
    pub fn eval(&self, vars: &Vars) -> bool {
        self.0.iter().any(|ands| {
            ands.iter().all(|a| {
                let v = vars.get(&a.name);
                match &a.cmp {
                    Some((eq, want)) => v.map(|v| v == want) == Some(*eq) || (v.is_none() && !eq),
                    None => truthy(v) != a.neg,
                }
            })
        })
    }
}

fn truthy(v: Option<&String>) -> bool {
    match v {
        None => false,
        Some(v) => !matches!(v.as_str(), "" | "no" | "false" | "0"),
    }
}

// ---------------------------------------------------------------- variables

/// Substitutes `{name}` in one argument. `None`: an optional (`?`) argument
/// dropped. With `dry`, unknown variables become `<name>` instead of an error.
pub fn subst(arg: &str, vars: &Vars, dry: bool) -> Result<Option<String>> {
    let (optional, body) = match arg.strip_prefix('?') {
        Some(b) => (true, b),
        None => (false, arg),
    };
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push('{');
            rest = after;
            continue;
        };
        let name = &after[..j];
        if !valid_name(name) {
            // Not a variable (e.g. a shell group in a test's `sh -c`).
            out.push('{');
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(v) if v.contains('\n') || v.contains('\0') => {
                bail!("refusing variable {name}: its value contains a newline or NUL byte")
            }
            Some(v) if v.is_empty() && optional => return Ok(None),
            // `{root}/etc` names /etc inside the root: on the system
            // itself that is `/etc`, not `//etc`
            Some(v) if name == "root" && v == "/" && after[j + 1..].starts_with('/') => {}
            Some(v) => out.push_str(v),
            None if optional && !dry => return Ok(None),
            None if dry => {
                out.push('<');
                out.push_str(name);
                out.push('>');
            }
            None => bail!("no value for {{{name}}} (neither a fact, an answer nor a default)"),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

pub fn subst_argv(argv: &[String], vars: &Vars, dry: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in argv {
        if let Some(s) = subst(a, vars, dry)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Makes a command act on `root` the way its tool supports it (DESIGN §5).
/// pacman gets `--root` with explicit paths rather than `--sysroot`: the
/// latter chroots before verifying signatures, and gpgme then needs a gpg
/// inside the root. Host tools (cryptsetup, lvm, virsh) are left as they are.
pub fn rooted(argv: Vec<String>, root: &Path) -> Vec<String> {
    if root == Path::new("/") || argv.is_empty() {
        return argv;
    }
    let r = |p: &str| root.join(p).display().to_string();
    let prog = Path::new(&argv[0])
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extra: Vec<String> = match prog.as_str() {
        "pacman" => vec![
            "--root".into(),
            root.display().to_string(),
            "--config".into(),
            r("etc/pacman.conf"),
            "--dbpath".into(),
            r("var/lib/pacman"),
            "--cachedir".into(),
            r("var/cache/pacman/pkg"),
            "--gpgdir".into(),
            r("etc/pacman.d/gnupg"),
            "--logfile".into(),
            r("var/log/pacman.log"),
        ],
        "pacman-key" => vec![
            "--gpgdir".into(),
            r("etc/pacman.d/gnupg"),
            "--config".into(),
            r("etc/pacman.conf"),
        ],
        "zypper" | "rpm" => vec!["--root".into(), root.display().to_string()],
        // dpkg reads the host's dpkg.cfg even with --root: keep its log inside.
        "dpkg" => vec![
            "--root".into(),
            root.display().to_string(),
            format!("--log={}", r("var/log/dpkg.log")),
        ],
        _ => vec![],
    };
    let mut out = vec![argv[0].clone()];
    out.extend(extra);
    out.extend(argv.into_iter().skip(1));
    out
}

// ---------------------------------------------------------------- facts

/// Package tools that have no way to act on another root: run on a
/// `--root`, they would change the host instead.
const HOST_ONLY_PKG_TOOLS: &[&str] = &["apt", "apt-get", "aptitude", "dnf", "yum"];

/// Refuses a command that would act on the host although `--root` names
/// another system.
pub fn check_rootable(argv: &[String], root: &Path) -> Result<()> {
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if root != Path::new("/") && HOST_ONLY_PKG_TOOLS.contains(&prog.as_str()) {
        bail!(
            "{prog} cannot act on --root {}: it would change this host instead; run guard inside that system",
            root.display()
        );
    }
    Ok(())
}

/// What guard finds out about the system before the walk. Anything it cannot
/// detect is simply absent (and shows as `<name>` in a dry run).
pub fn detect_facts(app: &App) -> Vars {
    let mut f = Vars::new();
    let root = app.root.path().to_path_buf();
    // GUARD_VARS: neither answers nor a playbook can override these two
    f.insert("root".into(), root.display().to_string());
    f.insert("store".into(), app.store_dir.display().to_string());
    let osr = app
        .root
        .read_text(SysPath::new("/etc/os-release"))
        .or_else(|| app.root.read_text(SysPath::new("/usr/lib/os-release")));
    if let Some(text) = osr {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
                let (key, word) = match k.trim() {
                    "ID" => ("os_id", true),
                    "ID_LIKE" => ("os_id_like", true),
                    "VERSION_ID" => ("os_version_id", true),
                    // the word apt's sources name the release by (bookworm)
                    "VERSION_CODENAME" => ("os_codename", true),
                    "PRETTY_NAME" => ("os_pretty", false),
                    _ => continue,
                };
                if word && !os_release_words(&v) {
                    continue;
                }
                f.insert(key.into(), v);
            }
        }
    }
    if root == Path::new("/") {
        // The running kernel; only meaningful for the system guard runs on.
        let u = rustix::system::uname();
        f.insert(
            "kernel_release".into(),
            u.release().to_string_lossy().into_owned(),
        );
    }
    let has = |p: &str| app.root.exists(&SysPath::new(p));
    let pm = if has("/var/lib/pacman/local") {
        Some(("pacman", "/var/cache/pacman/pkg"))
    } else if has("/usr/bin/zypper") {
        Some(("zypper", "/var/cache/zypp"))
    } else if has("/var/lib/dpkg/status") {
        Some(("apt", "/var/cache/apt/archives"))
    } else if has("/usr/bin/rpm") {
        Some(("rpm", "/var/cache"))
    } else {
        None
    };
    if let Some((pm, cache)) = pm {
        f.insert("pkg_manager".into(), pm.into());
        if let Some(m) = free_mib(&app.root.host_path(&SysPath::new(cache))) {
            f.insert("free_cache_mib".into(), m.to_string());
        }
    }
    if let Some(m) = free_mib(&root) {
        f.insert("free_root_mib".into(), m.to_string());
    }
    if pm.map(|p| p.0) == Some("pacman") && exec::available("pacman") {
        let argv = rooted(
            vec!["pacman".into(), "-Q".into(), "archlinux-keyring".into()],
            &root,
        );
        if let Ok(out) = exec::stdout_of(&Cmd::new(&argv[0]).args(&argv[1..])) {
            let s = String::from_utf8_lossy(&out);
            if let Some(ver) = s.split_whitespace().nth(1) {
                f.insert("keyring_version".into(), ver.into());
                // archlinux-keyring versions are dates: 20240313-1
                let d: String = ver.chars().take_while(|c| c.is_ascii_digit()).collect();
                if d.len() == 8 {
                    let date = format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]);
                    if let Ok(day) = date.parse::<jiff::civil::Date>() {
                        let today = jiff::Zoned::now().date();
                        let age = (today - day).get_days();
                        f.insert("keyring_date".into(), date);
                        // Arch ships a keyring update every month or two; half
                        // a year behind means new packager keys are missing.
                        f.insert(
                            "keyring_stale".into(),
                            if age > 180 { "yes" } else { "no" }.into(),
                        );
                    }
                }
            }
        }
    }
    // `vgs`/`lvs` JSON reports as "name=bytes name=bytes"
    for (tool, report, name, size, fact) in [
        ("vgs", "vg", "vg_name", "vg_free", "lvm_vgs"),
        ("lvs", "lv", "lv_path", "lv_size", "lvm_lvs"),
    ] {
        if let Some(v) = lvm_report(tool, report, name, size) {
            f.insert(fact.into(), v);
        }
    }
    let vm = app::guard_vm_path();
    if vm.is_file() {
        if let Ok(out) = exec::stdout_of(&Cmd::new(&vm).args(["--json", "list"])) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) {
                // (`guard-vm --json list` gives `{"guests": [...]}`; this
                // looked for `domains`, so the fact was always empty)
                let list = &v["guests"];
                let names: Vec<String> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["name"].as_str().map(String::from))
                    .collect();
                f.insert("vm_guests".into(), names.join(" "));
            }
        }
    }
    f
}

/// Whether an os-release value is what os-release(5) allows for `ID`,
/// `ID_LIKE` (a list of them), `VERSION_ID` and `VERSION_CODENAME`: words
/// of `0-9 a-z . _ -` (upper case let through). On a `--root` the file is
/// the guarded system's, a hostile guest image's if need be, and these
/// values are substituted into the commands a walk runs and the manual
/// commands it shows to be pasted into a root shell (`grep -rlsw
/// {os_codename} …`): `bookworm; curl …|sh` or a word taken for an option
/// (`-f/etc/shadow`) must not get there. A value that is not such a word
/// is left out, so it shows as `<os_codename>` and a step needing it stops.
fn os_release_words(v: &str) -> bool {
    !v.is_empty()
        && v.split(' ').all(|w| {
            !w.is_empty()
                && !w.starts_with('-')
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

fn free_mib(p: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(p).ok()?;
    Some((st.f_bavail * st.f_frsize) >> 20)
}

/// Variables the builtin steps set, each with the builtin that sets it.
/// Neither an answers file nor a playbook (`ask`, `probe`, `[vars]`) may
/// set them (`reserved`): later steps rely on what the walk itself found,
/// and a preset `snapshot_id` would point the walk's check and restore at
/// another snapshot, a preset `source_bytes` would let `cmp` pass on a
/// partial copy.
pub const BUILTIN_VARS: &[(&str, &str)] = &[
    ("snapshot_id", "snapshot"),
    ("check_critical", "check"),
    ("pam_vanished", "check"),
    ("source_bytes", "luks-target-check"),
    ("needed_mib", "luks-target-check"),
    ("luks_header_backup", "luks-header-backup"),
];

/// Facts that are guard's own options, each with its option. An answers
/// file may override a detected fact (README: defaults < facts < answers)
/// but not these, and no playbook may set them (`reserved`): guard's own
/// steps (snapshot, check, restore, the journal) act on `--root` and
/// `--store` whatever the variables say, so a preset `root = "/"` would
/// point the steps' `{root}` commands at the host while the walk's snapshot
/// and check look at the guarded root.
pub const GUARD_VARS: &[(&str, &str)] = &[("root", "--root"), ("store", "--store")];

/// Who sets a variable that only guard sets: one of its options, or a
/// builtin step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A fact taken from this option (`--root`).
    Option(&'static str),
    /// Set by this builtin step (`snapshot`).
    Builtin(&'static str),
}

impl std::fmt::Display for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reserved::Option(o) => write!(f, "which guard takes from its own {o}"),
            Reserved::Builtin(b) => write!(f, "which the walk sets itself (builtin {b})"),
        }
    }
}

/// Whether `var` is one only guard sets (`GUARD_VARS`, `BUILTIN_VARS`).
pub fn reserved(var: &str) -> Option<Reserved> {
    GUARD_VARS
        .iter()
        .find(|(n, _)| *n == var)
        .map(|(_, o)| Reserved::Option(o))
        .or_else(|| {
            BUILTIN_VARS
                .iter()
                .find(|(n, _)| *n == var)
                .map(|(_, b)| Reserved::Builtin(b))
        })
}

/// Refuses answers that set a variable only guard sets, before they join
/// the variables (answers win over facts). `origin` names them in the
/// message. An answers file (`builtins`) may set neither kind. A journal's
/// answers hold the builtins' variables the walk's own steps recorded
/// (`snapshot_id`), but never guard's options: one that has `root` was
/// written by an older guard or edited, and would override `--root`.
pub fn refuse_reserved(answers: &Vars, origin: &str, builtins: bool) -> Result<()> {
    for var in answers.keys() {
        match reserved(var) {
            Some(r @ Reserved::Builtin(_)) if builtins => {
                bail!("{origin}: sets {var}, {r}; remove it")
            }
            Some(r @ Reserved::Option(o)) => {
                bail!("{origin}: sets {var}, {r}; remove it (give guard {o} instead)")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sets a builtin's variable for the rest of the walk and in the journal.
/// Every builtin sets its variables here, so a new one not listed in
/// `BUILTIN_VARS` (and thus settable by an answers file) fails the tests.
fn set_builtin_var(vars: &mut Vars, set: &mut Vars, name: &str, value: String) {
    debug_assert!(
        BUILTIN_VARS.iter().any(|(n, _)| *n == name),
        "{name} is missing from BUILTIN_VARS"
    );
    vars.insert(name.into(), value.clone());
    set.insert(name.into(), value);
}

// ---------------------------------------------------------------- journal

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Journal {
    pub version: u32,
    pub playbook: String,
    pub started: String,
    pub finished: Option<String>,
    pub facts: Vars,
    /// Answers given and facts set by probes during the walk.
    pub answers: Vars,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepRecord {
    pub id: String,
    /// `done`, `skipped`, `already-done`, `failed`
    pub status: String,
    pub started: String,
    pub ended: String,
    pub note: Option<String>,
    pub commands: Vec<CmdRecord>,
    /// The attempts before this one, oldest first: a failed step retried
    /// on `--resume` (or a done one done again) keeps what it did and
    /// printed then, the evidence of what the upgrade went through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CmdRecord {
    pub argv: Vec<String>,
    pub exit: Option<i32>,
    pub tail: String,
}

impl Journal {
    /// Records `rec` as its step's outcome. The record of an earlier
    /// attempt (failed, or done before a reboot undid it) moves into
    /// `rec.earlier`: one record per step, with its history.
    fn put(&mut self, mut rec: StepRecord) {
        if let Some(i) = self.steps.iter().position(|r| r.id == rec.id) {
            let mut old = self.steps.remove(i);
            rec.earlier = std::mem::take(&mut old.earlier);
            rec.earlier.push(old);
        }
        self.steps.push(rec);
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn journal_rel(id: &str) -> String {
    format!("journals/{id}.json")
}

/// How long a journal save, and a builtin step that writes to the store
/// (`snapshot`, `restore`), waits for the store lock. A step that already
/// ran must be recorded: refused here, `--resume` would run it again. And
/// a step refused for the lock stops the walk halfway for nothing. The
/// snapshot timer (Persistent=true, so it fires right after the reboot a
/// walk resumes from) holds the lock for a snapshot's length.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The bound for a builtin step: `LOCK_WAIT`, unless the tests shorten it
/// (`GUARD_TEST_STEP_LOCK_WAIT_SECS`) to see a step give up without waiting
/// a minute. The journal save keeps the full bound, so that the give-up is
/// recorded while the other guard still holds the lock.
fn step_lock_wait() -> std::time::Duration {
    std::env::var("GUARD_TEST_STEP_LOCK_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(LOCK_WAIT)
}

fn save(app: &App, j: &Journal) -> Result<()> {
    let store = app.store_write_waiting("save the playbook journal", LOCK_WAIT)?;
    let data = serde_json::to_vec_pretty(j)?;
    store.write_doc_file(&journal_rel(&j.playbook), &data)
}

/// The journal of an unfinished walk of `id`, for `--resume` (and its dry
/// run): refused when there is none, when the walk finished, or when its
/// answers set `root` or `store`.
pub fn resumable_journal(app: &App, id: &str) -> Result<Journal> {
    match load_journal(app, id)? {
        Some(j) if j.finished.is_none() => {
            let path = app.store_dir.join(journal_rel(id));
            let origin = format!("the answers in journal {}", path.display());
            refuse_reserved(&j.answers, &origin, false)?;
            Ok(j)
        }
        Some(_) => bail!(
            "the last run of {id} has finished; nothing to resume (run it again without --resume)"
        ),
        None => bail!("no journal of {id} to resume; start it with guard run {id}"),
    }
}

pub fn load_journal(app: &App, id: &str) -> Result<Option<Journal>> {
    let store = app.store_read()?;
    match store.read_doc_file(&journal_rel(id))? {
        None => Ok(None),
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
            anyhow!("journal {} is unreadable: {e}", journal_rel(id))
        })?)),
    }
}

/// The snapshots an unfinished walk may still check or restore against:
/// every answer of an unfinished journal (`snapshot_id`, which the walk's
/// own `snapshot` step set, and whatever an answers file gave), so that a
/// `prune` between a walk's stop and its `--resume` keeps them. Read
/// loosely (only `finished` and `answers`), so a journal of another guard
/// version still counts; one that cannot be read at all is an error, not
/// "needs nothing".
pub fn snapshots_in_use(store: &crate::store::Store) -> Result<std::collections::BTreeSet<String>> {
    let mut ids = std::collections::BTreeSet::new();
    for name in store.doc_names("journals")? {
        if !name.ends_with(".json") {
            continue;
        }
        let rel = format!("journals/{name}");
        let Some(raw) = store.read_doc_file(&rel)? else {
            continue; // (gone since listed: a walk's journal being replaced)
        };
        let j: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            anyhow!("journal {rel} is unreadable ({e}): cannot tell which snapshots its walk still needs")
        })?;
        if !j.get("finished").is_none_or(|f| f.is_null()) {
            continue;
        }
        if let Some(answers) = j.get("answers").and_then(|a| a.as_object()) {
            ids.extend(
                answers
                    .values()
                    .filter_map(|v| v.as_str())
                    .map(str::to_string),
            );
        }
    }
    Ok(ids)
}

// ---------------------------------------------------------------- the walk

/// Why a step failed: shown, journalled, the walk stops.
struct Failure(String);

/// The answers-file question that walks a playbook written for another
/// system (`other-os = "walk"`).
pub const OTHER_OS: &str = "other-os";

/// The answers-file question that walks a playbook read from the files of
/// a `--root` other than `/` (`root-playbook = "walk"`).
pub const ROOT_PLAYBOOK: &str = "root-playbook";

pub struct RunOpts<'a> {
    pub resume: bool,
    /// From the answers file: questions answered and variables preset.
    pub answers: Vars,
    /// That file, named when its answers are refused.
    pub answers_file: Option<&'a Path>,
    /// The playbook's file in the root, when it is not built in.
    pub from_root: Option<&'a str>,
}

/// Refuses, unless the person or the answers file says to walk it, a
/// playbook that is a file of a `--root` other than `/`. That root is
/// another system (a guest's disk mounted to be inspected or upgraded,
/// perhaps a compromised one), and its playbook's commands, `done-if`
/// and probe checks included, which run unasked, would run on this host
/// as root: a file there named `leap-upgrade.toml` replaces the built-in
/// walk of that name. Not an ordinary confirmation, so `--yes` alone
/// never gives it. The host's own `/etc/guard/playbooks` (`--root /`) is
/// the admin's, as built-in playbooks are guard's.
fn refuse_root_playbook(app: &App, pb: &Playbook, opts: &RunOpts) -> Result<()> {
    let Some(file) = opts.from_root else {
        return Ok(());
    };
    if app.root.path() == Path::new("/") {
        return Ok(());
    }
    let told = opts.resume
        && resumable_journal(app, &pb.id)
            .is_ok_and(|j| j.answers.get(ROOT_PLAYBOOK).is_some_and(|a| a == "walk"));
    if told {
        return Ok(());
    }
    let what = format!(
        "{} is not built into guard: it is {file} of the root {}, whose commands (its checks too) would run on this host as root",
        pb.id,
        app.root.path().display()
    );
    match app.ui.select(
        ROOT_PLAYBOOK,
        &format!("{what}. Walk it anyway?"),
        &["stop".into(), "walk".into()],
        0,
    ) {
        Ok(1) => Ok(()),
        Err(e) if opts.answers.contains_key(ROOT_PLAYBOOK) => Err(e),
        _ => bail!(
            "{what}: nothing done (to walk it anyway, answer {ROOT_PLAYBOOK} = \"walk\" under [answers] in an answers file; --yes alone does not)"
        ),
    }
}

pub fn walk(app: &App, pb: &Playbook, opts: &RunOpts) -> Result<i32> {
    // The answers join the variables below (the file's and, on --resume,
    // the journal's), over the facts: each set is checked here, before
    // anything runs.
    let file = match opts.answers_file {
        Some(p) => format!("answers file {}", p.display()),
        None => "the answers".into(),
    };
    refuse_reserved(&opts.answers, &file, true)?;
    refuse_root_playbook(app, pb, opts)?;
    let facts = detect_facts(app);
    if !pb.applies_to.is_empty() {
        let os = facts.get("os_id").cloned().unwrap_or_default();
        let like = facts.get("os_id_like").cloned().unwrap_or_default();
        let fits = pb
            .applies_to
            .iter()
            .any(|a| *a == os || like.split_whitespace().any(|l| l == a));
        // Not an ordinary confirmation: `--yes` alone must not walk an
        // unattended run of another system's playbook, whose steps then fail
        // one by one at their probes (or worse, run). A person on a
        // terminal is asked; a script says so by name in its answers file,
        // as it does for retrying a failed step.
        // (a walk resumed after a reboot was told so when it started)
        let told = opts.resume
            && resumable_journal(app, &pb.id)
                .is_ok_and(|j| j.answers.get(OTHER_OS).is_some_and(|a| a == "walk"));
        if !fits && !told {
            let what = format!(
                "{} is written for {}; this system is {:?}",
                pb.id,
                pb.applies_to.join(", "),
                if os.is_empty() { "unknown" } else { &os }
            );
            let walk = app.ui.select(
                OTHER_OS,
                &format!("{what}. Walk it anyway?"),
                &["stop".into(), "walk".into()],
                0,
            );
            match walk {
                Ok(1) => {}
                // (an answer that is neither: said as it is)
                Err(e) if opts.answers.contains_key(OTHER_OS) => return Err(e),
                _ => bail!(
                    "{what}: nothing done (to walk it anyway, answer {OTHER_OS} = \"walk\" under [answers] in an answers file; --yes alone does not)"
                ),
            }
        }
    }
    let mut journal = if opts.resume {
        let j = resumable_journal(app, &pb.id)?;
        app.ui.say(&format!(
            "resuming {} started {} ({} recorded)",
            pb.id,
            j.started,
            crate::plural(j.steps.len(), "step")
        ));
        j
    } else {
        if let Some(old) = load_journal(app, &pb.id)? {
            if old.finished.is_none() && !old.steps.is_empty() {
                bail!(
                    "an unfinished run of {} (started {}) is in the journal: continue it with {} --resume",
                    pb.id, old.started, guard_run(app.root.path(), &app.store_dir, &pb.id)
                );
            }
            // Keep the finished run's record next to the new one.
            let stamp: String = old
                .started
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            app.store_write()?.write_doc_file(
                &format!("journals/{}-{stamp}.json", pb.id),
                &serde_json::to_vec_pretty(&old)?,
            )?;
        }
        Journal {
            version: 1,
            playbook: pb.id.clone(),
            started: now(),
            ..Default::default()
        }
    };
    journal.facts = facts.clone();
    refuse_changed_answers(pb, &journal, &opts.answers)?;
    // The answers file of this invocation wins over what an earlier one said
    // about questions not yet asked.
    journal.answers.extend(opts.answers.clone());
    let mut vars: Vars = pb.vars.clone();
    vars.extend(facts);
    vars.extend(journal.answers.clone());
    save(app, &journal)?;
    let total = pb.steps.len();
    // The steps; an error among them (a failed, refused or aborted step)
    // still leaves a walk to tell of: with --json, the document of the
    // steps so far carries the error (DESIGN §2), as text shows them.
    let walked = (|| -> Result<()> {
        for (n, step) in pb.steps.iter().enumerate() {
            let prev = journal.steps.iter().position(|r| r.id == step.id);
            if let Some(i) = prev {
                match journal.steps[i].status.as_str() {
                    "failed" => {
                        // Never retried silently: the person (or the answers
                        // file, `retry-STEP = "retry"`) must say so.
                        let r = &journal.steps[i];
                        app.ui.say(&format!(
                            "step {} failed last time: {}",
                            step.id,
                            r.note.clone().unwrap_or_default()
                        ));
                        let c = app.ui.select(
                            &format!("retry-{}", step.id),
                            &format!("Retry step {}?", step.id),
                            &["abort".into(), "retry".into()],
                            0,
                        );
                        if !matches!(c, Ok(1)) {
                            let why = match c {
                                Err(e) => format!(" ({e:#})"),
                                _ => String::new(),
                            };
                            bail!(
                                "step {} failed before and was not retried{why}; fix the cause, then {} --resume and choose retry (answers file: retry-{} = \"retry\" under [answers])",
                                step.id, guard_run(app.root.path(), &app.store_dir, &pb.id), step.id
                            );
                        }
                        // (its record stays until this attempt's replaces
                        // it, as `earlier`: an abort now leaves it failed)
                    }
                    "done" | "already-done"
                        if step
                            .done_if
                            .as_ref()
                            .map(|t| still_holds(app, t, &vars))
                            .transpose()?
                            == Some(false) =>
                    {
                        // A reboot locks a LUKS volume again, drops a loaded
                        // module: what the step did is gone, so it is done again.
                        app.ui.say(&format!(
                            "step {} was done, but its check no longer holds ({}): doing it again",
                            step.id,
                            describe_test(
                                step.done_if.as_ref().expect("matched"),
                                &vars,
                                app.root.path()
                            )
                        ));
                    }
                    _ => continue,
                }
            }
            let started = now();
            let record = |status: &str, note: Option<String>, cmds: Vec<CmdRecord>| StepRecord {
                id: step.id.clone(),
                status: status.into(),
                started: started.clone(),
                ended: now(),
                note,
                commands: cmds,
                earlier: vec![],
            };
            app.ui.say(&format!(
                "\n== step {}/{total}: {} ({})",
                n + 1,
                step.title,
                step.id
            ));
            if let Some(w) = &step.when {
                if !Cond::parse(w)?.eval(&vars) {
                    let why = step.when_text.clone().unwrap_or_else(|| w.clone());
                    app.ui.say(&format!("   not needed: only when {why}"));
                    journal.put(record(
                        "skipped",
                        Some(format!("condition false: {why}")),
                        vec![],
                    ));
                    save(app, &journal)?;
                    continue;
                }
            }
            if let Some(t) = &step.done_if {
                if test_passes(app, t, &vars)? {
                    app.ui.say("   already done");
                    journal.put(record("already-done", None, vec![]));
                    save(app, &journal)?;
                    continue;
                }
            }
            for line in explain(step, &vars).trim().lines() {
                app.ui.say(&format!("   {line}"));
            }
            if let Some(r) = &step.run {
                let argv = rooted(subst_argv(r, &vars, false)?, app.root.path());
                app.ui.say(&format!(
                    "   $ {}",
                    Cmd::new(&argv[0]).args(&argv[1..]).display()
                ));
            }
            let mut skipped = false;
            loop {
                match app.ui.step_choice(&step.id)? {
                    StepChoice::Run => break,
                    StepChoice::Details => {
                        app.ui.say(&render_step(
                            step,
                            &vars,
                            n,
                            total,
                            app.root.path(),
                            &app.store_dir,
                        ));
                    }
                    StepChoice::Skip => {
                        journal.put(record(
                            "skipped",
                            Some("skipped by the user".into()),
                            vec![],
                        ));
                        save(app, &journal)?;
                        skipped = true;
                        break;
                    }
                    StepChoice::Abort => {
                        save(app, &journal)?;
                        bail!(
                            "aborted at step {}; {} --resume continues there",
                            step.id,
                            guard_run(app.root.path(), &app.store_dir, &pb.id)
                        );
                    }
                }
            }
            if skipped {
                continue;
            }
            if let Some(d) = &step.destructive {
                let target = subst(&d.target, &vars, false)?.unwrap_or_default();
                let what = subst(&d.what, &vars, false)?.unwrap_or_default();
                let refused = match app.ui.confirm_destructive(&step.id, &target, &what) {
                    Ok(true) => None,
                    Ok(false) => Some(format!("{target} was not typed")),
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(why) = refused {
                    journal.put(record("failed", Some(format!("refused: {why}")), vec![]));
                    save(app, &journal)?;
                    bail!("step {} refused: {why}", step.id);
                }
            }
            let mut cmds = Vec::new();
            let mut res = act(app, step, &mut vars, &mut journal.answers, &mut cmds);
            if res.is_ok() {
                if let Some(t) = &step.verify {
                    if !test_passes(app, t, &vars)? {
                        res = Err(Failure(format!(
                            "verification failed: {}",
                            describe_test(t, &vars, app.root.path())
                        )));
                    }
                }
            }
            match res {
                Ok(note) => {
                    journal.put(record("done", note, cmds));
                    save(app, &journal)?;
                }
                Err(Failure(why)) => {
                    let tail = cmds.last().map(|c| c.tail.clone()).unwrap_or_default();
                    journal.put(record("failed", Some(why.clone()), cmds));
                    save(app, &journal)?;
                    let mut msg = format!("step {} ({}) failed: {why}", step.id, step.title);
                    if !tail.is_empty() {
                        msg.push_str(&format!("\n--- last output ---\n{tail}\n---"));
                    }
                    if let Some(next) = &step.on_failure {
                        msg.push_str(&format!("\nwhat to do next: {}", fill(next, &vars).trim()));
                    }
                    msg.push_str(&format!(
                        "\nthe walk stopped here; when the cause is fixed, {} --resume asks before retrying this step",
                        guard_run(app.root.path(), &app.store_dir, &pb.id)
                    ));
                    bail!(msg);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = walked {
        if app.json {
            let msg = format!("{e:#}");
            app.print_json(&crate::app::with_error(
                walk_document(pb, &journal),
                &Some(msg.clone()),
            ))?;
            return crate::app::failed_after_output(app, msg);
        }
        return Err(e);
    }
    journal.finished = Some(now());
    save(app, &journal)?;
    // The last check's verdict is above, among the steps' output; the
    // line a tired admin reads last must not sound like all is well when
    // that check found critical damage.
    if journal.answers.get("check_critical").map(String::as_str) == Some("yes") {
        app.ui.say(&format!(
            "\nplaybook {} finished, but its last check found critical damage (see above; \
             guard check shows it again)",
            pb.id
        ));
    } else {
        app.ui.say(&format!("\nplaybook {} finished", pb.id));
    }
    if app.json {
        app.print_json(&walk_document(pb, &journal))?;
    }
    Ok(0)
}

/// `guard --json run`'s document: the walk's steps as the journal has
/// them, and whether it finished.
fn walk_document(pb: &Playbook, journal: &Journal) -> serde_json::Value {
    serde_json::json!({
        "playbook": pb.id,
        "finished": journal.finished.is_some(),
        "steps": journal
            .steps
            .iter()
            .map(|s| serde_json::json!({ "id": s.id, "status": s.status, "note": s.note }))
            .collect::<Vec<_>>(),
    })
}

/// On resume, an answers file may not change what a question already
/// answered (or a probe already found): the steps done since relied on it.
/// A changed `target` would otherwise skip target-check before luksFormat.
pub fn refuse_changed_answers(pb: &Playbook, journal: &Journal, answers: &Vars) -> Result<()> {
    for step in &pb.steps {
        let done = journal
            .steps
            .iter()
            .any(|r| r.id == step.id && r.status == "done");
        let var = match (&step.ask, &step.probe) {
            (Some(a), _) => &a.var,
            (None, Some(p)) => &p.fact,
            _ => continue,
        };
        if !done {
            continue;
        }
        if let (Some(new), Some(old)) = (answers.get(var), journal.answers.get(var)) {
            if new != old {
                bail!(
                    "the answers file says {var} = {new:?}, but step {} of this walk already recorded {var} = {old:?} and the steps done since relied on it; \
                     give {old:?} (or leave {var} out) to resume, or start {} again from the beginning",
                    step.id,
                    pb.id
                );
            }
        }
    }
    Ok(())
}

/// Whether a done step's `done-if` still holds on resume. A false `cond`
/// says guard cannot tell here (arch-upgrade's reboot check needs the
/// running kernel, unknown under --root), not that the work was undone, so
/// only the command decides.
fn still_holds(app: &App, t: &Test, vars: &Vars) -> Result<bool> {
    if let Some(c) = &t.cond {
        if !Cond::parse(c)?.eval(vars) {
            return Ok(true);
        }
    }
    if t.run.is_none() {
        return Ok(true);
    }
    test_passes(app, t, vars)
}

fn test_passes(app: &App, t: &Test, vars: &Vars) -> Result<bool> {
    if let Some(c) = &t.cond {
        if !Cond::parse(c)?.eval(vars) {
            return Ok(false);
        }
    }
    if let Some(r) = &t.run {
        let argv = rooted(subst_argv(r, vars, false)?, app.root.path());
        check_rootable(&argv, app.root.path())?;
        let out = match exec::output(&Cmd::new(&argv[0]).args(&argv[1..])) {
            Ok(o) => o,
            Err(_) => return Ok(false),
        };
        if out.status.code() != Some(t.status.unwrap_or(0)) {
            return Ok(false);
        }
        if let Some(want) = &t.output {
            // Substituted like the command: `cr_{lv_name}` names this walk's
            // mapping, not any mapping.
            let want = subst(want, vars, false)?.unwrap_or_default();
            let text = String::from_utf8_lossy(&out.stdout);
            return Ok(text.contains(want.as_str()));
        }
    }
    Ok(true)
}

fn describe_test(t: &Test, vars: &Vars, root: &Path) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &t.cond {
        parts.push(c.clone());
    }
    if let Some(r) = &t.run {
        let argv = rooted(subst_argv(r, vars, true).unwrap_or_default(), root);
        let mut s = display(&argv);
        if let Some(o) = &t.output {
            let o = subst(o, vars, true)
                .ok()
                .flatten()
                .unwrap_or_else(|| o.clone());
            s.push_str(&format!(" (output contains {o:?})"));
        }
        if let Some(code) = t.status {
            s.push_str(&format!(" exits {code}"));
        }
        parts.push(s);
    }
    parts.join(" and ")
}

/// `guard run ID`, as the walk's own hints say it: with a `--root` other
/// than `/` or a store of its own, pasted bare it would walk (or look for a
/// journal in) the host's default store and root, not this walk's.
fn guard_run(root: &Path, store: &Path, id: &str) -> String {
    format!(
        "{} run {}",
        crate::app::guard_invocation(root, store),
        exec::shell_quote(id.as_bytes())
    )
}

fn display(argv: &[String]) -> String {
    if argv.is_empty() {
        return String::new();
    }
    Cmd::new(&argv[0]).args(&argv[1..]).display()
}

/// Runs one command, streaming its output; records it.
fn run_cmd(
    app: &App,
    argv: Vec<String>,
    feed: Option<&str>,
    interactive: bool,
    cmds: &mut Vec<CmdRecord>,
) -> Result<i32, Failure> {
    let cmd = Cmd::new(&argv[0]).args(&argv[1..]);
    if interactive && app.ui.is_interactive() {
        // Passphrases: the terminal goes to the command; nothing recorded.
        // (its stdout onto stderr, as every step's output: guard's stdout
        // is for guard's own output, with --json one document)
        let os: Vec<std::ffi::OsString> = argv[1..].iter().map(Into::into).collect();
        let code =
            exec::attached(Path::new(&argv[0]), &os).map_err(|e| Failure(format!("{e:#}")))?;
        cmds.push(CmdRecord {
            argv,
            exit: Some(code),
            tail: "(talked to the terminal; output not recorded)".into(),
        });
        return Ok(code);
    }
    let cmd = match feed {
        Some(f) => cmd.stdin_bytes(f.as_bytes().to_vec()),
        None => cmd,
    };
    // The command has no terminal, so no person answers what it asks: a
    // package's debconf question would go to debconf's fallback frontend,
    // which reads the answer from this stdin, taking the fed `y` (meant
    // for apt's "Do you want to continue?") as, say, a relay host. The
    // noninteractive frontend takes each question's default instead
    // (`dpkg-reconfigure PACKAGE` asks again later).
    let cmd = cmd.env("DEBIAN_FRONTEND", "noninteractive");
    // A spinner on a terminal; the output streams above it line by line.
    let sp = app.ui.spinner(&format!("running {}", argv[0]));
    let r = exec::run_streaming(&cmd, TAIL, &mut |l| {
        sp.println(&format!("   │ {l}"));
    });
    sp.finish();
    match r {
        Ok(s) => {
            let code = s.status.code().unwrap_or(-1);
            cmds.push(CmdRecord {
                argv,
                exit: Some(code),
                tail: s.tail,
            });
            Ok(code)
        }
        Err(e) => {
            cmds.push(CmdRecord {
                argv,
                exit: None,
                tail: format!("{e:#}"),
            });
            Err(Failure(format!("{e:#}")))
        }
    }
}

fn arg(step: &Step, vars: &Vars, key: &str) -> Result<Option<String>, Failure> {
    match step.with.get(key) {
        None => Ok(None),
        Some(v) => subst(v, vars, false).map_err(|e| Failure(format!("{e:#}"))),
    }
}

fn need(step: &Step, vars: &Vars, key: &str) -> Result<String, Failure> {
    arg(step, vars, key)?.ok_or_else(|| Failure(format!("builtin needs `{key}`")))
}

/// Performs a step's action; `Ok(note)` on success.
fn act(
    app: &App,
    step: &Step,
    vars: &mut Vars,
    set: &mut Vars,
    cmds: &mut Vec<CmdRecord>,
) -> Result<Option<String>, Failure> {
    let fail = |e: anyhow::Error| Failure(format!("{e:#}"));
    if let Some(r) = &step.run {
        let argv = rooted(subst_argv(r, vars, false).map_err(fail)?, app.root.path());
        check_rootable(&argv, app.root.path()).map_err(fail)?;
        // On a terminal the person answers the tool's own questions
        // (pacman's "Proceed?"), so a command that would be fed an answer off
        // a terminal gets the terminal instead; only a probe (a dry download)
        // is fed, as its output must be read.
        let interactive = step.interactive || (step.feed.is_some() && step.probe.is_none());
        let code = if step.probe.is_some() {
            match run_cmd(app, argv, step.feed.as_deref(), interactive, cmds) {
                Ok(c) => c,
                Err(Failure(e)) => {
                    app.ui.say(&format!("   probe could not run: {e}"));
                    -1
                }
            }
        } else {
            run_cmd(app, argv, step.feed.as_deref(), interactive, cmds)?
        };
        if let Some(p) = &step.probe {
            let tail = cmds.last().map(|c| c.tail.as_str()).unwrap_or("");
            let hit = p.patterns.iter().find(|pat| tail.contains(pat.as_str()));
            let v = if hit.is_some() { "yes" } else { "no" };
            vars.insert(p.fact.clone(), v.into());
            set.insert(p.fact.clone(), v.into());
            app.ui.say(&format!("   {} = {v}", p.fact));
            return Ok(Some(match hit {
                Some(h) => format!("{}=yes: output says {h:?}", p.fact),
                None => format!("{}=no (exit {code})", p.fact),
            }));
        }
        if code != 0 && !step.ok_codes.contains(&code) {
            return Err(Failure(format!("exit code {code}")));
        }
        return Ok((code != 0).then(|| format!("exit code {code} (counts as success)")));
    }
    if let Some(a) = &step.ask {
        let v = if a.choices.is_empty() {
            let default = a
                .default
                .as_ref()
                .and_then(|d| subst(d, vars, false).ok().flatten());
            app.ui
                .input(&a.var, &a.prompt, default.as_deref())
                .map_err(fail)?
        } else {
            let def = a
                .default
                .as_ref()
                .and_then(|d| a.choices.iter().position(|c| c == d))
                .unwrap_or(0);
            let i = app
                .ui
                .select(&a.var, &a.prompt, &a.choices, def)
                .map_err(fail)?;
            a.choices[i].clone()
        };
        validate_answer(&a.kind, &v).map_err(|e| Failure(format!("answer for {}: {e}", a.var)))?;
        vars.insert(a.var.clone(), v.clone());
        set.insert(a.var.clone(), v.clone());
        return Ok(Some(format!("{} = {v}", a.var)));
    }
    if let Some(m) = &step.manual {
        let text = subst(m, vars, true).map_err(fail)?.unwrap_or_default();
        for l in text.trim().lines() {
            app.ui.say(&format!("   » {l}"));
        }
        return Ok(Some("manual step confirmed".into()));
    }
    let b = step.builtin.as_deref().unwrap_or("");
    builtin(app, b, step, vars, set, cmds)
}

fn validate_answer(kind: &str, v: &str) -> Result<()> {
    if v.contains('\n') || v.contains('\0') {
        bail!("contains a newline or NUL byte");
    }
    let ok = match kind {
        "name" => {
            !v.is_empty()
                && !v.starts_with('-')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        }
        "path" => v.starts_with('/') && !v.split('/').any(|c| c == ".."),
        "number" => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        _ => true,
    };
    if !ok {
        bail!("{v:?} is not a valid {kind}");
    }
    Ok(())
}

fn size_of(p: &str) -> Result<u64> {
    let md = std::fs::metadata(p).map_err(|e| anyhow!("cannot stat {p}: {e}"))?;
    if md.file_type().is_block_device() {
        let out = exec::stdout_of(&Cmd::new("blockdev").args(["--getsize64", p]))?;
        let s = String::from_utf8_lossy(&out);
        return s
            .trim()
            .parse()
            .map_err(|_| anyhow!("blockdev --getsize64 {p}: {s:?}"));
    }
    Ok(md.len())
}

fn builtin(
    app: &App,
    b: &str,
    step: &Step,
    vars: &mut Vars,
    set: &mut Vars,
    cmds: &mut Vec<CmdRecord>,
) -> Result<Option<String>, Failure> {
    let fail = |e: anyhow::Error| Failure(format!("{e:#}"));
    match b {
        "snapshot" => {
            let label = arg(step, vars, "label")?;
            let kind = match arg(step, vars, "kind")?.as_deref() {
                Some("post") => SnapshotKind::Post,
                Some("manual") => SnapshotKind::Manual,
                _ => SnapshotKind::Pre,
            };
            // Waits out a timer's or hook's snapshot rather than stopping
            // the walk; the spinner starts after, not over the message.
            let store = app
                .store_write_waiting(
                    &format!("take the snapshot of step {}", step.id),
                    step_lock_wait(),
                )
                .map_err(fail)?;
            let sp = app.ui.spinner("snapshot");
            let out = app::snapshot(app, &store, kind, label).map_err(fail);
            sp.finish();
            let out = out?;
            app.ui.say(&format!(
                "   snapshot {} ({})",
                out.id,
                crate::plural(out.entries, "entry")
            ));
            set_builtin_var(vars, set, "snapshot_id", out.id.clone());
            Ok(Some(format!("snapshot {}", out.id)))
        }
        "check" => {
            let against = arg(step, vars, "against")?;
            let sp = app.ui.spinner("check");
            let rep = app::check(app, against.as_deref()).map_err(fail);
            sp.finish();
            let rep = rep?;
            for l in rep.to_text().lines() {
                app.ui.say(&format!("   │ {l}"));
            }
            let crit = rep.summary.critical > 0;
            let pam = rep.findings.iter().any(|f| f.id == "pam/service-vanished");
            for (k, v) in [("check_critical", crit), ("pam_vanished", pam)] {
                set_builtin_var(vars, set, k, if v { "yes" } else { "no" }.into());
            }
            if arg(step, vars, "fail-on")?.as_deref() == Some("critical") && crit {
                return Err(Failure(
                    "guard check found critical damage (see above)".into(),
                ));
            }
            Ok(Some(format!(
                "check: {} critical, {}",
                rep.summary.critical,
                crate::plural(rep.summary.warning, "warning")
            )))
        }
        "restore" => {
            let what = match arg(step, vars, "what")?.as_deref() {
                Some("caps") => app::What::Caps,
                Some("pam") => app::What::Pam,
                _ => app::What::Vanished,
            };
            // `from` names the walk's own snapshot: a package manager's hook
            // may have taken a newer `pre` since, one that already lacks what
            // the failed upgrade deleted (DESIGN §5).
            let from = arg(step, vars, "from")?;
            // As the snapshot step: wait for the lock, bounded.
            let store = app
                .store_write_waiting(&format!("restore (step {})", step.id), step_lock_wait())
                .map_err(fail)?;
            let (_, applied) =
                app::restore_in(app, &store, from.as_deref(), what, false).map_err(fail)?;
            match applied {
                None => Ok(Some("nothing to restore".into())),
                Some(a) => {
                    if let Some((p, e)) = a.failed {
                        return Err(Failure(format!("restore stopped at {p}: {e}")));
                    }
                    if !a.refused.is_empty() {
                        let what: Vec<String> =
                            a.refused.iter().map(|(p, e)| format!("{p}: {e}")).collect();
                        return Err(Failure(format!(
                            "restored {}; not restored: {}",
                            a.restored.join(" "),
                            what.join("; ")
                        )));
                    }
                    if !a.incomplete.is_empty() {
                        let what: Vec<String> = a
                            .incomplete
                            .iter()
                            .map(|(p, e)| format!("{p}: {e}"))
                            .collect();
                        return Err(Failure(format!(
                            "restored {}, but not all of it: {}",
                            a.restored.join(" "),
                            what.join("; ")
                        )));
                    }
                    Ok(Some(format!("restored {}", a.restored.join(" "))))
                }
            }
        }
        "vm-clone" => {
            let mut argv = vec![
                app::guard_vm_path().display().to_string(),
                "--store".into(),
                app.store_dir.display().to_string(),
                "clone".into(),
                need(step, vars, "domain")?,
            ];
            if let Some(n) = arg(step, vars, "name")? {
                argv.extend(["--name".into(), n]);
            }
            if let Some(d) = arg(step, vars, "disk-target")? {
                argv.extend(["--disk-target".into(), d]);
            }
            if let Some(c) = arg(step, vars, "connect")? {
                argv.extend(["--connect".into(), c]);
            }
            let code = run_cmd(app, argv, None, false, cmds)?;
            if code != 0 {
                return Err(Failure(format!("guard vm clone exited {code}")));
            }
            Ok(None)
        }
        "keyring-populate" => {
            // What `pacman-key --populate` does, from the root's own keyring
            // files: Debian's pacman-key only reads /usr/share/keyrings, and a
            // keyring package's scriptlet may not have run (bare chroot).
            let root = app.root.path();
            let dir = root.join("usr/share/pacman/keyrings");
            let gpgdir = root.join("etc/pacman.d/gnupg");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure(format!("cannot read {}: {e}", dir.display())))?
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            let pk = |rest: Vec<String>| {
                let mut v = vec![
                    "pacman-key".to_string(),
                    "--gpgdir".into(),
                    gpgdir.display().to_string(),
                ];
                v.extend(rest);
                v
            };
            let mut n = 0;
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "gpg"))
            {
                let code = run_cmd(
                    app,
                    pk(vec!["--add".into(), f.display().to_string()]),
                    None,
                    false,
                    cmds,
                )?;
                if code != 0 {
                    return Err(Failure(format!("importing {} failed", f.display())));
                }
            }
            for f in files
                .iter()
                .filter(|f| f.to_string_lossy().ends_with("-trusted"))
            {
                let text = std::fs::read_to_string(f).map_err(|e| Failure(e.to_string()))?;
                for line in text.lines() {
                    let fpr = line.split(':').next().unwrap_or("").trim();
                    if fpr.is_empty() || !fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
                        continue;
                    }
                    let code = run_cmd(
                        app,
                        pk(vec!["--lsign-key".into(), fpr.into()]),
                        None,
                        false,
                        cmds,
                    )?;
                    if code != 0 {
                        return Err(Failure(format!("locally signing {fpr} failed")));
                    }
                    n += 1;
                }
            }
            let gpg = |rest: &[&str]| {
                let mut v = vec![
                    "gpg".to_string(),
                    "--homedir".into(),
                    gpgdir.display().to_string(),
                    "--no-permission-warning".into(),
                    "--batch".into(),
                    "--quiet".into(),
                ];
                v.extend(rest.iter().map(|s| s.to_string()));
                v
            };
            let mut revoked = 0;
            for f in &files {
                let fs = f.to_string_lossy();
                if fs.ends_with("-trusted") {
                    let code = run_cmd(app, gpg(&["--import-ownertrust", &fs]), None, false, cmds)?;
                    if code != 0 {
                        return Err(Failure(format!("importing owner trust from {fs} failed")));
                    }
                }
                if !fs.ends_with("-revoked") {
                    continue;
                }
                let text = std::fs::read_to_string(f).map_err(|e| Failure(e.to_string()))?;
                for fpr in text.lines().map(str::trim) {
                    if fpr.is_empty() || !fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
                        continue;
                    }
                    // As pacman-key --populate: disable, so nothing it signed
                    // verifies any more.
                    let code = run_cmd(
                        app,
                        gpg(&[
                            "--command-fd",
                            "0",
                            "--no-auto-check-trustdb",
                            "--edit-key",
                            fpr,
                        ]),
                        Some("disable\nquit\n"),
                        false,
                        cmds,
                    )?;
                    if code != 0 {
                        return Err(Failure(format!("disabling revoked key {fpr} failed")));
                    }
                    revoked += 1;
                }
            }
            Ok(Some(format!(
                "{} trusted, {} disabled",
                crate::plural(n, "key"),
                crate::plural(revoked, "revoked key")
            )))
        }
        "luks-target-check" => {
            let source = need(step, vars, "source")?;
            let target = arg(step, vars, "target")?.unwrap_or_default();
            let header: u64 = arg(step, vars, "header-mib")?
                .unwrap_or_else(|| "16".into())
                .parse()
                .map_err(|_| Failure("header-mib is not a number".into()))?;
            let ss = size_of(&source).map_err(fail)?;
            let needed = ss + (header << 20);
            for (k, v) in [
                ("source_bytes", ss.to_string()),
                ("needed_mib", needed.div_ceil(1 << 20).to_string()),
            ] {
                set_builtin_var(vars, set, k, v);
            }
            if target.is_empty() {
                return Ok(Some(format!(
                    "the target needs {} MiB",
                    needed.div_ceil(1 << 20)
                )));
            }
            let ts = size_of(&target).map_err(fail)?;
            if ts < needed {
                return Err(Failure(format!(
                    "target {target} is too small: {ts} bytes, but the source {source} ({ss} bytes) plus the LUKS header ({header} MiB) needs {needed}"
                )));
            }
            let out = exec::output(&Cmd::new("blkid").args(["-p", "-o", "export", &target]))
                .map_err(fail)?;
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(t) = text.lines().find_map(|l| l.strip_prefix("TYPE=")) {
                return Err(Failure(format!(
                    "target {target} carries a {t} signature: refusing to format something that is in use; if it really is unused, wipe it yourself (wipefs -a {target})"
                )));
            }
            // A guest's whole disk has a partition table and no filesystem
            // at its start: blkid reports PTTYPE, not TYPE. Another guest's
            // volume (or the source itself) must not pass as "empty".
            if let Some(t) = text.lines().find_map(|l| l.strip_prefix("PTTYPE=")) {
                return Err(Failure(format!(
                    "target {target} carries a {t} partition table: it is probably another guest's disk; refusing to format it; if it really is unused, wipe it yourself (wipefs -a {target})"
                )));
            }
            Ok(Some(format!(
                "target {target}: {ts} bytes, needs {needed}; no filesystem on it"
            )))
        }
        "luks-header-backup" => {
            let device = need(step, vars, "device")?;
            let name = need(step, vars, "name")?;
            // made as the store makes its directories: 0700, and a
            // symlink in its place refused rather than followed
            let dir = app.store_dir.join("luks");
            app.store_write_waiting("keep the LUKS header backup", LOCK_WAIT)
                .and_then(|s| s.make_dir("luks"))
                .map_err(|e| Failure(format!("{e:#}")))?;
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let file = dir.join(format!("{name}-header-{stamp}.img"));
            let argv = vec![
                "cryptsetup".to_string(),
                "luksHeaderBackup".into(),
                device.clone(),
                "--header-backup-file".into(),
                file.display().to_string(),
            ];
            let code = run_cmd(app, argv, None, false, cmds)?;
            if code != 0 {
                return Err(Failure(format!(
                    "cryptsetup luksHeaderBackup exited {code}"
                )));
            }
            let f = file.display().to_string();
            set_builtin_var(vars, set, "luks_header_backup", f.clone());
            Ok(Some(format!("header of {device} saved to {f}")))
        }
        other => Err(Failure(format!("unknown builtin {other}"))),
    }
}

// ---------------------------------------------------------------- dry run

/// The explanation with what is known filled in.
fn explain(step: &Step, vars: &Vars) -> String {
    fill(&step.explain, vars)
}

/// A text for the person (`explain`, `on-failure`) with what is known
/// filled in and the rest as `<name>`: advice that says "{target_release}"
/// names nothing the admin can act on.
fn fill(text: &str, vars: &Vars) -> String {
    subst(text, vars, true)
        .ok()
        .flatten()
        .unwrap_or_else(|| text.to_string())
}

fn comment(out: &mut String, text: &str) {
    for l in text.trim().lines() {
        out.push_str("# ");
        out.push_str(l.trim_end());
        out.push('\n');
    }
}

/// One step as script lines.
pub fn render_step(
    step: &Step,
    vars: &Vars,
    n: usize,
    total: usize,
    root: &Path,
    store: &Path,
) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "\n# ---- step {}/{total}: {} ({})\n",
        n + 1,
        step.title,
        step.id
    ));
    comment(&mut o, &explain(step, vars));
    if let Some(w) = &step.when {
        o.push_str(&format!(
            "# only when: {}{}\n",
            step.when_text.as_deref().unwrap_or(w),
            if step.when_text.is_some() {
                format!(" ({w})")
            } else {
                String::new()
            }
        ));
    }
    if let Some(t) = &step.done_if {
        o.push_str(&format!(
            "# skipped when already done: {}\n",
            describe_test(t, vars, root)
        ));
    }
    if let Some(d) = &step.destructive {
        let t = subst(&d.target, vars, true)
            .ok()
            .flatten()
            .unwrap_or_default();
        o.push_str(&format!(
            "# DESTRUCTIVE: {} — guard asks you to type {t} (or an answers file with confirm = [\"{}:{t}\"])\n",
            subst(&d.what, vars, true).ok().flatten().unwrap_or_default(),
            step.id
        ));
    }
    let dry = |argv: &[String]| match subst_argv(argv, vars, true) {
        Ok(a) => display(&rooted(a, root)),
        Err(e) => format!("# (cannot render: {e})"),
    };
    if let Some(r) = &step.run {
        if let Some(p) = &step.probe {
            o.push_str(&format!(
                "# probe: sets {}=yes when the output contains {}\n",
                p.fact,
                p.patterns
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        if let Some(f) = &step.feed {
            o.push_str(&format!(
                "# without a terminal guard answers {f:?} to the first question only; later questions get no\n"
            ));
        }
        if let Err(e) = subst_argv(r, vars, true).and_then(|a| check_rootable(&a, root)) {
            o.push_str(&format!("# REFUSED on this root: {e}\n"));
        }
        let line = dry(r);
        if step.probe.is_some() {
            o.push_str(&format!("{line} || true\n"));
        } else {
            o.push_str(&line);
            o.push('\n');
        }
    }
    if let Some(a) = &step.ask {
        let cur = vars
            .get(&a.var)
            .cloned()
            .unwrap_or_else(|| format!("<{}>", a.var));
        o.push_str(&format!("# question {}: {}", a.var, a.prompt));
        if !a.choices.is_empty() {
            o.push_str(&format!(" [{}]", a.choices.join(" / ")));
        }
        o.push('\n');
        o.push_str(&format!(
            "{}={}\n",
            a.var,
            exec::shell_quote(cur.as_bytes())
        ));
    }
    if let Some(m) = &step.manual {
        o.push_str("# manual step, confirm when done:\n");
        comment(
            &mut o,
            &subst(m, vars, true).ok().flatten().unwrap_or_default(),
        );
    }
    if let Some(b) = &step.builtin {
        let w = |k: &str| {
            step.with
                .get(k)
                .map(|v| subst(v, vars, true).ok().flatten().unwrap_or_default())
        };
        let g = |rest: Vec<String>| {
            // the store too: a line pasted by hand must reach the store the
            // walk uses, not the default one under --root
            let mut v = vec![
                "guard".to_string(),
                "--root".into(),
                root.display().to_string(),
                "--store".into(),
                store.display().to_string(),
            ];
            v.extend(rest);
            display(&v)
        };
        let line = match b.as_str() {
            "snapshot" => g(vec![
                "snapshot".into(),
                "--kind".into(),
                w("kind").unwrap_or_else(|| "pre".into()),
                "--label".into(),
                w("label").unwrap_or_default(),
            ]),
            "check" => {
                let mut v = vec!["check".to_string()];
                if let Some(a) = w("against").filter(|a| !a.is_empty()) {
                    v.extend(["--against".into(), a]);
                }
                g(v)
            }
            "restore" => {
                let mut v = vec![
                    "restore".to_string(),
                    format!("--{}", w("what").unwrap_or_else(|| "vanished".into())),
                ];
                if let Some(f) = w("from").filter(|f| !f.is_empty()) {
                    v.extend(["--from".into(), f]);
                }
                g(v)
            }
            "vm-clone" => {
                let mut v = vec![
                    "vm".to_string(),
                    "clone".into(),
                    w("domain").unwrap_or_else(|| "<domain>".into()),
                ];
                for (k, f) in [
                    ("name", "--name"),
                    ("disk-target", "--disk-target"),
                    ("connect", "--connect"),
                ] {
                    if let Some(x) = w(k) {
                        v.extend([f.to_string(), x]);
                    }
                }
                g(v)
            }
            "keyring-populate" => {
                let gd = root.join("etc/pacman.d/gnupg").display().to_string();
                let kd = root.join("usr/share/pacman/keyrings").display().to_string();
                format!(
                    "# builtin: import {kd}/*.gpg and locally sign every key in {kd}/*-trusted\n\
                     pacman-key --gpgdir {gd} --add {kd}/*.gpg\n\
                     # for each FPR in *-trusted:\n# pacman-key --gpgdir {gd} --lsign-key FPR",
                    gd = exec::shell_quote(gd.as_bytes()),
                    kd = exec::shell_quote(kd.as_bytes()),
                )
            }
            "luks-target-check" => {
                let s = w("source").unwrap_or_default();
                let h = w("header-mib").unwrap_or_else(|| "16".into());
                match w("target") {
                    None => format!(
                        "# builtin: needed_mib = size of {s} + {h} MiB\nblockdev --getsize64 {s}"
                    ),
                    Some(t) => format!(
                        "# builtin: refuse unless {t} holds {s} plus a {h} MiB LUKS header, and carries no filesystem\n\
                         blockdev --getsize64 {s}; blockdev --getsize64 {t}\n\
                         ! blkid -p {t}"
                    ),
                }
            }
            "luks-header-backup" => format!(
                "cryptsetup luksHeaderBackup {} --header-backup-file {}",
                w("device").unwrap_or_default(),
                exec::shell_quote(
                    format!(
                        "{}/luks/{}-header-<time>.img",
                        vars.get("store").map(String::as_str).unwrap_or("<store>"),
                        w("name").unwrap_or_default()
                    )
                    .as_bytes()
                )
            ),
            other => format!("# unknown builtin {other}"),
        };
        o.push_str(&line);
        o.push('\n');
    }
    if let Some(t) = &step.verify {
        o.push_str(&format!("# verify: {}\n", describe_test(t, vars, root)));
    }
    if let Some(f) = &step.on_failure {
        o.push_str("# on failure the walk stops:\n");
        comment(&mut o, &fill(f, vars));
    }
    o
}

/// The whole walk as a reviewable shell script; never fails for lack of a
/// fact (unknown ones are `<placeholders>`).
/// The dry run's script. `recorded`: the steps an unfinished walk's
/// journal holds, when the dry run is of its `--resume`; each says what the
/// resume will do with it.
pub fn render_script(
    pb: &Playbook,
    vars: &Vars,
    root: &Path,
    store: &Path,
    recorded: Option<&Journal>,
) -> String {
    let mut o = String::new();
    o.push_str("#!/bin/sh\n");
    o.push_str(&format!("# guard playbook {}: {}\n", pb.id, pb.title));
    o.push_str(&format!(
        "# dry run: nothing was changed. Review, then: {}{}\n",
        guard_run(root, store, &pb.id),
        if recorded.is_some() { " --resume" } else { "" }
    ));
    comment(&mut o, &pb.description);
    o.push_str("# facts and answers:\n");
    for (k, v) in vars {
        // (an empty value said as such: `k = ` would end the line in a
        // space and read as if the value were cut off)
        if v.is_empty() {
            o.push_str(&format!("#   {k} = (empty)\n"));
        } else {
            o.push_str(&format!("#   {k} = {v}\n"));
        }
    }
    o.push_str("# unknown facts and answers appear as <name>\n");
    if let Some(j) = recorded {
        o.push_str(&format!(
            "# resuming the walk started {} ({} recorded)\n",
            j.started,
            crate::plural(j.steps.len(), "step")
        ));
    }
    o.push_str("set -eu\n");
    for (n, s) in pb.steps.iter().enumerate() {
        let step = render_step(s, vars, n, pb.steps.len(), root, store);
        let Some(r) = recorded.and_then(|j| j.steps.iter().find(|r| r.id == s.id)) else {
            o.push_str(&step);
            continue;
        };
        // The step's header line, then what the resume does with it.
        let (head, rest) = step
            .trim_start_matches('\n')
            .split_once('\n')
            .unwrap_or((&step, ""));
        o.push_str(&format!("\n{head}\n"));
        // A note can span lines (a restored path may hold a newline): each
        // line stays a comment, or the script would run it.
        let note = r
            .note
            .as_deref()
            .map(|n| format!(": {}", n.replace('\n', "\n#   ")))
            .unwrap_or_default();
        match r.status.as_str() {
            "failed" => {
                o.push_str(&format!(
                    "# FAILED last time ({}){note}; the resume asks whether to retry it (answers file: retry-{} = \"retry\" under [answers])\n",
                    r.ended, s.id
                ));
                o.push_str(rest);
            }
            status => {
                o.push_str(&format!("# recorded {status} ({}){note}: ", r.ended));
                if status != "skipped" && s.done_if.is_some() {
                    o.push_str("not run again unless its check no longer holds\n");
                } else {
                    o.push_str("not run again\n");
                }
                for line in rest.lines() {
                    o.push_str(&format!("#   {line}\n"));
                }
            }
        }
    }
    o
}

/// One LVM report (`vgs`/`lvs --reportformat json`) as `name=bytes` pairs;
/// `None` when the tool is absent or fails (facts never fail a walk).
fn lvm_report(tool: &str, report: &str, name: &str, size: &str) -> Option<String> {
    if !exec::available(tool) {
        return None;
    }
    let fields = format!("{name},{size}");
    let cmd = Cmd::new(tool).args([
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        &fields,
    ]);
    let out = exec::stdout_of(&cmd).ok()?;
    let v = serde_json::from_slice::<serde_json::Value>(&out).ok()?;
    let rows: Vec<String> = v["report"][0][report]
        .as_array()?
        .iter()
        .map(|g| {
            format!(
                "{}={}",
                g[name].as_str().unwrap_or("?"),
                g[size].as_str().unwrap_or("?")
            )
        })
        .collect();
    Some(rows.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> Vars {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_is_per_argument_and_refuses_newlines() {
        let v = vars(&[("lv", "a b;c"), ("empty", ""), ("bad", "x\ny")]);
        assert_eq!(
            subst("/dev/vg/{lv}", &v, false).unwrap().unwrap(),
            "/dev/vg/a b;c"
        );
        assert_eq!(subst("?--key-file={empty}", &v, false).unwrap(), None);
        assert_eq!(subst("?--key-file={unset}", &v, false).unwrap(), None);
        assert!(subst("{unset}", &v, false).is_err());
        assert_eq!(subst("{unset}", &v, true).unwrap().unwrap(), "<unset>");
        let e = subst("{bad}", &v, true).unwrap_err().to_string();
        assert!(e.contains("newline"), "{e}");
        assert_eq!(
            subst("{ echo x; }", &v, false).unwrap().unwrap(),
            "{ echo x; }"
        );
        let on = |root: &str, arg: &str| {
            subst(arg, &vars(&[("root", root)]), false)
                .unwrap()
                .unwrap()
        };
        assert_eq!(on("/", "{root}/etc/apt"), "/etc/apt");
        assert_eq!(on("/", "{root}"), "/");
        assert_eq!(on("/mnt/sys", "{root}/etc/apt"), "/mnt/sys/etc/apt");
    }

    #[test]
    fn builtin_vars_name_real_builtins() {
        for (var, b) in BUILTIN_VARS {
            assert!(valid_name(var), "{var}");
            assert!(super::super::model::BUILTINS.contains(b), "{var}: {b}");
        }
    }

    #[test]
    fn conditions() {
        let v = vars(&[("a", "yes"), ("b", "no"), ("os", "arch")]);
        let t = |c: &str| Cond::parse(c).unwrap().eval(&v);
        assert!(t("a"));
        assert!(!t("b"));
        assert!(!t("unset"));
        assert!(t("!unset"));
        assert!(t("b || a"));
        assert!(!t("a && b"));
        assert!(t("os == arch && !b"));
        assert!(t("os != suse"));
        assert!(!t("unset == x"));
        assert!(Cond::parse("a ==").is_err());
    }

    #[test]
    fn rooted_commands_act_on_the_root() {
        let r = Path::new("/mnt/sys");
        let a = rooted(vec!["pacman".into(), "-Su".into()], r);
        assert_eq!(a[1..3], ["--root".to_string(), "/mnt/sys".into()]);
        assert!(a.contains(&"/mnt/sys/etc/pacman.d/gnupg".to_string()));
        assert_eq!(a.last().unwrap(), "-Su");
        assert_eq!(
            rooted(vec!["zypper".into(), "dup".into()], r),
            ["zypper", "--root", "/mnt/sys", "dup"]
        );
        assert_eq!(rooted(vec!["cryptsetup".into()], r), ["cryptsetup"]);
        assert!(check_rootable(&["apt-get".into(), "update".into()], r).is_err());
        assert!(check_rootable(&["apt-get".into()], Path::new("/")).is_ok());
        assert!(check_rootable(&["pacman".into()], r).is_ok());
        assert_eq!(rooted(vec!["pacman".into()], Path::new("/")), ["pacman"]);
    }
}
