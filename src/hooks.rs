//! Package-manager hooks (pacman alpm hooks, a libzypp commit plugin, apt
//! `DPkg::Pre/Post-Invoke`), the files guard installs into a root for them
//! and for its units, and `guard hook-run`, the never-failing entry point
//! the hooks call.
//!
//! Every file guard installs carries [`MARKER`] in its first lines: install
//! refuses to overwrite a file without it and uninstall removes only files
//! with it, so guard never clobbers or deletes an admin's own hook.

use std::ffi::OsStr;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, bail, Context as _, Result};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde_json::json;

use crate::app::App;
use crate::cli::{HookPhase, InstallAction, ManagerArg};
use crate::store::SnapshotKind;
use crate::sysroot::SysPath;

/// Where hooks and units find guard inside the root. alpm hooks run in a
/// chroot of the root, so this is a path inside it, not the host's.
pub const GUARD_BIN: &str = "/usr/bin/guard";

/// The first word of guard's apt `Pre-Install-Pkgs` command: a shell
/// assignment that does nothing, under which apt looks up the hook's
/// protocol version (`DPkg::Tools::Options::WORD::Version`).
const APT_HOOK_TOKEN: &str = "guard_hook=pre";

/// Names a file as guard's own; install and uninstall look for it.
pub const MARKER: &str =
    "guard-managed: written by guard; `guard hooks|units uninstall` removes it";

/// Snapshots the retention policy keeps per automatic kind (DESIGN §4).
pub const KEEP: usize = 20;

/// One file guard wants in the root.
#[derive(Debug, Clone)]
pub struct Planned {
    pub path: SysPath,
    pub content: String,
    pub mode: u32,
}

/// What install or uninstall will do to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Remove,
    Absent,
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Remove => "remove",
            Action::Absent => "absent",
        }
    }
    fn changes(&self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Remove)
    }
}

fn has_marker(data: &[u8]) -> bool {
    let head: Vec<&[u8]> = data.split(|b| *b == b'\n').take(4).collect();
    head.iter()
        .any(|l| l.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()))
}

fn read_exact_file(app: &App, p: &SysPath) -> Result<Option<Vec<u8>>> {
    match app.root.open_exact(p) {
        Ok(mut f) => {
            let st = rustix::fs::fstat(&f)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
            {
                bail!("{p} exists and is not a regular file guard wrote; refusing to touch it");
            }
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("cannot read {p}: {e}")),
    }
}

/// Decides, touching nothing, what install (or uninstall) does to each file.
/// A file in the way that guard did not write is refused.
pub fn plan(app: &App, files: &[Planned], action: InstallAction) -> Result<Vec<(Planned, Action)>> {
    let mut out = Vec::new();
    for f in files {
        let cur = read_exact_file(app, &f.path)?;
        let a = match (action, cur) {
            (InstallAction::Install, None) => Action::Create,
            (InstallAction::Install, Some(c)) if !has_marker(&c) => bail!(
                "{} exists and was not written by guard; refusing to overwrite it (move it away first)",
                f.path
            ),
            (InstallAction::Install, Some(c)) => {
                let same_mode = app
                    .root
                    .lstat(&f.path)
                    .map(|st| st.st_mode & 0o7777 == f.mode)
                    .unwrap_or(false);
                if c == f.content.as_bytes() && same_mode {
                    Action::Unchanged
                } else {
                    Action::Update
                }
            }
            (InstallAction::Uninstall, None) => Action::Absent,
            (InstallAction::Uninstall, Some(c)) if !has_marker(&c) => bail!(
                "{} was not written by guard; refusing to remove it",
                f.path
            ),
            (InstallAction::Uninstall, Some(_)) => Action::Remove,
        };
        out.push((f.clone(), a));
    }
    Ok(out)
}

