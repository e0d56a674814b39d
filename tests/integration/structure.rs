//! The code's shape, checked: within each crate of the host, modules import one way. A
//! module that imports another which (directly or through others) imports it back is a
//! circle: neither can be read, tested or changed without the other. Re-exports
//! (`pub use`) and `mod` declarations are how a module presents its children, not
//! imports, so they do not count; nor do unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["host/types", "host/store", "host/runtime", "host/app", "host/cli"];

#[test]
fn no_crate_has_a_circle_of_module_imports() {
    let root = tether_tests::repo_root();
    let mut circles = Vec::new();
    for krate in CRATES {
        let modules = modules_of(&root.join(krate).join("src"));
        assert!(modules.len() > 3, "{krate}: no modules found");
        let graph = imports(&modules);
        for circle in strongly_connected(&graph) {
            let files: Vec<String> =
                circle.iter().map(|m| modules[m].strip_prefix(&root).unwrap().display().to_string()).collect();
            circles.push(format!("{krate}: {}", files.join(" <-> ")));
        }
    }
    assert!(circles.is_empty(), "module import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_circle_check_sees_a_circle() {
    // The check itself: two modules importing each other, one through a group import.
    let dir = crate::support::fresh_dir("structure-circle");
    std::fs::create_dir_all(dir.join("src/wing")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "mod a;\nmod wing;\npub use a::A;\n").unwrap();
    std::fs::write(dir.join("src/a.rs"), "use crate::wing::{b::B, C};\npub struct A;\n").unwrap();
    std::fs::write(dir.join("src/wing/mod.rs"), "pub mod b;\npub struct C;\n").unwrap();
    std::fs::write(
        dir.join("src/wing/b.rs"),
        "// crate::a is named in a comment only\npub struct B(super::super::a::A);\n",
    )
    .unwrap();
    let modules = modules_of(&dir.join("src"));
    let circles = strongly_connected(&imports(&modules));
    let named: Vec<Vec<String>> = circles.iter().map(|c| c.iter().map(|m| m.join("::")).collect()).collect();
    assert_eq!(named, vec![vec!["a".to_string(), "wing::b".to_string()]]);
}

/// Module path (`["run", "driver"]`) to its file, for every `.rs` file under `src`.
fn modules_of(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let file = parts.pop().unwrap();
            match file.as_str() {
                "lib.rs" | "main.rs" if parts.is_empty() => {}
                "mod.rs" => {}
                other => parts.push(other.trim_end_matches(".rs").to_string()),
            }
            found.insert(parts, path);
        }
    }
    found
}

/// Which modules each module imports (by `crate::` and `super::` paths, in `use` lines
/// and in code), resolved to the deepest module the path names.
fn imports(modules: &BTreeMap<Vec<String>, PathBuf>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut graph = BTreeMap::new();
    for (module, file) in modules {
        let text = std::fs::read_to_string(file).unwrap();
        let is_dir_module = file.file_name().is_some_and(|f| f == "mod.rs" || f == "lib.rs" || f == "main.rs");
        let mut targets = BTreeSet::new();
        if module.iter().any(|m| m == "tests") {
            graph.insert(module.clone(), targets);
            continue; // unit tests of a module are not part of the product's structure
        }
        for line in text.lines().take_while(|l| l.trim() != "#[cfg(test)]") {
            let code = line.split("//").next().unwrap_or("").trim();
            if code.starts_with("pub use") || code.starts_with("pub(crate) use") || code.starts_with("mod ") {
                continue;
            }
            for path in paths_in(code) {
                let absolute = match path.first().map(String::as_str) {
                    Some("crate") => path[1..].to_vec(),
                    Some("super") => {
                        // `super` of a file module is its directory's module; of a
                        // directory module (mod.rs), the one above.
                        let mut base = module.clone();
                        let mut rest = &path[..];
                        if !is_dir_module {
                            base.pop();
                            rest = &rest[1..];
                        }
                        while rest.first().is_some_and(|s| s == "super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        base.extend(rest.iter().cloned());
                        base
                    }
                    _ => continue,
                };
                let target =
                    (0..=absolute.len()).rev().map(|n| absolute[..n].to_vec()).find(|m| modules.contains_key(m));
                if let Some(target) = target.filter(|t| t != module && !t.is_empty()) {
                    targets.insert(target);
                }
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Every path that starts with `crate::` or `super::` in a line, group imports
/// (`crate::a::{b::C, d}`) expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start).map(|i| i + from) {
            from = at + start.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // part of a longer path or name (`super::super::`, `my_crate::`)
            }
            let head = start.trim_end_matches("::").to_string();
            expand(vec![head], &code[from..], &mut found);
        }
    }
    found
}

fn expand(prefix: Vec<String>, rest: &str, found: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut rest = rest;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut item_start = 0;
            let mut level = 0;
            let inner = &group[..end];
            for (i, c) in inner.char_indices().chain(std::iter::once((inner.len(), ','))) {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => {
                        expand(path.clone(), inner[item_start..i].trim(), found);
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() || ident == "self" {
            break;
        }
        path.push(ident.clone());
        rest = &rest[ident.len()..];
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => break,
        }
    }
    found.push(path);
}

/// The groups of two or more modules that reach each other (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        groups: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.groups.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.groups
}
