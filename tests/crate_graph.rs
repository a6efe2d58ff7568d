//! The shape of the workspace, checked: crates depend on each other one way, each states its
//! one reason in the first line of its `lib.rs`, the client library links no server machinery,
//! and inside a crate the top-level modules import each other one way too.
//!
//! The crate graph comes from `cargo metadata`; module imports from the sources (`crate::x`
//! paths and `super::x` in top-level module files), read as text: a cheap check, not a parser.
//! Unit tests (a `#[cfg(test)] mod` to the end of its file, or a `tests.rs`) are left out: a
//! test may set up its state through any module of its crate, as dev-dependencies may.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

struct Workspace {
    /// Workspace crates by name: (source root directory, dependencies of every kind).
    crates: BTreeMap<String, (PathBuf, BTreeSet<String>)>,
    /// Package id -> (name, normal and build dependencies by package id), for the whole tree.
    resolve: BTreeMap<String, (String, Vec<String>)>,
    ids: BTreeMap<String, String>,
}

fn workspace() -> Workspace {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: BTreeSet<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut names = BTreeMap::new();
    let mut crates = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for p in m["packages"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap().to_string();
        let name = p["name"].as_str().unwrap().to_string();
        names.insert(id.clone(), name.clone());
        if members.contains(id.as_str()) {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            crates.insert(name.clone(), (manifest.parent().unwrap().join("src"), deps));
            ids.insert(name, id);
        }
    }
    let mut resolve = BTreeMap::new();
    for n in m["resolve"]["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap().to_string();
        let deps = n["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null() || k["kind"] == "build")
            })
            .map(|d| d["pkg"].as_str().unwrap().to_string())
            .collect();
        resolve.insert(id.clone(), (names[&id].clone(), deps));
    }
    Workspace {
        crates,
        resolve,
        ids,
    }
}

/// A cycle in `graph` as a path `a -> b -> ... -> a`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn workspace_crates_depend_on_each_other_one_way() {
    let ws = workspace();
    let graph: BTreeMap<String, BTreeSet<String>> = ws
        .crates
        .iter()
        .map(|(name, (_, deps))| {
            let inside = deps
                .iter()
                .filter(|d| ws.crates.contains_key(*d))
                .cloned()
                .collect();
            (name.clone(), inside)
        })
        .collect();
    assert_eq!(find_cycle(&graph), None, "a cycle between workspace crates");
}

#[test]
fn every_crate_states_its_one_reason_first() {
    for (name, (src, _)) in workspace().crates {
        let root = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| src.join(f))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name}: no lib.rs or main.rs in {}", src.display()));
        let text = std::fs::read_to_string(&root).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("//! ") && first.len() > 30,
            "{}: the first line should be a `//!` line saying why the crate exists, found {first:?}",
            root.display()
        );
    }
}

#[test]
fn the_client_library_links_no_server_machinery() {
    let ws = workspace();
    let mut seen = BTreeSet::new();
    let mut todo = vec![ws.ids["roster-client"].clone()];
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(ws.resolve[&id].1.iter().cloned());
        }
    }
    let names: BTreeSet<&str> = seen.iter().map(|id| ws.resolve[id].0.as_str()).collect();
    assert!(names.contains("tonic"), "the walk found the client's tree");
    for server_only in [
        "openraft",
        "redb",
        "sqlparser",
        "roster-sql",
        "roster-raft-store",
        "roster-membership",
        "roster-node",
        "roster-frontend",
    ] {
        assert!(
            !names.contains(server_only),
            "roster-client links {server_only}"
        );
    }
}

/// Every module of the crate rooted at `src`, by path (`["query", "drain"]`), with its file.
/// `tests.rs` files are unit tests and left out.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    for f in rust_files(src) {
        let rel = f.strip_prefix(src).unwrap();
        let mut path: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if path.last().is_some_and(|l| l == "tests") {
            continue;
        }
        if path
            .last()
            .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
        {
            path.pop();
        }
        if path.first().is_some_and(|p| p == "bin") {
            continue;
        }
        out.insert(path, f);
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The paths a chain of `::`-separated identifiers starting at `rest` spells, with `{a, b::c}`
/// groups expanded: `x::{a, b::c}` gives `x::a` and `x::b::c`.
fn path_chains(rest: &str) -> Vec<Vec<String>> {
    let mut head = Vec::new();
    let mut r = rest;
    loop {
        if let Some(group) = r.strip_prefix('{') {
            let mut depth = 0;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            let inner = &group[..end];
            let mut parts = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            return parts
                .into_iter()
                .flat_map(|p| path_chains(p.trim()))
                .map(|tail| head.iter().cloned().chain(tail).collect())
                .collect();
        }
        let ident: String = r
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        r = &r[ident.len()..];
        head.push(ident);
        match r.strip_prefix("::") {
            Some(next) => r = next,
            None => break,
        }
    }
    vec![head]
}

