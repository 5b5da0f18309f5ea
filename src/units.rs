//! guard's own systemd units (`guard units install|uninstall`): a daily
//! snapshot timer and a check after boot, hardened so that guard runs as
//! uid 0 with CAP_DAC_READ_SEARCH as its only capability (DESIGN §1,
//! incident 6). restore needs more and is never run by a unit.

use anyhow::Result;

use crate::app::App;
use crate::cli::InstallAction;
use crate::hooks::{install_files, Planned, GUARD_BIN, KEEP, MARKER};
use crate::sysroot::SysPath;

/// The sandbox every guard unit runs in. Each line takes away something
/// guard does not need; reading every file needs CAP_DAC_READ_SEARCH only,
/// writing the store needs uid 0 (its owner) and /var/lib/guard writable.
const HARDENING: &str = "\
CapabilityBoundingSet=CAP_DAC_READ_SEARCH
AmbientCapabilities=CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/var/lib/guard
StateDirectory=guard
StateDirectoryMode=0700
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
PrivateNetwork=yes
IPAddressDeny=any
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
KeyringMode=private
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
UMask=0077
";

pub fn unit_files() -> Vec<Planned> {
    let unit = |name: &str, body: String| Planned {
        path: SysPath::new(format!("/etc/systemd/system/{name}")),
        content: format!("# {MARKER}\n{body}"),
        mode: 0o644,
    };
    vec![
        // A oneshot has no start timeout unless it is given one: a stuck
        // snapshot would hold the store's lock for ever, and every hook's
        // `pre` snapshot after it would be refused.
        unit(
            "guard-snapshot.service",
            format!(
                "[Unit]\nDescription=guard: snapshot of the system configuration\nDocumentation=man:guard(1)\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nExecStart={GUARD_BIN} --no-progress snapshot --kind timer --label daily\nExecStartPost={GUARD_BIN} --no-progress --yes prune --keep {KEEP}\nTimeoutStartSec=30min\n{HARDENING}"
            ),
        ),
        unit(
            "guard-snapshot.timer",
            "[Unit]\nDescription=guard: daily snapshot of the system configuration\nDocumentation=man:guard(1)\n\n[Timer]\nOnCalendar=daily\nPersistent=true\nRandomizedDelaySec=1h\n\n[Install]\nWantedBy=timers.target\n".to_string(),
        ),
        unit(
            "guard-check.service",
            // Exit 1 (warnings) is success; 2 (critical) marks the unit
            // failed so `systemctl --failed` and monitoring see it.
            // Type=exec, not oneshot: multi-user.target is ordered after
            // what it wants, and waits for a oneshot to finish — with no
            // start timeout for oneshots, a stuck check would hold the boot
            // short of multi-user.target for ever. An exec unit is up once
            // guard runs; RuntimeMaxSec (which oneshots ignore) ends a
            // stuck one, and the unit is marked failed.
            format!(
                "[Unit]\nDescription=guard: check the configuration against the last snapshot\nDocumentation=man:guard(1)\nAfter=local-fs.target\n\n[Service]\nType=exec\nExecStart={GUARD_BIN} --no-progress check\nSuccessExitStatus=1\nRuntimeMaxSec=30min\n{HARDENING}\n[Install]\nWantedBy=multi-user.target\n"
            ),
        ),
    ]
}

/// `guard units install|uninstall`.
pub fn command(app: &App, action: InstallAction) -> Result<i32> {
    if action == InstallAction::Uninstall {
        warn_still_enabled(app);
    }
    let code = install_files(app, "systemd units", &unit_files(), action)?;
    if action == InstallAction::Install && !app.json {
        app.ui.say(&format!(
            "enable them with: {} guard-snapshot.timer guard-check.service",
            systemctl(app, "enable")
        ));
    }
    Ok(code)
}

/// The `systemctl VERB` that acts on the root guard was given. With a
/// `--root` other than `/` (a guest's disk mounted to be prepared) a bare
/// `systemctl enable --now` would enable and start units on this host:
/// `--root` links them in that system instead, where they start when it
/// boots (`--now` cannot reach a system that is not running).
fn systemctl(app: &App, verb: &str) -> String {
    let root = app.root.path();
    if root == std::path::Path::new("/") {
        format!("systemctl {verb} --now")
    } else {
        format!(
            "systemctl --root={} {verb}",
            crate::exec::shell_quote(root.as_os_str().as_encoded_bytes())
        )
    }
}

/// Where `systemctl enable` links guard's units (their `WantedBy=`).
const ENABLED_LINKS: [&str; 2] = [
    "/etc/systemd/system/timers.target.wants/guard-snapshot.timer",
    "/etc/systemd/system/multi-user.target.wants/guard-check.service",
];

/// Uninstalling an enabled unit leaves its `*.wants/` link behind,
/// dangling (systemd then logs the missing unit at every boot), and a
/// timer already loaded keeps firing until the next daemon-reload: said
/// before the plan is confirmed, with what to run first.
fn warn_still_enabled(app: &App) {
    let enabled: Vec<&str> = ENABLED_LINKS
        .iter()
        .filter(|l| app.root.exists(&SysPath::new(**l)))
        .map(|l| l.rsplit('/').next().unwrap_or(l))
        .collect();
    if !enabled.is_empty() {
        app.ui.say(&format!(
            "warning: {} still enabled: run {} {} first, or the links in /etc/systemd/system/*.wants stay behind, dangling",
            enabled.join(" and "),
            systemctl(app, "disable"),
            enabled.join(" ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Key=value` settings of one unit file, in order.
    fn settings(content: &str) -> Vec<(&str, &str)> {
        content
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| !k.starts_with('#'))
            .collect()
    }

    fn get<'a>(unit: &'a [(&'a str, &'a str)], key: &str) -> Option<&'a str> {
        unit.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    #[test]
    fn no_unit_can_hold_the_boot_or_the_store_for_ever() {
        for f in unit_files() {
            let name = f.path.to_string();
            if !name.ends_with(".service") {
                continue;
            }
            let u = settings(&f.content);
            let oneshot = get(&u, "Type") == Some("oneshot");
            // a oneshot needs TimeoutStartSec; any other type RuntimeMaxSec
            let limit = get(
                &u,
                if oneshot {
                    "TimeoutStartSec"
                } else {
                    "RuntimeMaxSec"
                },
            );
            assert!(
                limit.is_some_and(|v| v != "infinity" && v != "0"),
                "{name} can run for ever:\n{}",
                f.content
            );
            // what a target wants at boot it waits for, if it is a oneshot
            if get(&u, "WantedBy").is_some_and(|t| t.ends_with(".target") && t != "timers.target") {
                assert!(!oneshot, "{name} holds up the boot:\n{}", f.content);
            }
        }
    }
}
