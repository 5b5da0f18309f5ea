//! guard's clone XML against `virt-clone --print-xml` (package virtinst) on
//! the same guest of the test driver: guard changes everything virt-clone
//! changes, and beyond that only the deliberate differences the README
//! lists (sysinfo UUID, serial/console log paths, agent socket path).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::Reader;

/// element path (with sibling indices) + attribute/text → value
fn flatten(xml: &str) -> BTreeMap<String, String> {
    let mut r = Reader::from_str(xml);
    let mut out = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut counts: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new()];
    loop {
        let ev = r.read_event().unwrap();
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let n = counts.last_mut().unwrap().entry(name.clone()).or_insert(0);
                let here = format!("{}/{name}[{n}]", stack.last().cloned().unwrap_or_default());
                *n += 1;
                out.insert(here.clone(), String::new());
                for a in e.attributes() {
                    let a = a.unwrap();
                    let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                    out.insert(
                        format!("{here}@{k}"),
                        a.unescape_value().unwrap().into_owned(),
                    );
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(here);
                    counts.push(BTreeMap::new());
                }
            }
            Event::Text(t) => {
                let t = t.unescape().unwrap().trim().to_string();
                if !t.is_empty() {
                    out.insert(format!("{}#text", stack.last().unwrap()), t);
                }
            }
            Event::End(_) => {
                stack.pop();
                counts.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn changed(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    keys.into_iter()
        .filter(|k| from.get(*k) != to.get(*k))
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn guard_changes_what_virt_clone_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let node = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vm-node.xml"
    ))
    .unwrap()
    .replace("@WEBDISK@", &format!("{d}/web.img"))
    .replace("@DIR@", d);
    fs::write(dir.path().join("node.xml"), node).unwrap();
    fs::File::create(dir.path().join("mail.img"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    fs::write(dir.path().join("install.iso"), b"iso").unwrap();
    fs::write(dir.path().join("mail_VARS.fd"), b"vars").unwrap();
    let uri = format!("test://{d}/node.xml");
    #[allow(clippy::disallowed_methods)]
    let g = Command::new(env!("CARGO_BIN_EXE_guard-vm"))
        .args(["--json", "clone", "mail", "--dry-run", "--connect", &uri])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let v: serde_json::Value = serde_json::from_slice(&g.stdout).unwrap();
    #[allow(clippy::disallowed_methods)]
    let vc = Command::new("virt-clone")
        .args([
            "--connect",
            &uri,
            "--original",
            "mail",
            "--auto-clone",
            "--print-xml",
        ])
        .output()
        .expect("virt-clone (package virtinst) is installed");
    assert!(
        vc.status.success(),
        "{}",
        String::from_utf8_lossy(&vc.stderr)
    );
    let source = flatten(v["source_xml"].as_str().unwrap());
    let ours = changed(&source, &flatten(v["xml"].as_str().unwrap()));
    let theirs = changed(&source, &flatten(&String::from_utf8_lossy(&vc.stdout)));
    // virt-clone's graphics change is port=-1 (autoport implied); ours drops
    // the port and says autoport=yes: the same element, the same effect.
    let missing: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "virt-clone changes what guard leaves: {missing:?}"
    );
    let extra: BTreeSet<String> = ours.difference(&theirs).cloned().collect();
    let deliberate: BTreeSet<String> = [
        "/domain[0]/sysinfo[0]/system[0]/entry[1]#text",
        "/domain[0]/devices[0]/serial[0]/log[0]@file",
        "/domain[0]/devices[0]/console[0]/log[0]@file",
        "/domain[0]/devices[0]/channel[0]/source[0]@path",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        extra, deliberate,
        "guard changes more than virt-clone plus the documented differences"
    );
    // and both leave the read-only cdrom alone
    assert!(!ours.iter().any(|k| k.contains("disk[1]")), "{ours:?}");
}
