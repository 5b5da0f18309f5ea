//! dpkg's database, read directly: `var/lib/dpkg/status` (one paragraph per
//! package: `Package`, `Status`, `Architecture`, `Version`) and
//! `var/lib/dpkg/info/NAME.list` or, for Multi-Arch: same packages,
//! `NAME:ARCH.list` (one absolute path per line, directories included).
//!
//! A package counts as installed when the third word of its `Status` says
//! its files are on disk (`install ok installed`, `hold ok installed`,
//! half-configured, unpacked, triggers pending); `config-files` and
//! `not-installed` packages are only history.
//!
//! What dpkg left unfinished ([`unfinished`]) also takes the state records
//! in `var/lib/dpkg/updates/`, which a dpkg killed mid-transaction leaves
//! unmerged into `status`.
//!
//! Diversions (`var/lib/dpkg/diversions`, triplets of lines: path, where it
//! is diverted to, the diverting package or `:` for a local one) are applied
//! the way dpkg applies them: a `.list` keeps the name in the package, but
//! every package other than the diverting one really installed that path at
//! the diverted-to name, so that is the path it owns.
//!
//! ucf (`var/lib/ucf/registry`, one `PACKAGE \t PATH` a line, written by
//! `ucfr`) is dpkg's companion for configuration files a package creates
//! from a template in its postinst instead of shipping them as conffiles:
//! Debian's `sshd_config` and dovecot's `conf.d`, among others. No `.list`
//! names them, yet they are the package's, not the admin's: a file the
//! registry assigns to a package on disk is that package's.
//!
//! dpkg's log (`var/log/dpkg.log`, and `dpkg.log.1` before the last
//! rotation) says when dpkg ran ([`runs`]): maintainer scripts and
//! triggers rewrite files no package owns (`/etc/shells`, the
//! `pam-auth-update` files, `ca-certificates.crt`) only then.

use anyhow::{Context as _, Result};

use super::{paragraphs, Db};
use crate::sysroot::{SysPath, SysRoot};

const STATUS: &str = "/var/lib/dpkg/status";
const INFO: &str = "/var/lib/dpkg/info";
const DIVERSIONS: &str = "/var/lib/dpkg/diversions";
const UPDATES: &str = "/var/lib/dpkg/updates";
pub(crate) const UCF_REGISTRY: &str = "/var/lib/ucf/registry";

/// (path, package) pairs of ucf's registry. ucfr writes `PACKAGE \t PATH`
/// (spaces around the tab); a package may carry `:ARCH`, which dpkg's
/// names here do not.
pub(crate) fn parse_ucf_registry(text: &[u8]) -> Vec<(SysPath, String)> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let tab = line.iter().position(|b| *b == b'\t')?;
            let pkg = String::from_utf8_lossy(&line[..tab]).trim().to_string();
            let path = line[tab + 1..].trim_ascii();
            let pkg = pkg.split(':').next().unwrap_or_default().to_string();
            (!pkg.is_empty() && path.first() == Some(&b'/')).then(|| (SysPath::new(path), pkg))
        })
        .collect()
}

/// path → (diverted-to path, diverting package; `:` for a local diversion)
pub(crate) fn parse_diversions(
    text: &[u8],
) -> std::collections::HashMap<SysPath, (SysPath, String)> {
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    lines
        .chunks_exact(3)
        .filter(|c| !c[0].is_empty() && !c[1].is_empty())
        .map(|c| {
            (
                SysPath::new(c[0]),
                (
                    SysPath::new(c[1]),
                    String::from_utf8_lossy(c[2]).into_owned(),
                ),
            )
        })
        .collect()
}

/// One package paragraph of the status file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stanza {
    pub package: String,
    pub arch: Option<String>,
    pub version: String,
    /// Removed but not purged (`config-files`, `half-installed`): not
    /// installed, but its list still names the conffiles left on disk,
    /// which `dpkg -S` still attributes to it.
    pub leftover: bool,
}

