//! `guard vm clone` against libvirt's in-process test driver with our own
//! node file: every XML rewrite, the collision and state refusals, the
//! verified sparse copy, rollback on ENOSPC, and the block-device rules on
//! real loop devices.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use guard::vm::xml;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    uri: String,
}

fn env_with(webdisk: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let web = webdisk
        .map(str::to_string)
        .unwrap_or(format!("{d}/web.img"));
    let node = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vm-node.xml"
    ))
    .unwrap()
    .replace("@WEBDISK@", &web)
    .replace("@DIR@", &d);
    fs::write(dir.path().join("node.xml"), node).unwrap();
    // 64 MiB sparse disk with 1 MiB of known data at 10 MiB and a block at the end
    let img = fs::File::create(dir.path().join("mail.img")).unwrap();
    img.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    img.write_all_at(&data, 10 << 20).unwrap();
    img.write_all_at(b"tail", (64 << 20) - 4).unwrap();
    fs::write(dir.path().join("install.iso"), b"iso").unwrap();
    fs::write(dir.path().join("mail_VARS.fd"), b"nvram vars").unwrap();
    let uri = format!("test://{d}/node.xml");
    Env { dir, uri }
}

fn guard(e: &Env, args: &[&str]) -> (i32, Value, String) {
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(e.dir.path())
        .arg("--store")
        .arg(e.dir.path().join("store"))
        .arg("--json")
        .args(["vm", "clone"])
        .args(args)
        .args(["--connect", &e.uri])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn p(e: &Env, name: &str) -> PathBuf {
    e.dir.path().join(name)
}

#[test]
fn dry_run_rewrites_everything_a_clone_must_change() {
    let e = env_with(None);
    let (code, v, err) = guard(&e, &["mail", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    // mail-clone exists, so the next free default name
    assert_eq!(v["name"], "mail-clone1");
    let x = v["xml"].as_str().unwrap();
    let d = xml::parse(x).unwrap();
    assert_eq!(d.name, "mail-clone1");
    assert_ne!(d.uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
    assert_eq!(d.uuid, v["uuid"].as_str().unwrap());
    // sysinfo system UUID follows the domain UUID
    assert!(
        x.contains(&format!("<entry name='uuid'>{}</entry>", d.uuid)),
        "{x}"
    );
    assert!(!x.contains("6695eb01"), "old uuid left in {x}");
    // new MACs, unique, qemu prefix, none of any defined guest's
    assert_eq!(d.nics.len(), 2);
    let macs: Vec<String> = d.nics.iter().map(|n| n.mac.clone().unwrap()).collect();
    assert_ne!(macs[0], macs[1]);
    for m in &macs {
        assert!(m.starts_with("52:54:00:"), "{m}");
        assert!(![
            "52:54:00:11:22:33",
            "52:54:00:11:22:34",
            "52:54:00:aa:bb:cc"
        ]
        .contains(&m.as_str()));
    }
    // host tap device cleared, graphics on autoport without fixed port
    assert!(!x.contains("vnet7"), "{x}");
    assert!(!x.contains("5907"), "{x}");
    assert!(
        x.contains("autoport=\"yes\"") || x.contains("autoport='yes'"),
        "{x}"
    );
    let dd = e.dir.path().to_str().unwrap();
    // agent socket, serial log and nvram renamed
    assert!(x.contains(&format!("{dd}/mail-clone1.agent")), "{x}");
    assert!(x.contains(&format!("{dd}/mail-clone1-serial.log")), "{x}");
    assert!(
        x.contains(&format!("<nvram>{dd}/mail-clone1_VARS.fd</nvram>")),
        "{x}"
    );
    // vda copied next to its source with the new name, cdrom shared
    assert_eq!(
        d.disks[0].path.as_deref(),
        Some(format!("{dd}/mail-clone1.img").as_str())
    );
    assert_eq!(
        d.disks[1].path.as_deref(),
        Some(format!("{dd}/install.iso").as_str())
    );
    assert_eq!(v["disks"][0]["action"], "copy");
    assert_eq!(v["disks"][1]["action"], "share");
    // a dry run changes nothing
    assert!(!p(&e, "mail-clone1.img").exists());
    assert!(!p(&e, "mail-clone1_VARS.fd").exists());
}

#[test]
fn clone_copies_verified_keeps_holes_and_copies_nvram() {
    let e = env_with(None);
    let (code, v, err) = guard(&e, &["mail", "--name", "mail-old"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["name"], "mail-old");
    let src = fs::read(p(&e, "mail.img")).unwrap();
    let dst = fs::read(p(&e, "mail-old.img")).unwrap();
    assert!(src == dst, "copied data differs");
    let (ms, md) = (
        fs::metadata(p(&e, "mail.img")).unwrap(),
        fs::metadata(p(&e, "mail-old.img")).unwrap(),
    );
    assert!(
        md.blocks() <= ms.blocks(),
        "holes not kept: {} > {}",
        md.blocks(),
        ms.blocks()
    );
    assert!(md.blocks() * 512 < 8 << 20, "copy is not sparse");
    let c = &v["copies"]["vda"];
    assert_eq!(c["source_blake3"], c["target_blake3"]);
    assert_eq!(c["source_blake3"].as_str().unwrap().len(), 64);
    // only the data was read and written, not the 64 MiB of holes
    assert_eq!(c["size"], 64u64 << 20);
    assert!(c["data_bytes"].as_u64().unwrap() < 8 << 20, "{c}");
    // the time spent waiting for the disk is part of the copy's time
    let (t, w) = (
        c["seconds"].as_f64().unwrap(),
        c["sync_seconds"].as_f64().unwrap(),
    );
    assert!(w >= 0.0 && w <= t, "{c}");
    assert_eq!(fs::read(p(&e, "mail-old_VARS.fd")).unwrap(), b"nvram vars");
}

#[test]
fn collisions_and_running_source_are_refused() {
    let e = env_with(None);
    let (code, v, _) = guard(&e, &["mail", "--name", "web"]);
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("already exists"));
    // web runs (no runstate 5): refused without a terminal, nothing written
    let (code, v, _) = guard(&e, &["web", "--name", "web2"]);
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("running"), "{v}");
    assert!(!p(&e, "web2-web.img").exists());
    // shared disks cannot be sent anywhere; unknown targets are refused
    let (code, _, _) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("sda={}", p(&e, "x.iso").display()),
        ],
    );
    assert_eq!(code, 3);
    let (code, v, _) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("vdz={}", p(&e, "x.img").display()),
        ],
    );
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("vdz"));
    // an existing target file is never overwritten
    fs::write(p(&e, "taken.img"), b"keep").unwrap();
    let (code, _, _) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("vda={}", p(&e, "taken.img").display()),
        ],
    );
    assert_eq!(code, 3);
    assert_eq!(fs::read(p(&e, "taken.img")).unwrap(), b"keep");
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        #[allow(clippy::disallowed_methods)]
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_target_rolls_everything_back() {
    let e = env_with(None);
    let mnt = p(&e, "small");
    fs::create_dir(&mnt).unwrap();
    #[allow(clippy::disallowed_methods)]
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root");
    let _m = Mount(mnt.clone());
    let target = mnt.join("vda.img");
    let (code, v, err) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("vda={}", target.display()),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        v["error"].as_str().unwrap().contains("copying disk vda"),
        "{v}"
    );
    assert!(!target.exists(), "stray copy left behind");
    assert!(!p(&e, "mail-clone1_VARS.fd").exists());
    assert!(err.contains("rolled back"), "{err}");
}

