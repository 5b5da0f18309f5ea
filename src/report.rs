//! Findings and how they are shown: text for a person (grouped by severity,
//! a one-line verdict first, 80 columns), JSON for scripts, and the
//! monitoring-plugin exit code.

use std::fmt::Write as _;

use serde::Serialize;

use crate::sysroot::SysPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A line of a file that shows why a finding was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub path: String,
    pub line: Option<u32>,
    pub text: Option<String>,
    pub note: String,
}

impl Evidence {
    pub fn new(
        path: impl ToString,
        line: Option<u32>,
        text: Option<String>,
        note: impl Into<String>,
    ) -> Evidence {
        Evidence {
            path: path.to_string(),
            line,
            text,
            note: note.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub paths: Vec<String>,
    pub message: String,
    pub evidence: Vec<Evidence>,
    pub fix: Option<String>,
    /// Always in the JSON, null when there is none (as `fix`): every
    /// finding has the same keys (DESIGN §2).
    pub detail: Option<String>,
    /// Acknowledged with `guard check --ack`: shown, counted as info.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acknowledged: bool,
    /// What an acknowledgement pins ([`crate::acks::fingerprint`]); set by
    /// the check before acknowledgements apply.
    #[serde(skip)]
    pub fingerprint: String,
    /// Work the package manager left for the admin (a `.pacnew` waiting
    /// to be merged) rather than damage done: it follows the damage of
    /// its severity (see [`Report::new`]).
    #[serde(skip)]
    pub todo: bool,
}

impl Finding {
    pub fn new(
        id: &str,
        severity: Severity,
        paths: &[&SysPath],
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            id: id.into(),
            severity,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            message: message.into(),
            evidence: Vec::new(),
            fix: None,
            detail: None,
            acknowledged: false,
            fingerprint: String::new(),
            todo: false,
        }
    }

    /// Marks the finding as work left to do, not damage (see `todo`).
    pub fn todo(mut self) -> Finding {
        self.todo = true;
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    pub fn evidence(mut self, e: Evidence) -> Finding {
        self.evidence.push(e);
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Finding {
        self.detail = Some(d.into());
        self
    }

    /// The severity that counts for the verdict and the exit code.
    pub fn effective(&self) -> Severity {
        if self.acknowledged {
            Severity::Info
        } else {
            self.severity
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub snapshot: Option<String>,
    pub root: String,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// How guard is to be called for this root and store, when not bare
    /// `guard` ([`crate::app::guard_invocation`]). The fixes stay
    /// `guard restore …` (the contract's form, relative to the root the
    /// report names); the text report says how to run them here, since a
    /// bare one pasted after `guard --root /mnt/sys check` would act on
    /// the host's store and /etc.
    #[serde(skip)]
    pub invocation: Option<String>,
}

impl Report {
    /// Sorts most damaging first and counts. Within a severity the
    /// semantic checks, which say what the damage does ("IMAP logins will
    /// fail"), come before the generic `file/*` findings: after a release
    /// upgrade there are dozens of those, and sorted by id alone they stood
    /// above a vanished PAM service. Among the semantic ones, logins that
    /// fail (`pam/*`, `accounts/*`) lead: that damage is silent (local and
    /// ssh logins still work, every daemon runs, only its users are
    /// refused: DESIGN incident 1), while a daemon that lost a capability
    /// mostly fails loudly, when it starts. Work merely left to do
    /// (`.pacnew` files waiting: a long-neglected Arch box gets a dozen)
    /// comes after the damage and before the generic findings; sorted by
    /// id, `pkg/pending-merge` stood above a service that no longer starts.
    pub fn new(snapshot: Option<String>, root: String, mut findings: Vec<Finding>) -> Report {
        let rank = |f: &Finding| {
            if f.id.starts_with("file/") {
                3
            } else if f.todo {
                2
            } else if f.id.starts_with("pam/") || f.id.starts_with("accounts/") {
                0
            } else {
                1
            }
        };
        findings.sort_by(|a, b| {
            b.effective()
                .cmp(&a.effective())
                .then_with(|| rank(a).cmp(&rank(b)))
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.paths.cmp(&b.paths))
        });
        let mut summary = Summary::default();
        for f in &findings {
            match f.effective() {
                Severity::Critical => summary.critical += 1,
                Severity::Warning => summary.warning += 1,
                Severity::Info => summary.info += 1,
            }
        }
        Report {
            snapshot,
            root,
            findings,
            summary,
            invocation: None,
        }
    }

    /// 0 OK, 1 WARNING, 2 CRITICAL.
    pub fn exit_code(&self) -> i32 {
        if self.summary.critical > 0 {
            2
        } else if self.summary.warning > 0 {
            1
        } else {
            0
        }
    }

    /// The one line that leads the text output.
    pub fn verdict(&self) -> String {
        let s = &self.summary;
        if s.critical > 0 {
            let crit: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.effective() == Severity::Critical)
                .collect();
            let what = headlines(&crit);
            let lead = format!("{} critical: ", s.critical);
            fit_headlines(&lead, &what, 80)
        } else {
            // "OK" leads only when the exit code says OK: a tired admin (and
            // a monitoring plugin's status line) reads the first word, and
            // "OK with 10 warnings" under exit 1 (WARNING) said the opposite
            // of the state. "(0 info)" said nothing.
            let info = if s.info > 0 {
                format!(" ({} info)", s.info)
            } else {
                String::new()
            };
            if s.warning > 0 {
                format!(
                    "{}, nothing critical{info}",
                    crate::plural(s.warning, "warning")
                )
            } else {
                format!("OK: nothing damaged{info}")
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.verdict());
        match &self.snapshot {
            Some(id) => {
                let _ = writeln!(out, "compared with snapshot {id}");
            }
            None => {
                let _ = writeln!(out, "no baseline snapshot");
            }
        }
        if let Some(g) = self.invocation.as_ref().filter(|_| {
            self.findings
                .iter()
                .any(|f| f.fix.as_deref().is_some_and(|x| x.contains("guard ")))
        }) {
            // (the command on a line of its own, unwrapped, to be copied)
            let _ = writeln!(
                out,
                "the fixes below act on this root and store: where one says guard, run\n    {}",
                crate::printable(g)
            );
        }
        for sev in [Severity::Critical, Severity::Warning, Severity::Info] {
            let group: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.effective() == sev)
                .collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{} ({})", sev.as_str().to_uppercase(), group.len());
            let mut rest = &group[..];
            while let Some(first) = rest.first() {
                let Some((id, ack, _)) = run_key(first) else {
                    write_finding(&mut out, first);
                    rest = &rest[1..];
                    continue;
                };
                let len = rest
                    .iter()
                    .take_while(|f| run_key(f).is_some_and(|(i, a, _)| i == id && a == ack))
                    .count();
                let (run, after) = rest.split_at(len);
                rest = after;
                write_run(&mut out, run);
            }
        }
        out
    }
}

/// A run of generic findings longer than this, of one id in one
/// directory, is shown as its first [`RUN_SHOWN`] and a line that counts
/// the rest: 50,000 files vanished from `/etc/postfix/maps` printed
/// 150,000 lines (8 MB), one finding after another. `--json` keeps every
/// finding.
const RUN_LONG: usize = 20;
const RUN_SHOWN: usize = 5;
/// After this many entries (findings and counting lines) of one id in a
/// row, whatever the directories, one line counts the rest: 50,000 files
/// added ten to a directory make no long run in any one of them.
const RUN_ENTRIES: usize = 100;

/// What makes consecutive findings one run for the text report: the
/// generic `file/*` findings of one path each, by id and acknowledgement,
/// and their directory. The semantic checks' findings, each of which says
/// what the damage does, are always shown in full.
fn run_key(f: &Finding) -> Option<(&str, bool, &str)> {
    let [path] = f.paths.as_slice() else {
        return None;
    };
    let dir = path.rsplit_once('/')?.0;
    f.id.starts_with("file/")
        .then_some((f.id.as_str(), f.acknowledged, dir))
}

/// Writes a run of generic findings of one id: directory by directory,
/// a long stretch in one directory counted after its first few, and
/// everything after [`RUN_ENTRIES`] entries counted in one line.
fn write_run(out: &mut String, run: &[&Finding]) {
    let Some((id, ack, _)) = run.first().and_then(|f| run_key(f)) else {
        return;
    };
    let ack = if ack { " [acknowledged]" } else { "" };
    fn dir_of(f: &Finding) -> &str {
        run_key(f).map_or("", |k| k.2)
    }
    let mut entries = 0;
    let mut rest = run;
    while let Some(first) = rest.first() {
        if entries >= RUN_ENTRIES {
            // the deepest directory all the rest lie beneath
            let mut under = dir_of(first);
            for f in rest {
                let d = dir_of(f);
                while !(d == under || d.starts_with(&format!("{under}/"))) {
                    under = under.rsplit_once('/').map_or("", |(u, _)| u);
                }
            }
            let line = format!(
                "* {id}{ack}: {} more under {under}/ (guard check --json lists every one)",
                rest.len()
            );
            let _ = writeln!(out, "{}", wrap(&line, 80, "  "));
            return;
        }
        let dir = dir_of(first);
        let n = rest.iter().take_while(|f| dir_of(f) == dir).count();
        let (here, after) = rest.split_at(n);
        rest = after;
        if n > RUN_LONG {
            for f in &here[..RUN_SHOWN] {
                write_finding(out, f);
            }
            let line = format!(
                "* {id}{ack}: {} more in {dir}/ like the {RUN_SHOWN} above \
                 (guard check --json lists every one)",
                n - RUN_SHOWN
            );
            let _ = writeln!(out, "{}", wrap(&line, 80, "  "));
            entries += RUN_SHOWN + 1;
        } else {
            here.iter().for_each(|f| write_finding(out, f));
            entries += n;
        }
    }
}

fn write_finding(out: &mut String, f: &Finding) {
    let ack = if f.acknowledged {
        " [acknowledged]"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{}",
        wrap(&format!("* {}{}: {}", f.id, ack, f.message), 80, "  ")
    );
    for e in &f.evidence {
        let loc = match e.line {
            Some(l) => format!("{}:{}", e.path, l),
            None => e.path.clone(),
        };
        let text = e
            .text
            .as_deref()
            .map(|t| format!(" `{}`", t.trim()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}",
            wrap(&format!("    {loc}{text} - {}", e.note), 80, "      ")
        );
    }
    if let Some(fix) = &f.fix {
        let _ = writeln!(out, "{}", wrap(&format!("    fix: {fix}"), 80, "         "));
    }
    if let Some(d) = &f.detail {
        // diffs are not reflowed: long lines are cut into
        // 74-column pieces so the output stays 80 wide
        for l in crate::diff::display_lines(d) {
            let chars: Vec<char> = l.chars().collect();
            let mut first = true;
            for piece in chars.chunks(74) {
                let lead = if first { "    | " } else { "    |+" };
                first = false;
                let _ = writeln!(out, "{lead}{}", piece.iter().collect::<String>());
            }
            if chars.is_empty() {
                let _ = writeln!(out, "    |");
            }
        }
    }
}

/// `lead` and as many whole headlines as fit in `width` columns, then how
/// many more. A headline too long for what is left is passed over for the
/// shorter ones after it, not cut: the verdict after a release upgrade led
/// with one long capability headline cut short and "+2 more", and the
/// vanished PAM service that stops every mail login was among the two.
/// Only when not one fits is the first cut.
fn fit_headlines(lead: &str, what: &[String], width: usize) -> String {
    let cols = |s: &str| s.chars().count();
    let more = |n: usize| {
        if n > 0 {
            format!("; +{n} more")
        } else {
            String::new()
        }
    };
    let mut shown: Vec<&str> = Vec::new();
    let mut skipped = 0;
    for (i, h) in what.iter().enumerate() {
        // what would stay unshown if this one goes in: the tail only
        // shrinks as the loop goes on, so a line that fits here fits at
        // the end too
        let unshown = skipped + (what.len() - i - 1);
        let used: usize = shown.iter().map(|s| cols(s) + 2).sum();
        if cols(lead) + used + cols(h) + cols(&more(unshown)) <= width {
            shown.push(h);
        } else {
            skipped += 1;
        }
    }
    if shown.is_empty() {
        if let Some(first) = what.first() {
            let tail = more(what.len() - 1);
            let room = width.saturating_sub(cols(lead) + 3 + cols(&tail));
            return format!(
                "{lead}{}...{tail}",
                first.chars().take(room).collect::<String>()
            );
        }
    }
    format!("{lead}{}{}", shown.join("; "), more(skipped))
}

/// Short descriptions of the critical findings for the verdict line;
/// vanished PAM services are told as one ("mail logins (imap, smtp) will
/// fail").
fn headlines(crit: &[&Finding]) -> Vec<String> {
    const MAIL: &[&str] = &[
        "imap",
        "pop",
        "pop3",
        "smtp",
        "sieve",
        "submission",
        "dovecot",
        "smtpd",
        "cyrus",
    ];
    let mut out: Vec<String> = Vec::new();
    // (a set beside the list: 50,000 vanished files are 50,000 distinct
    // headlines, and `out.contains` made the verdict take 3.6 s)
    let mut had: foldhash::HashSet<String> = foldhash::HashSet::default();
    let services: Vec<String> = crit
        .iter()
        .filter(|f| f.id == "pam/service-vanished")
        .flat_map(|f| f.paths.iter())
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect();
    let mut pam_done = false;
    for f in crit {
        let h = if f.id == "pam/service-vanished" {
            if pam_done {
                continue;
            }
            pam_done = true;
            let mail = services.iter().all(|s| MAIL.contains(&s.as_str()));
            format!(
                "{}logins ({}) will fail",
                if mail { "mail " } else { "" },
                services.join(", ")
            )
        } else {
            headline(f)
        };
        // escaped before the columns are counted (see `wrap`)
        let h = crate::printable(&h).into_owned();
        if had.insert(h.clone()) {
            out.push(h);
        }
    }
    out
}

/// A short description of a critical finding: its message up to the
/// first colon or parenthesis; a lost capability by the binary's name
/// alone, without the capabilities (`rsyslogd lost capabilities`).
fn headline(f: &Finding) -> String {
    if f.id == "caps/lost" {
        if let Some((path, _)) = f.message.split_once(" lost its capabilities") {
            let name = path.rsplit('/').next().unwrap_or(path);
            return format!("{name} lost capabilities");
        }
    }
    let first = f
        .message
        .split([':', '('])
        .next()
        .unwrap_or(&f.message)
        .trim();
    first.to_string()
}

/// Wraps at word boundaries to `width`, indenting continuation lines.
/// Control characters are escaped first ([`crate::printable`]), so the
/// columns counted are the columns printed.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let text = crate::printable(text);
    let text = text.as_ref();
    let mut out = String::new();
    let lead = text.len() - text.trim_start_matches(' ').len();
    let mut line = " ".repeat(lead);
    for word in text[lead..].split(' ') {
        let extra = if line.trim().is_empty() { 0 } else { 1 };
        if !line.trim().is_empty() && line.chars().count() + extra + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
            line.push_str(word);
            continue;
        }
        if extra == 1 {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn most_damaging_first_and_exit_codes() {
        let p = SysPath::new("/etc/x");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                Finding::new("file/added", Severity::Info, &[&p], "added"),
                Finding::new("file/vanished", Severity::Critical, &[&p], "gone"),
                Finding::new("file/modified", Severity::Warning, &[&p], "changed"),
            ],
        );
        assert_eq!(r.findings[0].id, "file/vanished");
        assert_eq!(r.exit_code(), 2);
        assert_eq!(
            r.summary,
            Summary {
                critical: 1,
                warning: 1,
                info: 1
            }
        );

        // a semantic finding before the generic ones of its severity
        let pam = SysPath::new("/etc/pam.d/imap");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                Finding::new("file/vanished", Severity::Critical, &[&p], "gone"),
                Finding::new("pam/service-vanished", Severity::Critical, &[&pam], "x"),
                Finding::new("file/modified", Severity::Warning, &[&p], "changed"),
                Finding::new("pkg/pending-merge", Severity::Warning, &[&p], "merge"),
            ],
        );
        let ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pam/service-vanished",
                "file/vanished",
                "pkg/pending-merge",
                "file/modified"
            ]
        );

        // a merge waiting after the damage of its severity, before the
        // generic findings
        let unit = SysPath::new("/etc/systemd/system/multi-user.target.wants/x.service");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                Finding::new("file/vanished", Severity::Warning, &[&p], "gone"),
                Finding::new("pkg/pending-merge", Severity::Warning, &[&pam], "merge").todo(),
                Finding::new("systemd/unit-disabled", Severity::Warning, &[&unit], "x"),
            ],
        );
        let ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "systemd/unit-disabled",
                "pkg/pending-merge",
                "file/vanished"
            ]
        );

        let mut acked = Finding::new("file/modified", Severity::Warning, &[&p], "changed");
        acked.acknowledged = true;
        let r = Report::new(None, "/".into(), vec![acked]);
        assert_eq!(r.exit_code(), 0);
    }

    /// A long run of generic findings in one directory is shown as its
    /// first few and a count; shorter runs, other directories and the
    /// semantic checks' findings are shown in full, and JSON keeps all.
    #[test]
    fn a_long_run_of_file_findings_in_one_directory_is_counted_not_listed() {
        let mut fs: Vec<Finding> = Vec::new();
        for i in 0..3 {
            let p = SysPath::new(format!("/etc/pam.d/svc{i}"));
            fs.push(Finding::new(
                "pam/service-vanished",
                Severity::Critical,
                &[&p],
                format!("logins through svc{i} will fail"),
            ));
        }
        for i in 0..30 {
            let p = SysPath::new(format!("/etc/postfix/maps/m{i:02}"));
            fs.push(
                Finding::new(
                    "file/vanished",
                    Severity::Critical,
                    &[&p],
                    format!("{p} vanished"),
                )
                .fix(format!("guard restore {p}")),
            );
        }
        for i in 0..RUN_LONG {
            let p = SysPath::new(format!("/etc/cm/c{i:02}"));
            fs.push(Finding::new(
                "file/vanished",
                Severity::Critical,
                &[&p],
                format!("{p} vanished"),
            ));
        }
        let r = Report::new(None, "/".into(), fs);
        let text = r.to_text();
        assert!(text.contains("CRITICAL (53)"), "{text}");
        for i in 0..3 {
            assert!(text.contains(&format!("svc{i} will fail")), "{text}");
        }
        for i in 0..RUN_SHOWN {
            assert!(text.contains(&format!("/etc/postfix/maps/m{i:02} vanished")));
        }
        assert!(
            !text.contains(&format!("/etc/postfix/maps/m{RUN_SHOWN:02}")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "* file/vanished: {} more in /etc/postfix/maps/ like the {RUN_SHOWN} above",
                30 - RUN_SHOWN
            )),
            "{text}"
        );
        // a run of RUN_LONG is still listed whole
        for i in 0..RUN_LONG {
            assert!(
                text.contains(&format!("/etc/cm/c{i:02} vanished")),
                "{text}"
            );
        }
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert_eq!(r.findings.len(), 53);

        // spread two to a directory, no directory has a long run: after
        // RUN_ENTRIES of them one line counts the rest, under the
        // directory they share
        let many: Vec<Finding> = (0..150)
            .flat_map(|d| {
                (0..2).map(move |i| {
                    let p = SysPath::new(format!("/etc/many/d{d:03}/sub/f{i}"));
                    Finding::new(
                        "file/added",
                        Severity::Info,
                        &[&p],
                        format!("{p} was added"),
                    )
                })
            })
            .collect();
        let text = Report::new(None, "/".into(), many).to_text();
        assert!(text.contains("INFO (300)"), "{text}");
        assert!(text.contains("/etc/many/d049/sub/f1 was added"), "{text}");
        assert!(!text.contains("/etc/many/d050/"), "{text}");
        assert!(
            text.contains("* file/added: 200 more under /etc/many/ (guard check --json"),
            "{text}"
        );
    }

    #[test]
    fn verdict_groups_vanished_pam_services() {
        let imap = SysPath::new("/etc/pam.d/imap");
        let smtp = SysPath::new("/etc/pam.d/smtp");
        let cfg = SysPath::new("/etc/ssh/sshd_config.d/50-cloud-init.conf");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                Finding::new(
                    "pam/service-vanished",
                    Severity::Critical,
                    &[&imap],
                    "IMAP logins will fail: x",
                ),
                Finding::new(
                    "pam/service-vanished",
                    Severity::Critical,
                    &[&smtp],
                    "SMTP logins will fail: y",
                ),
                Finding::new(
                    "ssh/password-auth-effective",
                    Severity::Critical,
                    &[&cfg],
                    "ssh accepts passwords: z",
                ),
                Finding::new(
                    "ssh/password-auth-effective",
                    Severity::Critical,
                    &[&cfg],
                    "ssh accepts passwords: w",
                ),
            ],
        );
        assert_eq!(
            r.verdict(),
            "4 critical: mail logins (imap, smtp) will fail; ssh accepts passwords"
        );
        let many: Vec<Finding> = (0..30)
            .map(|i| {
                Finding::new(
                    "caps/lost",
                    Severity::Critical,
                    &[&imap],
                    format!("/usr/bin/tool{i} lost capabilities: x"),
                )
            })
            .collect();
        let v = Report::new(None, "/".into(), many).verdict();
        assert!(v.chars().count() <= 80 && v.ends_with("more"), "{v}");
    }

    /// What a Debian 12 -> 13 upgrade left: a lost capability, the mail
    /// PAM service and a long vanished path. The verdict used to cut the
    /// capability's long headline and hide the other two as "+2 more".
    #[test]
    fn the_verdict_passes_over_a_long_headline_for_the_ones_that_fit() {
        let imap = SysPath::new("/etc/pam.d/imap");
        let bin = SysPath::new("/usr/sbin/rsyslogd");
        let long = SysPath::new("/etc/postfix/makedefs.out");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                Finding::new(
                    "caps/lost",
                    Severity::Critical,
                    &[&bin],
                    "/usr/sbin/rsyslogd lost its capabilities cap_net_bind_service=ep: the same file lost its capabilities",
                ),
                Finding::new(
                    "pam/service-vanished",
                    Severity::Critical,
                    &[&imap],
                    "IMAP logins will fail: /etc/pam.d/imap (used by dovecot) vanished",
                ),
                Finding::new(
                    "file/vanished",
                    Severity::Critical,
                    &[&long],
                    format!("/etc/postfix/{} vanished (owned by no package)", "x".repeat(60)),
                ),
            ],
        );
        let v = r.verdict();
        assert_eq!(
            v,
            "3 critical: mail logins (imap) will fail; rsyslogd lost capabilities; +1 more"
        );
        // the silent damage, logins refused, leads the list too
        let ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["pam/service-vanished", "caps/lost", "file/vanished"]);
        assert!(v.chars().count() <= 80, "{v}");
        // a single headline too long for the line is still cut, not dropped
        let one = Report::new(
            None,
            "/".into(),
            vec![Finding::new(
                "file/vanished",
                Severity::Critical,
                &[&long],
                format!("/etc/{} vanished", "y".repeat(100)),
            )],
        )
        .verdict();
        assert!(
            one.starts_with("1 critical: /etc/yyy") && one.ends_with("..."),
            "{one}"
        );
        assert!(one.chars().count() <= 80, "{one}");
    }

    /// The first word of the verdict agrees with the exit code: a
    /// warning-only report said "OK with 1 warning, 0 info" under exit 1.
    #[test]
    fn the_verdict_without_criticals_says_what_the_exit_code_says() {
        let p = SysPath::new("/etc/resolv.conf");
        let f = |sev| Finding::new("file/modified", sev, &[&p], "x");
        let r = Report::new(None, "/".into(), vec![f(Severity::Warning)]);
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.verdict(), "1 warning, nothing critical");
        let r = Report::new(
            None,
            "/".into(),
            vec![
                f(Severity::Warning),
                f(Severity::Warning),
                f(Severity::Info),
            ],
        );
        assert_eq!(r.verdict(), "2 warnings, nothing critical (1 info)");
        let r = Report::new(None, "/".into(), vec![]);
        assert_eq!(
            (r.exit_code(), r.verdict().as_str()),
            (0, "OK: nothing damaged")
        );
        let r = Report::new(None, "/".into(), vec![f(Severity::Info)]);
        assert_eq!(r.verdict(), "OK: nothing damaged (1 info)");
    }

    #[test]
    fn text_fits_80_columns() {
        let p = SysPath::new("/etc/pam.d/imap");
        let long = "word ".repeat(60);
        let r = Report::new(
            None,
            "/".into(),
            vec![Finding::new("x/y", Severity::Warning, &[&p], long)
                .fix("guard restore /etc/pam.d/imap")
                .detail(format!("+{}", "x".repeat(200)))],
        );
        for l in r.to_text().lines() {
            assert!(l.chars().count() <= 80, "{l}");
        }
    }
}
