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
        "roster-api",
    ] {
        assert!(
            !names.contains(server_only),
            "roster-client links {server_only}"
        );
    }
}

/// Top-level modules of the crate rooted at `src`, each with the files that make it up.
fn top_level_modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            mods.entry(stem).or_default().extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs")
            && !["lib", "main"].contains(&stem.as_str())
        {
            mods.entry(stem).or_default().push(p);
        }
    }
    mods
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

/// The crate-level names a file refers to: `crate::x`, `crate::{x, y::z}`, and (in a
/// top-level module's own file) `super::x`.
fn referenced_modules(text: &str, top_level_file: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut prefixes = vec!["crate::"];
    if top_level_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (i, _) in text.match_indices(prefix) {
            // `$crate::` and `roster_crate::` are not this crate's root.
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let rest = &text[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').map(ident));
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// `text` up to its unit-test module (`#[cfg(test)]` then `mod`), which ends the file by
/// house style.
fn without_unit_tests(text: &str) -> String {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") && after.contains('{') {
            return text[..at].to_string();
        }
        from = at + 1;
    }
    text.to_string()
}

/// Crates whose modules still import each other in a circle, with the circle as it stands:
/// issue 14 untangles them, and each leaves this list when its modules run one way.
const STILL_TANGLED: &[&str] = &[];

#[test]
fn modules_inside_each_crate_import_each_other_one_way() {
    let mut tangled = BTreeMap::new();
    for (name, (src, _)) in workspace().crates {
        let mods = top_level_modules(&src);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, files) in &mods {
            let edges = graph.entry(m.clone()).or_default();
            for f in files.iter().filter(|f| !f.ends_with("tests.rs")) {
                let text = without_unit_tests(&std::fs::read_to_string(f).unwrap());
                let top = f.parent() == Some(src.as_path());
                for r in referenced_modules(&text, top) {
                    if &r != m && mods.contains_key(&r) {
                        edges.insert(r);
                    }
                }
            }
        }
        if let Some(c) = find_cycle(&graph) {
            tangled.insert(name, c.join(" -> "));
        }
    }
    let still: BTreeSet<&str> = STILL_TANGLED.iter().copied().collect();
    let now: BTreeSet<&str> = tangled.keys().map(String::as_str).collect();
    assert_eq!(
        now, still,
        "crates whose top-level modules import each other in a circle: {tangled:#?}"
    );
}

#[test]
fn the_module_reader_sees_the_import_forms() {
    let text = "use crate::node::X;\nuse crate::{auth, wire::Op};\nlet v = $crate::m;\nroster_crate::q;\nsuper::sibling::f();";
    let top: Vec<String> = referenced_modules(text, true).into_iter().collect();
    assert_eq!(top, ["auth", "node", "sibling", "wire"]);
    let nested: Vec<String> = referenced_modules(text, false).into_iter().collect();
    assert_eq!(nested, ["auth", "node", "wire"]);
    let with_tests = "use crate::a;\n#[cfg(test)]\nfn helper() {}\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n";
    let kept = without_unit_tests(with_tests);
    assert!(kept.contains("helper") && kept.contains("crate::a") && !kept.contains("crate::b"));
}
