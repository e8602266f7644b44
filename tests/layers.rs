//! The architecture as rules a change cannot silently break: `src/` is a sans-IO core in
//! layers with one thin adapter (`filter/`) on top. From the `use` paths of every non-test
//! file: no import circles between files, no core module imports `filter/`, no module below
//! the gate imports the gate, children import their siblings rather than their parent's
//! re-exports, no `use super::*` glob, and no non-test file over 450 lines.
//!
//! `cargo test --test layers -- --nocapture` also prints each file's level (the longest chain
//! of imports below it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 450;

struct File {
    rel: String,
    module: Vec<String>,
    /// The source up to its inline test module, if any.
    code: String,
}

fn module_of(rel: &str) -> Vec<String> {
    let trimmed = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Test-only files: the `tests` / `flow_tests` submodules and the test keys.
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs")
        || rel.contains("flow_tests")
        || rel.ends_with("testkeys.rs")
        || rel.contains("/tests/")
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<File>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if is_test_file(&rel) {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            let code = match text.find("\n#[cfg(test)]\nmod ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            // Paths in comments (doc links) are not imports.
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.push(File {
                module: module_of(&rel),
                rel,
                code,
            });
        }
    }
}

fn files() -> Vec<File> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The `use` trees of `code`, flattened into paths (`a::b::{c, d::e}` → `a::b::c`,
/// `a::b::d::e`), plus every inline `crate::` / `super::` path.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect();
        expand("", &tree, &mut out);
        rest = &rest[end..];
    }
    for prefix in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(prefix) {
            let start = at + i;
            let path: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_string());
            at = start + prefix.len();
        }
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree
        .trim_start_matches("pub(crate)")
        .trim_start_matches("pub(super)");
    let tree = tree.strip_prefix("pub").unwrap_or(tree);
    match tree.find('{') {
        Some(open) if tree.ends_with('}') => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.len() - 1];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&format!("{prefix}{head}"), &inner[start..], out);
        }
        _ if !tree.is_empty() => {
            let path = tree.split(" as ").next().unwrap_or(tree);
            let path = path.split("as").next().unwrap_or(path);
            out.push(format!("{prefix}{path}"));
        }
        _ => {}
    }
}

/// The file a path names, resolved from `module` (the importing file's module).
fn target(path: &str, module: &[String], known: &BTreeMap<Vec<String>, String>) -> Option<String> {
    let mut segs: Vec<String> = Vec::new();
    let mut parts = path.split("::").filter(|s| !s.is_empty()).peekable();
    match parts.peek().copied() {
        Some("crate") => {
            parts.next();
        }
        Some("super") => {
            // A `mod.rs` file is its module; `super` is the module's parent.
            segs = module.to_vec();
            while parts.peek() == Some(&"super") {
                parts.next();
                segs.pop();
            }
        }
        Some("self") => {
            parts.next();
            segs = module.to_vec();
        }
        _ => {
            // `use child::x` from a module file: a path relative to this module.
            let first = parts.peek().copied()?;
            let mut child = module.to_vec();
            child.push(first.to_string());
            if !known.contains_key(&child) {
                return None;
            }
            segs = module.to_vec();
        }
    }
    for p in parts {
        if p == "*" {
            break;
        }
        segs.push(p.to_string());
    }
    // The longest prefix that is a file of ours.
    while !segs.is_empty() {
        if let Some(rel) = known.get(&segs) {
            return Some(rel.clone());
        }
        segs.pop();
    }
    None
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    globs: Vec<String>,
}

fn graph(files: &[File]) -> Graph {
    let known: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| (f.module.clone(), f.rel.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut globs = Vec::new();
    for f in files {
        if f.code.contains("use super::*") {
            globs.push(f.rel.clone());
        }
        let set = edges.entry(f.rel.clone()).or_default();
        for p in paths(&f.code) {
            if let Some(to) = target(&p, &f.module, &known) {
                if to != f.rel && to != "lib.rs" {
                    set.insert(to);
                }
            }
        }
    }
    Graph { edges, globs }
}

fn top(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
}

#[test]
fn no_import_circles() {
    let g = graph(&files());
    // Depth-first search for a back edge, reporting the circle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                0 => visit(m, g, state, stack, found),
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    found.push(format!("{} -> {m}", stack[from..].join(" -> ")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for n in g.edges.keys() {
        if !state.contains_key(n) {
            visit(n, &g.edges, &mut state, &mut Vec::new(), &mut found);
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_core_never_imports_the_adapter_and_nothing_below_the_gate_imports_it() {
    let g = graph(&files());
    let mut wrong = Vec::new();
    for (from, tos) in &g.edges {
        for to in tos {
            if top(to) == "filter" && top(from) != "filter" {
                wrong.push(format!("{from} imports the adapter {to}"));
            }
            // Above the gate: the coordinator that drives it, and the adapter.
            if top(to) == "gate" && !["gate", "coordinator", "filter"].contains(&top(from)) {
                wrong.push(format!("{from} (below the gate) imports {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_glob_imports_of_a_parent() {
    let g = graph(&files());
    assert!(g.globs.is_empty(), "`use super::*` in {:?}", g.globs);
}

#[test]
fn no_non_test_file_is_over_450_lines() {
    let long: Vec<String> = files()
        .iter()
        .map(|f| (f.rel.clone(), f.code.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// Not a rule: the levels, for a reader (`-- --nocapture`).
#[test]
fn levels() {
    let g = graph(&files());
    fn level(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
        seen: &mut BTreeSet<String>,
    ) -> usize {
        if let Some(l) = memo.get(n) {
            return *l;
        }
        if !seen.insert(n.to_string()) {
            return 0;
        }
        let l = g
            .get(n)
            .into_iter()
            .flatten()
            .map(|m| level(m, g, memo, seen) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(n.to_string(), l);
        l
    }
    let mut memo = BTreeMap::new();
    let mut by_level: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for n in g.edges.keys() {
        let l = level(n, &g.edges, &mut memo, &mut BTreeSet::new());
        by_level.entry(l).or_default().push(n.clone());
    }
    for (l, files) in &by_level {
        println!("level {l}: {}", files.join(" "));
    }
    println!("{} files on {} levels", g.edges.len(), by_level.len());
}
