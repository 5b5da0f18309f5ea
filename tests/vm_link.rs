//! guard must run on hosts without libvirt (DESIGN §2): the `guard` binary
//! must not link libvirt; only the `guard-vm` helper does.

use std::process::Command;

fn needed(bin: &str) -> String {
    #[allow(clippy::disallowed_methods)]
    let out = Command::new("ldd").arg(bin).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {bin} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn guard_binary_does_not_link_libvirt() {
    let guard = needed(env!("CARGO_BIN_EXE_guard"));
    assert!(!guard.contains("libvirt"), "guard links libvirt:\n{guard}");
    // the check can fail: the helper does link it
    let helper = needed(env!("CARGO_BIN_EXE_guard-vm"));
    assert!(
        helper.contains("libvirt.so"),
        "guard-vm should link libvirt:\n{helper}"
    );
}
