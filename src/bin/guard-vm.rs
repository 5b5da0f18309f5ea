//! The `guard-vm` helper: the only binary that links libvirt. `guard vm …`
//! and `guard snapshot --vm` run it, so hosts without libvirt still run
//! everything else (DESIGN §2). The libvirt-free logic (XML rewrite, plan,
//! copy, block-device rules) lives in `guard::vm`; this file only talks to
//! libvirt and orders the steps so any failure rolls back.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use guard::cli::VmCommand;
use guard::ui::{Ui, UiOptions};
use guard::vm::{self, blockdev::DiskId, copy, xml::NewSource, Plan, PlanInput, PoolInfo};
use serde_json::json;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

#[derive(Parser)]
#[command(
    name = "guard-vm",
    about = "libvirt guests for guard (run by `guard vm`)"
)]
struct Args {
    #[arg(long, global = true)]
    json: bool,
    #[arg(long, global = true)]
    yes: bool,
    #[arg(long, global = true)]
    no_progress: bool,
    /// accepted for symmetry with guard; the vm commands keep nothing there
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Vm(VmCommand),
    /// Undo a clone guard made (used by `guard snapshot --vm` when the
    /// snapshot cannot be committed): undefine NAME, delete the given copies
    #[command(hide = true)]
    Discard {
        name: String,
        #[arg(long = "copy")]
        copies: Vec<String>,
        #[arg(long, env = "GUARD_LIBVIRT_URI")]
        connect: Option<String>,
    },
}

const DEFAULT_URI: &str = "qemu:///system";
/// How long guard waits for a guest it asked to shut down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    let args = Args::parse();
    let json = args.json;
    let code = match run(args) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{e:#}");
            if json {
                guard::json_out!(json!({ "error": msg }));
            }
            guard::err_out!("guard-vm: {msg}");
            3
        }
    };
    std::process::exit(code);
}

