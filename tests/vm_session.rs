//! A real `libvirtd` on `qemu:///session`, run by the test as an
//! unprivileged user it creates: a dir pool with a raw and a qcow2 disk of
//! known data; `guard-vm clone` must create the copies as pool volumes,
//! define the clone in libvirt, keep the data equal and the holes holes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

struct Session {
    user: String,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl Session {
    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `argv` as the session user with a clean environment.
    fn cmd(&self, argv: &[&str]) -> Command {
        #[allow(clippy::disallowed_methods)]
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.user,
            "--regid",
            &self.user,
            "--clear-groups",
            "--",
        ])
        .arg("env")
        .arg("-i")
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(format!("HOME={}", self.dir.path().join("home").display()))
        .arg(format!("XDG_RUNTIME_DIR={}", self.run_dir().display()))
        .arg(format!(
            "XDG_CONFIG_HOME={}",
            self.dir.path().join("home/.config").display()
        ))
        .arg(format!(
            "XDG_CACHE_HOME={}",
            self.dir.path().join("home/.cache").display()
        ))
        .args(argv);
        c
    }

    fn ok(&self, argv: &[&str]) -> Output {
        let out = self.cmd(argv).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn virsh(&self, args: &[&str]) -> String {
        let mut a = vec!["virsh", "-c", "qemu:///session"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&self.ok(&a).stdout).into_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn start() -> Session {
    // The daemon runs as `nobody` (uid 65534) with its home, config, cache
    // and runtime dirs in the test's temp dir: no account is added to the
    // host's /etc/passwd.
    let user = "65534".to_string();
    let dir = tempfile::Builder::new()
        .prefix("guard-vm-session")
        .tempdir_in("/tmp")
        .unwrap();
    let mut s = Session {
        user,
        dir,
        daemon: None,
    };
    for d in ["home", "run", "pool"] {
        fs::create_dir(s.dir.path().join(d)).unwrap();
    }
    fs::set_permissions(
        s.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(
        s.run_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    #[allow(clippy::disallowed_methods)]
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{0}:{0}", s.user))
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let log = fs::File::create(s.dir.path().join("libvirtd.log")).unwrap();
    s.daemon = Some(
        s.cmd(&["libvirtd", "--timeout", "120"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("libvirtd (package libvirt-daemon)"),
    );
    let sock = s.run_dir().join("libvirt/libvirt-sock");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        sock.exists(),
        "session libvirtd did not start: {}",
        fs::read_to_string(s.dir.path().join("libvirtd.log")).unwrap_or_default()
    );
    s
}

fn alloc(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn clone_in_a_dir_pool_of_a_real_libvirtd() {
    let s = start();
    let pool = s.dir.path().join("pool");
    let ps = pool.to_str().unwrap();
    s.virsh(&["pool-define-as", "p", "dir", "--target", ps]);
    s.virsh(&["pool-start", "p"]);
    let raw = format!("{ps}/g.raw");
    let qcow = format!("{ps}/g.qcow2");
    s.ok(&["truncate", "-s", "64M", &raw]);
    s.ok(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={raw}"),
        "bs=1M",
        "count=2",
        "seek=5",
        "conv=notrunc",
        "status=none",
    ]);
    s.ok(&["qemu-img", "create", "-q", "-f", "qcow2", &qcow, "64M"]);
    s.ok(&["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 1M", &qcow]);
    s.virsh(&["pool-refresh", "p"]);
    let xml = format!(
        "<domain type='qemu'><name>g</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{raw}'/><target dev='vda' bus='virtio'/></disk>\
         <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='p' volume='g.qcow2'/><target dev='vdb' bus='virtio'/></disk>\
         <interface type='user'><mac address='52:54:00:01:02:03'/></interface>\
         </devices></domain>"
    );
    let xf = s.dir.path().join("g.xml");
    fs::write(&xf, xml).unwrap();
    s.virsh(&["define", xf.to_str().unwrap()]);

    let out = s.ok(&[
        env!("CARGO_BIN_EXE_guard-vm"),
        "--json",
        "clone",
        "g",
        "--connect",
        "qemu:///session",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "g-clone");
    // defined in libvirt, shut off, its disks pool volumes libvirt knows
    let list = s.virsh(&["list", "--all", "--name"]);
    assert!(list.lines().any(|l| l.trim() == "g-clone"), "{list}");
    let vols = s.virsh(&["vol-list", "p"]);
    assert!(
        vols.contains("g-clone.raw") && vols.contains("g-clone.qcow2"),
        "{vols}"
    );
    let vx = s.virsh(&["vol-dumpxml", "--pool", "p", "g-clone.qcow2"]);
    assert!(vx.contains("<format type='qcow2'/>"), "{vx}");
    let dx = s.virsh(&["dumpxml", "g-clone"]);
    assert!(
        dx.contains(&format!("<source file='{ps}/g-clone.raw'/>")),
        "{dx}"
    );
    assert!(
        dx.contains("<source pool='p' volume='g-clone.qcow2'/>"),
        "{dx}"
    );
    assert!(!dx.contains("52:54:00:01:02:03"), "{dx}");
    // data equal, holes kept
    for (a, b) in [("g.raw", "g-clone.raw"), ("g.qcow2", "g-clone.qcow2")] {
        let (a, b) = (pool.join(a), pool.join(b));
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{} differs",
            b.display()
        );
        assert!(
            alloc(&b) <= alloc(&a),
            "{}: {} > {}",
            b.display(),
            alloc(&b),
            alloc(&a)
        );
    }
    assert!(alloc(&pool.join("g-clone.raw")) < 8 << 20);
    s.ok(&["qemu-img", "check", "-q", &format!("{ps}/g-clone.qcow2")]);
    // a clone libvirt refuses to define (a backslash in the name) after its
    // volumes were made: the volumes go again, nothing is defined
    let before = s.virsh(&["vol-list", "p"]);
    let out = s
        .cmd(&[
            env!("CARGO_BIN_EXE_guard-vm"),
            "--json",
            "clone",
            "g",
            "--name",
            "bad\nname",
            "--connect",
            "qemu:///session",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back: volume"), "{err}");
    assert!(err.contains("defining bad"), "{err}");
    assert_eq!(s.virsh(&["vol-list", "p"]), before);
    assert!(!s.virsh(&["list", "--all", "--name"]).contains("bad"));
    // a second clone gets the next name; the first stays
    let out = s.ok(&[
        env!("CARGO_BIN_EXE_guard-vm"),
        "--json",
        "clone",
        "g",
        "--connect",
        "qemu:///session",
        "--dry-run",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "g-clone1");
}

#[test]
fn an_explicit_file_target_for_a_pool_disk_is_a_plain_file() {
    let s = start();
    let pool = s.dir.path().join("pool");
    let ps = pool.to_str().unwrap();
    s.virsh(&["pool-define-as", "p", "dir", "--target", ps]);
    s.virsh(&["pool-start", "p"]);
    let raw = format!("{ps}/g.raw");
    s.ok(&["truncate", "-s", "16M", &raw]);
    s.ok(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={raw}"),
        "bs=1M",
        "count=1",
        "seek=3",
        "conv=notrunc",
        "status=none",
    ]);
    s.virsh(&["pool-refresh", "p"]);
    let xml = format!(
        "<domain type='qemu'><name>g</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{raw}'/><target dev='vda' bus='virtio'/></disk>\
         </devices></domain>"
    );
    let xf = s.dir.path().join("g.xml");
    fs::write(&xf, xml).unwrap();
    s.virsh(&["define", xf.to_str().unwrap()]);
    let before = s.virsh(&["vol-list", "p"]);
    // a file outside the pool: copied there, no volume made in the pool
    let out_dir = s.dir.path().join("home");
    let target = out_dir.join("elsewhere.raw");
    let out = s
        .cmd(&[
            env!("CARGO_BIN_EXE_guard-vm"),
            "--json",
            "clone",
            "g",
            "--disk-target",
            &format!("vda={}", target.display()),
            "--connect",
            "qemu:///session",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        fs::read(&target).unwrap() == fs::read(&raw).unwrap(),
        "copy differs"
    );
    assert_eq!(
        s.virsh(&["vol-list", "p"]),
        before,
        "stray volume in the pool"
    );
    let dx = s.virsh(&["dumpxml", "g-clone"]);
    assert!(
        dx.contains(&format!("<source file='{}'/>", target.display())),
        "{dx}"
    );
}