/// Opens (creating with mode 0755 as needed) a directory inside the root,
/// never through a symlink.
fn ensure_dir(app: &App, p: &SysPath) -> Result<OwnedFd> {
    let mut missing = Vec::new();
    let mut cur = p.clone();
    let fd = loop {
        match app.root.open_dir(&cur) {
            Ok(fd) => break fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(cur.file_name().to_vec());
                cur = cur
                    .parent()
                    .ok_or_else(|| anyhow!("cannot open the root"))?;
            }
            Err(e) => bail!("cannot open {cur} (a symlink or not a directory?): {e}"),
        }
    };
    let mut fd = fd;
    for name in missing.into_iter().rev() {
        let name = OsStr::from_bytes(&name);
        match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => bail!("cannot create {}/{}: {e}", cur, name.to_string_lossy()),
        }
        fd = rustix::fs::openat(
            &fd,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}/{}", cur, name.to_string_lossy()))?;
        cur = cur.join(name.as_bytes());
    }
    Ok(fd)
}

/// Writes one file atomically inside the root: temp file beside it, fsync,
/// rename, fsync of the directory.
fn write_in_root(app: &App, f: &Planned) -> Result<()> {
    let parent = f.path.parent().unwrap_or_else(SysPath::root);
    let dir = ensure_dir(app, &parent)?;
    let name = OsStr::from_bytes(f.path.file_name()).to_os_string();
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(&name);
    tmp.push(format!(".guard-tmp.{}", std::process::id()));
    let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    let fd = rustix::fs::openat(
        &dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("cannot write {}", f.path))?;
    let res = (|| -> Result<()> {
        let mut file = std::fs::File::from(fd);
        file.write_all(f.content.as_bytes())?;
        rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(f.mode))?;
        file.sync_all()?;
        rustix::fs::renameat(&dir, &tmp, &dir, &name)?;
        rustix::fs::fsync(&dir)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    }
    res.with_context(|| format!("cannot write {}", f.path))
}

fn remove_in_root(app: &App, p: &SysPath) -> Result<()> {
    let dir = app
        .root
        .open_dir(&p.parent().unwrap_or_else(SysPath::root))
        .with_context(|| format!("cannot open the directory of {p}"))?;
    rustix::fs::unlinkat(&dir, OsStr::from_bytes(p.file_name()), AtFlags::empty())
        .with_context(|| format!("cannot remove {p}"))?;
    rustix::fs::fsync(&dir)?;
    Ok(())
}

/// Plan → show → confirm → apply for a set of guard's files.
pub fn install_files(
    app: &App,
    what: &str,
    files: &[Planned],
    action: InstallAction,
) -> Result<i32> {
    let planned = plan(app, files, action)?;
    let todo = planned.iter().filter(|(_, a)| a.changes()).count();
    for (f, a) in &planned {
        app.ui.say(&format!("  {:<9} {}", a.verb(), f.path));
    }
    let verb = match action {
        InstallAction::Install => "install",
        InstallAction::Uninstall => "uninstall",
    };
    if todo > 0 {
        if !app
            .ui
            .confirm(&format!("{verb} {what} ({})?", crate::plural(todo, "file")))?
        {
            bail!("nothing changed");
        }
        for (f, a) in &planned {
            match a {
                Action::Create | Action::Update => write_in_root(app, f)?,
                Action::Remove => remove_in_root(app, &f.path)?,
                Action::Unchanged | Action::Absent => {}
            }
        }
    }
    if action == InstallAction::Install && !app.root.exists(&SysPath::new(GUARD_BIN)) {
        app.ui.say(&format!(
            "warning: {what} run {GUARD_BIN}, which is not in this root yet: install guard there"
        ));
    }
    // The files name no store: what they run uses the default one inside
    // the root. A `--store` given here would otherwise look as if it were
    // where the hooks' and units' snapshots go.
    let default_store = app.root.host_path(&SysPath::new("/var/lib/guard"));
    let store = std::path::absolute(&app.store_dir).unwrap_or_else(|_| app.store_dir.clone());
    if action == InstallAction::Install && store != default_store {
        app.ui.say(&format!(
            "warning: {what} run {GUARD_BIN} with its default store /var/lib/guard (inside the root), not {}: --store does not change where they snapshot",
            app.store_dir.display()
        ));
    }
    let rows: Vec<_> = planned
        .iter()
        .map(|(f, a)| json!({"path": f.path.to_string(), "action": a.verb()}))
        .collect();
    if app.json {
        app.print_json(&json!({ "action": verb, "what": what, "files": rows }))?;
    } else if todo == 0 {
        crate::out!("{what}: nothing to do");
    } else {
        crate::out!("{what}: {verb}ed {}", crate::plural(todo, "file"));
    }
    Ok(0)
}

