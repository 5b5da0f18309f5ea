//! The effective sshd configuration of a root, computed the way sshd reads
//! it (first value wins, `Include` globs in lexical order relative to
//! /etc/ssh, the openSUSE vendor file when /etc has none, `Match` blocks
//! apart), and `ssh/password-auth-effective` (incident 2: a cloud-init
//! drop-in included first turns password logins back on) and
//! `ssh/pubkey-auth-off` (a drop-in turning key logins off); and the host
//! keys, replaced or gone since the snapshot, as one finding
//! (`ssh/host-keys-changed`, `ssh/host-keys-vanished`) instead of a
//! `file/*` finding per key file.
//!
//! `tests/ssh_corpus.rs` holds this parser to the real `sshd -T`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Check, Context, Files, Live, Recorded};
use crate::diff::Change;
use crate::report::{Evidence, Finding, Severity};
use crate::sysroot::SysPath;

pub struct Ssh;

const MAIN: &str = "/etc/ssh/sshd_config";
const VENDOR_MAIN: &str = "/usr/etc/ssh/sshd_config";
const SSHDIR: &str = "/etc/ssh";

/// One line that set a keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The first argument, lowercased for yes/no-like keywords, aliases
    /// folded (`without-password` → `prohibit-password`).
    pub value: String,
    pub path: SysPath,
    pub line: usize,
    pub text: String,
}

/// A `Match` block and what it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchBlock {
    pub criteria: String,
    pub path: SysPath,
    pub line: usize,
    pub settings: BTreeMap<String, Setting>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// keyword (lowercase) → the line that wins outside any Match block.
    pub global: BTreeMap<String, Setting>,
    /// keyword → later global lines that sshd ignored.
    pub ignored: BTreeMap<String, Vec<Setting>>,
    pub matches: Vec<MatchBlock>,
    /// Files read, in order.
    pub files: Vec<SysPath>,
    /// Files sshd reads that could not be read here (larger than guard
    /// reads, not a regular file, no permission): the verdict misses them.
    pub unread: Vec<(SysPath, String)>,
    /// Includes nest deeper than sshd allows: sshd refuses the whole
    /// configuration ("Too many recursive configuration includes").
    pub too_deep: bool,
}

impl Effective {
    /// The value sshd uses globally, falling back to its built-in default.
    pub fn value(&self, key: &str) -> String {
        self.global
            .get(key)
            .map(|s| s.value.clone())
            .unwrap_or_else(|| default(key).to_string())
    }
}

/// sshd's compiled-in defaults for the keywords guard judges.
pub fn default(key: &str) -> &'static str {
    match key {
        "passwordauthentication" | "kbdinteractiveauthentication" | "pubkeyauthentication" => "yes",
        "permitemptypasswords" | "usepam" | "x11forwarding" => "no",
        "permitrootlogin" => "prohibit-password",
        "maxauthtries" => "6",
        _ => "",
    }
}

/// The main file sshd reads on this root.
pub fn main_config(files: &dyn Files) -> Option<SysPath> {
    [MAIN, VENDOR_MAIN]
        .iter()
        .map(SysPath::new)
        .find(|p| files.text(p).is_some())
}

fn canonical_key(k: &str) -> String {
    let k = k.to_ascii_lowercase();
    match k.as_str() {
        "challengeresponseauthentication" => "kbdinteractiveauthentication".into(),
        _ => k,
    }
}

fn canonical_value(key: &str, v: &str) -> String {
    match key {
        "passwordauthentication"
        | "kbdinteractiveauthentication"
        | "permitemptypasswords"
        | "usepam"
        | "pubkeyauthentication"
        | "x11forwarding"
        | "permitrootlogin" => {
            let v = v.to_ascii_lowercase();
            if v == "without-password" {
                "prohibit-password".into()
            } else {
                v
            }
        }
        _ => v.to_string(),
    }
}

/// Splits a config line like sshd: the keyword ends at whitespace or `=`,
/// arguments may be quoted, a `#` starting an argument ends the line.
pub fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let s = line.trim_start();
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let end = s
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(s.len());
    let keyword = s[..end].to_string();
    let mut rest = s[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break;
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => {
                    quote = None;
                    chars.next();
                }
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    chars.next();
                }
                None if c.is_whitespace() => break,
                _ if c == '\\' => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        arg.push(n);
                    }
                }
                _ => {
                    arg.push(c);
                    chars.next();
                }
            }
        }
        args.push(arg);
    }
    Some((keyword, args))
}

