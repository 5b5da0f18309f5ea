//! What guard finds out about the system before a walk (os-release, the
//! package manager, free space, the keyring's age, LVM, guests). Apart from
//! the walk because the dry run detects the same facts and runs no step.

use std::path::Path;

use super::vars::{rooted, Vars};
use crate::app::{self, App};
use crate::exec::{self, Cmd};
use crate::sysroot::SysPath;

/// What guard finds out about the system before the walk. Anything it cannot
/// detect is simply absent (and shows as `<name>` in a dry run).
pub fn detect_facts(app: &App, answers: &Vars) -> Vars {
    let mut f = Vars::new();
    let root = app.root.path().to_path_buf();
    // GUARD_VARS: neither answers nor a playbook can override these two
    f.insert("root".into(), root.display().to_string());
    f.insert("store".into(), app.store_dir.display().to_string());
    f.insert("guard".into(), app.guard_cmd());
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
        // The guests of the connection the walk will use: an answered
        // `libvirt_uri` (qemu:///session, another host), else guard-vm's
        // own default (GUARD_LIBVIRT_URI, or qemu:///system).
        let mut list = Cmd::new(&vm).args(["--json", "list"]);
        if let Some(uri) = answers.get("libvirt_uri").filter(|u| !u.is_empty()) {
            list = list.args(["--connect", uri.as_str()]);
        }
        if let Ok(out) = exec::stdout_of(&list) {
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
