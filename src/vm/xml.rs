//! Reading a libvirt domain XML into the facts a clone needs, and rewriting
//! it into the clone's XML. Pure (no libvirt), so every rewrite is testable.
//!
//! The rewrite streams the document through quick-xml and edits only the
//! elements a clone must change; everything else (comments, unknown
//! elements, namespaced metadata) passes through untouched, which is what
//! virt-clone's "change what must change, keep the rest" promises too.

use anyhow::{anyhow, Context, Result};
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use serde::Serialize;

/// One `<disk>` of a guest.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Disk {
    /// `file`, `block`, `volume`, `network`, …
    pub kind: String,
    /// `disk`, `cdrom`, `floppy`, `lun`
    pub device: String,
    pub target: String,
    /// `source@file` or `source@dev`
    pub path: Option<String>,
    pub pool: Option<String>,
    pub volume: Option<String>,
    /// `driver@type` (raw, qcow2)
    pub format: Option<String>,
    pub readonly: bool,
    pub shareable: bool,
}

/// One `<interface>` of a guest.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Nic {
    pub kind: String,
    pub mac: Option<String>,
    /// network, bridge or dev the NIC is attached to
    pub source: Option<String>,
}

/// The facts of a domain XML a clone needs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainXml {
    pub name: String,
    pub uuid: String,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub nvram: Option<String>,
}

fn attr(e: &BytesStart, key: &str) -> Result<Option<String>> {
    for a in e.attributes() {
        let a = a?;
        if a.key.as_ref() == key.as_bytes() {
            return Ok(Some(a.unescape_value()?.into_owned()));
        }
    }
    Ok(None)
}