/// Expands an Include pattern the way glob(3) does: per component,
/// sorted, leading dots only matched literally.
fn expand(files: &dyn Files, pattern: &str) -> Vec<SysPath> {
    let full = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("{SSHDIR}/{pattern}")
    };
    let mut current = vec![SysPath::root()];
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    for comp in full.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        let magic = comp.contains(['*', '?', '[']);
        for dir in &current {
            if !magic {
                next.push(dir.join(comp));
                continue;
            }
            let Ok(pat) = glob::Pattern::new(comp) else {
                continue;
            };
            // matched as text, joined as the bytes they are: a drop-in
            // whose name is not UTF-8 is read by sshd all the same
            for n in files.names(dir) {
                if pat.matches_with(&String::from_utf8_lossy(&n), opts) {
                    next.push(dir.join(n));
                }
            }
        }
        current = next;
    }
    // glob(3) needs the result to exist; a non-magic miss is dropped later
    // when the file cannot be read.
    current.sort();
    current
}

struct State<'a> {
    files: &'a dyn Files,
    eff: Effective,
    /// Inside a Match block that is not `Match all`: index into matches.
    in_match: Option<usize>,
    depth: usize,
    /// An include went deeper than sshd allows: sshd stops there with a
    /// fatal error, and so does the walk. Going on with the siblings, as
    /// it did, made a drop-in dir whose files include `*.conf` (three of
    /// them: 3^16 reads) a `check` that never ends.
    too_deep: bool,
}

fn read(st: &mut State, path: &SysPath) {
    // sshd's SERVCONF_MAX_DEPTH: "Too many recursive configuration includes"
    if st.depth > 16 {
        st.too_deep = true;
    }
    if st.too_deep {
        return;
    }
    let Some(text) = st.files.text(path) else {
        // (an Include of a name that is not there is no error for sshd)
        if let Some(why) = st.files.unreadable(path) {
            st.eff.unread.push((path.clone(), why));
        }
        return;
    };
    st.eff.files.push(path.clone());
    for (i, raw) in text.lines().enumerate() {
        let Some((kw, args)) = split_line(raw) else {
            continue;
        };
        let key = canonical_key(&kw);
        if key == "match" {
            let crit = args.join(" ");
            if crit.eq_ignore_ascii_case("all") {
                st.in_match = None;
            } else {
                st.eff.matches.push(MatchBlock {
                    criteria: crit,
                    path: path.clone(),
                    line: i + 1,
                    settings: BTreeMap::new(),
                });
                st.in_match = Some(st.eff.matches.len() - 1);
            }
            continue;
        }
        if key == "include" {
            // a Match block opened in an included file ends with that file
            // (sshd -T agrees: tests/sshd_corpus/22-match-in-included-file)
            let outer = st.in_match;
            for a in &args {
                for p in expand(st.files, a) {
                    if st.too_deep {
                        return;
                    }
                    st.depth += 1;
                    read(st, &p);
                    st.depth -= 1;
                    st.in_match = outer;
                }
            }
            continue;
        }
        let Some(first) = args.first() else { continue };
        let s = Setting {
            value: canonical_value(&key, first),
            path: path.clone(),
            line: i + 1,
            text: raw.trim().to_string(),
        };
        match st.in_match {
            Some(m) => {
                st.eff.matches[m].settings.entry(key).or_insert(s);
            }
            None => {
                use std::collections::btree_map::Entry;
                match st.eff.global.entry(key) {
                    Entry::Occupied(o) => {
                        st.eff.ignored.entry(o.key().clone()).or_default().push(s)
                    }
                    Entry::Vacant(v) => {
                        v.insert(s);
                    }
                }
            }
        }
    }
}

/// The effective configuration starting at `main`.
pub fn effective(files: &dyn Files, main: &SysPath) -> Effective {
    let mut st = State {
        files,
        eff: Effective::default(),
        in_match: None,
        depth: 0,
        too_deep: false,
    };
    read(&mut st, main);
    st.eff.too_deep = st.too_deep;
    st.eff
}

