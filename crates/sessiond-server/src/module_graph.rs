//! Keeps the crate's module graph acyclic: reads `src/**/*.rs`, collects every module
//! path a file names (`crate::…`, `super::…`, `self::…` and paths through its own child
//! modules, `use` groups expanded), maps each to the file that defines it (one node per
//! file) and fails naming a cycle if there is one. Comments, doc links and string
//! literals do not count; a `#[cfg(test)]` inline module is a node of its own (named
//! `file#name`), since nothing can import it back.
//!
//! Run it with `cargo test -p sessiond-server module_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Tokens of Rust source without comments, strings and character literals.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1);
        } else if (ch == 'r' || ch == 'b') && starts_raw_or_byte_string(&c, i) {
            i = skip_prefixed_string(&c, i);
        } else if ch == '\'' {
            // A character literal, or a lifetime / label (left as an identifier).
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// Index after the closing quote of a `"…"` string whose body starts at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn starts_raw_or_byte_string(c: &[char], i: usize) -> bool {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
        if c.get(j) == Some(&'"') || c.get(j) == Some(&'\'') {
            return true;
        }
    }
    if c.get(j) == Some(&'r') {
        j += 1;
        while c.get(j) == Some(&'#') {
            j += 1;
        }
        return c.get(j) == Some(&'"');
    }
    false
}

