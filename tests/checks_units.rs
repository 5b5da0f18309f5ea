//! Incidents 3 and 6 end to end: a package update replaces a binary that
//! had file capabilities (`caps/lost` names the service that runs it), a
//! unit is disabled, and a hardening drop-in vanishes.

mod common;
use common::*;

fn web_box() -> Sys {
    let s = Sys::new();
    s.write("/usr/bin/web", "#!/bin/sh\necho v1\n")
        .write(
            "/etc/systemd/system/web.service",
            "[Unit]\nDescription=web\n[Service]\nExecStart=/usr/bin/web --port 80\nUser=web\n\
             [Install]\nWantedBy=multi-user.target\n",
        )
        .write(
            "/etc/systemd/system/web.service.d/harden.conf",
            "[Service]\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nProtectSystem=strict\n\
             NoNewPrivileges=yes\n",
        );
    s.symlink(
        "/etc/systemd/system/web.service",
        "/etc/systemd/system/multi-user.target.wants/web.service",
    );
    run(&[
        "setcap",
        "cap_net_bind_service=ep",
        s.path("/usr/bin/web").to_str().unwrap(),
    ]);
    s
}

#[test]
fn replaced_binary_loses_caps_and_names_its_service() {
    let s = web_box();
    s.snapshot();
    // a package update: new file renamed over the old one
    s.write("/usr/bin/web.new", "#!/bin/sh\necho v2\n");
    std::fs::rename(s.path("/usr/bin/web.new"), s.path("/usr/bin/web")).unwrap();
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "caps/lost");
    assert_eq!(f.len(), 1, "{v:#}");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(msg.contains("cap_net_bind_service"), "{msg}");
    assert!(msg.contains("replaced"), "{msg}");
    assert!(msg.contains("used by web.service"), "{msg}");
    let ev = &f[0]["evidence"][0];
    assert_eq!(ev["path"], "/etc/systemd/system/web.service");
    assert_eq!(ev["line"], 4);
    assert_eq!(f[0]["fix"], "guard restore --caps");
}

#[test]
fn disabled_unit_and_vanished_hardening_dropin() {
    let s = web_box();
    s.snapshot();
    s.rm("/etc/systemd/system/multi-user.target.wants/web.service");
    s.rm("/etc/systemd/system/web.service.d/harden.conf");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let d = with_id(&v, "systemd/unit-disabled");
    assert_eq!(d.len(), 1, "{v:#}");
    assert!(d[0]["message"].as_str().unwrap().contains("web.service"));
    let dv = with_id(&v, "systemd/dropin-vanished");
    assert_eq!(dv.len(), 1, "{v:#}");
    assert_eq!(
        dv[0]["paths"][0],
        "/etc/systemd/system/web.service.d/harden.conf"
    );
    assert!(dv[0]["message"]
        .as_str()
        .unwrap()
        .contains("AmbientCapabilities"));
    let h = with_id(&v, "systemd/hardening-lost");
    assert_eq!(h.len(), 1, "{v:#}");
    let msg = h[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE")
            && msg.contains("ProtectSystem=strict")
            && msg.contains("NoNewPrivileges=yes")
            && !msg.contains("User="),
        "{msg}"
    );
    assert_eq!(h[0]["evidence"][0]["line"], 2);
    // the generic file/vanished finding is replaced by the specific one
    assert_eq!(
        for_path(&v, "/etc/systemd/system/web.service.d/harden.conf").len(),
        1
    );
}

