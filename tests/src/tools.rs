//! Builds the Go tools (etcd, kube-apiserver, the vcsim launcher) from the wrapper modules
//! in `tests/tools/` with the Go module proxy, cached outside the repository.
//!
//! Cache layout: `$XDG_CACHE_HOME/vsphere-migration/tools/<tool>-<key>/<tool>` where `key`
//! is a sha256 over the module's go.mod, go.sum, *.go files and the build flags: a change
//! rebuilds, an unchanged tree costs a few file reads. Binaries are built under a temporary
//! name and renamed, so an interrupted build never leaves a broken binary behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Kubernetes version the kube-apiserver wrapper module pins (keep in step with its go.mod).
pub const KUBERNETES_VERSION: &str = "v1.36.3";

#[derive(Clone, Debug)]
pub struct ToolPaths {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub vcsim: PathBuf,
}

struct Tool {
    name: &'static str,
    /// Directory under tests/tools/.
    dir: &'static str,
    /// `go build` target.
    package: &'static str,
    extra_args: fn() -> Vec<String>,
}

const TOOLS: [Tool; 3] = [
    Tool { name: "etcd", dir: "etcd", package: "go.etcd.io/etcd/server/v3", extra_args: Vec::new },
    Tool {
        name: "kube-apiserver",
        dir: "kube-apiserver",
        package: "k8s.io/kubernetes/cmd/kube-apiserver",
        extra_args: kube_apiserver_ldflags,
    },
    Tool { name: "vcsim", dir: "vcsim", package: ".", extra_args: || vec!["-ldflags=-s -w".into()] },
];

fn kube_apiserver_ldflags() -> Vec<String> {
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or("0");
    vec![format!(
        "-ldflags=-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION} \
         -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor}"
    )]
}

/// The Go wrapper modules (`tests/tools`).
pub fn tools_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools")
}

/// `$XDG_CACHE_HOME/vsphere-migration/tools` (default `~/.cache/vsphere-migration/tools`).
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?).join(".cache")
        }
    };
    Ok(base.join("vsphere-migration").join("tools"))
}

/// Builds whatever is missing and returns the binaries. Instant when cached. Safe to call
/// from several threads and several processes at once (one builds, the others wait).
pub fn ensure_built() -> Result<ToolPaths> {
    static DONE: OnceLock<ToolPaths> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(paths) = DONE.get() {
        return Ok(paths.clone());
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(paths) = DONE.get() {
        return Ok(paths.clone());
    }
    let cache = cache_dir()?;
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = FileLock::acquire(&cache.join(".lock"))?;
    let mut built = Vec::new();
    for tool in &TOOLS {
        built.push(ensure_tool(&cache, tool)?);
    }
    let paths = ToolPaths { etcd: built[0].clone(), kube_apiserver: built[1].clone(), vcsim: built[2].clone() };
    Ok(DONE.get_or_init(|| paths).clone())
}

/// [`ensure_built`] off the async runtime's worker threads.
pub async fn ensure_built_async() -> Result<ToolPaths> {
    tokio::task::spawn_blocking(ensure_built).await?
}

fn ensure_tool(cache: &Path, tool: &Tool) -> Result<PathBuf> {
    let src = tools_source_dir().join(tool.dir);
    let args = (tool.extra_args)();
    let key = source_key(&src, &args)?;
    let dir = cache.join(format!("{}-{}", tool.name, &key[..16]));
    let bin = dir.join(tool.name);
    if bin.is_file() {
        return Ok(bin);
    }
    fs::create_dir_all(&dir)?;
    build(tool, &src, &args, &dir, &bin)?;
    remove_stale(cache, tool.name, &dir);
    Ok(bin)
}

/// sha256 over the module's build inputs (sorted by name) and the build flags.
fn source_key(src: &Path, args: &[String]) -> Result<String> {
    let mut names: Vec<String> = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "go.mod" || n == "go.sum" || n.ends_with(".go"))
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for name in &names {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(fs::read(src.join(name))?);
        h.update([0]);
    }
    for a in args {
        h.update(a.as_bytes());
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

fn progress(msg: &str) {
    // Straight to the stderr handle: the test harness captures eprintln!, and a silent
    // multi-minute build looks like a hang.
    let _ = writeln!(std::io::stderr(), "[vsm-testenv] {msg}");
}

fn build(tool: &Tool, src: &Path, args: &[String], dir: &Path, bin: &Path) -> Result<()> {
    let go = which_go()?;
    check_go_version(&go)?;
    let tmp = dir.join(format!(".{}.tmp-{}", tool.name, std::process::id()));
    let log_path = dir.join("build.log");
    let log = fs::File::create(&log_path)?;
    progress(&format!("building {} from {} (Go module proxy; minutes on a cold Go cache)", tool.name, src.display()));
    let start = Instant::now();
    let mut child = Command::new(go)
        .current_dir(src)
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("CGO_ENABLED", "0")
        .arg("build")
        .arg("-trimpath")
        .args(args)
        .arg("-o")
        .arg(&tmp)
        .arg(tool.package)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting go build")?;
    let mut next_report = Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() >= next_report {
            progress(&format!("  {} still building, {} s", tool.name, start.elapsed().as_secs()));
            next_report += Duration::from_secs(30);
        }
    };
    if !status.success() {
        let _ = fs::remove_file(&tmp);
        bail!(
            "go build of {} failed ({status}); log {}:\n{}",
            tool.name,
            log_path.display(),
            crate::process::log_tail(&log_path, 6000)
        );
    }
    fs::rename(&tmp, bin).with_context(|| format!("installing {}", bin.display()))?;
    progress(&format!("built {} in {:.1} s -> {}", tool.name, start.elapsed().as_secs_f64(), bin.display()));
    Ok(())
}

fn which_go() -> Result<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("go"))
        .find(|p| p.is_file());
    if let Some(go) = found {
        return Ok(go);
    }
    let fallback = PathBuf::from("/usr/local/go/bin/go");
    if fallback.is_file() {
        return Ok(fallback);
    }
    bail!(
        "`go` not found on PATH: building the test tools (etcd, kube-apiserver, vcsim) needs Go 1.26 \
         or newer and access to the Go module proxy (https://go.dev/dl/)"
    )
}

