//! Dispatch: turns the parsed command line into a context (root, store, UI,
//! output mode) and runs the command. The core operations (snapshot, check,
//! restore) are public here so playbooks and hooks call the same code.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use serde_json::json;

use crate::checks;
use crate::cli::{Cli, Command, KindArg, PlaybookCommand, VmCommand};
use crate::diff::{self, Change};
use crate::report::Report;
use crate::restore;
use crate::scan::{self, Config, Scope, Sink};
use crate::store::{Manifest, SnapshotKind, Store};
use crate::sysroot::{SysPath, SysRoot};
use crate::ui::{self, Ui, UiOptions};

/// What every command works with.
pub struct App {
    pub root: SysRoot,
    pub store_dir: PathBuf,
    pub json: bool,
    pub yes: bool,
    /// progress bars wanted (a terminal, no --no-progress): passed on to
    /// the guard-vm helper, which draws its own
    pub progress: bool,
    pub ui: Box<dyn Ui>,
}

/// Plain settings, free of clap.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub root: PathBuf,
    pub store: Option<PathBuf>,
    pub json: bool,
    pub yes: bool,
    pub progress: bool,
}

/// How a command guard suggests names guard for this root and store:
/// `guard` for the host's own (`/`, `/var/lib/guard`), else `guard --root
/// R`, with `--store S` unless it is the root's default. A fix pasted as a
/// bare `guard restore …` after `guard --root /mnt/sys check` would look
/// in the host's store and write into the host's /etc.
pub fn guard_invocation(root: &Path, store: &Path) -> String {
    let mut out = String::from("guard");
    if root != Path::new("/") {
        out.push_str(" --root ");
        out.push_str(&crate::exec::shell_quote(root.as_os_str().as_bytes()));
    }
    if store != root.join("var/lib/guard") {
        out.push_str(" --store ");
        out.push_str(&crate::exec::shell_quote(store.as_os_str().as_bytes()));
    }
    out
}

impl App {
    /// [`guard_invocation`] of this run.
    pub fn guard_cmd(&self) -> String {
        guard_invocation(self.root.path(), &self.store_dir)
    }

    pub fn new(s: &Settings, ui_opts: UiOptions) -> Result<App> {
        crate::sysroot::check_root(&s.root)?;
        let root = SysRoot::open(&s.root)?;
        let store_dir = match &s.store {
            // Absolute, as the root is: a playbook's dry run prints guard's
            // own steps as `guard --root R --store S …` for pasting by hand,
            // and a relative S would reach the walk's store only from the
            // directory guard was started in.
            Some(d) => std::path::absolute(d)
                .with_context(|| format!("cannot resolve the store {}", d.display()))?,
            None => {
                // The store is opened by its host path. Inside another
                // root, a symlink on the way would be followed the host's
                // way: an absolute one out of the root, to put /etc/shadow
                // wherever it points on the host.
                let p = SysPath::new("/var/lib/guard");
                if root.path() != Path::new("/") {
                    if let Some(link) = root.symlink_on_the_way(&p) {
                        bail!(
                            "the store {} is reached through the symlink {link} in the root, which guard never follows; name the store with --store",
                            root.host_path(&p).display()
                        );
                    }
                }
                root.host_path(&p)
            }
        };
        Ok(App {
            root,
            store_dir,
            json: s.json,
            yes: s.yes,
            progress: s.progress,
            ui: ui::make(ui_opts),
        })
    }

    pub fn store_read(&self) -> Result<Store> {
        Store::open_read(&self.store_dir)
    }

    pub fn store_write(&self) -> Result<Store> {
        Store::open_write(&self.store_dir)
    }

    /// As `store_write`, but waits (bounded, saying so on stderr) while
    /// another guard holds the lock; `why` names what is to be written.
    pub fn store_write_waiting(&self, why: &str, max: std::time::Duration) -> Result<Store> {
        Store::open_write_waiting(&self.store_dir, max, &mut || {
            self.ui.say(&format!(
                "the store is locked by another guard process (a timer's snapshot?); waiting up to {} s to {why}",
                max.as_secs()
            ))
        })
    }

    pub fn scope(&self) -> Result<Scope> {
        self.scope_of(&Config::load(&self.root)?)
    }

    fn scope_of(&self, cfg: &Config) -> Result<Scope> {
        Scope::new(cfg, Some(&self.store_dir), &self.root)
    }

    /// Prints a JSON document on stdout (the only thing there with --json).
    pub fn print_json(&self, v: &impl Serialize) -> Result<()> {
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer_pretty(&mut out, v)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out));
        match written {
            // the reader went away (`| head`): not the command's failure,
            // which keeps its own exit code (see `out!`)
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }
}

pub fn settings(g: &crate::cli::Global) -> Settings {
    use std::io::IsTerminal;
    Settings {
        root: g.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        store: g.store.clone(),
        json: g.json,
        yes: g.yes,
        progress: !g.no_progress && std::io::stderr().is_terminal(),
    }
}

/// Whether `flag` is on the command line itself (not taken from its
/// environment variable).
pub fn typed(flag: &str) -> bool {
    std::env::args_os().skip(1).any(|a| {
        let a = a.as_encoded_bytes();
        a == flag.as_bytes() || a.starts_with(format!("{flag}=").as_bytes())
    })
}

/// The error for an environment variable set to nothing
/// (`GUARD_STORE=$STORE` with STORE unset): named as the variable the user
/// set, not as the flag it stands for. Never read as "unset": that would
/// act on the default store or root instead of the one meant.
pub fn empty_variable(var: &str, flag: &str) -> String {
    format!("the environment variable {var} is set but empty: unset it, or set it to the value {flag} would take")
}

