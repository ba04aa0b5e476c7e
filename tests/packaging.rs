//! Operator packaging: the example configuration files, the systemd units and
//! the compose files under `deploy/` and `systemd/`.
//!
//! - Every example TOML is loaded by the real daemon (`--config FILE --help`
//!   exits 0 only when every key is known and every value parses), once as
//!   shipped and once with every commented `# key = value` line switched on,
//!   and it documents every flag of its daemon.
//! - Each unit is parsed and its key fields checked; then, when
//!   `systemd-analyze` is installed, `systemd-analyze verify` runs on copies
//!   whose `ExecStart=` points at the binaries this test built (verify
//!   requires the executable to exist).
//! - Each compose file is parsed as YAML and its services checked; then, when
//!   a `docker compose` plugin is installed, `docker compose config` runs on
//!   a copy beside stub env and config files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A valid SS58 address for the `<..._SS58>` placeholders.
fn some_ss58(dir: &Path) -> String {
    let mut command = common::locus();
    command
        .args(["keygen", "--out"])
        .arg(dir.join("placeholder.json"));
    common::stdout_of(command, "locus keygen").trim().to_owned()
}

/// The long flags in `binary --help`, as config keys.
fn flags(binary: &Path) -> Vec<String> {
    let out = Command::new(binary).arg("--help").output().expect("--help");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=']).next())
        .filter(|f| !matches!(*f, "help" | "version" | "config"))
        .map(|f| f.replace('-', "_"))
        .collect()
}

