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
        unit(
            "guard-snapshot.service",
            format!(
                "[Unit]\nDescription=guard: snapshot of the system configuration\nDocumentation=man:guard(1)\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nExecStart={GUARD_BIN} --no-progress snapshot --kind timer --label daily\nExecStartPost={GUARD_BIN} --no-progress --yes prune --keep {KEEP}\n{HARDENING}"
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
            format!(
                "[Unit]\nDescription=guard: check the configuration against the last snapshot\nDocumentation=man:guard(1)\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nExecStart={GUARD_BIN} --no-progress check\nSuccessExitStatus=1\n{HARDENING}\n[Install]\nWantedBy=multi-user.target\n"
            ),
        ),
    ]
}

/// `guard units install|uninstall`.
pub fn command(app: &App, action: InstallAction) -> Result<i32> {
    let code = install_files(app, "systemd units", &unit_files(), action)?;
    if action == InstallAction::Install && !app.json {
        app.ui.say(
            "enable them with: systemctl enable --now guard-snapshot.timer guard-check.service",
        );
    }
    Ok(code)
}
