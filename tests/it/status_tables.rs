//! Issue 37.3: one status table. The README's "Status codes" and the `reject` module's
//! table are the same rows, word for word, and they are exactly the rows of
//! `RejectionKind::ALL`, each with its status: a new kind, a changed status, a stale row
//! or one table edited without the other fails here.

use std::collections::BTreeSet;

use tower_api_key::reject::RejectionKind;

/// The rows (`| 403 | `code` | when |`) of the first table after `heading` in `text`,
/// each line without `prefix` (a doc comment's `//! `).
fn table(text: &str, heading: &str, prefix: &str) -> Vec<String> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    text[start..]
        .lines()
        .map(|line| line.strip_prefix(prefix).unwrap_or(line).trim())
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter(|line| {
            line[1..]
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect()
}

/// `(status, code)` of a row.
fn status_and_code(row: &str) -> (u16, String) {
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    (
        cells[1].parse().unwrap(),
        cells[2].trim_matches('`').to_owned(),
    )
}

fn readme() -> Vec<String> {
    table(include_str!("../../README.md"), "## Status codes", "")
}

#[test]
fn the_status_table_is_the_kinds_table() {
    let documented: BTreeSet<(u16, String)> =
        readme().iter().map(|row| status_and_code(row)).collect();
    let kinds: BTreeSet<(u16, String)> = RejectionKind::ALL
        .into_iter()
        .map(|kind| (kind.status().as_u16(), kind.code().to_owned()))
        .collect();
    assert_eq!(documented, kinds);
    assert_eq!(readme().len(), RejectionKind::ALL.len(), "each kind once");
}

#[test]
fn the_reject_module_shows_the_readme_table() {
    let module = table(
        include_str!("../../src/reject/mod.rs"),
        "//! | status |",
        "//! ",
    );
    assert_eq!(module, readme());
}

#[test]
fn the_management_table_is_the_api_codes_table() {
    let rows = table(
        include_str!("../../README.md"),
        "the management API's own",
        "",
    );
    let documented: BTreeSet<(u16, String)> = rows.iter().map(|row| status_and_code(row)).collect();
    let codes: BTreeSet<(u16, String)> = tower_api_key::manage::ApiCode::ALL
        .into_iter()
        .map(|code| (code.status().as_u16(), code.code().to_owned()))
        .collect();
    assert_eq!(documented, codes);
    assert_eq!(rows.len(), codes.len(), "each code once");
}