struct Loop(String);
impl Drop for Loop {
    fn drop(&mut self) {
        #[allow(clippy::disallowed_methods)]
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn loopdev(backing: &Path, size: u64) -> Loop {
    let f = fs::File::create(backing).unwrap();
    f.set_len(size).unwrap();
    #[allow(clippy::disallowed_methods)]
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(backing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn block_device_targets_follow_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let used = loopdev(&tmp.path().join("used"), 64 << 20);
    let e = env_with(Some(&used.0));
    let small = loopdev(&p(&e, "small.bin"), 1 << 20);
    let withfs = loopdev(&p(&e, "fs.bin"), 64 << 20);
    #[allow(clippy::disallowed_methods)]
    let mk = Command::new("mkfs.ext4")
        .args(["-q", &withfs.0])
        .status()
        .unwrap();
    assert!(mk.success());
    let blank = loopdev(&p(&e, "blank.bin"), 80 << 20);
    // make the blank one dirty where the source has holes: the copy must zero it
    fs::write(p(&e, "junk"), vec![0xffu8; 1 << 20]).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&blank.0).unwrap();
        f.write_all_at(&[0xaa; 4096], 1 << 20).unwrap();
    }
    let t = |dev: &str| format!("vda={dev}");
    let (code, v, _) = guard(&e, &["mail", "--disk-target", &t(&small.0)]);
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("too small"), "{v}");
    let (code, v, _) = guard(&e, &["mail", "--disk-target", &t(&used.0)]);
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("guest web"), "{v}");
    let (code, v, _) = guard(&e, &["mail", "--disk-target", &t(&withfs.0)]);
    assert_eq!(code, 3);
    assert!(v["error"].as_str().unwrap().contains("ext4"), "{v}");
    // the filesystem is still there
    #[allow(clippy::disallowed_methods)]
    let b = Command::new("blkid")
        .args(["-p", &withfs.0])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&b.stdout).contains("ext4"));
    let (code, v, err) = guard(&e, &["mail", "--disk-target", &t(&blank.0)]);
    assert_eq!(code, 0, "{err}");
    assert!(v["xml"]
        .as_str()
        .unwrap()
        .contains(&format!("dev=\"{}\"", blank.0)));
    let src = fs::read(p(&e, "mail.img")).unwrap();
    let dev = fs::read(&blank.0).unwrap();
    assert!(
        dev[..src.len()] == src[..],
        "device data differs from the source"
    );
}

