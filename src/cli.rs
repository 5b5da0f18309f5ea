//! The command line: clap derive types and nothing else. They stop at
//! `app.rs`, which turns them into plain domain values.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Guarded upgrade and migration assistant for Linux servers";

const LONG_ABOUT: &str = "\
guard snapshots the configuration an upgrade can break (all of /etc, the vendor
config dirs, xattrs and file capabilities, package ownership, installed packages,
enabled units) into a content-addressed store; checks the live system against it
afterwards, explaining the damage most-critical-first; restores what vanished;
and walks an administrator through upgrades and migrations step by step.

Exit codes: 0 OK, 1 WARNING, 2 CRITICAL (a critical finding; for verify, a
corrupt or missing object or manifest), 3 UNKNOWN (bad input, unreadable store
or object, I/O error, refusal).";

#[derive(Debug, Parser)]
#[command(name = "guard", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Listed under their own heading in every command's `--help`, apart from
/// the command's own options: interleaved with them, `--root` and
/// `--store` hid what `guard check --help` is about.
const GLOBAL: &str = "Global options";

/// A path, the empty one included (see `Global::root`).
fn any_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The system to guard; every path is read and written inside it
    // (an empty value is let through here and refused in `app::run`:
    // clap would validate an empty GUARD_ROOT even under a --root typed
    // before the command, and blame --root for it)
    #[arg(long, global = true, help_heading = GLOBAL, env = "GUARD_ROOT", value_name = "DIR", value_parser = any_path())]
    pub root: Option<PathBuf>,
    /// The snapshot store [default: ROOT/var/lib/guard]
    #[arg(long, global = true, help_heading = GLOBAL, env = "GUARD_STORE", value_name = "DIR", value_parser = any_path())]
    pub store: Option<PathBuf>,
    /// One JSON document on stdout; messages go to stderr
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Answer yes to ordinary confirmations (never to destructive steps)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub yes: bool,
    /// No progress bars (also off when stderr is not a terminal)
    #[arg(long = "no-progress", global = true, help_heading = GLOBAL)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    Manual,
    Pre,
    Post,
    Timer,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ManagerArg {
    Pacman,
    Zypper,
    Apt,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum InstallAction {
    Install,
    Uninstall,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a snapshot of the configuration; prints its id
    Snapshot {
        /// A note to recognise it by (e.g. "before leap 15")
        #[arg(long)]
        label: Option<String>,
        /// Why it is taken; only manual and pre snapshots become the baseline
        #[arg(long, value_enum, default_value = "manual")]
        kind: KindArg,
        /// Also clone this libvirt guest (as DOMAIN-pre-upgrade-DATE)
        #[arg(long = "vm", value_name = "DOMAIN")]
        vm: Vec<String>,
        /// libvirt URI for --vm [default: qemu:///system]
        #[arg(long, env = "GUARD_LIBVIRT_URI", value_name = "URI", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        connect: Option<String>,
    },
    /// List snapshots (id, time, kind, label)
    List,
    /// One snapshot's summary, including package owners
    Show {
        /// Snapshot id (a unique prefix is enough)
        id: String,
    },
    /// What changed: FROM defaults to the baseline, TO to the live system
    Diff {
        /// Snapshot id (a unique prefix is enough) [default: the baseline]
        from: Option<String>,
        /// Snapshot id [default: the live system]
        to: Option<String>,
    },
    /// Check the live system against the baseline; exit 0/1/2 like a monitoring plugin
    Check {
        /// Compare with this snapshot instead of the baseline
        #[arg(long, value_name = "ID", conflicts_with_all = ["ack", "unack", "acks"])]
        against: Option<String>,
        /// Acknowledge a known finding, e.g. file/modified:/etc/motd (one
        /// without a path by its id alone: pkg/changed)
        #[arg(long, value_name = "FINDING[:PATH]")]
        ack: Vec<String>,
        /// Remove an acknowledgement
        #[arg(long, value_name = "FINDING[:PATH]")]
        unack: Vec<String>,
        /// List the acknowledgements
        #[arg(long)]
        acks: bool,
    },
    /// Put back what an upgrade removed or changed: plan, show, confirm, apply
    #[command(group = clap::ArgGroup::new("what").required(true).args(["vanished", "pam", "caps", "paths"]))]
    Restore {
        /// Restore from this snapshot instead of the baseline
        #[arg(long, value_name = "ID")]
        from: Option<String>,
        /// Every path of the snapshot that no longer exists
        #[arg(long)]
        vanished: bool,
        /// The vanished PAM service files no package dropped on purpose
        /// (the admin's own imap, smtp …), and nothing else
        #[arg(long)]
        pam: bool,
        /// Re-apply recorded file capabilities to files that lost them
        #[arg(long)]
        caps: bool,
        /// Paths to restore (absolute inside the root)
        #[arg(value_name = "PATH")]
        paths: Vec<OsString>,
        /// Show the plan and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every object and manifest a snapshot needs (all if no ID)
    Verify {
        /// Snapshot id [default: every snapshot]
        id: Option<String>,
    },
    /// Drop snapshots; objects no snapshot needs go too
    Forget {
        /// Snapshot ids (a unique prefix is enough)
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Show what would go and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply the retention policy: keep the newest N of each automatic kind, every manual one and the baseline
    Prune {
        /// How many of each automatic kind (pre, post, timer, safety) to keep
        #[arg(long, value_name = "N", default_value_t = 20)]
        keep: usize,
        /// Show what would go and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// The playbooks and their steps
    Playbook {
        #[command(subcommand)]
        command: PlaybookCommand,
    },
    /// Walk a playbook step by step
    Run {
        /// Playbook name (see `guard playbook list`)
        name: String,
        /// Print the whole walk as a commented shell script; run nothing
        /// (with --resume: what the resume would do)
        #[arg(long)]
        dry_run: bool,
        /// Answers to questions and `confirm` entries for destructive steps
        /// (TOML); without a terminal, steps run only with --yes
        #[arg(long, value_name = "FILE")]
        answers: Option<PathBuf>,
        /// Continue the last unfinished run at its first unfinished step
        #[arg(long)]
        resume: bool,
    },
    /// libvirt guests (runs the guard-vm helper, so guard itself never loads libvirt)
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Snapshot before and check after every package transaction
    Hooks {
        /// Write the hook files into the root, or remove them (uninstall
        /// without --manager removes every manager's)
        #[arg(value_enum)]
        action: InstallAction,
        /// Package manager [default: the root's own]
        #[arg(long, value_enum)]
        manager: Option<ManagerArg>,
    },
    /// The hardened guard-snapshot.timer and guard-check.service
    Units {
        /// Write the unit files into ROOT/etc/systemd/system, or remove them
        #[arg(value_enum)]
        action: InstallAction,
    },
    /// Copy snapshots to an append-only restic repository off the host
    Push {
        /// Snapshot id [default: all]
        id: Option<String>,
        /// restic repository (e.g. rest:http://backup:8000/host); a URL with
        /// a password belongs in RESTIC_REPOSITORY, since every user can
        /// read guard's arguments while it pushes
        #[arg(
            long,
            value_name = "REPO",
            env = "RESTIC_REPOSITORY",
            hide_env_values = true
        )]
        to: String,
    },
    /// Shell completions for bash, zsh, fish, …
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on stdout
    Man,
    /// Internal: what the package-manager hooks and units run. Never fails
    /// a transaction: every problem is a warning and the exit code is 0.
    #[command(name = "hook-run", hide = true)]
    HookRun {
        #[arg(value_enum)]
        phase: HookPhase,
        /// The package manager that runs the hook (labels the snapshot)
        #[arg(long, value_enum)]
        manager: Option<ManagerArg>,
        /// Label for the pre snapshot
        #[arg(long)]
        label: Option<String>,
        /// Give up (with a warning, exit 0) after this many seconds
        /// (default 300), so a hung guard cannot hang the transaction
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
}

/// When a hook runs: `pre` snapshots, `post` checks, `zypp-plugin` speaks
/// libzypp's commit-plugin protocol on stdin/stdout and does both.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HookPhase {
    Pre,
    Post,
    ZyppPlugin,
}

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Every playbook, built in and from ROOT/etc/guard/playbooks
    List,
    /// A playbook's steps with their commands
    Show {
        /// Playbook name (see `guard playbook list`)
        name: String,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum VmCommand {
    /// Guests with state, disks and NICs
    List {
        /// libvirt URI [default: qemu:///system]
        #[arg(long, env = "GUARD_LIBVIRT_URI", value_name = "URI", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        connect: Option<String>,
    },
    /// Clone a shut-off guest: new name, UUID and MACs, disks copied and verified
    Clone {
        /// The guest to clone (shut off)
        domain: String,
        /// New name [default: DOMAIN-clone]
        #[arg(long)]
        name: Option<String>,
        /// Send the disk with this target (vda) to PATH (a file or block device)
        #[arg(long = "disk-target", value_name = "TARGET=PATH")]
        disk_target: Vec<String>,
        /// libvirt URI [default: qemu:///system]
        #[arg(long, env = "GUARD_LIBVIRT_URI", value_name = "URI", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        connect: Option<String>,
        /// Print the new XML and the copy plan; change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// The command as users see it, for completions: clap_complete does not
/// honour `hide` on subcommands, so the hooks' internal `hook-run` would be
/// offered to every user pressing tab. This copy leaves hidden ones out.
pub fn public_command() -> clap::Command {
    let full = command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut public = clap::Command::new("guard")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    public
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

/// The man page, one page for the whole command (what `guard man` prints
/// and the README installs as `guard.1`). clap_mangen's page lists the
/// commands as `guard-check(1)` and so on, pages nobody installs, and
/// describes none of their options; here every visible command follows,
/// with its synopsis, description and options.
pub fn man_page(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_command(&mut out, "guard", sub)?;
    }
    man.render_version_section(&mut out)?;
    w.write_all(&keep_first_preamble(&out))
}

/// One command's part of the page: `.SS guard NAME`, then its synopsis,
/// description and own options (the global ones are described once, at
/// the top), then its subcommands the same way.
fn man_command(out: &mut Vec<u8>, parent: &str, sub: &clap::Command) -> std::io::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    // Built on its own, the command has none of the parent's global
    // options; its own, `--help` and its subcommands stay.
    let man = clap_mangen::Man::new(sub.clone().bin_name(&name));
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part)?;
    man.render_description_section(&mut part)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut part)?;
    }
    out.extend_from_slice(format!(".SS \"{name}\"\n").as_bytes());
    for line in String::from_utf8_lossy(&part).lines() {
        // The section headings of a page of its own: here the command's
        // `.SS` heads them all, and a paragraph break parts its synopsis
        // from its description.
        match line {
            ".SH SYNOPSIS" | ".SH OPTIONS" => continue,
            ".SH DESCRIPTION" => {
                out.extend_from_slice(b".PP\n");
                continue;
            }
            _ => {}
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    for s in sub
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_command(out, &name, s)?;
    }
    Ok(())
}

/// Each part clap_mangen renders starts with roff's apostrophe preamble
/// (`.ie \n(.g .ds Aq …`); the page needs it once, at the top.
fn keep_first_preamble(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut seen = false;
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with(".ie \\n(.g .ds Aq") && lines.peek() == Some(&".el .ds Aq '") {
            lines.next();
            if seen {
                continue;
            }
            seen = true;
            out.push_str(line);
            out.push('\n');
            out.push_str(".el .ds Aq '\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}