/// Refuses an empty --root or --store, naming where it came from.
fn refuse_empty(s: &Settings) -> Result<()> {
    for (value, flag, var) in [
        (Some(&s.root), "--root", "GUARD_ROOT"),
        (s.store.as_ref(), "--store", "GUARD_STORE"),
    ] {
        if value.is_some_and(|v| v.as_os_str().is_empty()) {
            if typed(flag) {
                bail!("{flag} needs a directory, not an empty string");
            }
            bail!(empty_variable(var, flag));
        }
    }
    Ok(())
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let s = settings(&cli.global);
    let mut ui_opts = UiOptions {
        yes: s.yes,
        progress: s.progress,
        ..Default::default()
    };
    // Commands that need no root.
    match &cli.command {
        // Both are made in memory and written like every other output: a
        // reader that goes away (`guard completions bash | head`) must not
        // turn them into clap_complete's panic (exit 101) or an error.
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut crate::cli::public_command(), "guard", &mut buf);
            crate::out_raw!("{}", String::from_utf8_lossy(&buf));
            return Ok(0);
        }
        Command::Man => {
            let mut buf = Vec::new();
            crate::cli::man_page(&mut buf)?;
            crate::out_raw!("{}", String::from_utf8_lossy(&buf));
            return Ok(0);
        }
        Command::Run {
            answers: Some(f), ..
        } => {
            let a = crate::playbook::Answers::load(f)?;
            ui_opts.answers = a.answers;
            ui_opts.confirmed = a.confirm;
        }
        _ => {}
    }
    // snapshot and check only read the system (and write the store, which
    // uid 0 owns): they keep CAP_DAC_READ_SEARCH and nothing else, before
    // any thread exists to keep more. `--vm` clones guests, which needs more.
    match &cli.command {
        Command::Snapshot { vm, .. } if vm.is_empty() => crate::privs::drop_to_read_caps()?,
        Command::Check { .. } => crate::privs::drop_to_read_caps()?,
        _ => {}
    }
    refuse_empty(&s)?;
    let app = App::new(&s, ui_opts)?;
    match cli.command {
        Command::Snapshot {
            label,
            kind,
            vm,
            connect,
        } => {
            let kind = match kind {
                KindArg::Manual => SnapshotKind::Manual,
                KindArg::Pre => SnapshotKind::Pre,
                KindArg::Post => SnapshotKind::Post,
                KindArg::Timer => SnapshotKind::Timer,
            };
            cmd_snapshot(&app, kind, label, &vm, connect.as_deref())
        }
        Command::List => cmd_list(&app),
        Command::Show { id } => cmd_show(&app, &id),
        Command::Diff { from, to } => cmd_diff(&app, from.as_deref(), to.as_deref()),
        Command::Check {
            against,
            ack,
            unack,
            acks,
        } => {
            if acks || !ack.is_empty() || !unack.is_empty() {
                crate::acks::command(&app, &ack, &unack, acks)
            } else {
                cmd_check(&app, against.as_deref())
            }
        }
        Command::Restore {
            from,
            vanished,
            pam,
            caps,
            paths,
            dry_run,
        } => {
            let what = if vanished {
                What::Vanished
            } else if pam {
                What::Pam
            } else if caps {
                What::Caps
            } else {
                What::Paths(paths.iter().map(|p| SysPath::new(p.as_bytes())).collect())
            };
            cmd_restore(&app, from.as_deref(), what, dry_run)
        }
        Command::Verify { id } => cmd_verify(&app, id.as_deref()),
        Command::Forget { ids, dry_run } => cmd_forget(&app, &ids, dry_run),
        Command::Prune { keep, dry_run } => cmd_prune(&app, keep, dry_run),
        Command::Playbook { command } => match command {
            PlaybookCommand::List => crate::playbook::cmd_list(&app),
            PlaybookCommand::Show { name } => crate::playbook::cmd_show(&app, &name),
        },
        Command::Run {
            name,
            dry_run,
            answers,
            resume,
        } => crate::playbook::cmd_run(&app, &name, dry_run, resume, answers.as_deref()),
        Command::Vm { command } => cmd_vm(&app, command),
        Command::Hooks { action, manager } => crate::hooks::command(&app, action, manager),
        Command::Units { action } => crate::units::command(&app, action),
        Command::Push { id, to } => {
            // (restic would answer "Please specify repository location
            // (-r …)", flags guard does not have)
            if to.is_empty() {
                if typed("--to") {
                    bail!("--to needs a restic repository, not an empty string");
                }
                bail!(empty_variable("RESTIC_REPOSITORY", "--to"));
            }
            crate::push::command(&app, id.as_deref(), &to)
        }
        Command::HookRun {
            phase,
            manager,
            label,
            timeout,
        } => Ok(crate::hooks::run(&app, phase, manager, label, timeout)),
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
}

/// The result of a snapshot.
#[derive(Debug, Serialize)]
pub struct SnapshotOutcome {
    pub id: String,
    pub entries: usize,
    pub bytes: u64,
    pub new_objects: u64,
    /// What the scan could not read (not in the JSON contract of DESIGN
    /// §2: `guard snapshot` says it on stderr, `guard check` reports it).
    #[serde(skip)]
    pub unreadable: Vec<crate::store::manifest::ScanError>,
    #[serde(skip)]
    pub unreadable_xattrs: u64,
}

/// Below this much free space (or 2% of the filesystem) a snapshot is
/// refused: hooks and timers must never fill the disk.
const MIN_FREE: u64 = 32 << 20;

/// Refuses a snapshot when the store's filesystem is nearly full.
fn check_free(store: &Store) -> Result<()> {
    if let Some((free, frac)) = store.free_space() {
        if free < MIN_FREE || frac < 0.02 {
            bail!(
                "the store's filesystem is nearly full ({} MiB free): snapshot refused; run guard prune",
                free >> 20
            );
        }
    }
    Ok(())
}

/// Takes a snapshot into an already locked store.
pub fn snapshot(
    app: &App,
    store: &Store,
    kind: SnapshotKind,
    label: Option<String>,
) -> Result<SnapshotOutcome> {
    snapshot_with_vms(app, store, kind, label, Vec::new())
}

/// Takes a snapshot that also records guests cloned for it (`--vm`): the
/// records are part of the manifest when it is committed, so a listed
/// snapshot always names its clones.
pub fn snapshot_with_vms(
    app: &App,
    store: &Store,
    kind: SnapshotKind,
    label: Option<String>,
    vms: Vec<crate::store::manifest::VmRecord>,
) -> Result<SnapshotOutcome> {
    crate::privs::require_read_caps()?;
    check_free(store)?;
    let timer = scan::PhaseTimer::new();
    let cfg = Config::load(&app.root)?;
    let scope = app.scope_of(&cfg)?;
    // The newest snapshot (the stat cache) loads while the walk runs, and
    // which of its objects the store has lost (if any) is found meanwhile.
    let spin = app.ui.spinner("walking the configuration");
    let (raw, (cache, lost)) = scan::walk_while(&app.root, &scope, || {
        let cache = store.latest_readable();
        let lost = cache
            .as_ref()
            .map(|c| store.missing_objects(c))
            .unwrap_or_default();
        (cache, lost)
    });
    spin.finish();
    timer.phase("walk + load cache");
    let ledger_from = ledger_plan(
        kind,
        cfg.timer_ledger,
        cache.as_ref(),
        jiff::Timestamp::now(),
    );
    let ledger = match (&ledger_from, &cache) {
        (Some(_), Some(c)) => scan::Ledger::Only(&c.caps),
        _ => scan::Ledger::Full,
    };
    let cap = scan::capture(
        &app.root,
        &scope,
        raw,
        cache.as_ref(),
        &Sink::Store(store, &lost),
        app.ui.as_ref(),
        ledger,
    )?;
    let mut m = cap.manifest;
    m.ledger_from = ledger_from;
    m.id = store.new_id();
    m.created = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    m.kind = kind;
    m.label = label;
    m.vms = vms;
    timer.phase("capture");
    store.commit(&m)?;
    timer.phase("commit");
    Ok(SnapshotOutcome {
        id: m.id.clone(),
        entries: m.entries.len(),
        bytes: m.bytes(),
        new_objects: cap.new_objects,
        unreadable: m.errors.clone(),
        unreadable_xattrs: m.unreadable_xattrs,
    })
}