fn read_at(dev: &str, off: u64, n: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; n];
    fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

fn write_at(dev: &str, off: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.write_all_at(data, off).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn another_guests_disk_is_refused_under_any_name() {
    let tmp = tempfile::tempdir().unwrap();
    // web's disk is blank: no signature would make guard ask
    let used = loopdev(&tmp.path().join("used"), 80 << 20);
    write_at(&used.0, 70 << 20, b"web data");
    // web names its disk by a link, the target is the device's own name
    let link = tmp.path().join("web-disk");
    std::os::unix::fs::symlink(&used.0, &link).unwrap();
    let e = env_with(Some(link.to_str().unwrap()));
    let (code, v, err) = guard(&e, &["mail", "--disk-target", &format!("vda={}", used.0)]);
    assert_eq!(code, 3, "{err}");
    assert!(v["error"].as_str().unwrap().contains("guest web"), "{v}");
    assert_eq!(read_at(&used.0, 70 << 20, 8), b"web data");
    assert_eq!(read_at(&used.0, 10 << 20, 4), [0; 4]);
    // and the other way round
    let e = env_with(Some(&used.0));
    let alias = p(&e, "alias");
    std::os::unix::fs::symlink(&used.0, &alias).unwrap();
    let (code, v, err) = guard(
        &e,
        &["mail", "--disk-target", &format!("vda={}", alias.display())],
    );
    assert_eq!(code, 3, "{err}");
    assert!(v["error"].as_str().unwrap().contains("guest web"), "{v}");
    assert_eq!(read_at(&used.0, 70 << 20, 8), b"web data");
}

#[test]
fn one_device_under_two_names_or_held_by_the_system_is_refused() {
    let e = env_with(None);
    // mail gets a second disk, vdb
    let node = fs::read_to_string(p(&e, "node.xml")).unwrap().replacen(
        "<target dev='vda' bus='virtio'/>\n      </disk>",
        &format!(
            "<target dev='vda' bus='virtio'/>\n      </disk>\n      <disk type='file' device='disk'><source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
            p(&e, "mail2.img").display()
        ),
        1,
    );
    assert!(node.contains("vdb"));
    fs::write(p(&e, "node.xml"), node).unwrap();
    fs::write(p(&e, "mail2.img"), vec![7u8; 1 << 20]).unwrap();
    let blank = loopdev(&p(&e, "blank.bin"), 80 << 20);
    write_at(&blank.0, 70 << 20, b"untouched");
    let alias = p(&e, "alias");
    std::os::unix::fs::symlink(&blank.0, &alias).unwrap();
    let (code, v, err) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("vda={}", blank.0),
            "--disk-target",
            &format!("vdb={}", alias.display()),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(v["error"].as_str().unwrap().contains("same device"), "{v}");
    assert_eq!(read_at(&blank.0, 70 << 20, 9), b"untouched");
    assert_eq!(read_at(&blank.0, 10 << 20, 4), [0; 4]);
    // held exclusively (as a mount, LVM, md or dm-crypt holds a device),
    // though blank: refused, not written
    let held = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(&blank.0)
            .unwrap()
    };
    let (code, v, err) = guard(
        &e,
        &[
            "mail",
            "--disk-target",
            &format!("vda={}", blank.0),
            "--disk-target",
            &format!("vdb={}", p(&e, "vdb.img").display()),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("in use by the system"),
        "{v}"
    );
    assert_eq!(read_at(&blank.0, 10 << 20, 4), [0; 4]);
    drop(held);
}

#[test]
fn a_bigger_device_keeps_no_old_data_past_the_disks_end() {
    let e = env_with(None);
    // 64 MiB disk onto an 80 MiB device that held data at 70 MiB
    let dev = loopdev(&p(&e, "dev.bin"), 80 << 20);
    write_at(&dev.0, 70 << 20, b"old secret");
    let (code, _, err) = guard(&e, &["mail", "--disk-target", &format!("vda={}", dev.0)]);
    assert_eq!(code, 0, "{err}");
    let tail = read_at(&dev.0, 64 << 20, 16 << 20);
    assert!(
        tail.iter().all(|&b| b == 0),
        "old data past the end is readable"
    );
    assert_eq!(read_at(&dev.0, (64 << 20) - 4, 4), b"tail");
}

#[test]
fn a_signal_during_the_copy_rolls_the_clone_back() {
    let e = env_with(None);
    // 768 MiB of real data: the copy takes long enough to be interrupted
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(fs::File::create(p(&e, "mail.img")).unwrap());
        let chunk: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8 | 1).collect();
        for _ in 0..768 {
            f.write_all(&chunk).unwrap();
        }
    }
    for (sig, name) in [(libc::SIGINT, "big"), (libc::SIGTERM, "big2")] {
        #[allow(clippy::disallowed_methods)]
        let child = Command::new(env!("CARGO_BIN_EXE_guard-vm"))
            .args([
                "--json",
                "clone",
                "mail",
                "--name",
                name,
                "--connect",
                &e.uri,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let target = p(&e, &format!("{name}.img"));
        // signal once the copy has begun writing
        let t0 = std::time::Instant::now();
        while fs::metadata(&target).map(|m| m.blocks()).unwrap_or(0) == 0 {
            assert!(t0.elapsed().as_secs() < 60, "the copy never started");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // SAFETY: signalling the child this test started
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(out.status.code().is_some(), "killed by the signal: {err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(err.contains("rolled back"), "{err}");
        assert!(!target.exists(), "partial copy left behind");
        assert!(!p(&e, &format!("{name}_VARS.fd")).exists());
        // nothing was defined: no "cloned" document on stdout
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(v["copies"].is_null() && v["error"].is_string(), "{v}");
    }
}

#[test]
fn a_new_device_volume_is_copied_as_a_device() {
    // A new LV of a logical (or zfs) pool is a device with no st_blocks,
    // like an empty file, yet it keeps old data and cannot be resized.
    let tmp = tempfile::tempdir().unwrap();
    let dev = loopdev(&tmp.path().join("lv"), 16 << 20);
    write_at(&dev.0, 4 << 20, b"old lv data");
    let src_path = tmp.path().join("src.img");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&src_path).unwrap();
        f.set_len(12 << 20).unwrap();
        f.write_all_at(b"disk data", 1 << 20).unwrap();
    }
    let dst = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev.0)
        .unwrap();
    let fresh = guard::vm::copy::is_fresh_file(&dst).unwrap();
    assert!(!fresh);
    let src = fs::File::open(&src_path).unwrap();
    let c = guard::vm::copy::copy_verified(&src, &dst, 12 << 20, fresh, &guard::ui::NoProgress)
        .unwrap();
    c.verified("lv").unwrap();
    assert_eq!(read_at(&dev.0, 1 << 20, 9), b"disk data");
    assert_eq!(read_at(&dev.0, 4 << 20, 11), [0; 11], "old data in a hole");
    // a new, empty file is fresh: its holes stay holes
    let f = fs::File::create(tmp.path().join("new.img")).unwrap();
    assert!(guard::vm::copy::is_fresh_file(&f).unwrap());
}