/// The wrapper modules say `go 1.26.0`; an older Go would try to download a newer toolchain
/// (or fail obscurely), so say what is needed instead.
fn check_go_version(go: &Path) -> Result<()> {
    let out = Command::new(go).args(["env", "GOVERSION"]).output().context("running `go env GOVERSION`")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_go_version(&version) {
        Some(v) if v >= MIN_GO => Ok(()),
        _ => bail!(
            "{} reports {version:?}: building the test tools needs Go {}.{} or newer (https://go.dev/dl/)",
            go.display(),
            MIN_GO.0,
            MIN_GO.1
        ),
    }
}

const MIN_GO: (u32, u32) = (1, 26);

/// `go1.26.8` -> (1, 26); also `go1.27rc1` -> (1, 27).
fn parse_go_version(v: &str) -> Option<(u32, u32)> {
    let rest = v.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((major, minor.parse().ok()?))
}

/// Deletes older builds of `name` (a kube-apiserver is ~100 MB).
fn remove_stale(cache: &Path, name: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache) else { return };
    let prefix = format!("{name}-");
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let hex_suffix =
            file_name.strip_prefix(&prefix).is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex_suffix && e.path() != keep {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// An exclusive flock(2), released on drop (and by the kernel if the process dies).
struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            progress("another process is building the test tools; waiting for it");
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error()).context("locking the tool cache");
            }
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_sources_and_flags_only() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("go.mod"), "module x\n").unwrap();
        fs::write(d.path().join("main.go"), "package main\n").unwrap();
        fs::write(d.path().join("README.md"), "ignored").unwrap();
        let k1 = source_key(d.path(), &[]).unwrap();
        fs::write(d.path().join("README.md"), "still ignored").unwrap();
        assert_eq!(k1, source_key(d.path(), &[]).unwrap());
        assert_ne!(k1, source_key(d.path(), &["-ldflags=-s".into()]).unwrap());
        fs::write(d.path().join("main.go"), "package main\n\nfunc main() {}\n").unwrap();
        assert_ne!(k1, source_key(d.path(), &[]).unwrap());
    }

    #[test]
    fn go_versions_are_compared_by_major_and_minor() {
        assert_eq!(parse_go_version("go1.26.8"), Some((1, 26)));
        assert_eq!(parse_go_version("go1.27rc1"), Some((1, 27)));
        assert_eq!(parse_go_version("go1.9"), Some((1, 9)));
        assert_eq!(parse_go_version("devel +abc"), None);
        assert!(parse_go_version("go1.25.3").unwrap() < MIN_GO);
        assert!(parse_go_version("go1.9").unwrap() < MIN_GO);
        assert!(parse_go_version("go2.0").unwrap() >= MIN_GO);
    }

    #[test]
    fn stale_builds_of_the_same_tool_are_removed() {
        let cache = tempfile::tempdir().unwrap();
        for d in ["etcd-0123456789abcdef", "etcd-fedcba9876543210", "vcsim-0123456789abcdef", "etcd-notahash"] {
            fs::create_dir(cache.path().join(d)).unwrap();
        }
        remove_stale(cache.path(), "etcd", &cache.path().join("etcd-fedcba9876543210"));
        let mut left: Vec<_> =
            fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["etcd-fedcba9876543210", "etcd-notahash", "vcsim-0123456789abcdef"]);
    }
}