/// The root's package manager, from its configuration and database.
fn detect(app: &App) -> Result<ManagerArg> {
    let has = |p: &str| app.root.exists(&SysPath::new(p));
    if has("/etc/pacman.conf") || has("/var/lib/pacman") {
        Ok(ManagerArg::Pacman)
    } else if has("/etc/zypp") || has("/usr/bin/zypper") {
        Ok(ManagerArg::Zypper)
    } else if has("/etc/apt") || has("/var/lib/dpkg") {
        Ok(ManagerArg::Apt)
    } else {
        bail!("cannot tell the root's package manager; name it with --manager pacman|zypper|apt")
    }
}

/// Where pacman reads hooks from, besides /usr/share/libalpm/hooks:
/// /etc/pacman.d/hooks unless pacman.conf's `[options]` sets `HookDir`,
/// which replaces it (pacman.conf(5)) — hooks left in the default dir
/// would then never run and nobody would know. Of several, the last: a
/// hook of the same name there takes precedence over the others'.
pub fn pacman_hook_dir(pacman_conf: Option<&str>) -> SysPath {
    let mut dir = None;
    let mut in_options = false;
    for line in pacman_conf.unwrap_or_default().lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            in_options = line == "[options]";
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if in_options && k.trim() == "HookDir" {
            if let Some(d) = v.split_whitespace().rfind(|d| d.starts_with('/')) {
                dir = Some(d.to_string());
            }
        }
    }
    SysPath::new(dir.as_deref().unwrap_or("/etc/pacman.d/hooks"))
}

/// The files a manager's hooks consist of; `pacman_hooks` is the directory
/// pacman reads them from ([`pacman_hook_dir`]).
pub fn hook_files(manager: ManagerArg, pacman_hooks: &SysPath) -> Vec<Planned> {
    match manager {
        ManagerArg::Pacman => {
            // No AbortOnFail: even if guard crashes, the transaction goes on.
            let trig = "[Trigger]\nOperation = Install\nOperation = Upgrade\nOperation = Remove\nType = Package\nTarget = *\n";
            vec![
                Planned {
                    path: pacman_hooks.join("00-guard-snapshot.hook"),
                    content: format!(
                        "# {MARKER}\n# Snapshot the configuration before every transaction.\n{trig}\n[Action]\nDescription = guard: snapshot of the configuration before the transaction\nWhen = PreTransaction\nExec = {GUARD_BIN} hook-run pre --manager pacman\nNeedsTargets\n"
                    ),
                    mode: 0o644,
                },
                Planned {
                    path: pacman_hooks.join("zz-guard-check.hook"),
                    content: format!(
                        "# {MARKER}\n# Check what the transaction did to the configuration.\n{trig}\n[Action]\nDescription = guard: checking what the transaction changed\nWhen = PostTransaction\nExec = {GUARD_BIN} hook-run post --manager pacman\n"
                    ),
                    mode: 0o644,
                },
            ]
        }
        ManagerArg::Zypper => vec![Planned {
            path: SysPath::new("/usr/lib/zypp/plugins/commit/guard"),
            // guard itself speaks the plugin protocol; the script only
            // finds it. Without guard it exits: libzypp logs a plugin that
            // went away and commits anyway.
            content: format!(
                "#!/bin/sh\n# {MARKER}\n# libzypp commit plugin: snapshot at PLUGINBEGIN, check at PLUGINEND.\nif [ -x {GUARD_BIN} ]; then exec {GUARD_BIN} --no-progress hook-run zypp-plugin; fi\nexit 0\n"
            ),
            mode: 0o755,
        }],
        ManagerArg::Apt => vec![Planned {
            path: SysPath::new("/etc/apt/apt.conf.d/05guard"),
            // apt runs these through sh -c and aborts on failure: `|| true`
            // keeps a crash of guard from ever stopping dpkg.
            //
            // The snapshot hangs on Pre-Install-Pkgs, not Pre-Invoke: only
            // that hook is told the transaction's packages (on stdin), which
            // name the snapshot in `guard list`. apt picks the protocol
            // version by the command's first word, so the command starts
            // with a shell assignment of guard's own (`APT_HOOK_TOKEN`)
            // rather than `if`, which another hook could start with too.
            // Without guard the hook still drains stdin: apt would
            // otherwise write into a closed pipe.
            content: format!(
                "// {MARKER}\n// Snapshot before and check after every dpkg run.\nDPkg::Pre-Install-Pkgs {{ \"{APT_HOOK_TOKEN} ; if [ -x {GUARD_BIN} ]; then {GUARD_BIN} --no-progress hook-run pre --manager apt || true; else cat >/dev/null; fi\"; }};\nDPkg::Tools::Options::{APT_HOOK_TOKEN}::Version \"2\";\nDPkg::Post-Invoke {{ \"if [ -x {GUARD_BIN} ]; then {GUARD_BIN} --no-progress hook-run post --manager apt || true; fi\"; }};\n"
            ),
            mode: 0o644,
        }],
    }
}

