//! Shared set-up for the process-level tests: the daemons are real binaries,
//! built once per test run, started as separate processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use locus::system::LocalSystem;

/// Directory holding `locus`, `orchestratord`, `minerd` and `validatord`,
/// building the daemons (same profile and `fault-injection` feature as the
/// tests) on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let locus = PathBuf::from(env!("CARGO_BIN_EXE_locus"));
        let dir = locus.parent().expect("bin dir").to_path_buf();
        // scripts/test.sh builds them before the tests and says so: a cargo
        // run from inside a test sees the test's environment, which makes
        // cargo rebuild build-script crates (ring, prost) for minutes.
        if std::env::var_os("LOCUS_TEST_BINS_BUILT").is_some() {
            return dir;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // The same command as scripts/test.sh, so there it is a no-op; and
        // the features this test was built with, or the daemons would be
        // rebuilt without their fault modes (or with them).
        build.args(["build", "--workspace", "--bins"]);
        for (on, feature) in [
            (cfg!(feature = "fault-injection"), "locus/fault-injection"),
            (cfg!(feature = "flex"), "locus/flex"),
        ] {
            if on {
                build.args(["--features", feature]);
            }
        }
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

/// A 3-stage gpt_pipe small enough for a debug build: `local-smoke`,
/// `train` and `orchestratord` flags.
pub const TINY_GPT: [&str; 16] = [
    "--workload",
    "gpt_pipe",
    "--stages",
    "3",
    "--d-model",
    "8",
    "--heads",
    "2",
    "--d-ff",
    "16",
    "--seq-len",
    "8",
    "--batch",
    "2",
    "--micro-batches",
    "2",
];

/// Runs `command` to its end and returns its standard output; a failure
/// panics with its standard error, naming it as `what`.
pub fn stdout_of(mut command: Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `locus local-smoke` with `args`; returns its output.
pub fn smoke(args: &[&str]) -> Output {
    smoke_with(locus(), args)
}

/// [`smoke`] with a `locus` command prepared by the caller (e.g. with an
/// environment variable set).
pub fn smoke_with(mut locus: Command, args: &[&str]) -> Output {
    let out = locus
        .arg("local-smoke")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running locus local-smoke");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A finished `--steps 2 --miners 3` smoke whose bucket and keys stay in
/// the returned directory (`bucket/`, `keys/NAME.json`).
pub fn kept_smoke() -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("tempdir");
    let workdir = work.path().display().to_string();
    let out = smoke(&["--steps", "2", "--miners", "3", "--workdir", &workdir]);
    assert!(out.status.success(), "smoke failed");
    work
}

/// The SS58 address of key `name` (`owner`, `validator`, `miner0`...) of a
/// [`kept_smoke`].
pub fn smoke_key(work: &Path, name: &str) -> String {
    let path = work.join(format!("keys/{name}.json"));
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("smoke key")).expect("json");
    file["ss58Address"].as_str().expect("ss58").to_string()
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

/// The attack matrix's run: three steps, four miners (miner 0 the
/// attacker when one is named), short leases, the default sample rate.
pub const ATTACK_RUN: [&str; 12] = [
    "--steps",
    "3",
    "--miners",
    "4",
    "--micro-batches",
    "3",
    "--replicas",
    "2",
    "--lease-secs",
    "4",
    "--sample-rate",
    "0.25",
];

/// The fingerprint of the trained parameters a smoke printed.
pub fn fingerprint(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("final parameters: "))
        .unwrap_or_else(|| panic!("no final parameters in:\n{stdout}"))
        .to_string()
}

/// The parameters an all-honest [`ATTACK_RUN`] ends with (run once per
/// test binary).
pub fn honest_reference() -> &'static str {
    static REFERENCE: OnceLock<String> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let out = smoke(&ATTACK_RUN);
        assert!(out.status.success(), "honest reference run failed");
        fingerprint(&String::from_utf8_lossy(&out.stdout))
    })
}

/// A smoke run with miner 0 attacking, kept in its work directory.
pub struct Attacked {
    pub stdout: String,
    pub work: tempfile::TempDir,
}

impl Attacked {
    /// A daemon's log (`orchestratord`, `validatord`, `miner0`, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// The score table's "why 0" line under the attacker's row.
    pub fn why(&self) -> String {
        let mut lines = self.stdout.lines();
        lines.find(|l| l.starts_with("0*")).expect("attacker row");
        lines
            .next()
            .and_then(|l| l.trim().strip_prefix("why 0: "))
            .unwrap_or_else(|| panic!("no reason under the attacker's row:\n{}", self.stdout))
            .to_string()
    }
}

/// Runs `base` with miner 0 attacking in `mode` on `bucket`; checks the run
/// ended as `local-smoke` expects (it exits 0 only when the run completed,
/// every weight is the hotkey's share of the credited CU and the attacker
/// got what its mode deserves) and trained to `expected` parameters.
pub fn run_attack(base: &[&str], mode: &str, bucket: &str, expected: &str) -> Attacked {
    let work = tempfile::tempdir().expect("workdir");
    let workdir = work.path().display().to_string();
    let mut args = base.to_vec();
    args.extend([
        "--bad-miner-index",
        "0",
        "--fault-mode",
        mode,
        "--bucket",
        bucket,
        "--workdir",
        &workdir,
    ]);
    let out = smoke(&args);
    let attacked = Attacked {
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        work,
    };
    assert!(
        out.status.success(),
        "{mode}: the run did not end as expected (attacker paid, or weights off their CU share)\n{}",
        attacked.log("orchestratord")
    );
    assert_eq!(
        fingerprint(&attacked.stdout),
        expected,
        "{mode}: the training result differs from an all-honest run"
    );
    attacked
}

