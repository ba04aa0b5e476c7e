//! `locus local-smoke`: the whole system on one machine.
//!
//! Starts `orchestratord`, N × `minerd` (each its own hotkey, with its own
//! worker processes) and `validatord` as separate OS processes that share
//! nothing but a bucket directory, waits for the run to finish and be scored,
//! and prints the score table. Exits 0 when the outcome is the expected one:
//! every honest miner paid its share of the credited compute units (within
//! 1 %), the misbehaving miner (if any) at zero — except `inflate_cost`,
//! whose honest work is paid at its true cost.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use locus::system::{KeyFile, LocalSystem, NETUID};
use locus_daemon::limits::{self, SettingError};
use locus_protocol::bucket::S3Options;
use locus_protocol::{Bucket, Expect, Hotkey, pb};
use tokio::process::{Child, Command};

#[cfg(feature = "fault-injection")]
mod attack;

const RUN_ID: &str = "smoke";

/// Variables of `local-smoke`'s own flags, kept from the daemons it starts.
const SMOKE_ONLY_VARS: &[&str] = &[
    "LOCUS_STEPS",
    "LOCUS_MINERS",
    "LOCUS_WORKERS_PER_MINER",
    "LOCUS_SAMPLE_RATE",
    "LOCUS_PROBATION_REPLAYS",
    "LOCUS_LEASE_SECS",
    "LOCUS_WORKDIR",
    "LOCUS_BUCKET",
    "LOCUS_TIMEOUT_SECS",
    "LOCUS_BAD_MINER_INDEX",
    "LOCUS_FAULT_MODE",
    "LOCUS_AUDITORS",
    "LOCUS_AUDITOR_FAULT_MODE",
];

#[derive(Args, Debug, Clone)]
pub struct SmokeArgs {
    /// Training steps; at least 1.
    #[arg(long, env = "LOCUS_STEPS", default_value_t = 1, value_parser = limits::steps())]
    pub steps: u32,
    /// Miner hotkeys, each a separate `minerd`; at least 1.
    #[arg(long, env = "LOCUS_MINERS", default_value_t = 4, value_parser = limits::at_least(1usize, ""))]
    pub miners: usize,
    /// Worker processes per miner (`minerd --workers`); at least 1.
    #[arg(long, env = "LOCUS_WORKERS_PER_MINER", default_value_t = 1, value_parser = limits::workers())]
    pub workers_per_miner: u32,
    /// Fraction of receipts the validator replays, in [0, 1].
    #[arg(long, env = "LOCUS_SAMPLE_RATE", default_value_t = 0.25, value_parser = limits::fraction)]
    pub sample_rate: f64,
    /// A misbehaving miner (builds with `--features fault-injection` only).
    #[cfg(feature = "fault-injection")]
    #[command(flatten)]
    pub attack: attack::AttackArgs,
    /// Auditors (`validatord auditor`, one CPU worker each) that replay
    /// for the validator; 0: the validator replays everything itself.
    #[arg(long, env = "LOCUS_AUDITORS", default_value_t = 0)]
    pub auditors: usize,
    /// Replays a miner must pass before the validator only samples it.
    #[arg(long, env = "LOCUS_PROBATION_REPLAYS", default_value_t = 3)]
    pub probation_replays: u32,
    /// Lease of each assignment, in seconds: a job not done by then goes to
    /// another miner; at least 2.
    #[arg(long, env = "LOCUS_LEASE_SECS", default_value_t = limits::DEFAULT_LEASE_SECS, value_parser = limits::lease_secs())]
    pub lease_secs: u64,
    /// What the run trains (`--workload gpt_pipe` for the pipelined GPT).
    #[command(flatten)]
    pub workload: orchestratord::workload::WorkloadArgs,
    /// Keep the bucket and logs in this directory instead of a temporary one.
    #[arg(long, env = "LOCUS_WORKDIR")]
    pub workdir: Option<PathBuf>,
    /// Where the bucket lives: `local` (a directory), `s3-local` (an S3
    /// server started on loopback, with SigV4 and read-only miner
    /// credentials), or `s3://NAME` (any S3 endpoint: owner and validator use
    /// S3_ENDPOINT / AWS_* from the environment; miners use
    /// LOCUS_MINER_AWS_ACCESS_KEY_ID / LOCUS_MINER_AWS_SECRET_ACCESS_KEY, or
    /// anonymous reads when unset).
    #[arg(long, env = "LOCUS_BUCKET", default_value = "local")]
    pub bucket: String,
    /// Give up after this many seconds; at least 1.
    #[arg(long, env = "LOCUS_TIMEOUT_SECS", default_value_t = 900, value_parser = limits::at_least(1u64, ""))]
    pub timeout_secs: u64,
}

