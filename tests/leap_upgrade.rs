//! End-to-end: a Leap-shaped release upgrade (openSUSE Leap 42.3 -> 15,
//! DESIGN §1 incident 1) done by the REAL `rpm` on a temporary root with
//! packages the REAL `rpmbuild` made, several packages in one `rpm -U`
//! transaction; then `guard check` read as the admin reads it, and
//! `guard restore`.
//!
//! The 42.3 packages: `pam` (the `common-*` files, `login` and `other` as
//! `%config(noreplace)` in /etc/pam.d, the modules), `sssd` (pam_sss.so),
//! `openssh` (`sshd_config`, /etc/pam.d/sshd, the unit), `cyrus-sasl-
//! saslauthd` (`SASLAUTHD_AUTHMECH=pam`), `cyrus-imapd` (`imapd.conf`
//! naming saslauthd, a plain `%config` `cyrus.conf`, the `master` binary,
//! `cyrus.service`), `postfix` (`main.cf`, `sasl2/smtpd.conf`) and
//! `openSUSE-release` (/etc/os-release). The admin adds their own
//! /etc/pam.d/imap and smtp (pam_sss, owned by no package), edits
//! `common-auth`, `login`, `main.cf` and `cyrus.conf`, enables the units
//! and grants `master` a capability. The 15 versions move `login` and
//! `other` to /usr/lib/pam.d and openssh's `sshd` to /usr/etc/pam.d,
//! change `common-auth`, `main.cf` and `cyrus.conf` upstream, replace
//! `master`, rename `cyrus.service` to `cyrus-imapd.service`, turn
//! /etc/os-release into a link to /usr/lib/os-release, and cyrus-imapd's
//! `%posttrans` deletes the admin's imap and smtp, as the real upgrade in
//! effect did.

// Own helper file (not common/mod.rs) so other areas' helpers merge cleanly.
#[path = "common/pkg_helpers.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::*;
use guard::exec::Cmd;
use serde_json::{json, Value};

