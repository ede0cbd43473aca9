//! `vsm-plugin new NAME`: a phase crate using vsm-sdk, with a native test that passes.

use std::path::{Path, PathBuf};

use crate::Error;

const CARGO_TOML: &str = include_str!("../template/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../template/lib.rs.tmpl");
const TESTS_RS: &str = include_str!("../template/tests.rs.tmpl");
const README: &str = include_str!("../template/README.md.tmpl");
/// The toolchain the SDK is built and tested with (it names the wasm32-wasip2 target).
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// The SDK of this checkout (what the generated crate depends on by default).
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/sdk")
}

/// The checkout's lock file: the generated crate starts with the dependency versions the
/// SDK is tested with (cargo drops the entries it does not need).
fn checkout_lock() -> Option<String> {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock")).ok()
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// Crate and component name: lowercase letters, digits and dashes.
    pub name: String,
    /// The phase it serves (one of the 16).
    pub phase: String,
    /// Where vsm-sdk is (a path dependency).
    pub sdk: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// `my-health-gate` → `MyHealthGate`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Write the crate into `dir` (which must not exist); returns the files written.
pub fn scaffold(s: &Scaffold, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    if !valid_name(&s.name) {
        return Err(Error::Usage(format!(
            "{:?} is not a valid name: lowercase letters, digits and dashes, starting with a letter",
            s.name
        )));
    }
    let phase = vsm_api::PHASES
        .iter()
        .find(|p| p.eq_ignore_ascii_case(&s.phase))
        .ok_or_else(|| Error::Usage(format!("{} is not a phase; phases: {}", s.phase, vsm_api::PHASES.join(", "))))?;
    if dir.exists() {
        return Err(Error::Usage(format!("{} exists already", dir.display())));
    }
    let sdk =
        std::fs::canonicalize(&s.sdk).map_err(|e| Error::Usage(format!("the SDK at {}: {e}", s.sdk.display())))?;
    let lib = s.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{crate}}", &s.name)
            .replace("{{name}}", &s.name)
            .replace("{{lib}}", &lib)
            .replace("{{phase}}", phase)
            .replace("{{type}}", &type_name(&s.name))
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("rust-toolchain.toml", TOOLCHAIN.to_string()),
        ("README.md", fill(README)),
        (".gitignore", "/target\n".to_string()),
        ("src/lib.rs", fill(LIB_RS)),
        ("src/tests.rs", fill(TESTS_RS)),
    ];
    let lock = checkout_lock().map(|l| ("Cargo.lock", l));
    let mut written = Vec::new();
    for (rel, text) in files.into_iter().chain(lock) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("files are in the crate"))?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("my-health-gate"), "MyHealthGate");
        assert_eq!(type_name("gate2"), "Gate2");
        for bad in ["", "My", "a_b", "-a", "a-", "1a"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let s = Scaffold { name: "x".into(), phase: "NotAPhase".into(), sdk: default_sdk_path() };
        let err = scaffold(&s, &dir.path().join("x")).unwrap_err();
        assert!(err.to_string().contains("not a phase"), "{err}");
        let s = Scaffold { name: "x".into(), phase: "verify".into(), sdk: default_sdk_path() };
        let err = scaffold(&s, dir.path()).unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
    }

    #[test]
    fn the_crate_names_its_phase_type_and_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scaffold { name: "site-gate".into(), phase: "monitorhealth".into(), sdk: default_sdk_path() };
        let files = scaffold(&s, &dir.path().join("site-gate")).unwrap();
        assert_eq!(files.len(), 7, "{files:?}");
        assert!(files.iter().any(|f| f.ends_with("Cargo.lock")), "the checkout's versions");
        let lib = std::fs::read_to_string(dir.path().join("site-gate/src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct SiteGate;") && lib.contains("PhaseInfo::new(\"MonitorHealth\""));
        assert!(!lib.contains("{{"), "every placeholder filled");
        let toml = std::fs::read_to_string(dir.path().join("site-gate/Cargo.toml")).unwrap();
        let sdk = std::fs::canonicalize(default_sdk_path()).unwrap();
        assert!(toml.contains(&format!("path = \"{}\"", sdk.display())), "{toml}");
    }
}
