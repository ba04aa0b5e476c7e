//! Configuration files for the daemons: a flat TOML file whose keys are the
//! daemon's long flags.
//!
//! [`parse`] replaces `Cli::parse()`. It finds `--config <path>` on the
//! command line (or `LOCUS_CONFIG` in the environment), reads the TOML file
//! with the `config` crate, checks every key against the command's flags and
//! turns each `key = value` into a `--key=value` argument placed before the
//! real command line. The precedence is therefore, highest first:
//!
//! 1. a flag on the command line;
//! 2. the flag's environment variable (`LOCUS_...`, shown by `--help`);
//! 3. the configuration file;
//! 4. the flag's default (shown by `--help`).
//!
//! Key names are the long flag names, with `-` or `_` (`hotkey_file` or
//! `hotkey-file`); a repeatable flag also takes its plural field name
//! (`validators = [...]` for `--validator`). Values are TOML strings,
//! numbers, booleans or arrays (for repeatable or comma-separated flags). A
//! switch such as `json_logs = true` passes `--json-logs`; `false` leaves it
//! off. An unknown key, a table, or a value the flag does not accept stops
//! the daemon at start-up with the key and file named.
//!
//! Secrets never go in the file: S3 credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), or
//! from a file named by the same variable with `_FILE` appended (Docker or
//! systemd credentials), which [`parse`] reads before anything else runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};
use config::ValueKind;

/// The environment variable naming the configuration file when `--config`
/// is not given.
pub const CONFIG_ENV: &str = "LOCUS_CONFIG";

/// Credentials that may be given as a file: `NAME_FILE=/path` sets `NAME`
/// to the file's contents (trailing newline removed) unless `NAME` is set.
pub const SECRET_FILE_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Parses the process's command line, environment and configuration file
/// into `T`; prints the error and exits (status 2) when they are invalid,
/// like `T::parse()`.
///
/// Call it first in `main`, before anything reads the environment from
/// another thread: it may set the S3 credential variables from `*_FILE`.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    if let Err(e) = load_secret_files() {
        let mut cmd = T::command();
        cmd.error(ErrorKind::Io, e).exit();
    }
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`], then `check` over the result: a combination of settings that
/// cannot work stops the process like a bad flag (the message on stderr,
/// status 2).
pub fn parse_checked<T: CommandFactory + FromArgMatches>(
    check: impl FnOnce(&T) -> Result<(), crate::limits::SettingError>,
) -> T {
    let parsed = parse::<T>();
    if let Err(e) = check(&parsed) {
        command::<T>().error(ErrorKind::ValueValidation, e).exit();
    }
    parsed
}

/// [`parse`] over an explicit command line (the first item is the program
/// name), reading the environment but leaving it unchanged.
pub fn try_parse_from<T, I, S>(argv: I) -> Result<T, clap::Error>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    if argv.is_empty() {
        argv.push(T::command().get_name().into());
    }
    let mut cmd = command::<T>();
    cmd.build();
    let path = config_path(&argv[1..]).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut full = argv.clone();
    if let Some(path) = path {
        // Keys apply to the subcommand named first on the command line (e.g.
        // `locus discovery-ui --config ...`), else to the command itself.
        let (target, at) = match argv
            .get(1)
            .and_then(|first| first.to_str())
            .and_then(|first| cmd.find_subcommand(first))
            .filter(|sub| !sub.is_hide_set())
        {
            Some(sub) => (sub.clone(), 2),
            None => (cmd.clone(), 1),
        };
        let from_file = file_args(&target, &path, &argv[at..]).map_err(|msg| {
            let mut cmd = cmd.clone();
            cmd.error(ErrorKind::InvalidValue, msg)
        })?;
        full.splice(at..at, from_file);
    }
    let mut matches = cmd
        .try_get_matches_from_mut(full)
        .map_err(|e| name_env_source(&mut cmd, &argv[1..], e))?;
    T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

/// A bad value that came from an environment variable: says so, since the
/// operator did not type the flag clap names.
fn name_env_source(cmd: &mut Command, args: &[OsString], e: clap::Error) -> clap::Error {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return e;
    }
    let Some(ContextValue::String(invalid)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let mut args_of = vec![&*cmd];
    args_of.extend(cmd.get_subcommands());
    let Some(arg) = args_of
        .iter()
        .flat_map(|c| c.get_arguments())
        .find(|a| a.to_string() == *invalid)
    else {
        return e;
    };
    let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
        return e;
    };
    let on_command_line = args.iter().filter_map(|a| a.to_str()).any(|a| {
        a.strip_prefix("--")
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    let Some(value) = std::env::var_os(env).filter(|v| !v.is_empty()) else {
        return e;
    };
    if on_command_line {
        return e;
    }
    let why = match std::error::Error::source(&e) {
        Some(source) => source.to_string(),
        None => e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    };
    let kind = e.kind();
    cmd.error(
        kind,
        format!(
            "invalid value {value:?} in environment variable {} (for --{long}): {why}",
            env.to_string_lossy()
        ),
    )
}

/// `T`'s command with the global `--config` flag added and flags allowed to
/// repeat (the last one wins).
pub fn command<T: CommandFactory>() -> Command {
    let cmd = T::command();
    // The example key is one of this command's own flags.
    let example = cmd
        .get_arguments()
        .find(|a| a.get_long().is_some() && a.get_action().takes_values())
        .and_then(|a| a.get_long())
        .map(|long| format!(" (`{} = \"...\"`)", long.replace('-', "_")))
        .unwrap_or_default();
    cmd.args_override_self(true).arg(
        Arg::new("config")
            .long("config")
            .env(CONFIG_ENV)
            .value_name("PATH")
            .value_parser(clap::value_parser!(PathBuf))
            .global(true)
            .help(format!(
                "TOML configuration file: one key per long flag{example}. Command-line \
                 flags, then environment variables, override it"
            )),
    )
}

