//! Shared set-up for the process-level tests: the daemons are real binaries,
//! built once per test run, started as separate processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Directory holding `locus`, `orchestratord`, `minerd` and `validatord`,
/// building the daemons (same profile as the tests) on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let locus = PathBuf::from(env!("CARGO_BIN_EXE_locus"));
        let dir = locus.parent().expect("bin dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--bins",
            "-p",
            "orchestratord",
            "-p",
            "minerd",
            "-p",
            "validatord",
        ]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the daemons failed");
        dir
    })
}

pub fn locus() -> Command {
    bin_dir();
    Command::new(env!("CARGO_BIN_EXE_locus"))
}

/// Runs `locus local-smoke` with `args`; returns its output.
pub fn smoke(args: &[&str]) -> Output {
    let out = locus()
        .arg("local-smoke")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running locus local-smoke");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The score-table row of miner `index` from the smoke output.
pub fn table_row(stdout: &str, index: usize) -> Vec<String> {
    stdout
        .lines()
        .find(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            first == index.to_string() || first == format!("{index}*")
        })
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_else(|| panic!("no table row for miner {index} in:\n{stdout}"))
}

/// Weight column of a miner's row.
pub fn weight(stdout: &str, index: usize) -> f64 {
    table_row(stdout, index)
        .last()
        .and_then(|w| w.parse().ok())
        .expect("weight")
}

/// A daemon started by a test; killed if the test ends early.
pub struct Proc {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(bin: &str, name: &str, args: &[String], logs: &Path) -> Proc {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin_dir().join(bin))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn terminate(&mut self) {
        // SAFETY: signal delivery to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits up to `secs` for exit; panics with the log on timeout.
    pub fn wait(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit in {secs}s; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
