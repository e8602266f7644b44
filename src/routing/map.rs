//! A request's header map as the hot path holds it: every name and value in one string, with
//! their byte ranges beside it. Read from the host in one piece (see `routing::wire`), it
//! costs two allocations however many headers there are, where a list of owned pairs costs
//! two per header, plus their frees.

/// Byte ranges of one header's name and value in [`Headers::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    spans: Vec<Span>,
}

impl Headers {
    /// `text` with the ranges of each header's name and value, which must lie on character
    /// boundaries (a range that does not reads as empty).
    pub(crate) fn from_parts(text: String, ranges: Vec<[u32; 4]>) -> Headers {
        let spans = ranges
            .into_iter()
            .map(|[a, b, c, d]| Span {
                name: (a, b),
                value: (c, d),
            })
            .collect();
        Headers { text, spans }
    }

    fn part(&self, (from, to): (u32, u32)) -> &str {
        let (from, to) = (from as usize, to as usize);
        self.text.get(from..to).unwrap_or("")
    }

    /// Each header's name and value, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + Clone + '_ {
        self.spans
            .iter()
            .map(|s| (self.part(s.name), self.part(s.value)))
    }

    /// The values of the headers named `name` (any case). Names of another length are
    /// passed over without being looked at: most lookups compare no text at all.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spans
            .iter()
            .filter(move |s| {
                let (from, to) = s.name;
                to.checked_sub(from)
                    .is_some_and(|n| n as usize == name.len())
                    && self.part(s.name).eq_ignore_ascii_case(name)
            })
            .map(|s| self.part(s.value))
    }

    /// The first value of the header named `name` (any case).
    pub fn get<'a>(&'a self, name: &str) -> Option<&'a str> {
        let at = self.spans.iter().find(|s| {
            let (from, to) = s.name;
            to.checked_sub(from)
                .is_some_and(|n| n as usize == name.len())
                && self.part(s.name).eq_ignore_ascii_case(name)
        })?;
        Some(self.part(at.value))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes held.
    pub fn weight(&self) -> usize {
        self.text.len() + self.spans.len() * std::mem::size_of::<Span>()
    }

    pub fn push(&mut self, name: &str, value: &str) {
        let at = |s: &String| u32::try_from(s.len()).unwrap_or(u32::MAX);
        let name_from = at(&self.text);
        self.text.push_str(name);
        let name_to = at(&self.text);
        self.text.push_str(value);
        let value_to = at(&self.text);
        self.spans.push(Span {
            name: (name_from, name_to),
            value: (name_to, value_to),
        });
    }

    /// Keeps the headers `keep` says to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let kept: Headers = self.iter().filter(|(n, v)| keep(n, v)).collect();
        *self = kept;
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Headers {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Headers {
    fn from(pairs: [(&str, &str); N]) -> Headers {
        pairs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_go_in_and_come_out_in_order() {
        let mut h = Headers::from([(":path", "/"), ("cookie", "a=1"), ("Cookie", "")]);
        h.push("x", "caf\u{e9}");
        assert_eq!(h.get("COOKIE"), Some("a=1"));
        assert_eq!(h.get_all("cookie").collect::<Vec<_>>(), ["a=1", ""]);
        assert_eq!(h.get("cookies"), None);
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            [
                (":path", "/"),
                ("cookie", "a=1"),
                ("Cookie", ""),
                ("x", "caf\u{e9}")
            ]
        );
        assert_eq!(h.len(), 4);
        h.retain(|n, _| !n.eq_ignore_ascii_case("cookie"));
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [(":path", "/"), ("x", "caf\u{e9}")]
        );
        let owned: Headers = vec![("a".to_string(), "b".to_string())].into();
        assert_eq!(owned.iter().collect::<Vec<_>>(), [("a", "b")]);
    }

    #[test]
    fn a_range_off_a_character_boundary_reads_as_empty() {
        let h = Headers::from_parts("é=x".into(), vec![[0, 1, 2, 4]]);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("", "=x")]);
    }
}
