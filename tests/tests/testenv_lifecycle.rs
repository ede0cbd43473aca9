//! Environments are independent and leave nothing behind: no child process survives a
//! dropped environment (also after a panic), temporary files are removed, and the kernel
//! kills the children when the test process itself dies.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use vsm_testenv::TestEnv;

/// The tests here count this process's children, so they must not overlap.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// (pid, command name) of every live child of `parent` (zombies excluded).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // comm is in parentheses and may contain spaces; the fields after it are fixed.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (state, ppid) = (rest[0], rest[1].parse::<u32>().unwrap_or(0));
        if ppid == parent && state != "Z" {
            found.push((pid, comm));
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie is as good as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn is_env_process(comm: &str) -> bool {
    ["etcd", "kube-apiserver", "vcsim"].iter().any(|n| comm.starts_with(n))
}

fn env_children() -> Vec<(u32, String)> {
    children_of(std::process::id()).into_iter().filter(|(_, c)| is_env_process(c)).collect()
}

async fn write_and_read(env: &TestEnv, name: &str) {
    let api: Api<ConfigMap> = Api::namespaced(env.client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(api.get(name).await.unwrap().data.unwrap()["k"], name);
}

#[tokio::test]
async fn two_environments_run_side_by_side_and_leave_nothing_when_dropped() {
    let _serial = SERIAL.lock().await;
    let before: HashSet<u32> = env_children().into_iter().map(|(p, _)| p).collect();
    let (a, b) = tokio::try_join!(TestEnv::start_default(), TestEnv::start_default()).unwrap();

    let pids: Vec<u32> = a.pids().into_iter().chain(b.pids()).collect();
    assert_eq!(pids.len(), 8);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 8, "separate processes");
    let now: HashSet<u32> = env_children().into_iter().map(|(p, _)| p).collect();
    for pid in &pids {
        assert!(now.contains(pid), "{pid} is not a live child: {now:?}");
    }
    assert_ne!(a.apiserver_url(), b.apiserver_url());
    assert_ne!(a.source().server(), b.source().server());
    assert_ne!(a.dir(), b.dir());

    // Separate data: an object written in one is absent from the other.
    write_and_read(&a, "only-in-a").await;
    let in_b: Api<ConfigMap> = Api::namespaced(b.client(), "default");
    assert!(in_b.get_opt("only-in-a").await.unwrap().is_none());

    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    drop(a);
    drop(b);
    for pid in &pids {
        assert!(!alive(*pid), "process {pid} survived its environment");
    }
    let after: Vec<_> = env_children().into_iter().filter(|(p, _)| !before.contains(p)).collect();
    assert!(after.is_empty(), "children left behind: {after:?}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn a_panicking_test_still_stops_its_environment() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::start_default().await.unwrap();
    let (pids, dir) = (env.pids(), env.dir().to_path_buf());
    // The environment moves into a task that panics; unwinding drops it.
    let outcome = tokio::spawn(async move {
        let _env = env;
        panic!("deliberate test failure");
    })
    .await;
    assert!(outcome.unwrap_err().is_panic());
    for pid in &pids {
        assert!(!alive(*pid), "process {pid} survived a panic");
    }
    assert!(!dir.exists());
}

const HELPER_ENV: &str = "VSM_TESTENV_LIFECYCLE_HELPER";

/// Runs only as a helper process of the test below: starts an environment, prints its
/// process ids and waits to be killed.
#[tokio::test]
#[ignore = "helper process for children_die_with_a_killed_test_process"]
async fn helper_start_environment_and_wait() {
    // Under `--include-ignored` this is not a test: only the parent test sets the variable.
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let env = TestEnv::start_default().await.unwrap();
    let pids: Vec<String> = env.pids().iter().map(u32::to_string).collect();
    println!("PIDS={} DIR={}", pids.join(","), env.dir().display());
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn children_die_with_a_killed_test_process() {
    let _serial = SERIAL.lock().await;
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["helper_start_environment_and_wait", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        // libtest prints "test name ... " first, without a newline, so the marker is mid-line.
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("PIDS=").map(|(_, rest)| rest.to_string()))
    })
    .await
    .unwrap()
    .expect("helper printed its process ids");
    let (pids, dir) = line.split_once(" DIR=").unwrap();
    let pids: Vec<u32> = pids.split(',').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| alive(*p)));

    // SIGKILL: no destructor, no exit hook runs. Only PR_SET_PDEATHSIG can clean up.
    helper.kill().unwrap();
    helper.wait().unwrap();
    // The kernel delivers the signal at once, but the orphans are reaped by init; allow
    // for that (generously; this only keeps a broken cleanup from hanging the suite).
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survivors: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(survivors.is_empty(), "children outlived a killed test process: {survivors:?}");
    // Nothing ran to delete the files; do it here so the test leaves none behind.
    assert!(Path::new(dir).exists());
    std::fs::remove_dir_all(dir).unwrap();
}