/// The packages of a status file whose files are on disk: installed ones
/// and the leftovers of removed ones. `text` may hold several paragraphs of
/// one package (the status file, then the `updates/` records): the last one
/// is its state, as for dpkg.
pub(crate) fn parse_status(text: &[u8]) -> Vec<Stanza> {
    // (`seen` indexes `out` by package and architecture)
    let mut out: Vec<Option<Stanza>> = Vec::new();
    let mut seen: foldhash::HashMap<(String, Option<String>), usize> = Default::default();
    for para in paragraphs(text) {
        let (mut package, mut arch, mut version, mut status) = (None, None, None, None);
        for line in para.split(|b| *b == b'\n') {
            // continuation lines of multi-line fields start with a space
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim().to_string();
            match k {
                "Package" => package = Some(v),
                "Architecture" => arch = Some(v),
                "Version" => version = Some(v),
                "Status" => status = Some(v),
                _ => {}
            }
        }
        let Some(package) = package else {
            continue;
        };
        let leftover = match status.as_deref().and_then(|s| s.split_whitespace().nth(2)) {
            Some(
                "installed" | "half-configured" | "unpacked" | "triggers-awaited"
                | "triggers-pending",
            ) => Some(false),
            Some("config-files" | "half-installed") => Some(true),
            _ => None,
        };
        let key = (package.clone(), arch.clone());
        let stanza = leftover.map(|leftover| Stanza {
            package,
            arch,
            version: version.unwrap_or_default(),
            leftover,
        });
        match seen.get(&key) {
            Some(&i) => out[i] = stanza,
            None => {
                seen.insert(key, out.len());
                out.push(stanza);
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// The packages dpkg did not finish with, as `dpkg --audit` finds them:
/// (name, state) for each whose `Status` says it is unpacked but not
/// configured, half-configured, half-installed, or waiting for triggers, or
/// whose error flag says it must be reinstalled. A transaction that failed
/// (a maintainer script exited non-zero) or was interrupted leaves them so.
/// `text` may hold several paragraphs of one package (the status file, then
/// the `updates/` records): the last one is its state, as for dpkg.
pub(crate) fn parse_unfinished(text: &[u8]) -> Vec<(String, String)> {
    // (package, architecture) → its latest state, in order of first sight
    // (`seen` indexes `latest`: a status file holds thousands of packages)
    let mut latest: Vec<((String, String), Option<String>)> = Vec::new();
    let mut seen: foldhash::HashMap<(String, String), usize> = Default::default();
    for para in paragraphs(text) {
        let (mut package, mut arch, mut status) = (None, String::new(), None);
        for line in para.split(|b| *b == b'\n') {
            let field = |name: &[u8]| {
                line.strip_prefix(name)
                    .map(|v| String::from_utf8_lossy(v).trim().to_string())
            };
            if let Some(v) = field(b"Package:") {
                package = Some(v);
            } else if let Some(v) = field(b"Architecture:") {
                arch = v;
            } else if let Some(v) = field(b"Status:") {
                status = Some(v);
            }
        }
        let (Some(package), Some(status)) = (package, status) else {
            continue;
        };
        let words: Vec<&str> = status.split_whitespace().collect();
        let state = match words[..] {
            [_want, flag, state] => {
                let unfinished = matches!(
                    state,
                    "unpacked"
                        | "half-configured"
                        | "half-installed"
                        | "triggers-awaited"
                        | "triggers-pending"
                );
                if flag == "reinstreq" {
                    Some(format!("{state}, must be reinstalled"))
                } else if unfinished {
                    Some(state.to_string())
                } else {
                    None
                }
            }
            _ => None,
        };
        let key = (package, arch);
        match seen.get(&key) {
            Some(&i) => latest[i].1 = state,
            None => {
                seen.insert(key.clone(), latest.len());
                latest.push((key, state));
            }
        }
    }
    latest
        .into_iter()
        .filter_map(|((package, _), state)| state.map(|s| (package, s)))
        .collect()
}

/// The status file followed by the records dpkg journals in `updates/`
/// (one per state change, named `0000`, `0001`, …) and folds into the
/// status file only when it checkpoints or exits. A dpkg that was killed
/// (apt interrupted, the session lost, a power cut) leaves its last states
/// there only: `dpkg --audit` and apt ("dpkg was interrupted") read them,
/// and so must anything that asks what dpkg left unfinished.
fn status_with_updates(root: &SysRoot) -> Result<Option<Vec<u8>>> {
    let Some(mut text) = root
        .read_follow(&SysPath::new(STATUS))
        .with_context(|| format!("cannot read {STATUS}"))?
    else {
        return Ok(None);
    };
    let updates = SysPath::new(UPDATES);
    // (equal-length digit names: sorted as bytes is dpkg's order)
    for name in root.list_dir(&updates) {
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue; // `tmp.i`, the record being written
        }
        let p = updates.join(&name);
        if let Some(rec) = root
            .read_follow(&p)
            .with_context(|| format!("cannot read {}", p.lossy()))?
        {
            text.extend_from_slice(b"\n\n");
            text.extend_from_slice(&rec);
        }
    }
    Ok(Some(text))
}

/// Whether any `Status:` line of `text` names a state that is not done
/// (or asks for a reinstall): the cheap first look, since `check` reads the
/// status file every time and nearly always finds every package finished.
fn any_unfinished_status(text: &[u8]) -> bool {
    // memchr's substring search jumps from one `Status:` line to the next
    // (a few per package) instead of splitting every line of a status
    // file that is ~1 MB on a server: 0.6 -> under 0.1 ms per check.
    let starts = text
        .starts_with(b"Status:")
        .then_some(0)
        .into_iter()
        .chain(memchr::memmem::find_iter(text, b"\nStatus:").map(|i| i + 1));
    starts.into_iter().any(|at| {
        let rest = &text[at..];
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        let Some(v) = line.strip_prefix(b"Status:") else {
            return false;
        };
        let mut words = v
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (_want, flag, state) = (words.next(), words.next(), words.next());
        flag == Some(b"reinstreq".as_slice())
            || !matches!(
                state,
                Some(b"installed" | b"config-files" | b"not-installed") | None
            )
    })
}

pub(crate) fn unfinished(root: &SysRoot) -> Vec<(String, String)> {
    match status_with_updates(root) {
        Ok(Some(text)) if any_unfinished_status(&text) => parse_unfinished(&text),
        _ => Vec::new(),
    }
}

pub(crate) fn read(root: &SysRoot) -> Result<Option<Db>> {
    // (with a killed dpkg's `updates/` records: the versions it unpacked)
    let Some(status) = status_with_updates(root)? else {
        return Ok(None);
    };
    let info = SysPath::new(INFO);
    let diversions = root
        .read_follow(&SysPath::new(DIVERSIONS))
        .with_context(|| format!("cannot read {DIVERSIONS}"))?
        .map(|t| parse_diversions(&t))
        .unwrap_or_default();
    let mut db = Db::default();
    let stanzas = parse_status(&status);
    // ucf's files of the packages on disk (a purged package's entries are
    // removed by `ucfr --purge`; any left behind name no package here)
    let ucf = root
        .read_follow(&SysPath::new(UCF_REGISTRY))
        .with_context(|| format!("cannot read {UCF_REGISTRY}"))?
        .map(|t| parse_ucf_registry(&t))
        .unwrap_or_default();
    {
        let known: foldhash::HashSet<&str> = stanzas.iter().map(|s| s.package.as_str()).collect();
        db.files.extend(
            ucf.into_iter()
                .filter(|(_, pkg)| known.contains(pkg.as_str())),
        );
    }
    for st in stanzas {
        let mut names = Vec::new();
        if let Some(a) = &st.arch {
            names.push(format!("{}:{a}.list", st.package));
        }
        names.push(format!("{}.list", st.package));
        for n in names {
            if let Some(list) = root
                .read_follow(&info.join(&n))
                .with_context(|| format!("cannot read {INFO}/{n}"))?
            {
                db.files.extend(
                    list.split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let p = SysPath::new(l);
                            match diversions.get(&p) {
                                Some((to, by)) if *by != st.package => {
                                    (to.clone(), st.package.clone())
                                }
                                _ => (p, st.package.clone()),
                            }
                        }),
                );
                break;
            }
        }
        if !st.leftover {
            db.installed.insert(st.package, st.version);
        }
    }
    Ok(Some(db))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unfinished_packages_are_those_dpkg_audit_names() {
        let status = b"Package: done\nStatus: install ok installed\nVersion: 1\n\n\
Package: unpacked\nStatus: install ok unpacked\nVersion: 2\n\n\
Package: failed\nStatus: install ok half-configured\nDescription: x\n multi\n\n\
Package: broken\nStatus: install reinstreq half-installed\n\n\
Package: gone\nStatus: deinstall ok config-files\n\n\
Package: trig\nStatus: install ok triggers-pending\n";
        assert_eq!(
            super::parse_unfinished(status),
            [
                ("unpacked".to_string(), "unpacked".to_string()),
                ("failed".into(), "half-configured".into()),
                (
                    "broken".into(),
                    "half-installed, must be reinstalled".into()
                ),
                ("trig".into(), "triggers-pending".into()),
            ]
        );
        // the quick first look agrees: it finds these, and nothing in a
        // status file where every package is done (or gone)
        assert!(super::any_unfinished_status(status));
        assert!(!super::any_unfinished_status(
            b"Package: done\nStatus: install ok installed\n\n\
Package: held\nStatus: hold ok installed\n\n\
Package: gone\nStatus: deinstall ok config-files\n\n\
Package: purged\nStatus: purge ok not-installed\n"
        ));
        assert!(super::any_unfinished_status(
            b"Package: broken\nStatus: install reinstreq installed\n"
        ));
    }

    /// The versions a killed dpkg unpacked are in its `updates/` records:
    /// the last paragraph of a package wins, also for the installed list,
    /// and a package a record says is gone is gone.
    #[test]
    fn installed_versions_take_the_updates_records() {
        let d = tempfile::tempdir().unwrap();
        let dpkg = d.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("updates")).unwrap();
        std::fs::create_dir_all(dpkg.join("info")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: foo\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0-1\n\n\
Package: bar\nStatus: install ok installed\nArchitecture: all\nVersion: 3\n",
        )
        .unwrap();
        std::fs::write(
            dpkg.join("updates/0000"),
            "Package: foo\nStatus: install ok unpacked\nArchitecture: all\nVersion: 2.0-1\n",
        )
        .unwrap();
        std::fs::write(
            dpkg.join("updates/0001"),
            "Package: bar\nStatus: purge ok not-installed\nArchitecture: all\n",
        )
        .unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let db = super::read(&root).unwrap().unwrap();
        assert_eq!(
            db.installed.into_iter().collect::<Vec<_>>(),
            [("foo".to_string(), "2.0-1".to_string())]
        );
    }

    /// The `updates/` records come after `status`, and a package's last
    /// paragraph is its state: one finished since is not listed, one a
    /// killed dpkg left half-done is.
    #[test]
    fn a_package_state_in_updates_overrides_the_status_file() {
        let d = tempfile::tempdir().unwrap();
        let dpkg = d.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("updates")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: foo\nStatus: install ok installed\nArchitecture: all\n\n\
Package: bar\nStatus: install ok unpacked\nArchitecture: all\n\n\
Package: lib\nStatus: install ok installed\nArchitecture: amd64\n\n\
Package: lib\nStatus: install ok installed\nArchitecture: i386\n",
        )
        .unwrap();
        let rec = |n: &str, text: &str| std::fs::write(dpkg.join("updates").join(n), text).unwrap();
        rec(
            "0000",
            "Package: foo\nStatus: install reinstreq half-installed\nArchitecture: all\n",
        );
        rec(
            "0001",
            "Package: bar\nStatus: install ok installed\nArchitecture: all\n",
        );
        rec(
            "0002",
            "Package: lib\nStatus: install ok half-configured\nArchitecture: i386\n",
        );
        // the record being written: padding, never a state
        rec(
            "tmp.i",
            "Package: bar\nStatus: install ok half-configured\n",
        );
        let root = SysRoot::open(d.path()).unwrap();
        assert_eq!(
            super::unfinished(&root),
            [
                (
                    "foo".to_string(),
                    "half-installed, must be reinstalled".to_string()
                ),
                ("lib".into(), "half-configured".into()),
            ]
        );
    }

    use super::*;

    const STATUS_TEXT: &str = "\
Package: foo
Status: install ok installed
Priority: optional
Architecture: all
Version: 1.0-1
Description: a test
 with a continuation line
 Package: not-a-package