fn check_config(binary: &Path, text: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(binary)
        .arg("--config")
        .arg(&path)
        .arg("--help")
        .env_remove("LOCUS_CONFIG")
        .output()
        .expect("running the daemon");
    assert!(
        out.status.success(),
        "{} rejects {name}:\n{}\n--- file ---\n{text}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_configs_load_and_document_every_flag() {
    let bin = common::bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let ss58 = some_ss58(tmp.path());
    let examples = [
        ("orchestrator.toml", "orchestratord"),
        ("miner.toml", "minerd"),
        ("miner-multi-gpu.toml", "minerd"),
        ("validator.toml", "validatord"),
    ];
    for (file, daemon) in examples {
        let text = read(&repo().join("deploy/config").join(file));
        let text = text
            .replace("<OWNER_SS58>", &ss58)
            .replace("<VALIDATOR_SS58>", &ss58)
            .replace("<MINER_SS58>", &ss58);
        check_config(&bin.join(daemon), &text, file);
        let mut keys = Vec::new();
        let all_on: String = text
            .lines()
            .map(|line| {
                let uncommented = line.strip_prefix("# ").unwrap_or(line);
                match uncommented.split_once(" = ") {
                    Some((key, _)) if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                        keys.push(key.to_owned());
                        format!("{uncommented}\n")
                    }
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        check_config(&bin.join(daemon), &all_on, file);
        if file == "miner-multi-gpu.toml" {
            continue; // documents only what differs from miner.toml
        }
        for flag in flags(&bin.join(daemon)) {
            // Test-only flag, absent from release builds.
            if flag == "fault_mode" {
                continue;
            }
            assert!(
                keys.contains(&flag),
                "deploy/config/{file} does not document `{flag}`"
            );
        }
    }
}

#[test]
fn example_config_with_a_typo_is_refused() {
    let bin = common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner.toml");
    let text =
        read(&repo().join("deploy/config/miner.toml")).replace("# heartbeat_secs", "heartbeat_sec");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin.join("minerd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key `heartbeat_sec`"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

/// `[Section]` → key → values, in file order; repeated keys keep every value.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        unit.get_mut(&section)
            .unwrap()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

const UNITS: [(&str, &str, &str); 5] = [
    (
        "locus-orchestratord.service",
        "orchestratord",
        "orchestrator",
    ),
    ("locus-minerd.service", "minerd", "miner"),
    ("locus-validatord.service", "validatord", "validator"),
    ("locus-auditor.service", "validatord", "auditor"),
    ("locus-discovery-ui.service", "locus", "discovery-ui"),
];

#[test]
fn systemd_units_have_the_operator_settings() {
    for (file, binary, role) in UNITS {
        let unit = parse_unit(&read(&repo().join("systemd").join(file)));
        let service = &unit["Service"];
        let one = |key: &str| -> &str {
            let values = service
                .get(key)
                .unwrap_or_else(|| panic!("{file}: no {key}="));
            values.last().unwrap()
        };
        let exec = one("ExecStart");
        assert!(
            exec.starts_with(&format!("/usr/local/bin/{binary} ")),
            "{file}: {exec}"
        );
        match role {
            "discovery-ui" => assert!(exec.contains(" discovery-ui"), "{file}: {exec}"),
            // Set from its environment file: the auditor's own flags follow
            // the subcommand, which `--config` does not reach.
            "auditor" => assert!(exec.ends_with(" auditor"), "{file}: {exec}"),
            _ => assert!(
                exec.ends_with(&format!(" --config /etc/locus/{role}.toml")),
                "{file}: {exec}"
            ),
        }
        assert_eq!(
            one("EnvironmentFile"),
            format!("-/etc/locus/{role}.env"),
            "{file}"
        );
        for (key, value) in [
            ("User", "locus"),
            ("Group", "locus"),
            ("Restart", "on-failure"),
            ("KillSignal", "SIGTERM"),
            ("TimeoutStopSec", "60"),
            ("StateDirectory", "locus"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(one(key), value, "{file}: {key}=");
        }
        assert!(
            one("ReadWritePaths").contains("/srv/locus-bucket"),
            "{file}"
        );
        // Miners and auditors need the GPUs; everything else gets no
        // devices at all.
        if matches!(role, "miner" | "auditor") {
            assert_eq!(one("DevicePolicy"), "closed", "{file}");
            assert!(
                service["DeviceAllow"]
                    .iter()
                    .any(|d| d.starts_with("char-nvidia"))
            );
            assert!(!service.contains_key("PrivateDevices"), "{file}");
        } else {
            assert_eq!(one("PrivateDevices"), "yes", "{file}");
            assert_eq!(one("MemoryDenyWriteExecute"), "yes", "{file}");
        }
        assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"], "{file}");
        assert!(
            unit["Unit"]["After"]
                .iter()
                .any(|a| a.contains("network-online.target"))
        );
    }
}

#[test]
fn systemd_analyze_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let bin = common::bin_dir();
    // verify checks that ExecStart's binary exists and is executable: point
    // copies of the units at the binaries built for this test.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (file, binary, _) in UNITS {
        let text = read(&repo().join("systemd").join(file)).replace(
            &format!("ExecStart=/usr/local/bin/{binary} "),
            &format!("ExecStart={} ", bin.join(binary).display()),
        );
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("systemd-analyze verify:\n{stderr}");
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown keys and bad values are only warnings: refuse them too.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("locus-")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        ours.join("\n")
    );
}

const COMPOSE: [&str; 7] = [
    "compose.miner.yml",
    "compose.multi-miner.yml",
    "compose.validator.yml",
    "compose.orchestrator.yml",
    "compose.auditor.yml",
    "compose.checker-ui.yml",
    "compose.dashboard.yml",
];

fn env_files(service: &serde_yaml::Value) -> Vec<String> {
    let list = service["env_file"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|e| {
            e.as_str()
                .or_else(|| e["path"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn compose_files_parse_and_have_health_checks() {
    for file in COMPOSE {
        let text = read(&repo().join("deploy").join(file));
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let services = doc["services"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{file}: no services"));
        let mut locus = 0;
        let mut watchtower = false;
        for (name, service) in services {
            let name = name.as_str().unwrap();
            let image = service["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {name}: no image"));
            if image.starts_with("containrrr/watchtower") {
                watchtower = true;
                let socket = service["volumes"][0].as_str().unwrap();
                assert!(socket.starts_with("/var/run/docker.sock:"), "{file}");
                continue;
            }
            locus += 1;
            assert!(image.contains("/locus-"), "{file}: {name}: {image}");
            let health = &service["healthcheck"];
            let test = health["test"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{file}: {name}: no healthcheck"));
            assert!(
                test.iter()
                    .any(|t| t.as_str().is_some_and(|t| t.ends_with("/healthz"))),
                "{file}: {name}"
            );
            for key in ["interval", "timeout", "retries"] {
                assert!(!health[key].is_null(), "{file}: {name}: healthcheck.{key}");
            }
            assert!(
                service["restart"].as_str().is_some(),
                "{file}: {name}: restart"
            );
            assert_eq!(
                service["stop_signal"].as_str(),
                Some("SIGTERM"),
                "{file}: {name}"
            );
            assert!(!env_files(service).is_empty(), "{file}: {name}: env_file");
            let volumes: Vec<&str> = service["volumes"]
                .as_sequence()
                .map(|v| v.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if image.contains("locus-miner") {
                assert!(
                    volumes
                        .iter()
                        .any(|v| v.contains(".bittensor/wallets") && v.ends_with(":ro")),
                    "{file}: {name}: wallets"
                );
                assert!(
                    volumes.iter().any(|v| v.ends_with(":/var/lib/locus")),
                    "{file}: {name}: state"
                );
                assert!(
                    !service["deploy"]["resources"]["reservations"]["devices"].is_null(),
                    "{file}: {name}: GPUs"
                );
            }
            if image.contains("locus-auditor") {
                assert!(
                    !service["deploy"]["resources"]["reservations"]["devices"].is_null(),
                    "{file}: {name}: GPUs"
                );
            }
            if image.contains("locus-validator") {
                assert!(
                    volumes
                        .iter()
                        .any(|v| v.contains(".bittensor/wallets") && v.ends_with(":ro")),
                    "{file}: {name}: wallets"
                );
                assert!(
                    volumes.iter().any(|v| v.ends_with(":/var/lib/locus")),
                    "{file}: {name}: state"
                );
            }
            if service["labels"]["com.centurylinklabs.watchtower.enable"].as_str() == Some("true") {
                assert!(
                    watchtower
                        || services.iter().any(|(_, s)| s["image"]
                            .as_str()
                            .is_some_and(|i| i.starts_with("containrrr/watchtower"))),
                    "{file}: labelled for Watchtower but none runs"
                );
            }
        }
        assert!(locus > 0, "{file}: no Locus service");
    }
}

#[test]
fn docker_compose_config() {
    let compose = Command::new("docker").args(["compose", "version"]).output();
    if !compose.as_ref().is_ok_and(|o| o.status.success()) {
        println!("SKIPPED docker compose config: no `docker compose` plugin on this machine");
        return;
    }
    for file in COMPOSE {
        // A copy beside stub env and config files, as an operator lays it out.
        let dir = tempfile::tempdir().unwrap();
        let deploy = dir.path().join("deploy");
        std::fs::create_dir_all(deploy.join("keys")).unwrap();
        std::fs::copy(repo().join("deploy").join(file), deploy.join(file)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&deploy.join(file))).unwrap();
        for (_, service) in doc["services"].as_mapping().unwrap() {
            for env in env_files(service) {
                std::fs::write(deploy.join(env), "S3_BUCKET=stub\n").unwrap();
            }
            for volume in service["volumes"].as_sequence().into_iter().flatten() {
                let host = volume.as_str().unwrap().split(':').next().unwrap();
                if host.starts_with("./") && host.ends_with(".toml") {
                    std::fs::write(deploy.join(host), "").unwrap();
                }
            }
        }
        let out = Command::new("docker")
            .args(["compose", "-f"])
            .arg(deploy.join(file))
            .args(["config", "--quiet"])
            .env("HOME", dir.path())
            .output()
            .expect("running docker compose config");
        assert!(
            out.status.success(),
            "docker compose config {file}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
