//! The conversion report: one line per option the user set, saying what became of it, so
//! nothing is lost silently. The first word of each line is its verdict, for grep.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Carried into the filter's configuration (or the generated resources).
    Mapped,
    /// Has no meaning inside Envoy (listener, upstream, logging...): Envoy or Istio does it.
    Dropped,
    /// Not supported; the deployment still holds (it only gets stricter or loses a comfort).
    Unsupported,
    /// A security rule the user relied on that cannot be carried over: exit 1.
    Refused,
    /// Something the tool decided or filled in that the user must know about.
    Note,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Mapped => "mapped",
            Verdict::Dropped => "dropped",
            Verdict::Unsupported => "unsupported",
            Verdict::Refused => "REFUSED",
            Verdict::Note => "note",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub verdict: Verdict,
    /// The option as the user wrote it (`--github-org`, `OAUTH2_PROXY_UPSTREAMS`...).
    pub from: String,
    /// `key: value` in the filter's config for a mapping, else the reason.
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub entries: Vec<Entry>,
    pub written: Vec<String>,
}

impl Report {
    pub fn add(&mut self, verdict: Verdict, from: &str, what: impl Into<String>) {
        self.entries.push(Entry {
            verdict,
            from: from.to_string(),
            what: what.into(),
        });
    }

    pub fn mapped(&mut self, from: &str, what: impl Into<String>) {
        self.add(Verdict::Mapped, from, what);
    }
    pub fn dropped(&mut self, from: &str, why: impl Into<String>) {
        self.add(Verdict::Dropped, from, why);
    }
    pub fn unsupported(&mut self, from: &str, why: impl Into<String>) {
        self.add(Verdict::Unsupported, from, why);
    }
    pub fn refused(&mut self, from: &str, why: impl Into<String>) {
        self.add(Verdict::Refused, from, why);
    }
    pub fn note(&mut self, from: &str, what: impl Into<String>) {
        self.add(Verdict::Note, from, what);
    }

    pub fn refusals(&self) -> usize {
        self.count(Verdict::Refused)
    }

    fn count(&self, v: Verdict) -> usize {
        self.entries.iter().filter(|e| e.verdict == v).count()
    }

    /// The report as printed: entries grouped by verdict (in the order the user wrote the
    /// options within a group), a summary line, the files written.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self
            .entries
            .iter()
            .map(|e| e.from.chars().count())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut sorted: Vec<&Entry> = self.entries.iter().collect();
        sorted.sort_by_key(|e| e.verdict);
        for e in sorted {
            let arrow = if e.verdict == Verdict::Mapped {
                "->"
            } else {
                " :"
            };
            let _ = writeln!(
                out,
                "{:<11} {:<width$} {arrow} {}",
                e.verdict.word(),
                e.from,
                e.what
            );
        }
        let _ = writeln!(
            out,
            "\n{} mapped, {} dropped, {} unsupported, {} refused",
            self.count(Verdict::Mapped),
            self.count(Verdict::Dropped),
            self.count(Verdict::Unsupported),
            self.count(Verdict::Refused),
        );
        for f in &self.written {
            let _ = writeln!(out, "wrote {f}");
        }
        if self.refusals() > 0 {
            let _ = writeln!(
                out,
                "exit 1: a security rule above cannot be carried over (REFUSED); \
                 the files were written for review, do not deploy them as they are"
            );
        }
        out
    }
}