fn local(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

/// Parses the parts of a domain XML a clone needs.
pub fn parse(xml: &str) -> Result<DomainXml> {
    let mut r = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut d = DomainXml::default();
    let mut text = String::new();
    loop {
        let ev = r.read_event().context("domain XML")?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = local(&e);
            let parent = stack.join("/");
            match (parent.as_str(), name.as_str()) {
                ("domain/devices", "disk") => d.disks.push(Disk {
                    kind: attr(&e, "type")?.unwrap_or_else(|| "file".into()),
                    device: attr(&e, "device")?.unwrap_or_else(|| "disk".into()),
                    ..Default::default()
                }),
                ("domain/devices/disk", n) => {
                    let disk = d.disks.last_mut().expect("inside a disk");
                    match n {
                        "source" => {
                            disk.path = attr(&e, "file")?.or(attr(&e, "dev")?);
                            disk.pool = attr(&e, "pool")?;
                            disk.volume = attr(&e, "volume")?;
                        }
                        "target" => disk.target = attr(&e, "dev")?.unwrap_or_default(),
                        "driver" => disk.format = attr(&e, "type")?,
                        "readonly" => disk.readonly = true,
                        "shareable" => disk.shareable = true,
                        _ => {}
                    }
                }
                ("domain/devices", "interface") => d.nics.push(Nic {
                    kind: attr(&e, "type")?.unwrap_or_default(),
                    ..Default::default()
                }),
                ("domain/devices/interface", n) => {
                    let nic = d.nics.last_mut().expect("inside an interface");
                    match n {
                        "mac" => nic.mac = attr(&e, "address")?,
                        "source" => {
                            nic.source = attr(&e, "network")?
                                .or(attr(&e, "bridge")?)
                                .or(attr(&e, "dev")?)
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            if !empty {
                stack.push(name);
                text.clear();
            }
            continue;
        }
        match ev {
            Event::Text(t) => text.push_str(&t.unescape()?),
            Event::End(_) => {
                match stack.join("/").as_str() {
                    "domain/name" => d.name = text.trim().to_string(),
                    "domain/uuid" => d.uuid = text.trim().to_string(),
                    "domain/os/nvram" if !text.trim().is_empty() => {
                        d.nvram = Some(text.trim().to_string())
                    }
                    _ => {}
                }
                text.clear();
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if d.name.is_empty() {
        return Err(anyhow!("domain XML has no <name>"));
    }
    Ok(d)
}

/// Where a copied disk goes in the clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NewSource {
    File { path: String },
    Block { path: String },
    Volume { pool: String, volume: String },
}

/// Everything that differs between a guest and its clone.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub old_name: String,
    pub name: String,
    pub uuid: String,
    /// one per `<interface>`, in document order
    pub macs: Vec<String>,
    /// one per `<disk>`, in document order; None = shared, left alone
    pub disks: Vec<Option<NewSource>>,
    pub nvram: Option<String>,
}

/// A file name that starts with the old guest's name gets the new name; one
/// that does not
/// gets the new name as a prefix of its file name.
pub fn rename_path(path: &str, old: &str, new: &str) -> String {
    let (dir, base) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    if !old.is_empty() && base.starts_with(old) {
        format!("{dir}{new}{}", &base[old.len()..])
    } else {
        format!("{dir}{new}-{base}")
    }
}

fn set_attrs(e: &BytesStart, drop: &[&str], set: &[(&str, String)]) -> Result<BytesStart<'static>> {
    let mut out = BytesStart::new(local(e));
    for a in e.attributes() {
        let a = a?;
        let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        if drop.contains(&k.as_str()) || set.iter().any(|(s, _)| *s == k) {
            continue;
        }
        out.push_attribute((k.as_str(), a.unescape_value()?.as_ref()));
    }
    for (k, v) in set {
        out.push_attribute((*k, v.as_str()));
    }
    Ok(out)
}

/// Rewrites a domain XML into its clone's XML.
pub fn rewrite(xml: &str, rw: &Rewrite) -> Result<String> {
    let mut r = Reader::from_str(xml);
    let mut w = Writer::new(Vec::new());
    let mut stack: Vec<String> = Vec::new();
    let (mut disk_i, mut nic_i) = (0usize, 0usize);
    // name of the entry we are inside under sysinfo/system
    let mut entry_name: Option<String> = None;
    // depth at which we are skipping an element (interface/target)
    let mut skip: Option<usize> = None;
    loop {
        let ev = r.read_event().context("domain XML")?;
        if let Some(depth) = skip {
            match &ev {
                Event::Start(_) => stack.push(String::new()),
                Event::End(_) => {
                    stack.pop();
                    if stack.len() == depth {
                        skip = None;
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            continue;
        }
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = local(e);
                let parent = stack.join("/");
                let mut out: BytesStart<'static> = e.clone().into_owned();
                match (parent.as_str(), name.as_str()) {
                    ("domain/devices", "disk") => {
                        if let Some(Some(ns)) = rw.disks.get(disk_i) {
                            let kind = match ns {
                                NewSource::File { .. } => "file",
                                NewSource::Block { .. } => "block",
                                NewSource::Volume { .. } => "volume",
                            };
                            out = set_attrs(e, &[], &[("type", kind.into())])?;
                        }
                    }
                    ("domain/devices/disk", "source") => {
                        if let Some(Some(ns)) = rw.disks.get(disk_i) {
                            let gone = ["file", "dev", "pool", "volume", "index"];
                            out = match ns {
                                NewSource::File { path } => {
                                    set_attrs(e, &gone, &[("file", path.clone())])?
                                }
                                NewSource::Block { path } => {
                                    set_attrs(e, &gone, &[("dev", path.clone())])?
                                }
                                NewSource::Volume { pool, volume } => set_attrs(
                                    e,
                                    &gone,
                                    &[("pool", pool.clone()), ("volume", volume.clone())],
                                )?,
                            };
                        }
                    }
                    ("domain/devices/interface", "mac") => {
                        if let Some(mac) = rw.macs.get(nic_i) {
                            out = set_attrs(e, &[], &[("address", mac.clone())])?;
                        }
                    }
                    ("domain/devices/interface", "target") => {
                        // libvirt names the host device (vnetN) itself; a
                        // fixed one would collide with the original's.
                        if !empty {
                            skip = Some(stack.len());
                            stack.push(name);
                        }
                        continue;
                    }
                    ("domain/devices", "graphics") => {
                        out = set_attrs(
                            e,
                            &["port", "tlsPort", "websocket"],
                            &[("autoport", "yes".into())],
                        )?;
                    }
                    ("domain/devices/channel", "source") => {
                        if let Some(p) = attr(e, "path")? {
                            out = set_attrs(
                                e,
                                &[],
                                &[("path", rename_path(&p, &rw.old_name, &rw.name))],
                            )?;
                        }
                    }
                    ("domain/devices/serial", "log") | ("domain/devices/console", "log") => {
                        if let Some(p) = attr(e, "file")? {
                            out = set_attrs(
                                e,
                                &[],
                                &[("file", rename_path(&p, &rw.old_name, &rw.name))],
                            )?;
                        }
                    }
                    ("domain/devices/serial", "source") | ("domain/devices/console", "source") => {
                        if let Some(p) = attr(e, "path")? {
                            out = set_attrs(
                                e,
                                &[],
                                &[("path", rename_path(&p, &rw.old_name, &rw.name))],
                            )?;
                        }
                    }
                    ("domain/sysinfo/system", "entry") => entry_name = attr(e, "name")?,
                    _ => {}
                }
                if empty {
                    w.write_event(Event::Empty(out))?;
                    if parent == "domain/devices" && name == "disk" {
                        disk_i += 1;
                    }
                    if parent == "domain/devices" && name == "interface" {
                        nic_i += 1;
                    }
                } else {
                    w.write_event(Event::Start(out))?;
                    stack.push(name);
                }
            }
            Event::Text(t) => {
                let path = stack.join("/");
                let replaced = match path.as_str() {
                    "domain/name" => Some(rw.name.clone()),
                    "domain/uuid" => Some(rw.uuid.clone()),
                    "domain/os/nvram" => rw.nvram.clone(),
                    "domain/sysinfo/system/entry" if entry_name.as_deref() == Some("uuid") => {
                        Some(rw.uuid.clone())
                    }
                    _ => None,
                };
                match replaced {
                    Some(v) if !t.unescape()?.trim().is_empty() => {
                        w.write_event(Event::Text(BytesText::new(&v)))?
                    }
                    _ => w.write_event(Event::Text(t))?,
                }
            }
            Event::End(e) => {
                let path = stack.join("/");
                match path.as_str() {
                    "domain/devices/disk" => disk_i += 1,
                    "domain/devices/interface" => nic_i += 1,
                    "domain/sysinfo/system/entry" => entry_name = None,
                    _ => {}
                }
                stack.pop();
                w.write_event(Event::End(e))?;
            }
            Event::Eof => break,
            other => w.write_event(other)?,
        }
    }
    String::from_utf8(w.into_inner()).context("rewritten XML")
}