Package: libbar
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.3-4

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 0.9-1

Package: held
Status: hold ok installed
Architecture: amd64
Version: 5-1
";

    #[test]
    fn status_keeps_what_is_on_disk() {
        let s = parse_status(STATUS_TEXT.as_bytes());
        let names: Vec<(&str, bool)> = s.iter().map(|s| (s.package.as_str(), s.leftover)).collect();
        assert_eq!(
            names,
            [
                ("foo", false),
                ("libbar", false),
                ("gone", true),
                ("held", false)
            ]
        );
        assert_eq!(s[0].version, "1.0-1");
    }

    /// A root with STATUS_TEXT, the given `info/*.list` files and optional
    /// diversions, read through the manager-independent entry point.
    fn read_root(lists: &[(&str, &str)], diversions: Option<&str>) -> super::super::PackageInfo {
        let d = tempfile::tempdir().unwrap();
        let info = d.path().join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(d.path().join("var/lib/dpkg/status"), STATUS_TEXT).unwrap();
        for (name, text) in lists {
            std::fs::write(info.join(name), text).unwrap();
        }
        if let Some(text) = diversions {
            std::fs::write(d.path().join("var/lib/dpkg/diversions"), text).unwrap();
        }
        super::super::read(&SysRoot::open(d.path()).unwrap())
    }

    #[test]
    fn reads_lists_including_multiarch_names() {
        let info = read_root(
            &[
                (
                    "foo.list",
                    "/.\n/etc\n/etc/foo\n/etc/foo/main.conf\n/usr/bin/fooctl\n",
                ),
                ("libbar:amd64.list", "/etc/bar.conf\n"),
                ("gone.list", "/etc/gone.conf\n"),
            ],
            None,
        );
        assert_eq!(info.packages.managers, ["dpkg"]);
        assert_eq!(info.packages.installed.len(), 3);
        assert_eq!(info.packages.installed["libbar"], "2.3-4");
        assert_eq!(info.owners_of(&"/etc/foo/main.conf".into()), ["foo"]);
        assert_eq!(info.owners_of(&"/etc/bar.conf".into()), ["libbar"]);
        // removed, not purged: not installed, but its leftover conffile is
        // still its own, as `dpkg -S` says
        assert!(!info.packages.installed.contains_key("gone"));
        assert_eq!(info.owners_of(&"/etc/gone.conf".into()), ["gone"]);
        assert!(info.owners_of(&"/".into()).is_empty());
    }

    /// ucfr's `PACKAGE \t PATH` lines; an `:ARCH` qualifier is dropped
    /// (status names the package without it), junk lines are not paths.
    #[test]
    fn ucf_registry_lines_name_package_and_path() {
        let text = b"dovecot-core \t /etc/dovecot/conf.d/10-director.conf\n\
openssh-server \t /etc/ssh/sshd_config\n\
libfoo:amd64 \t /etc/foo.conf\n\
garbage\n\
nopath \t relative/file\n";
        assert_eq!(
            parse_ucf_registry(text),
            [
                (
                    SysPath::new("/etc/dovecot/conf.d/10-director.conf"),
                    "dovecot-core".to_string()
                ),
                (
                    SysPath::new("/etc/ssh/sshd_config"),
                    "openssh-server".into()
                ),
                (SysPath::new("/etc/foo.conf"), "libfoo".into()),
            ]
        );
    }

    #[test]
    fn diversions_move_ownership_to_the_diverted_name() {
        // libbar diverts foo's main.conf away and ships its own; the admin
        // diverted fooctl locally
        let info = read_root(
            &[
                ("foo.list", "/etc/foo/main.conf\n/usr/bin/fooctl\n"),
                ("libbar:amd64.list", "/etc/foo/main.conf\n"),
            ],
            Some(
                "/etc/foo/main.conf\n/etc/foo/main.conf.distrib\nlibbar\n\
                 /usr/bin/fooctl\n/usr/bin/fooctl.real\n:\n",
            ),
        );
        assert_eq!(info.owners_of(&"/etc/foo/main.conf".into()), ["libbar"]);
        assert_eq!(
            info.owners_of(&"/etc/foo/main.conf.distrib".into()),
            ["foo"]
        );
        assert_eq!(info.owners_of(&"/usr/bin/fooctl.real".into()), ["foo"]);
        assert!(info.owners_of(&"/usr/bin/fooctl".into()).is_empty());
    }
}

