//! Builds the Go tools (etcd, kube-apiserver, the vcsim launcher, the machine-api
//! controllers) from the wrapper modules in `tests/tools/` with the Go module proxy, cached
//! outside the repository.
//!
//! Cache layout: `$XDG_CACHE_HOME/vsphere-migration/tools/<tool>-<key>/<binary>` where `key`
//! is a sha256 over the module's go.mod, go.sum, *.go files (in subfolders too) and the build
//! flags: a change rebuilds, an unchanged tree costs a few file reads. Binaries are built into
//! a temporary folder and renamed into place one by one; a tool counts as built only when
//! every one of its binaries is there, so an interrupted build never leaves a broken binary
//! behind. A module with several binaries (machine-api) is one `go build -o DIR/ PKG...`.
//! Other builds of a tool are deleted only once nothing used them for a week (`.last-used`),
//! so two checkouts on one machine (CI beside a developer) never delete each other's.
//!
//! The builds set neither GOCACHE nor GOMODCACHE: every tool (and any other Go work of the
//! user) shares Go's default build cache and module cache, so packages common to several
//! tools are compiled once.

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
    pub machine_api: MachineApiTools,
}

/// The machine-api binaries (`tests/tools/machine-api`), and where the module sources they
/// were built from are, whose manifests (RBAC, CRDs) the environment reads.
#[derive(Clone, Debug)]
pub struct MachineApiTools {
    /// `cmd/vsphere`: the Machine controller with the vSphere actuator (and the vSphere
    /// MachineSet annotation controller).
    pub vsphere: PathBuf,
    /// `cmd/machineset`: the MachineSet controller (its webhook server listens on every
    /// interface, so the environment turns it off and runs [`MachineApiTools::webhooks`]).
    pub machineset: PathBuf,
    /// `cmd/nodelink-controller`.
    pub nodelink_controller: PathBuf,
    /// `cmd/machine-healthcheck`.
    pub machine_healthcheck: PathBuf,
    /// The wrapper's own `machine-api-webhooks`: upstream's `pkg/webhooks` handlers served on
    /// a loopback address.
    pub webhooks: PathBuf,
    /// The wrapper module (`tests/tools/machine-api`).
    pub module: PathBuf,
}

impl MachineApiTools {
    /// `github.com/openshift/machine-api-operator` in the Go module cache (runs `go`).
    pub fn operator_source(&self) -> Result<PathBuf> {
        go_module_dir(&self.module, MACHINE_API_OPERATOR)
    }

    /// `github.com/openshift/api`, the version machine-api-operator is built with, in the Go
    /// module cache (runs `go`).
    pub fn openshift_api_source(&self) -> Result<PathBuf> {
        go_module_dir(&self.module, "github.com/openshift/api")
    }

    /// `sigs.k8s.io/cluster-api`, the version machine-api-operator is built with (its IP
    /// address claim types), in the Go module cache (runs `go`).
    pub fn cluster_api_source(&self) -> Result<PathBuf> {
        go_module_dir(&self.module, "sigs.k8s.io/cluster-api")
    }

    /// The machine-api-operator version the binaries were built from, as the machine
    /// controller's own build information records it (`go version -m`).
    pub fn operator_version(&self) -> Result<String> {
        let out = Command::new(which_go()?)
            .args(["version", "-m"])
            .arg(&self.vsphere)
            .stdin(Stdio::null())
            .output()
            .context("running go version -m")?;
        anyhow::ensure!(out.status.success(), "go version -m: {}", String::from_utf8_lossy(&out.stderr));
        module_version(&String::from_utf8_lossy(&out.stdout), MACHINE_API_OPERATOR)
            .with_context(|| format!("{} names no {MACHINE_API_OPERATOR} module", self.vsphere.display()))
    }
}

struct Tool {
    name: &'static str,
    /// Directory under tests/tools/.
    dir: &'static str,
    /// `(binary, go build target)`. With several, the binary names are the last elements of
    /// the package paths (what `go build -o DIR/` writes).
    binaries: &'static [(&'static str, &'static str)],
    extra_args: fn() -> Vec<String>,
}

const MACHINE_API_OPERATOR: &str = "github.com/openshift/machine-api-operator";