/// `guard hooks install|uninstall [--manager M]`.
pub fn command(app: &App, action: InstallAction, manager: Option<ManagerArg>) -> Result<i32> {
    let pacman_hooks = pacman_hook_dir(app.root.read_text("/etc/pacman.conf").as_deref());
    let m = match (manager, action) {
        (Some(m), _) => m,
        // Uninstall takes back what any install put there: hooks installed
        // with `--manager zypper`, or for the manager detected before
        // another one's files appeared in the root, would otherwise stay
        // behind while uninstall says "nothing to do" for the detected one.
        (None, InstallAction::Uninstall) => {
            let detected = detect(app).ok();
            let mut files = Vec::new();
            for m in [ManagerArg::Pacman, ManagerArg::Zypper, ManagerArg::Apt] {
                for f in hook_files(m, &pacman_hooks) {
                    if !app.root.exists(&f.path) {
                        continue;
                    }
                    // A file guard did not write at another manager's
                    // path is none of this uninstall's business; at the
                    // detected manager's it is refused, as with --manager.
                    let ours =
                        matches!(read_exact_file(app, &f.path), Ok(Some(c)) if has_marker(&c));
                    if ours || Some(m) == detected {
                        files.push(f);
                    } else {
                        app.ui
                            .say(&format!("  skip      {}: not written by guard", f.path));
                    }
                }
            }
            if !files.is_empty() {
                return install_files(app, "hooks", &files, action);
            }
            match detected {
                Some(m) => m,
                None => return install_files(app, "hooks", &[], action),
            }
        }
        (None, InstallAction::Install) => detect(app)?,
    };
    let name = format!("{m:?} hooks").to_lowercase();
    install_files(app, &name, &hook_files(m, &pacman_hooks), action)
}

/// How long `hook-run pre|post` may take before it gives up. Neither alpm
/// nor apt puts a limit on a hook: a guard stuck on a hung helper (an `rpm`
/// waiting for a lock, a stalled disk) would hold pacman's or dpkg's lock
/// for ever. A snapshot of /etc takes seconds at worst; minutes mean stuck.
pub const HOOK_TIMEOUT_SECS: u64 = 300;

/// Ends the process with a warning and exit 0 when the work it guards
/// outlives the limit; dropping it (the work is done) stops it.
struct Watchdog {
    _done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn start(what: &'static str, limit: std::time::Duration) -> Watchdog {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if wait.recv_timeout(limit) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            // Written with write(2), not through std's stderr lock, which
            // the stuck thread may hold; then the helpers it waits for
            // are ended and the process with them. A snapshot cut short
            // is one a crash could leave: never listed, and its leftovers
            // cleared by the next writer (DESIGN §4).
            let msg = format!(
                "guard: warning: {what} did not finish within {} s: guard gave up on it; the transaction goes on\n",
                limit.as_secs()
            );
            // SAFETY: write(2) of a live buffer; _exit(2) ends the process
            // at once, which is the point: nothing of guard's may linger.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
            }
            crate::exec::kill_running();
            unsafe { libc::_exit(0) }
        });
        Watchdog { _done: done }
    }
}