/// Sets each credential in [`SECRET_FILE_VARS`] from its `_FILE` variable.
pub fn load_secret_files() -> Result<(), String> {
    load_secret_files_for(SECRET_FILE_VARS)
}

fn load_secret_files_for(names: &[&str]) -> Result<(), String> {
    for name in names {
        let file_var = format!("{name}_FILE");
        let Some(path) = std::env::var_os(&file_var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{file_var}: cannot read {}: {e}",
                Path::new(&path).display()
            )
        })?;
        let value = value.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!(
                "{file_var}: {} is empty",
                Path::new(&path).display()
            ));
        }
        // A child process (minerd's workers) inherits both; that is fine.
        match std::env::var(name) {
            Ok(set) if set == value => continue,
            Ok(set) if !set.is_empty() => {
                return Err(format!("both {name} and {file_var} are set; set only one"));
            }
            _ => {}
        }
        // SAFETY: called at the top of `main`, before the daemon starts any
        // work; no other thread reads or writes the environment meanwhile.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}

/// The value of `--config PATH` / `--config=PATH` on the command line.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut path = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        } else if text == "--config" {
            path = iter.next().map(PathBuf::from);
        } else if let Some(value) = text.strip_prefix("--config=") {
            path = Some(PathBuf::from(value));
        }
    }
    path
}

/// The flags of `cmd` that a configuration key may set, by key name.
fn keyed_args(cmd: &Command) -> BTreeMap<String, &Arg> {
    let mut keys = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(id, "help" | "version" | "config")
            || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
        {
            continue;
        }
        keys.insert(long.replace('-', "_"), arg);
        keys.entry(id.replace('-', "_")).or_insert(arg);
    }
    keys
}

/// Long flags given on the command line `args`, up to the first subcommand.
fn flags_given(cmd: &Command, args: &[OsString]) -> Vec<String> {
    let mut given = Vec::new();
    let mut takes_value = false;
    for arg in args {
        let Some(text) = arg.to_str() else {
            takes_value = false;
            continue;
        };
        if text == "--" {
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            let found = cmd.get_arguments().find(|a| a.get_long() == Some(name));
            takes_value = !inline && found.is_some_and(|a| a.get_action().takes_values());
            given.push(name.to_owned());
        } else if let Some(short) = text.strip_prefix('-').and_then(|s| s.chars().next()) {
            if let Some(found) = cmd.get_arguments().find(|a| a.get_short() == Some(short)) {
                takes_value = text.len() == 2 && found.get_action().takes_values();
                if let Some(long) = found.get_long() {
                    given.push(long.to_owned());
                }
            }
        } else if !takes_value && cmd.find_subcommand(text).is_some() {
            break;
        } else {
            takes_value = false;
        }
    }
    given
}