/// First global value of `key` written in `main` itself (not via Include):
/// what the admin meant.
fn written_in_main(files: &dyn Files, main: &SysPath, key: &str) -> Option<Setting> {
    let text = files.text(main)?;
    let mut in_match = false;
    for (i, raw) in text.lines().enumerate() {
        let Some((kw, args)) = split_line(raw) else {
            continue;
        };
        let k = canonical_key(&kw);
        if k == "match" {
            in_match = !args.join(" ").eq_ignore_ascii_case("all");
            continue;
        }
        if !in_match && k == key {
            return Some(Setting {
                value: canonical_value(&k, args.first()?),
                path: main.clone(),
                line: i + 1,
                text: raw.trim().to_string(),
            });
        }
    }
    None
}

/// How much a value weakens the server; higher is worse. For the password
/// keywords that is more permissive; for `PubkeyAuthentication` the ranking
/// is reversed: `no` is worse, because with passwords off it shuts out the
/// admin, whose only way in is a key.
pub fn rank(key: &str, v: &str) -> u8 {
    match key {
        "pubkeyauthentication" => u8::from(v == "no"),
        "permitrootlogin" => match v {
            "yes" => 3,
            "prohibit-password" => 2,
            "forced-commands-only" => 1,
            _ => 0,
        },
        _ => u8::from(v == "yes"),
    }
}

/// The keywords judged, with how sshd spells them.
pub const JUDGED: &[(&str, &str)] = &[
    ("passwordauthentication", "PasswordAuthentication"),
    (
        "kbdinteractiveauthentication",
        "KbdInteractiveAuthentication",
    ),
    ("permitemptypasswords", "PermitEmptyPasswords"),
    ("permitrootlogin", "PermitRootLogin"),
    ("pubkeyauthentication", "PubkeyAuthentication"),
];

/// The finding id for a judged keyword: key logins turned off is no
/// password weakening and gets its own id.
fn finding_id(key: &str) -> &'static str {
    match key {
        "pubkeyauthentication" => "ssh/pubkey-auth-off",
        _ => "ssh/password-auth-effective",
    }
}

/// What the effective value `v` of `key` lets in, for the message.
fn what(key: &str, v: &str) -> &'static str {
    match key {
        // `prohibit-password` (alias `without-password`) still refuses
        // root's password: saying otherwise sends the admin hunting for
        // a password hole that is not there
        "permitrootlogin" if v == "prohibit-password" => "ssh permits root login with a key",
        "permitrootlogin" if v == "forced-commands-only" => {
            "ssh permits root login for forced commands"
        }
        "permitrootlogin" => "ssh permits root login with a password",
        "permitemptypasswords" => "ssh accepts empty passwords",
        "pubkeyauthentication" => "ssh refuses key logins",
        _ => "ssh accepts passwords",
    }
}

fn ev(s: &Setting, note: &str) -> Evidence {
    Evidence::new(&s.path, Some(s.line as u32), Some(s.text.clone()), note)
}

