//! Header maps as the proxy-wasm ABI passes them (`proxy_get_header_map_pairs` /
//! `proxy_set_header_map_pairs`): a little-endian `u32` count, then a name length and a value
//! length per pair, then each name and value followed by a NUL. Read and written here rather
//! than through the SDK, whose reader panics on a name that is not UTF-8 and allocates each
//! pair twice, and whose writer builds the pairs' list before serialising it.

use super::map::Headers;

/// The map in `bytes` (the host's buffer, taken over) as [`Headers`], and whether their
/// text is exactly what the host holds (names or values with bytes that are not UTF-8 are
/// replaced, and the map must then not be written back whole). `None` when the bytes are
/// not a well-formed map. The names and values stay where the host put them: the length
/// table is blanked, and the whole buffer becomes the text when it is UTF-8.
pub fn parse(mut bytes: Vec<u8>) -> Option<(Headers, bool)> {
    if bytes.is_empty() {
        return Some((Headers::default(), true));
    }
    let count = usize::try_from(u32_at(&bytes, 0)?).ok()?;
    let table_end = count.checked_mul(8)?.checked_add(4)?;
    // Each pair takes at least its 8 length bytes and two NULs.
    if count.checked_mul(10)?.checked_add(4)? > bytes.len() {
        return None;
    }
    let mut ranges = Vec::with_capacity(count);
    let mut at = table_end;
    for n in 0..count {
        let lengths = 4 + n * 8;
        let name_len = usize::try_from(u32_at(&bytes, lengths)?).ok()?;
        let value_len = usize::try_from(u32_at(&bytes, lengths + 4)?).ok()?;
        let (name, next) = field(&bytes, at, name_len)?;
        let (value, next) = field(&bytes, next, value_len)?;
        at = next;
        ranges.push([name.0, name.1, value.0, value.1]);
    }
    u32::try_from(bytes.len()).ok()?;
    if let Some(table) = bytes.get_mut(..table_end) {
        table.fill(b' ');
    }
    match String::from_utf8(bytes) {
        Ok(text) => Some((Headers::from_parts(text, ranges), true)),
        Err(e) => {
            let bytes = e.into_bytes();
            let lossy = |(from, to): (u32, u32)| {
                let field = bytes.get(from as usize..to as usize).unwrap_or_default();
                String::from_utf8_lossy(field)
            };
            let mut h = Headers::default();
            for [a, b, c, d] in ranges {
                h.push(&lossy((a, b)), &lossy((c, d)));
            }
            Some((h, false))
        }
    }
}

/// `pairs` serialised into one buffer sized up front.
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let text: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 10 + text);
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The range of the `len` bytes at `at`, and where the next field starts (past the NUL that
/// must follow).
fn field(bytes: &[u8], at: usize, len: usize) -> Option<((u32, u32), usize)> {
    let end = at.checked_add(len)?;
    (bytes.get(end) == Some(&0)).then_some(())?;
    let range = (u32::try_from(at).ok()?, u32::try_from(end).ok()?);
    Some((range, end.checked_add(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's own test vector (proxy-wasm 0.2.5, `hostcalls::utils::tests::SERIALIZED_MAP`).
    #[rustfmt::skip]
    const SDK_MAP: &[u8] = &[
        4, 0, 0, 0,
        7, 0, 0, 0, 3, 0, 0, 0,
        5, 0, 0, 0, 8, 0, 0, 0,
        10, 0, 0, 0, 11, 0, 0, 0,
        10, 0, 0, 0, 10, 0, 0, 0,
        58, 109, 101, 116, 104, 111, 100, 0, 71, 69, 84, 0,
        58, 112, 97, 116, 104, 0, 47, 98, 121, 116, 101, 115, 47, 49, 0,
        58, 97, 117, 116, 104, 111, 114, 105, 116, 121, 0, 104, 116, 116, 112, 98, 105, 110, 46,
        111, 114, 103, 0,
        80, 111, 119, 101, 114, 101, 100, 45, 66, 121, 0, 112, 114, 111, 120, 121, 45, 119, 97,
        115, 109, 0,
    ];
    const PAIRS: [(&str, &str); 4] = [
        (":method", "GET"),
        (":path", "/bytes/1"),
        (":authority", "httpbin.org"),
        ("Powered-By", "proxy-wasm"),
    ];

    fn pairs(h: &Headers) -> Vec<(&str, &str)> {
        h.iter().collect()
    }

    #[test]
    fn reads_and_writes_the_sdks_encoding() {
        let (h, exact) = parse(SDK_MAP.to_vec()).unwrap();
        assert!(exact);
        assert_eq!(pairs(&h), PAIRS);
        assert_eq!(serialize(&PAIRS), SDK_MAP);
        assert_eq!(serialize(&[]), [0, 0, 0, 0]);
        assert_eq!(parse(vec![]), Some((Headers::default(), true)));
        // Lengths of 128 and more are not ASCII in the table; the text is still read whole.
        let long = "v".repeat(300);
        let (h, exact) = parse(serialize(&[("k", long.as_str())])).unwrap();
        assert!(exact);
        assert_eq!(pairs(&h), [("k", long.as_str())]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_and_the_map_is_not_exact() {
        let mut map = serialize(&[("ab", "cd")]);
        let at = map.len() - 3;
        map[at] = 0xff;
        let (h, exact) = parse(map).unwrap();
        assert!(!exact);
        assert_eq!(pairs(&h), [("ab", "\u{fffd}d")]);
        let mut map = serialize(&[("ab", "cd"), ("e", "f")]);
        map[20] = 0xc3;
        let (h, exact) = parse(map).unwrap();
        assert!(!exact, "a name, too");
        assert_eq!(pairs(&h), [("\u{fffd}b", "cd"), ("e", "f")]);
    }

    #[test]
    fn malformed_maps_are_refused_not_read_past() {
        let good = serialize(&PAIRS);
        for cut in 1..good.len() {
            assert_eq!(parse(good[..cut].to_vec()), None, "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(huge), None);
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(long), None);
    }
}