const TOOLS: [Tool; 4] = [
    Tool { name: "etcd", dir: "etcd", binaries: &[("etcd", "go.etcd.io/etcd/server/v3")], extra_args: Vec::new },
    Tool {
        name: "kube-apiserver",
        dir: "kube-apiserver",
        binaries: &[("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver")],
        extra_args: kube_apiserver_ldflags,
    },
    Tool { name: "vcsim", dir: "vcsim", binaries: &[("vcsim", ".")], extra_args: || vec!["-ldflags=-s -w".into()] },
    Tool {
        name: "machine-api",
        dir: "machine-api",
        binaries: &[
            ("vsphere", "github.com/openshift/machine-api-operator/cmd/vsphere"),
            ("machineset", "github.com/openshift/machine-api-operator/cmd/machineset"),
            ("nodelink-controller", "github.com/openshift/machine-api-operator/cmd/nodelink-controller"),
            ("machine-healthcheck", "github.com/openshift/machine-api-operator/cmd/machine-healthcheck"),
            ("machine-api-webhooks", "./machine-api-webhooks"),
        ],
        extra_args: || vec!["-ldflags=-s -w".into()],
    },
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
        built.extend(ensure_tool(&cache, tool)?);
    }
    let bin = |name: &str| -> Result<PathBuf> {
        built.iter().find(|p| p.file_name().is_some_and(|n| n == name)).cloned().context("a binary of TOOLS")
    };
    let paths = ToolPaths {
        etcd: bin("etcd")?,
        kube_apiserver: bin("kube-apiserver")?,
        vcsim: bin("vcsim")?,
        machine_api: MachineApiTools {
            vsphere: bin("vsphere")?,
            machineset: bin("machineset")?,
            nodelink_controller: bin("nodelink-controller")?,
            machine_healthcheck: bin("machine-healthcheck")?,
            webhooks: bin("machine-api-webhooks")?,
            module: tools_source_dir().join("machine-api"),
        },
    };
    Ok(DONE.get_or_init(|| paths).clone())
}

/// [`ensure_built`] off the async runtime's worker threads.
pub async fn ensure_built_async() -> Result<ToolPaths> {
    tokio::task::spawn_blocking(ensure_built).await?
}

/// The tool's binaries, built unless all of them are in the cache.
fn ensure_tool(cache: &Path, tool: &Tool) -> Result<Vec<PathBuf>> {
    let src = tools_source_dir().join(tool.dir);
    let args = (tool.extra_args)();
    let key = source_key(&src, &args)?;
    let dir = cache.join(format!("{}-{}", tool.name, &key[..16]));
    let bins: Vec<PathBuf> = tool.binaries.iter().map(|(name, _)| dir.join(name)).collect();
    if bins.iter().all(|b| b.is_file()) {
        mark_used(&dir);
        return Ok(bins);
    }
    fs::create_dir_all(&dir)?;
    build(tool, &src, &args, &dir)?;
    mark_used(&dir);
    remove_stale(cache, tool.name, &dir);
    Ok(bins)
}

/// A build unused for this long is deleted when another build of the tool is made.
const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Touched each time a process uses the build (once per process).
const LAST_USED: &str = ".last-used";

fn mark_used(dir: &Path) {
    let _ = fs::write(dir.join(LAST_USED), b"");
}

/// Where `module` (a dependency of the wrapper module in `tool_dir`) is in the Go module
/// cache; downloads it if needed.
pub fn go_module_dir(tool_dir: &Path, module: &str) -> Result<PathBuf> {
    let out = Command::new(which_go()?)
        .current_dir(tool_dir)
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .args(["mod", "download", "-json", module])
        .stdin(Stdio::null())
        .output()
        .context("running go mod download")?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("go mod download {module}: {}", String::from_utf8_lossy(&out.stderr)))?;
    match info.get("Dir").and_then(|d| d.as_str()) {
        Some(dir) if out.status.success() => Ok(PathBuf::from(dir)),
        _ => bail!("go mod download {module} in {} failed: {info}", tool_dir.display()),
    }
}

/// The version of `module` in `go version -m` output (a `mod` or `dep` line).
fn module_version(build_info: &str, module: &str) -> Option<String> {
    build_info.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("mod" | "dep"), Some(m), Some(v)) if m == module => Some(v.to_string()),
            _ => None,
        }
    })
}

/// sha256 over the module's build inputs (go.mod, go.sum and *.go files, in subfolders too,
/// sorted by relative path) and the build flags.
fn source_key(src: &Path, args: &[String]) -> Result<String> {
    let mut names = Vec::new();
    collect_inputs(src, "", &mut names)?;
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

/// Relative paths (`/`-separated) of the build inputs under `dir`.
fn collect_inputs(root: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(prefix);
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if e.file_type()?.is_dir() {
            collect_inputs(root, &rel, out)?;
        } else if name == "go.mod" || name == "go.sum" || name.ends_with(".go") {
            out.push(rel);
        }
    }
    Ok(())
}

fn progress(msg: &str) {
    // Straight to the stderr handle: the test harness captures eprintln!, and a silent
    // multi-minute build looks like a hang.
    let _ = writeln!(std::io::stderr(), "[vsm-testenv] {msg}");
}

