//! The shape of a workflow: which step needs which, which steps form a loop, and the
//! keys that name each run of a step in the journal.
//!
//! A step runs once per run, except inside a loop (once per iteration) and in a
//! `for_each` (once per item). Journal events name the run of a step by a key:
//! `draft` (a step), `draft#2` (iteration 2 of its loop), `search[3]` (item 3 of a
//! `for_each`), `search#2[3]` (both). Step names cannot contain `#` or `[`, so keys
//! never clash with names.

use std::collections::{BTreeMap, BTreeSet};

/// A parsed journal key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The step's name.
    pub step: String,
    /// The loop iteration, from 1.
    pub iteration: Option<u32>,
    /// The `for_each` item, from 0.
    pub item: Option<u32>,
}

impl Key {
    /// The key of a step (in an iteration, if any).
    pub fn node(step: &str, iteration: Option<u32>) -> Key {
        Key { step: step.to_string(), iteration, item: None }
    }

    /// Parses a key; plain step names parse as themselves.
    pub fn parse(text: &str) -> Key {
        let (rest, item) = match text.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
            Some((rest, i)) => (rest, i.parse().ok()),
            None => (text, None),
        };
        let (step, iteration) = match rest.rsplit_once('#') {
            Some((s, k)) => (s, k.parse().ok()),
            None => (rest, None),
        };
        Key { step: step.to_string(), iteration, item }
    }

    /// This key without its item: the key of the step (for a `for_each` item, of the whole fan-out).
    pub fn without_item(&self) -> Key {
        Key { item: None, ..self.clone() }
    }

    /// The key of item `i` of this step.
    pub fn with_item(&self, i: u32) -> Key {
        Key { item: Some(i), ..self.clone() }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.step)?;
        if let Some(k) = self.iteration {
            write!(f, "#{k}")?;
        }
        if let Some(i) = self.item {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

/// The name of a step in a key (`search#2[3]` → `search`).
pub fn step_of(key: &str) -> &str {
    key.split(['#', '[']).next().unwrap_or(key)
}

/// One step as the graph sees it.
#[derive(Clone, Debug)]
pub struct GraphStep<'a> {
    /// Its name.
    pub name: &'a str,
    /// The steps it needs.
    pub needs: &'a [String],
    /// The loop it belongs to.
    pub in_loop: Option<&'a str>,
}

/// Every cycle among the steps (and loops), each written `a -> b -> a`. Inside a loop,
/// cycles are among its steps; outside, a loop counts as one node that needs whatever
/// its steps need from outside it.
pub fn cycles(steps: &[GraphStep<'_>]) -> Vec<String> {
    let in_loop: BTreeMap<&str, Option<&str>> = steps.iter().map(|s| (s.name, s.in_loop)).collect();
    let unit = |name: &str| -> String {
        match in_loop.get(name).copied().flatten() {
            Some(l) => format!("loop {l}"),
            None => name.to_string(),
        }
    };
    // Edges point from a node to what it needs, in one graph per scope.
    let mut scopes: BTreeMap<Option<&str>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for s in steps {
        scopes.entry(s.in_loop).or_default().entry(s.name.to_string()).or_default();
        scopes.entry(None).or_default().entry(unit(s.name)).or_default();
        for need in s.needs {
            let Some(need_loop) = in_loop.get(need.as_str()) else { continue };
            if s.in_loop.is_some() && *need_loop == s.in_loop {
                scopes.entry(s.in_loop).or_default().entry(s.name.to_string()).or_default().insert(need.clone());
            } else if unit(s.name) != unit(need) {
                scopes.entry(None).or_default().entry(unit(s.name)).or_default().insert(unit(need));
            }
        }
    }
    let mut found = Vec::new();
    for graph in scopes.values() {
        let mut done = BTreeSet::new();
        for start in graph.keys() {
            let mut path = Vec::new();
            visit(graph, start, &mut path, &mut done, &mut found);
        }
    }
    found
}

fn visit(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    found: &mut Vec<String>,
) {
    if done.contains(node) {
        return;
    }
    if let Some(at) = path.iter().position(|p| p == node) {
        // `path` runs from a step to what it needs; print in the direction of `needs`.
        let mut cycle: Vec<&str> = path[at..].iter().map(String::as_str).collect();
        cycle.push(node);
        found.push(cycle.join(" -> "));
        return;
    }
    path.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        visit(graph, next, path, done, found);
    }
    path.pop();
    done.insert(node.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step<'a>(name: &'a str, needs: &'a [String], in_loop: Option<&'a str>) -> GraphStep<'a> {
        GraphStep { name, needs, in_loop }
    }

    #[test]
    fn keys_round_trip() {
        for text in ["draft", "draft#2", "search[3]", "search#2[3]", "a-b_c#10[0]"] {
            assert_eq!(Key::parse(text).to_string(), text);
        }
        let k = Key::parse("search#2[3]");
        assert_eq!((k.step.as_str(), k.iteration, k.item), ("search", Some(2), Some(3)));
        assert_eq!(k.without_item().to_string(), "search#2");
        assert_eq!(step_of("search#2[3]"), "search");
    }

    #[test]
    fn cycles_are_named() {
        let (a, b, c) = (vec!["c".to_string()], vec!["a".to_string()], vec!["b".to_string()]);
        let found = cycles(&[step("a", &a, None), step("b", &b, None), step("c", &c, None)]);
        assert_eq!(found, vec!["a -> c -> b -> a"]);
        let none: Vec<String> = Vec::new();
        let d = vec!["a".to_string()];
        assert!(cycles(&[step("a", &none, None), step("b", &d, None), step("c", &d, None)]).is_empty());
    }

    #[test]
    fn loops_are_one_node_outside_and_a_graph_inside() {
        let none: Vec<String> = Vec::new();
        let (plan, gen, test, after) =
            (vec!["test".to_string()], vec!["plan".to_string()], vec!["gen".to_string()], vec!["test".to_string()]);
        // plan needs test (inside the loop), and the loop needs plan: a cycle through the loop.
        let found =
            cycles(&[step("plan", &plan, None), step("gen", &gen, Some("fix")), step("test", &test, Some("fix"))]);
        assert_eq!(found, vec!["loop fix -> plan -> loop fix"]);
        let ok = cycles(&[
            step("plan", &none, None),
            step("gen", &gen, Some("fix")),
            step("test", &test, Some("fix")),
            step("ship", &after, None),
        ]);
        assert!(ok.is_empty(), "{ok:?}");
    }
}
