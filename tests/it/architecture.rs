//! The dependency rule, checked over the sources: no import cycle between top-level modules
//! of `src/`, nor between the files of one folder. A module uses another when its non-test
//! code names it (`crate::x`, `crate::{x, …}`, `super::sibling`). A folder's `mod.rs` is its
//! facade (declarations and re-exports) and is no node of the folder's graph; test code
//! (`#[cfg(test)]` modules and files) and comments are left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Edges `from → to`, each with the files that make it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The crate root's re-exports and the modules they come from.
const ROOT_REEXPORTS: [(&str, &str); 3] =
    [("Error", "error"), ("Result", "error"), ("Config", "config")];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The code that counts: without comments and without the `#[cfg(test)]` module at the end.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty()).map(|l| l.trim_start());
            if next.is_some_and(|n| n.contains("mod ") && n.ends_with('{')) {
                break;
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Modules declared under `#[cfg(test)]` as files (`#[cfg(test)] mod x;`).
fn test_only_children(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| {
            let decl = w[1].trim_start_matches("pub(crate) ").trim_start_matches("pub ");
            decl.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// The first path segments named after each `prefix` in `code`: `crate::a::b` gives `a`,
/// `crate::{a::b, c}` gives `a` and `c`.
fn heads_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before_ok =
            rest[..at].chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        rest = &rest[at + prefix.len()..];
        if !before_ok {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item) = (1, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    out.insert(ident(&item));
                    break;
                }
                if depth >= 1 {
                    item.push(c);
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// The top-level graph and, per folder, the graph of its files.
fn graphs(src: &Path) -> (Graph, BTreeMap<String, Graph>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut test_only = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let dir = f.parent().unwrap_or(src);
        for child in test_only_children(&text) {
            test_only.insert(dir.join(format!("{child}.rs")));
        }
    }
    let mut top = Graph::new();
    let mut folders: BTreeMap<String, Graph> = BTreeMap::new();
    for f in &files {
        if test_only.contains(f) {
            continue;
        }
        let rel = f.strip_prefix(src).unwrap_or(f);
        let parts: Vec<String> =
            rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let module = parts[0].clone();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let name = rel.display().to_string();
        let code = code(&std::fs::read_to_string(f).unwrap_or_default());
        for head in heads_after(&code, "crate::") {
            let target = ROOT_REEXPORTS
                .iter()
                .find(|(item, _)| *item == head)
                .map_or(head.clone(), |(_, m)| (*m).to_owned());
            if target != module && target != "self" {
                top.entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .insert(name.clone());
            }
        }
        if parts.len() < 2 || parts.last().is_some_and(|p| p == "mod") {
            continue;
        }
        let folder = parts[..parts.len() - 1].join("/");
        let me = parts[parts.len() - 1].clone();
        let dir = f.parent().unwrap_or(src);
        let sibling = |s: &str| s != me && s != "mod" && dir.join(format!("{s}.rs")).is_file();
        let mut named = heads_after(&code, "super::");
        named.extend(heads_after(&code, &format!("crate::{}::", folder.replace('/', "::"))));
        for s in named.into_iter().filter(|s| sibling(s)) {
            folders
                .entry(folder.clone())
                .or_default()
                .entry(me.clone())
                .or_default()
                .entry(s)
                .or_default()
                .insert(name.clone());
        }
    }
    (top, folders)
}

/// The cycles of `graph`, each once (from its smallest node), with the files that make its
/// edges.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).map(|m| m.keys()).into_iter().flatten() {
                if next == start {
                    let min = path.iter().min().cloned().unwrap_or_default();
                    if &min == start {
                        let edges: Vec<String> = path
                            .iter()
                            .zip(path.iter().skip(1).chain(std::iter::once(start)))
                            .map(|(a, b)| format!("{a} → {b} ({:?})", graph[a][b]))
                            .collect();
                        found.insert(edges.join(", "));
                    }
                } else if !path.contains(next) && next > start {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_import_cycle_between_top_level_modules_or_the_files_of_a_folder() {
    let src = crate::harness::project_root().join("src");
    let (top, folders) = graphs(&src);
    assert!(top.len() > 10, "the sources were not read: {top:?}");
    let mut problems = cycles(&top);
    for (folder, graph) in &folders {
        problems.extend(cycles(graph).into_iter().map(|c| format!("in {folder}/: {c}")));
    }
    assert!(problems.is_empty(), "import cycles:\n{}", problems.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle_and_reads_grouped_imports() {
    let mut g = Graph::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().entry(b.into()).or_default().insert(format!("{a}.rs"));
    };
    edge("a", "b");
    edge("b", "c");
    edge("c", "a");
    edge("c", "d");
    assert_eq!(cycles(&g).len(), 1, "{:?}", cycles(&g));
    let heads = heads_after("use crate::{a::{x, y}, b, c::d};\nlet z = crate::e::f();", "crate::");
    assert_eq!(heads.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "e"]);
    let code =
        code("use crate::a;\n// crate::b\n#[cfg(test)]\nmod tests {\n    use crate::c;\n}\n");
    assert_eq!(heads_after(&code, "crate::").into_iter().collect::<Vec<_>>(), ["a"]);
}