/// Reads `path` and returns its keys as arguments for `cmd`, leaving out
/// keys whose flag is on the command line `args` or whose environment
/// variable is set.
fn file_args(cmd: &Command, path: &Path, args: &[OsString]) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    let table = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.cache.into_table())
        .map_err(|e| format!("config file {shown} is not valid TOML: {e}"))?;
    let keyed = keyed_args(cmd);
    let given = flags_given(cmd, args);
    let table: BTreeMap<_, _> = table.into_iter().collect();
    if let Some(key) = table
        .keys()
        .find(|k| !keyed.contains_key(&k.replace('-', "_")))
    {
        let valid: Vec<&str> = keyed
            .iter()
            .filter(|(k, a)| a.get_long().map(|l| l.replace('-', "_")).as_deref() == Some(k))
            .map(|(k, _)| k.as_str())
            .collect();
        return Err(format!(
            "unknown key `{key}` in {shown}; valid keys: {}",
            valid.join(", ")
        ));
    }
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = keyed[&key.replace('-', "_")];
        let long = arg.get_long().unwrap_or_default();
        let env_set = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| !v.is_empty());
        if env_set || given.iter().any(|g| g == long) {
            continue;
        }
        let flag = format!("--{long}");
        let bad = |what: String| format!("key `{key}` in {shown}: {what}");
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let ValueKind::Boolean(on) = value.kind else {
                    return Err(bad(format!(
                        "expected true or false, got {}",
                        kind_name(&value)
                    )));
                };
                let wanted = matches!(arg.get_action(), ArgAction::SetTrue);
                if on == wanted {
                    out.push(flag.into());
                }
            }
            ArgAction::Count => {
                let n = value
                    .clone()
                    .into_uint()
                    .map_err(|_| bad(format!("expected a count, got {}", kind_name(&value))))?;
                out.extend((0..n).map(|_| OsString::from(&flag)));
            }
            action if action.takes_values() => {
                let repeatable = matches!(action, ArgAction::Append)
                    || arg.get_value_delimiter().is_some()
                    || arg.get_num_args().is_some_and(|n| n.max_values() > 1);
                let items = match value.kind {
                    ValueKind::Array(items) if repeatable => items,
                    ValueKind::Array(_) => {
                        return Err(bad(format!("{flag} takes one value, not an array")));
                    }
                    _ => vec![value],
                };
                for item in items {
                    let text = scalar(&item).ok_or_else(|| {
                        bad(format!(
                            "expected a string or number, got {}",
                            kind_name(&item)
                        ))
                    })?;
                    check_value(arg, &text).map_err(&bad)?;
                    out.push(format!("{flag}={text}").into());
                }
            }
            _ => return Err(bad(format!("{flag} cannot be set from a file"))),
        }
    }
    Ok(out)
}

fn scalar(value: &config::Value) -> Option<String> {
    Some(match &value.kind {
        ValueKind::String(s) => s.clone(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(x) => x.to_string(),
        ValueKind::Nil | ValueKind::Table(_) | ValueKind::Array(_) => return None,
    })
}

fn kind_name(value: &config::Value) -> &'static str {
    match value.kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a float",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "an array",
    }
}

