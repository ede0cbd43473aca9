//! `cargo xtask wit-check`: the phase contract only grows within a major version.

use anyhow::{Context, Result, bail};
use wit_parser::Resolve;

use crate::root;

fn version_of(text: &str) -> Result<semver::Version> {
    let line = text.lines().find(|l| l.trim_start().starts_with("package ")).context("no package line")?;
    let version = line.trim().trim_end_matches(';').rsplit_once('@').context("package has no version")?.1;
    Ok(semver::Version::parse(version)?)
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
    let Some((released, released_text, path)) =
        releases.into_iter().rev().find(|(v, ..)| v.major == current.major && *v <= current)
    else {
        println!("wit-check: no release with major version {} yet; nothing to compare", current.major);
        return Ok(());
    };

    // Both packages share a name; give the release a distinct version so they can live in
    // one Resolve (semver_check ignores versions and compares structure).
    let released_text = released_text.replacen(&format!("@{released};"), "@0.0.0-released;", 1);
    let mut resolve = Resolve::default();
    let old_pkg = resolve.push_str(path.display().to_string(), &released_text)?;
    let new_pkg = resolve.push_str("wit/phase.wit", &current_text)?;
    let old_world = resolve.select_world(&[old_pkg], Some("phase"))?;
    let new_world = resolve.select_world(&[new_pkg], Some("phase"))?;
    if let Err(e) = wit_component::semver_check(resolve, old_world, new_world) {
        bail!(
            "wit/phase.wit {current} is not a compatible upgrade of the released {released}: {e:#}\n(bump the major version for breaking changes)"
        );
    }
    println!("wit-check: wit/phase.wit {current} is a compatible upgrade of the released {released}");
    Ok(())
}
