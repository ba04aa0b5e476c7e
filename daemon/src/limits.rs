//! Start-up limits of the settings that can make a run impossible.
//!
//! A value outside its range does not fail later in some loop (a 0-step run
//! that waits forever, a lease that expires before a miner can see it, a
//! busy loop over the bucket): the daemon refuses to start and names the
//! setting and the range it accepts. Two kinds of check:
//!
//! - **One value**: the value parsers here ([`at_least`], [`between`],
//!   [`fraction`]) run while the command line, the environment and the
//!   configuration file are parsed, so the error names the flag (clap), the
//!   environment variable it came from, or the file and key it came from
//!   ([`crate::config`]).
//! - **Several values together** (a combination no single range rules out):
//!   a check after parsing that returns a [`SettingError`] naming every
//!   spelling of the setting ([`Setting`]); [`crate::config::parse_checked`]
//!   reports it like a parse error.
//!
//! `locus local-smoke` runs the same parsers over its own flags, so it fails
//! just as fast and with the same words as the daemon it would start.

use std::fmt;
use std::str::FromStr;

/// Fewest training steps in a run: a run with none can never complete.
pub const MIN_STEPS: u32 = 1;
/// Shortest lease in seconds. A miner polls its assignments up to once a
/// second when idle, so a shorter lease can run out before the miner even
/// sees the job; two seconds leave it about one to run and upload a tiny job.
/// Real jobs need far more (see [`DEFAULT_LEASE_SECS`]).
pub const MIN_LEASE_SECS: u64 = 2;
/// The lease of the orchestrator and of the local smoke alike: minutes of
/// headroom over a real job, yet a dead miner's job moves on within a minute.
pub const DEFAULT_LEASE_SECS: u64 = 60;
/// Shortest heartbeat TTL in seconds. The orchestrator re-reads heartbeats
/// every two seconds and a miner writes one at most every second: with a
/// shorter TTL a healthy worker would mostly look dead. Keep it at least
/// twice the miners' `--heartbeat-secs` (15 against 5 by default).
pub const MIN_HEARTBEAT_TTL_SECS: u64 = 2;
/// Fastest poll, in milliseconds, of every daemon: 0 would never back off
/// (a busy loop over the bucket).
pub const MIN_POLL_MS: u64 = 1;
/// Slowest "fastest poll" of the orchestrator and the validator: their
/// back-off stops at 2 s, and a first poll slower than that is no back-off.
pub const MAX_POLL_MS: u64 = 2000;
/// Slowest "fastest poll" of a miner worker, whose back-off stops at 1 s.
pub const MAX_MINER_POLL_MS: u64 = 1000;
/// Micro-batches and replicas per step: what the MLP workload accepts.
pub const MAX_MICRO_BATCHES: u32 = 64;
pub const MAX_REPLICAS: u32 = 64;

/// Why a value is refused: the allowed range, and what goes wrong outside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeError(String);

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RangeError {}

fn with_why(rule: String, why: &str) -> RangeError {
    if why.is_empty() {
        RangeError(rule)
    } else {
        RangeError(format!("{rule} ({why})"))
    }
}

/// Checks `value >= min`.
pub fn check_at_least<T: PartialOrd + fmt::Display>(
    value: T,
    min: T,
    why: &str,
) -> Result<T, RangeError> {
    if value >= min {
        Ok(value)
    } else {
        Err(with_why(format!("must be at least {min}"), why))
    }
}

/// Checks `min <= value <= max`.
pub fn check_between<T: PartialOrd + fmt::Display>(
    value: T,
    min: T,
    max: T,
    why: &str,
) -> Result<T, RangeError> {
    if value >= min && value <= max {
        Ok(value)
    } else {
        Err(with_why(format!("must be between {min} and {max}"), why))
    }
}

/// Checks that `value` is a fraction in [0, 1] (NaN is not).
pub fn check_fraction(value: f64) -> Result<f64, RangeError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(RangeError("must be between 0 and 1".into()))
    }
}

fn parse<T>(text: &str) -> Result<T, RangeError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e: T::Err| RangeError(e.to_string()))
}

/// A clap value parser of a `T` (what [`at_least`] and [`between`] return).
pub trait Parser<T>: Fn(&str) -> Result<T, RangeError> + Clone + Send + Sync + 'static {}
impl<T, F: Fn(&str) -> Result<T, RangeError> + Clone + Send + Sync + 'static> Parser<T> for F {}

/// A value parser (`#[arg(value_parser = at_least(1u32, ""))]`) for a number
/// of at least `min`; `why` (may be empty) says what a smaller one breaks.
pub fn at_least<T>(min: T, why: &'static str) -> impl Parser<T>
where
    T: FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    move |text| check_at_least(parse(text)?, min, why)
}

/// A value parser for a number in `min..=max`.
pub fn between<T>(min: T, max: T, why: &'static str) -> impl Parser<T>
where
    T: FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    move |text| check_between(parse(text)?, min, max, why)
}

/// A value parser for a fraction in [0, 1] (sample rates).
pub fn fraction(text: &str) -> Result<f64, RangeError> {
    check_fraction(parse(text)?)
}

// The settings a daemon and `locus local-smoke` share, so both refuse a bad
// value with the same words.

/// `steps` (orchestratord, local-smoke).
pub fn steps() -> impl Parser<u32> {
    at_least(MIN_STEPS, "a run without steps never completes")
}