/// The units `guard show` lists as enabled in the only snapshot.
fn enabled(s: &Sys) -> Vec<String> {
    let out = s.cmd().args(["--json", "list"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["snapshots"][0]["id"].as_str().unwrap().to_string();
    let out = s.cmd().args(["--json", "show", &id]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_plain_file_in_a_wants_dir_enables_nothing() {
    // systemd follows only symlinks in *.wants/ ("dependency dropin … is
    // not a symlink, ignoring"): a unit file copied there enables nothing
    let s = web_box();
    s.write(
        "/etc/systemd/system/mail.service",
        "[Service]\nExecStart=/usr/bin/web\n[Install]\nWantedBy=multi-user.target\n",
    );
    std::fs::copy(
        s.path("/etc/systemd/system/mail.service"),
        s.path("/etc/systemd/system/multi-user.target.wants/mail.service"),
    )
    .unwrap();
    s.snapshot();
    assert_eq!(enabled(&s), ["web.service"]);
    // removing the copy disables nothing
    s.rm("/etc/systemd/system/multi-user.target.wants/mail.service");
    let (_, v) = s.check();
    assert!(with_id(&v, "systemd/unit-disabled").is_empty(), "{v:#}");
    // an upgrade that replaces the link by a copy of the unit disables it
    s.rm("/etc/systemd/system/multi-user.target.wants/web.service");
    std::fs::copy(
        s.path("/etc/systemd/system/web.service"),
        s.path("/etc/systemd/system/multi-user.target.wants/web.service"),
    )
    .unwrap();
    let (_, v) = s.check();
    let d = with_id(&v, "systemd/unit-disabled");
    assert_eq!(d.len(), 1, "{v:#}");
    assert!(
        d[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("web.service is no longer enabled"),
        "{v:#}"
    );
}

#[test]
fn hardening_moved_into_the_unit_is_not_lost() {
    let s = web_box();
    s.snapshot();
    s.rm("/etc/systemd/system/web.service.d/harden.conf");
    s.write(
        "/etc/systemd/system/web.service",
        "[Service]\nExecStart=/usr/bin/web --port 80\nUser=web\n\
         AmbientCapabilities=CAP_NET_BIND_SERVICE\nProtectSystem=strict\nNoNewPrivileges=yes\n",
    );
    let (_, v) = s.check();
    assert!(with_id(&v, "systemd/hardening-lost").is_empty(), "{v:#}");
}

#[test]
fn caps_lost_names_a_service_whose_unit_went_too() {
    let s = web_box();
    s.snapshot();
    run(&["setcap", "-r", s.path("/usr/bin/web").to_str().unwrap()]);
    s.rm("/etc/systemd/system/web.service");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "caps/lost");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(msg.contains("the same file lost its capabilities"), "{msg}");
    assert!(msg.contains("used by web.service"), "{msg}");
}

#[test]
fn masking_an_enabled_unit_is_reported_though_its_link_stays() {
    let s = web_box();
    s.write(
        "/usr/lib/systemd/system/getty@.service",
        "[Service]\nExecStart=-/sbin/agetty %I\n",
    );
    s.symlink(
        "/usr/lib/systemd/system/getty@.service",
        "/etc/systemd/system/getty.target.wants/getty@tty1.service",
    );
    s.snapshot();
    // `systemctl mask` of a unit and of a template: the wants links stay
    s.rm("/etc/systemd/system/web.service");
    s.symlink("/dev/null", "/etc/systemd/system/web.service");
    s.symlink("/dev/null", "/etc/systemd/system/getty@.service");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let web = for_path(&v, "/etc/systemd/system/web.service");
    assert_eq!(web.len(), 1, "one finding for the mask: {v:#}");
    assert_eq!(web[0]["id"], "systemd/unit-disabled");
    let msg = web[0]["message"].as_str().unwrap();
    assert!(msg.contains("web.service is masked"), "{msg}");
    assert_eq!(
        web[0]["fix"],
        "systemctl unmask web.service; systemctl start web.service"
    );
    let getty = for_path(&v, "/etc/systemd/system/getty@.service");
    assert_eq!(getty.len(), 1, "{v:#}");
    assert_eq!(getty[0]["id"], "systemd/unit-disabled");
    assert!(getty[0]["message"]
        .as_str()
        .unwrap()
        .contains("getty@tty1.service is masked"));
    // a masked unit runs nothing: no hardening-lost beside it
    assert!(with_id(&v, "systemd/hardening-lost").is_empty(), "{v:#}");
}

#[test]
fn a_unit_masked_before_the_snapshot_is_not_news() {
    let s = web_box();
    s.rm("/etc/systemd/system/web.service");
    s.symlink("/dev/null", "/etc/systemd/system/web.service");
    s.snapshot();
    let (code, v) = s.check();
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn lost_dynamic_user_and_private_network_are_hardening_lost() {
    let s = Sys::new();
    s.write(
        "/usr/lib/systemd/system/app.service",
        "[Service]\nExecStart=/usr/bin/app\nDynamicUser=yes\nPrivateNetwork=yes\n\
         RestrictAddressFamilies=AF_UNIX\nProtectProc=default\n",
    );
    s.snapshot();
    // the package's new unit dropped the sandbox
    s.write(
        "/usr/lib/systemd/system/app.service",
        "[Service]\nExecStart=/usr/bin/app\n",
    );
    let (_, v) = s.check();
    let h = with_id(&v, "systemd/hardening-lost");
    assert_eq!(h.len(), 1, "{v:#}");
    let msg = h[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("DynamicUser=yes")
            && msg.contains("PrivateNetwork=yes")
            && msg.contains("RestrictAddressFamilies=AF_UNIX")
            && !msg.contains("ProtectProc"),
        "{msg}"
    );
}

/// A Debian-style root before the usr-merge: units under /lib, a
/// capability on /bin/ping.
fn unmerged_box() -> Sys {
    let s = Sys::new();
    s.write(
        "/lib/systemd/system/cron.service",
        "[Service]\nExecStart=/usr/sbin/cron\nNoNewPrivileges=yes\n",
    )
    .write(
        "/lib/systemd/system/foo.service",
        "[Service]\nExecStart=/usr/sbin/foo\nProtectSystem=full\n",
    )
    .write("/bin/ping", "#!/bin/sh\n")
    .write("/usr/bin/true", "#!/bin/sh\n");
    s.symlink(
        "../foo.service",
        "/lib/systemd/system/multi-user.target.wants/foo.service",
    );
    s.symlink(
        "/lib/systemd/system/cron.service",
        "/etc/systemd/system/multi-user.target.wants/cron.service",
    );
    run(&[
        "setcap",
        "cap_net_raw=ep",
        s.path("/bin/ping").to_str().unwrap(),
    ]);
    s
}

/// What the usrmerge package does: move /lib and /bin into /usr (the
/// files keep their inode, xattrs and mtime), leave symlinks behind.
fn usr_merge(s: &Sys) {
    for d in ["lib", "bin"] {
        let (old, new) = (s.path(d), s.path(&format!("usr/{d}")));
        std::fs::create_dir_all(&new).unwrap();
        for e in std::fs::read_dir(&old).unwrap() {
            let e = e.unwrap();
            std::fs::rename(e.path(), new.join(e.file_name())).unwrap();
        }
        std::fs::remove_dir(&old).unwrap();
        s.symlink(&format!("usr/{d}"), d);
    }
}

#[test]
fn a_usr_merge_moves_units_and_caps_without_findings() {
    let s = unmerged_box();
    s.snapshot();
    usr_merge(&s);
    let (code, v) = s.check();
    assert_eq!(code, 0, "nothing was lost, only moved: {v:#}");
    let out = s.cmd().arg("diff").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no changes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn damage_done_with_a_usr_merge_is_still_found_where_the_files_went() {
    let s = unmerged_box();
    s.snapshot();
    usr_merge(&s);
    s.write(
        "/usr/lib/systemd/system/foo.service",
        "[Service]\nExecStart=/usr/sbin/foo\n",
    );
    s.rm("/usr/lib/systemd/system/multi-user.target.wants/foo.service");
    run(&["setcap", "-r", s.path("/usr/bin/ping").to_str().unwrap()]);
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let caps = with_id(&v, "caps/lost");
    assert_eq!(caps.len(), 1, "{v:#}");
    assert_eq!(caps[0]["paths"][0], "/usr/bin/ping");
    let h = with_id(&v, "systemd/hardening-lost");
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(h[0]["paths"][0], "/usr/lib/systemd/system/foo.service");
    assert_eq!(with_id(&v, "systemd/unit-disabled").len(), 1, "{v:#}");
    assert!(with_id(&v, "file/vanished").is_empty(), "{v:#}");
}

/// A unit its package renamed (`mailgate.service` -> `mailgated.service`,
/// as pacman leaves it): the admin's `*.wants/` link to the old name
/// dangles and their override in `mailgate.service.d/` applies to nothing,
/// while the new unit runs the same program unhardened. Both are said, the
/// fix names the new unit, and once it is followed nothing is left over.
#[test]
fn a_renamed_unit_leaves_a_dangling_link_and_an_override_for_nothing() {
    let s = Sys::new();
    let unit = |name: &str| {
        s.write(
            &format!("/usr/lib/systemd/system/{name}"),
            "[Unit]\nDescription=mail gateway\n[Service]\nExecStart=/usr/bin/mailgate --fg\n\
             [Install]\nWantedBy=multi-user.target\n",
        );
    };
    unit("mailgate.service");
    s.write("/usr/bin/mailgate", "#!/bin/sh\n").write(
        "/etc/systemd/system/mailgate.service.d/override.conf",
        "[Service]\nUser=mailgate\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n\
         NoNewPrivileges=yes\n",
    );
    let wants = "/etc/systemd/system/multi-user.target.wants";
    s.symlink(
        "/usr/lib/systemd/system/mailgate.service",
        &format!("{wants}/mailgate.service"),
    );
    s.snapshot();
    s.rm("/usr/lib/systemd/system/mailgate.service");
    unit("mailgated.service");

    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let d = with_id(&v, "systemd/unit-disabled");
    assert_eq!(d.len(), 1, "{v:#}");
    assert_eq!(
        d[0]["paths"],
        serde_json::json!([
            format!("{wants}/mailgate.service"),
            "/usr/lib/systemd/system/mailgate.service"
        ])
    );
    let msg = d[0]["message"].as_str().unwrap();
    assert!(msg.contains("mailgated.service came in its place"), "{msg}");
    assert!(msg.contains("dangles"), "{msg}");
    assert_eq!(
        d[0]["fix"],
        format!(
            "systemctl enable mailgated.service, then remove the dangling link: \
             rm {wants}/mailgate.service"
        )
    );
    let h = with_id(&v, "systemd/hardening-lost");
    assert_eq!(h.len(), 1, "{v:#}");
    assert_eq!(
        h[0]["paths"][0], "/usr/lib/systemd/system/mailgated.service",
        "{v:#}"
    );
    let msg = h[0]["message"].as_str().unwrap();
    for lost in [
        "User=mailgate",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "applies to no unit",
    ] {
        assert!(msg.contains(lost), "{lost}: {msg}");
    }
    assert!(
        h[0]["fix"]
            .as_str()
            .unwrap()
            .contains("mv /etc/systemd/system/mailgate.service.d/override.conf"),
        "{:#}",
        h[0]
    );
    // the old unit file is that finding's, not a generic file/vanished too
    assert!(with_id(&v, "file/vanished").is_empty(), "{v:#}");

    // the admin follows the fixes: nothing of the rename is left to report
    std::fs::create_dir_all(s.path("/etc/systemd/system/mailgated.service.d")).unwrap();
    std::fs::rename(
        s.path("/etc/systemd/system/mailgate.service.d/override.conf"),
        s.path("/etc/systemd/system/mailgated.service.d/override.conf"),
    )
    .unwrap();
    s.rm(&format!("{wants}/mailgate.service"));
    s.symlink(
        "/usr/lib/systemd/system/mailgated.service",
        &format!("{wants}/mailgated.service"),
    );
    let (_, v) = s.check();
    for id in [
        "systemd/unit-disabled",
        "systemd/hardening-lost",
        "systemd/dropin-vanished",
    ] {
        assert!(with_id(&v, id).is_empty(), "{id}: {v:#}");
    }
}