fn connect(uri: Option<&str>) -> Result<Connect> {
    // libvirt prints every error to stderr by default, including lookups
    // guard expects to fail (is this path a pool volume?); guard reports
    // the errors that matter itself.
    virt::error::clear_error_callback();
    // Remote URIs (qemu+ssh://) need a running event loop so keepalive
    // pings are answered while a long disk copy makes no libvirt calls;
    // without one the daemon may drop the connection mid-clone and the
    // define (or the rollback) fails. Harmless for local drivers.
    virt::event::event_register_default_impl().map_err(|e| anyhow!("libvirt event loop: {e}"))?;
    std::thread::spawn(|| loop {
        if virt::event::event_run_default_impl().is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let uri = uri.unwrap_or(DEFAULT_URI);
    Connect::open(Some(uri)).map_err(|e| anyhow!("cannot connect to libvirt at {uri}: {e}"))
}

fn run(args: Args) -> Result<i32> {
    use std::io::IsTerminal;
    let ui = guard::ui::make(UiOptions {
        yes: args.yes,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        ..Default::default()
    });
    match args.cmd {
        Cmd::Vm(VmCommand::List { connect: c }) => list(&connect(c.as_deref())?, args.json),
        Cmd::Vm(VmCommand::Clone {
            domain,
            name,
            disk_target,
            connect: c,
            dry_run,
        }) => {
            let conn = connect(c.as_deref())?;
            clone(
                &conn,
                ui.as_ref(),
                &domain,
                name,
                disk_target,
                dry_run,
                args.json,
            )
        }
        Cmd::Discard {
            name,
            copies,
            connect: c,
        } => {
            let conn = connect(c.as_deref())?;
            discard(&conn, &name, &copies)?;
            Ok(0)
        }
    }
}

fn state_name(d: &Domain) -> String {
    match d.state() {
        Ok((s, _)) if s.is_known() => format!("{:?}", s.unwrap()).to_lowercase(),
        _ => "unknown".into(),
    }
}

fn is_shut_off(d: &Domain) -> Result<bool> {
    let (s, _) = d.state().map_err(|e| anyhow!("state: {e}"))?;
    if !s.is_known() {
        bail!("libvirt reports an unknown state for the guest");
    }
    Ok(s.unwrap() == DomainState::Shutoff)
}

fn inactive_xml(d: &Domain) -> Result<String> {
    d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
        .map_err(|e| anyhow!("domain XML: {e}"))
}

fn all_domains(conn: &Connect) -> Result<Vec<Domain>> {
    conn.list_all_domains(0)
        .map_err(|e| anyhow!("listing guests: {e}"))
}

/// Size and allocation of a disk: from its pool if libvirt manages it,
/// else from the file or device.
fn disk_sizes(conn: &Connect, path: &str) -> (Option<u64>, Option<u64>) {
    if let Ok(v) = conn.lookup_storage_vol_by_path(path) {
        if let Ok(i) = v.info() {
            return (Some(i.capacity), Some(i.allocation));
        }
    }
    match File::open(path) {
        Ok(f) => {
            let cap = copy::size_of(&f).ok();
            let alloc = f.metadata().ok().map(|m| {
                if m.file_type().is_file() {
                    m.blocks() * 512
                } else {
                    cap.unwrap_or(0)
                }
            });
            (cap, alloc)
        }
        Err(_) => (None, None),
    }
}

fn list(conn: &Connect, as_json: bool) -> Result<i32> {
    let mut out = Vec::new();
    for d in all_domains(conn)? {
        let x = vm::xml::parse(&inactive_xml(&d)?)?;
        let disks: Vec<_> = x
            .disks
            .iter()
            .map(|k| {
                let (cap, alloc) = k
                    .path
                    .as_deref()
                    .map(|p| disk_sizes(conn, p))
                    .unwrap_or((None, None));
                json!({"target": k.target, "device": k.device, "source": k.path,
                       "format": k.format, "capacity": cap, "allocation": alloc,
                       "readonly": k.readonly})
            })
            .collect();
        out.push(
            json!({"name": x.name, "uuid": x.uuid, "state": state_name(&d),
                        "disks": disks, "nics": x.nics}),
        );
    }
    if as_json {
        guard::json_out!(serde_json::to_string_pretty(&json!({ "guests": out }))?);
        return Ok(0);
    }
    for g in &out {
        guard::out!(
            "{}  {}",
            g["name"].as_str().unwrap_or(""),
            g["state"].as_str().unwrap_or("")
        );
        for k in g["disks"].as_array().into_iter().flatten() {
            // A size libvirt and the file system do not know (a source
            // that is not there, a network disk) is JSON's null, but
            // `capacity=null` in text reads like a value.
            let size = |key: &str| match k[key].as_u64() {
                Some(n) => format!(" {key}={n}"),
                None => format!(" {key} unknown"),
            };
            guard::out!(
                "  disk {:<5} {:<6} {} format={}{}{}",
                k["target"].as_str().unwrap_or(""),
                k["device"].as_str().unwrap_or(""),
                k["source"].as_str().unwrap_or("-"),
                k["format"].as_str().unwrap_or("-"),
                size("capacity"),
                size("allocation")
            );
        }
        for n in g["nics"].as_array().into_iter().flatten() {
            guard::out!(
                "  nic  {} {}",
                n["mac"].as_str().unwrap_or("-"),
                n["source"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(0)
}

/// The target directory of a storage pool (dir, fs, netfs pools).
fn pool_dir(pool: &StoragePool) -> Option<String> {
    let x = pool.xml_desc(0).ok()?;
    let t = &x[x.find("<target>")?..];
    let p = &t[t.find("<path>")? + 6..];
    Some(p[..p.find("</path>")?].trim().to_string())
}

type Undo = Box<dyn FnOnce() -> Result<()>>;

/// Undo steps, run in reverse when the clone fails half way.
#[derive(Default)]
struct Rollback {
    steps: Vec<(String, Undo)>,
}

impl Rollback {
    fn push(&mut self, what: String, f: impl FnOnce() -> Result<()> + 'static) {
        self.steps.push((what, Box::new(f)));
    }
    fn run(self, ui: &dyn Ui) {
        for (what, f) in self.steps.into_iter().rev() {
            match f() {
                Ok(()) => ui.say(&format!("rolled back: {what}")),
                Err(e) => ui.say(&format!(
                    "rollback of {what} FAILED: {e:#}; remove it by hand"
                )),
            }
        }
    }
}

fn wait_shut_off(d: &Domain, ui: &dyn Ui, name: &str) -> Result<()> {
    if is_shut_off(d)? {
        return Ok(());
    }
    if !ui.is_interactive() {
        bail!("guest {name} is running: shut it down first (virsh shutdown {name}); guard clones only shut-off guests");
    }
    if !ui.confirm(&format!("guest {name} is running; shut it down now?"))? {
        bail!("guest {name} is running: not cloned");
    }
    d.shutdown()
        .map_err(|e| anyhow!("shutdown of {name}: {e}"))?;
    let t0 = Instant::now();
    let sp = ui.spinner(&format!("waiting for {name} to shut down"));
    while t0.elapsed() < SHUTDOWN_TIMEOUT {
        if is_shut_off(d)? {
            sp.finish();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    sp.finish();
    bail!(
        "guest {name} did not shut down within {}s: not cloned",
        SHUTDOWN_TIMEOUT.as_secs()
    )
}

fn clone(
    conn: &Connect,
    ui: &dyn Ui,
    domain: &str,
    name: Option<String>,
    disk_target: Vec<String>,
    dry_run: bool,
    as_json: bool,
) -> Result<i32> {
    let dom = conn
        .lookup_domain_by_name(domain)
        .map_err(|e| anyhow!("no guest {domain}: {e}"))?;
    let source_xml = inactive_xml(&dom)?;
    let src = vm::xml::parse(&source_xml)?;
    // Facts about every other guest: names, MACs, which disks they use.
    let mut input = PlanInput {
        new_name: name,
        disk_targets: disk_target,
        ..Default::default()
    };
    // Every disk of every guest, as (path, guest): inactive and live XML (a
    // hot-plugged disk is only in the live one), volumes resolved to their
    // paths. Targets are compared with these by device, not by name.
    let mut used: Vec<(String, String)> = Vec::new();
    for d in all_domains(conn)? {
        let mut xmls = vec![inactive_xml(&d)?];
        if d.is_active().unwrap_or(true) {
            if let Ok(live) = d.xml_desc(0) {
                xmls.push(live);
            }
        }
        for (i, text) in xmls.iter().enumerate() {
            let x = vm::xml::parse(text)?;
            if i == 0 {
                input.names.insert(x.name.clone());
                for n in &x.nics {
                    if let Some(m) = &n.mac {
                        input.macs.insert(m.to_lowercase());
                    }
                }
            }
            for k in &x.disks {
                let path = match (&k.path, &k.pool, &k.volume) {
                    (Some(p), _, _) => Some(p.clone()),
                    (None, Some(pool), Some(vol)) => conn
                        .lookup_storage_pool_by_name(pool)
                        .and_then(|p| p.lookup_storage_vol_by_name(vol))
                        .and_then(|v| v.path())
                        .ok(),
                    _ => None,
                };
                if let Some(p) = path {
                    used.push((p, x.name.clone()));
                }
            }
        }
    }
    for k in &src.disks {
        if let (Some(pool), Some(vol)) = (&k.pool, &k.volume) {
            let path = conn
                .lookup_storage_pool_by_name(pool)
                .and_then(|p| p.lookup_storage_vol_by_name(vol))
                .and_then(|v| v.path())
                .map_err(|e| anyhow!("disk {}: volume {vol} in pool {pool}: {e}", k.target))?;
            input.volumes.insert(format!("{pool}/{vol}"), path);
        }
    }
    let paths: Vec<String> = src
        .disks
        .iter()
        .filter_map(|k| k.path.clone())
        .chain(input.volumes.values().cloned())
        .collect();
    for p in &paths {
        {
            if let Ok(v) = conn.lookup_storage_vol_by_path(p) {
                if let Ok(pool) = v.lookup_storage_pool() {
                    input.pools.insert(
                        p.clone(),
                        PoolInfo {
                            pool: pool.name().map_err(|e| anyhow!("{e}"))?,
                            dir: pool_dir(&pool),
                        },
                    );
                }
            }
        }
    }
    let plan = vm::plan(&source_xml, &input)?;
    if dry_run {
        if !is_shut_off(&dom)? {
            ui.say(&format!(
                "note: {domain} is running; a real clone needs it shut off"
            ));
        }
        print_plan(&plan, as_json, &source_xml, None)?;
        return Ok(0);
    }
    wait_shut_off(&dom, ui, domain)?;
    // from here on a signal must not kill guard half way: the copy stops
    // and the rollback below removes what was made
    vm::interrupt::catch_signals()?;
    let mut rb = Rollback::default();
    match execute(conn, ui, &plan, &used, &mut rb) {
        Ok(copies) => print_plan(&plan, as_json, &source_xml, Some(copies)).map(|_| 0),
        Err(e) => {
            rb.run(ui);
            Err(e)
        }
    }
}

fn print_plan(
    plan: &Plan,
    as_json: bool,
    source_xml: &str,
    copies: Option<BTreeMap<String, copy::Copied>>,
) -> Result<()> {
    if as_json {
        let mut v = serde_json::to_value(plan)?;
        v["dry_run"] = json!(copies.is_none());
        v["source_xml"] = json!(source_xml);
        if let Some(c) = &copies {
            v["copies"] = serde_json::to_value(c)?;
        }
        guard::json_out!(serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if copies.is_none() {
        guard::out!("{}", plan.xml);
        guard::out!("# copy plan for {} -> {}", plan.domain, plan.name);
    } else {
        guard::out!(
            "cloned {} as {} (uuid {})",
            plan.domain,
            plan.name,
            plan.uuid
        );
    }
    for d in &plan.disks {
        match &d.to_path {
            Some(to) => {
                let extra = copies
                    .as_ref()
                    .and_then(|c| c.get(&d.target))
                    .map(|c| {
                        format!(
                            " ({} data bytes, blake3 {} verified)",
                            c.data_bytes, c.source_blake3
                        )
                    })
                    .unwrap_or_default();
                guard::out!(
                    "# {}: copy {} -> {to}{extra}",
                    d.target,
                    d.source.as_deref().unwrap_or("-")
                );
            }
            None => guard::out!(
                "# {}: share {} ({})",
                d.target,
                d.source.as_deref().unwrap_or("(empty)"),
                d.reason.as_deref().unwrap_or("")
            ),
        }
    }
    if let Some((a, b)) = &plan.nvram {
        guard::out!("# nvram: copy {a} -> {b}");
    }
    Ok(())
}

fn create_new_file(path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {path}"))
}

fn execute(
    conn: &Connect,
    ui: &dyn Ui,
    plan: &Plan,
    used: &[(String, String)],
    rb: &mut Rollback,
) -> Result<BTreeMap<String, copy::Copied>> {
    // Open every source and check every target before writing anything.
    let mut jobs = Vec::new();
    // block targets of this clone so far: (device, disk target, path)
    let mut taken: Vec<(DiskId, String, String)> = Vec::new();
    for d in plan.disks.iter().filter(|d| d.action == "copy") {
        let src_path = d.source.clone().unwrap_or_default();
        let src = File::open(&src_path).with_context(|| format!("opening {src_path}"))?;
        let size = copy::size_of(&src)?;
        let to = d.to.clone().expect("a copied disk has a target");
        let to_path = d.to_path.clone().expect("a copied disk has a target path");
        let mut block = None;
        // (a new volume of a block-backed pool is made, and opened, below)
        if let (NewSource::Block { path }, None) = (&to, &d.pool) {
            let dev = Path::new(path);
            let id = DiskId::of(dev)
                .ok_or_else(|| anyhow!("disk {}: {path} does not exist", d.target))?;
            let mut users: Vec<String> = used
                .iter()
                .filter(|(p, _)| DiskId::of(Path::new(p)).is_some_and(|u| u.overlaps(&id)))
                .map(|(_, g)| g.clone())
                .collect();
            users.sort();
            users.dedup();
            vm::blockdev::refuse_used(dev, &users)?;
            if let Some((_, t, p)) = taken.iter().find(|(i, _, _)| i.overlaps(&id)) {
                bail!(
                    "disk {}: {path} is the same device as {p}, the target of disk {t}",
                    d.target
                );
            }
            let f = vm::blockdev::open_target(dev)?;
            if DiskId::of_meta(&f.metadata()?) != id {
                bail!("disk {}: {path} changed while guard checked it", d.target);
            }
            // a qcow2 image grows on the device up to its virtual size
            // (plus metadata): the device must hold at least that much, or
            // the guest gets I/O errors once it fills its disk
            let needed = match d.format.as_deref() {
                Some("qcow2") => copy::qcow2_virtual_size(&src)?.unwrap_or(0).max(size),
                _ => size,
            };
            vm::blockdev::check_target(dev, &f, needed, ui)?;
            taken.push((id, d.target.clone(), path.clone()));
            block = Some(f);
        } else if Path::new(&to_path).exists() {
            bail!(
                "disk {}: {to_path} already exists; refusing to overwrite it",
                d.target
            );
        }
        jobs.push((d, src, size, block, to_path));
    }
    // The nvram too, before any disk is copied. A UEFI guest that never
    // started has no nvram file yet: the clone gets its new path and
    // libvirt creates it from the template on first start (as virt-clone
    // does), instead of failing after every disk was copied.
    let nvram = match &plan.nvram {
        Some((from, to)) => {
            if Path::new(to).exists() {
                bail!("nvram {to} already exists; refusing to overwrite it");
            }
            match File::open(from) {
                Ok(f) => Some((f, to.clone())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ui.say(&format!(
                        "note: nvram {from} does not exist (guest never started?): {to} is left for libvirt to create"
                    ));
                    None
                }
                Err(e) => return Err(e).with_context(|| format!("opening nvram {from}")),
            }
        }
        None => None,
    };
    let mut copies = BTreeMap::new();
    for (d, src, size, block, to_path) in jobs {
        // the pool only when the copy goes into it: an explicit file
        // target elsewhere is a plain file, not a volume of the source's pool
        let pool = d.pool.as_ref();
        let (dst, fresh) = match (block, pool) {
            // the handle opened exclusively above, never the path again
            (Some(f), _) => (f, false),
            (_, Some(pi)) => {
                // Created through the pool so libvirt knows the volume; as a
                // raw, empty (all-hole) file of the source's length, which the
                // copy then fills; the pool refresh afterwards probes its real
                // format (qcow2 stays qcow2).
                let pool = conn
                    .lookup_storage_pool_by_name(pi)
                    .map_err(|e| anyhow!("pool {pi}: {e}"))?;
                let vol_name = to_path.rsplit('/').next().unwrap_or(&to_path).to_string();
                let vxml = format!(
                    "<volume><name>{}</name><capacity unit='bytes'>{size}</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/><permissions><mode>0600</mode></permissions></target></volume>",
                    xml_escape(&vol_name)
                );
                let vol = StorageVol::create_xml(&pool, &vxml, 0)
                    .map_err(|e| anyhow!("creating volume {vol_name} in pool {pi}: {e}"))?;
                // undone from here on, whatever fails next
                let (pn, vn) = (pi.clone(), vol_name.clone());
                let uri = conn.uri().unwrap_or_default();
                rb.push(format!("volume {vn} in pool {pn}"), move || {
                    let c = Connect::open(Some(&uri)).map_err(|e| anyhow!("{e}"))?;
                    let p = c
                        .lookup_storage_pool_by_name(&pn)
                        .map_err(|e| anyhow!("{e}"))?;
                    let v = p
                        .lookup_storage_vol_by_name(&vn)
                        .map_err(|e| anyhow!("{e}"))?;
                    v.delete(0).map_err(|e| anyhow!("{e}"))
                });
                let path = vol.path().map_err(|e| anyhow!("{e}"))?;
                if path != to_path {
                    bail!("pool {pi} put the volume at {path}, not {to_path}");
                }
                let f = if matches!(d.to, Some(NewSource::Block { .. })) {
                    vm::blockdev::open_target(Path::new(&path))?
                } else {
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .with_context(|| format!("opening {path}"))?
                };
                let fresh = copy::is_fresh_file(&f)?;
                (f, fresh)
            }
            (_, None) => {
                let f = create_new_file(&to_path)?;
                let p = to_path.clone();
                rb.push(format!("copy {p}"), move || {
                    std::fs::remove_file(&p).with_context(|| format!("removing {p}"))
                });
                (f, true)
            }
        };
        vm::interrupt::check()?;
        let bar = ui.progress(size, &format!("copying {}", d.target));
        let res = copy::copy_verified(&src, &dst, size, fresh, bar.as_ref());
        bar.finish();
        let c = res.with_context(|| format!("copying disk {} to {to_path}", d.target))?;
        c.verified(&format!("disk {} ({to_path})", d.target))?;
        copies.insert(d.target.clone(), c);
        if let Some(pi) = pool {
            if let Ok(p) = conn.lookup_storage_pool_by_name(pi) {
                let _ = p.refresh(0);
            }
        }
    }
    if let Some((mut s, to)) = nvram {
        let to = &to;
        let mut t = create_new_file(to)?;
        let p = to.clone();
        rb.push(format!("nvram {p}"), move || {
            std::fs::remove_file(&p).with_context(|| format!("removing {p}"))
        });
        std::io::copy(&mut s, &mut t).with_context(|| format!("copying nvram to {to}"))?;
        t.sync_all()?;
    }
    // a signal during the last disk's sync or the nvram copy: still undone
    vm::interrupt::check()?;
    conn.define_domain_xml(&plan.xml)
        .map_err(|e| anyhow!("defining {}: {e}", plan.name))?;
    Ok(copies)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// Undefines a clone and deletes the copies guard made for it.
fn discard(conn: &Connect, name: &str, copies: &[String]) -> Result<()> {
    if let Ok(d) = conn.lookup_domain_by_name(name) {
        if !is_shut_off(&d)? {
            bail!("{name} is running: not discarded");
        }
        d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_NVRAM)
            .or_else(|_| d.undefine())
            .map_err(|e| anyhow!("undefining {name}: {e}"))?;
    }
    for c in copies {
        if let Ok(v) = conn.lookup_storage_vol_by_path(c) {
            v.delete(0)
                .map_err(|e| anyhow!("deleting volume {c}: {e}"))?;
        } else if Path::new(c).is_file() {
            std::fs::remove_file(c).with_context(|| format!("removing {c}"))?;
        }
    }
    Ok(())
}