/// `guard hook-run PHASE`: always exit 0. A full store, a held lock, an
/// error, a panic or a hang (past `timeout` seconds) are warnings; the
/// package transaction goes on. The zypp plugin has no watchdog of its
/// own: it mostly waits for libzypp's next frame, and libzypp already
/// gives up on a plugin that does not answer within 30 s (its
/// `ZYPP_PLUGIN_TIMEOUT`) and kills it.
pub fn run(
    app: &App,
    phase: HookPhase,
    manager: Option<ManagerArg>,
    label: Option<String>,
    timeout: Option<u64>,
) -> i32 {
    let limit = std::time::Duration::from_secs(timeout.unwrap_or(HOOK_TIMEOUT_SECS));
    let _watchdog = match phase {
        HookPhase::Pre => Some(Watchdog::start(
            "the snapshot before the transaction",
            limit,
        )),
        HookPhase::Post => Some(Watchdog::start("the check after the transaction", limit)),
        HookPhase::ZyppPlugin => None,
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match phase {
        HookPhase::Pre => {
            let label = label.or_else(|| transaction_label(manager));
            pre(app, manager, label)
        }
        HookPhase::Post => post(app),
        HookPhase::ZyppPlugin => zypp_plugin(
            app,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        ),
    }));
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => crate::err_out!("guard: warning: {e:#}; the transaction goes on"),
        Err(_) => {
            crate::err_out!("guard: warning: guard failed unexpectedly; the transaction goes on")
        }
    }
    0
}

/// The label of a hook's `pre` snapshot, from what the package manager
/// hands the hook on stdin: alpm the transaction's package names
/// (`NeedsTargets`), apt its package actions (`Pre-Install-Pkgs`, protocol
/// version 2). Nothing on a terminal (an admin running the hook by hand).
/// apt's stdin is read to its end whatever it holds, so apt never writes
/// into a pipe nobody reads.
fn transaction_label(manager: Option<ManagerArg>) -> Option<String> {
    use std::io::{IsTerminal, Read};
    if !matches!(manager, Some(ManagerArg::Pacman | ManagerArg::Apt))
        || std::io::stdin().is_terminal()
    {
        return None;
    }
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input).ok()?;
    let input = String::from_utf8_lossy(&input);
    let label = match manager {
        Some(ManagerArg::Apt) => apt_label(&input)?,
        _ => {
            let names: Vec<&str> = input
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if names.is_empty() {
                return None;
            }
            format!("pacman: {}", names.join(" "))
        }
    };
    Some(shorten(label))
}

/// A label short enough for `guard list`'s line.
fn shorten(label: String) -> String {
    if label.chars().count() > 200 {
        label.chars().take(197).collect::<String>() + "..."
    } else {
        label
    }
}

/// `apt: upgrade openssh-server postfix; install dovecot-core; remove exim4`
/// from apt's `Pre-Install-Pkgs` protocol: `VERSION 2`, apt's configuration
/// up to a blank line, then one line per action, `NAME OLD DIR NEW ACTION`
/// (`-` for no version, DIR `<` up, `>` down, `=` same, ACTION a .deb path,
/// `**CONFIGURE**` or `**REMOVE**`). A package appears once per action
/// (unpack, then configure); it is named once, by what happens to it.
/// Version 1 (a bare list of .deb paths, an older 05guard or another
/// apt's choice) still gives the names, as `NAME_VERSION_ARCH.deb`.
pub fn apt_label(input: &str) -> Option<String> {
    const GROUPS: [&str; 6] = [
        "upgrade",
        "install",
        "remove",
        "downgrade",
        "reinstall",
        "configure",
    ];
    let mut groups: Vec<Vec<&str>> = vec![Vec::new(); GROUPS.len()];
    let mut seen = std::collections::HashSet::new();
    let mut lines = input.lines();
    let actions: Vec<(&str, usize)> = if input.starts_with("VERSION ") {
        // skip apt's configuration dump
        lines.by_ref().find(|l| l.is_empty());
        lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // version 3 adds arch and multi-arch after each version
                let (name, old, dir, action) = match f.len() {
                    5 => (f[0], f[1], f[2], f[4]),
                    9 => (f[0], f[1], f[4], f[8]),
                    _ => return None,
                };
                let g = match (action, old, dir) {
                    ("**REMOVE**", ..) => "remove",
                    ("**CONFIGURE**", ..) => "configure",
                    (_, "-", _) => "install",
                    (_, _, "<") => "upgrade",
                    (_, _, ">") => "downgrade",
                    _ => "reinstall",
                };
                Some((name, GROUPS.iter().position(|x| *x == g)?))
            })
            .collect()
    } else {
        lines
            .filter_map(|l| {
                let file = l.trim().rsplit('/').next()?;
                let name = file.strip_suffix(".deb")?.split('_').next()?;
                Some((name, GROUPS.iter().position(|x| *x == "install")?))
            })
            .collect()
    };
    // an unpack names the package before its configure line does
    for (name, g) in actions {
        let name = name.split(':').next().unwrap_or(name);
        if !name.is_empty() && seen.insert(name) {
            groups[g].push(name);
        }
    }
    let parts: Vec<String> = GROUPS
        .iter()
        .zip(&groups)
        .filter(|(_, names)| !names.is_empty())
        .map(|(g, names)| format!("{g} {}", names.join(" ")))
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!("apt: {}", parts.join("; ")))
}