impl Check for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let mut out = host_keys(cx);
        let live = Live(cx.root);
        let Some(main) = main_config(&live) else {
            return out;
        };
        let now = effective(&live, &main);
        if now.too_deep {
            // sshd will not start: what it would accept is moot
            out.push(
                Finding::new(
                    "ssh/config-refused",
                    Severity::Critical,
                    &[&main],
                    format!(
                        "sshd refuses its configuration: the Includes of {main} nest deeper \
                         than the 16 levels sshd allows (\"Too many recursive configuration \
                         includes\"), so sshd will not start"
                    ),
                )
                .fix(
                    "remove the Include that reads its own directory again (a drop-in \
                     including sshd_config.d/*.conf), then confirm with: sshd -t",
                ),
            );
            return out;
        }
        if !now.unread.is_empty() {
            let paths: Vec<&SysPath> = now.unread.iter().map(|(p, _)| p).collect();
            let what: Vec<String> = now
                .unread
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            out.push(
                Finding::new(
                    "ssh/config-unreadable",
                    Severity::Critical,
                    &paths,
                    format!(
                        "sshd's configuration was not judged whole: sshd reads {}, which guard \
                         could not",
                        what.join(", ")
                    ),
                )
                .fix("look at what that file sets, then confirm with: sshd -T"),
            );
        }
        let before = cx.baseline.and_then(|b| {
            let rec = Recorded {
                manifest: b,
                store: cx.store,
            };
            main_config(&rec).map(|m| effective(&rec, &m))
        });
        for (key, name) in JUDGED {
            let v = now.value(key);
            let winner = now.global.get(*key);
            let admin = written_in_main(&live, &main, key);
            let old = before.as_ref().map(|b| b.value(key));
            let worse_than_admin = admin
                .as_ref()
                .is_some_and(|a| rank(key, &v) > rank(key, &a.value));
            let worse_than_before = old.as_ref().is_some_and(|o| rank(key, &v) > rank(key, o));
            if !worse_than_admin && !worse_than_before {
                continue;
            }
            let whence = match winner {
                Some(w) => format!("{name} {v} from {}:{}", w.path, w.line),
                None => format!("{name} is {v} by default (no line sets it)"),
            };
            let mut why = Vec::new();
            if let Some(a) = admin.as_ref().filter(|_| worse_than_admin) {
                why.push(format!("{} says {}", a.path, a.value));
            }
            if let Some(o) = old.as_ref().filter(|_| worse_than_before) {
                why.push(format!("it was {o} in the snapshot"));
            }
            let paths: Vec<&SysPath> = winner.map(|w| vec![&w.path]).unwrap_or_default();
            let mut f = Finding::new(
                finding_id(key),
                Severity::Critical,
                &paths,
                format!("{}: {whence}, but {}", what(key, &v), why.join(" and ")),
            );
            if let Some(w) = winner {
                f = f.evidence(ev(w, "wins: sshd uses the first value it reads"));
            }
            for l in now.ignored.get(*key).into_iter().flatten() {
                f = f.evidence(ev(l, "ignored: an earlier line already set it"));
            }
            // Recommend what the admin had (the snapshot's value, or the one
            // written in sshd_config), the stricter of the two: a fixed
            // `prohibit-password` would be the value already in effect when
            // `no` was weakened to it.
            let safe = [
                old.as_deref().filter(|_| worse_than_before),
                admin
                    .as_ref()
                    .filter(|_| worse_than_admin)
                    .map(|a| a.value.as_str()),
            ]
            .into_iter()
            .flatten()
            .min_by_key(|r| rank(key, r))
            .unwrap_or("no");
            f = f.fix(match winner {
                Some(w) if w.path != main => format!(
                    "set `{name} {safe}` in {} (or in a drop-in that sorts before it), \
                     then confirm with: sshd -T | grep -i {key}",
                    w.path
                ),
                _ => format!(
                    "set `{name} {safe}` in {main} before any Include, then confirm \
                     with: sshd -T | grep -i {key}"
                ),
            });
            let in_match: Vec<String> = now
                .matches
                .iter()
                .filter_map(|m| {
                    let s = m.settings.get(*key)?;
                    Some(format!(
                        "  {} ({}:{}): {name} {} (line {})",
                        match_name(cx, m),
                        m.path,
                        m.line,
                        s.value,
                        s.line
                    ))
                })
                .collect();
            if !in_match.is_empty() {
                f.detail = Some(format!(
                    "Match blocks (apply only to the connections they match):\n{}",
                    in_match.join("\n")
                ));
            }
            out.push(f);
        }
        out.extend(match_findings(cx, &main, &now, before.as_ref()));
        out
    }
}

/// The key type of a host key file in /etc/ssh (`ssh_host_ed25519_key`,
/// or its `.pub`): `ed25519`.
fn host_key_type(p: &SysPath) -> Option<String> {
    if p.parent()? != SysPath::new(SSHDIR) {
        return None;
    }
    let name = std::str::from_utf8(p.file_name()).ok()?;
    let t = name.strip_prefix("ssh_host_")?;
    let t = t
        .strip_suffix("_key.pub")
        .or_else(|| t.strip_suffix("_key"))?;
    (!t.is_empty()).then(|| t.to_string())
}