/// Checks the flags together before anything starts (each flag's own
/// range is checked while parsing, with the daemons' rules); a test build
/// also checks its attack flags (`attack::check`).
pub fn check(args: &SmokeArgs) -> Result<(), SettingError> {
    #[cfg(feature = "fault-injection")]
    attack::check(args)?;
    #[cfg(feature = "fault-injection")]
    if let Some(mode) = &args.attack.auditor_fault_mode
        && args.auditors == 0
    {
        return Err(
            limits::Setting::new("auditor-fault-mode", "LOCUS_AUDITOR_FAULT_MODE")
                .invalid(mode, "needs --auditors 1 or more"),
        );
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = args;
    Ok(())
}

struct Daemon {
    name: String,
    child: Child,
}

type Env = Vec<(String, String)>;

impl Daemon {
    fn spawn(
        system: &LocalSystem,
        bin_dir: &Path,
        bin: &str,
        name: &str,
        args: &[String],
        env: &Env,
    ) -> anyhow::Result<Self> {
        let mut command = Command::from(system.command(bin_dir, bin, name, args)?);
        // The smoke's own settings are not its daemons': a miner must not
        // read the smoke's LOCUS_FAULT_MODE as its own, nor the orchestrator
        // its LOCUS_STEPS. What a daemon needs, the smoke passes as a flag.
        for var in SMOKE_ONLY_VARS {
            command.env_remove(var);
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin} from {}", bin_dir.display()))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
        })
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signal delivery to our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}

/// Directory holding the daemons: next to this executable.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("executable has no directory")?
        .to_path_buf();
    for bin in ["orchestratord", "minerd", "validatord"] {
        if !dir.join(bin).exists() {
            bail!(
                "{bin} not found next to {}; build the workspace first (cargo build --release)",
                exe.display()
            );
        }
    }
    Ok(dir)
}

