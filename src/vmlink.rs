//! The core binary's side of the vm commands: it runs the `guard-vm` helper
//! (which links libvirt) instead of loading libvirt itself, and turns its
//! JSON into the `VmRecord`s a snapshot keeps.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::app::{guard_vm_path, App};
use crate::exec::{self, Cmd};
use crate::store::manifest::{VmDisk, VmRecord};

const DEFAULT_URI: &str = "qemu:///system";

fn uri_of(connect: Option<&str>) -> String {
    connect
        .map(str::to_string)
        .or_else(|| std::env::var("GUARD_LIBVIRT_URI").ok())
        .unwrap_or_else(|| DEFAULT_URI.to_string())
}

/// `guard snapshot --vm DOMAIN`: clones each guest as
/// `DOMAIN-pre-upgrade-DATE` through guard-vm. If one clone fails, the ones
/// already made are discarded again, so either every guest is cloned or none.
pub fn clone_vms(app: &App, vms: &[String], connect: Option<&str>) -> Result<Vec<VmRecord>> {
    if vms.is_empty() {
        // (the local time zone below costs a tzdb read: not for nothing)
        return Ok(Vec::new());
    }
    let uri = uri_of(connect);
    let date = jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string();
    let mut done: Vec<VmRecord> = Vec::new();
    for dom in vms {
        let name = format!("{dom}-pre-upgrade-{date}");
        app.ui.say(&format!("cloning guest {dom} as {name}"));
        match clone_one(dom, &name, &uri) {
            Ok(r) => done.push(r),
            Err(e) => {
                discard_clones(app, &done);
                return Err(e.context(format!("snapshot --vm {dom}: no snapshot taken")));
            }
        }
    }
    Ok(done)
}

fn clone_one(dom: &str, name: &str, uri: &str) -> Result<VmRecord> {
    let cmd = Cmd::new(guard_vm_path())
        .args([
            "--json",
            "--yes",
            "--no-progress",
            "clone",
            dom,
            "--name",
            name,
        ])
        .args(["--connect", uri]);
    let out = exec::output(&cmd)?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        let msg = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        bail!("cloning {dom}: {msg}");
    }
    let field = |k: &str| -> Result<String> {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("guard-vm gave no {k}"))
    };
    let disks = v["disks"]
        .as_array()
        .context("guard-vm gave no disks")?
        .iter()
        .filter(|d| d["action"] == "copy")
        .map(|d| VmDisk {
            target: d["target"].as_str().unwrap_or_default().to_string(),
            source: d["source"].as_str().unwrap_or_default().to_string(),
            copy: d["to_path"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    Ok(VmRecord {
        domain: dom.to_string(),
        uri: uri.to_string(),
        clone: field("name")?,
        source_xml: field("source_xml")?,
        disks,
        // `[from, to]`: the clone's nvram, which a discard must take too
        // (an undefine that finds no domain leaves it)
        nvram: v["nvram"][1].as_str().map(str::to_string),
    })
}

/// Takes clones back (undefine, delete their copies); failures are said,
/// since the caller is already failing.
pub fn discard_clones(app: &App, records: &[VmRecord]) {
    for r in records {
        let mut cmd = Cmd::new(guard_vm_path())
            .args(["--yes", "discard", &r.clone])
            .args(["--connect", &r.uri]);
        for c in r.disks.iter().map(|d| &d.copy).chain(&r.nvram) {
            cmd = cmd.args(["--copy", c]);
        }
        match exec::stdout_of(&cmd) {
            Ok(_) => app.ui.say(&format!("discarded clone {}", r.clone)),
            Err(e) => app.ui.say(&format!(
                "could not discard clone {} ({e:#}); remove it by hand",
                r.clone
            )),
        }
    }
}