/// `lease_secs` (orchestratord, local-smoke).
pub fn lease_secs() -> impl Parser<u64> {
    at_least(
        MIN_LEASE_SECS,
        "a miner polls its assignments up to once a second, so a shorter lease can run out \
         before it even sees the job",
    )
}

/// `micro_batches` (orchestratord, local-smoke).
pub fn micro_batches() -> impl Parser<u32> {
    between(1, MAX_MICRO_BATCHES, "")
}

/// `replicas` (orchestratord, local-smoke).
pub fn replicas() -> impl Parser<u32> {
    between(1, MAX_REPLICAS, "")
}

/// CPU workers of a miner (`minerd --workers`, `local-smoke --workers-per-miner`).
pub fn workers() -> impl Parser<u32> {
    at_least(1, "a miner without workers does no work")
}

/// A setting as an operator may give it: a long flag, usually with an
/// environment variable, and the configuration-file key of the flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The long flag without its dashes (`lease-secs`).
    pub flag: &'static str,
    /// Its environment variable, if it has one.
    pub env: Option<&'static str>,
}

impl Setting {
    pub const fn new(flag: &'static str, env: &'static str) -> Setting {
        Setting {
            flag,
            env: Some(env),
        }
    }

    /// A flag without an environment variable (e.g. `locus local-smoke`'s).
    pub const fn flag(flag: &'static str) -> Setting {
        Setting { flag, env: None }
    }

    /// The configuration-file key of the flag.
    pub fn key(&self) -> String {
        self.flag.replace('-', "_")
    }

    /// An error saying `value` of this setting is refused, and why.
    pub fn invalid(&self, value: impl fmt::Display, problem: impl fmt::Display) -> SettingError {
        SettingError(format!("{self} = {value}: {problem}"))
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.env {
            Some(env) => write!(f, "--{} ({env}, config key `{}`)", self.flag, self.key()),
            None => write!(f, "--{} (config key `{}`)", self.flag, self.key()),
        }
    }
}

/// A setting, or a combination of settings, that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError(String);

impl SettingError {
    /// A refused combination, described in full by `message`.
    pub fn new(message: impl Into<String>) -> SettingError {
        SettingError(message.into())
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingError {}

/// Worker `i` of a miner serves its own `/metrics` on the supervisor's
/// metrics port plus `1 + i`: every one of `workers` ports must exist.
pub fn check_worker_ports(
    setting: Setting,
    addr: std::net::SocketAddr,
    workers: usize,
) -> Result<(), SettingError> {
    let last = u32::from(addr.port()) + workers as u32;
    if last > u32::from(u16::MAX) {
        return Err(setting.invalid(
            addr,
            format!(
                "worker i serves its metrics on the port after it plus i, and {workers} workers \
                 need ports up to {last}; use a port of at most {}",
                u32::from(u16::MAX) - workers as u32
            ),
        ));
    }
    if addr.port() == 0 && workers > 0 {
        return Err(setting.invalid(
            addr,
            "port 0 (any free port) cannot be used with workers: worker i serves its metrics \
             on the port after it plus i; give a fixed port",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values() {
        let steps = at_least(MIN_STEPS, "");
        assert_eq!(steps("1"), Ok(1));
        assert_eq!(steps("0").unwrap_err().to_string(), "must be at least 1");
        assert!(steps("-1").is_err() && steps("x").is_err());
        let lease = at_least(MIN_LEASE_SECS, "a miner needs time");
        assert_eq!(
            lease("1").unwrap_err().to_string(),
            "must be at least 2 (a miner needs time)"
        );
        assert_eq!(lease("2"), Ok(2));
        let poll = between(MIN_POLL_MS, MAX_POLL_MS, "");
        assert_eq!(
            poll("0").unwrap_err().to_string(),
            "must be between 1 and 2000"
        );
        assert_eq!(
            poll("2001").unwrap_err().to_string(),
            "must be between 1 and 2000"
        );
        assert_eq!(poll(" 100 "), Ok(100));
        for ok in ["0", "1", "0.25", "1.0"] {
            assert!(fraction(ok).is_ok(), "{ok}");
        }
        for bad in ["-0.1", "1.5", "NaN", "inf"] {
            assert_eq!(
                fraction(bad).unwrap_err().to_string(),
                "must be between 0 and 1",
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_name_flag_env_and_key() {
        let lease = Setting::new("lease-secs", "LOCUS_LEASE_SECS");
        assert_eq!(
            lease.invalid(0, "too short").to_string(),
            "--lease-secs (LOCUS_LEASE_SECS, config key `lease_secs`) = 0: too short"
        );
        assert_eq!(
            Setting::flag("steps").to_string(),
            "--steps (config key `steps`)"
        );
    }

    #[test]
    fn worker_metrics_ports_must_exist() {
        let setting = Setting::new("metrics-addr", "LOCUS_METRICS_ADDR");
        let addr = |a: &str| a.parse().unwrap();
        assert!(check_worker_ports(setting, addr("127.0.0.1:9100"), 8).is_ok());
        assert!(check_worker_ports(setting, addr("127.0.0.1:65527"), 8).is_ok());
        let e = check_worker_ports(setting, addr("127.0.0.1:65530"), 8).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "--metrics-addr (LOCUS_METRICS_ADDR, config key `metrics_addr`) = 127.0.0.1:65530:"
            ) && e.to_string().contains("at most 65527"),
            "{e}"
        );
        let e = check_worker_ports(setting, addr("127.0.0.1:0"), 1).unwrap_err();
        assert!(e.to_string().contains("port 0"), "{e}");
    }
}
