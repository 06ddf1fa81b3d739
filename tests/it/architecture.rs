//! Issue 37.1, kept so: dependencies point down. The vocabulary at the bottom (keys,
//! records and stores, the principal, credentials, scopes, environments, the clock, quotas,
//! backend errors) never imports a layer; and no two files of one folder import each other
//! (directly or round a circle) through `super::<file>` paths.
//!
//! Read from the source as text: an import is a `crate::<module>` or `super::<file>` path in
//! code (comments, doc links and `#[cfg(test)]` modules are not imports of the library).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

/// The bottom: files and folders under `src/` that no layer may be imported by.
const BOTTOM: [&str; 14] = [
    "key",
    "audit",
    "events",
    "webhooks",
    "store",
    "principal.rs",
    "credential.rs",
    "scope.rs",
    "environment.rs",
    "clock.rs",
    "quota.rs",
    "backend_error.rs",
    "support/timestamp.rs",
    "support/unix_millis.rs",
];

/// The layers (and the FORG preset, which is built from them).
const LAYERS: [&str; 9] = [
    "auth",
    "rate_limit",
    "usage",
    "activity",
    "failure_limit",
    "client_ip",
    "session",
    "manage",
    "forg",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `path` (or `path` itself).
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    files.sort();
    files
}

/// The library's code of `file`: without comments, and without what follows a
/// `#[cfg(test)]` (test modules stand at the end of a file); a `tests.rs` or `*_tests.rs`
/// file has none.
fn code(file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return String::new();
    }
    let text = fs::read_to_string(file).unwrap();
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if !trimmed.starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

#[test]
fn no_bottom_module_imports_a_layer() {
    let layers = LAYERS.join("|");
    // `crate::usage::X`, and `crate::{key::K, usage::X}` (the braces' contents).
    let direct = Regex::new(&format!(r"\bcrate::({layers})\b")).unwrap();
    let grouped = Regex::new(&format!(r"\bcrate::\{{[^}}]*\b({layers})::")).unwrap();
    let mut found = Vec::new();
    for bottom in BOTTOM {
        for file in rust_files(&src().join(bottom)) {
            let code = code(&file);
            for layer in direct
                .captures_iter(&code)
                .chain(grouped.captures_iter(&code))
            {
                found.push(format!(
                    "{} imports the layer `{}`",
                    file.strip_prefix(src()).unwrap().display(),
                    &layer[1]
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the vocabulary imports layers:\n{}",
        found.join("\n")
    );
}

/// The check itself sees an import (it would pass on anything otherwise).
#[test]
fn the_check_sees_imports() {
    let layers = LAYERS.join("|");
    let direct = Regex::new(&format!(r"\bcrate::({layers})\b")).unwrap();
    let code = code(&src().join("rate_limit/layer.rs"));
    assert!(direct.is_match(&code), "rate_limit/layer.rs imports layers");
    let store = rust_files(&src().join("store"));
    assert!(store.len() > 10, "{store:?}");
}

#[test]
fn no_two_files_of_a_folder_import_each_other() {
    let sibling = Regex::new(r"\bsuper::([a-z_][a-z0-9_]*)::").unwrap();
    let mut circles = Vec::new();
    let mut folders: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for file in rust_files(&src()) {
        folders
            .entry(file.parent().unwrap().to_owned())
            .or_default()
            .push(file);
    }
    for (folder, files) in folders {
        let name = |file: &Path| file.file_stem().unwrap().to_string_lossy().into_owned();
        let names: BTreeSet<String> = files.iter().map(|file| name(file)).collect();
        // A file's arrows: the sibling files its `super::<file>::` paths name (`mod.rs`
        // is the folder itself, above its files).
        let arrows: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .filter(|file| name(file) != "mod" && name(file) != "lib")
            .map(|file| {
                let to = sibling
                    .captures_iter(&code(file))
                    .map(|capture| capture[1].to_owned())
                    .filter(|to| names.contains(to) && *to != name(file))
                    .collect();
                (name(file), to)
            })
            .collect();
        for start in arrows.keys() {
            if let Some(circle) = circle_from(start, &arrows) {
                circles.push(format!("{}: {}", folder.display(), circle.join(" -> ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files that import each other:\n{}",
        circles.join("\n")
    );
}

/// A path of arrows from `start` back to it, if there is one.
fn circle_from(start: &str, arrows: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in arrows.get(last).into_iter().flatten() {
            if next == start {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_circle_check_finds_a_circle() {
    let arrows: BTreeMap<String, BTreeSet<String>> = [
        ("layer", vec!["future"]),
        ("future", vec!["config"]),
        ("config", vec!["layer"]),
        ("service", vec!["future"]),
    ]
    .into_iter()
    .map(|(from, to)| (from.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        circle_from("layer", &arrows).unwrap(),
        ["layer", "future", "config", "layer"]
    );
    assert_eq!(circle_from("service", &arrows), None);
}

/// Issue 37.4: small rooms. A file past 500 lines holds more than one concept: the
/// library's, and the tests', examples' and benches' too.
#[test]
fn no_source_file_is_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let long: Vec<String> = ["src", "tests", "examples", "benches"]
        .into_iter()
        .flat_map(|dir| rust_files(&root.join(dir)))
        .filter_map(|file| {
            let lines = fs::read_to_string(&file).unwrap().lines().count();
            (lines > 500).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

/// Issue 37.9: the README names every test binary beside `tests/it/` (a count in the docs
/// is checked, not remembered).
#[test]
fn the_readme_names_every_test_binary() {
    let readme = include_str!("../../README.md");
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut binaries = Vec::new();
    for entry in fs::read_dir(tests).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            binaries.push(format!(
                "tests/{}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(binaries.len() >= 4, "{binaries:?}");
    let missing: Vec<&String> = binaries
        .iter()
        .filter(|binary| !readme.contains(&format!("`{binary}`")))
        .collect();
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}
