//! `cargo xtask wit-check`: a released phase contract is frozen, and within a version
//! track the contract only grows.
//!
//! `wit/phase.wit` is compared with every copy in `wit/released/` of its track (the major
//! version, or the minor for 0.x, as wasmtime links semver: 0.1.0 and 0.1.1 are one track)
//! that is not newer than it:
//! 1. Structure: `wit_component::semver_check` proves the current package a compatible
//!    upgrade of the release (nothing removed or changed; additions allowed).
//! 2. Documentation: the doc comments are part of the contract (they say what the values
//!    mean: `object-ref.moref` is the case that made this check). Every item of both
//!    packages (interfaces, types, their fields, cases and flags, functions, worlds and
//!    their imports and exports) is named by a path such as `interface vsphere/type
//!    object-ref/moref`, with its doc comment, whitespace collapsed so that re-wrapping
//!    is not a change. If the current version is the released one, the two must be
//!    identical, item for item (a new item or a changed doc needs a new version); once
//!    the version is bumped within the track, docs may change.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use wit_parser::{Docs, InterfaceId, PackageId, Resolve, TypeDefKind, TypeId, WorldItem, WorldKey};

use crate::root;

fn version_of(text: &str) -> Result<semver::Version> {
    let line = text.lines().find(|l| l.trim_start().starts_with("package ")).context("no package line")?;
    let version = line.trim().trim_end_matches(';').rsplit_once('@').context("package has no version")?.1;
    Ok(semver::Version::parse(version)?)
}

/// The semver-compatible track of a version: `(major, 0)` from 1.0 on, `(0, minor)` before.
fn track(v: &semver::Version) -> (u64, u64) {
    if v.major == 0 { (0, v.minor) } else { (v.major, 0) }
}

pub fn check() -> Result<()> {
    let current_text = std::fs::read_to_string(root().join("wit/phase.wit"))?;
    let current = version_of(&current_text)?;
    let mut releases = Vec::new();
    for entry in std::fs::read_dir(root().join("wit/released"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            let text = std::fs::read_to_string(&path)?;
            releases.push((version_of(&text)?, text, path));
        }
    }
    releases.sort_by(|a, b| a.0.cmp(&b.0));
    releases.retain(|(v, ..)| track(v) == track(&current) && *v <= current);
    if releases.is_empty() {
        println!("wit-check: no release of the {current} track yet; nothing to compare");
    }
    for (_, released_text, path) in releases {
        let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
        println!("wit-check: {}", compare(&released_text, &name, &current_text)?);
    }
    Ok(())
}

/// Compare the current contract with a released one of its track; the verdict, or why
/// the current one may not be released as it is.
fn compare(released_text: &str, released_name: &str, current_text: &str) -> Result<String> {
    let (released, current) = (version_of(released_text)?, version_of(current_text)?);
    // Both packages share a name; give the release a distinct version so they can live in
    // one Resolve (semver_check ignores versions and compares structure).
    let renamed = released_text.replacen(&format!("@{released};"), "@0.0.0-released;", 1);
    let mut resolve = Resolve::default();
    let old_pkg = resolve.push_str(released_name, &renamed)?;
    let new_pkg = resolve.push_str("wit/phase.wit", current_text)?;
    let old_world = resolve.select_world(&[old_pkg], Some("phase"))?;
    let new_world = resolve.select_world(&[new_pkg], Some("phase"))?;
    let (old_docs, new_docs) = (docs_of(&resolve, old_pkg), docs_of(&resolve, new_pkg));
    if let Err(e) = wit_component::semver_check(resolve, old_world, new_world) {
        bail!(
            "wit/phase.wit {current} is not a compatible upgrade of the released {released}: {e:#}\n(a breaking change starts a new track: bump the major version, or the minor while on 0.x)"
        );
    }
    if current == released {
        let changes = differences(&old_docs, &new_docs);
        if !changes.is_empty() {
            bail!(
                "wit/phase.wit says {current}, the version released as {released_name}, but differs from it:\n  {}\n(a released contract is frozen, its docs included: bump the version, within the track for a compatible change)",
                changes.join("\n  ")
            );
        }
        return Ok(format!("wit/phase.wit is the released {current}, docs included"));
    }
    Ok(format!("wit/phase.wit {current} is a compatible upgrade of the released {released}"))
}

