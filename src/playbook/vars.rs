//! The variables of a walk and what they decide: `{name}` substitution
//! into a step's arguments, `when` conditions, which variables only guard
//! may set, and the command a substituted argv becomes on a `--root`.
//! Apart from the walk because the model's validation, the walk and the dry
//! run all read them, and none of it runs anything.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

pub type Vars = BTreeMap<String, String>;

// ---------------------------------------------------------------- conditions

/// A `when` condition: alternatives (`||`) of conjunctions (`&&`) of atoms.
#[derive(Debug, Clone)]
pub struct Cond(Vec<Vec<Atom>>);

#[derive(Debug, Clone)]
struct Atom {
    name: String,
    neg: bool,
    /// `(equal?, value)` for `==` / `!=`.
    cmp: Option<(bool, String)>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Cond {
    pub fn parse(s: &str) -> Result<Cond> {
        let mut ors = Vec::new();
        for alt in s.split("||") {
            let mut ands = Vec::new();
            for part in alt.split("&&") {
                let p = part.trim();
                let atom = if let Some((l, r)) = p.split_once("!=") {
                    Atom {
                        name: l.trim().into(),
                        neg: false,
                        cmp: Some((false, r.trim().into())),
                    }
                } else if let Some((l, r)) = p.split_once("==") {
                    Atom {
                        name: l.trim().into(),
                        neg: false,
                        cmp: Some((true, r.trim().into())),
                    }
                } else if let Some(n) = p.strip_prefix('!') {
                    Atom {
                        name: n.trim().into(),
                        neg: true,
                        cmp: None,
                    }
                } else {
                    Atom {
                        name: p.into(),
                        neg: false,
                        cmp: None,
                    }
                };
                if !valid_name(&atom.name) || atom.cmp.as_ref().is_some_and(|c| c.1.is_empty()) {
                    bail!("bad condition {s:?}: {p:?} is not `name`, `!name` or `name == value`");
                }
                ands.push(atom);
            }
            ors.push(ands);
        }
        Ok(Cond(ors))
    }

    /// Evaluates; a variable nobody set is false (and `!unset` is true), so
    /// an undetected fact never triggers a step by accident.
    pub fn eval(&self, vars: &Vars) -> bool {
        self.0.iter().any(|ands| {
            ands.iter().all(|a| {
                let v = vars.get(&a.name);
                match &a.cmp {
                    Some((eq, want)) => v.map(|v| v == want) == Some(*eq) || (v.is_none() && !eq),
                    None => truthy(v) != a.neg,
                }
            })
        })
    }
}

fn truthy(v: Option<&String>) -> bool {
    match v {
        None => false,
        Some(v) => !matches!(v.as_str(), "" | "no" | "false" | "0"),
    }
}

// ---------------------------------------------------------------- variables

/// Substitutes `{name}` in one argument. `None`: an optional (`?`) argument
/// dropped. With `dry`, unknown variables become `<name>` instead of an error.
pub fn subst(arg: &str, vars: &Vars, dry: bool) -> Result<Option<String>> {
    let (optional, body) = match arg.strip_prefix('?') {
        Some(b) => (true, b),
        None => (false, arg),
    };
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push('{');
            rest = after;
            continue;
        };
        let name = &after[..j];
        if !valid_name(name) {
            // Not a variable (e.g. a shell group in a test's `sh -c`).
            out.push('{');
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(v) if v.contains('\n') || v.contains('\0') => {
                bail!("refusing variable {name}: its value contains a newline or NUL byte")
            }
            Some(v) if v.is_empty() && optional => return Ok(None),
            // `{root}/etc` names /etc inside the root: on the system
            // itself that is `/etc`, not `//etc`
            Some(v) if name == "root" && v == "/" && after[j + 1..].starts_with('/') => {}
            Some(v) => out.push_str(v),
            None if optional && !dry => return Ok(None),
            None if dry => {
                out.push('<');
                out.push_str(name);
                out.push('>');
            }
            None => bail!("no value for {{{name}}} (neither a fact, an answer nor a default)"),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

pub fn subst_argv(argv: &[String], vars: &Vars, dry: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in argv {
        if let Some(s) = subst(a, vars, dry)? {
            out.push(s);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- commands

/// Makes a command act on `root` the way its tool supports it (DESIGN §5).
/// pacman gets `--root` with explicit paths rather than `--sysroot`: the
/// latter chroots before verifying signatures, and gpgme then needs a gpg
/// inside the root. Host tools (cryptsetup, lvm, virsh) are left as they are.
pub fn rooted(argv: Vec<String>, root: &Path) -> Vec<String> {
    if root == Path::new("/") || argv.is_empty() {
        return argv;
    }
    let r = |p: &str| root.join(p).display().to_string();
    let prog = Path::new(&argv[0])
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extra: Vec<String> = match prog.as_str() {
        "pacman" => vec![
            "--root".into(),
            root.display().to_string(),
            "--config".into(),
            r("etc/pacman.conf"),
            "--dbpath".into(),
            r("var/lib/pacman"),
            "--cachedir".into(),
            r("var/cache/pacman/pkg"),
            "--gpgdir".into(),
            r("etc/pacman.d/gnupg"),
            "--logfile".into(),
            r("var/log/pacman.log"),
        ],
        "pacman-key" => vec![
            "--gpgdir".into(),
            r("etc/pacman.d/gnupg"),
            "--config".into(),
            r("etc/pacman.conf"),
        ],
        "zypper" | "rpm" => vec!["--root".into(), root.display().to_string()],
        // dpkg reads the host's dpkg.cfg even with --root: keep its log inside.
        "dpkg" => vec![
            "--root".into(),
            root.display().to_string(),
            format!("--log={}", r("var/log/dpkg.log")),
        ],
        _ => vec![],
    };
    let mut out = vec![argv[0].clone()];
    out.extend(extra);
    out.extend(argv.into_iter().skip(1));
    out
}

/// Package tools that have no way to act on another root: run on a
/// `--root`, they would change the host instead.
const HOST_ONLY_PKG_TOOLS: &[&str] = &["apt", "apt-get", "aptitude", "dnf", "yum"];

/// Refuses a command that would act on the host although `--root` names
/// another system.
pub fn check_rootable(argv: &[String], root: &Path) -> Result<()> {
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if root != Path::new("/") && HOST_ONLY_PKG_TOOLS.contains(&prog.as_str()) {
        bail!(
            "{prog} cannot act on --root {}: it would change this host instead; run guard inside that system",
            root.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- who sets what

/// Variables the builtin steps set, each with the builtin that sets it.
/// Neither an answers file nor a playbook (`ask`, `probe`, `[vars]`) may
/// set them (`reserved`): later steps rely on what the walk itself found,
/// and a preset `snapshot_id` would point the walk's check and restore at
/// another snapshot, a preset `source_bytes` would let `cmp` pass on a
/// partial copy.
pub const BUILTIN_VARS: &[(&str, &str)] = &[
    ("snapshot_id", "snapshot"),
    ("check_critical", "check"),
    ("pam_vanished", "check"),
    ("source_bytes", "luks-target-check"),
    ("needed_mib", "luks-target-check"),
    ("luks_header_backup", "luks-header-backup"),
];

/// Facts that are guard's own options, each with its option. An answers
/// file may override a detected fact (README: defaults < facts < answers)
/// but not these, and no playbook may set them (`reserved`): guard's own
/// steps (snapshot, check, restore, the journal) act on `--root` and
/// `--store` whatever the variables say, so a preset `root = "/"` would
/// point the steps' `{root}` commands at the host while the walk's snapshot
/// and check look at the guarded root.
pub const GUARD_VARS: &[(&str, &str)] = &[
    ("root", "--root"),
    ("store", "--store"),
    // `guard`, or `guard --root R --store S`: how a playbook's text tells
    // the admin to run guard for this walk (`{guard} run ID --resume`
    // after a reboot), pasted bare it would look in the host's store
    ("guard", "--root and --store"),
];

/// Who sets a variable that only guard sets: one of its options, or a
/// builtin step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A fact taken from this option (`--root`).
    Option(&'static str),
    /// Set by this builtin step (`snapshot`).
    Builtin(&'static str),
}

impl std::fmt::Display for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reserved::Option(o) => write!(f, "which guard takes from its own {o}"),
            Reserved::Builtin(b) => write!(f, "which the walk sets itself (builtin {b})"),
        }
    }
}

/// Whether `var` is one only guard sets (`GUARD_VARS`, `BUILTIN_VARS`).
pub fn reserved(var: &str) -> Option<Reserved> {
    GUARD_VARS
        .iter()
        .find(|(n, _)| *n == var)
        .map(|(_, o)| Reserved::Option(o))
        .or_else(|| {
            BUILTIN_VARS
                .iter()
                .find(|(n, _)| *n == var)
                .map(|(_, b)| Reserved::Builtin(b))
        })
}

/// Refuses answers that set a variable only guard sets, before they join
/// the variables (answers win over facts). `origin` names them in the
/// message. An answers file (`builtins`) may set neither kind. A journal's
/// answers hold the builtins' variables the walk's own steps recorded
/// (`snapshot_id`), but never guard's options: one that has `root` was
/// written by an older guard or edited, and would override `--root`.
pub fn refuse_reserved(answers: &Vars, origin: &str, builtins: bool) -> Result<()> {
    for var in answers.keys() {
        match reserved(var) {
            Some(r @ Reserved::Builtin(_)) if builtins => {
                bail!("{origin}: sets {var}, {r}; remove it")
            }
            Some(r @ Reserved::Option(o)) => {
                bail!("{origin}: sets {var}, {r}; remove it (give guard {o} instead)")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sets a builtin's variable for the rest of the walk and in the journal.
/// Every builtin sets its variables here, so a new one not listed in
/// `BUILTIN_VARS` (and thus settable by an answers file) fails the tests.
pub(super) fn set_builtin_var(vars: &mut Vars, set: &mut Vars, name: &str, value: String) {
    debug_assert!(
        BUILTIN_VARS.iter().any(|(n, _)| *n == name),
        "{name} is missing from BUILTIN_VARS"
    );
    vars.insert(name.into(), value.clone());
    set.insert(name.into(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> Vars {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_is_per_argument_and_refuses_newlines() {
        let v = vars(&[("lv", "a b;c"), ("empty", ""), ("bad", "x\ny")]);
        assert_eq!(
            subst("/dev/vg/{lv}", &v, false).unwrap().unwrap(),
            "/dev/vg/a b;c"
        );
        assert_eq!(subst("?--key-file={empty}", &v, false).unwrap(), None);
        assert_eq!(subst("?--key-file={unset}", &v, false).unwrap(), None);
        assert!(subst("{unset}", &v, false).is_err());
        assert_eq!(subst("{unset}", &v, true).unwrap().unwrap(), "<unset>");
        let e = subst("{bad}", &v, true).unwrap_err().to_string();
        assert!(e.contains("newline"), "{e}");
        assert_eq!(
            subst("{ echo x; }", &v, false).unwrap().unwrap(),
            "{ echo x; }"
        );
        let on = |root: &str, arg: &str| {
            subst(arg, &vars(&[("root", root)]), false)
                .unwrap()
                .unwrap()
        };
        assert_eq!(on("/", "{root}/etc/apt"), "/etc/apt");
        assert_eq!(on("/", "{root}"), "/");
        assert_eq!(on("/mnt/sys", "{root}/etc/apt"), "/mnt/sys/etc/apt");
    }

    #[test]
    fn builtin_vars_name_real_builtins() {
        for (var, b) in BUILTIN_VARS {
            assert!(valid_name(var), "{var}");
            assert!(super::super::model::BUILTINS.contains(b), "{var}: {b}");
        }
    }

    #[test]
    fn conditions() {
        let v = vars(&[("a", "yes"), ("b", "no"), ("os", "arch")]);
        let t = |c: &str| Cond::parse(c).unwrap().eval(&v);
        assert!(t("a"));
        assert!(!t("b"));
        assert!(!t("unset"));
        assert!(t("!unset"));
        assert!(t("b || a"));
        assert!(!t("a && b"));
        assert!(t("os == arch && !b"));
        assert!(t("os != suse"));
        assert!(!t("unset == x"));
        assert!(Cond::parse("a ==").is_err());
    }

    #[test]
    fn rooted_commands_act_on_the_root() {
        let r = Path::new("/mnt/sys");
        let a = rooted(vec!["pacman".into(), "-Su".into()], r);
        assert_eq!(a[1..3], ["--root".to_string(), "/mnt/sys".into()]);
        assert!(a.contains(&"/mnt/sys/etc/pacman.d/gnupg".to_string()));
        assert_eq!(a.last().unwrap(), "-Su");
        assert_eq!(
            rooted(vec!["zypper".into(), "dup".into()], r),
            ["zypper", "--root", "/mnt/sys", "dup"]
        );
        assert_eq!(rooted(vec!["cryptsetup".into()], r), ["cryptsetup"]);
        assert!(check_rootable(&["apt-get".into(), "update".into()], r).is_err());
        assert!(check_rootable(&["apt-get".into()], Path::new("/")).is_ok());
        assert!(check_rootable(&["pacman".into()], r).is_ok());
        assert_eq!(rooted(vec!["pacman".into()], Path::new("/")), ["pacman"]);
    }
}
