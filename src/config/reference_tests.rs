//! The README's configuration reference lists exactly the keys the structs accept.

use super::{ConfigFile, SinkConfig, SourceConfig};

const README: &str = include_str!("../../README.md");

/// The `section.key` names in the first column of one binary's reference table.
fn documented(binary: &str) -> Vec<String> {
    let start = README
        .find("## Configuration reference")
        .expect("a configuration reference");
    let section = &README[start..];
    let table = section
        .split(&format!("`{binary}`:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no table for {binary}"));
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .filter(|key| key != "key")
        .collect()
}

/// Every key the configuration accepts, as `section.key`; nested sections are keys too.
fn accepted<C: ConfigFile>() -> Vec<String> {
    let sections = C::sections();
    let mut keys: Vec<String> = sections
        .iter()
        .flat_map(|(section, fields)| fields.iter().map(move |f| format!("{section}.{f}")))
        .filter(|key| !sections.iter().any(|(section, _)| section == key))
        .collect();
    keys.sort();
    keys
}

fn assert_documented<C: ConfigFile>(binary: &str) {
    let mut listed = documented(binary);
    listed.sort();
    assert_eq!(listed, accepted::<C>(), "README's {binary} reference");
}

#[test]
fn the_source_reference_lists_every_key() {
    assert_documented::<SourceConfig>("cdc-source");
}

#[test]
fn the_sink_reference_lists_every_key() {
    assert_documented::<SinkConfig>("cdc-sink");
}