/// How long a `timer` snapshot may carry a capability ledger forward before
/// it walks the caps roots again itself.
pub const LEDGER_MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Whether a snapshot of `kind` carries the capability ledger of `cache`
/// (the newest snapshot) forward instead of walking every file under the
/// caps roots (~120k files on a desktop-sized /usr, most of a snapshot's
/// time): `Some(id of the full walk)` or `None` for a full walk.
///
/// Only `timer` snapshots carry it forward (unless guard.toml says
/// `timer-ledger = "walk"`), from a full walk at most [`LEDGER_MAX_AGE`]
/// old. Every file on the carried ledger is probed again, so a capability
/// that was lost or a binary that was replaced shows at once; a capability set by hand since the full walk is picked up by
/// the next `manual`, `pre`, `post` or `safety` snapshot, which always walk
/// in full — as does the snapshot taken before an upgrade, where a missing
/// capability would matter.
pub fn ledger_plan(
    kind: SnapshotKind,
    policy: scan::TimerLedger,
    cache: Option<&Manifest>,
    now: jiff::Timestamp,
) -> Option<String> {
    if kind != SnapshotKind::Timer || policy == scan::TimerLedger::Walk {
        return None;
    }
    let cache = cache?;
    let origin = cache
        .ledger_from
        .clone()
        .unwrap_or_else(|| cache.id.clone());
    let walked = crate::store::id_time(&origin)?;
    let age = now.duration_since(walked);
    (age >= jiff::SignedDuration::ZERO && age <= LEDGER_MAX_AGE).then_some(origin)
}

fn cmd_snapshot(
    app: &App,
    kind: SnapshotKind,
    label: Option<String>,
    vms: &[String],
    connect: Option<&str>,
) -> Result<i32> {
    let store = app.store_write()?;
    // Clone first, commit after: the manifest names the clones, and a
    // snapshot that cannot be committed takes its clones back with it.
    // What would refuse the snapshot anyway is checked before a guest's
    // disks are copied (GBs, only to be deleted again).
    if !vms.is_empty() {
        crate::privs::require_read_caps()?;
        check_free(&store)?;
        Config::load(&app.root)?;
    }
    let records = crate::vmlink::clone_vms(app, vms, connect)?;
    let out = match snapshot_with_vms(app, &store, kind, label, records.clone()) {
        Ok(o) => o,
        Err(e) => {
            crate::vmlink::discard_clones(app, &records);
            return Err(e);
        }
    };
    if app.json {
        app.print_json(&out)?;
    } else {
        app.ui.say(&format!(
            "snapshot {}: {}, {}, {}",
            out.id,
            crate::plural(out.entries, "entry"),
            crate::plural(out.bytes, "byte"),
            crate::plural(out.new_objects, "new object")
        ));
        crate::out!("{}", out.id);
    }
    warn_unreadable(app, &out);
    Ok(0)
}

/// How many unreadable paths `guard snapshot` names before it counts.
const UNREADABLE_SHOWN: usize = 10;

/// Says on stderr what the snapshot could not record. Not fatal (a file
/// guard cannot read must not cost the whole snapshot), but never silent:
/// a mistyped `include` in guard.toml, a directory guard cannot list or a
/// package database it cannot read would otherwise show only as a count
/// in `guard show`, long after the upgrade it was taken for.
fn warn_unreadable(app: &App, out: &SnapshotOutcome) {
    if !out.unreadable.is_empty() {
        let mut msg = format!(
            "warning: snapshot {}: {} could not be read and {} not recorded:",
            out.id,
            crate::plural(out.unreadable.len(), "path"),
            if out.unreadable.len() == 1 {
                "is"
            } else {
                "are"
            }
        );
        for e in out.unreadable.iter().take(UNREADABLE_SHOWN) {
            msg.push_str(&format!("\n  {}: {}", e.path, e.error));
        }
        if out.unreadable.len() > UNREADABLE_SHOWN {
            msg.push_str(&format!(
                "\n  … and {} more (guard check lists them as scan/unreadable)",
                out.unreadable.len() - UNREADABLE_SHOWN
            ));
        }
        app.ui.say(&msg);
    }
    if out.unreadable_xattrs > 0 {
        app.ui.say(&format!(
            "warning: snapshot {}: {} could not be read or recorded (guard show counts them)",
            out.id,
            crate::plural(out.unreadable_xattrs, "xattr")
        ));
    }
}

fn cmd_list(app: &App) -> Result<i32> {
    let store = app.store_read()?;
    let list = store.list()?;
    let bad = list.iter().filter(|(_, h)| h.is_err()).count();
    let error = (bad > 0).then(|| {
        format!(
            "{} corrupt or unreadable; run guard verify",
            match bad {
                1 => "1 snapshot is".to_string(),
                n => format!("{n} snapshots are"),
            }
        )
    });
    if app.json {
        let rows: Vec<_> = list
            .iter()
            .map(|(id, h)| match h {
                Ok(h) => json!({"id": id, "created": h.created, "kind": h.kind, "label": h.label, "vms": h.vms}),
                Err(e) => json!({"id": id, "error": e}),
            })
            .collect();
        app.print_json(&with_error(json!({ "snapshots": rows }), &error))?;
    } else {
        if list.is_empty() {
            app.ui
                .say("no snapshots yet: guard snapshot --label baseline");
        }
        for (id, h) in &list {
            match h {
                Ok(h) => {
                    let line = format!(
                        "{id}  {}  {:<6}  {}{}",
                        h.created,
                        h.kind.as_str(),
                        h.label.clone().unwrap_or_default(),
                        if h.vms.is_empty() {
                            String::new()
                        } else {
                            format!("  [vm: {}]", h.vms.join(", "))
                        }
                    );
                    // (no label, a short kind: the columns' padding would
                    // end the line in spaces)
                    crate::out!("{}", line.trim_end())
                }
                Err(e) => crate::out!("{id}  CORRUPT: {e}"),
            }
        }
    }
    match error {
        Some(msg) => failed_after_output(app, msg),
        None => Ok(0),
    }
}

