//! `locus export` of a finished gpt_pipe run, loaded by the PyPI
//! `safetensors` package with numpy: every tensor's name, shape and values
//! equal the run's final parameter artifacts (read here from the bucket,
//! under this test's own naming of the stages' blocks).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{locus, smoke};
use locus_protocol::{Bucket, Expect, Hotkey, pb};

#[test]
fn exported_model_loads_in_python_with_the_run_s_values() {
    let work = tempfile::tempdir().expect("temp dir");
    let workdir = work.path().join("smoke");
    let mut args = vec![
        "--miners",
        "2",
        "--steps",
        "1",
        "--workdir",
        workdir.to_str().expect("utf-8 path"),
    ];
    args.extend(common::TINY_GPT);
    assert!(smoke(&args).status.success(), "gpt_pipe smoke failed");
    let owner_file = std::fs::read_to_string(workdir.join("keys/owner.json")).expect("owner key");
    let owner: serde_json::Value = serde_json::from_str(&owner_file).expect("key json");
    let owner = owner["ss58Address"].as_str().expect("ss58").to_string();
    let bucket_dir = workdir.join("bucket");
    let out = work.path().join("model.safetensors");
    let export = || {
        locus()
            .args(["export", "--run-id", "smoke", "--owner", &owner])
            .arg("--bucket")
            .arg(&bucket_dir)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("running locus export")
    };
    let exported = export();
    assert!(
        exported.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&exported.stderr)
    );

    // What the run state names, read and checked here.
    let expected = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let bucket = Bucket::open(bucket_dir.to_str().expect("path"), 3).expect("bucket");
            let owner: Hotkey = owner.parse().expect("owner");
            let state = bucket
                .get::<pb::RunState>(&bucket.layout().run_state("smoke"), Expect::Signer(&owner))
                .await
                .expect("run state")
                .into_inner();
            assert_eq!(state.param_parts.len(), 3);
            let run = bucket
                .get::<pb::RunManifest>(
                    &bucket.layout().run_manifest("smoke"),
                    Expect::Signer(&owner),
                )
                .await
                .expect("run manifest")
                .into_inner();
            let token_ids = run.gpt.expect("gpt configuration").token_ids;
            assert!(!token_ids.is_empty(), "the smoke compacts its vocabulary");
            let mut expected = BTreeMap::new();
            expected.insert(
                "token_ids".to_string(),
                serde_json::json!({"ids": token_ids}),
            );
            for (stage, part) in state.param_parts.iter().enumerate() {
                let artifact = bucket
                    .get::<pb::TensorArtifact>(&part.key, Expect::AnySigner)
                    .await
                    .expect("parameters");
                for t in &artifact.tensors {
                    let name = match t.name.strip_prefix("h0.") {
                        Some(param) => format!("blocks.{stage}.{param}"),
                        None if t.name.contains('.') || t.name == "train_loss" => continue,
                        None => t.name.clone(),
                    };
                    let bits: Vec<u32> = t
                        .data
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    expected.insert(name, serde_json::json!({"shape": t.shape, "bits": bits}));
                }
            }
            expected
        });
    // Embeddings, 3 blocks, ln_f, lm_head and lm_bias, the id table.
    assert_eq!(expected.len(), 2 + 3 * 9 + 3 + 1, "{:?}", expected.keys());
    let expected_file = work.path().join("expected.json");
    std::fs::write(&expected_file, serde_json::to_vec(&expected).expect("json")).expect("write");
    let check = r#"
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
model = load_file(sys.argv[1])
expected = json.load(open(sys.argv[2]))
assert sorted(model) == sorted(expected), (sorted(model), sorted(expected))
for name, want in expected.items():
    got = model[name]
    if "ids" in want:
        assert got.dtype == np.int32, (name, got.dtype)
        assert got.tolist() == want["ids"], name
        continue
    assert got.dtype == np.float32, (name, got.dtype)
    assert list(got.shape) == want["shape"], (name, got.shape, want["shape"])
    bits = np.ascontiguousarray(got).view(np.uint32).reshape(-1)
    assert bits.tolist() == want["bits"], name
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
assert meta["workload"] == "gpt_pipe" and meta["run_id"] == "smoke", meta
print(f"{len(model)} tensors match")
"#;
    let python = Command::new("python3")
        .arg("-c")
        .arg(check)
        .arg(&out)
        .arg(&expected_file)
        .output()
        .expect("running python3 (scripts/test-deps.sh installs safetensors and numpy)");
    assert!(
        python.status.success(),
        "python check failed: {}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr)
    );
    // A second export never overwrites the first.
    assert!(!export().status.success(), "export overwrote its file");
}
