//! ARCHITECTURE.md's invariants that a reading of the source can hold: where SQL lives, who
//! calls out, who reads the environment, and that no two modules import each other. Each test
//! reads the product's sources as text (tests at the bottom of a file set aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, relative to the crate, with its text up to its unit tests.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let product = match text.find("\n#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, product)
        })
        .collect()
}

/// The files (outside `allowed` prefixes) whose text matches `hit`, with the first line.
fn offenders(allowed: &[&str], hit: impl Fn(&str) -> bool) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, _)| !allowed.iter().any(|a| path.starts_with(a)))
        .filter_map(|(path, text)| {
            text.lines()
                .find(|l| !l.trim_start().starts_with("//") && hit(l))
                .map(|l| format!("{path}: {}", l.trim()))
        })
        .collect()
}

#[test]
fn sql_lives_only_in_the_ledger() {
    let statements = [
        "\"SELECT ",
        "\"INSERT INTO",
        "\"DELETE FROM",
        "\"CREATE TABLE",
        "\"CREATE INDEX",
        "\"UPDATE sessions",
        "\"UPDATE events",
    ];
    let found = offenders(&["src/ledger/"], |l| {
        statements.iter().any(|s| l.contains(s))
    });
    assert!(found.is_empty(), "SQL outside src/ledger/: {found:#?}");
}

#[test]
fn only_providers_the_outbox_and_the_demo_call_out() {
    // The client recipe lives in http.rs; the demo plays the application against its own
    // simulator on loopback; the simulator plays the providers' callbacks to the API it is told.
    let found = offenders(
        &[
            "src/provider/",
            "src/outbox/",
            "src/http.rs",
            "src/demo.rs",
            "src/simulator/",
        ],
        |l| l.contains(".send()") || l.contains("reqwest::Client::"),
    );
    assert!(found.is_empty(), "outbound HTTP elsewhere: {found:#?}");
}

#[test]
fn the_environment_is_read_only_where_architecture_says() {
    // config/ reads every variable the config names; cli/mod.rs reads TOKIO_WORKER_THREADS
    // (the runtime's own override) before choosing the runtime's workers.
    let found = offenders(&["src/config/"], |l| {
        (l.contains("env::var") || l.contains("var_os(")) && !l.contains("TOKIO_WORKER_THREADS")
    });
    assert!(found.is_empty(), "environment read elsewhere: {found:#?}");
}

/// The top-level module a file belongs to (`src/ledger/db.rs` → `ledger`).
fn module_of(path: &str) -> String {
    let rest = path.trim_start_matches("src/");
    let first = rest.split('/').next().unwrap();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn no_two_modules_import_each_other() {
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let modules: BTreeSet<String> = sources().iter().map(|(p, _)| module_of(p)).collect();
    for (path, text) in sources() {
        let from = module_of(&path);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                uses.entry(from.clone()).or_default().insert(name);
            }
        }
        // `use crate::{a, b}` lists.
        for group in text.split("use crate::{").skip(1) {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name = part
                    .trim()
                    .split("::")
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if name != from && modules.contains(&name) {
                    uses.entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    // Any cycle, found by a depth-first walk.
    fn walk(
        at: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at.to_string());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in uses.get(at).into_iter().flatten() {
            if let Some(c) = walk(next, uses, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in uses.keys() {
        let cycle = walk(m, &uses, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "modules importing each other: {cycle:?}");
    }
    // The direction the code map names: providers never see the ledger, events never back.
    assert!(
        !uses["provider"].contains("ledger"),
        "provider imports the ledger"
    );
    assert!(!uses["ledger"].contains("events"), "ledger imports events");
}
