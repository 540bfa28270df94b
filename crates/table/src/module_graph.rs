//! The crate's module graph, read from its sources: module `a` uses module `b` when code of `a`
//! (not its comments, string literals or `#[cfg(test)]` items) names `crate::b`, or names an item
//! that `lib.rs` re-exports from `b` (`crate::Error` is `error`'s). The tests fail when the graph
//! has a cycle, naming it, or when a module uses one that [`LAYERS`] puts above it: the layering
//! of the crate documentation is a DAG and stays one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `src` with comments, string literals and char literals blanked out (to spaces), so that
/// neither `crate::x` nor a brace inside them is read as code. Line breaks are kept.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !ident_before && (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == 'r')) && {
            let mut k = i + if c[i] == 'b' { 2 } else { 1 };
            while at(k) == '#' {
                k += 1;
            }
            at(k) == '"'
        } {
            // raw string r#"..."#: ends at a quote followed by as many hashes
            let mut k = i + if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            i = k + 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#')) {
                blank(&mut out, c[i]);
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                blank(&mut out, at(i));
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // a char literal ('x', '\n', '\'', '\u{7f}'); a lifetime ('a) has no closing quote
            i += if at(i + 1) == '\\' { 3 } else { 2 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]` (test modules, test-only functions and
/// imports): what tests use is not a dependency of the module.
fn without_test_items(code: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = code;
    while let Some(start) = rest.find(ATTR) {
        out.push_str(&rest[..start]);
        let item = &rest[start + ATTR.len()..];
        // The item ends at its first `;` or at the `}` closing its first `{`, outside
        // parentheses and brackets.
        let (mut nest, mut braces, mut end) = (0i32, 0i32, item.len());
        for (k, ch) in item.char_indices() {
            match ch {
                '(' | '[' => nest += 1,
                ')' | ']' => nest -= 1,
                ';' if nest == 0 && braces == 0 => {
                    end = k + 1;
                    break;
                }
                '{' if nest == 0 => braces += 1,
                '}' if nest == 0 => {
                    braces -= 1;
                    if braces == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The first path segment of every `crate::` reference in `code`: `crate::a::b` gives `a`,
/// `crate::{a, b::c}` gives `a` and `b`.
fn crate_refs(code: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|ch| is_ident(ch) || ch == '$')
        {
            continue;
        }
        let tail = code[at + "crate::".len()..].trim_start();
        if let Some(group) = tail.strip_prefix('{') {
            // top-level elements of the group: split at commas outside nested braces
            let mut depth = 0;
            let mut element = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.push(std::mem::take(&mut element));
                        continue;
                    }
                    _ => {}
                }
                element.push(ch);
            }
            refs.push(element);
        } else {
            refs.push(tail.chars().take_while(|ch| is_ident(*ch)).collect());
        }
    }
    refs.into_iter()
        .map(|r| r.trim().chars().take_while(|ch| is_ident(*ch)).collect::<String>())
        .filter(|r| !r.is_empty() && r != "self")
        .collect()
}

/// The modules `lib.rs` declares (outside `#[cfg(test)]`), and the module each name it
/// re-exports comes from.
fn read_lib(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let code = without_test_items(&code_only(lib));
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for stmt in code.split([';', '}']) {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let Some(kw) = words.iter().position(|w| *w == "mod" || *w == "use") else {
            continue;
        };
        if words[kw] == "mod" {
            if let Some(name) = words.get(kw + 1) {
                modules.insert(name.to_string());
            }
            continue;
        }
        let path = words[kw + 1..].join(" ");
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{');
        for item in items.split(',') {
            let name = match item.split_once(" as ") {
                Some((_, alias)) => alias,
                None => item.rsplit("::").next().unwrap_or(item),
            };
            let name = name.trim().trim_end_matches('}').trim();
            if !name.is_empty() {
                reexports.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    (modules, reexports)
}

/// The graph of `sources` (module name to its code, all its files) under the `lib.rs` given.
fn graph_of(lib: &str, sources: &BTreeMap<String, String>) -> Graph {
    let (modules, reexports) = read_lib(lib);
    let mut graph = Graph::new();
    for module in &modules {
        let src = sources
            .get(module)
            .unwrap_or_else(|| panic!("lib.rs declares module {module}, but no source was found for it"));
        let uses = graph.entry(module.clone()).or_default();
        for r in crate_refs(&without_test_items(&code_only(src))) {
            let target = if modules.contains(&r) {
                r
            } else {
                reexports
                    .get(&r)
                    .cloned()
                    .unwrap_or_else(|| panic!("{module}: crate::{r} is neither a module nor re-exported by lib.rs"))
            };
            // (a name lib.rs re-exports from another crate is no edge)
            if target != *module && modules.contains(&target) {
                uses.insert(target);
            }
        }
    }
    graph
}

/// Every `.rs` file under `dir`, concatenated (a module's child modules are part of it).
fn read_tree(dir: &Path, out: &mut String) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).expect("source file"));
            out.push('\n');
        }
    }
}