/// A command's JSON document, with `"error": MESSAGE` added when the
/// command failed after all (DESIGN §2: on an error, the error is in the
/// document on stdout); what it did get done stays in the document.
pub fn with_error(mut doc: serde_json::Value, error: &Option<String>) -> serde_json::Value {
    if let (Some(msg), Some(map)) = (error, doc.as_object_mut()) {
        map.insert("error".into(), json!(msg));
    }
    doc
}

/// A command that printed its document (with the error in it, see
/// [`with_error`]) and then failed: with --json the message goes to
/// stderr too (stdout holds one JSON document), exit 3; as text, the usual
/// error line.
pub fn failed_after_output(app: &App, msg: String) -> Result<i32> {
    if app.json {
        crate::err_out!("guard: {msg}");
        return Ok(3);
    }
    bail!(msg)
}

fn cmd_show(app: &App, id: &str) -> Result<i32> {
    let store = app.store_read()?;
    let id = store.resolve(id)?;
    let m = store.load(&id)?;
    let unowned: Vec<String> = m
        .entries
        .iter()
        .filter(|e| e.owners.is_empty() && e.kind != crate::store::FileKind::Dir)
        .map(|e| e.path.to_string())
        .collect();
    let mut by_pkg: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &m.entries {
        for o in &e.owners {
            *by_pkg.entry(o).or_default() += 1;
        }
    }
    if app.json {
        let owners: std::collections::BTreeMap<String, &Vec<String>> = m
            .entries
            .iter()
            .filter(|e| !e.owners.is_empty())
            .map(|e| (e.path.to_string(), &e.owners))
            .collect();
        app.print_json(&json!({
            "id": m.id, "created": m.created, "kind": m.kind, "label": m.label,
            "root": m.root, "os": m.os_name(), "entries": m.entries.len(), "bytes": m.bytes(),
            "package_managers": m.packages.managers, "packages": m.packages.installed.len(),
            "owners": owners, "unowned": unowned,
            // (paths as in every other output: `\xNN` for bytes that are
            // not UTF-8, not the manifest's `{"hex": …}` form)
            "units": m.units.iter().map(|u| json!({"unit": u.unit, "wanted_by": u.wanted_by, "link": u.link.to_string()})).collect::<Vec<_>>(),
            "caps": m.caps.iter().map(|c| json!({"path": c.path.to_string(), "caps": c.caps, "owners": c.owners})).collect::<Vec<_>>(),
            "ledger_from": m.ledger_from,
            "errors": m.errors.len(), "unreadable_xattrs": m.unreadable_xattrs,
            "vms": m.vms,
        }))?;
        return Ok(0);
    }
    crate::out!("snapshot  {}", m.id);
    crate::out!("created   {}", m.created);
    crate::out!("kind      {}", m.kind.as_str());
    if let Some(l) = &m.label {
        crate::out!("label     {l}");
    }
    crate::out!("system    {} (root {})", m.os_name(), m.root);
    crate::out!(
        "entries   {} ({} of file content)",
        m.entries.len(),
        crate::plural(m.bytes(), "byte")
    );
    crate::out!(
        "packages  {} installed ({})",
        m.packages.installed.len(),
        if m.packages.managers.is_empty() {
            "no package database".into()
        } else {
            m.packages.managers.join(", ")
        }
    );
    crate::out!("units     {} enabled", m.units.len());
    if !by_pkg.is_empty() {
        crate::out!(
            "owners    {} owned by {}",
            crate::plural(by_pkg.values().sum::<usize>(), "path"),
            crate::plural(by_pkg.len(), "package")
        );
    }
    crate::out!("admin's own files (owned by no package): {}", unowned.len());
    for p in unowned.iter().take(40) {
        crate::out!("  {p}");
    }
    if unowned.len() > 40 {
        crate::out!("  … and {} more (guard show --json)", unowned.len() - 40);
    }
    if let Some(from) = &m.ledger_from {
        crate::out!("ledger    carried forward from {from} and re-probed (a timer snapshot)");
    }
    if !m.caps.is_empty() {
        crate::out!("file capabilities:");
        for c in &m.caps {
            crate::out!(
                "  {} {}{}",
                c.path,
                c.caps,
                if c.owners.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.owners.join(", "))
                }
            );
        }
    }
    for v in &m.vms {
        crate::out!("vm        {} cloned as {} ({})", v.domain, v.clone, v.uri);
    }
    if !m.errors.is_empty() || m.unreadable_xattrs > 0 {
        crate::out!(
            "unreadable: {}, {}",
            crate::plural(m.errors.len(), "path"),
            crate::plural(m.unreadable_xattrs, "xattr")
        );
    }
    Ok(0)
}

/// The baseline (or the given snapshot) loaded, or None when there is none.
pub fn load_baseline(store: &Store, given: Option<&str>) -> Result<Option<Manifest>> {
    let id = match given {
        Some(g) => Some(store.resolve(g)?),
        None => store.baseline()?,
    };
    id.map(|id| store.load(&id)).transpose()
}

/// Scans the live system without storing anything. `cache` is the
/// snapshot compared against: its hashes are reused for unchanged files and
/// only its capped files are probed.
pub fn live(app: &App, cache: Option<&Manifest>) -> Result<Manifest> {
    let scope = app.scope()?;
    let spin = app.ui.spinner("walking the configuration");
    let (raw, ()) = scan::walk_while(&app.root, &scope, || ());
    spin.finish();
    live_from(app, &scope, raw, cache)
}

/// [`live`] for a walk already taken (see [`check`]).
fn live_from(
    app: &App,
    scope: &scan::Scope,
    raw: scan::RawWalk,
    cache: Option<&Manifest>,
) -> Result<Manifest> {
    let ledger = scan::Ledger::Only(cache.map_or(&[][..], |m| &m.caps[..]));
    let mut m = scan::capture(
        &app.root,
        scope,
        raw,
        cache,
        &Sink::HashOnly,
        app.ui.as_ref(),
        ledger,
    )?
    .manifest;
    m.id = "live".into();
    Ok(m)
}

/// Whether a path recorded before and missing from `new` is really gone:
/// still in the scope, and not beneath a directory `new` could not list
/// (unreadable is not vanished: `scan/unreadable` says so instead).
fn compared<'a>(scope: &'a scan::Scope, new: &Manifest) -> impl Fn(&SysPath) -> bool + 'a {
    let unlisted = scan::unlisted(new);
    move |p| scope.contains(p) && !unlisted.iter().any(|d| p != d && p.starts_with(d))
}