pub async fn run(args: SmokeArgs) -> anyhow::Result<i32> {
    check(&args)?;
    let started = Instant::now();
    let started_unix_ms = locus_protocol::time::unix_ms();
    let bins = bin_dir()?;
    let temp;
    let work = match &args.workdir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("locus-smoke-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let system = LocalSystem::create(&work, args.miners, args.auditors)?;
    let (logs, stats) = (system.logs(), system.stats());
    let (owner, validator) = (system.owner.hotkey(), system.validator.hotkey());
    let hotkeys = |keys: &[KeyFile]| -> Vec<Hotkey> { keys.iter().map(KeyFile::hotkey).collect() };
    let (miners, auditors) = (hotkeys(&system.miners), hotkeys(&system.auditors));
    let storage = Storage::prepare(&args.bucket, &system.bucket_dir(), &bins, &logs).await?;
    let system = system.with_bucket(storage.url.clone());
    println!(
        "local smoke: {} steps, {} miners x {} workers, sample rate {}, bucket {}",
        args.steps, args.miners, args.workers_per_miner, args.sample_rate, system.bucket
    );
    #[cfg(feature = "fault-injection")]
    attack::announce(&args, &miners);
    let mut daemons = Vec::new();
    let mut validator_flags = vec![
        format!("--sample-rate={}", args.sample_rate),
        format!("--probation-replays={}", args.probation_replays),
        system.stats_flag("validatord"),
    ];
    if !auditors.is_empty() {
        let list: Vec<String> = auditors.iter().map(Hotkey::ss58).collect();
        validator_flags.push(format!("--auditors={}", list.join(",")));
    }
    let validator_daemon = Daemon::spawn(
        &system,
        &bins,
        "validatord",
        "validatord",
        &system.validator_args(RUN_ID, &validator_flags),
        &storage.owner_env,
    )?;
    for i in 0..auditors.len() {
        #[cfg_attr(not(feature = "fault-injection"), allow(unused_mut))]
        let mut answers = Vec::new();
        #[cfg(feature = "fault-injection")]
        if i == 0 && args.attack.auditor_fault_mode.is_some() {
            answers.push("--lie".to_string());
        }
        let name = format!("auditor{i}");
        daemons.push(Daemon::spawn(
            &system,
            &bins,
            "validatord",
            &name,
            &system.auditor_args(i, &[system.stats_flag(&name)], &answers),
            // Read-only, as a miner's: an auditor writes through grants.
            &storage.miner_env,
        )?);
    }
    for i in 0..miners.len() {
        let name = format!("miner{i}");
        let mut extra = vec![
            format!("--workers={}", args.workers_per_miner),
            "--heartbeat-secs=2".to_string(),
            system.stats_flag(&name),
        ];
        extra.extend(attack_flag(&args, i));
        daemons.push(Daemon::spawn(
            &system,
            &bins,
            "minerd",
            &name,
            &system.miner_args(i, &extra),
            &storage.miner_env,
        )?);
    }
    let bucket = storage.open_as_owner()?;
    // Like an owner going live on a subnet with miners already waiting: the
    // first job goes out once every worker has sent a heartbeat.
    let expected = args.miners * args.workers_per_miner as usize;
    let miner_list = miners
        .iter()
        .map(Hotkey::ss58)
        .collect::<Vec<_>>()
        .join(",");
    let mut orchestrator_flags = vec![
        format!("--steps={}", args.steps),
        format!("--lease-secs={}", args.lease_secs),
        format!("--min-workers={expected}"),
        format!("--miner={miner_list}"),
        system.stats_flag("orchestratord"),
    ];
    orchestrator_flags.extend(args.workload.to_flags());
    let run_started = Instant::now();
    let mut orchestrator = Daemon::spawn(
        &system,
        &bins,
        "orchestratord",
        "orchestratord",
        &system.orchestrator_args(RUN_ID, &orchestrator_flags),
        &storage.owner_env,
    )?;
    let mut validator_daemon = validator_daemon;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let outcome = wait_for_run(
        &bucket,
        &owner,
        &mut orchestrator,
        &mut validator_daemon,
        &mut daemons,
        args.steps,
        deadline,
    )
    .await;
    let run_secs = run_started.elapsed().as_secs_f64();
    for d in &daemons {
        d.terminate();
    }
    for d in daemons.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(30), d.child.wait())
            .await
            .is_err()
        {
            eprintln!("{} did not stop in time; killing it", d.name);
            let _ = d.child.kill().await;
        }
    }
    if let Err(e) = outcome {
        eprintln!("local smoke failed: {e:#}\nlogs: {}", logs.display());
        keep_workdir(&args, &work);
        return Ok(1);
    }
    let window: pb::ScoreWindow = read_with_retry(
        &bucket,
        &bucket.layout().score_window(RUN_ID),
        Expect::Signer(&validator),
    )
    .await
    .context("reading the validator's score window")?;
    let state: pb::RunState = read_with_retry(
        &bucket,
        &bucket.layout().run_state(RUN_ID),
        Expect::Signer(&owner),
    )
    .await
    .context("reading the run state")?;
    print_table(&window, &miners, bad_miner(&args));
    let losses: Vec<String> = state.eval_loss.iter().map(|l| format!("{l:.5}")).collect();
    println!("eval loss by step: [{}]", losses.join(", "));
    if let Some(bars) = args.workload.loss_bars()? {
        println!("{}", bars.report(state.eval_loss.last().copied()));
    }
    println!(
        "final parameters: {}",
        crate::audit::params_fingerprint(&bucket, &state).await?
    );
    // The smoke's own work after the run (stopping every daemon, the audit
    // of every verdict above) grows with miners and jobs and is no part of
    // the run: the wall time ends at the validator's last score window.
    let to_last_window = window.unix_ms.saturating_sub(started_unix_ms) as f64 / 1000.0;
    let shares = crate::audit::cu_shares(&bucket, RUN_ID, &owner, &validator).await?;
    let in_all = started.elapsed().as_secs_f64();
    println!(
        "smoke: {in_all:.1}s in all, of which {:.1}s after the last score window (stopping {} daemons, the audit)",
        (in_all - to_last_window).max(0.0),
        daemons.len() + 2
    );
    let requests = request_totals(&stats)?;
    let jobs = window.receipts.max(1);
    println!(
        "bucket requests: {} total ({:.1} per job over {} jobs); wall time {:.1}s",
        requests,
        requests as f64 / jobs as f64,
        window.receipts,
        to_last_window
    );
    let workload = args.workload.build()?;
    let examples = workload.step_examples() * args.steps as u64;
    println!(
        "throughput: {:.0} examples/s ({examples} examples in {run_secs:.1} s from the orchestrator's start; compare `locus train`)",
        examples as f64 / run_secs
    );
    let busy = crate::audit::worker_busy(&bucket, RUN_ID).await?;
    let workers = args.miners as f64 * args.workers_per_miner as f64;
    println!(
        "workers busy with a job (fetch, compute, upload): {:.0} % of {workers} workers over {:.1} s ({} receipts, {:.2} s per job)",
        100.0 * busy.job_ms as f64 / (workers * busy.span_ms.max(1) as f64),
        busy.span_ms as f64 / 1000.0,
        busy.receipts,
        busy.job_ms as f64 / 1000.0 / busy.receipts.max(1) as f64
    );
    let step = args.steps / 2;
    let times = crate::audit::step_times(&bucket, RUN_ID, step, &owner, &validator).await?;
    print_critical_path(step, &crate::audit::critical_path(&times));
    let mut sizes: Vec<String> = Vec::new();
    for spec in workload.step_jobs(0, 0, 0) {
        let label = format!("{:?}/p{}", spec.kind, spec.stage);
        if sizes.iter().any(|s| s.starts_with(&format!("{label} "))) {
            continue;
        }
        let spec_out = workload.output_spec(spec.kind, spec.stage);
        let bytes = locus_workloads::sealed_output_bound(&spec_out, RUN_ID, &spec.job_id, 1);
        sizes.push(format!("{label} {bytes}"));
    }
    println!("output bytes per job (kind/stage): {}", sizes.join(", "));
    for daemon in ["orchestratord", "validatord"] {
        let read = stat(&stats.join(format!("{daemon}.json")), "bytes_read").unwrap_or(0);
        println!("bytes read by {daemon}: {read}");
    }
    println!("peak memory (RSS): {}", peak_memory(&stats)?);
    #[cfg(feature = "fault-injection")]
    let paid_attacker = attack::attacker_is_paid(&args, storage.url.starts_with("s3://"));
    #[cfg(not(feature = "fault-injection"))]
    let paid_attacker = false;
    let audits = audit_report(&bucket, &validator, &auditors, &stats, run_secs).await?;
    let verdict = check_outcome(&window, &miners, bad_miner(&args), paid_attacker)
        .and_then(|()| check_shares(&window, &shares))
        .and_then(|()| check_auditors(&args, &audits));
    let idle = miners
        .iter()
        .filter(|h| !window.scores.iter().any(|s| s.ss58 == h.ss58()))
        .count();
    if idle > 0 {
        println!(
            "{idle} miners got no work: a step has fewer parallel jobs than miners (raise --micro-batches / --replicas)"
        );
    }
    match &verdict {
        Ok(()) => println!("OK: {}", expectation(&args)),
        Err(e) => {
            println!("FAILED: {e}");
            eprintln!("logs: {}", logs.display());
            keep_workdir(&args, &work);
        }
    }
    Ok(if verdict.is_ok() { 0 } else { 1 })
}

