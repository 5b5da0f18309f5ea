//! The core binary's side of the vm commands: it runs the `guard-vm` helper
//! (which links libvirt) instead of loading libvirt itself.

use anyhow::{bail, Result};

use crate::app::App;
use crate::store::Store;

/// `guard snapshot --vm DOMAIN`: clone each guest through guard-vm and
/// record the clones in the snapshot.
pub fn snapshot_vms(
    _app: &App,
    _store: &Store,
    _id: &str,
    _vms: &[String],
    _connect: Option<&str>,
) -> Result<()> {
    bail!("snapshot --vm is not available in this build yet")
}