/// A temporary root plus the store and scratch space of one test.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    work: PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = tmp.path().join("store");
    let work = tmp.path().join("work");
    for d in [&root, &work, &root.join("var/lib/rpm")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let w = World {
        _tmp: tmp,
        root,
        store,
        work,
    };
    write(
        &w.at("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ncyrus:x:96:12::/var/lib/imap:/bin/bash\n",
    );
    write(&w.at("/etc/group"), "root:x:0:\nmail:x:12:cyrus\n");
    run(rpm(&w).arg("--initdb"));
    w
}

impl World {
    /// The host path of an absolute path inside the root.
    fn at(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

// ------------------------------------------------------- packages

/// One file of a test package and how `%files` lists it.
struct F {
    path: &'static str,
    /// the content, or a symlink's target
    body: String,
    link: bool,
    mode: u32,
    /// `%config(noreplace)`, `%config` or nothing
    attr: &'static str,
}

fn plain(path: &'static str, body: &str) -> F {
    F {
        path,
        body: body.into(),
        link: false,
        mode: 0o644,
        attr: "",
    }
}

/// `%config(noreplace)`: rpm keeps an edited file and writes `.rpmnew`
fn conf(path: &'static str, body: &str) -> F {
    F {
        attr: "%config(noreplace)",
        ..plain(path, body)
    }
}

/// plain `%config`: rpm replaces an edited file and keeps it as `.rpmsave`
fn config(path: &'static str, body: &str) -> F {
    F {
        attr: "%config",
        ..plain(path, body)
    }
}

fn exe(path: &'static str, body: &str) -> F {
    F {
        mode: 0o755,
        ..plain(path, body)
    }
}

fn link(path: &'static str, target: &str) -> F {
    F {
        link: true,
        ..plain(path, target)
    }
}

struct Pkg {
    name: &'static str,
    version: &'static str,
    release: &'static str,
    files: Vec<F>,
    /// a `%posttrans -p <lua>` scriptlet: rpm runs it chrooted into the
    /// root without needing a shell there
    posttrans: Option<&'static str>,
}

fn pkg(name: &'static str, version: &'static str, release: &'static str, files: Vec<F>) -> Pkg {
    Pkg {
        name,
        version,
        release,
        files,
        posttrans: None,
    }
}

/// Builds the package with the real rpmbuild; returns the package file.
fn rpmbuild(w: &World, p: &Pkg) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let nvr = format!("{}-{}-{}", p.name, p.version, p.release);
    let tree = w.work.join("src").join(&nvr);
    let mut files = String::new();
    for f in &p.files {
        let host = tree.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        if f.link {
            std::os::unix::fs::symlink(&f.body, &host).unwrap();
        } else {
            std::fs::write(&host, &f.body).unwrap();
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(f.mode)).unwrap();
        }
        files.push_str(&format!("{} {}\n", f.attr, f.path));
    }
    let posttrans = p
        .posttrans
        .map(|s| format!("%posttrans -p <lua>\n{s}\n"))
        .unwrap_or_default();
    let spec = format!(
        "Name: {}\nVersion: {}\nRelease: {}\nSummary: guard test package\nLicense: MIT\n\
         BuildArch: noarch\nAutoReqProv: no\n\n%description\nguard test package\n\n\
         %install\ncp -a {}/. %{{buildroot}}/\n\n{posttrans}\n%files\n{files}",
        p.name,
        p.version,
        p.release,
        tree.display()
    );
    let spec_file = w.work.join(format!("{nvr}.spec"));
    write(&spec_file, &spec);
    run(Cmd::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", w.work.join("rpmbuild").display()))
        // no brp scripts: nothing to strip or compress, and faster
        .args(["--define", "__os_install_post %{nil}"])
        .arg(&spec_file)
        .env("HOME", &w.work));
    let out = w
        .work
        .join(format!("rpmbuild/RPMS/noarch/{nvr}.noarch.rpm"));
    assert!(out.is_file(), "rpmbuild built {}", out.display());
    out
}

/// `rpm` on the root's own database; never `~/.rpmdb` (DESIGN §6).
fn rpm(w: &World) -> Cmd {
    Cmd::new("rpm")
        .arg("--root")
        .arg(&w.root)
        .args(["--dbpath", "/var/lib/rpm"])
        .env("HOME", &w.work)
}

fn install(w: &World, pkgs: &[Pkg]) {
    let files: Vec<PathBuf> = pkgs.iter().map(|p| rpmbuild(w, p)).collect();
    run(rpm(w)
        .args(["-i", "--nodeps", "--force-debian"])
        .args(&files));
}

/// One `rpm -U` transaction, as `zypper dup` runs them (`--oldpackage`:
/// openSUSE-release 15.0 is "older" than 42.3).
fn upgrade(w: &World, pkgs: &[Pkg]) -> String {
    let files: Vec<PathBuf> = pkgs.iter().map(|p| rpmbuild(w, p)).collect();
    let out = guard::exec::output(
        &rpm(w)
            .args(["-U", "--oldpackage", "--nodeps", "--force-debian"])
            .args(&files),
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `guard ARGS…` as the admin runs it (no `--json`): exit code, stdout,
/// stderr.
fn guard_text(w: &World, args: &[&str]) -> (i32, String, String) {
    common::guard_text(&w.root, &w.store, args)
}

fn snapshot(w: &World) {
    let (code, snap) = guard(
        &w.root,
        &w.store,
        &["snapshot", "--label", "before leap 15"],
    );
    assert_eq!(code, 0, "{snap}");
}

fn check(w: &World) -> (i32, Value) {
    guard(&w.root, &w.store, &["check"])
}

/// The (id, severity, paths) of every finding, for whole-list asserts.
fn shape(check: &Value) -> Vec<(String, String, Vec<String>)> {
    findings(check)
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["paths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The only finding naming `path`.
fn only<'a>(check: &'a Value, path: &str) -> &'a Value {
    let f = findings_for(check, path);
    assert_eq!(f.len(), 1, "one finding for {path}: {check:#}");
    f[0]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is no string"))
}

// ------------------------------------------------------- the packages

const COMMON_AUTH: &str =
    "auth\trequired\tpam_env.so\nauth\trequired\tpam_unix.so\ttry_first_pass\n";
const LOGIN: &str = "#%PAM-1.0\nauth requisite pam_nologin.so\nauth include common-auth\n\
                     account include common-account\npassword include common-password\n\
                     session include common-session\n";
const OTHER: &str = "#%PAM-1.0\nauth required pam_deny.so\naccount required pam_deny.so\n\
                     password required pam_deny.so\nsession required pam_deny.so\n";
const MODULES: &[&str] = &[
    "/lib64/security/pam_unix.so",
    "/lib64/security/pam_env.so",
    "/lib64/security/pam_deny.so",
    "/lib64/security/pam_nologin.so",
    "/lib64/security/pam_limits.so",
    "/lib64/security/pam_mail.so",
    "/lib64/security/pam_warn.so",
];

/// `pam`: in 42.3 every service file in /etc/pam.d; in 15 `login` and
/// `other` (which the new version changes) in /usr/lib/pam.d, the
/// `common-*` files stay, `common-auth` changed upstream.
fn pam(v15: bool) -> Pkg {
    let mut files = vec![
        conf(
            "/etc/pam.d/common-account",
            "account\trequired\tpam_unix.so\ttry_first_pass\n",
        ),
        conf(
            "/etc/pam.d/common-password",
            "password\trequired\tpam_unix.so\tsha512\n",
        ),
        conf(
            "/etc/pam.d/common-session",
            "session\trequired\tpam_limits.so\nsession\trequired\tpam_unix.so\n",
        ),
    ];
    let module = |m: &'static str| exe(m, &format!("ELF {m} {}\n", if v15 { 15 } else { 42 }));
    files.extend(MODULES.iter().map(|m| module(m)));
    if v15 {
        files.push(conf(
            "/etc/pam.d/common-auth",
            "auth\trequired\tpam_env.so\nauth\toptional\tpam_gnome_keyring.so\n\
             auth\trequired\tpam_unix.so\ttry_first_pass\n",
        ));
        files.push(plain("/usr/lib/pam.d/login", LOGIN));
        files.push(plain(
            "/usr/lib/pam.d/other",
            &format!("#%PAM-1.0\nauth required pam_warn.so\n{}", &OTHER[10..]),
        ));
        pkg("pam", "1.3.0", "lp150.1", files)
    } else {
        files.push(conf("/etc/pam.d/common-auth", COMMON_AUTH));
        files.push(conf("/etc/pam.d/login", LOGIN));
        files.push(conf("/etc/pam.d/other", OTHER));
        pkg("pam", "1.3.0", "42.3", files)
    }
}

fn sssd(v15: bool) -> Pkg {
    let (v, r) = if v15 {
        ("1.16.1", "lp150.1")
    } else {
        ("1.13.4", "42.3")
    };
    pkg(
        "sssd",
        v,
        r,
        vec![exe(
            "/lib64/security/pam_sss.so",
            &format!("ELF pam_sss {v}\n"),
        )],
    )
}

const SSHD_PAM: &str = "#%PAM-1.0\nauth requisite pam_nologin.so\nauth include common-auth\n\
                        account include common-account\npassword include common-password\n\
                        session include common-session\n";

/// `openssh`: its PAM file moves to /usr/etc/pam.d unchanged.
fn openssh(v15: bool) -> Pkg {
    let (v, r) = if v15 {
        ("7.6p1", "lp150.1")
    } else {
        ("7.2p2", "42.3")
    };
    let mut files = vec![
        conf(
            "/etc/ssh/sshd_config",
            "# openSUSE sshd_config\nPasswordAuthentication no\nUsePAM yes\n",
        ),
        exe("/usr/sbin/sshd", &format!("#!/bin/sh\necho sshd {v}\n")),
        plain(
            "/usr/lib/systemd/system/sshd.service",
            "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n",
        ),
    ];
    files.push(if v15 {
        plain("/usr/etc/pam.d/sshd", SSHD_PAM)
    } else {
        conf("/etc/pam.d/sshd", SSHD_PAM)
    });
    pkg("openssh", v, r, files)
}

fn saslauthd(v15: bool) -> Pkg {
    let (v, r) = if v15 {
        ("2.1.27", "lp150.1")
    } else {
        ("2.1.26", "42.3")
    };
    pkg(
        "cyrus-sasl-saslauthd",
        v,
        r,
        vec![
            conf(
                "/etc/sysconfig/saslauthd",
                "## Path: System/Security/SASL\nSASLAUTHD_AUTHMECH=pam\nSASLAUTHD_THREADS=5\n",
            ),
            exe(
                "/usr/sbin/saslauthd",
                &format!("#!/bin/sh\necho saslauthd {v}\n"),
            ),
            plain(
                "/usr/lib/systemd/system/saslauthd.service",
                "[Service]\nEnvironmentFile=/etc/sysconfig/saslauthd\n\
                 ExecStart=/usr/sbin/saslauthd -a $SASLAUTHD_AUTHMECH\n\
                 [Install]\nWantedBy=multi-user.target\n",
            ),
        ],
    )
}

const CYRUS_CONF: &str = "START {\n  recover cmd=\"ctl_cyrusdb -r\"\n}\nSERVICES {\n  \
                          imap cmd=\"imapd\" listen=\"imap\" prefork=0\n}\n";
const CYRUS_UNIT: &str = "[Service]\nExecStart=/usr/lib/cyrus/bin/master\n\
                          [Install]\nWantedBy=multi-user.target\n";

/// `cyrus-imapd`: 15 renames the unit, changes the plain `%config`
/// cyrus.conf, replaces `master`, and its `%posttrans` removes the PAM
/// files of the cyrus services.
fn cyrus_imapd(v15: bool) -> Pkg {
    let (v, r) = if v15 {
        ("3.0.8", "lp150.1")
    } else {
        ("2.4.18", "42.3")
    };
    let mut files = vec![
        conf(
            "/etc/imapd.conf",
            "configdirectory: /var/lib/imap\npartition-default: /var/spool/imap\n\
             sasl_pwcheck_method: saslauthd\n",
        ),
        exe(
            "/usr/lib/cyrus/bin/master",
            &format!("#!/bin/sh\necho cyrus master {v}\n"),
        ),
    ];
    if v15 {
        files.push(config(
            "/etc/cyrus.conf",
            &CYRUS_CONF.replace("}\n", "  pop3 cmd=\"pop3d\" listen=\"pop3\" prefork=0\n}\n"),
        ));
        files.push(plain(
            "/usr/lib/systemd/system/cyrus-imapd.service",
            CYRUS_UNIT,
        ));
        let mut p = pkg("cyrus-imapd", v, r, files);
        p.posttrans = Some(
            "for _, s in ipairs({\"imap\", \"pop\", \"sieve\", \"smtp\"}) do\n  \
             os.remove(\"/etc/pam.d/\" .. s)\nend",
        );
        p
    } else {
        files.push(config("/etc/cyrus.conf", CYRUS_CONF));
        files.push(plain("/usr/lib/systemd/system/cyrus.service", CYRUS_UNIT));
        pkg("cyrus-imapd", v, r, files)
    }
}

fn postfix(v15: bool) -> Pkg {
    let (v, r) = if v15 {
        ("3.3.0", "lp150.1")
    } else {
        ("3.2.0", "42.3")
    };
    let main = if v15 {
        "# postfix main.cf 3.3\nmyhostname = localhost\ncompatibility_level = 2\n"
    } else {
        "# postfix main.cf 3.2\nmyhostname = localhost\n"
    };
    pkg(
        "postfix",
        v,
        r,
        vec![
            conf("/etc/postfix/main.cf", main),
            conf(
                "/etc/sasl2/smtpd.conf",
                "pwcheck_method: saslauthd\nmech_list: plain login\n",
            ),
            exe(
                "/usr/sbin/postfix",
                &format!("#!/bin/sh\necho postfix {v}\n"),
            ),
            plain(
                "/usr/lib/systemd/system/postfix.service",
                "[Service]\nExecStart=/usr/sbin/postfix start\n\
                 [Install]\nWantedBy=multi-user.target\n",
            ),
        ],
    )
}

/// `openSUSE-release`: Leap 15 makes /etc/os-release a link into /usr/lib.
fn release(v15: bool) -> Pkg {
    let os = |v: &str| format!("NAME=\"openSUSE Leap\"\nVERSION=\"{v}\"\nVERSION_ID=\"{v}\"\n");
    if v15 {
        pkg(
            "openSUSE-release",
            "15.0",
            "lp150.1",
            vec![
                plain("/usr/lib/os-release", &os("15.0")),
                link("/etc/os-release", "../usr/lib/os-release"),
            ],
        )
    } else {
        pkg(
            "openSUSE-release",
            "42.3",
            "1",
            vec![config("/etc/os-release", &os("42.3"))],
        )
    }
}

fn leap(v15: bool) -> Vec<Pkg> {
    vec![
        pam(v15),
        sssd(v15),
        openssh(v15),
        saslauthd(v15),
        cyrus_imapd(v15),
        postfix(v15),
        release(v15),
    ]
}

const IMAP: &str = "#%PAM-1.0\nauth required pam_sss.so\naccount required pam_sss.so\n";
const SMTP: &str = "#%PAM-1.0\nauth required pam_sss.so\n";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

/// The admin's 42.3: their own imap and smtp (smtp 0640 root:mail with an
/// xattr and an mtime with nanoseconds, which restore must keep), edits to
/// common-auth (pam_sss), login, main.cf (SMTP AUTH) and cyrus.conf
/// (imaps), the units enabled, and a capability on cyrus' master.
fn admins_42_3(w: &World) {
    write(&w.at("/etc/pam.d/imap"), IMAP);
    write(&w.at("/etc/pam.d/smtp"), SMTP);
    let smtp = w.at("/etc/pam.d/smtp");
    chmod(&smtp, 0o640);
    chown(&smtp, 0, 12);
    set_xattr(&smtp, "user.origin", b"ldap migration 2017");
    set_mtime(&smtp, 1_500_000_000, 123_456_789);
    write(
        &w.at("/etc/pam.d/common-auth"),
        "auth\trequired\tpam_env.so\nauth\tsufficient\tpam_sss.so\n\
         auth\trequired\tpam_unix.so\ttry_first_pass use_first_pass\n",
    );
    write(
        &w.at("/etc/pam.d/login"),
        &format!("{LOGIN}session optional pam_mail.so standard\n"),
    );
    write(
        &w.at("/etc/postfix/main.cf"),
        "# postfix main.cf 3.2\nmyhostname = mail.example.org\n\
         smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\n",
    );
    write(
        &w.at("/etc/cyrus.conf"),
        &CYRUS_CONF.replace(
            "}\n",
            "  imaps cmd=\"imapd -s\" listen=\"imaps\" prefork=0\n}\n",
        ),
    );
    std::fs::create_dir_all(w.at(WANTS)).unwrap();
    for u in ["sshd", "saslauthd", "cyrus", "postfix"] {
        std::os::unix::fs::symlink(
            format!("/usr/lib/systemd/system/{u}.service"),
            w.at(&format!("{WANTS}/{u}.service")),
        )
        .unwrap();
    }
    setcap(
        "cap_net_bind_service=ep",
        &w.at("/usr/lib/cyrus/bin/master"),
    );
}

// ------------------------------------------------------- the scenario

/// The whole upgrade, read as the tired admin reads it: the critical
/// findings are exactly the real damage (the two lost mail logins first,
/// then the lost capability), each with the fix that repairs it; what rpm
/// set aside is a pending merge once; the PAM files the packages moved to
/// /usr are information unless the admin's edits went with them; the
/// renamed unit says it will not start. The restore plan marks what the
/// packages dropped, brings the admin's files back byte-exact and the
/// capability too, and a second check has nothing critical.
#[test]
fn leap_42_3_to_15_lost_mail_logins_lead_and_restore_fixes_them() {
    let w = world();
    install(&w, &leap(false));
    admins_42_3(&w);
    let before: Vec<FileState> = ["/etc/pam.d/imap", "/etc/pam.d/smtp"]
        .iter()
        .map(|p| state(&w.at(p)))
        .collect();
    snapshot(&w);

    // ownership as recorded: the admin's files are theirs, the rest the
    // packages', the capped binary cyrus-imapd's
    let (_, list) = guard(&w.root, &w.store, &["list"]);
    let id = s(&list["snapshots"][0]["id"]).to_string();
    let (code, show) = guard(&w.root, &w.store, &["show", &id]);
    assert_eq!(code, 0, "{show:#}");
    assert_eq!(show["package_managers"], json!(["rpm"]));
    let mut unowned: Vec<&str> = show["unowned"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .filter(|p| !p.starts_with(WANTS))
        .collect();
    unowned.sort();
    assert_eq!(
        unowned,
        [
            "/etc/group",
            "/etc/pam.d/imap",
            "/etc/pam.d/smtp",
            "/etc/passwd"
        ],
        "{show:#}"
    );
    for (p, owner) in [
        ("/etc/pam.d/login", "pam"),
        ("/etc/pam.d/sshd", "openssh"),
        ("/etc/cyrus.conf", "cyrus-imapd"),
        ("/etc/sysconfig/saslauthd", "cyrus-sasl-saslauthd"),
        ("/etc/os-release", "openSUSE-release"),
        ("/usr/lib/systemd/system/cyrus.service", "cyrus-imapd"),
    ] {
        assert_eq!(show["owners"][p], json!([owner]), "{p}: {show:#}");
    }
    let caps = show["caps"].as_array().expect("caps");
    assert!(
        caps.iter()
            .any(|c| c["path"] == "/usr/lib/cyrus/bin/master"
                && c["owners"] == json!(["cyrus-imapd"])),
        "{show:#}"
    );

    // the release upgrade, one transaction
    let said = upgrade(&w, &leap(true));
    for line in [
        "/etc/pam.d/common-auth created as /etc/pam.d/common-auth.rpmnew",
        "/etc/postfix/main.cf created as /etc/postfix/main.cf.rpmnew",
        "/etc/pam.d/login saved as /etc/pam.d/login.rpmsave",
        "/etc/cyrus.conf saved as /etc/cyrus.conf.rpmsave",
    ] {
        assert!(said.contains(line), "rpm said {said}");
    }
    for p in ["/etc/pam.d/imap", "/etc/pam.d/smtp", "/etc/pam.d/login"] {
        assert!(!w.at(p).exists(), "{p} is gone");
    }

    let (code, v) = check(&w);
    assert_eq!(code, 2, "{v:#}");
    let crit: Vec<_> = shape(&v)
        .into_iter()
        .filter(|f| f.1 == "critical")
        .collect();
    let one = |id: &str, p: &str| (id.to_string(), "critical".to_string(), vec![p.to_string()]);
    assert_eq!(
        crit,
        [
            one("pam/service-vanished", "/etc/pam.d/imap"),
            one("pam/service-vanished", "/etc/pam.d/smtp"),
            one("caps/lost", "/usr/lib/cyrus/bin/master"),
        ],
        "{v:#}"
    );
    let f = findings(&v);
    assert!(
        s(&f[0]["message"]).starts_with("IMAP logins will fail"),
        "{v:#}"
    );
    assert!(
        s(&f[0]["message"]).contains("saslauthd for cyrus imapd"),
        "{v:#}"
    );
    assert!(
        s(&f[1]["message"]).starts_with("SMTP logins will fail"),
        "{v:#}"
    );
    assert!(
        s(&f[1]["message"]).contains("saslauthd for postfix smtpd"),
        "{v:#}"
    );
    assert_eq!(f[0]["fix"], "guard restore /etc/pam.d/imap");
    assert_eq!(f[1]["fix"], "guard restore /etc/pam.d/smtp");
    assert_eq!(f[2]["fix"], "guard restore --caps");
    assert!(
        f[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/etc/sysconfig/saslauthd" && e["line"] == 2),
        "{v:#}"
    );

    // the warnings: what rpm set aside, once each, and the renamed unit,
    // the damage first
    let warn: Vec<_> = shape(&v)
        .into_iter()
        .filter(|f| f.1 == "warning")
        .map(|f| (f.0, f.2))
        .collect();
    let w2 = |id: &str, p: &[&str]| (id.to_string(), p.iter().map(|p| p.to_string()).collect());
    assert_eq!(
        warn,
        [
            w2(
                "pam/moved-to-vendor",
                &["/etc/pam.d/login", "/etc/pam.d/login.rpmsave"]
            ),
            w2(
                "pkg/pending-merge",
                &["/etc/cyrus.conf.rpmsave", "/etc/cyrus.conf"]
            ),
            w2(
                "systemd/unit-disabled",
                &[
                    &format!("{WANTS}/cyrus.service"),
                    "/usr/lib/systemd/system/cyrus.service"
                ]
            ),
            // merges merely waiting come after the damage
            w2("pkg/pending-merge", &["/etc/pam.d/common-auth.rpmnew"]),
            w2("pkg/pending-merge", &["/etc/postfix/main.cf.rpmnew"]),
        ],
        "{v:#}"
    );
    // the PAM files the packages moved unedited, and the release file
    // the package made a link, are information
    for p in ["/etc/pam.d/other", "/etc/pam.d/sshd", "/etc/os-release"] {
        assert_eq!(only(&v, p)["severity"], "info", "{p}: {v:#}");
    }

    // the text the admin reads
    let (code, text, _) = guard_text(&w, &["check"]);
    assert_eq!(code, 2);
    assert_eq!(
        text.lines().next().unwrap(),
        "3 critical: mail logins (imap, smtp) will fail; master lost capabilities",
        "{text}"
    );

    // the plan marks what the packages dropped; the admin's files not
    let (code, plan) = guard(&w.root, &w.store, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{plan:#}");
    let dropped: Vec<(&str, &Value)> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (s(&i["path"]), &i["dropped"]))
        .collect();
    let by =
        |p: &str, from: &str, to: &str| json!({"by": [{"package": p, "from": from, "to": to}]});
    assert_eq!(
        dropped,
        [
            ("/etc/pam.d/imap", &Value::Null),
            (
                "/etc/pam.d/login",
                &by("pam", "1.3.0-42.3", "1.3.0-lp150.1")
            ),
            (
                "/etc/pam.d/other",
                &by("pam", "1.3.0-42.3", "1.3.0-lp150.1")
            ),
            ("/etc/pam.d/smtp", &Value::Null),
            (
                "/etc/pam.d/sshd",
                &by("openssh", "7.2p2-42.3", "7.6p1-lp150.1")
            ),
            (
                "/usr/lib/systemd/system/cyrus.service",
                &by("cyrus-imapd", "2.4.18-42.3", "3.0.8-lp150.1")
            ),
        ],
        "{plan:#}"
    );

    let (code, out) = guard(&w.root, &w.store, &["restore", "--vanished"]);
    assert_eq!(code, 0, "{out:#}");
    let (code, out) = guard(&w.root, &w.store, &["restore", "--caps"]);
    assert_eq!(code, 0, "{out:#}");
    for (p, was) in ["/etc/pam.d/imap", "/etc/pam.d/smtp"].iter().zip(&before) {
        assert_eq!(&state(&w.at(p)), was, "{p} restored byte-exact");
    }
    assert!(
        getcap(&w.at("/usr/lib/cyrus/bin/master")).ends_with("cap_net_bind_service=ep"),
        "capability back on the new binary"
    );
    assert!(
        std::fs::read_to_string(w.at("/usr/lib/cyrus/bin/master"))
            .unwrap()
            .contains("3.0.8"),
        "the new binary kept"
    );

    let (code, v) = check(&w);
    assert!(
        !findings(&v).iter().any(|f| f["severity"] == "critical"),
        "{v:#}"
    );
    assert_eq!(code, 1, "{v:#}");
}

// ------------------------------------------------------- one defect each

/// Leap 15's pam moves `login` and `other` to /usr/lib/pam.d. `other`
/// the admin never touched, but the new version changed it: rpm set no
/// edited copy aside, so nothing of the admin's went, and that is
/// information, not "losing the changes made to the /etc copy". `login`
/// the admin edited: rpm kept it as `login.rpmsave`, and that is one
/// warning for both paths (not a `pkg/pending-merge` besides), with what
/// the restore would change.
#[test]
fn pam_files_rpm_moved_to_vendor_are_info_unless_edited_then_one_warning() {
    let w = world();
    install(&w, &[pam(false)]);
    write(
        &w.at("/etc/pam.d/login"),
        &format!("{LOGIN}session optional pam_mail.so standard\n"),
    );
    snapshot(&w);
    upgrade(&w, &[pam(true)]);
    assert!(w.at("/etc/pam.d/login.rpmsave").exists());
    assert!(!w.at("/etc/pam.d/other.rpmsave").exists());

    let (code, v) = check(&w);
    let other = only(&v, "/etc/pam.d/other");
    assert_eq!(other["id"], "pam/moved-to-vendor", "{v:#}");
    assert_eq!(other["severity"], "info", "{v:#}");
    assert!(
        s(&other["message"]).contains("which the new version changed"),
        "{v:#}"
    );

    let login = only(&v, "/etc/pam.d/login");
    assert_eq!(
        findings_for(&v, "/etc/pam.d/login.rpmsave").len(),
        1,
        "{v:#}"
    );
    assert_eq!(login["id"], "pam/moved-to-vendor", "{v:#}");
    assert_eq!(login["severity"], "warning", "{v:#}");
    assert_eq!(
        login["paths"],
        json!(["/etc/pam.d/login", "/etc/pam.d/login.rpmsave"])
    );
    assert_eq!(
        login["fix"],
        "guard restore /etc/pam.d/login (a file in /etc/pam.d overrides \
         /usr/lib/pam.d/login), then remove /etc/pam.d/login.rpmsave"
    );
    assert!(
        s(&login["detail"]).contains("+session optional pam_mail.so standard"),
        "{v:#}"
    );
    assert_eq!(code, 1, "{v:#}");
}

/// Leap 15's openSUSE-release ships /etc/os-release as a link to
/// /usr/lib/os-release. The package changed what the path is: one
/// `file/modified` at info, like any content the package changed, not a
/// `file/meta-changed` warning whose fix would put the 42.3 file back.
#[test]
fn a_file_the_new_version_ships_as_a_link_is_the_packages_change() {
    let w = world();
    install(&w, &[release(false)]);
    snapshot(&w);
    upgrade(&w, &[release(true)]);
    let (code, v) = check(&w);
    let f = only(&v, "/etc/os-release");
    assert_eq!(f["id"], "file/modified", "{v:#}");
    assert_eq!(f["severity"], "info", "{v:#}");
    assert_eq!(
        f["message"],
        "/etc/os-release was a file, now a symlink to ../usr/lib/os-release \
         (the package changed it: openSUSE-release 42.3-1 -> 15.0-lp150.1)"
    );
    assert_eq!(code, 0, "{v:#}");
}

/// cyrus-imapd 3.0 ships `cyrus-imapd.service` instead of
/// `cyrus.service`. The admin's enablement link still names the old unit,
/// so systemd starts no IMAP server at boot, and nothing enables the new
/// one. That is the finding (for the link and the vanished unit file), not
/// a `file/vanished` whose fix would restore the old unit; a unit file
/// deleted while its package still ships it keeps `guard restore`.
#[test]
fn a_unit_the_package_renamed_still_enabled_by_its_old_name_will_not_start() {
    let w = world();
    install(&w, &[cyrus_imapd(false), postfix(false)]);
    std::fs::create_dir_all(w.at(WANTS)).unwrap();
    for u in ["cyrus", "postfix"] {
        std::os::unix::fs::symlink(
            format!("/usr/lib/systemd/system/{u}.service"),
            w.at(&format!("{WANTS}/{u}.service")),
        )
        .unwrap();
    }
    snapshot(&w);
    upgrade(&w, &[cyrus_imapd(true), postfix(true)]);
    std::fs::remove_file(w.at("/usr/lib/systemd/system/postfix.service")).unwrap();

    let (code, v) = check(&w);
    let link = format!("{WANTS}/cyrus.service");
    let f = only(&v, "/usr/lib/systemd/system/cyrus.service");
    assert_eq!(f["id"], "systemd/unit-disabled", "{v:#}");
    assert_eq!(f["severity"], "warning", "{v:#}");
    assert_eq!(
        f["paths"],
        json!([link, "/usr/lib/systemd/system/cyrus.service"])
    );
    let msg = s(&f["message"]);
    assert!(
        msg.starts_with("cyrus.service is no longer started"),
        "{msg}"
    );
    assert!(
        msg.contains("cyrus-imapd 2.4.18-42.3 -> 3.0.8-lp150.1 no longer ships it"),
        "{msg}"
    );
    assert!(
        msg.contains("cyrus-imapd.service came in its place"),
        "{msg}"
    );
    assert!(msg.ends_with(&format!("the link {link} dangles")), "{msg}");
    assert_eq!(
        f["fix"],
        format!("systemctl enable cyrus-imapd.service, then remove the dangling link: rm {link}")
    );
    // postfix 3.3 still ships its unit: someone deleted it
    let f = only(&v, "/usr/lib/systemd/system/postfix.service");
    assert_eq!(f["id"], "systemd/unit-disabled", "{v:#}");
    assert!(
        s(&f["message"]).contains("(owned by postfix, which still ships it)"),
        "{v:#}"
    );
    assert!(!s(&f["message"]).contains("no longer ships"), "{v:#}");
    assert_eq!(
        f["fix"],
        "guard restore /usr/lib/systemd/system/postfix.service; systemctl daemon-reload"
    );
    assert_eq!(code, 1, "{v:#}");

    // the fix, as systemctl enable would do it: nothing left to say
    std::fs::remove_file(w.at(&link)).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/cyrus-imapd.service",
        w.at(&format!("{WANTS}/cyrus-imapd.service")),
    )
    .unwrap();
    let (_, v) = check(&w);
    assert!(
        findings_for(&v, "/usr/lib/systemd/system/cyrus.service")
            .iter()
            .all(|f| f["id"] != "systemd/unit-disabled"),
        "{v:#}"
    );
}

/// cyrus.conf is a plain `%config`: rpm replaces the admin's edited one
/// with the new version and keeps theirs as `.rpmsave`. The IMAPS service
/// the admin added is gone from what the master reads: one finding for
/// both paths that says so, not "keeps the old version" plus an info
/// "the package changed it".
#[test]
fn an_edited_config_rpm_replaced_says_the_edits_no_longer_apply() {
    let w = world();
    install(&w, &[cyrus_imapd(false)]);
    write(
        &w.at("/etc/cyrus.conf"),
        &CYRUS_CONF.replace(
            "}\n",
            "  imaps cmd=\"imapd -s\" listen=\"imaps\" prefork=0\n}\n",
        ),
    );
    snapshot(&w);
    upgrade(&w, &[cyrus_imapd(true)]);
    let (code, v) = check(&w);
    let f = only(&v, "/etc/cyrus.conf");
    assert_eq!(f["id"], "pkg/pending-merge", "{v:#}");
    assert_eq!(f["severity"], "warning", "{v:#}");
    assert_eq!(
        f["paths"],
        json!(["/etc/cyrus.conf.rpmsave", "/etc/cyrus.conf"])
    );
    assert_eq!(
        f["message"],
        "/etc/cyrus.conf was replaced by the package's version; the one it replaced \
         is kept as /etc/cyrus.conf.rpmsave: the changes made to it no longer apply"
    );
    assert!(s(&f["detail"]).contains("-  imaps cmd="), "{v:#}");
    assert_eq!(code, 1, "{v:#}");
}

/// `guard restore --pam` (and the leap-upgrade walk's restore step, which
/// uses it) puts back the admin's own vanished PAM files and nothing else:
/// not the package files the new release moved to /usr/lib/pam.d and
/// /usr/etc/pam.d, which, back in /etc, would hide the vendor's newer ones
/// (`--vanished --yes` takes those too), nor anything outside PAM.
#[test]
fn restore_pam_brings_back_only_the_admins_pam_files() {
    let w = world();
    install(&w, &leap(false));
    admins_42_3(&w);
    snapshot(&w);
    upgrade(&w, &leap(true));
    assert!(!w.at("/etc/pam.d/imap").exists());
    assert!(!w.at("/etc/pam.d/other").exists(), "the new pam moved it");

    let (code, plan, err) = guard_text(&w, &["restore", "--pam", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let items: Vec<&str> = plan
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .collect();
    assert_eq!(items, ["/etc/pam.d/imap", "/etc/pam.d/smtp"], "{plan}");

    let (code, out, err) = guard_text(&w, &["--yes", "restore", "--pam"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(w.at("/etc/pam.d/imap")).unwrap(),
        IMAP
    );
    assert_eq!(
        std::fs::read_to_string(w.at("/etc/pam.d/smtp")).unwrap(),
        SMTP
    );
    for p in ["/etc/pam.d/other", "/etc/pam.d/login", "/etc/pam.d/sshd"] {
        assert!(!w.at(p).exists(), "{p} restored over the vendor's: {out}");
    }
    assert!(!w.at("/usr/lib/systemd/system/cyrus.service").exists());
    let (_, v) = check(&w);
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["id"] != "pam/service-vanished"),
        "{v:#}"
    );
}
