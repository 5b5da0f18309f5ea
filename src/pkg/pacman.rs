//! pacman's local database, read directly: `DBPATH/local/NAME-VER-REL/desc`
//! (`%NAME%`, `%VERSION%`) and `files` (`%FILES%`, paths relative to the
//! root, directories with a trailing `/`). DBPATH is the root's own
//! `DBPath` from `/etc/pacman.conf`, else `/var/lib/pacman`.

use anyhow::{anyhow, Result};

use super::{paragraphs, Db};
use crate::sysroot::{SysPath, SysRoot};

/// `DBPath` of the root's pacman.conf (`[options]` section), if set.
fn db_path(root: &SysRoot) -> SysPath {
    let conf = root.read_text("/etc/pacman.conf").unwrap_or_default();
    let mut in_options = false;
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_options = line == "[options]";
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if in_options && k.trim() == "DBPath" && !v.trim().is_empty() {
                return SysPath::new(v.trim());
            }
        }
    }
    SysPath::new("/var/lib/pacman")
}

/// `%SECTION%` → its lines, for one desc/files document.
fn sections(text: &[u8]) -> Vec<(&[u8], Vec<&[u8]>)> {
    paragraphs(text)
        .filter_map(|p| {
            let mut lines = p.split(|b| *b == b'\n');
            let head = lines.next()?;
            let name = head.strip_prefix(b"%")?.strip_suffix(b"%")?;
            Some((name, lines.filter(|l| !l.is_empty()).collect()))
        })
        .collect()
}

/// (name, version) from a `desc` file.
pub(crate) fn parse_desc(text: &[u8]) -> Option<(String, String)> {
    let s = sections(text);
    let get = |key: &[u8]| {
        s.iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.first())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some((get(b"NAME")?, get(b"VERSION")?))
}

/// Paths of a `files` file (`%FILES%`), absolute.
pub(crate) fn parse_files(text: &[u8]) -> Vec<SysPath> {
    sections(text)
        .into_iter()
        .filter(|(k, _)| *k == b"FILES")
        .flat_map(|(_, v)| v)
        .map(SysPath::new)
        .collect()
}

pub(crate) fn read(root: &SysRoot) -> Result<Option<Db>> {
    let local = db_path(root).join("local");
    if root.open_dir(&local).is_err() && root.list_dir(&local).is_empty() {
        return Ok(None);
    }
    let mut db = Db::default();
    for entry in root.list_dir(&local) {
        let dir = local.join(&entry);
        // ALPM_DB_VERSION and stray files sit next to the package dirs
        let Ok(Some(desc)) = root.read_follow(&dir.join("desc")) else {
            continue;
        };
        let (name, version) =
            parse_desc(&desc).ok_or_else(|| anyhow!("{}/desc has no %NAME% or %VERSION%", dir))?;
        if let Some(files) = root.read_follow(&dir.join("files"))? {
            db.files
                .extend(parse_files(&files).into_iter().map(|p| (p, name.clone())));
        }
        db.installed.insert(name, version);
    }
    Ok(Some(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: &str = "%NAME%\nfoo\n\n%VERSION%\n2:1.0-3\n\n%BASE%\nfoo\n\n\
                        %DESC%\nA test package\n\n%ARCH%\nany\n\n";
    const FILES: &str = "%FILES%\netc/\netc/foo/\netc/foo/main.conf\nusr/bin/fooctl\n\n\
                         %BACKUP%\netc/foo/main.conf\td41d8cd98f00b204e9800998ecf8427e\n\n";

    #[test]
    fn desc_and_files_parse() {
        assert_eq!(
            parse_desc(DESC.as_bytes()),
            Some(("foo".into(), "2:1.0-3".into()))
        );
        let f: Vec<String> = parse_files(FILES.as_bytes())
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            f,
            ["/etc", "/etc/foo", "/etc/foo/main.conf", "/usr/bin/fooctl"]
        );
    }

    #[test]
    fn reads_a_hand_written_local_db() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("var/lib/pacman/local/foo-2:1.0-3");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("desc"), DESC).unwrap();
        std::fs::write(pkg.join("files"), FILES).unwrap();
        std::fs::write(d.path().join("var/lib/pacman/local/ALPM_DB_VERSION"), "9\n").unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let info = super::super::read(&root);
        assert_eq!(info.packages.managers, ["pacman"]);
        assert_eq!(info.packages.installed["foo"], "2:1.0-3");
        assert_eq!(info.owners_of(&"/etc/foo/main.conf".into()), ["foo"]);
        assert!(info.owners_of(&"/etc/pam.d/imap".into()).is_empty());
    }

    #[test]
    fn db_path_comes_from_the_roots_pacman_conf() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/pacman.conf"),
            "[options]\nDBPath = /srv/pacdb/ # moved\n[core]\nDBPath = /nope\n",
        )
        .unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        assert_eq!(db_path(&root).to_string(), "/srv/pacdb");
    }
}
