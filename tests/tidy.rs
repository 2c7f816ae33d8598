//! The invariants ARCHITECTURE.md states as absences, checked over the source tree (as `just`
//! and rust-analyzer keep "tidy" tests): a rule that is only written down drifts.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (relative to the repository) whose name ends in one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<(String, String)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // Build output and fuzzing artifacts are not source.
                if !matches!(
                    p.file_name().and_then(|n| n.to_str()),
                    Some("target" | "corpus" | "artifacts")
                ) {
                    walk(&p, out);
                }
            } else {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    let base = root().join(dir);
    if base.is_dir() {
        walk(&base, &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            exts.iter().any(|e| name.ends_with(e))
        })
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect()
}

fn rust(dir: &str) -> Vec<(String, String)> {
    files(dir, &[".rs"])
}

/// Lines of `text` holding `needle`, outside `//` comments, as `path:line: text`.
fn hits(path: &str, text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains(needle)
        })
        .map(|(i, l)| format!("{path}:{}: {}", i + 1, l.trim()))
        .collect()
}

fn assert_none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

#[test]
fn stdout_is_written_only_through_the_stdout_module() {
    // `println!` panics on a closed pipe (and release builds abort): commands print through
    // `stdout::print`, which ends quietly when the reader went away.
    let mut found = Vec::new();
    for (path, text) in rust("src") {
        if path == "src/stdout.rs" {
            continue;
        }
        for m in ["println!", "print!(", "eprintln!", "eprint!(", "dbg!("] {
            found.extend(hits(&path, &text, m));
        }
    }
    assert_none(
        "printing outside src/stdout.rs and the operational log",
        found,
    );
}

#[test]
fn only_the_log_module_spells_a_field_of_a_log_line() {
    let mut found = Vec::new();
    for (path, text) in rust("src") {
        if path.starts_with("src/log/") {
            continue;
        }
        // The names no other text uses (`notification`, `record` and `recovered` are words).
        for field in ["receivedAt", "invalidJson"] {
            found.extend(hits(&path, &text, field));
        }
    }
    assert_none("a log line's field named outside src/log/", found);
}

#[test]
fn the_repository_stands_alone() {
    // Spelled in two pieces so this file does not find itself.
    let outside = format!("../{}", "shared");
    let mut found = Vec::new();
    for dir in ["src", "tests", "scripts", "fuzz", "examples", "docs"] {
        for (path, text) in files(dir, &[".rs", ".sh", ".py", ".js", ".toml", ".md", ".yml"]) {
            found.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains(&outside))
                    .map(|(i, l)| format!("{path}:{}: {}", i + 1, l.trim())),
            );
        }
    }
    assert_none("a path outside the repository", found);
}

/// `crate::` paths a file names, as `a::b` (the first two segments).
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in text.lines() {
        let code = l.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.split("::").take(2).collect::<Vec<_>>().join("::"));
        }
    }
    out
}

#[test]
fn imports_flow_one_way() {
    // Commands → log → shared pieces. Inputs and outputs never import each other, the log
    // imports no command, and the shared pieces import nothing above them. The one edge
    // between commands: serve checks its `--ship` URL with ship's own parser at start-up.
    let allowed =
        |path: &str, to: &str| path == "src/input/serve/config.rs" && to == "output::ship";
    let mut found = Vec::new();
    for (path, text) in rust("src") {
        let forbidden: &[&str] = if path.starts_with("src/log/") {
            &["input", "output", "register"]
        } else if path.starts_with("src/input/serve/") || path.starts_with("src/input/connect/") {
            &["output", "register", "input::catchup"]
        } else if path.starts_with("src/input/catchup/") {
            &["output", "register", "input::serve"]
        } else if path.starts_with("src/output/ship/") {
            &["input", "register", "output::tail"]
        } else if path.starts_with("src/output/tail/") {
            &["input", "register", "output::ship"]
        } else if path.starts_with("src/register/") {
            &["input", "output", "log"]
        } else if path == "src/lib.rs" || path == "src/main.rs" {
            &[]
        } else {
            // Shared pieces: cli, config, error, https, oplog, platform/, secret, state,
            // stdout, webhook.
            &["input", "output", "register", "log"]
        };
        for to in crate_paths(&text) {
            let bad = forbidden
                .iter()
                .any(|f| to == *f || to.starts_with(&format!("{f}::")));
            if bad && !allowed(&path, &to) {
                found.push(format!("{path} imports crate::{to}"));
            }
        }
    }
    found.dedup();
    assert_none("an import against the flow", found);
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let found: Vec<String> = rust("src")
        .into_iter()
        .chain(rust("tests"))
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert_none("a file without a //! module doc", found);
}

#[test]
fn no_test_leaves_a_placeholder() {
    let mut found = Vec::new();
    for (path, text) in rust("src").into_iter().chain(rust("tests")) {
        if path == "tests/tidy.rs" {
            continue;
        }
        for m in ["todo!(", "unimplemented!(", "#[ignore"] {
            found.extend(hits(&path, &text, m));
        }
    }
    assert_none("a placeholder", found);
}

#[test]
fn no_two_types_share_a_name() {
    // A name says which thing it is: `Record` is the log's, `Outgoing` the sink's.
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    let mut found = Vec::new();
    for (path, text) in rust("src") {
        for l in text.lines() {
            let words: Vec<&str> = l.split_whitespace().collect();
            let Some(i) = words
                .iter()
                .position(|w| matches!(*w, "struct" | "enum" | "trait"))
            else {
                continue;
            };
            let before_ok = words[..i]
                .iter()
                .all(|w| w.starts_with("pub") || w.starts_with("#["));
            let Some(name) = words.get(i + 1) else {
                continue;
            };
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !before_ok || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            if let Some(first) = seen.insert(name.clone(), path.clone()) {
                found.push(format!("{name}: {first} and {path}"));
            }
        }
    }
    assert_none("two types of one name", found);
}