#[test]
fn a_qcow2_disk_needs_a_device_of_its_virtual_size() {
    let e = env_with(None);
    // mail's disk becomes a 1 GiB qcow2 whose file is a few hundred KiB
    fs::remove_file(p(&e, "mail.img")).unwrap();
    run_ok(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        p(&e, "mail.img").to_str().unwrap(),
        "1G",
    ]);
    let node = fs::read_to_string(p(&e, "node.xml")).unwrap().replacen(
        "<driver name='qemu' type='raw'/>",
        "<driver name='qemu' type='qcow2'/>",
        1,
    );
    fs::write(p(&e, "node.xml"), node).unwrap();
    assert!(fs::metadata(p(&e, "mail.img")).unwrap().len() < 1 << 20);
    let dev = loopdev(&p(&e, "dev.bin"), 8 << 20);
    let (code, v, err) = guard(&e, &["mail", "--disk-target", &format!("vda={}", dev.0)]);
    assert_eq!(code, 3, "{err}");
    assert!(v["error"].as_str().unwrap().contains("too small"), "{v}");
    assert_eq!(read_at(&dev.0, 0, 4), [0; 4], "the device was written");
}

fn run_ok(argv: &[&str]) {
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nvram_absent_is_left_to_libvirt_and_a_taken_one_refused_first() {
    let e = env_with(None);
    // a UEFI guest that never started has no nvram file yet
    fs::remove_file(p(&e, "mail_VARS.fd")).unwrap();
    let (code, v, err) = guard(&e, &["mail", "--name", "fresh"]);
    assert_eq!(code, 0, "{err}");
    let dd = e.dir.path().to_str().unwrap();
    assert!(
        v["xml"]
            .as_str()
            .unwrap()
            .contains(&format!("<nvram>{dd}/fresh_VARS.fd</nvram>")),
        "{v}"
    );
    assert!(!p(&e, "fresh_VARS.fd").exists());
    assert!(p(&e, "fresh.img").exists());
    // an nvram file already at the new path: refused before any disk copy
    fs::write(p(&e, "mail_VARS.fd"), b"nvram vars").unwrap();
    fs::write(p(&e, "taken_VARS.fd"), b"keep").unwrap();
    let (code, v, err) = guard(&e, &["mail", "--name", "taken"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        v["error"].as_str().unwrap().contains("taken_VARS.fd"),
        "{v}"
    );
    assert!(
        !err.contains("rolled back"),
        "disks were copied first: {err}"
    );
    assert!(!p(&e, "taken.img").exists());
    assert_eq!(fs::read(p(&e, "taken_VARS.fd")).unwrap(), b"keep");
}

fn guard_raw(e: &Env, args: &[&str]) -> (i32, Value, String) {
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(e.dir.path().join("root"))
        .arg("--store")
        .arg(e.dir.path().join("store"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn snapshot_vm_records_the_clone_in_the_manifest() {
    let e = env_with(None);
    fs::create_dir_all(e.dir.path().join("root/etc")).unwrap();
    fs::write(e.dir.path().join("root/etc/hostname"), b"mail\n").unwrap();
    // a running guest: no clone, and no snapshot either
    let (code, _, err) = guard_raw(&e, &["snapshot", "--vm", "web", "--connect", &e.uri]);
    assert_eq!(code, 3, "{err}");
    let (_, v, _) = guard_raw(&e, &["list"]);
    assert_eq!(
        v["snapshots"].as_array().map(|a| a.len()).unwrap_or(0),
        0,
        "{v}"
    );
    let (code, v, err) = guard_raw(&e, &["snapshot", "--vm", "mail", "--connect", &e.uri]);
    assert_eq!(code, 0, "{err}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, v, err) = guard_raw(&e, &["show", &id]);
    assert_eq!(code, 0, "{err}");
    let r = &v["vms"][0];
    assert_eq!(r["domain"], "mail");
    assert_eq!(r["uri"], e.uri.as_str());
    let clone = r["clone"].as_str().unwrap();
    assert!(clone.starts_with("mail-pre-upgrade-"), "{clone}");
    assert!(r["source_xml"]
        .as_str()
        .unwrap()
        .contains("<name>mail</name>"));
    let copy = r["disks"][0]["copy"].as_str().unwrap();
    assert_eq!(r["disks"][0]["target"], "vda");
    assert_eq!(
        fs::read(copy).unwrap(),
        fs::read(p(&e, "mail.img")).unwrap()
    );
    // `guard list` names the clone without reading the manifest
    let (code, v, err) = guard_raw(&e, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        v["snapshots"][0]["vms"][0],
        format!("mail -> {clone}"),
        "{v}"
    );
}

/// The clone files a `snapshot --vm` left in the test dir (disk copies,
/// nvram): after a failed snapshot there must be none.
fn stray_clone_files(e: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-pre-upgrade-"))
        .collect();
    v.sort();
    v
}

fn snapshot_root(e: &Env) {
    fs::create_dir_all(e.dir.path().join("root/etc")).unwrap();
    fs::write(e.dir.path().join("root/etc/hostname"), b"mail\n").unwrap();
}

#[test]
fn a_failing_second_guest_takes_the_first_clone_back_whole() {
    let e = env_with(None);
    snapshot_root(&e);
    // mail clones (disk and nvram), web runs: the lot fails
    let (code, _, err) = guard_raw(
        &e,
        &[
            "snapshot",
            "--vm",
            "mail",
            "--vm",
            "web",
            "--connect",
            &e.uri,
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("discarded clone mail-pre-upgrade-"), "{err}");
    assert_eq!(stray_clone_files(&e), Vec::<String>::new(), "{err}");
    let (_, v, _) = guard_raw(&e, &["list"]);
    assert_eq!(v["snapshots"], serde_json::json!([]), "{v}");
}

struct Immutable(PathBuf);
impl Drop for Immutable {
    fn drop(&mut self) {
        run_ok(&["chattr", "-i", self.0.to_str().unwrap()]);
    }
}

#[test]
fn a_snapshot_that_cannot_be_committed_takes_its_clone_back() {
    let e = env_with(None);
    snapshot_root(&e);
    // a broken guard.toml refuses the snapshot before any disk is copied
    fs::create_dir_all(e.dir.path().join("root/etc/guard")).unwrap();
    fs::write(
        e.dir.path().join("root/etc/guard/guard.toml"),
        "bogus = [\n",
    )
    .unwrap();
    let (code, _, err) = guard_raw(&e, &["snapshot", "--vm", "mail", "--connect", &e.uri]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("guard.toml"), "{err}");
    assert!(!err.contains("cloning guest"), "{err}");
    assert_eq!(stray_clone_files(&e), Vec::<String>::new(), "{err}");
    fs::remove_file(e.dir.path().join("root/etc/guard/guard.toml")).unwrap();
    // the clone succeeds, then the manifest cannot be written
    let (code, _, err) = guard_raw(&e, &["snapshot"]);
    assert_eq!(code, 0, "{err}");
    let snaps = e.dir.path().join("store/snapshots");
    run_ok(&["chattr", "+i", snaps.to_str().unwrap()]);
    let undo = Immutable(snaps);
    let (code, _, err) = guard_raw(&e, &["snapshot", "--vm", "mail", "--connect", &e.uri]);
    drop(undo);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("discarded clone mail-pre-upgrade-"), "{err}");
    assert_eq!(stray_clone_files(&e), Vec::<String>::new(), "{err}");
    let (_, v, _) = guard_raw(&e, &["list"]);
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn forget_and_prune_keep_the_clone_and_say_how_to_remove_it() {
    let e = env_with(None);
    snapshot_root(&e);
    let (code, v, err) = guard_raw(
        &e,
        &[
            "snapshot",
            "--kind",
            "pre",
            "--vm",
            "mail",
            "--connect",
            &e.uri,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = v["id"].as_str().unwrap().to_string();
    let files = stray_clone_files(&e);
    assert_eq!(files.len(), 2, "disk copy and nvram: {files:?}");
    let clone = files
        .iter()
        .find(|f| f.ends_with(".img"))
        .unwrap()
        .trim_end_matches(".img")
        .to_string();
    // the manifest records the nvram too
    let (_, v, _) = guard_raw(&e, &["show", &id]);
    assert!(
        v["vms"][0]["nvram"].as_str().unwrap().ends_with("_VARS.fd"),
        "{v}"
    );
    // a newer pre snapshot, so prune --keep 1 drops the one with the clone
    let (code, _, err) = guard_raw(&e, &["snapshot", "--kind", "pre"]);
    assert_eq!(code, 0, "{err}");
    let (code, v, err) = guard_raw(&e, &["prune", "--keep", "1", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["snapshots"][0], id.as_str(), "{v}");
    assert_eq!(v["kept_clones"][0]["clone"], clone.as_str(), "{v}");
    // as text: the clone, its files and how to remove it
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(e.dir.path().join("root"))
        .arg("--store")
        .arg(e.dir.path().join("store"))
        .args(["forget", &id, "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "vm clone {clone} (of mail, snapshot {id}) would stay"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "to remove it: virsh -c {} undefine --nvram {clone}",
            e.uri
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{clone}.img")), "{text}");
    // really dropped: the report names the clone, which is still there
    let (code, v, err) = guard_raw(&e, &["--yes", "prune", "--keep", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["snapshots"][0], id.as_str(), "{v}");
    let k = &v["kept_clones"][0];
    assert_eq!(k["clone"], clone.as_str(), "{v}");
    assert_eq!(k["domain"], "mail", "{v}");
    assert_eq!(k["uri"], e.uri.as_str(), "{v}");
    assert!(k["remove"].as_str().unwrap().contains("undefine"), "{v}");
    assert!(err.contains(&format!("vm clone {clone}")), "{err}");
    assert_eq!(stray_clone_files(&e), files, "the clone stays");
}

/// `guard vm list` in text said `capacity=null allocation=null` for a
/// disk whose size neither libvirt nor the file system knows (web's
/// source file is not there): JSON's null, printed as if it were a value.
#[test]
fn vm_list_says_an_unknown_size_in_words() {
    let e = env_with(None);
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(e.dir.path())
        .arg("--store")
        .arg(e.dir.path().join("store"))
        .args(["vm", "list", "--connect", &e.uri])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("null"), "{text}");
    let disk = |guest: &str, target: &str| -> String {
        let mut lines = text
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{guest}  ")));
        lines
            .next()
            .unwrap_or_else(|| panic!("no {guest}:\n{text}"));
        lines
            .take_while(|l| l.starts_with("  "))
            .find(|l| l.starts_with(&format!("  disk {target} ")))
            .unwrap_or_else(|| panic!("no {guest} {target}:\n{text}"))
            .to_string()
    };
    let web = disk("web", "vda");
    assert!(
        web.ends_with(" capacity unknown allocation unknown"),
        "{web}"
    );
    let mail = disk("mail", "vda");
    assert!(
        mail.contains(&format!(" capacity={}", 64u64 << 20)),
        "{mail}"
    );
    // JSON keeps its null
    fs::create_dir_all(p(&e, "root")).unwrap();
    let (code, v, err) = guard_raw(&e, &["vm", "list", "--connect", &e.uri]);
    assert_eq!(code, 0, "{err}");
    let web = v["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "web")
        .unwrap();
    assert_eq!(web["disks"][0]["capacity"], Value::Null, "{v}");
}