/// Snapshot of kind `pre`, then the retention policy.
pub fn pre(app: &App, manager: Option<ManagerArg>, label: Option<String>) -> Result<()> {
    let label = label.or_else(|| manager.map(|m| format!("{m:?} transaction").to_lowercase()));
    let store = app.store_write()?;
    let out = crate::app::snapshot(app, &store, SnapshotKind::Pre, label)?;
    crate::err_out!(
        "guard: snapshot {} before the transaction ({}, {})",
        out.id,
        crate::plural(out.entries, "entry"),
        crate::plural(out.new_objects, "new object")
    );
    let drop = crate::app::prune_plan(&store, KEEP)?;
    if !drop.is_empty() {
        let rep = store.forget(&drop)?;
        crate::err_out!(
            "guard: retention: dropped {}, {}",
            crate::plural(rep.snapshots.len(), "old snapshot"),
            crate::plural(rep.bytes, "byte")
        );
        for l in crate::app::kept_clone_lines(&rep.kept_clones, "kept") {
            crate::err_out!("guard: retention: {l}");
        }
    }
    Ok(())
}

/// Lines of findings the post-transaction summary shows; the rest is a count.
const SUMMARY_LINES: usize = 12;

/// The check after a transaction, as one screen on stderr.
pub fn post(app: &App) -> Result<()> {
    let report = crate::app::check(app, None)?;
    {
        use std::io::Write as _;
        let now = jiff::Timestamp::now();
        let text = summary(&report, now);
        let _ = write!(std::io::stderr().lock(), "{}", crate::printable(&text));
    }
    Ok(())
}

/// A one-screen summary of a report: the verdict, the snapshot it compared
/// with and how old that is, the worst findings, a pointer to the full
/// check. The age tells a snapshot taken just before this transaction from
/// an older one, compared with when the `pre` snapshot could not be taken
/// (a locked or full store; its warning may have scrolled away).
pub fn summary(report: &crate::report::Report, now: jiff::Timestamp) -> String {
    let mut out = format!("guard: {}\n", report.verdict());
    match &report.snapshot {
        Some(id) => {
            let age = crate::store::id_time(id)
                .map(|t| format!(", taken {}", ago(now.duration_since(t).as_secs())))
                .unwrap_or_default();
            out.push_str(&format!("guard: compared with snapshot {id}{age}\n"));
        }
        None => out.push_str("guard: no snapshot to compare with\n"),
    }
    let shown: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.effective() != crate::report::Severity::Info)
        .collect();
    for f in shown.iter().take(SUMMARY_LINES) {
        let mut line = format!(
            "guard:   {:<8} {}: {}",
            f.effective().as_str(),
            f.id,
            f.message
        );
        if line.chars().count() > 120 {
            line = line.chars().take(117).collect::<String>() + "...";
        }
        out.push_str(&line);
        out.push('\n');
    }
    if shown.len() > SUMMARY_LINES {
        out.push_str(&format!(
            "guard:   … and {} more\n",
            shown.len() - SUMMARY_LINES
        ));
    }
    if !shown.is_empty() {
        out.push_str("guard: details: guard check\n");
    }
    out
}