/// `go build` of all the tool's binaries into a temporary folder in `dir`, then each renamed
/// into `dir`.
fn build(tool: &Tool, src: &Path, args: &[String], dir: &Path) -> Result<()> {
    let go = which_go()?;
    check_go_version(&go)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let log_path = dir.join("build.log");
    let log = fs::File::create(&log_path)?;
    let names: Vec<&str> = tool.binaries.iter().map(|(name, _)| *name).collect();
    // One binary: `-o FILE`. Several: `-o DIR/`, one build sharing the compilation of the
    // packages they have in common.
    let output = match tool.binaries {
        [(name, _)] => tmp.join(name),
        _ => PathBuf::from(format!("{}/", tmp.display())),
    };
    progress(&format!(
        "building {} ({}) from {} (Go module proxy; minutes on a cold Go cache)",
        tool.name,
        names.join(", "),
        src.display()
    ));
    let start = Instant::now();
    let mut child = Command::new(go)
        .current_dir(src)
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("CGO_ENABLED", "0")
        .arg("build")
        .arg("-trimpath")
        .args(args)
        .arg("-o")
        .arg(&output)
        .args(tool.binaries.iter().map(|(_, package)| package))
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
    let installed = if status.success() { install(&tmp, dir, &names) } else { Ok(()) };
    let _ = fs::remove_dir_all(&tmp);
    if !status.success() {
        bail!(
            "go build of {} failed ({status}); log {}:\n{}",
            tool.name,
            log_path.display(),
            crate::process::log_tail(&log_path, 6000)
        );
    }
    installed?;
    progress(&format!("built {} in {:.1} s -> {}", tool.name, start.elapsed().as_secs_f64(), dir.display()));
    Ok(())
}

/// Renames each built binary from `tmp` into `dir` (an atomic step per binary).
fn install(tmp: &Path, dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let (from, to) = (tmp.join(name), dir.join(name));
        fs::rename(&from, &to).with_context(|| format!("installing {} (was it built?)", to.display()))?;
    }
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
        "`go` not found on PATH: building the test tools (etcd, kube-apiserver, vcsim, machine-api) \
         needs Go 1.26 or newer and access to the Go module proxy (https://go.dev/dl/)"
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

/// Deletes other builds of `name` (a kube-apiserver is ~100 MB) that nothing used for
/// [`STALE_AFTER`]. Not every other build: another checkout on the same machine (a second
/// worktree, CI beside a developer) may be running tests with its own build of the tool
/// right now, and deleting it under them made their next process spawn fail.
fn remove_stale(cache: &Path, name: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache) else { return };
    let prefix = format!("{name}-");
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let hex_suffix =
            file_name.strip_prefix(&prefix).is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let last_used = fs::metadata(e.path().join(LAST_USED)).or_else(|_| e.metadata()).and_then(|m| m.modified());
        let unused = last_used.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if hex_suffix && e.path() != keep && unused {
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
    fn key_covers_go_files_in_subfolders() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("go.mod"), "module x\n").unwrap();
        fs::create_dir(d.path().join("cmd")).unwrap();
        fs::write(d.path().join("cmd/main.go"), "package main\n").unwrap();
        let k1 = source_key(d.path(), &[]).unwrap();
        fs::write(d.path().join("cmd/notes.txt"), "ignored").unwrap();
        assert_eq!(k1, source_key(d.path(), &[]).unwrap());
        fs::write(d.path().join("cmd/main.go"), "package main\n\nfunc main() {}\n").unwrap();
        assert_ne!(k1, source_key(d.path(), &[]).unwrap());
    }

    #[test]
    fn names_of_tools_with_several_binaries_are_what_go_build_writes() {
        for tool in TOOLS.iter().filter(|t| t.binaries.len() > 1) {
            for (name, package) in tool.binaries {
                assert_eq!(Some(*name), package.rsplit('/').next(), "{}: {package}", tool.name);
            }
        }
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
    fn the_module_version_is_read_from_the_build_information() {
        let info = "/x/vsphere: go1.26.8\n\tpath\tgithub.com/openshift/machine-api-operator/cmd/vsphere\n\
                    \tmod\tgithub.com/openshift/machine-api-operator\tv0.2.1-0.2026\th1:abc=\n\
                    \tdep\tgithub.com/openshift/api\tv0.0.0-1\th1:def=\n";
        assert_eq!(module_version(info, MACHINE_API_OPERATOR).as_deref(), Some("v0.2.1-0.2026"));
        assert_eq!(module_version(info, "github.com/openshift/api").as_deref(), Some("v0.0.0-1"));
        assert_eq!(module_version(info, "github.com/openshift/machine-api-operator/cmd/vsphere"), None);
    }

    #[test]
    fn builds_of_the_same_tool_unused_for_a_week_are_removed_recent_ones_kept() {
        let cache = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - STALE_AFTER - Duration::from_secs(3600);
        for (d, used) in [
            ("etcd-0123456789abcdef", Some(old)),
            ("etcd-1111111111111111", None),
            ("etcd-fedcba9876543210", Some(old)),
            ("vcsim-0123456789abcdef", Some(old)),
            ("etcd-notahash", Some(old)),
        ] {
            let dir = cache.path().join(d);
            fs::create_dir(&dir).unwrap();
            mark_used(&dir);
            if let Some(t) = used {
                fs::File::options().write(true).open(dir.join(LAST_USED)).unwrap().set_modified(t).unwrap();
            }
        }
        remove_stale(cache.path(), "etcd", &cache.path().join("etcd-fedcba9876543210"));
        let mut left: Vec<_> =
            fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        // Another checkout's build used just now stays; the kept one stays however old.
        assert_eq!(left, ["etcd-1111111111111111", "etcd-fedcba9876543210", "etcd-notahash", "vcsim-0123456789abcdef"]);
    }
}