/// A baseline compared with the live root sees what a usr-merge moved
/// where the live walk records it (see [`scan::merged_dirs`]); before the
/// live scan, so the capability probe looks at `/usr/bin/ping`, not the
/// `/bin/ping` it cannot reach without following `/bin`.
/// Returns the moves it followed, (old top, where it went).
fn follow_merged_dirs(app: &App, base: &mut Manifest) -> Vec<(SysPath, SysPath)> {
    let merged = scan::merged_dirs(&app.root, base);
    for (from, to) in &merged {
        diff::rebase(base, from, to);
    }
    merged
}

fn cmd_diff(app: &App, from: Option<&str>, to: Option<&str>) -> Result<i32> {
    let store = app.store_read()?;
    let Some(old) = load_baseline(&store, from)? else {
        bail!("no baseline snapshot to compare with: guard snapshot first");
    };
    let mut old = old;
    let new = match to {
        Some(t) => store.load(&store.resolve(t)?)?,
        None => {
            follow_merged_dirs(app, &mut old);
            live(app, Some(&old))?
        }
    };
    // (what lies above an include decides what may be shown of it)
    let mut new = new;
    old.mark_closed_above(&app.root);
    new.mark_closed_above(&app.root);
    let scope = app.scope()?;
    let compared = compared(&scope, &new);
    let changes = diff::files(&old, &new, &compared);
    let text_of = |m: &Manifest, e: &crate::store::Entry| -> Option<Vec<u8>> {
        if m.id == "live" {
            checks::live_content(&app.root, e)
        } else {
            e.blake3.as_ref().and_then(|h| store.read_object(h).ok())
        }
    };
    let mut rows = Vec::new();
    for c in &changes {
        let (what, detail) = match c {
            Change::Added(e) => (
                "added",
                format!(
                    "{} ({})",
                    e.kind.as_str(),
                    if e.owners.is_empty() {
                        "no package".into()
                    } else {
                        e.owners.join(", ")
                    }
                ),
            ),
            Change::Vanished(e) => (
                "vanished",
                format!(
                    "{} ({})",
                    e.kind.as_str(),
                    if e.owners.is_empty() {
                        "no package".into()
                    } else {
                        e.owners.join(", ")
                    }
                ),
            ),
            Change::Modified {
                old: o,
                new: n,
                content,
                meta,
            } => {
                let mut d: Vec<String> = meta.iter().map(|m| m.to_string()).collect();
                if *content {
                    // both sides decide: a key that was 0644 in the
                    // snapshot and is 0600 now (or the reverse, or one in
                    // a directory closed to others) is shown on neither
                    if !old.world_readable(o) || !new.world_readable(n) {
                        d.push("content changed (not shown: not world-readable)".into());
                    } else if o.size > checks::files::DIFF_LIMIT
                        || n.size > checks::files::DIFF_LIMIT
                    {
                        // as `check` says it: both sides were read whole
                        // to be diffed, 2 GB of memory for a 1 GB image
                        d.push(format!("content changed ({} -> {} bytes)", o.size, n.size));
                    } else {
                        match (text_of(&old, o), text_of(&new, n)) {
                            (Some(a), Some(b)) => d.push(
                                diff::unified(
                                    &a,
                                    &b,
                                    &format!("{} ({})", o.path, old.id),
                                    &format!("{} ({})", n.path, new.id),
                                )
                                .unwrap_or_else(|| {
                                    format!(
                                        "binary content changed ({} -> {} bytes)",
                                        o.size, n.size
                                    )
                                }),
                            ),
                            _ => d.push("content changed".into()),
                        }
                    }
                }
                ("modified", d.join("\n"))
            }
        };
        rows.push((c.path().to_string(), what, detail));
    }
    let pkgs = diff::packages(&old, &new);
    if app.json {
        app.print_json(&json!({
            "from": old.id, "to": new.id,
            "changes": rows.iter().map(|(p, w, d)| json!({"path": p, "change": w, "detail": d})).collect::<Vec<_>>(),
            "packages": pkgs.iter().map(|p| json!({"name": p.name, "old": p.old, "new": p.new})).collect::<Vec<_>>(),
        }))?;
    } else {
        crate::out!(
            "from {} to {}",
            old.id,
            if new.id == "live" {
                "the live system"
            } else {
                new.id.as_str()
            }
        );
        for (p, w, d) in &rows {
            crate::out!("{w:<9} {p}");
            for l in diff::display_lines(d).filter(|l| !l.is_empty()) {
                crate::out!("          {l}");
            }
        }
        for p in &pkgs {
            crate::out!(
                "package   {} {} -> {}",
                p.name,
                p.old.as_deref().unwrap_or("(absent)"),
                p.new.as_deref().unwrap_or("(removed)")
            );
        }
        if rows.is_empty() && pkgs.is_empty() {
            crate::out!("no changes");
        }
    }
    Ok(0)
}

/// Runs every check against the baseline (or `against`); the report.
pub fn check(app: &App, against: Option<&str>) -> Result<Report> {
    crate::privs::require_read_caps()?;
    let timer = scan::PhaseTimer::new();
    let store = app.store_read()?;
    let scope = app.scope()?;
    // the baseline loads while the walk runs on the other threads
    let spin = app.ui.spinner("walking the configuration");
    let (raw, base) = scan::walk_while(&app.root, &scope, || load_baseline(&store, against));
    spin.finish();
    let mut base = base?;
    if let Some(b) = base.as_mut() {
        follow_merged_dirs(app, b);
    }
    timer.phase("walk + load baseline");
    let mut live = live_from(app, &scope, raw, base.as_ref())?;
    // (what lies above an include decides what may be shown of it)
    live.mark_closed_above(&app.root);
    if let Some(b) = base.as_mut() {
        b.mark_closed_above(&app.root);
    }
    let changes = match &base {
        Some(b) => diff::files(b, &live, &compared(&scope, &live)),
        None => Vec::new(),
    };
    timer.phase("diff");
    let cx = checks::Context {
        root: &app.root,
        baseline: base.as_ref(),
        live: &live,
        changes: &changes,
        store: &store,
    };
    let mut findings = checks::run_all(&cx);
    timer.phase("checks");
    for f in &mut findings {
        f.fingerprint = crate::acks::fingerprint(f, base.as_ref(), &live);
    }
    crate::acks::apply(&store, &mut findings)?;
    let mut report = Report::new(
        base.map(|b| b.id),
        app.root.path().display().to_string(),
        findings,
    );
    report.invocation = Some(app.guard_cmd()).filter(|g| g != "guard");
    Ok(report)
}

fn cmd_check(app: &App, against: Option<&str>) -> Result<i32> {
    let report = check(app, against)?;
    if app.json {
        app.print_json(&report)?;
    } else {
        crate::out_raw!("{}", report.to_text());
    }
    Ok(report.exit_code())
}