/// This crate's graph, from `src/`.
fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let (modules, _) = read_lib(&lib);
    let mut sources = BTreeMap::new();
    for m in modules {
        let mut code = String::new();
        let file = src.join(format!("{m}.rs"));
        if file.is_file() {
            code.push_str(&std::fs::read_to_string(&file).expect("module file"));
            code.push('\n');
        }
        if src.join(&m).is_dir() {
            read_tree(&src.join(&m), &mut code);
        }
        if !code.is_empty() {
            sources.insert(m, code);
        }
    }
    graph_of(&lib, &sources)
}

/// The cycles of `graph`: one per strongly connected component of more than one module, each
/// as the path `a -> b -> ... -> a`, the modules of its component listed after it.
fn cycles(graph: &Graph) -> Vec<String> {
    // Tarjan's strongly connected components.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    let mut out = Vec::new();
    for mut component in s.components.into_iter().filter(|c| c.len() > 1) {
        component.sort();
        let members: BTreeSet<&str> = component.iter().copied().collect();
        // The shortest way from the component's first module back to it, inside the component.
        let start = component[0];
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(v) = queue.pop_front() {
            for w in graph.get(v).into_iter().flatten().map(String::as_str) {
                if w == start {
                    last = Some(v);
                    break 'search;
                }
                if members.contains(w) && !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        // walk back from the module that closes the cycle
        let mut back = Vec::new();
        let mut v = last.expect("a component of more than one module has a cycle through each member");
        while v != start {
            back.push(v);
            v = came_from[v];
        }
        let mut path = vec![start];
        path.extend(back.into_iter().rev());
        path.push(start);
        out.push(format!(
            "{} (modules in this cycle's component: {})",
            path.join(" -> "),
            component.join(", ")
        ));
    }
    out
}

/// The layers of the crate documentation (`lib.rs`), lowest first: a module uses only modules
/// listed before it. A new module is given its place here and in `lib.rs`.
const LAYERS: &[&[&str]] = &[
    &["error", "clock", "names", "units", "checked", "csv", "progress"],
    &["schema", "store"],
    &["logfile", "logstore", "log", "lock"],
    &["model", "action"],
    &["keyring", "write", "read", "heat", "conflict", "audit", "access"],
    &["context", "snapshot", "commit", "table"],
    &["quality", "evolve", "ingest", "optimize", "vacuum", "verify", "catalog"],
];

#[test]
fn module_graph_has_no_cycle() {
    let graph = crate_graph();
    // The reading works: a dependency no layering could drop is found.
    assert!(
        graph.get("action").is_some_and(|u| u.contains("schema")),
        "the module graph reader found no `action -> schema`: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "module imports of stratalake-table form cycles (see the layering in lib.rs):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let lib =
        "//! docs: crate::c\npub mod a;\nmod b;\npub mod c;\n#[cfg(test)]\nmod t;\npub use b::{Thing, Other as O};\n";
    let sources: BTreeMap<String, String> = [
        (
            "a",
            "use crate::{O, c::X};\nfn f() -> &'static str { \"crate::b\" } // crate::b",
        ),
        (
            "b",
            "fn g() { let _ = ('{', '\\'', '\\u{7b}'); crate::c::h() }\n#[cfg(test)]\nmod tests { use crate::a; }",
        ),
        (
            "c",
            "/* crate::a */ pub fn h() { let _ = r#\"crate::a\"#; crate::a::f() }",
        ),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_string(), s.to_string()))
    .collect();
    let graph = graph_of(lib, &sources);
    let edges = |m: &str| graph[m].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b", "c"]);
    assert_eq!(edges("b"), ["c"]);
    assert_eq!(edges("c"), ["a"]);
    assert_eq!(
        cycles(&graph),
        ["a -> c -> a (modules in this cycle's component: a, b, c)"]
    );
    let acyclic: Graph = [("a", vec!["b"]), ("b", vec![]), ("c", vec!["a", "b"])]
        .into_iter()
        .map(|(m, u)| (m.to_string(), u.into_iter().map(String::from).collect()))
        .collect();
    assert!(cycles(&acyclic).is_empty());
}

#[test]
fn modules_use_only_lower_layers() {
    let order: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    let graph = crate_graph();
    let mut problems = Vec::new();
    for m in &order {
        if !graph.contains_key(*m) {
            problems.push(format!("{m} is in LAYERS but lib.rs declares no such module"));
        }
    }
    for (m, uses) in &graph {
        let Some(rank) = order.iter().position(|x| x == m) else {
            problems.push(format!("{m} has no layer: give it one in LAYERS and in lib.rs"));
            continue;
        };
        for u in uses {
            if order.iter().position(|x| x == u).is_some_and(|r| r > rank) {
                problems.push(format!("{m} uses {u}, which is above it in LAYERS"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
