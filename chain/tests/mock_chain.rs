//! Runs the adapter against a loopback WebSocket JSON-RPC server that plays a Subtensor
//! node: real SCALE values built from the bundled metadata, no network beyond 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use codec::{Compact, Encode};
use futures::io::{BufReader, BufWriter};
use locus_chain::subtensor;
use locus_chain::subtensor::runtime_types as rt;
use locus_chain::timelock::{self, RevealSchedule, WeightsTlockPayload};
use locus_chain::{
    Chain, ChainError, Mode, Outcome, ValidatorSigner, decode_commit_timelocked_weights,
    decode_set_weights,
};

#[path = "support/drand.rs"]
mod drand;
use serde_json::{Value, json};
use subxt::utils::AccountId32;
use tokio::net::TcpListener;
use tokio_util::compat::TokioAsyncReadCompatExt;

const NETUID: u16 = 3;
const SPEC_VERSION: u32 = 381;
const TX_VERSION: u32 = 1;
const BEST: u64 = 1_000;

fn hash_of(n: u64) -> String {
    format!("0x{:064x}", 0xb10c_0000_u64 + n)
}

/// What happens to a submitted extrinsic.
#[derive(Clone, Copy)]
enum Inclusion {
    Success,
    /// `ExtrinsicFailed` with this `SubtensorModule` error.
    Fails(&'static str),
}

struct State {
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    submitted: Vec<Vec<u8>>,
    methods: Vec<String>,
    unknown: Vec<String>,
    nonce: u32,
    inclusion: Inclusion,
}

type Shared = Arc<Mutex<State>>;

fn offline() -> subxt::OfflineClientAtBlock<subxt::PolkadotConfig> {
    locus_chain::bundled_offline_client()
        .expect("offline client")
        .at_block(0u64)
        .expect("offline client at block")
}

fn key<Addr: subxt::storage::Address>(addr: Addr, parts: Addr::KeyParts) -> Vec<u8> {
    offline()
        .storage()
        .entry(addr)
        .expect("storage entry in metadata")
        .fetch_key(parts)
        .expect("storage key")
}

fn netuid(n: u16) -> u16 {
    n
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    hex::decode(s.trim_start_matches("0x")).expect("hex")
}

/// A subnet with `hotkeys[i]` at uid i.
struct Subnet {
    hotkeys: Vec<[u8; 32]>,
    version_key: u64,
    rate_limit: u64,
    last_update: Vec<u64>,
    commit_reveal: bool,
}

fn chain_state(subnet: &Subnet, inclusion: Inclusion) -> State {
    let api = subtensor::storage().subtensor_module();
    let mut storage = BTreeMap::new();
    storage.insert(key(api.networks_added(), (netuid(NETUID),)), true.encode());
    storage.insert(
        key(api.subnet_owner_hotkey(), (netuid(NETUID),)),
        [7u8; 32].encode(),
    );
    // A subnet whose owner hotkey was never set.
    storage.insert(
        key(api.networks_added(), (netuid(NETUID + 2),)),
        true.encode(),
    );
    storage.insert(
        key(api.subnetwork_n(), (netuid(NETUID),)),
        (subnet.hotkeys.len() as u16).encode(),
    );
    storage.insert(
        key(api.weights_version_key(), (netuid(NETUID),)),
        subnet.version_key.encode(),
    );
    storage.insert(
        key(api.weights_set_rate_limit(), (netuid(NETUID),)),
        subnet.rate_limit.encode(),
    );
    storage.insert(
        key(api.commit_reveal_weights_enabled(), (netuid(NETUID),)),
        subnet.commit_reveal.encode(),
    );
    storage.insert(
        key(api.last_update(), (NETUID,)),
        subnet.last_update.encode(),
    );
    let permits: Vec<bool> = (0..subnet.hotkeys.len()).map(|i| i == 0).collect();
    storage.insert(
        key(api.validator_permit(), (netuid(NETUID),)),
        permits.encode(),
    );
    for (uid, hotkey) in subnet.hotkeys.iter().enumerate() {
        let uid = uid as u16;
        storage.insert(key(api.keys(), (netuid(NETUID), uid)), hotkey.encode());
        storage.insert(
            key(api.uids(), (netuid(NETUID), AccountId32(*hotkey))),
            uid.encode(),
        );
    }
    // Another subnet's neuron, which must not show up in NETUID's metagraph.
    storage.insert(key(api.keys(), (netuid(NETUID + 1), 0)), [9u8; 32].encode());
    State {
        storage,
        submitted: Vec::new(),
        methods: Vec::new(),
        unknown: Vec::new(),
        nonce: 5,
        inclusion,
    }
}

fn header(n: u64) -> Value {
    json!({
        "parentHash": hash_of(n.saturating_sub(1)),
        "number": format!("0x{n:x}"),
        "stateRoot": hash_of(0xaaaa),
        "extrinsicsRoot": hash_of(0xbbbb),
        "digest": { "logs": [] },
    })
}

fn runtime_version() -> Vec<u8> {
    (
        "node-subtensor".to_string(),
        "node-subtensor".to_string(),
        1u32,
        SPEC_VERSION,
        1u32,
        Vec::<([u8; 8], u32)>::new(),
        TX_VERSION,
        1u8,
    )
        .encode()
}

fn events_for(inclusion: Inclusion) -> Vec<u8> {
    use rt::frame_support::dispatch::{DispatchClass, Pays};
    use rt::frame_system::{EventRecord, Phase};
    let info = rt::frame_system::DispatchEventInfo {
        weight: rt::sp_weights::weight_v2::Weight {
            ref_time: 1_000,
            proof_size: 0,
        },
        class: DispatchClass::Normal,
        pays_fee: Pays::Yes,
    };
    let event = match inclusion {
        Inclusion::Success => rt::frame_system::pallet::Event::ExtrinsicSuccess {
            dispatch_info: info,
        },
        Inclusion::Fails(name) => {
            let metadata = subxt::Metadata::decode_from(locus_chain::METADATA).expect("metadata");
            let pallet = metadata.pallet_by_name("SubtensorModule").expect("pallet");
            let index = pallet
                .error_variants()
                .expect("errors")
                .iter()
                .find(|v| v.name == name)
                .expect("error variant")
                .index;
            rt::frame_system::pallet::Event::ExtrinsicFailed {
                dispatch_error: rt::sp_runtime::DispatchError::Module(
                    rt::sp_runtime::ModuleError {
                        index: pallet.error_index(),
                        error: [index, 0, 0, 0],
                    },
                ),
                dispatch_info: info,
            }
        }
    };
    let records = vec![EventRecord {
        phase: Phase::ApplyExtrinsic(0),
        event: rt::node_subtensor_runtime::RuntimeEvent::System(event),
        topics: Vec::<subxt::utils::H256>::new(),
    }];
    let at = offline();
    let entry = at
        .storage()
        .entry(subtensor::storage().system().events())
        .expect("System.Events");
    let type_id = entry
        .default_value()
        .expect("Events has a default")
        .type_id();
    let mut out = Vec::new();
    subxt::ext::scale_encode::EncodeAsType::encode_as_type_to(
        &records,
        type_id,
        at.metadata_ref().types(),
        &mut out,
    )
    .expect("encode events");
    out
}

/// Answers one JSON-RPC request; `Err` carries a JSON-RPC error message.
fn answer(state: &Shared, method: &str, params: &Value) -> Result<Value, String> {
    let mut st = state.lock().expect("state lock");
    st.methods.push(method.to_string());
    let param = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    Ok(match method {
        "rpc_methods" => json!({ "methods": [
            "chain_getBlockHash", "chain_getHeader", "chain_getBlock", "chain_getFinalizedHead",
            "state_call", "state_getStorage", "state_getKeysPaged", "state_queryStorageAt",
            "author_submitAndWatchExtrinsic", "system_accountNextIndex"
        ]}),
        "chain_getBlockHash" => match param(0).as_u64() {
            Some(n) => json!(hash_of(n)),
            None => json!(hash_of(BEST)),
        },
        "chain_getFinalizedHead" => json!(hash_of(BEST)),
        "chain_getHeader" => {
            let at = param(0);
            let n = match at.as_str() {
                Some(h) => {
                    u64::from_str_radix(h.trim_start_matches("0x"), 16)
                        .map_err(|e| e.to_string())?
                        - 0xb10c_0000
                }
                None => BEST,
            };
            header(n)
        }
        "chain_getBlock" => {
            let h = param(0);
            let n = u64::from_str_radix(h.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
                .map_err(|e| e.to_string())?
                - 0xb10c_0000;
            let extrinsics: Vec<String> = if n == BEST + 1 {
                st.submitted.iter().map(|x| hex0x(x)).collect()
            } else {
                Vec::new()
            };
            json!({ "block": { "header": header(n), "extrinsics": extrinsics }, "justifications": null })
        }
        "state_call" => {
            let name = param(0).as_str().unwrap_or_default().to_string();
            let bytes = match name.as_str() {
                "Core_version" => runtime_version(),
                "Metadata_metadata_versions" => vec![14u32, 15, 16].encode(),
                "Metadata_metadata_at_version" => {
                    let mut out = vec![1u8];
                    Compact(locus_chain::METADATA.len() as u32).encode_to(&mut out);
                    out.extend_from_slice(locus_chain::METADATA);
                    out
                }
                "AccountNonceApi_account_nonce" => st.nonce.encode(),
                other => {
                    st.unknown.push(format!("state_call {other}"));
                    return Err(format!("runtime api {other} not served by the mock"));
                }
            };
            json!(hex0x(&bytes))
        }
        "state_getStorage" => {
            let key = unhex(&param(0));
            let block = param(1);
            let events_key = key_events();
            if key == events_key {
                if block.as_str() == Some(hash_of(BEST + 1).as_str()) {
                    json!(hex0x(&events_for(st.inclusion)))
                } else {
                    json!(hex0x(&Vec::<u8>::new().encode()))
                }
            } else {
                match st.storage.get(&key) {
                    Some(v) => json!(hex0x(v)),
                    None => Value::Null,
                }
            }
        }
        "state_getKeysPaged" => {
            let prefix = unhex(&param(0));
            let count = param(1).as_u64().unwrap_or(1000) as usize;
            let start = match param(2) {
                Value::Null => Vec::new(),
                v => unhex(&v),
            };
            let keys: Vec<String> = st
                .storage
                .keys()
                .filter(|k| k.starts_with(&prefix) && **k > start)
                .take(count)
                .map(|k| hex0x(k))
                .collect();
            json!(keys)
        }
        "state_queryStorageAt" => {
            let keys = param(0);
            let changes: Vec<Value> = keys
                .as_array()
                .map(|ks| {
                    ks.iter()
                        .map(|k| {
                            let kb = unhex(k);
                            json!([hex0x(&kb), st.storage.get(&kb).map(|v| hex0x(v))])
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!([{ "block": hash_of(BEST), "changes": changes }])
        }
        other => {
            st.unknown.push(other.to_string());
            return Err(format!("method {other} not served by the mock"));
        }
    })
}

fn key_events() -> Vec<u8> {
    key(subtensor::storage().system().events(), ())
}

async fn serve(listener: TcpListener, state: Shared) {
    while let Ok((socket, _)) = listener.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let mut server =
                soketto::handshake::Server::new(BufReader::new(BufWriter::new(socket.compat())));
            let Ok(req) = server.receive_request().await else {
                return;
            };
            let key = req.key();
            let accept = soketto::handshake::server::Response::Accept {
                key,
                protocol: None,
            };
            if server.send_response(&accept).await.is_err() {
                return;
            }
            let (mut tx, mut rx) = server.into_builder().finish();
            let mut buf = Vec::new();
            let mut sub_counter = 0u64;
            loop {
                buf.clear();
                if rx.receive_data(&mut buf).await.is_err() {
                    return;
                }
                let Ok(req) = serde_json::from_slice::<Value>(&buf) else {
                    continue;
                };
                let id = req.get("id").cloned().unwrap_or(Value::Null);
                let method = req
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let params = req.get("params").cloned().unwrap_or(Value::Null);
                let mut replies = Vec::new();
                if method == "author_submitAndWatchExtrinsic" {
                    let bytes = unhex(&params[0]);
                    let inclusion = {
                        let mut st = state.lock().expect("state lock");
                        st.methods.push(method.clone());
                        st.submitted.push(bytes);
                        st.inclusion
                    };
                    let _ = inclusion;
                    sub_counter += 1;
                    let sub = format!("sub{sub_counter}");
                    replies.push(json!({"jsonrpc": "2.0", "id": id, "result": sub}));
                    for status in [json!("ready"), json!({"inBlock": hash_of(BEST + 1)})] {
                        replies.push(json!({
                            "jsonrpc": "2.0",
                            "method": "author_extrinsicUpdate",
                            "params": {"subscription": sub, "result": status},
                        }));
                    }
                } else if method == "author_unwatchExtrinsic" {
                    replies.push(json!({"jsonrpc": "2.0", "id": id, "result": true}));
                } else {
                    match answer(&state, &method, &params) {
                        Ok(result) => {
                            replies.push(json!({"jsonrpc": "2.0", "id": id, "result": result}))
                        }
                        Err(message) => replies.push(json!({
                            "jsonrpc": "2.0", "id": id,
                            "error": {"code": -32601, "message": message},
                        })),
                    }
                }
                for reply in replies {
                    if tx.send_text(reply.to_string()).await.is_err() || tx.flush().await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

async fn start(state: State) -> (String, Shared) {
    // Watchdog: a hang (e.g. the client waiting for a notification the mock never sends)
    // fails the run instead of blocking CI. The whole file normally finishes in < 1 s.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(60));
        eprintln!("mock_chain: a test is still running after 60 s; aborting");
        std::process::exit(1);
    });
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let shared = Arc::new(Mutex::new(state));
    tokio::spawn(serve(listener, shared.clone()));
    (format!("ws://{addr}"), shared)
}

const ALICE_SEED: [u8; 32] = [
    0xe5, 0xbe, 0x9a, 0x50, 0x92, 0xb8, 0x1b, 0xca, 0x64, 0xbe, 0x81, 0xd2, 0x12, 0xe7, 0xf2, 0xf9,
    0xeb, 0xa1, 0x83, 0xbb, 0x7a, 0x90, 0x95, 0x4f, 0x7b, 0x76, 0x36, 0x1f, 0x6e, 0xdb, 0x5c, 0x0a,
];

fn validator() -> ValidatorSigner {
    ValidatorSigner::sr25519_from_seed(ALICE_SEED).expect("alice")
}

/// uid 0 is the validator; uids 1..=4 are miners.
fn subnet(rate_limit: u64, last_update_validator: u64, commit_reveal: bool) -> Subnet {
    let mut hotkeys = vec![validator().account_id()];
    for i in 1..=4u8 {
        hotkeys.push([i; 32]);
    }
    Subnet {
        hotkeys,
        version_key: 2_013,
        rate_limit,
        last_update: vec![last_update_validator, 0, 0, 0, 0],
        commit_reveal,
    }
}

const SCORES: [(u16, f64); 4] = [(4, 0.1), (1, 0.8), (3, 0.4), (2, 0.2)];

fn assert_no_unknown(state: &Shared) {
    let st = state.lock().expect("state lock");
    assert!(st.unknown.is_empty(), "unserved methods: {:?}", st.unknown);
}

#[tokio::test]
async fn metagraph_reads_hotkey_uid_map() {
    let (url, state) = start(chain_state(&subnet(100, 0, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let mg = chain.metagraph(NETUID).await.expect("metagraph");
    assert_eq!(mg.n, 5);
    assert_eq!(mg.block, BEST);
    assert_eq!(mg.uids.len(), 5);
    assert_eq!(mg.uid(&validator().account_id()), Some(0));
    assert_eq!(mg.uid(&[3u8; 32]), Some(3));
    assert_eq!(mg.uid(&[9u8; 32]), None, "other subnet's neuron leaked in");
    assert_eq!(mg.hotkey(2), Some([2u8; 32]));
    assert!(mg.has_validator_permit(0));
    assert!(!mg.has_validator_permit(1));
    let (by_uid, unregistered) = mg.scores_by_uid(&[([4u8; 32], 1.0), ([42u8; 32], 5.0)]);
    assert_eq!(by_uid, vec![(4, 1.0)]);
    assert_eq!(unregistered, vec![[42u8; 32]]);
    assert!(matches!(
        chain.metagraph(77).await,
        Err(ChainError::SubnetNotFound(77))
    ));
    assert_no_unknown(&state);
}

#[tokio::test]
async fn subnet_owner_hotkey_is_read_from_chain() {
    let (url, state) = start(chain_state(&subnet(100, 0, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    assert_eq!(
        chain.subnet_owner_hotkey(NETUID).await.expect("owner"),
        [7u8; 32]
    );
    assert!(matches!(
        chain.subnet_owner_hotkey(77).await,
        Err(ChainError::SubnetNotFound(77))
    ));
    assert!(matches!(
        chain.subnet_owner_hotkey(NETUID + 2).await,
        Err(ChainError::NoOwnerHotkey(5))
    ));
    assert_no_unknown(&state);
}

#[tokio::test]
async fn dry_run_signs_exact_extrinsic_and_submits_nothing() {
    let (url, state) = start(chain_state(&subnet(100, 0, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::DryRun)
        .await
        .expect("dry run");
    assert_eq!(report.outcome, Outcome::DryRun);
    assert!(report.dry_run);
    assert_eq!(report.uids, vec![1, 2, 3, 4]);
    assert_eq!(report.weights, vec![65535, 16384, 32768, 8192]);
    assert_eq!(report.version_key, 2_013);
    let decoded = decode_set_weights(&report.extrinsic).expect("decodes");
    println!("uid/weight table:\n{}", report.table());
    println!(
        "extrinsic ({} bytes): 0x{}",
        report.extrinsic.len(),
        hex::encode(&report.extrinsic)
    );
    println!("decoded: {decoded}");
    assert_eq!(decoded.pallet, "SubtensorModule");
    assert_eq!(decoded.call, "set_weights");
    assert_eq!(decoded.signer, Some(validator().account_id()));
    assert_eq!(decoded.netuid, NETUID);
    assert_eq!(decoded.dests, vec![1, 2, 3, 4]);
    assert_eq!(decoded.weights, vec![65535, 16384, 32768, 8192]);
    assert_eq!(decoded.version_key, 2_013);
    let st = state.lock().expect("state lock");
    assert!(st.submitted.is_empty(), "dry run submitted something");
    assert!(st.unknown.is_empty(), "unserved methods: {:?}", st.unknown);
    let mut seen: Vec<&String> = st.methods.iter().collect();
    seen.sort();
    seen.dedup();
    println!("RPC methods used: {seen:?}");
}

#[tokio::test]
async fn submit_is_included_and_carries_the_weights() {
    let (url, state) = start(chain_state(&subnet(100, 0, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::Submit)
        .await
        .expect("submit");
    assert_eq!(report.outcome, Outcome::Included { finalized: false });
    assert_eq!(
        report.block_hash.as_deref(),
        Some(hash_of(BEST + 1).as_str())
    );
    let submitted = state.lock().expect("state lock").submitted.clone();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0], report.extrinsic);
    let decoded = decode_set_weights(&submitted[0]).expect("decodes");
    assert_eq!(
        (decoded.pallet.as_str(), decoded.call.as_str()),
        ("SubtensorModule", "set_weights")
    );
    assert_eq!(decoded.netuid, NETUID);
    assert_eq!(decoded.dests, vec![1, 2, 3, 4]);
    assert_eq!(decoded.weights, vec![65535, 16384, 32768, 8192]);
    assert_eq!(decoded.version_key, 2_013);
    assert_no_unknown(&state);
}

#[tokio::test]
async fn dispatch_error_is_reported_by_name() {
    let (url, _state) = start(chain_state(
        &subnet(100, 0, false),
        Inclusion::Fails("SettingWeightsTooFast"),
    ))
    .await;
    let chain = Chain::connect(&url).await.expect("connect");
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::Submit)
        .await
        .expect("submit");
    assert_eq!(
        report.outcome,
        Outcome::ChainError {
            name: "SettingWeightsTooFast".into()
        }
    );
}

#[tokio::test]
async fn rate_limit_is_respected() {
    // Validator set weights at block 950 with a limit of 100: the next allowed block is 1050.
    let (url, state) = start(chain_state(&subnet(100, 950, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::Submit)
        .await
        .expect("rate limited is an outcome, not an error");
    assert_eq!(
        report.outcome,
        Outcome::RateLimited {
            next_block: 1_050,
            current_block: BEST
        }
    );
    assert!(report.extrinsic.is_empty());
    assert!(state.lock().expect("state lock").submitted.is_empty());
    // A dry run still shows what would be sent, flagged as rate limited.
    let dry = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::DryRun)
        .await
        .expect("dry run");
    assert!(matches!(
        dry.outcome,
        Outcome::RateLimited {
            next_block: 1_050,
            ..
        }
    ));
    assert!(!dry.extrinsic.is_empty());
    // 900 + 100 = 1000 <= current block: allowed.
    let (url, _state) = start(chain_state(&subnet(100, 900, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::Submit)
        .await
        .expect("submit");
    assert_eq!(report.outcome, Outcome::Included { finalized: false });
}

/// On a commit-reveal subnet the weights go out sealed to a drand round, and what the
/// node receives opens, here and in the Bittensor SDK, to exactly the weights and hotkey
/// `set_weights` would have sent.
#[tokio::test]
async fn commit_reveal_subnet_gets_weights_sealed_to_the_reveal_round() {
    let mut state = chain_state(&subnet(100, 0, true), Inclusion::Success);
    let api = subtensor::storage().subtensor_module();
    state
        .storage
        .insert(key(api.tempo(), (NETUID,)), 99u16.encode());
    state
        .storage
        .insert(key(api.reveal_period_epochs(), (NETUID,)), 2u64.encode());
    let slot_ms = offline()
        .constants()
        .entry(subtensor::constants().aura().slot_duration())
        .expect("Aura::SlotDuration");
    // Pin the clock so that the round the adapter aims at is 1000, whose signature
    // drand has published.
    let schedule = RevealSchedule {
        netuid: NETUID,
        tempo: 99,
        reveal_period_epochs: 2,
        current_block: BEST,
        block_time_secs: slot_ms as f64 / 1000.0,
    };
    let ahead = (schedule.first_reveal_block() + timelock::SECURITY_BLOCK_OFFSET - BEST) as f64
        * schedule.block_time_secs;
    let now = (timelock::QUICKNET_GENESIS_UNIX + 3000) as f64 + 1.0 - ahead;
    assert_eq!(schedule.reveal_round(now), 1000);
    let (url, state) = start(state).await;
    let chain = Chain::connect(&url)
        .await
        .expect("connect")
        .with_clock(Arc::new(move || now));
    let report = chain
        .set_weights(&validator(), NETUID, &SCORES, Mode::Submit)
        .await
        .expect("commit");
    assert_eq!(report.outcome, Outcome::Included { finalized: false });
    assert!(report.commit_reveal);
    assert_eq!(report.reveal_round, Some(1000));
    let submitted = state.lock().expect("state lock").submitted.clone();
    assert_eq!(submitted, vec![report.extrinsic.clone()]);
    assert!(
        decode_set_weights(&submitted[0]).is_err(),
        "not a set_weights"
    );
    let commit = decode_commit_timelocked_weights(&submitted[0]).expect("decodes");
    assert_eq!(commit.signer, Some(validator().account_id()));
    assert_eq!(commit.netuid, NETUID);
    assert_eq!(commit.reveal_round, 1000);
    assert_eq!(
        commit.commit_reveal_version, 4,
        "the chain's CommitRevealWeightsVersion"
    );
    let expected = WeightsTlockPayload {
        hotkey: validator().account_id().to_vec(),
        uids: vec![1, 2, 3, 4],
        values: vec![65535, 16384, 32768, 8192],
        version_key: 2_013,
    };
    let signature = hex::decode(drand::ROUND_1000_SIGNATURE).expect("hex");
    let opened = timelock::decrypt(&commit.commit, &signature).expect("opens at round 1000");
    assert_eq!(opened, expected.encode());
    assert_eq!(drand::sdk_decrypt(&commit.commit, 1000), expected.encode());
    assert_no_unknown(&state);
}

#[tokio::test]
async fn unregistered_validator_and_unknown_uid_are_refused() {
    let (url, _state) = start(chain_state(&subnet(100, 0, false), Inclusion::Success)).await;
    let chain = Chain::connect(&url).await.expect("connect");
    let stranger = ValidatorSigner::ed25519_from_seed([77u8; 32]);
    let err = chain
        .set_weights(&stranger, NETUID, &SCORES, Mode::Submit)
        .await
        .expect_err("not registered");
    assert!(
        matches!(err, ChainError::NotRegistered { netuid: NETUID, .. }),
        "{err}"
    );
    // A dry run with an unregistered ed25519 key still signs (and warns).
    let dry = chain
        .set_weights(&stranger, NETUID, &SCORES, Mode::DryRun)
        .await
        .expect("dry run");
    assert_eq!(
        decode_set_weights(&dry.extrinsic).expect("decodes").signer,
        Some(stranger.account_id())
    );
    let err = chain
        .set_weights(&validator(), NETUID, &[(1, 1.0), (9, 1.0)], Mode::DryRun)
        .await
        .expect_err("uid 9 is out of range");
    assert!(
        matches!(err, ChainError::UnknownUid { uid: 9, n: 5, .. }),
        "{err}"
    );
}