pub enum What {
    Vanished,
    /// the vanished PAM service files no package dropped on purpose
    Pam,
    Caps,
    Paths(Vec<SysPath>),
}

/// Plan → show → confirm → safety snapshot → apply.
pub fn restore_cmd(
    app: &App,
    from: Option<&str>,
    what: What,
    dry_run: bool,
) -> Result<(restore::Plan, Option<restore::Applied>)> {
    // Take the lock first unless dry-running: the plan must not go stale
    // under another writer.
    let store = if dry_run {
        app.store_read()?
    } else {
        app.store_write()?
    };
    restore_in(app, &store, from, what, dry_run)
}

/// As `restore_cmd`, in a store the caller opened (locked unless
/// `dry_run`): a playbook step waits for the lock where the command refuses.
pub fn restore_in(
    app: &App,
    store: &Store,
    from: Option<&str>,
    what: What,
    dry_run: bool,
) -> Result<(restore::Plan, Option<restore::Applied>)> {
    let Some(mut base) = load_baseline(store, from)? else {
        bail!("no snapshot to restore from: guard snapshot first (or --from ID)");
    };
    // After a usr-merge the snapshot's /lib/… lives under /usr/lib/…: plan
    // there, as check compares there. Recreating /lib/systemd/system would
    // be refused anyway (guard never writes through the /lib link), and
    // what really vanished must come back where the system now reads it.
    // A path the user names the old way is looked up where it moved.
    let merged = follow_merged_dirs(app, &mut base);
    let what = match what {
        What::Paths(ps) => What::Paths(
            ps.into_iter()
                .map(|p| {
                    merged
                        .iter()
                        .find_map(|(old, new)| diff::rebased(&p, old, new))
                        .unwrap_or(p)
                })
                .collect(),
        ),
        other => other,
    };
    let mut plan = match what {
        What::Vanished => restore::plan_vanished(&base, &app.root, &app.scope()?),
        What::Pam => {
            let mut p = restore::plan_vanished(&base, &app.root, &app.scope()?);
            restore::keep_lost_pam_files(&mut p);
            p
        }
        What::Caps => restore::plan_caps(&base, &app.root),
        What::Paths(ps) => restore::plan_paths(&base, &app.root, &ps)?,
    };
    let lines: Vec<String> = plan.items.iter().map(|i| i.to_string()).collect();
    // A dry run's plan is what the command gives: stdout, where
    // `--dry-run > plan.txt` finds it (with --json the document holds it,
    // and stdout holds nothing else). The plan shown before a confirmation
    // goes with the question, on stderr, so a person answering sees it
    // even with stdout sent to a file.
    let show = |line: &str| match (dry_run, app.json) {
        (true, false) => crate::out!("{line}"),
        _ => app.ui.say(line),
    };
    show(&format!(
        "restore plan from snapshot {} ({}):",
        plan.from,
        crate::plural(plan.items.len(), "item")
    ));
    if !app.json || dry_run {
        for l in &lines {
            show(&format!("  {l}"));
        }
    }
    for (p, why) in &plan.skipped {
        show(&format!("  skip        {p}: {why}"));
    }
    let dropped = plan.items.iter().filter(|i| i.dropped.is_some()).count();
    if dropped > 0 {
        // (in the number it takes: "1 of these 3 items is a path", never
        // "1 … are paths")
        let (what, ships) = if dropped == 1 {
            ("is a path its package", "it")
        } else {
            ("are paths their packages", "them")
        };
        show(&format!(
            "{dropped} of these {} {what} dropped on purpose \
             (upgraded to a version that no longer ships {ships}, or removed), not an admin's loss",
            crate::plural(plan.items.len(), "item")
        ));
    }
    if dry_run || plan.items.is_empty() {
        return Ok((plan, None));
    }
    // On a terminal what the packages dropped starts unchecked and the
    // admin's own losses checked; `--yes` and scripts still take every
    // item (`--vanished` is every vanished path), told so by the line above.
    let checked: Vec<bool> = plan.items.iter().map(|i| i.dropped.is_none()).collect();
    let prompt = if dropped > 0 {
        format!(
            "Restore these? (the {dropped} {})",
            if dropped == 1 {
                "its package dropped starts unchecked"
            } else {
                "their packages dropped start unchecked"
            }
        )
    } else {
        "Restore these?".to_string()
    };
    let keep = app.ui.multi_select(&prompt, &lines, &checked)?;
    if keep.is_empty() {
        bail!("nothing selected; nothing restored");
    }
    plan.select(&keep);
    // From the answer on, SIGTERM, SIGINT and SIGHUP (a systemd stop, the
    // admin's Ctrl-C, a dropped ssh session) stop the restore between two
    // items, reported like any other stop, instead of ending it unseen
    // with nothing said about what was done.
    let _caught = crate::interrupt::catch_for_now()?;
    let safety = snapshot(
        app,
        store,
        SnapshotKind::Safety,
        Some("before-restore".into()),
    )
    .context("safety snapshot before restore failed; nothing restored")?;
    app.ui.say(&format!("safety snapshot {} taken", safety.id));
    let bar = app.ui.progress(plan.items.len() as u64, "restoring");
    let applied = restore::apply(&plan, &app.root, store, bar.as_ref());
    Ok((plan, Some(applied)))
}

