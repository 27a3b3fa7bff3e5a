//! Which source files of a crate import each other in a circle. A file's imports are the
//! `crate::…` and `super::…` paths its code names outside comments and its unit tests
//! (grouped ones included),
//! each resolved to the deepest module file that exists; a cycle is a strongly connected set
//! of two or more files. The unit tests hold `shared`, `native-trainer` and `web-ui` to none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`serve::http_api`; the crate root is ``) → the module paths it imports.
pub type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the crate whose sources are under `src`.
pub fn module_graph(src: &Path) -> std::io::Result<ModuleGraph> {
    let mut sources = BTreeMap::new();
    collect(src, src, &mut sources)?;
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    Ok(sources
        .iter()
        .map(|(module, text)| {
            let imports = imported_paths(module, text)
                .into_iter()
                .filter_map(|path| deepest_module(&path, &modules))
                .filter(|target| target != module)
                .collect();
            (module.clone(), imports)
        })
        .collect())
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("below the root");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path)?;
            // A file's unit tests may use what imports it; they are not part of the design.
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            // Comments name modules without importing them.
            let code: Vec<&str> = text
                .lines()
                .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
                .collect();
            out.insert(parts.join("::"), code.join("\n"));
        }
    }
    Ok(())
}

/// Every `crate::…` / `super::…` path in `text`, as segments from the crate root.
fn imported_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let mut paths = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let starts_word = at == 0 || !is_ident(bytes[at - 1]);
        let (base, prefix_len) = if starts_word && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if starts_word && rest.starts_with("super::") {
            let mut base = here.clone();
            let mut len = 0;
            while text[at + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            (base, len)
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let (found, used) = path_tree(&text[at + prefix_len..], base);
        paths.extend(found);
        at += prefix_len + used.max(1);
    }
    paths
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The paths of `a::b`, `a::{b, c::d}` after `base`, and how many bytes they took.
fn path_tree(text: &str, mut base: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut at = 0;
    loop {
        let ident_len = text[at..].bytes().take_while(|b| is_ident(*b)).count();
        if ident_len > 0 {
            base.push(text[at..at + ident_len].to_string());
            at += ident_len;
            if text[at..].starts_with("::") {
                at += 2;
                continue;
            }
            return (vec![base], at);
        }
        if !text[at..].starts_with('{') {
            return (vec![base], at);
        }
        // A group: each item continues `base`.
        at += 1;
        let mut paths = Vec::new();
        loop {
            let skipped = text[at..]
                .bytes()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            at += skipped;
            if text[at..].starts_with('}') || at >= text.len() {
                return (paths, at + 1);
            }
            let (found, used) = path_tree(&text[at..], base.clone());
            paths.extend(found);
            at += used.max(1);
            // Past `as alias`, to the item's end.
            while at < text.len() && !text[at..].starts_with(',') && !text[at..].starts_with('}') {
                at += text[at..].chars().next().map_or(1, char::len_utf8);
            }
            if text[at..].starts_with(',') {
                at += 1;
            }
        }
    }
}

/// The deepest module a path names (`serve::http_api::router` → `serve::http_api`).
fn deepest_module(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// The sets of two or more modules that import each other in a circle (Tarjan's strongly
/// connected components), each sorted.
pub fn cycles(graph: &ModuleGraph) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a ModuleGraph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
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
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !search.index.contains_key(v.as_str()) {
            search.visit(v);
        }
    }
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> ModuleGraph {
        edges
            .iter()
            .map(|(from, to)| (from.to_string(), to.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn imports_resolve_through_groups_and_super_to_module_files() {
        let text = "use super::{app_state::AppState, error_response::error};\n\
                    use crate::store::{self, InsertOutcome};\nuse super::super::chat;\n\
                    fn f() { crate::train::fused_ops::FusedOps::default(); }\n\
                    #[cfg(test)]\nmod tests { use crate::serve::http_api; }";
        let modules: BTreeSet<String> = [
            "serve::app_state",
            "serve::error_response",
            "store",
            "chat",
            "train::fused_ops",
            "serve::http_api",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let cut = &text[..text.find("#[cfg(test)]").unwrap()];
        let mut found: Vec<String> = imported_paths("serve::pair_route", cut)
            .into_iter()
            .filter_map(|p| deepest_module(&p, &modules))
            .collect();
        found.sort();
        found.dedup();
        assert_eq!(
            found,
            [
                "chat",
                "serve::app_state",
                "serve::error_response",
                "store",
                "train::fused_ops"
            ]
        );
    }

    #[test]
    fn cycles_of_two_and_three_are_found_and_a_chain_is_not() {
        let found = cycles(&graph(&[
            ("a", &["b"]),
            ("b", &["a", "c"]),
            ("c", &["d"]),
            ("d", &["e"]),
            ("e", &["c"]),
            ("f", &["a"]),
        ]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&vec!["a".to_string(), "b".to_string()]));
        assert!(found.contains(&vec!["c".into(), "d".into(), "e".into()]));
        assert!(cycles(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])).is_empty());
    }

    #[test]
    fn no_file_of_the_three_crates_imports_one_that_imports_it_back() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for krate in ["shared", "native-trainer", "web-ui"] {
            let graph = module_graph(&root.join(krate).join("src")).unwrap();
            assert!(graph.len() > 20, "{krate}: only {} files read", graph.len());
            assert_eq!(cycles(&graph), Vec::<Vec<String>>::new(), "{krate}");
        }
    }
}
