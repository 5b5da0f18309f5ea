//! Incident 1 end to end: the admin's /etc/pam.d/imap and smtp vanish in
//! an upgrade; `guard check` names cyrus, saslauthd and postfix and the
//! logins that fail. Also moved-to-vendor, missing modules and includes.

mod common;
use common::*;

fn mail_server() -> Sys {
    let s = Sys::new();
    s.write(
        "/etc/pam.d/imap",
        "auth required pam_sss.so\naccount required pam_sss.so\n",
    )
    .write(
        "/etc/pam.d/smtp",
        "auth required pam_sss.so\naccount required pam_sss.so\n",
    )
    .write("/etc/pam.d/login", "auth include common-auth\n")
    .write("/etc/pam.d/common-auth", "auth required pam_unix.so\n")
    .write("/usr/lib/pam.d/sudo", "auth include common-auth\n")
    .write(
        "/etc/pam.d/sudo",
        "auth include common-auth\nauth required pam_wheel.so\n",
    )
    .write("/usr/lib/pam.d/su", "auth include common-auth\n")
    .write("/etc/pam.d/su", "auth include common-auth\n")
    .write("/lib/security/pam_unix.so", "")
    .write("/lib/security/pam_sss.so", "")
    .write("/lib/security/pam_wheel.so", "")
    .write(
        "/etc/sysconfig/saslauthd",
        "SASLAUTHD_AUTHMECH=pam\nMECHANISMS=\"pam\"\n",
    )
    .write(
        "/etc/imapd.conf",
        "configdirectory: /var/lib/imap\nsasl_pwcheck_method: saslauthd\n",
    )
    .write(
        "/etc/postfix/main.cf",
        "myhostname = mail\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\n",
    )
    .write(
        "/etc/sasl2/smtpd.conf",
        "pwcheck_method: saslauthd\nmech_list: plain login\n",
    );
    s
}