fn cmd_restore(app: &App, from: Option<&str>, what: What, dry_run: bool) -> Result<i32> {
    let (plan, applied) = restore_cmd(app, from, what, dry_run)?;
    let failed = applied.as_ref().and_then(|a| a.failed.clone());
    let incomplete = applied.as_ref().map_or(0, |a| a.incomplete.len());
    let refused = applied.as_ref().map_or(0, |a| a.refused.len());
    let error = if let Some((p, e)) = &failed {
        let left = applied.as_ref().map_or(0, |a| a.not_done.len());
        Some(format!(
            "restore stopped at {p}: {e}; {} not done, everything else is as it was{}",
            crate::plural(left, "item"),
            if refused > 0 {
                format!(
                    " ({} refused before it, see above)",
                    crate::plural(refused, "item")
                )
            } else {
                String::new()
            }
        ))
    } else if let Some((p, e)) = applied.as_ref().and_then(|a| a.refused.first()) {
        // The others were restored: each refusal concerned its own path
        // (a symlink on the way), and the rest of the plan went on.
        Some(format!(
            "{} not restored ({}{p}: {e}); everything else was",
            crate::plural(refused, "item"),
            if refused > 1 {
                "see above; the first: "
            } else {
                ""
            }
        ))
    } else if let Some(sig) = applied.as_ref().and_then(|a| a.interrupted.as_ref()) {
        Some(format!(
            "interrupted by {sig} as the last item was written: every item of the plan was restored"
        ))
    } else if incomplete > 0 {
        // A path put back without an xattr it had is not as in the
        // snapshot: say so in the exit status too, after every other path
        // was done.
        Some(format!(
            "{} restored without everything the snapshot records for {} (see above)",
            crate::plural(incomplete, "item"),
            if incomplete == 1 { "it" } else { "them" }
        ))
    } else {
        None
    };
    if app.json {
        app.print_json(&with_error(json!({
            "from": plan.from,
            "dry_run": dry_run,
            "plan": plan.items.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            "items": plan.items.iter().map(|i| json!({
                "path": i.path.to_string(),
                "line": i.to_string(),
                "dropped": i.dropped,
            })).collect::<Vec<_>>(),
            "skipped": plan.skipped.iter().map(|(p, w)| json!({"path": p.to_string(), "reason": w})).collect::<Vec<_>>(),
            "restored": applied.as_ref().map(|a| a.restored.clone()).unwrap_or_default(),
            "incomplete": applied.as_ref().map(|a| &a.incomplete[..]).unwrap_or_default()
                .iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "refused": applied.as_ref().map(|a| &a.refused[..]).unwrap_or_default()
                .iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "failed": failed.as_ref().map(|(p, e)| json!({"path": p, "error": e})),
        }), &error))?;
    } else if let Some(a) = &applied {
        let mtime_only: std::collections::HashSet<String> = plan
            .items
            .iter()
            .filter(|i| matches!(i.action, restore::Action::Mtime { .. }))
            .map(|i| i.path.to_string())
            .collect();
        for p in &a.restored {
            match a.incomplete.iter().find(|(q, _)| q == p) {
                Some((_, e)) => crate::out!("restored {p}, but not all of it: {e}"),
                None if mtime_only.contains(p) => crate::out!("mtime restored {p}"),
                None => crate::out!("restored {p}"),
            }
        }
        for (p, e) in &a.refused {
            crate::out!("not restored {p}: {e}");
        }
    } else if plan.items.is_empty() {
        crate::out!("nothing to restore");
    }
    match error {
        Some(msg) => failed_after_output(app, msg),
        None => Ok(0),
    }
}

fn cmd_verify(app: &App, id: Option<&str>) -> Result<i32> {
    // Elsewhere a store not made yet reads as empty; verifying one (a
    // mistyped --store, a store not mounted) must not say "0 problems".
    if !app.store_dir.exists() {
        bail!("no store at {}", app.store_dir.display());
    }
    let store = app.store_read()?;
    let ids = match id {
        Some(i) => vec![store.resolve(i)?],
        None => store.ids()?,
    };
    let bar = app.ui.progress(0, "verifying");
    let rep = store.verify(&ids, bar.as_ref());
    // Known damage decides (2) even when other objects could not be read:
    // that much is certain. Otherwise an object or manifest verify could
    // not read (a user without root's rights, an I/O error) proves
    // nothing either way: UNKNOWN, not CRITICAL (DESIGN §2).
    let unreadable = rep.unreadable();
    let error = (!rep.damaged() && unreadable > 0).then(|| {
        let (what, they, are) = match unreadable {
            1 => ("1 object or manifest".to_string(), "it", "is"),
            n => (format!("{n} objects or manifests"), "they", "are"),
        };
        format!("{what} could not be read (listed as unreadable); verify cannot tell whether {they} {are} intact")
    });
    if app.json {
        app.print_json(&with_error(serde_json::to_value(&rep)?, &error))?;
    } else {
        for p in &rep.problems {
            match &p.object {
                Some(o) => crate::out!(
                    "{}: object {o} {}; needed by {}",
                    p.snapshot,
                    p.problem,
                    p.paths.join(", ")
                ),
                None => crate::out!("{}: {}", p.snapshot, p.problem),
            }
        }
        crate::out!(
            "{}, {} checked, {}",
            crate::plural(rep.snapshots.len(), "snapshot"),
            crate::plural(rep.objects_checked, "object"),
            crate::plural(rep.problems.len(), "problem")
        );
    }
    match error {
        Some(msg) => failed_after_output(app, msg),
        None if rep.damaged() => Ok(2),
        None => Ok(0),
    }
}

/// `forget` and `prune`: plan → show → confirm → apply (DESIGN §2). The
/// plan (which snapshots, and which objects go with them) is made without
/// the lock: a confirmation may wait for minutes, and a hook's snapshot
/// must not wait on it. So `apply` gets the store locked and the snapshots
/// shown, and decides again there what still goes.
fn show_gc(
    app: &App,
    what: &str,
    ids: Vec<String>,
    dry_run: bool,
    apply: impl FnOnce(&Store, &[String], &crate::store::GcReport) -> Result<crate::store::GcReport>,
) -> Result<i32> {
    // (with no snapshot to drop, what a killed `forget` left is still
    // collected: objects no snapshot needs go, whatever dropped them)
    let plan = app.store_read()?.forget_plan(&ids)?;
    // One document shape whatever the outcome (nothing to do, a dry run,
    // done), so a script reads the same keys from each.
    let doc = |r: &crate::store::GcReport, dry_run: bool| {
        json!({
            "snapshots": r.snapshots,
            "objects": r.objects,
            "bytes": r.bytes,
            "kept_clones": r.kept_clones,
            "dry_run": dry_run,
        })
    };
    if plan.snapshots.is_empty() && plan.objects == 0 {
        if app.json {
            app.print_json(&doc(&plan, dry_run))?;
        } else {
            crate::out!("nothing to {what}");
        }
        return Ok(0);
    }
    let sum = |r: &crate::store::GcReport| {
        format!(
            "{}, {}, {}",
            crate::plural(r.snapshots.len(), "snapshot"),
            crate::plural(r.objects, "object"),
            crate::plural(r.bytes, "byte")
        )
    };
    let which = format!("{what}: {}", plan.snapshots.join(" "));
    if dry_run {
        // the plan is a dry run's output, which snapshots included (as
        // with restore): stdout; before a question it goes with it
        if app.json {
            app.ui.say(&which);
            app.print_json(&doc(&plan, true))?;
        } else {
            crate::out!("{which}");
            crate::out!("would remove {}", sum(&plan));
            for l in kept_clone_lines(&plan.kept_clones, "would stay") {
                crate::out!("{l}");
            }
        }
        return Ok(0);
    }
    app.ui.say(&which);
    for l in kept_clone_lines(&plan.kept_clones, "stays") {
        app.ui.say(&l);
    }
    if !app.ui.confirm(&format!("{what}: remove {}?", sum(&plan)))? {
        bail!("nothing removed");
    }
    let store = app.store_write()?;
    let rep = apply(&store, &plan.snapshots, &plan)?;
    if rep.snapshots.len() < plan.snapshots.len() {
        app.ui.say(&format!(
            "{} of them kept: the store changed since the plan was shown (another guard)",
            plan.snapshots.len() - rep.snapshots.len()
        ));
    }
    if app.json {
        app.print_json(&doc(&rep, false))?;
    } else {
        crate::out!("removed {}", sum(&rep));
        for l in kept_clone_lines(&rep.kept_clones, "kept") {
            crate::out!("{l}");
        }
    }
    Ok(0)
}