/// Runs [`ATTACK_RUN`] with miner 0 attacking in `mode` (see
/// [`run_attack`]); every honest miner must end up paid.
pub fn attack(mode: &str, bucket: &str) -> Attacked {
    let run = run_attack(&ATTACK_RUN, mode, bucket, honest_reference());
    for i in 1..4 {
        assert!(
            weight(&run.stdout, i) > 0.0,
            "{mode}: honest miner {i} unpaid"
        );
    }
    run
}

/// A daemon started by a test; killed if the test ends early.
pub struct Proc {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin` of `system` as `name` (its log: `logs/NAME.log`).
    pub fn start(system: &LocalSystem, bin: &str, name: &str, args: &[String]) -> Proc {
        let child = system
            .command(bin_dir(), bin, name, args)
            .and_then(|mut command| Ok(command.spawn()?))
            .unwrap_or_else(|e| panic!("starting {bin}: {e:#}"));
        Proc {
            name: name.to_string(),
            child,
            log: system.logs().join(format!("{name}.log")),
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

/// A whole local system for one test: the [`LocalSystem`] `locus
/// local-smoke` starts (directory, keys, command lines) on a bucket
/// directory, with a runtime and the bucket open for the test's own reads.
pub struct System {
    system: LocalSystem,
    pub bucket: locus_protocol::Bucket,
    pub rt: tokio::runtime::Runtime,
    _work: tempfile::TempDir,
}

impl std::ops::Deref for System {
    type Target = LocalSystem;

    fn deref(&self) -> &LocalSystem {
        &self.system
    }
}

impl System {
    pub fn new(miners: usize) -> System {
        let work = tempfile::tempdir().expect("tempdir");
        let system = LocalSystem::create(work.path(), miners, 0).expect("local system");
        System {
            bucket: locus_protocol::Bucket::open(&system.bucket, locus::system::NETUID)
                .expect("bucket"),
            rt: tokio::runtime::Runtime::new().expect("runtime"),
            system,
            _work: work,
        }
    }

    pub fn owner_ss58(&self) -> String {
        self.owner.hotkey().ss58()
    }

    /// `validatord` judging every receipt and exiting once `run` is scored.
    pub fn start_validator(&self, name: &str, run: &str, extra: &[&str]) -> Proc {
        let args = self.validator_args(run, &owned(extra));
        Proc::start(self, "validatord", name, &args)
    }

    pub fn start_miner(&self, index: usize, extra: &[&str]) -> Proc {
        self.start_miner_named(index, &format!("miner{index}"), extra)
    }

    /// `minerd` for miner `index` with its own log name, e.g. for a
    /// supervisor started again after a crash.
    pub fn start_miner_named(&self, index: usize, name: &str, extra: &[&str]) -> Proc {
        let mut own = vec!["--heartbeat-secs=1".to_string()];
        own.extend(owned(extra));
        Proc::start(self, "minerd", name, &self.miner_args(index, &own))
    }

    pub fn start_orchestrator(&self, name: &str, run: &str, extra: &[&str]) -> Proc {
        let args = self.orchestrator_args(run, &owned(extra));
        Proc::start(self, "orchestratord", name, &args)
    }

    /// Waits until `n` worker heartbeats are in the bucket.
    pub fn wait_heartbeats(&self, n: usize) {
        let heartbeats = self.bucket.layout().heartbeats();
        self.wait_until("heartbeats", 60, || {
            self.rt
                .block_on(self.bucket.list(&heartbeats, None))
                .map(|k| k.len())
                .unwrap_or(0)
                >= n
        });
    }

    pub fn wait_until(&self, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The run's state as the owner last wrote it.
    pub fn run_state(&self, run: &str) -> Option<locus_protocol::pb::RunState> {
        let owner = self.owner.hotkey();
        self.rt
            .block_on(self.bucket.get_opt::<locus_protocol::pb::RunState>(
                &self.bucket.layout().run_state(run),
                locus_protocol::Expect::Signer(&owner),
            ))
            .ok()
            .flatten()
            .map(|v| v.into_inner())
    }

    /// Job id → hotkeys credited for it (verified or unsampled verdicts with
    /// compute units; a redo of a credited job passes with none).
    pub fn credited(&self, run: &str) -> std::collections::HashMap<String, Vec<Vec<u8>>> {
        use locus_protocol::pb::{Verdict, VerdictOutcome};
        let me = self.validator.hotkey();
        let mut credited: std::collections::HashMap<String, Vec<Vec<u8>>> = Default::default();
        let keys = self
            .rt
            .block_on(self.bucket.list(&self.bucket.layout().verdicts(run), None))
            .expect("list verdicts");
        for key in keys {
            let v = self
                .rt
                .block_on(
                    self.bucket
                        .get::<Verdict>(&key, locus_protocol::Expect::Signer(&me)),
                )
                .expect("verdict");
            let outcome = VerdictOutcome::try_from(v.outcome).expect("outcome");
            if matches!(
                outcome,
                VerdictOutcome::Verified | VerdictOutcome::Unsampled
            ) && v.compute_units > 0
            {
                credited
                    .entry(v.job_id.clone())
                    .or_default()
                    .push(v.hotkey.clone());
            }
        }
        credited
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `GET path` on `addr`: status and body, or `None` while nothing listens.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