fn keep_workdir(args: &SmokeArgs, work: &Path) {
    if args.workdir.is_none() {
        // Keep the evidence of a failed run: copy it out of the temp dir.
        let kept = std::env::temp_dir().join(format!("locus-smoke-failed-{}", std::process::id()));
        if copy_dir(work, &kept).is_ok() {
            eprintln!("bucket and logs kept in {}", kept.display());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn expectation(args: &SmokeArgs) -> String {
    let shares = "each weight is its miner's share of the credited CU within 1 %";
    #[cfg(feature = "fault-injection")]
    if let Some(expected) = attack::expectation(args, shares) {
        return expected;
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = args;
    format!("every miner that worked has a positive weight; {shares}")
}

/// The `--fault-mode` flag of miner `index` if it misbehaves (only test
/// builds have one).
fn attack_flag(args: &SmokeArgs, index: usize) -> Option<String> {
    #[cfg(feature = "fault-injection")]
    return attack::miner_args(args, index);
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (args, index);
        None
    }
}

/// The misbehaving miner, if any (only test builds have one).
fn bad_miner(args: &SmokeArgs) -> Option<usize> {
    #[cfg(feature = "fault-injection")]
    return args.attack.bad_miner_index;
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = args;
        None
    }
}

/// Every weight must equal the hotkey's share of the credited compute units
/// (read from verdicts and owner-signed manifests) within 1 %.
fn check_shares(
    window: &pb::ScoreWindow,
    shares: &std::collections::BTreeMap<Hotkey, f64>,
) -> Result<(), String> {
    let mut worst: f64 = 0.0;
    for score in &window.scores {
        let hotkey = Hotkey::from_bytes(&score.hotkey).map_err(|e| e.to_string())?;
        let share = shares.get(&hotkey).copied().unwrap_or(0.0);
        let off = if share > 0.0 {
            (score.weight - share).abs() / share
        } else if score.weight == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        if off > 0.01 {
            return Err(format!(
                "{} has weight {:.4} but {:.4} of the credited CU",
                score.ss58, score.weight, share
            ));
        }
        worst = worst.max(off);
    }
    println!(
        "weights vs credited CU share: largest deviation {:.3} %",
        worst * 100.0
    );
    Ok(())
}

/// Follows the run's progress until the orchestrator and the validator
/// exit; a miner that stops before then (it refused its settings, say)
/// ends the smoke at once.
async fn wait_for_run(
    bucket: &Bucket,
    owner: &Hotkey,
    orchestrator: &mut Daemon,
    validator: &mut Daemon,
    miners: &mut [Daemon],
    steps: u32,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut shown = 0;
    let mut orchestrator_done = false;
    loop {
        if Instant::now() > deadline {
            orchestrator.terminate();
            validator.terminate();
            bail!("timed out");
        }
        if let Ok(Some(state)) = bucket
            .get_opt::<pb::RunState>(&bucket.layout().run_state(RUN_ID), Expect::Signer(owner))
            .await
        {
            while shown < state.completed_steps {
                let at = |v: &[f32]| v.get(shown as usize).copied().unwrap_or(f32::NAN);
                println!(
                    "step {}/{steps} done: train loss {:.5}, eval loss {:.5}",
                    shown + 1,
                    at(&state.train_loss),
                    at(&state.eval_loss)
                );
                shown += 1;
            }
        }
        for miner in miners.iter_mut() {
            if let Some(status) = miner.child.try_wait()? {
                orchestrator.terminate();
                validator.terminate();
                bail!(
                    "{} (minerd) exited with {status} before the run finished; see its log",
                    miner.name
                );
            }
        }
        if !orchestrator_done && let Some(status) = orchestrator.child.try_wait()? {
            if !status.success() {
                bail!("orchestratord exited with {status}");
            }
            orchestrator_done = true;
        }
        if let Some(status) = validator.child.try_wait()? {
            if !status.success() {
                bail!("validatord exited with {status}");
            }
            if !orchestrator_done {
                bail!("validatord exited before the run finished");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_table(window: &pb::ScoreWindow, miners: &[Hotkey], bad: Option<usize>) {
    println!();
    println!(
        "{:<6} {:<50} {:>5} {:>8} {:>6} {:>9} {:>10} {:>10} {:>8}",
        "miner", "hotkey", "jobs", "verified", "failed", "unsampled", "CU", "score", "weight"
    );
    for (i, hotkey) in miners.iter().enumerate() {
        let s = window
            .scores
            .iter()
            .find(|s| s.ss58 == hotkey.ss58())
            .cloned()
            .unwrap_or_default();
        let tag = if bad == Some(i) {
            format!("{i}*")
        } else {
            i.to_string()
        };
        println!(
            "{:<6} {:<50} {:>5} {:>8} {:>6} {:>9} {:>10} {:>10.0} {:>8.4}",
            tag,
            hotkey.ss58(),
            s.receipts,
            s.verified,
            s.failed,
            s.unsampled,
            s.verified_cu + s.unsampled_cu,
            s.score,
            s.weight
        );
        if s.weight == 0.0 {
            let why = if s.receipts == 0 {
                "no receipts".to_string()
            } else {
                s.reason.clone()
            };
            println!("       why 0: {why}");
        }
    }
    println!();
}

fn check_outcome(
    window: &pb::ScoreWindow,
    miners: &[Hotkey],
    bad: Option<usize>,
    paid_attacker: bool,
) -> Result<(), String> {
    if !window.complete {
        return Err("the score window is not complete".into());
    }
    let weight = |hotkey: &Hotkey| {
        window
            .scores
            .iter()
            .find(|s| s.ss58 == hotkey.ss58())
            .map(|s| s.weight)
    };
    if window.scores.is_empty() {
        return Err("no miner was scored".into());
    }
    let total: f64 = window.scores.iter().map(|s| s.weight).sum();
    if (total - 1.0).abs() > 1e-9 {
        return Err(format!("weights sum to {total}, not 1"));
    }
    for (i, hotkey) in miners.iter().enumerate() {
        let w = weight(hotkey).unwrap_or(0.0);
        if bad == Some(i) && !paid_attacker {
            if w != 0.0 {
                return Err(format!(
                    "misbehaving miner {i} got weight {w} (it escaped sampling or was not caught)"
                ));
            }
        } else if w <= 0.0 && weight(hotkey).is_some() {
            return Err(format!("honest miner {i} worked but got no weight"));
        }
    }
    Ok(())
}

/// One counter of a daemon's stats file.
fn stat(path: &Path, field: &str) -> Option<u64> {
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    stats[field].as_u64()
}

/// What became of one auditor: the validator's reason if it dropped it.
struct AuditorReport {
    hotkey: Hotkey,
    dropped: Option<String>,
}

/// Prints the replays of the run (who ran them, at what CPU cost to the
/// validator) and returns each auditor's part in it.
async fn audit_report(
    bucket: &Bucket,
    validator: &Hotkey,
    auditors: &[Hotkey],
    stats: &Path,
    run_secs: f64,
) -> anyhow::Result<Vec<AuditorReport>> {
    let layout = bucket.layout();
    let mut on_word = std::collections::HashMap::<Vec<u8>, usize>::new();
    let mut verified = 0u64;
    let prefix = layout.verdicts(RUN_ID);
    // Retried: under injected storage faults (`LOCUS_FAULT_RATE`) the
    // report must count what the run left, not what one request saw.
    for key in crate::audit::retry(|| bucket.list(&prefix, None)).await? {
        if let Ok(v) =
            crate::audit::retry(|| bucket.get::<pb::Verdict>(&key, Expect::Signer(validator))).await
            && v.outcome == pb::VerdictOutcome::Verified as i32
        {
            verified += 1;
            *on_word.entry(v.auditor.clone()).or_default() += 1;
        }
    }
    let validator_cpu = stat(&stats.join("validatord.json"), "cpu_ms").unwrap_or(0);
    let mut auditor_cpu = 0;
    for entry in std::fs::read_dir(stats)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("auditor"))
        {
            auditor_cpu += stat(&path, "cpu_ms").unwrap_or(0);
        }
    }
    let own = on_word.get(&Vec::new()).copied().unwrap_or(0);
    println!(
        "replays: {verified} receipts verified ({:.1} per second of the run), {own} of them on the validator's own replay; validator CPU {:.2} s ({:.1} ms per verified receipt), auditors' CPU {:.2} s",
        verified as f64 / run_secs.max(1e-9),
        validator_cpu as f64 / 1000.0,
        validator_cpu as f64 / verified.max(1) as f64,
        auditor_cpu as f64 / 1000.0
    );
    if auditors.is_empty() {
        return Ok(Vec::new());
    }
    let mut reports = Vec::new();
    for hotkey in auditors {
        let dropped = bucket
            .get_opt::<pb::AuditorDropped>(
                &layout.auditor_dropped(hotkey),
                Expect::Signer(validator),
            )
            .await?
            .map(|d| d.into_inner().reason);
        let verdicts = on_word
            .get(hotkey.to_bytes().as_slice())
            .copied()
            .unwrap_or(0);
        match &dropped {
            Some(reason) => {
                println!("auditor {hotkey}: DROPPED ({reason}); {verdicts} verdicts on its word")
            }
            None => println!("auditor {hotkey}: trusted; {verdicts} verdicts on its word"),
        }
        reports.push(AuditorReport {
            hotkey: *hotkey,
            dropped,
        });
    }
    Ok(reports)
}

/// A lying auditor (auditor 0 in an attack build) must be dropped; an
/// honest one must not.
fn check_auditors(args: &SmokeArgs, reports: &[AuditorReport]) -> Result<(), String> {
    #[cfg(feature = "fault-injection")]
    let liar = args.attack.auditor_fault_mode.is_some();
    #[cfg(not(feature = "fault-injection"))]
    let liar = {
        let _ = args;
        false
    };
    for (i, report) in reports.iter().enumerate() {
        match (i == 0 && liar, &report.dropped) {
            (true, None) => {
                return Err(format!(
                    "the lying auditor {} was not dropped",
                    report.hotkey
                ));
            }
            (false, Some(reason)) => {
                return Err(format!(
                    "the honest auditor {} was dropped: {reason}",
                    report.hotkey
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sums the request counts every daemon (and worker) wrote at exit.
fn request_totals(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        for field in ["gets", "puts", "lists"] {
            total += stats[field].as_u64().unwrap_or(0);
        }
    }
    Ok(total)
}

/// Each daemon's peak resident memory from its stats file; for miner and
/// auditor workers, the largest of them.
fn peak_memory(dir: &Path) -> anyhow::Result<String> {
    let mut peaks = std::collections::BTreeMap::<String, u64>::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // `orchestratord.json`, `miner3.json.w0`: the role without its number.
        let role = name
            .split('.')
            .next()
            .unwrap_or(name)
            .trim_end_matches(|c: char| c.is_ascii_digit());
        let role = match role {
            "miner" => "largest miner worker",
            "auditor" => "largest auditor worker",
            other => other,
        };
        let kb = stat(&path, "peak_rss_kb").unwrap_or(0);
        let peak = peaks.entry(role.to_string()).or_default();
        *peak = (*peak).max(kb);
    }
    Ok(peaks
        .iter()
        .map(|(role, kb)| format!("{role} {:.1} MB", *kb as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", "))
}

/// The bucket a smoke runs on, and the credentials each role gets.
struct Storage {
    url: String,
    owner_env: Env,
    miner_env: Env,
    /// The loopback S3 server of `s3-local`, stopped when the smoke ends.
    _server: Option<Child>,
}

impl Storage {
    async fn prepare(kind: &str, dir: &Path, bins: &Path, logs: &Path) -> anyhow::Result<Storage> {
        match kind {
            "local" => Ok(Storage {
                url: dir.display().to_string(),
                owner_env: Vec::new(),
                miner_env: Vec::new(),
                _server: None,
            }),
            "s3-local" => Self::loopback_s3(dir, bins, logs).await,
            url if url.starts_with("s3://") => {
                let miner_env = match (
                    std::env::var("LOCUS_MINER_AWS_ACCESS_KEY_ID"),
                    std::env::var("LOCUS_MINER_AWS_SECRET_ACCESS_KEY"),
                ) {
                    (Ok(id), Ok(secret)) => vec![
                        ("AWS_ACCESS_KEY_ID".into(), id),
                        ("AWS_SECRET_ACCESS_KEY".into(), secret),
                    ],
                    _ => vec![
                        ("S3_ANONYMOUS".into(), "1".into()),
                        ("AWS_ACCESS_KEY_ID".into(), String::new()),
                        ("AWS_SECRET_ACCESS_KEY".into(), String::new()),
                    ],
                };
                Ok(Storage {
                    url: url.to_string(),
                    owner_env: Vec::new(),
                    miner_env,
                    _server: None,
                })
            }
            other => bail!("--bucket {other:?}: use local, s3-local or s3://NAME"),
        }
    }

    /// Starts `locus-s3-server` on loopback: the owner and validator get its
    /// read-write credentials, miners its read-only ones.
    async fn loopback_s3(dir: &Path, bins: &Path, logs: &Path) -> anyhow::Result<Storage> {
        use tokio::io::AsyncBufReadExt as _;
        let log = std::fs::File::create(logs.join("s3-server.log"))?;
        let exe = bins.join("locus-s3-server");
        if !exe.exists() {
            bail!(
                "--bucket s3-local needs the loopback S3 server, and {} does not exist; build it: cargo build --release -p locus-s3-server",
                exe.display()
            );
        }
        let mut server = Command::new(exe)
            .args(["--root", &dir.display().to_string(), "--bucket", "locus"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting locus-s3-server from {}", bins.display()))?;
        let stdout = server.stdout.take().context("s3 server stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("the S3 server did not start in 30 s")??;
        let info: serde_json::Value =
            serde_json::from_str(&line).context("reading the S3 server's address")?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let base: Env = vec![
            ("S3_ENDPOINT".into(), text(&info["endpoint"])),
            ("S3_REGION".into(), "us-east-1".into()),
            ("S3_PATH_STYLE".into(), "1".into()),
        ];
        let with = |who: &str| -> Env {
            let mut env = base.clone();
            env.push((
                "AWS_ACCESS_KEY_ID".into(),
                text(&info[who]["access_key_id"]),
            ));
            env.push((
                "AWS_SECRET_ACCESS_KEY".into(),
                text(&info[who]["secret_access_key"]),
            ));
            env
        };
        println!(
            "loopback S3 server at {} (SigV4; miners hold read-only keys)",
            text(&info["endpoint"])
        );
        Ok(Storage {
            url: format!("s3://{}", text(&info["bucket"])),
            owner_env: with("writer"),
            miner_env: with("reader"),
            _server: Some(server),
        })
    }

    /// A handle with the owner's credentials, for following the run.
    fn open_as_owner(&self) -> anyhow::Result<Bucket> {
        let mut options = S3Options::from_env();
        for (key, value) in &self.owner_env {
            match key.as_str() {
                "S3_ENDPOINT" => options.endpoint = Some(value.clone()),
                "S3_REGION" => options.region = Some(value.clone()),
                "S3_PATH_STYLE" => options.path_style = true,
                "AWS_ACCESS_KEY_ID" => options.access_key_id = Some(value.clone()),
                "AWS_SECRET_ACCESS_KEY" => options.secret_access_key = Some(value.clone()),
                _ => {}
            }
        }
        Ok(Bucket::open_with(&self.url, NETUID, &options)?)
    }
}

/// Reads a record, retrying storage errors a few times (the smoke also runs
/// under injected storage faults).
async fn read_with_retry<T: locus_protocol::Record>(
    bucket: &Bucket,
    key: &str,
    expect: Expect<'_>,
) -> anyhow::Result<T> {
    Ok(crate::audit::retry(|| bucket.get::<T>(key, expect))
        .await?
        .into_inner())
}

/// A step's critical path by DAG level: when each level was issued, last
/// started, finished and judged, and how much of the step was work.
fn print_critical_path(step: u32, levels: &[crate::audit::Level]) {
    let Some(span) = levels.iter().map(|l| l.last_verdict).max() else {
        return;
    };
    println!(
        "critical path of step {step} by DAG level (ms from its first assignment; work: the level's longest job):"
    );
    for l in levels {
        println!(
            "  {:<8} {:>2} job{} issued +{:<5} last started +{:<5} finished +{:<5} judged +{:<5} work {}",
            format!("{:?}", l.kind).to_lowercase(),
            l.jobs,
            if l.jobs == 1 { " " } else { "s" },
            l.issued,
            l.last_started,
            l.last_finished,
            l.last_verdict,
            l.longest_job
        );
    }
    let work: u64 = levels.iter().map(|l| l.longest_job).sum();
    println!(
        "  step {step}: {span} ms, of which work {work} ms ({:.0} %), waiting for pick-ups, verdicts and assignments {} ms",
        100.0 * work as f64 / span.max(1) as f64,
        span.saturating_sub(work)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        smoke: SmokeArgs,
    }

    fn args(line: &str) -> Result<SmokeArgs, String> {
        let argv = std::iter::once("local-smoke").chain(line.split_whitespace());
        Cli::try_parse_from(argv)
            .map(|c| c.smoke)
            .map_err(|e| e.to_string())
    }

    fn checked(line: &str) -> Result<(), String> {
        check(&args(line)?).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_use_the_daemons_ranges() {
        for (line, rule) in [
            ("--steps 0", "must be at least 1"),
            ("--lease-secs 1", "must be at least 2"),
            ("--workers-per-miner 0", "must be at least 1"),
            ("--miners 0", "must be at least 1"),
            ("--sample-rate 1.01", "must be between 0 and 1"),
            ("--micro-batches 0", "must be between 1 and 64"),
            ("--replicas 65", "must be between 1 and 64"),
        ] {
            let e = args(line).err().unwrap_or_default();
            assert!(e.contains(rule), "{line}: {e}");
        }
        assert!(checked("--steps 5 --miners 4 --lease-secs 2").is_ok());
    }

    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn a_default_build_has_no_attack_flags() {
        for line in ["--bad-miner-index 0", "--fault-mode copy"] {
            let e = args(line).err().unwrap_or_default();
            assert!(e.contains("unexpected argument"), "{line}: {e}");
        }
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn an_unknown_fault_mode_is_refused() {
        let e = args("--bad-miner-index 0 --fault-mode nope")
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("nope") && e.contains("possible values: partial_corrupt"),
            "{e}"
        );
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn the_bad_miner_must_exist() {
        let e = checked("--miners 2 --bad-miner-index 2 --fault-mode copy").unwrap_err();
        assert!(
            e.contains("out of range for 2 miners") && e.contains("0 to 1"),
            "{e}"
        );
        assert!(checked("--miners 2 --bad-miner-index 1 --fault-mode copy").is_ok());
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_possible_escape_is_announced() {
        let off = "--bad-miner-index 0 --sample-rate 0 --probation-replays 0 --steps 4";
        let note = |line: &str| attack::escape_note(&args(line).unwrap());
        let four = note(&format!("{off} --fault-mode taint --miners 4")).unwrap();
        assert!(
            four.contains("4 workers") && four.contains("--miners 2"),
            "{four}"
        );
        assert!(note(&format!("{off} --fault-mode taint --miners 2")).is_none());
        assert!(note(&format!("{off} --fault-mode copy --miners 4")).is_none());
        assert!(note("--bad-miner-index 0 --fault-mode taint --steps 4").is_none());
        let workers = note(&format!(
            "{off} --fault-mode stealth --miners 2 --workers-per-miner 2"
        ));
        assert!(workers.is_some());
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn an_attack_that_no_replay_can_see_is_refused() {
        let off = "--bad-miner-index 0 --sample-rate 0 --probation-replays 0";
        for (mode, steps, needs) in [("taint", 1, 3), ("taint", 2, 3), ("replay_old", 1, 2)] {
            let e = checked(&format!("{off} --fault-mode {mode} --steps {steps}")).unwrap_err();
            assert!(
                e.contains(&format!("--fault-mode {mode} cannot be caught"))
                    && e.contains(&format!(
                        "Use --steps {needs} or more (got --steps {steps})"
                    )),
                "{e}"
            );
        }
        for line in [
            format!("{off} --fault-mode taint --steps 3"),
            format!("{off} --fault-mode replay_old --steps 2"),
            format!("{off} --fault-mode partial_corrupt"),
            format!("{off} --fault-mode copy"),
            "--bad-miner-index 0 --fault-mode taint --probation-replays 0".into(),
            "--bad-miner-index 0 --fault-mode taint --sample-rate 0".into(),
        ] {
            assert_eq!(checked(&line), Ok(()), "{line}");
        }
    }
}