/// What `forget`/`prune` say about the guest clones of the snapshots they
/// drop: guard never deletes a guest there, and the dropped manifest was
/// the clone's only record, so each is named with its files and how to
/// remove it.
pub fn kept_clone_lines(kept: &[crate::store::KeptClone], verb: &str) -> Vec<String> {
    let mut out = Vec::new();
    for k in kept {
        out.push(format!(
            "vm clone {} (of {}, snapshot {}) {verb}: guard does not delete guests{}",
            k.clone,
            k.domain,
            k.snapshot,
            if k.files.is_empty() {
                String::new()
            } else {
                format!("; its copies take space: {}", k.files.join(" "))
            }
        ));
        out.push(format!("  to remove it: {}", k.remove));
    }
    out
}

fn cmd_forget(app: &App, ids: &[String], dry_run: bool) -> Result<i32> {
    let store = app.store_read()?;
    let ids: Vec<String> = ids
        .iter()
        .map(|i| store.resolve(i))
        .collect::<Result<_>>()?;
    // (under the lock, `forget` refuses the lot when one of them has gone)
    show_gc(app, "forget", ids, dry_run, |s, shown, plan| {
        s.forget_as_planned(shown, plan)
    })
}

fn cmd_prune(app: &App, keep: usize, dry_run: bool) -> Result<i32> {
    let ids = prune_plan(&app.store_read()?, keep)?;
    show_gc(app, "prune", ids, dry_run, |s, shown, plan| {
        // The plan again, under the lock: another guard may have forgotten
        // a newer snapshot since, so that one shown now falls among the
        // newest N. Only what both plans drop goes.
        let now = prune_plan(s, keep)?;
        let ids: Vec<String> = shown.iter().filter(|i| now.contains(i)).cloned().collect();
        s.forget_as_planned(&ids, plan)
    })
}

/// The retention policy's plan for `store` ([`Store::prune_plan`]), keeping
/// what an unfinished playbook walk still needs. Used by `prune` and by
/// the package hooks after their `pre` snapshot.
pub fn prune_plan(store: &Store, keep: usize) -> Result<Vec<String>> {
    let pinned = crate::playbook::engine::snapshots_in_use(store)?;
    store.prune_plan(keep, &pinned)
}

/// `guard vm …` runs the `guard-vm` helper next to this binary (or on
/// PATH), so the guard binary itself never links libvirt.
pub fn guard_vm_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("guard-vm")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("guard-vm"))
}

fn cmd_vm(app: &App, command: VmCommand) -> Result<i32> {
    let mut argv: Vec<OsString> = Vec::new();
    if app.json {
        argv.push("--json".into());
    }
    if app.yes {
        argv.push("--yes".into());
    }
    if !app.progress {
        argv.push("--no-progress".into());
    }
    argv.push("--store".into());
    argv.push(app.store_dir.clone().into());
    match command {
        VmCommand::List { connect } => {
            argv.push("list".into());
            if let Some(c) = connect {
                argv.extend(["--connect".into(), c.into()]);
            }
        }
        VmCommand::Clone {
            domain,
            name,
            disk_target,
            connect,
            dry_run,
        } => {
            argv.push("clone".into());
            argv.push(domain.into());
            if let Some(n) = name {
                argv.extend(["--name".into(), n.into()]);
            }
            for d in disk_target {
                argv.extend(["--disk-target".into(), d.into()]);
            }
            if let Some(c) = connect {
                argv.extend(["--connect".into(), c.into()]);
            }
            if dry_run {
                argv.push("--dry-run".into());
            }
        }
    }
    crate::exec::passthrough(&guard_vm_path(), &argv)
        .map_err(|e| anyhow!("{e:#}: guard vm needs the guard-vm helper (built with the `vm` feature, needs libvirt)"))
}

/// The store path a user sees, for messages.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, ledger_from: Option<&str>) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "version": 2, "id": id, "created": "", "kind": "timer", "root": "/",
            "guard_version": "", "entries": []
        }))
        .unwrap();
        m.ledger_from = ledger_from.map(str::to_string);
        m
    }

    #[test]
    fn only_timer_snapshots_carry_a_recent_ledger_forward() {
        let now = crate::store::id_time("20261123-120000-000").unwrap();
        let walked = snap("20261123-060000-000", None);
        let plan = |k, c: Option<&Manifest>| ledger_plan(k, scan::TimerLedger::Carry, c, now);
        // a timer snapshot carries the full walk forward, keeping its origin
        assert_eq!(
            plan(SnapshotKind::Timer, Some(&walked)).as_deref(),
            Some("20261123-060000-000")
        );
        let carried = snap("20261123-110000-000", Some("20261123-060000-000"));
        assert_eq!(
            plan(SnapshotKind::Timer, Some(&carried)).as_deref(),
            Some("20261123-060000-000")
        );
        // every other kind walks in full; so does a timer with no snapshot
        // before it or with a full walk older than a day
        for k in [
            SnapshotKind::Manual,
            SnapshotKind::Pre,
            SnapshotKind::Post,
            SnapshotKind::Safety,
        ] {
            assert_eq!(plan(k, Some(&walked)), None, "{k:?}");
        }
        assert_eq!(plan(SnapshotKind::Timer, None), None);
        let old = snap("20261122-110000-000", None);
        assert_eq!(plan(SnapshotKind::Timer, Some(&old)), None);
        let stale = snap("20261123-110000-000", Some("20261122-110000-000"));
        assert_eq!(plan(SnapshotKind::Timer, Some(&stale)), None);
        // a clock that went backwards is no reason to trust the old walk
        let future = snap("20261124-110000-000", None);
        assert_eq!(plan(SnapshotKind::Timer, Some(&future)), None);
        // guard.toml can ask timer snapshots to walk too
        let walk = ledger_plan(
            SnapshotKind::Timer,
            scan::TimerLedger::Walk,
            Some(&walked),
            now,
        );
        assert_eq!(walk, None);
    }
}