/// Host keys replaced or gone since the snapshot. A release upgrade or an
/// image tool that regenerates them changes the server's identity: every
/// client that knew it stops at "REMOTE HOST IDENTIFICATION HAS CHANGED"
/// (and scripts using ssh fail) until its known_hosts entry is replaced. One
/// finding says that for all key types at once, where a `file/modified` for
/// each private key and each `.pub` (six on a usual host) said less. Keys
/// only added (a new type) are no change of identity and stay `file/added`;
/// a whole /etc/ssh gone stays the one `file/vanished` that says so.
fn host_keys(cx: &Context) -> Vec<Finding> {
    if cx.baseline.is_none() || !cx.root.exists(&SysPath::new(SSHDIR)) {
        return Vec::new();
    }
    let mut replaced: Vec<&SysPath> = Vec::new();
    let mut gone: Vec<&SysPath> = Vec::new();
    let (mut replaced_types, mut gone_types) = (BTreeSet::new(), BTreeSet::new());
    let mut meta = Vec::new();
    for c in cx.changes {
        let Some(t) = host_key_type(c.path()) else {
            continue;
        };
        match c {
            Change::Modified {
                content: true,
                meta: m,
                new,
                ..
            } => {
                replaced.push(&new.path);
                replaced_types.insert(t);
                meta.extend(m.iter().map(|m| format!("{}: {m}", new.path)));
            }
            Change::Vanished(e) => {
                gone.push(&e.path);
                gone_types.insert(t);
            }
            _ => {}
        }
    }
    let list = |types: &BTreeSet<String>| types.iter().cloned().collect::<Vec<_>>().join(", ");
    let restore = |paths: &[&SysPath]| {
        paths
            .iter()
            .map(|p| crate::exec::shell_quote(p.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = Vec::new();
    if !replaced.is_empty() {
        let mut f = Finding::new(
            "ssh/host-keys-changed",
            Severity::Warning,
            &replaced,
            format!(
                "sshd's host keys were replaced ({}): clients that knew this server \
                 refuse to connect (\"REMOTE HOST IDENTIFICATION HAS CHANGED\") until \
                 their known_hosts entry is replaced",
                list(&replaced_types)
            ),
        )
        .fix(format!(
            "to keep the server's identity: guard restore {}, then restart sshd; \
             or give clients the new fingerprints (ssh-keygen -lf FILE.pub)",
            restore(&replaced)
        ));
        if !meta.is_empty() {
            f = f.detail(meta.join("\n"));
        }
        out.push(f);
    }
    if !gone.is_empty() {
        // sshd needs a private key to start (Debian's exits with "no
        // hostkeys available"; Arch's and openSUSE's units generate new
        // ones, a new identity)
        let left = Live(cx.root)
            .names(&SysPath::new(SSHDIR))
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok())
            .any(|n| n.starts_with("ssh_host_") && n.ends_with("_key"));
        let private_gone = gone.iter().any(|p| !p.file_name().ends_with(b".pub"));
        let why = if !private_gone {
            "only the public halves: sshd still has the keys, but tools that \
             read the .pub files (ssh-keyscan of the host's own, cloud-init) see none"
        } else if left {
            "clients that knew the server by those keys see another key or none"
        } else {
            "no private host key is left: sshd will not start, or (Arch, openSUSE) \
             generates new keys at start, a new identity for every client"
        };
        out.push(
            Finding::new(
                "ssh/host-keys-vanished",
                if private_gone {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                &gone,
                format!("sshd's host keys vanished ({}): {why}", list(&gone_types)),
            )
            .fix(format!("guard restore {}", restore(&gone))),
        );
    }
    out
}

/// How a finding names a Match block: by its criteria (`Match User
/// backup`), unless the file it is in is not world-readable — the users,
/// groups and addresses it names are that file's content — then by where
/// it is. The keyword and its judged value are guard's verdict and stay.
fn match_name(cx: &Context, m: &MatchBlock) -> String {
    if super::may_quote(cx, &m.path) {
        format!("Match {}", m.criteria)
    } else {
        format!("the Match block at {}:{}", m.path, m.line)
    }
}

/// `Match` blocks that weaken a judged keyword for the connections they
/// match: a drop-in adding `Match User *` with `PasswordAuthentication yes`
/// turns passwords on for everyone while the global value stays `no`
/// (`sshd -T -C user=…` agrees). A block is judged when its value is worse
/// than the global one and than what the snapshot had for the same block
/// (or, when the snapshot had no such block, its global value). Without a
/// snapshot only blocks outside the main file are judged: a block written
/// in `sshd_config` itself is what the admin meant.
fn match_findings(
    cx: &Context,
    main: &SysPath,
    now: &Effective,
    before: Option<&Effective>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in &now.matches {
        for (key, name) in JUDGED {
            let Some(s) = m.settings.get(*key) else {
                continue;
            };
            let global = now.value(key);
            if rank(key, &s.value) <= rank(key, &global) {
                continue;
            }
            let old = before.map(|b| {
                b.matches
                    .iter()
                    .find(|bm| bm.criteria == m.criteria)
                    .and_then(|bm| bm.settings.get(*key))
                    .map_or_else(|| b.value(key), |bs| bs.value.clone())
            });
            match &old {
                Some(o) if rank(key, &s.value) <= rank(key, o) => continue,
                None if m.path == *main => continue,
                _ => {}
            }
            let mut why = format!("the global value is {global}");
            if let Some(o) = &old {
                why.push_str(&format!(" and it was {o} in the snapshot"));
            }
            let block = match_name(cx, m);
            let mut f = Finding::new(
                finding_id(key),
                Severity::Critical,
                &[&m.path],
                format!(
                    "{} for {block}: {name} {} from {}:{}, but {why}",
                    what(key, &s.value),
                    s.value,
                    s.path,
                    s.line
                ),
            )
            .evidence(Evidence::new(
                &m.path,
                Some(m.line as u32),
                Some(format!("Match {}", m.criteria)),
                "applies to the connections it matches",
            ))
            .evidence(ev(s, "overrides the global value for those connections"));
            if let Some(g) = now.global.get(*key) {
                f = f.evidence(ev(g, "the global value"));
            }
            f = f.fix(format!(
                "remove `{name} {}` from {} (line {}), then \
                 confirm with: sshd -T -C user=NAME,host=HOST,addr=ADDR | grep -i {key}",
                s.value,
                if super::may_quote(cx, &m.path) {
                    format!("the Match {} block in {}", m.criteria, s.path)
                } else {
                    format!("the Match block starting at {}:{}", m.path, m.line)
                },
                s.line
            ));
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::SysRoot;

    #[test]
    fn splits_like_sshd() {
        assert_eq!(
            split_line("  PasswordAuthentication=no # c").unwrap(),
            ("PasswordAuthentication".into(), vec!["no".into()])
        );
        assert_eq!(
            split_line("Banner \"/etc/my banner\"").unwrap().1,
            vec!["/etc/my banner".to_string()]
        );
        assert_eq!(
            split_line("Ciphers = a,b").unwrap().1,
            vec!["a,b".to_string()]
        );
        assert!(split_line("   # nothing").is_none());
    }

    #[test]
    fn include_first_wins_over_the_main_file() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/ssh/sshd_config.d")).unwrap();
        std::fs::write(
            r.join("etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n\
             Match User backup\n  PasswordAuthentication yes\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/ssh/sshd_config.d/50-cloud-init.conf"),
            "PasswordAuthentication yes\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/ssh/sshd_config.d/.hidden.conf"),
            "PasswordAuthentication no\n",
        )
        .unwrap();
        let root = SysRoot::open(r).unwrap();
        let live = Live(&root);
        let e = effective(&live, &main_config(&live).unwrap());
        let w = &e.global["passwordauthentication"];
        assert_eq!(w.value, "yes");
        assert_eq!(
            w.path,
            SysPath::new("/etc/ssh/sshd_config.d/50-cloud-init.conf")
        );
        assert_eq!(e.ignored["passwordauthentication"][0].line, 2);
        assert_eq!(e.matches[0].criteria, "User backup");
        assert_eq!(e.value("permitrootlogin"), "prohibit-password");
    }

    #[test]
    fn vendor_file_when_etc_has_none() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/etc/ssh")).unwrap();
        std::fs::write(d.path().join("usr/etc/ssh/sshd_config"), "UsePAM yes\n").unwrap();
        let root = SysRoot::open(d.path()).unwrap();
        let live = Live(&root);
        let m = main_config(&live).unwrap();
        assert_eq!(m, SysPath::new(VENDOR_MAIN));
        assert_eq!(effective(&live, &m).value("usepam"), "yes");
    }

    #[test]
    fn ranks_permissiveness() {
        assert!(rank("permitrootlogin", "yes") > rank("permitrootlogin", "prohibit-password"));
        assert!(rank("passwordauthentication", "yes") > rank("passwordauthentication", "no"));
        // reversed: refusing keys is the weaker (lock-out) setting
        assert!(rank("pubkeyauthentication", "no") > rank("pubkeyauthentication", "yes"));
    }
}
