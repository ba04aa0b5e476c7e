//! `locus export`: a run's trained model as a safetensors file, read from
//! signed objects only (the owner's run manifest and run state, and the
//! parameter artifacts they name, each checked against its writer and
//! digest).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use locus_protocol::pb;
use locus_protocol::{Expect, Hotkey};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub subnet: crate::subnet::SubnetArgs,
    /// The run to export.
    #[arg(long, env = "LOCUS_RUN_ID")]
    pub run_id: String,
    /// Where to write the model (`.safetensors`); refuses to overwrite.
    #[arg(long, env = "LOCUS_OUT")]
    pub out: PathBuf,
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let crate::subnet::Subnet {
        bucket,
        owner: owner_key,
        ..
    } = args.subnet.open().await?;
    let layout = bucket.layout().clone();
    let owner = Expect::Signer(&owner_key);
    let run = bucket
        .get::<pb::RunManifest>(&layout.run_manifest(&args.run_id), owner)
        .await
        .with_context(|| format!("reading run {}", args.run_id))?
        .into_inner();
    let state = bucket
        .get::<pb::RunState>(&layout.run_state(&args.run_id), owner)
        .await
        .with_context(|| format!("reading the state of run {}", args.run_id))?
        .into_inner();
    let refs = if state.param_parts.is_empty() {
        state.params.iter().cloned().collect()
    } else {
        state.param_parts.clone()
    };
    if refs.is_empty() {
        bail!(
            "run {} has completed no step yet: nothing to export",
            args.run_id
        );
    }
    if !state.done {
        eprintln!(
            "run {} is not finished: exporting the model after step {} of {}",
            args.run_id, state.completed_steps, run.steps
        );
    }
    let mut parts = Vec::with_capacity(refs.len());
    for part in &refs {
        let writer = Hotkey::from_bytes(&part.writer)?;
        let artifact = bucket
            .get::<pb::TensorArtifact>(&part.key, Expect::Signer(&writer))
            .await
            .with_context(|| format!("reading parameters {}", part.key))?;
        if artifact.digest().as_bytes().as_slice() != part.digest.as_slice() {
            bail!(
                "parameters {} do not match the run state's digest",
                part.key
            );
        }
        parts.push(artifact.into_inner());
    }
    let workload = locus_workloads::for_run(&run)?;
    let model = workload.export(&parts)?;
    // Integer tables as int32, the layout of `tokens.bin`.
    let ids: Vec<(String, Vec<u8>, usize)> = model
        .ids
        .iter()
        .map(|(name, ids)| {
            let bytes = ids
                .iter()
                .flat_map(|&id| i32::try_from(id).unwrap_or(i32::MAX).to_le_bytes())
                .collect();
            (name.clone(), bytes, ids.len())
        })
        .collect();
    let views = model
        .tensors
        .iter()
        .map(|t| {
            let shape = t.shape.iter().map(|&d| d as usize).collect();
            (
                t.name.as_str(),
                safetensors::Dtype::F32,
                shape,
                t.data.as_slice(),
            )
        })
        .chain(ids.iter().map(|(name, bytes, n)| {
            (
                name.as_str(),
                safetensors::Dtype::I32,
                vec![*n],
                bytes.as_slice(),
            )
        }))
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(dtype, shape, data)?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let count = views.len();
    let metadata = HashMap::from([
        ("run_id".to_string(), run.run_id.clone()),
        ("workload".to_string(), run.workload.clone()),
        (
            "completed_steps".to_string(),
            state.completed_steps.to_string(),
        ),
        ("owner".to_string(), owner_key.ss58()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::io::Write::write_all(&mut file, &bytes)?;
    println!(
        "wrote {} ({} tensors, {} bytes) from run {} after step {}",
        args.out.display(),
        count,
        bytes.len(),
        run.run_id,
        state.completed_steps
    );
    Ok(())
}