/// Items present in one map only, and items whose docs differ.
fn differences(released: &BTreeMap<String, String>, current: &BTreeMap<String, String>) -> Vec<String> {
    let mut paths: Vec<&String> = released.keys().chain(current.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| match (released.get(path), current.get(path)) {
            (Some(old), Some(new)) if old != new => {
                Some(format!("{path}: doc changed\n    released: {old:?}\n    now:      {new:?}"))
            }
            (Some(_), None) => Some(format!("{path}: removed")),
            (None, Some(_)) => Some(format!("{path}: added")),
            _ => None,
        })
        .collect()
}

/// The doc comment (whitespace collapsed; "" for none) of every item of a package, by path.
fn docs_of(resolve: &Resolve, pkg: PackageId) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    let package = &resolve.packages[pkg];
    put(&mut docs, "package".into(), &package.docs);
    for (name, id) in &package.interfaces {
        interface_docs(resolve, &format!("interface {name}"), *id, &mut docs);
    }
    for (name, id) in &package.worlds {
        let world = &resolve.worlds[*id];
        let prefix = format!("world {name}");
        put(&mut docs, prefix.clone(), &world.docs);
        for (direction, items) in [("import", &world.imports), ("export", &world.exports)] {
            for (key, item) in items {
                // Named by the interface's own name: a world key of a package interface
                // carries the package version, which differs between the two copies.
                let item_name = match key {
                    WorldKey::Name(n) => n.clone(),
                    WorldKey::Interface(id) => resolve.interfaces[*id].name.clone().unwrap_or_default(),
                };
                let path = format!("{prefix}/{direction} {item_name}");
                match item {
                    WorldItem::Function(f) => put(&mut docs, path, &f.docs),
                    WorldItem::Type { id, .. } => type_docs(resolve, &path, *id, &mut docs),
                    WorldItem::Interface { id, docs: d, .. } => {
                        put(&mut docs, path.clone(), d);
                        if matches!(key, WorldKey::Name(_)) {
                            interface_docs(resolve, &path, *id, &mut docs);
                        }
                    }
                }
            }
        }
    }
    docs
}

fn put(docs: &mut BTreeMap<String, String>, path: String, d: &Docs) {
    let text = d.contents.as_deref().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    docs.insert(path, text);
}

fn interface_docs(resolve: &Resolve, prefix: &str, id: InterfaceId, docs: &mut BTreeMap<String, String>) {
    let interface = &resolve.interfaces[id];
    put(docs, prefix.to_string(), &interface.docs);
    for (name, ty) in &interface.types {
        type_docs(resolve, &format!("{prefix}/type {name}"), *ty, docs);
    }
    for (name, f) in &interface.functions {
        put(docs, format!("{prefix}/func {name}"), &f.docs);
    }
}