/// `secs` as a rough age: "40 s ago", "3 min ago", "5 h ago", "2 days ago".
fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 2 * 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

/// One frame of libzypp's plugin protocol (STOMP-like): a command line,
/// header lines, an empty line, a body ended by NUL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads one frame; `None` at end of input.
pub fn read_frame(r: &mut dyn BufRead) -> Result<Option<Frame>> {
    let mut line = Vec::new();
    // Skip blank lines between frames.
    let command = loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let t = String::from_utf8_lossy(&line).trim().to_string();
        if !t.is_empty() {
            break t;
        }
    };
    let mut f = Frame {
        command,
        ..Default::default()
    };
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            bail!("plugin frame {} ends before its body", f.command);
        }
        let t = String::from_utf8_lossy(&line)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        if t.is_empty() {
            break;
        }
        let (k, v) = t.split_once(':').unwrap_or((&t, ""));
        f.headers.push((k.to_string(), v.to_string()));
    }
    let len = f
        .headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    match len {
        Some(n) => {
            f.body = vec![0; n];
            r.read_exact(&mut f.body)?;
            let mut nul = Vec::new();
            r.read_until(0, &mut nul)?;
        }
        None => {
            r.read_until(0, &mut f.body)?;
            if f.body.last() == Some(&0) {
                f.body.pop();
            }
        }
    }
    Ok(Some(f))
}

fn write_frame(w: &mut dyn Write, command: &str) -> Result<()> {
    w.write_all(command.as_bytes())?;
    w.write_all(b"\n\n\0")?;
    w.flush()?;
    Ok(())
}

