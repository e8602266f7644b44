//! The attack corpora in `tests/corpora/`, and the most careless reading an app could give a
//! request path, shared by the native corpus checks (`tests/corpora.rs`), the property
//! targets (`tests/properties.rs`) and the end-to-end tests that send the corpora through
//! Envoy (`tests/e2e/hardening.rs`, `tests/e2e/redirects.rs`).

use std::path::Path;

/// The lines of `tests/corpora/<name>`, comments and blank lines dropped, escapes decoded:
/// `\xHH` is the character U+00HH and `\u{H…}` any character, so raw controls, spaces and
/// non-ASCII can be written (`\x5cx` for a literal backslash followed by `x`).
pub fn lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpora")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| unescape(l).unwrap_or_else(|| panic!("bad escape in {name}: {l:?}")))
        .collect()
}

fn unescape(line: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(hex) = tail.strip_prefix('x') {
            out.push(char::from(u8::from_str_radix(hex.get(..2)?, 16).ok()?));
            rest = &hex[2..];
        } else if let Some(braced) = tail.strip_prefix("u{") {
            let (hex, after) = braced.split_once('}')?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            rest = after;
        } else {
            out.push('\\');
            rest = tail;
        }
    }
    out.push_str(rest);
    Some(out)
}

/// The most careless reading an app could give a request target: the query cut off,
/// escapes (`%XX`, `%uXXXX`) decoded until stable, UTF-8 decoded leniently (overlong forms,
/// no continuation check), look-alikes folded, `\` as `/`, `;params` dropped, segments of
/// dots and spaces read as `.` / `..` (Windows), slashes merged, dot segments removed.
pub fn app_view(target: &str) -> String {
    let mut text = target.split('?').next().unwrap_or_default().to_string();
    for _ in 0..8 {
        let next: String = decode_once(&text).chars().map(fold).collect();
        if next == text {
            break;
        }
        text = next;
    }
    let text = text.replace('\\', "/");
    let (mut kept, mut trailing) = (Vec::new(), false);
    for seg in text.split('/').skip(1) {
        let seg = seg.split(';').next().unwrap_or_default();
        let dots = seg.matches('.').count();
        let seg = match (dots, seg.chars().all(|c| c == '.' || c == ' ')) {
            (1, true) => ".",
            (2.., true) => "..",
            _ => seg,
        };
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => drop(kept.pop()),
            _ => kept.push(seg),
        }
    }
    let out: String = kept.iter().map(|s| format!("/{s}")).collect();
    if out.is_empty() || trailing {
        out + "/"
    } else {
        out
    }
}

/// One round of `%XX` / `%uXXXX` decoding, then lenient UTF-8.
pub fn decode_once(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex_at = |at: usize, n: usize| {
        let digits = std::str::from_utf8(bytes.get(at..at + n)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let (mut out, mut i) = (Vec::new(), 0);
    while i < bytes.len() {
        let wide = bytes.get(i + 1).is_some_and(|b| b | 0x20 == b'u');
        let (at, n) = if wide { (i + 2, 4) } else { (i + 1, 2) };
        match hex_at(at, n)
            .filter(|_| bytes[i] == b'%')
            .and_then(char::from_u32)
        {
            Some(c) if wide => {
                out.extend(c.to_string().bytes());
                i += 6;
            }
            Some(c) => {
                out.push(c as u8);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    let (mut text, mut i) = (String::new(), 0);
    while i < out.len() {
        let more = (out[i].leading_ones() as usize).saturating_sub(1).min(3);
        let tail = out.get(i + 1..i + 1 + more).unwrap_or_default();
        let cp = tail
            .iter()
            .fold(u32::from(out[i]) & (0x7F >> more), |cp, b| {
                cp << 6 | u32::from(b & 0x3F)
            });
        let valid = out[i] < 0x80 || (0xC0..0xF8).contains(&out[i]) && tail.len() == more;
        text.push(char::from_u32(cp).filter(|_| valid).unwrap_or('\u{FFFD}'));
        i += 1 + tail.len();
    }
    text
}

/// Look-alikes that NFKC or Windows best-fit mapping turn into `.`, `/`, `\`, `;`, `%`.
fn fold(c: char) -> String {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0)
            .map(String::from)
            .unwrap_or_default(),
        '\u{2024}' | '\u{FE52}' => ".".into(),
        '\u{2025}' | '\u{FE30}' => "..".into(),
        '\u{2026}' | '\u{FE19}' => "...".into(),
        '\u{A5}' | '\u{20A9}' | '\u{FE68}' => "\\".into(),
        '\u{2215}' => "/".into(),
        '\u{37E}' | '\u{FE54}' => ";".into(),
        '\u{FE6A}' => "%".into(),
        _ => c.to_string(),
    }
}