const LOGS: [&str; 2] = ["/var/log/dpkg.log.1", "/var/log/dpkg.log"];

/// One dpkg run, from its `startup` line to its last line: each line's
/// time and the line as logged. The lines say which package dpkg was at,
/// but only to the second, and a second holds a dozen configures: which
/// script wrote a file cannot be told from them, only that dpkg ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub lines: Vec<(jiff::Timestamp, String)>,
}

/// The runs dpkg's log records, oldest first. dpkg stamps its lines in
/// local time without a zone: the root's `/etc/localtime` says which (UTC
/// without one, as glibc has it). A log that cannot be read is no runs.
pub(crate) fn runs(root: &SysRoot) -> Vec<Run> {
    let tz = root
        .read_follow(&SysPath::new("/etc/localtime"))
        .ok()
        .flatten()
        .and_then(|b| jiff::tz::TimeZone::tzif("localtime", &b).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let mut out = Vec::new();
    for log in LOGS {
        if let Some(text) = root.read_text(log) {
            out.extend(parse_log(&text, &tz));
        }
    }
    out
}

pub(crate) fn parse_log(text: &str, tz: &jiff::tz::TimeZone) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for line in text.lines() {
        let Some((stamp, rest)) = line.get(..19).zip(line.get(20..)) else {
            continue;
        };
        let Ok(t) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", stamp)
            .and_then(|d| d.to_zoned(tz.clone()))
        else {
            continue;
        };
        match out.last_mut() {
            Some(run) if !rest.starts_with("startup ") => {
                run.lines.push((t.timestamp(), rest.to_string()))
            }
            _ => out.push(Run {
                lines: vec![(t.timestamp(), rest.to_string())],
            }),
        }
    }
    out
}