/// Acts as a libzypp commit plugin: every frame is acknowledged (libzypp
/// stops talking to a plugin that does not), a `pre` snapshot at
/// PLUGINBEGIN, the check at PLUGINEND, and `_DISCONNECT` ends it. Work
/// errors are warnings on stderr; stdout carries only protocol frames.
pub fn zypp_plugin(app: &App, r: &mut dyn BufRead, w: &mut dyn Write) -> Result<()> {
    while let Some(frame) = read_frame(r)? {
        match frame.command.as_str() {
            "PLUGINBEGIN" => {
                let label = frame
                    .headers
                    .iter()
                    .find(|(k, _)| k == "userdata")
                    .map(|(_, v)| format!("zypper: {v}"))
                    .or_else(|| Some("zypper transaction".into()));
                if let Err(e) = pre(app, Some(ManagerArg::Zypper), label) {
                    crate::err_out!("guard: warning: {e:#}; the transaction goes on");
                }
            }
            "PLUGINEND" => {
                if let Err(e) = post(app) {
                    crate::err_out!("guard: warning: {e:#}; the transaction goes on");
                }
            }
            _ => {}
        }
        write_frame(w, "ACK")?;
        if frame.command == "_DISCONNECT" {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // What apt 2.6 wrote to a version-2 hook for `apt-get install` of a
    // new package, an upgrade and a removal (configuration dump cut short).
    const APT_V2: &str = "VERSION 2\nAPT::Architecture=amd64\nDir=/\nquiet=0\n\n\
        exim4-base 4.96-15 > - **REMOVE**\n\
        openssh-server 1:9.2p1-2 < 1:9.2p1-2+deb12u3 /var/cache/apt/archives/openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb\n\
        postfix - < 3.7.11-0+deb12u1 /var/cache/apt/archives/postfix_3.7.11-0+deb12u1_amd64.deb\n\
        openssh-server 1:9.2p1-2 < 1:9.2p1-2+deb12u3 **CONFIGURE**\n\
        postfix - < 3.7.11-0+deb12u1 **CONFIGURE**\n";

    #[test]
    fn apt_snapshots_are_labelled_by_what_happens_to_which_package() {
        assert_eq!(
            apt_label(APT_V2).as_deref(),
            Some("apt: upgrade openssh-server; install postfix; remove exim4-base")
        );
        // version 3: arch and multi-arch after each version
        let v3 = "VERSION 3\nDir=/\n\nzlib1g 1:1.2.13 amd64 same > 1:1.2.11 amd64 same /x/zlib1g_1.2.11_amd64.deb\n";
        assert_eq!(apt_label(v3).as_deref(), Some("apt: downgrade zlib1g"));
        // version 1: only the .deb files
        let v1 =
            "/var/cache/apt/archives/postfix_3.7.11-0+deb12u1_amd64.deb\n/tmp/guardtest_2.deb\n";
        assert_eq!(
            apt_label(v1).as_deref(),
            Some("apt: install postfix guardtest")
        );
        // `dpkg --configure -a` through apt: only configure lines
        let cfg = "VERSION 2\n\nfoo 1.0 = 1.0 **CONFIGURE**\n";
        assert_eq!(apt_label(cfg).as_deref(), Some("apt: configure foo"));
        // nothing usable: the caller falls back to `apt transaction`
        assert_eq!(apt_label("VERSION 2\nDir=/\n\n"), None);
        assert_eq!(apt_label(""), None);
    }

    #[test]
    fn a_long_label_is_cut_for_the_list() {
        let long = format!("apt: upgrade {}", "libfoo ".repeat(60));
        let cut = shorten(long);
        assert_eq!(cut.chars().count(), 200);
        assert!(cut.ends_with("..."));
        assert_eq!(shorten("apt: install x".into()), "apt: install x");
    }

    #[test]
    fn the_summary_names_the_snapshot_it_compared_with_and_its_age() {
        use crate::report::{Finding, Report, Severity};
        let id = "20261123-080000-000";
        let t = crate::store::id_time(id).unwrap();
        let f = Finding::new(
            "file/vanished",
            Severity::Critical,
            &[&crate::sysroot::SysPath::new("/etc/pam.d/imap")],
            "/etc/pam.d/imap vanished",
        );
        let r = Report::new(Some(id.into()), "/".into(), vec![f]);
        let at = |secs: i64| summary(&r, t + jiff::SignedDuration::from_secs(secs));
        let s = at(185);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("guard: 1 critical"), "{s}");
        assert_eq!(
            lines[1],
            format!("guard: compared with snapshot {id}, taken 3 min ago")
        );
        assert!(at(40).contains("taken 40 s ago"));
        assert!(at(5 * 3600).contains("taken 5 h ago"));
        assert!(at(3 * 86400).contains("taken 3 days ago"));
        let none = Report::new(None, "/".into(), vec![]);
        assert!(summary(&none, t)
            .lines()
            .any(|l| l == "guard: no snapshot to compare with"));
    }

    #[test]
    fn frames_parse_with_and_without_content_length() {
        let data = b"PLUGINBEGIN\nuserdata:x y\n\n\0COMMITBEGIN\ncontent-length:3\n\na\0b\0\n_DISCONNECT\n\n\0";
        let mut r = std::io::BufReader::new(&data[..]);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.command, "PLUGINBEGIN");
        assert_eq!(f.headers, vec![("userdata".into(), "x y".into())]);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.command, "COMMITBEGIN");
        assert_eq!(f.body, b"a\0b");
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.command, "_DISCONNECT");
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn pacman_hook_dir_follows_hookdir_in_options_only() {
        let d = |c: &str| pacman_hook_dir(Some(c)).to_string();
        assert_eq!(pacman_hook_dir(None).to_string(), "/etc/pacman.d/hooks");
        assert_eq!(d("[options]\nArchitecture = auto\n"), "/etc/pacman.d/hooks");
        assert_eq!(
            d("[options]\nHookDir = /a/ /b/ # two\nHookDir=/c\n[core]\nHookDir = /x\n"),
            "/c"
        );
        assert_eq!(d("#HookDir = /a\n[options]\n"), "/etc/pacman.d/hooks");
    }

    #[test]
    fn marker_is_found_only_in_the_head() {
        assert!(has_marker(format!("#!/bin/sh\n# {MARKER}\n").as_bytes()));
        assert!(!has_marker(b"[Trigger]\nOperation = Install\n"));
    }
}