/// A type's docs and those of its fields, cases or flags.
fn type_docs(resolve: &Resolve, path: &str, id: TypeId, docs: &mut BTreeMap<String, String>) {
    let ty = &resolve.types[id];
    put(docs, path.to_string(), &ty.docs);
    let members: Vec<(&str, &Docs)> = match &ty.kind {
        TypeDefKind::Record(r) => r.fields.iter().map(|f| (f.name.as_str(), &f.docs)).collect(),
        TypeDefKind::Variant(v) => v.cases.iter().map(|c| (c.name.as_str(), &c.docs)).collect(),
        TypeDefKind::Enum(e) => e.cases.iter().map(|c| (c.name.as_str(), &c.docs)).collect(),
        TypeDefKind::Flags(f) => f.flags.iter().map(|f| (f.name.as_str(), &f.docs)).collect(),
        _ => Vec::new(),
    };
    for (name, d) in members {
        put(docs, format!("{path}/{name}"), d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASED: &str = r#"
/// A test contract.
package vsm:phase@0.1.0;

interface vsphere {
    /// A managed object.
    record object-ref {
        /// Managed object id, e.g. "datacenter-2".
        moref: string,
    }
    enum object-kind {
        /// A datacenter.
        datacenter,
    }
    /// Resolve a path.
    find-object: func(path: string) -> object-ref;
}

world phase {
    import vsphere;
    /// One step.
    export execute: func() -> string;
}
"#;

    fn released_as(version: &str, text: &str) -> String {
        text.replacen("@0.1.0;", &format!("@{version};"), 1)
    }

    #[test]
    fn the_released_text_itself_passes() {
        let verdict = compare(RELEASED, "phase@0.1.0.wit", RELEASED).unwrap();
        assert!(verdict.contains("is the released 0.1.0"), "{verdict}");
    }

    #[test]
    fn a_changed_doc_of_a_released_version_fails() {
        let changed = RELEASED.replace("Managed object id, e.g. \"datacenter-2\".", "`<type>:<id>`.");
        let e = compare(RELEASED, "phase@0.1.0.wit", &changed).unwrap_err().to_string();
        assert!(e.contains("interface vsphere/type object-ref/moref: doc changed"), "{e}");
        for (what, from, to) in [
            ("an enum case", "/// A datacenter.", "/// A data centre."),
            ("a function", "/// Resolve a path.", "/// Resolve an inventory path."),
            ("a world export", "/// One step.", "/// One bounded step."),
            ("the package", "/// A test contract.", "/// The test contract."),
        ] {
            let changed = RELEASED.replace(from, to);
            assert!(compare(RELEASED, "phase@0.1.0.wit", &changed).is_err(), "{what}");
        }
    }

    #[test]
    fn an_addition_to_a_released_version_fails() {
        let added =
            RELEASED.replace("    /// Resolve a path.", "    about: func() -> string;\n    /// Resolve a path.");
        let e = compare(RELEASED, "phase@0.1.0.wit", &added).unwrap_err().to_string();
        assert!(e.contains("interface vsphere/func about: added"), "{e}");
        let bumped = released_as("0.1.1", &added);
        assert!(compare(RELEASED, "phase@0.1.0.wit", &bumped).is_ok(), "additions are fine in a new version");
    }

    #[test]
    fn a_doc_change_in_a_bumped_version_passes() {
        let changed = released_as("0.1.1", &RELEASED.replace("Managed object id, e.g. \"datacenter-2\".", "Opaque."));
        let verdict = compare(RELEASED, "phase@0.1.0.wit", &changed).unwrap();
        assert!(verdict.contains("0.1.1 is a compatible upgrade of the released 0.1.0"), "{verdict}");
    }

    #[test]
    fn rewrapping_a_doc_is_not_a_change() {
        let rewrapped = RELEASED.replace(
            "/// Managed object id, e.g. \"datacenter-2\".",
            "/// Managed object id,\n        /// e.g. \"datacenter-2\".",
        );
        assert!(compare(RELEASED, "phase@0.1.0.wit", &rewrapped).is_ok());
    }

    #[test]
    fn a_structural_break_fails_even_with_a_bump_in_the_track() {
        let broken = released_as(
            "0.1.1",
            &RELEASED.replace("find-object: func(path: string)", "find-object: func(kind: u8, path: string)"),
        );
        let e = compare(RELEASED, "phase@0.1.0.wit", &broken).unwrap_err().to_string();
        assert!(e.contains("not a compatible upgrade"), "{e}");
    }

    #[test]
    fn the_repository_contract_passes() {
        check().unwrap();
    }

    #[test]
    fn tracks_follow_wasmtime_semver() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert_eq!(track(&v("0.1.0")), track(&v("0.1.5")));
        assert_ne!(track(&v("0.1.0")), track(&v("0.2.0")));
        assert_eq!(track(&v("1.0.0")), track(&v("1.4.2")));
        assert_ne!(track(&v("1.0.0")), track(&v("2.0.0")));
    }
}