impl Run {
    /// Whether `t` falls within this run (its last line's second included).
    pub fn covers(&self, t: jiff::Timestamp) -> bool {
        let (Some((first, _)), Some((last, _))) = (self.lines.first(), self.lines.last()) else {
            return false;
        };
        *first <= t && t < *last + jiff::SignedDuration::from_secs(1)
    }

    /// When it started and ended, as logged (`2026-11-23 13:09:27`).
    pub fn span(&self) -> (String, String) {
        let show = |l: Option<&(jiff::Timestamp, String)>| {
            l.map(|(t, _)| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        };
        (show(self.lines.first()), show(self.lines.last()))
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn runs_start_at_startup_and_name_the_action_under_way() {
        let log = "2026-11-23 13:11:28 startup packages configure\n\
                   2026-11-23 13:11:29 configure libpam-runtime:all 1.5.2-6 1.7.0-5\n\
                   2026-11-23 13:11:29 status half-configured libpam-runtime:all 1.7.0-5\n\
                   2026-11-23 13:11:30 status installed libpam-runtime:all 1.7.0-5\n\
                   2026-11-23 14:00:00 startup archives unpack\n";
        let runs = parse_log(log, &jiff::tz::TimeZone::UTC);
        assert_eq!(runs.len(), 2);
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert!(runs[0].covers(t("2026-11-23T13:11:29.7Z")));
        assert!(runs[0].covers(t("2026-11-23T13:11:30.9Z")));
        assert!(!runs[0].covers(t("2026-11-23T13:11:31Z")));
        assert!(!runs[0].covers(t("2026-11-23T13:11:27.9Z")));
        assert_eq!(
            runs[0].span(),
            (
                "2026-11-23 13:11:28 UTC".to_string(),
                "2026-11-23 13:11:30 UTC".to_string()
            )
        );
    }
}
