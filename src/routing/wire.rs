//! Header maps as the proxy-wasm ABI passes them (`proxy_get_header_map_pairs` /
//! `proxy_set_header_map_pairs`): a little-endian `u32` count, then a name length and a value
//! length per pair, then each name and value followed by a NUL. Read and written here rather
//! than through the SDK, whose reader panics on a name that is not UTF-8 and allocates each
//! pair twice, and whose writer builds the pairs' list before serialising it.

/// The pairs of a serialised map as text, and whether that text is exactly what the host
/// holds (names or values with bytes that are not UTF-8 are replaced, and the map must then
/// not be written back whole). `None` when the bytes are not a well-formed map.
pub fn parse(bytes: &[u8]) -> Option<(Vec<(String, String)>, bool)> {
    if bytes.is_empty() {
        return Some((Vec::new(), true));
    }
    let count = usize::try_from(u32_at(bytes, 0)?).ok()?;
    let table_end = count.checked_mul(8)?.checked_add(4)?;
    // Each pair takes at least its 8 length bytes and two NULs.
    if count.checked_mul(10)?.checked_add(4)? > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut exact = true;
    let mut at = table_end;
    for n in 0..count {
        let lengths = 4 + n * 8;
        let name_len = usize::try_from(u32_at(bytes, lengths)?).ok()?;
        let value_len = usize::try_from(u32_at(bytes, lengths + 4)?).ok()?;
        let (name, next) = field(bytes, at, name_len)?;
        let (value, next) = field(bytes, next, value_len)?;
        at = next;
        pairs.push((text(name, &mut exact), text(value, &mut exact)));
    }
    Some((pairs, exact))
}

/// `pairs` serialised into one buffer sized up front.
pub fn serialize<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Vec<u8> {
    let (count, text) = pairs.clone().fold((0usize, 0usize), |(n, t), (k, v)| {
        (n + 1, t + k.len() + v.len())
    });
    let mut out = Vec::with_capacity(4 + count * 10 + text);
    out.extend_from_slice(&len32(count));
    for (k, v) in pairs.clone() {
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

/// The `len` bytes at `at` and where the next field starts (past the NUL that must follow).
fn field(bytes: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    let value = bytes.get(at..end)?;
    (bytes.get(end) == Some(&0)).then_some((value, end.checked_add(1)?))
}

fn text(bytes: &[u8], exact: &mut bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            *exact = false;
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
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

    #[test]
    fn reads_and_writes_the_sdks_encoding() {
        let (pairs, exact) = parse(SDK_MAP).unwrap();
        assert!(exact);
        let want: Vec<(String, String)> = PAIRS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
        assert_eq!(serialize(PAIRS.iter().copied()), SDK_MAP);
        assert_eq!(serialize(std::iter::empty()), [0, 0, 0, 0]);
        assert_eq!(parse(&[]), Some((vec![], true)));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_and_the_map_is_not_exact() {
        let mut map = serialize([("ab", "cd")].into_iter());
        let at = map.len() - 3;
        map[at] = 0xff;
        let (pairs, exact) = parse(&map).unwrap();
        assert!(!exact);
        assert_eq!(pairs, [("ab".to_string(), "\u{fffd}d".to_string())]);
        let mut map = serialize([("ab", "cd")].into_iter());
        map[12] = 0xc3;
        assert!(!parse(&map).unwrap().1, "a name, too");
    }

    #[test]
    fn malformed_maps_are_refused_not_read_past() {
        let good = serialize(PAIRS.iter().copied());
        for cut in 1..good.len() {
            assert_eq!(parse(&good[..cut]), None, "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge), None);
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&long), None);
    }
}
