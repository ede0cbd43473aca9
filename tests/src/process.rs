//! Child processes that cannot outlive their owner: stopped on drop (SIGTERM, then SIGKILL
//! after a grace period) and killed by the kernel if the test process dies.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a child gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// Tests run on short-lived threads (and an environment may be shared through a static), so
/// every child is forked from one thread that lives as long as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("vsm-testenv-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the process-spawner thread");
        Mutex::new(tx)
    })
}

/// A running child process with its combined output in `log`.
pub struct Process {
    name: String,
    pid: AtomicU32,
    // A mutex so a shared (`&'static`) environment can still be stopped at exit.
    child: Mutex<Option<Child>>,
    log: PathBuf,
    /// How it was started, for [`Process::restart`].
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, OsString)>,
    pipe_stdout: bool,
}

impl Process {
    /// Starts `program` with `args`; stderr (and stdout unless `pipe_stdout`) go to `log`.
    /// With `pipe_stdout` the caller reads stdout via [`Process::take_stdout`].
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &OsStr)],
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Process> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let env: Vec<(String, OsString)> = env.iter().map(|(k, v)| (k.to_string(), v.to_os_string())).collect();
        let child = start(name, program, args, &env, log_file, pipe_stdout)?;
        Ok(Process {
            name: name.to_string(),
            pid: AtomicU32::new(child.id()),
            child: Mutex::new(Some(child)),
            log: log.to_path_buf(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env,
            pipe_stdout,
        })
    }

    /// Stops the process (as [`Process::stop`]) and starts it again with the same command,
    /// as a kubelet restarts a container; the log goes on after a marker line.
    pub fn restart(&self, why: &str) -> Result<()> {
        self.stop();
        let mut log_file = File::options().append(true).open(&self.log)?;
        std::io::Write::write_all(&mut log_file, format!("--- vsm-testenv: restarted: {why}\n").as_bytes())?;
        let child = start(&self.name, &self.program, &self.args, &self.env, log_file, self.pipe_stdout)?;
        self.pid.store(child.id(), Ordering::Relaxed);
        *self.child() = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take_stdout(&self) -> Option<std::process::ChildStdout> {
        self.child().as_mut().and_then(|c| c.stdout.take())
    }

    /// Fails with the log tail if the process has already exited.
    pub fn check_running(&self) -> Result<()> {
        if let Some(child) = self.child().as_mut()
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!("{} exited early with {status}; log tail:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 4000)
    }

    /// Sends SIGTERM without waiting; [`Process::wait_until`] finishes the job.
    pub fn terminate(&self) {
        if let Some(child) = self.child().as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            // SAFETY: plain kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Waits for exit until `deadline`, then SIGKILLs; always reaps the child.
    pub fn wait_until(&self, deadline: Instant) {
        let Some(mut child) = self.child().take() else { return };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, grace period, SIGKILL.
    pub fn stop(&self) {
        self.terminate();
        self.wait_until(Instant::now() + STOP_GRACE);
    }
}

/// Forks `program` from the spawner thread, its output to `log_file`.
fn start(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(String, OsString)],
    log_file: File,
    pipe_stdout: bool,
) -> Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(log_file.try_clone()?)
        .stdout(if pipe_stdout { Stdio::piped() } else { log_file.into() });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner().lock().unwrap().send((cmd, tx)).context("spawner thread gone")?;
    rx.recv().context("spawner thread gone")?.with_context(|| format!("starting {name} ({})", program.display()))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops several processes together: one shared grace period instead of one each.
pub fn stop_all(procs: &[&Process]) {
    for p in procs {
        p.terminate();
    }
    let deadline = Instant::now() + STOP_GRACE;
    for p in procs {
        p.wait_until(deadline);
    }
}

pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// Reads `KEY=VALUE` lines from a child's stdout until `done_line`, copying every line to
/// `log` and then draining the rest in the background so the child never blocks on a full pipe.
pub fn read_announcements(
    stdout: std::process::ChildStdout,
    done_line: &str,
    log: &Path,
) -> Result<Vec<(String, String)>> {
    use std::io::Write;
    let mut reader = BufReader::new(stdout);
    let mut log = std::fs::OpenOptions::new().append(true).open(log)?;
    let mut found = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            anyhow::bail!("process closed stdout before {done_line}");
        }
        let _ = log.write_all(line.as_bytes());
        let line = line.trim_end();
        if line == done_line {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            found.push((k.to_string(), v.to_string()));
        }
    }
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut log);
    });
    Ok(found)
}

fn used_ports() -> &'static Mutex<HashSet<(std::net::IpAddr, u16)>> {
    static USED: OnceLock<Mutex<HashSet<(std::net::IpAddr, u16)>>> = OnceLock::new();
    USED.get_or_init(Default::default)
}

/// A port on 127.0.0.1 that was free a moment ago. Ports handed out earlier in this process
/// are never handed out again, so parallel environments here cannot collide; a collision with
/// another process is possible and callers retry the start.
pub fn free_port() -> Result<u16> {
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    for _ in 0..100 {
        let port = TcpListener::bind((ip, 0))?.local_addr()?.port();
        if used_ports().lock().unwrap().insert((ip, port)) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port found")
}

/// A free port on `ip` in 20000..=32767: below Linux's ephemeral range (so the kernel never
/// hands it to someone else's outgoing connection) and within the 1..=32767 that OpenShift's
/// Infrastructure `vcenters[].port` accepts.
pub fn free_low_port(ip: std::net::IpAddr) -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        // RandomState is randomly keyed per instance: a cheap source of random numbers.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20000 + (h.finish() % (32768 - 20000)) as u16;
        if used_ports().lock().unwrap().contains(&(ip, port)) || TcpListener::bind((ip, port)).is_err() {
            continue;
        }
        used_ports().lock().unwrap().insert((ip, port));
        return Ok(port);
    }
    anyhow::bail!("no free port in 20000..=32767 on {ip}")
}

/// Polls `check` until it returns `Ok(true)`, failing after `limit`. The limit only keeps a
/// broken environment from hanging forever; it is not a performance expectation.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > limit {
            let detail = last_err.map(|e| format!(": last error: {e:#}")).unwrap_or_default();
            anyhow::bail!("timed out after {limit:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