/// The module paths a file at `here` refers to: `crate::x::y`, `super::x`, `self::x`, and names
/// a `use` of this crate brought in (`use crate::query;` then `query::drain::f`), in any
/// `{...}` group form. Items are kept in the path; the caller trims to modules.
fn references(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let starts = |i: usize| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':')
    };
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("self::", here.to_vec()),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
    ] {
        for (i, _) in text.match_indices(prefix) {
            if !starts(i) {
                continue;
            }
            let mut base = base.clone();
            let mut rest = &text[i + prefix.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for chain in path_chains(rest) {
                out.push(base.iter().cloned().chain(chain).collect());
            }
        }
    }
    out
}

/// Aliases a file's `use` lines give to paths of this crate, by their last name.
fn aliases(refs: &[Vec<String>]) -> BTreeMap<String, Vec<String>> {
    refs.iter()
        .filter_map(|r| r.last().map(|l| (l.clone(), r.clone())))
        .collect()
}

/// For each module with submodules, the edges between its children that some file's imports
/// make: a file in child `a` referring to something in child `b` of the same parent.
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mods = modules(src);
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (here, file) in &mods {
        let text = without_unit_tests(&std::fs::read_to_string(file).unwrap());
        let mut refs = references(&text, here);
        // `use crate::query;` then `query::drain::f(..)`: follow the alias.
        for (name, target) in aliases(&refs) {
            if !mods.contains_key(&target) || name == "self" {
                continue;
            }
            let pat = format!("{name}::");
            for (i, _) in text.match_indices(&pat) {
                let before = text[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                for chain in path_chains(&text[i + pat.len()..]) {
                    refs.push(target.iter().cloned().chain(chain).collect());
                }
            }
        }
        for r in refs {
            // The module the reference lands in: its longest prefix that is a module.
            let Some(target) = (0..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| mods.contains_key(p))
            else {
                continue;
            };
            let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < here.len() && common < target.len() {
                edges
                    .entry(here[..common].to_vec())
                    .or_default()
                    .entry(here[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
    }
    edges
}

/// `text` up to its unit-test module (`#[cfg(test)]` then `mod`), which ends the file by
/// house style.
fn without_unit_tests(text: &str) -> String {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        let block = after.strip_prefix("mod ").is_some_and(|m| {
            let name_end = m.find(|c: char| !(c.is_alphanumeric() || c == '_'));
            name_end.is_some_and(|e| m[e..].trim_start().starts_with('{'))
        });
        if block {
            return text[..at].to_string();
        }
        from = at + 1;
    }
    text.to_string()
}

#[test]
fn modules_inside_each_crate_import_each_other_one_way() {
    let mut tangled = Vec::new();
    for (name, (src, _)) in workspace().crates {
        for (parent, graph) in sibling_edges(&src) {
            if let Some(c) = find_cycle(&graph) {
                let at = if parent.is_empty() {
                    "crate root".to_string()
                } else {
                    parent.join("::")
                };
                tangled.push(format!("{name} ({at}): {}", c.join(" -> ")));
            }
        }
    }
    assert!(
        tangled.is_empty(),
        "modules that import each other in a circle:\n{}",
        tangled.join("\n")
    );
}

#[test]
fn the_module_reader_sees_the_import_forms() {
    let here = ["transition".to_string(), "catalog".to_string()];
    let text = "use crate::query;\nuse crate::{model::ids::X, query::placement};\nuse super::registry::{self, f};\nlet v = $crate::m;\nroster_crate::q;";
    let refs = references(text, &here);
    let shown: Vec<String> = refs.iter().map(|r| r.join("::")).collect();
    assert_eq!(
        shown,
        [
            "query",
            "model::ids::X",
            "query::placement",
            "transition::registry::self",
            "transition::registry::f"
        ]
    );
    assert_eq!(aliases(&refs)["placement"], ["query", "placement"]);
    let with_tests = "use crate::a;\n#[cfg(test)]\nfn helper() {}\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n";
    let kept = without_unit_tests(with_tests);
    assert!(kept.contains("helper") && kept.contains("crate::a") && !kept.contains("crate::b"));
    let declared = "#[cfg(test)]\nmod tests;\nfn after() { crate::c::f() }\n";
    assert!(without_unit_tests(declared).contains("crate::c"));
}

#[test]
fn a_circle_between_sibling_modules_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("layer")).unwrap();
    std::fs::write(src.join("lib.rs"), "//! x\npub mod layer;\n").unwrap();
    std::fs::write(src.join("layer.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("layer/a.rs"), "use super::b::f;\n").unwrap();
    std::fs::write(
        src.join("layer/b.rs"),
        "use crate::layer;\nfn g() { layer::a::h(); }\n",
    )
    .unwrap();
    let edges = sibling_edges(src);
    let graph = &edges[&vec!["layer".to_string()]];
    assert_eq!(
        find_cycle(graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
