//! A whole system on one machine, as separate processes: its directory,
//! its keys and each daemon's command line.
//!
//! `locus local-smoke` and the process-level tests start their daemons
//! through this one place, so a flag a daemon needs is added once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use locus_protocol::{Hotkey, Keypair};

/// The subnet a local system runs on.
pub const NETUID: u16 = 3;

/// A key written to a key file (`keys/NAME.json`) for a daemon to load.
pub struct KeyFile {
    pub path: PathBuf,
    pub key: Keypair,
}

impl KeyFile {
    fn create(dir: &Path, name: &str) -> anyhow::Result<KeyFile> {
        let path = dir.join(format!("{name}.json"));
        let key = Keypair::generate();
        key.write_key_file(&path)?;
        Ok(KeyFile { path, key })
    }

    pub fn hotkey(&self) -> Hotkey {
        self.key.hotkey()
    }

    /// The `--FLAG=PATH` naming this key file.
    fn flag(&self, flag: &str) -> String {
        format!("--{flag}={}", self.path.display())
    }
}

/// A local system: `bucket/` (unless the bucket is elsewhere), `keys/`,
/// `logs/` (one file per daemon) and `stats/` under one directory.
pub struct LocalSystem {
    pub work: PathBuf,
    /// The `--bucket` every daemon gets.
    pub bucket: String,
    pub owner: KeyFile,
    pub validator: KeyFile,
    pub miners: Vec<KeyFile>,
    pub auditors: Vec<KeyFile>,
}

impl LocalSystem {
    /// Creates the directories under `work` and a fresh key for every role;
    /// the bucket is the directory `work/bucket` until [`Self::with_bucket`].
    pub fn create(work: &Path, miners: usize, auditors: usize) -> anyhow::Result<LocalSystem> {
        let keys = work.join("keys");
        for dir in ["bucket", "keys", "logs", "stats"] {
            std::fs::create_dir_all(work.join(dir))?;
        }
        Ok(LocalSystem {
            work: work.to_path_buf(),
            bucket: work.join("bucket").display().to_string(),
            owner: KeyFile::create(&keys, "owner")?,
            validator: KeyFile::create(&keys, "validator")?,
            miners: (0..miners)
                .map(|i| KeyFile::create(&keys, &format!("miner{i}")))
                .collect::<anyhow::Result<_>>()?,
            auditors: (0..auditors)
                .map(|i| KeyFile::create(&keys, &format!("auditor{i}")))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Runs the system on `url` (e.g. an S3 bucket) instead.
    pub fn with_bucket(mut self, url: String) -> LocalSystem {
        self.bucket = url;
        self
    }

    pub fn bucket_dir(&self) -> PathBuf {
        self.work.join("bucket")
    }

    pub fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }

    pub fn stats(&self) -> PathBuf {
        self.work.join("stats")
    }

    /// `--stats-file` for the daemon named `name`.
    pub fn stats_flag(&self, name: &str) -> String {
        format!(
            "--stats-file={}",
            self.stats().join(format!("{name}.json")).display()
        )
    }

    fn args(&self, own: Vec<String>, extra: &[String]) -> Vec<String> {
        let mut args = vec![
            format!("--bucket={}", self.bucket),
            format!("--netuid={NETUID}"),
        ];
        args.extend(own);
        args.extend_from_slice(extra);
        args
    }

    fn owner_flag(&self) -> String {
        format!("--owner={}", self.owner.hotkey())
    }

    /// `validatord` judging `run` and exiting once it is scored.
    pub fn validator_args(&self, run: &str, extra: &[String]) -> Vec<String> {
        let own = vec![
            self.validator.flag("key"),
            self.owner_flag(),
            format!("--exit-after-run={run}"),
        ];
        self.args(own, extra)
    }

    /// `validatord auditor` for auditor `index`: `extra` goes before the
    /// subcommand, `answers` after it.
    pub fn auditor_args(&self, index: usize, extra: &[String], answers: &[String]) -> Vec<String> {
        let own = vec![self.auditors[index].flag("key"), self.owner_flag()];
        let mut args = self.args(own, extra);
        args.push("auditor".into());
        args.push(format!("--validator={}", self.validator.hotkey()));
        args.extend_from_slice(answers);
        args
    }

    /// `minerd` for miner `index`.
    pub fn miner_args(&self, index: usize, extra: &[String]) -> Vec<String> {
        let own = vec![self.miners[index].flag("hotkey-file"), self.owner_flag()];
        self.args(own, extra)
    }

    /// `orchestratord` running `run`, judged by this system's validator.
    pub fn orchestrator_args(&self, run: &str, extra: &[String]) -> Vec<String> {
        let own = vec![
            self.owner.flag("owner-key"),
            format!("--run-id={run}"),
            format!("--validator={}", self.validator.hotkey()),
        ];
        self.args(own, extra)
    }

    /// `bin_dir/bin` with `args`, its output in `logs/NAME.log`, nothing on
    /// its standard input.
    pub fn command(
        &self,
        bin_dir: &Path,
        bin: &str,
        name: &str,
        args: &[String],
    ) -> anyhow::Result<Command> {
        let log = std::fs::File::create(self.logs().join(format!("{name}.log")))?;
        let mut command = Command::new(bin_dir.join(bin));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_gets_the_bucket_its_key_and_the_owner() {
        let work = tempfile::tempdir().expect("tempdir");
        let system = LocalSystem::create(work.path(), 2, 1).expect("system");
        let owner = format!("--owner={}", system.owner.hotkey());
        let bucket = format!("--bucket={}", system.bucket);
        for args in [
            system.validator_args("r", &[]),
            system.miner_args(1, &["--workers=2".into()]),
            system.auditor_args(0, &[], &[]),
        ] {
            assert!(args.contains(&bucket) && args.contains(&owner), "{args:?}");
        }
        let miner = system.miner_args(1, &["--workers=2".into()]);
        assert!(miner.contains(&system.miners[1].flag("hotkey-file")));
        assert_eq!(miner.last().map(String::as_str), Some("--workers=2"));
        let auditor = system.auditor_args(0, &[], &["--lie".into()]);
        let sub = auditor
            .iter()
            .position(|a| a == "auditor")
            .expect("subcommand");
        assert!(auditor[..sub].contains(&system.auditors[0].flag("key")));
        assert_eq!(auditor.last().map(String::as_str), Some("--lie"));
        let orchestrator = system.orchestrator_args("r", &[]);
        assert!(orchestrator.contains(&format!("--validator={}", system.validator.hotkey())));
        assert!(system.work.join("keys/miner1.json").exists());
    }
}
