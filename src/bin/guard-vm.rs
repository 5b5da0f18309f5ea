//! The `guard-vm` helper: the only binary that links libvirt.

fn main() {
    eprintln!("guard-vm: not available in this build yet");
    std::process::exit(3);
}