#[test]
fn vanished_mail_services_name_their_daemons() {
    let s = mail_server();
    s.snapshot();
    s.rm("/etc/pam.d/imap");
    s.rm("/etc/pam.d/smtp");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let imap = for_path(&v, "/etc/pam.d/imap");
    assert_eq!(
        imap.len(),
        1,
        "specific finding replaces file/vanished: {v:#}"
    );
    assert_eq!(imap[0]["id"], "pam/service-vanished");
    assert_eq!(imap[0]["severity"], "critical");
    let msg = imap[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("IMAP logins will fail"), "{msg}");
    assert!(msg.contains("saslauthd for cyrus imapd"), "{msg}");
    let ev = imap[0]["evidence"].as_array().unwrap();
    assert!(ev.iter().any(|e| e["path"] == "/etc/imapd.conf"
        && e["line"] == 2
        && e["text"] == "sasl_pwcheck_method: saslauthd"));
    assert!(ev.iter().any(|e| e["path"] == "/etc/sysconfig/saslauthd"));
    assert_eq!(imap[0]["fix"], "guard restore /etc/pam.d/imap");

    let smtp = for_path(&v, "/etc/pam.d/smtp");
    assert_eq!(smtp.len(), 1);
    assert!(smtp[0]["message"]
        .as_str()
        .unwrap()
        .contains("postfix smtpd"));
    assert!(smtp[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "/etc/sasl2/smtpd.conf"));

    let (code, text) = s.check_text();
    assert_eq!(code, 2);
    assert_eq!(
        text.lines().next().unwrap(),
        "2 critical: mail logins (imap, smtp) will fail"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");

    // restoring brings the service back and the finding goes
    s.cmd()
        .args(["--yes", "restore", "/etc/pam.d/imap", "/etc/pam.d/smtp"])
        .assert()
        .success();
    let (code, v) = s.check();
    assert!(with_id(&v, "pam/service-vanished").is_empty(), "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn moved_to_vendor_is_info_unless_the_admin_changed_it() {
    let s = mail_server();
    // the sudo package ships /etc/pam.d/sudo and moved it to the vendor
    // dir (an unowned file that vanished is the critical case below)
    s.write(
        "/var/lib/dpkg/status",
        "Package: sudo\nStatus: install ok installed\nVersion: 1.9.15-1\n\n",
    )
    .write("/var/lib/dpkg/info/sudo.list", "/etc/pam.d/sudo\n");
    s.snapshot();
    s.rm("/etc/pam.d/sudo"); // had an admin change (pam_wheel)
    s.rm("/etc/pam.d/su"); // same as the vendor file
    let (code, v) = s.check();
    let sudo = for_path(&v, "/etc/pam.d/sudo");
    assert_eq!(sudo.len(), 1, "{v:#}");
    assert_eq!(sudo[0]["id"], "pam/moved-to-vendor");
    assert_eq!(sudo[0]["severity"], "warning");
    let su = for_path(&v, "/etc/pam.d/su");
    assert_eq!(su[0]["id"], "pam/moved-to-vendor");
    assert_eq!(su[0]["severity"], "info");
    assert_eq!(code, 1, "{v:#}");
}

#[test]
fn missing_module_and_include_are_found_without_a_snapshot() {
    let s = mail_server();
    s.rm("/lib/security/pam_sss.so");
    s.write(
        "/etc/pam.d/pop",
        "@include common-gone\nsession optional pam_unix.so\n",
    );
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let m = with_id(&v, "pam/module-missing");
    assert_eq!(m.len(), 1, "{v:#}");
    assert!(m[0]["message"].as_str().unwrap().contains("pam_sss.so"));
    assert!(m[0]["message"].as_str().unwrap().contains("imap, smtp"));
    assert_eq!(m[0]["severity"], "critical");
    let i = with_id(&v, "pam/include-missing");
    assert_eq!(i.len(), 1, "{v:#}");
    assert_eq!(i[0]["paths"][0], "/etc/pam.d/pop");
    assert_eq!(i[0]["evidence"][0]["line"], 1);
    assert!(!with_id(&v, "baseline/none").is_empty());
}

/// The fix of a missing include names what can bring it back. On a
/// Debian box an admin mistyped `@include common-authx` in
/// /etc/pam.d/sshd: the fix said `guard restore /etc/pam.d/common-authx`,
/// a file no snapshot ever held (the restore fails), when restoring the
/// edited /etc/pam.d/sshd is what undoes it. Without a snapshot it
/// offered a restore too; only a vanished target is restored.
#[test]
fn missing_include_fix_restores_what_the_snapshot_had() {
    // no snapshot: nothing to restore from
    let s = mail_server();
    s.write("/etc/pam.d/sshd", "@include common-authx\n");
    let (_, v) = s.check();
    let i = with_id(&v, "pam/include-missing");
    assert_eq!(i.len(), 1, "{v:#}");
    let fix = i[0]["fix"].as_str().unwrap();
    assert!(!fix.contains("guard restore"), "{fix}");
    assert!(fix.contains("/etc/pam.d/sshd"), "{fix}");

    // the include was edited since the snapshot: restore the file holding it
    let s = mail_server();
    s.write("/etc/pam.d/sshd", "@include common-auth\n");
    s.snapshot();
    s.write("/etc/pam.d/sshd", "@include common-authx\n");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let i = with_id(&v, "pam/include-missing");
    assert_eq!(i.len(), 1, "{v:#}");
    let fix = i[0]["fix"].as_str().unwrap();
    assert!(fix.contains("guard restore /etc/pam.d/sshd "), "{fix}");
    assert!(!fix.contains("common-authx ("), "{fix}");
    assert!(
        !fix.contains("guard restore /etc/pam.d/common-authx"),
        "{fix}"
    );
    s.cmd()
        .args(["--yes", "restore", "/etc/pam.d/sshd"])
        .assert()
        .success();
    let (code, v) = s.check();
    assert!(with_id(&v, "pam/include-missing").is_empty(), "{v:#}");
    assert_eq!(code, 0, "{v:#}");

    // the target vanished: restore the target
    s.rm("/etc/pam.d/common-auth");
    let (_, v) = s.check();
    let i: Vec<_> = with_id(&v, "pam/include-missing");
    assert!(!i.is_empty(), "{v:#}");
    for f in i {
        let fix = f["fix"].as_str().unwrap();
        assert!(
            fix.starts_with("guard restore /etc/pam.d/common-auth,"),
            "{fix}"
        );
    }
}

#[test]
fn vanished_services_of_dovecot_vsftpd_and_sshd() {
    let s = Sys::new();
    s.write("/etc/pam.d/dovecot", "auth required pam_unix.so\n")
        .write("/etc/pam.d/vsftpd", "auth required pam_unix.so\n")
        .write("/etc/pam.d/sshd", "auth required pam_unix.so\n")
        .write(
            "/etc/dovecot/conf.d/auth-system.conf.ext",
            "passdb {\n  driver = pam\n  # args = session=yes %s\n}\n",
        )
        .write("/etc/vsftpd.conf", "listen=YES\npam_service_name=vsftpd\n")
        .write(
            "/etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM no\n",
        )
        .write("/etc/ssh/sshd_config.d/10-pam.conf", "UsePAM yes\n");
    s.snapshot();
    for f in ["dovecot", "vsftpd", "sshd"] {
        s.rm(&format!("/etc/pam.d/{f}"));
    }
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let msg = |p: &str| for_path(&v, p)[0]["message"].as_str().unwrap().to_string();
    assert!(msg("/etc/pam.d/dovecot").starts_with("IMAP/POP3 logins will fail"));
    assert!(msg("/etc/pam.d/vsftpd").starts_with("FTP logins will fail"));
    let ssh = for_path(&v, "/etc/pam.d/sshd");
    assert!(ssh[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("ssh logins will fail"));
    // the winning UsePAM line is the evidence, from the drop-in
    assert_eq!(
        ssh[0]["evidence"][0]["path"],
        "/etc/ssh/sshd_config.d/10-pam.conf"
    );
    assert_eq!(
        s.verdict(),
        "3 critical: logins (dovecot, sshd, vsftpd) will fail"
    );
}

#[test]
fn opensuse_saslauthd_authmech_names_the_daemons() {
    // openSUSE Leap's /etc/sysconfig/saslauthd has no MECHANISMS= line:
    // its init script reads SASLAUTHD_AUTHMECH (Fedora's reads MECH).
    // Without these keys guard could not say who uses imap and smtp.
    for (key, file) in [
        ("SASLAUTHD_AUTHMECH", "/etc/sysconfig/saslauthd"),
        ("MECH", "/etc/sysconfig/saslauthd"),
    ] {
        let s = mail_server();
        s.write(file, &format!("## Type: list(pam,shadow)\n{key}=pam\n"));
        s.snapshot();
        s.rm("/etc/pam.d/imap");
        s.rm("/etc/pam.d/smtp");
        let (code, v) = s.check();
        assert_eq!(code, 2, "{v:#}");
        let imap = for_path(&v, "/etc/pam.d/imap");
        let msg = imap[0]["message"].as_str().unwrap();
        assert!(msg.starts_with("IMAP logins will fail"), "{key}: {msg}");
        assert!(msg.contains("saslauthd for cyrus imapd"), "{key}: {msg}");
        assert!(imap[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == file && e["line"] == 2));
        let smtp = for_path(&v, "/etc/pam.d/smtp");
        let msg = smtp[0]["message"].as_str().unwrap();
        assert!(msg.contains("saslauthd for postfix smtpd"), "{key}: {msg}");
    }
}

#[test]
fn admins_own_file_replaced_by_a_different_vendor_file_is_critical() {
    // incident 1 on openSUSE: the admin's /etc/pam.d/smtp (sss, owned by
    // no package) vanishes while the vendor's pam_unix-only smtp in
    // /usr/lib/pam.d applies: SMTP AUTH of LDAP users fails
    let s = mail_server();
    s.write("/usr/lib/pam.d/smtp", "auth required pam_unix.so\n");
    s.snapshot();
    s.rm("/etc/pam.d/smtp");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let smtp = for_path(&v, "/etc/pam.d/smtp");
    assert_eq!(smtp.len(), 1, "replaces file/vanished: {v:#}");
    assert_eq!(smtp[0]["id"], "pam/moved-to-vendor");
    assert_eq!(smtp[0]["severity"], "critical");
    let msg = smtp[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("SMTP logins may fail"), "{msg}");
    assert!(msg.contains("saslauthd for postfix smtpd"), "{msg}");
    assert!(msg.contains("/usr/lib/pam.d/smtp"), "{msg}");
    assert!(smtp[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "/etc/sasl2/smtpd.conf"));
    assert_eq!(
        smtp[0]["fix"],
        "guard restore /etc/pam.d/smtp (a file in /etc/pam.d overrides /usr/lib/pam.d/smtp)"
    );
}

#[test]
fn missing_module_severity_follows_the_control() {
    let s = mail_server();
    s.write(
        "/etc/pam.d/pop",
        "auth optional pam_nothere.so\nauth required pam_unix.so\n\
         account required pam_unix.so\n",
    )
    // pam_open_session fails with "Module is unknown": the login ends
    .write(
        "/etc/pam.d/sieve",
        "auth required pam_unix.so\nsession required pam_gone.so\n",
    )
    // a leading `-` only silences the log: libpam still fails the stack
    .write("/etc/pam.d/ftp", "-auth required pam_dashgone.so\n")
    // harmless: ignored and not logged
    .write("/etc/pam.d/lpd", "-session optional pam_systemd_gone.so\n");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let m = with_id(&v, "pam/module-missing");
    let of = |module: &str| {
        m.iter()
            .find(|f| f["message"].as_str().unwrap().contains(module))
            .unwrap_or_else(|| panic!("no finding for {module}: {v:#}"))
    };
    assert_eq!(of("pam_nothere.so")["severity"], "warning");
    assert!(of("pam_nothere.so")["message"]
        .as_str()
        .unwrap()
        .contains("logins go on"));
    assert_eq!(of("pam_gone.so")["severity"], "critical");
    assert!(of("pam_gone.so")["message"]
        .as_str()
        .unwrap()
        .contains("logins fail"));
    assert_eq!(of("pam_dashgone.so")["severity"], "critical");
    assert!(
        !m.iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .contains("pam_systemd_gone.so")),
        "{v:#}"
    );
    assert_eq!(m.len(), 3, "{v:#}");
}