/// Runs `arg`'s value parser over `text` (each comma-separated part for a
/// delimited flag), so a bad value is reported against the file's key.
fn check_value(arg: &Arg, text: &str) -> Result<(), String> {
    let mut probe = Arg::new("value")
        .long("value")
        .action(ArgAction::Append)
        .value_parser(arg.get_value_parser().clone());
    if let Some(delimiter) = arg.get_value_delimiter() {
        probe = probe.value_delimiter(delimiter);
    }
    Command::new("check")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([OsString::from(format!("--value={text}"))])
        .map(|_| ())
        .map_err(|e| match std::error::Error::source(&e) {
            Some(source) => format!("invalid value {text:?}: {source}"),
            None => {
                let possible: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .filter(|v| !v.is_hide_set())
                    .map(|v| v.get_name().to_owned())
                    .collect();
                if possible.is_empty() {
                    let rendered = e.render().to_string();
                    let first = rendered.lines().next().unwrap_or_default();
                    first
                        .trim_start_matches("error: ")
                        .replace("'--value <value>'", "it")
                } else {
                    format!(
                        "invalid value {text:?}; possible values: {}",
                        possible.join(", ")
                    )
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(name = "testd")]
    struct Args {
        #[arg(long, env = "LOCUS_CFGTEST_BUCKET")]
        bucket: String,
        #[arg(long, env = "LOCUS_CFGTEST_NETUID", default_value_t = 3)]
        netuid: u16,
        #[arg(long, env = "LOCUS_CFGTEST_POLL_MS", default_value_t = 100)]
        poll_ms: u64,
        #[arg(long, env = "LOCUS_CFGTEST_HOTKEY_FILE")]
        hotkey_file: Option<PathBuf>,
        #[arg(
            long = "validator",
            env = "LOCUS_CFGTEST_VALIDATORS",
            value_delimiter = ','
        )]
        validators: Vec<String>,
        #[arg(long, env = "LOCUS_CFGTEST_DEVICES", value_delimiter = ',')]
        devices: Vec<u8>,
        #[arg(long, env = "LOCUS_CFGTEST_SAMPLE_RATE", default_value_t = 0.25)]
        sample_rate: f64,
        #[arg(long, env = "LOCUS_CFGTEST_MODE", default_value = "fast")]
        mode: Mode,
        #[arg(long, env = "LOCUS_CFGTEST_JSON_LOGS")]
        json_logs: bool,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(clap::ValueEnum, Clone, Debug, PartialEq)]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Subcommand, Debug)]
    enum Sub {
        #[command(hide = true)]
        Worker {
            #[arg(long)]
            index: u32,
        },
    }

    #[derive(Parser, Debug)]
    #[command(name = "tool")]
    struct Tool {
        #[command(subcommand)]
        command: ToolCommand,
    }

    #[derive(Subcommand, Debug)]
    enum ToolCommand {
        Serve {
            #[arg(long, default_value_t = 8765)]
            port: u16,
            #[arg(long)]
            owner: String,
        },
        Other,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn run(text: &str, cli: &[&str]) -> (Result<Args, clap::Error>, String) {
        let f = file(text);
        let path = f.path().display().to_string();
        let mut argv = vec!["testd".to_owned(), format!("--config={path}")];
        argv.extend(cli.iter().map(|s| s.to_string()));
        (try_parse_from::<Args, _, _>(argv), path)
    }

    fn err(text: &str) -> (String, String) {
        let (result, path) = run(text, &[]);
        (result.unwrap_err().to_string(), path)
    }

    #[test]
    fn keys_become_flags() {
        let (args, _) = run(
            r#"
            bucket = "/srv/bucket"
            netuid = 7
            hotkey-file = "/etc/locus/hk.json"
            validators = ["5A", "5B"]
            devices = "1,2"
            sample_rate = 1
            mode = "slow"
            json_logs = true
            "#,
            &[],
        );
        let args = args.unwrap();
        assert_eq!(args.bucket, "/srv/bucket");
        assert_eq!(args.netuid, 7);
        assert_eq!(args.hotkey_file, Some(PathBuf::from("/etc/locus/hk.json")));
        assert_eq!(args.validators, ["5A", "5B"]);
        assert_eq!(args.devices, [1, 2]);
        assert_eq!(args.sample_rate, 1.0);
        assert_eq!(args.mode, Mode::Slow);
        assert!(args.json_logs);
    }

    #[test]
    fn defaults_and_flag_spelling() {
        let (args, _) = run(
            "bucket = 'b'\nvalidator = ['5C']\ndevices = [3, 4]\njson_logs = false",
            &[],
        );
        let args = args.unwrap();
        assert_eq!(args.netuid, 3);
        assert_eq!(args.validators, ["5C"]);
        assert_eq!(args.devices, [3, 4]);
        assert!(!args.json_logs);
    }

    #[test]
    fn command_line_wins_and_replaces_lists() {
        let (args, _) = run(
            "bucket = 'b'\nnetuid = 7\nvalidators = ['5A', '5B']\ndevices = [1]",
            &["--netuid", "9", "--validator=5Z", "--devices", "8,9"],
        );
        let args = args.unwrap();
        assert_eq!(args.netuid, 9);
        assert_eq!(args.validators, ["5Z"]);
        assert_eq!(args.devices, [8, 9]);
    }

    #[test]
    fn environment_beats_file() {
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var("LOCUS_CFGTEST_POLL_MS", "250") };
        let (args, _) = run("bucket = 'b'\npoll_ms = 500", &[]);
        assert_eq!(args.unwrap().poll_ms, 250);
        let (args, _) = run("bucket = 'b'\npoll_ms = 500", &["--poll-ms=50"]);
        assert_eq!(args.unwrap().poll_ms, 50);
        unsafe { std::env::remove_var("LOCUS_CFGTEST_POLL_MS") };
        let (args, _) = run("bucket = 'b'\npoll_ms = 500", &[]);
        assert_eq!(args.unwrap().poll_ms, 500);
    }

    #[test]
    fn unknown_key_names_key_file_and_valid_keys() {
        let (e, path) = err("bucket = 'b'\nbukcet = 'c'");
        assert!(e.contains("unknown key `bukcet`"), "{e}");
        assert!(e.contains(&path), "{e}");
        assert!(
            e.contains("valid keys: bucket, devices, hotkey_file"),
            "{e}"
        );
        assert!(e.contains("sample_rate, validator\n"), "{e}");
        let (e, _) = err("netuid = 'x'\nzzz = 1");
        assert!(e.contains("unknown key `zzz`"), "{e}");
        let (e, _) = err("config = '/x.toml'");
        assert!(e.contains("unknown key `config`"), "{e}");
    }

    #[test]
    fn wrong_types_name_key_and_file() {
        for (text, key) in [
            ("netuid = 'seven'", "netuid"),
            ("netuid = 70000", "netuid"),
            ("netuid = 1.5", "netuid"),
            ("sample_rate = 'x'", "sample_rate"),
            ("json_logs = 'yes'", "json_logs"),
            ("mode = 'medium'", "mode"),
            ("devices = ['1', 'x']", "devices"),
            ("devices = '1,x'", "devices"),
            ("netuid = [1, 2]", "netuid"),
            ("bucket = { a = 1 }", "bucket"),
            ("[bucket]\na = 1", "bucket"),
        ] {
            let (e, path) = err(&format!("{text}\n"));
            assert!(e.contains(&format!("key `{key}`")), "{text}: {e}");
            assert!(e.contains(&path), "{text}: {e}");
        }
        let (e, _) = err("mode = 'medium'");
        assert!(e.contains("medium") && e.contains("fast"), "{e}");
    }

    #[test]
    fn bad_files_are_reported() {
        let (e, path) = err("bucket = ");
        assert!(e.contains("not valid TOML") && e.contains(&path), "{e}");
        let missing = try_parse_from::<Args, _, _>(["testd", "--config", "/nonexistent/x.toml"]);
        let e = missing.unwrap_err().to_string();
        assert!(
            e.contains("cannot read config file /nonexistent/x.toml"),
            "{e}"
        );
    }

    #[test]
    fn no_config_is_plain_clap() {
        let args = try_parse_from::<Args, _, _>(["testd", "--bucket=b", "--config=", "--netuid=4"]);
        // An empty --config path cannot be read.
        assert!(args.is_err());
        let e = try_parse_from::<Args, _, _>(["testd", "--config", "/dev/null"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--bucket"), "{e}");
    }

    #[test]
    fn hidden_subcommand_keeps_top_level_keys() {
        let (args, _) = run(
            "bucket = 'b'\nnetuid = 5",
            &["--netuid=6", "worker", "--index", "2"],
        );
        let args = args.unwrap();
        assert_eq!(args.netuid, 6);
        assert_eq!(args.bucket, "b");
        assert!(matches!(args.command, Some(Sub::Worker { index: 2 })));
    }

    #[test]
    fn keys_go_to_the_named_subcommand() {
        let f = file("owner = '5O'\nport = 9000");
        let path = f.path().to_str().unwrap();
        let tool = try_parse_from::<Tool, _, _>(["tool", "serve", "--config", path]).unwrap();
        assert!(
            matches!(tool.command, ToolCommand::Serve { port: 9000, ref owner } if owner == "5O")
        );
        let tool =
            try_parse_from::<Tool, _, _>(["tool", "serve", "--port=1", "--config", path]).unwrap();
        assert!(matches!(tool.command, ToolCommand::Serve { port: 1, .. }));
        let e = try_parse_from::<Tool, _, _>(["tool", "other", "--config", path]).unwrap_err();
        assert!(e.to_string().contains("unknown key `owner`"), "{e}");
    }

    #[derive(Parser, Debug)]
    #[command(name = "ranged")]
    struct Ranged {
        #[arg(
            long,
            env = "LOCUS_CFGTEST_RANGED_STEPS",
            default_value_t = 5,
            value_parser = crate::limits::at_least(1u32, "a run needs one")
        )]
        steps: u32,
        #[arg(
            long,
            env = "LOCUS_CFGTEST_RANGED_RATE",
            default_value_t = 0.25,
            value_parser = crate::limits::fraction
        )]
        rate: f64,
    }

    #[test]
    fn out_of_range_values_name_their_source() {
        let e = try_parse_from::<Ranged, _, _>(["ranged", "--steps=0"]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("'0' for '--steps <STEPS>': must be at least 1 (a run needs one)"),
            "{e}"
        );
        for (text, key, rule) in [
            ("steps = 0", "steps", "must be at least 1 (a run needs one)"),
            ("rate = 1.5", "rate", "must be between 0 and 1"),
        ] {
            let f = file(text);
            let path = f.path().display().to_string();
            let e = try_parse_from::<Ranged, _, _>(["ranged".into(), format!("--config={path}")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("key `{key}` in {path}")) && e.contains(rule),
                "{e}"
            );
        }
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var("LOCUS_CFGTEST_RANGED_RATE", "1.5") };
        let e = try_parse_from::<Ranged, _, _>(["ranged"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        let e = e.to_string();
        assert!(
            e.contains("\"1.5\" in environment variable LOCUS_CFGTEST_RANGED_RATE (for --rate): must be between 0 and 1"),
            "{e}"
        );
        // The command line overrides the bad variable.
        let ok = try_parse_from::<Ranged, _, _>(["ranged", "--rate", "0.5"]).unwrap();
        assert_eq!(ok.rate, 0.5);
        let e = try_parse_from::<Ranged, _, _>(["ranged", "--rate=7"]).unwrap_err();
        assert!(!e.to_string().contains("environment"), "{e}");
        unsafe { std::env::remove_var("LOCUS_CFGTEST_RANGED_RATE") };
    }

    #[test]
    fn help_lists_config() {
        let help = command::<Args>().render_long_help().to_string();
        assert!(
            help.contains("--config <PATH>") && help.contains("LOCUS_CONFIG"),
            "{help}"
        );
    }

    #[test]
    fn secrets_from_files() {
        let secret = file("s3cr3t\n");
        // SAFETY: only this test reads or writes these variables.
        unsafe {
            std::env::set_var("LOCUS_CFGTEST_SECRET_FILE", secret.path());
            std::env::remove_var("LOCUS_CFGTEST_SECRET");
        }
        load_secret_files_for(&["LOCUS_CFGTEST_SECRET"]).unwrap();
        assert_eq!(std::env::var("LOCUS_CFGTEST_SECRET").unwrap(), "s3cr3t");
        // A child process inherits both: the same value is accepted.
        load_secret_files_for(&["LOCUS_CFGTEST_SECRET"]).unwrap();
        unsafe { std::env::set_var("LOCUS_CFGTEST_SECRET", "other") };
        let e = load_secret_files_for(&["LOCUS_CFGTEST_SECRET"]).unwrap_err();
        assert!(
            e.contains("both LOCUS_CFGTEST_SECRET and LOCUS_CFGTEST_SECRET_FILE"),
            "{e}"
        );
        unsafe {
            std::env::remove_var("LOCUS_CFGTEST_SECRET");
            std::env::set_var("LOCUS_CFGTEST_SECRET_FILE", "/nonexistent/secret");
        }
        let e = load_secret_files_for(&["LOCUS_CFGTEST_SECRET"]).unwrap_err();
        assert!(e.contains("cannot read /nonexistent/secret"), "{e}");
        unsafe { std::env::remove_var("LOCUS_CFGTEST_SECRET_FILE") };
    }
}
