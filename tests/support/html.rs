//! Minimal HTML form parsing: enough to drive the IdP's login and consent pages.

#[derive(Clone, Debug, Default)]
pub struct Input {
    pub tag: String,
    pub name: String,
    pub value: String,
    pub kind: String,
}

#[derive(Clone, Debug, Default)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub inputs: Vec<Input>,
}

impl Form {
    pub fn has_password(&self) -> bool {
        self.inputs
            .iter()
            .any(|i| i.kind.eq_ignore_ascii_case("password"))
    }
    /// name/value pairs a browser would submit (buttons only if named).
    pub fn fields(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|i| !i.name.is_empty())
            .filter(|i| {
                !matches!(
                    i.kind.to_ascii_lowercase().as_str(),
                    "checkbox" | "radio" | "reset" | "file"
                )
            })
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect()
    }
}

fn decode_entities(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Attributes of a tag's inner text (`input type="text" name=x required`).
pub fn attrs(tag_inner: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = tag_inner.as_bytes();
    let mut i = 0;
    // skip the tag name
    while i < b.len() && !b[i].is_ascii_whitespace() {
        i += 1;
    }
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        let key = tag_inner[ks..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut val = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                i += 1;
                let vs = i;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                val = tag_inner[vs..i.min(b.len())].to_string();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                val = tag_inner[vs..i].to_string();
            }
        }
        if !key.is_empty() {
            out.push((key, decode_entities(&val)));
        }
    }
    out
}

fn get<'a>(a: &'a [(String, String)], k: &str) -> Option<&'a str> {
    a.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// All `<form>`s in a document with their `<input>`s, `<button name=..>`s, `<select>`s
/// (first option) and `<textarea>`s.
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(fs) = lower[pos..].find("<form").map(|i| i + pos) {
        let Some(te) = lower[fs..].find('>').map(|i| i + fs) else {
            break;
        };
        let fa = attrs(&html[fs + 1..te]);
        let end = lower[te..]
            .find("</form")
            .map(|i| i + te)
            .unwrap_or(html.len());
        let inner = &html[te + 1..end];
        let inner_l = &lower[te + 1..end];
        let mut form = Form {
            action: get(&fa, "action").unwrap_or("").to_string(),
            method: get(&fa, "method").unwrap_or("get").to_ascii_lowercase(),
            inputs: Vec::new(),
        };
        let mut p = 0;
        while let Some(ts) = inner_l[p..].find('<').map(|i| i + p) {
            let Some(tend) = inner_l[ts..].find('>').map(|i| i + ts) else {
                break;
            };
            let tag_inner = &inner[ts + 1..tend];
            let tname: String = inner_l[ts + 1..tend]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            match tname.as_str() {
                "input" | "button" | "select" | "textarea" => {
                    let a = attrs(tag_inner);
                    let kind = get(&a, "type")
                        .unwrap_or(if tname == "button" { "submit" } else { "text" })
                        .to_string();
                    let mut value = get(&a, "value").unwrap_or("").to_string();
                    if tname == "textarea" {
                        if let Some(ce) = inner_l[tend..].find("</textarea").map(|i| i + tend) {
                            value = decode_entities(&inner[tend + 1..ce]);
                        }
                    }
                    if tname == "select" {
                        if let Some(os) = inner_l[tend..].find("<option").map(|i| i + tend) {
                            if let Some(oe) = inner_l[os..].find('>').map(|i| i + os) {
                                let oa = attrs(&inner[os + 1..oe]);
                                value = get(&oa, "value").unwrap_or("").to_string();
                            }
                        }
                    }
                    if tname == "button" && get(&a, "name").is_none() {
                        // unnamed buttons submit nothing
                    } else {
                        form.inputs.push(Input {
                            tag: tname.clone(),
                            name: get(&a, "name").unwrap_or("").to_string(),
                            value,
                            kind,
                        });
                    }
                }
                _ => {}
            }
            p = tend + 1;
        }
        out.push(form);
        pos = end.max(te + 1);
    }
    out
}

/// The text content of `<title>`, if any.
pub fn title(html: &str) -> Option<String> {
    let l = html.to_ascii_lowercase();
    let s = l.find("<title")?;
    let s = l[s..].find('>')? + s + 1;
    let e = l[s..].find("</title")? + s;
    Some(html[s..e].trim().to_string())
}

/// All `href="..."` values.
pub fn hrefs(html: &str) -> Vec<String> {
    let l = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut p = 0;
    while let Some(i) = l[p..].find("<a").map(|i| i + p) {
        let Some(e) = l[i..].find('>').map(|x| x + i) else {
            break;
        };
        if let Some(h) = get(&attrs(&html[i + 1..e]), "href") {
            out.push(h.to_string());
        }
        p = e + 1;
    }
    out
}
