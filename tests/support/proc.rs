//! Child processes with captured logs, free ports and readiness polling.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A per-test scratch directory under the system temp dir. Removed on drop unless the
/// thread is panicking (then it is kept so its logs can be read).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "wop-e2e-{}-{}-{}-{}",
            std::process::id(),
            n,
            tag,
            crate::support::random_token(4)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("e2e: keeping logs in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A spawned child whose stdout+stderr go to a log file; killed (and reaped) on drop.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<std::process::Child>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("e2e: cannot spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            log,
            child: Some(child),
        }
    }

    /// Whole log as (lossy) text.
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// Last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        tail_of(&self.log, n)
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The process's scheduler state, kernel wait channel and CPU time, for a failure
    /// message about a process that hangs.
    pub fn what_it_is_doing(&self) -> String {
        let pid = self.pid();
        let proc_file =
            |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let state = proc_file("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("State: ?")
            .to_string();
        // utime and stime are fields 14 and 15 of /proc/<pid>/stat, after the ")".
        let stat = proc_file("stat");
        let cpu = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).collect::<Vec<_>>())
            .unwrap_or_default();
        format!(
            "{} pid {pid}: {state}, wchan {}, utime+stime {:?} ticks",
            self.name,
            proc_file("wchan"),
            cpu
        )
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_lossy(p: &Path) -> String {
    let mut f = match File::open(p) {
        Ok(f) => f,
        Err(_) => return String::new(),
    };
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

pub fn tail_of(p: &Path, n: usize) -> String {
    // Read at most the last 64 KiB, then keep the last n lines.
    let mut f = match File::open(p) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open {}: {e}>", p.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    let s = String::from_utf8_lossy(&b);
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| {
            if l.len() > 600 {
                format!(
                    "{}…",
                    &l[..l.char_indices().nth(600).map(|(i, _)| i).unwrap_or(l.len())]
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop the listener).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `n` distinct free ports (all listeners held until all are chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub fn tcp_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// Poll `check` until it returns true, the process exits, or `timeout` passes.
/// Returns Err(reason) on failure.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    proc_: &mut Proc,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(());
        }
        if let Some(st) = proc_.exited() {
            return Err(format!("{} exited ({st}) before {what}", proc_.name));
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