/// Skips `b"…"`, `b'…'`, `r"…"`, `r#"…"#`, `br#"…"#`.
fn skip_prefixed_string(c: &[char], mut i: usize) -> usize {
    if c[i] == 'b' {
        i += 1;
        match c.get(i) {
            Some('"') => return skip_string(c, i + 1),
            Some('\'') => {
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                return i + 1;
            }
            _ => {}
        }
    }
    // Raw: r, then hashes, then the quote.
    i += 1;
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1;
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// The module paths one file names, each with the node (the file, or `file#name` for
/// a test module in it) that names it.
struct Parsed {
    refs: Vec<(String, Vec<String>)>,
}

/// Expands the path tree starting at `toks[i]` (after a leading `crate::` etc. was
/// resolved to `base`); returns the paths and the index after the tree.
fn expand(toks: &[Tok], mut i: usize, base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = base;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) => {
                match s.as_str() {
                    "super" => {
                        path.pop();
                    }
                    "self" => {}
                    _ => path.push(s.clone()),
                }
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = expand(toks, i, path.clone(), out);
                            // `as` renames and anything unexpected: skip to the next item.
                            while !matches!(
                                toks.get(i),
                                Some(Tok::Punct(',')) | Some(Tok::Punct('}')) | None
                            ) {
                                i += 1;
                            }
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push(path);
                return i + 1;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

fn parse(node: &str, module: &[String], src: &str, children: &BTreeSet<String>) -> Parsed {
    let toks = lex(src);
    let mut refs = Vec::new();
    // Inline modules: (name, brace depth at which it closes, is a test module).
    let mut stack: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut cfg_test = false;
    let mut i = 0;
    while i < toks.len() {
        let current: Vec<String> = module
            .iter()
            .cloned()
            .chain(stack.iter().map(|(n, _, _)| n.clone()))
            .collect();
        let here = match stack.iter().find(|(_, _, test)| *test) {
            Some((name, _, _)) => format!("{node}#{name}"),
            None => node.to_owned(),
        };
        let prev_is_sep = i > 0 && toks[i - 1] == Tok::PathSep;
        match &toks[i] {
            Tok::Punct('#')
                if toks.get(i + 1) == Some(&Tok::Punct('['))
                    && toks.get(i + 2) == Some(&Tok::Ident("cfg".into()))
                    && toks.get(i + 3) == Some(&Tok::Punct('('))
                    && toks.get(i + 4) == Some(&Tok::Ident("test".into()))
                    && toks.get(i + 5) == Some(&Tok::Punct(')')) =>
            {
                cfg_test = true;
                i += 6;
                continue;
            }
            Tok::Ident(k)
                if k == "mod"
                    && matches!(toks.get(i + 1), Some(Tok::Ident(_)))
                    && toks.get(i + 2) == Some(&Tok::Punct('{')) =>
            {
                let Some(Tok::Ident(name)) = toks.get(i + 1) else {
                    unreachable!()
                };
                depth += 1;
                stack.push((name.clone(), depth, cfg_test));
                cfg_test = false;
                i += 3;
                continue;
            }
            Tok::Punct('{') => {
                depth += 1;
                cfg_test = false;
            }
            Tok::Punct('}') => {
                if stack.last().is_some_and(|(_, d, _)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                cfg_test = false;
            }
            Tok::Punct(';') => cfg_test = false,
            Tok::Ident(k)
                if !prev_is_sep
                    && toks.get(i + 1) == Some(&Tok::PathSep)
                    && (k == "crate" || k == "super" || k == "self" || children.contains(k)) =>
            {
                let base = match k.as_str() {
                    "crate" => Vec::new(),
                    "super" => current[..current.len().saturating_sub(1)].to_vec(),
                    "self" => current.clone(),
                    // A child module of this file (only at file level: `mod x;` here).
                    _ if stack.is_empty() => {
                        let mut p = current.clone();
                        p.push(k.clone());
                        p
                    }
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                let mut paths = Vec::new();
                i = expand(&toks, i + 2, base, &mut paths);
                refs.extend(paths.into_iter().map(|p| (here.clone(), p)));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Parsed { refs }
}

/// `src/a/b.rs` → `["a", "b"]`; `mod.rs` and `lib.rs` name their directory.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let p = entry.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Child modules a file declares with `mod name;`.
fn declared_children(src: &str) -> BTreeSet<String> {
    let toks = lex(src);
    toks.windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] if m == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The file-level graph of the crate under `src`: node → the nodes it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            let name = f
                .strip_prefix(src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            (module_path(src, f), name)
        })
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        let module = module_path(src, f);
        let node = modules[&module].clone();
        g.entry(node.clone()).or_default();
        let parsed = parse(&node, &module, &text, &declared_children(&text));
        for (from, path) in parsed.refs {
            // The longest prefix that is a file's module (items and inline modules
            // belong to their file).
            let target = (0..=path.len())
                .rev()
                .find_map(|n| modules.get(&path[..n]))
                .expect("the crate root always matches");
            if *target != node {
                g.entry(from).or_default().insert(target.clone());
            }
        }
    }
    g
}

/// One cycle of the graph, as the nodes along it (first repeated at the end).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        trail: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(n, Mark::Open);
        trail.push(n);
        for m in g.get(n).into_iter().flatten() {
            match marks.get(m.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = trail.iter().position(|x| *x == m).expect("on the trail");
                    let mut cycle: Vec<String> =
                        trail[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, marks, trail) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        trail.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if marks.get(n.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, g, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(
        g.contains_key("state.rs") && g["ws/conn.rs"].contains("state.rs"),
        "the graph was read (ws/conn.rs names the state): {g:#?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle among sessiond-server's modules: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn module_graph_parser_sees_through_groups_tests_and_comments() {
    let src = r#"
        //! See [`crate::a`].
        use crate::{b::{C, d}, e as f};
        use super::g::*;
        mod child;
        use child::X;
        const S: &str = "crate::h";
        fn x() { let c = '{'; crate::i::j(); }
        #[cfg(test)]
        mod tests { use crate::k; }
        mod inner { use super::l; }
    "#;
    let children = declared_children(src);
    let p = parse("m/n.rs", &["m".into(), "n".into()], src, &children);
    let named: Vec<(String, String)> = p
        .refs
        .into_iter()
        .map(|(from, path)| (from, path.join("::")))
        .collect();
    let want = [
        ("m/n.rs", "b::C"),
        ("m/n.rs", "b::d"),
        ("m/n.rs", "e"),
        ("m/n.rs", "m::g"),
        ("m/n.rs", "m::n::child::X"),
        ("m/n.rs", "i::j"),
        ("m/n.rs#tests", "k"),
        ("m/n.rs", "m::n::l"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(named, want);
    let cyclic: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let c = find_cycle(&cyclic).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
}
