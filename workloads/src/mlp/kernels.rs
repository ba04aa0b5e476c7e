//! The MLP workload's Burn kernels: what each job kind computes.

use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use locus_protocol::pb::{self, JobKind, MlpConfig};
use locus_protocol::tensor::{F32Tensor, TensorError};

use crate::WorkloadError;
use crate::rng::SplitMix64;

/// Parameter tensors, in artifact order.
pub const PARAMS: [&str; 4] = ["w1", "b1", "w2", "b2"];

fn dims(cfg: &MlpConfig) -> usize {
    cfg.width as usize
}

/// Rows of the step batch: one micro-batch of `batch_size` rows per (m, r).
pub fn step_rows(cfg: &MlpConfig) -> usize {
    (cfg.micro_batches * cfg.replicas * cfg.batch_size) as usize
}

/// Parameters drawn for one purpose (`label`): weights scaled by 1/sqrt(D),
/// small biases.
fn random_params(cfg: &MlpConfig, label: &str) -> Vec<(String, F32Tensor)> {
    let d = dims(cfg);
    let mut rng = SplitMix64::derive(cfg.seed, label, &[]);
    let scale = 1.0 / (d as f64).sqrt();
    PARAMS
        .iter()
        .map(|name| {
            let tensor = if name.starts_with('w') {
                F32Tensor::new(vec![d, d], rng.normals(d * d, scale))
            } else {
                F32Tensor::new(vec![d], rng.normals(d, 0.1))
            };
            (name.to_string(), tensor)
        })
        .collect()
}

/// The run's initial artifact, written and signed by the owner: student
/// parameters and zeroed outer momentum.
pub fn initial_artifact(cfg: &MlpConfig) -> Vec<pb::Tensor> {
    let params = random_params(cfg, "student-init");
    let mut tensors: Vec<pb::Tensor> = params.iter().map(|(n, t)| t.to_pb(n)).collect();
    for (name, t) in &params {
        let zeros = F32Tensor::new(t.shape.clone(), vec![0.0; t.values.len()]);
        tensors.push(zeros.to_pb(&format!("m.{name}")));
    }
    tensors
}

/// The fixed teacher the student imitates.
fn teacher(cfg: &MlpConfig) -> Vec<(String, F32Tensor)> {
    random_params(cfg, "teacher")
}

fn inputs_for_step(cfg: &MlpConfig, step: u32) -> F32Tensor {
    let rows = step_rows(cfg);
    let d = dims(cfg);
    let mut rng = SplitMix64::derive(cfg.seed, "train-batch", &[step as u64]);
    F32Tensor::new(vec![rows, d], rng.normals(rows * d, 1.0))
}

fn eval_inputs(cfg: &MlpConfig) -> F32Tensor {
    let rows = cfg.eval_batch as usize;
    let d = dims(cfg);
    let mut rng = SplitMix64::derive(cfg.seed, "eval-batch", &[]);
    F32Tensor::new(vec![rows, d], rng.normals(rows * d, 1.0))
}

/// Student/teacher parameters as Burn tensors.
struct Mlp<B: Backend> {
    w1: Tensor<B, 2>,
    b1: Tensor<B, 1>,
    w2: Tensor<B, 2>,
    b2: Tensor<B, 1>,
}

impl<B: Backend> Mlp<B> {
    fn from_named(
        named: &[(String, F32Tensor)],
        device: &B::Device,
    ) -> Result<Self, WorkloadError> {
        let get = |n: &str| {
            named
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| WorkloadError::Input(TensorError::Missing(n.into())))
        };
        Ok(Mlp {
            w1: tensor2(&get("w1")?, device)?,
            b1: tensor1(&get("b1")?, device)?,
            w2: tensor2(&get("w2")?, device)?,
            b2: tensor1(&get("b2")?, device)?,
        })
    }

    fn from_artifact(
        artifact: &pb::TensorArtifact,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, WorkloadError> {
        let named = PARAMS
            .iter()
            .map(|n| Ok((n.to_string(), artifact.tensor(&format!("{prefix}{n}"))?)))
            .collect::<Result<Vec<_>, TensorError>>()?;
        Self::from_named(&named, device)
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = relu(x.matmul(self.w1.clone()) + self.b1.clone().unsqueeze::<2>());
        h.matmul(self.w2.clone()) + self.b2.clone().unsqueeze::<2>()
    }

    fn into_named(self, prefix: &str) -> Result<Vec<pb::Tensor>, WorkloadError> {
        Ok(vec![
            to_pb(&format!("{prefix}w1"), self.w1)?,
            to_pb(&format!("{prefix}b1"), self.b1)?,
            to_pb(&format!("{prefix}w2"), self.w2)?,
            to_pb(&format!("{prefix}b2"), self.b2)?,
        ])
    }
}

fn check_shape(t: &F32Tensor, expected: &[usize], name: &str) -> Result<(), WorkloadError> {
    if t.shape != expected {
        return Err(WorkloadError::Input(TensorError::Invalid {
            name: name.to_string(),
            reason: format!("shape {:?}, expected {:?}", t.shape, expected),
        }));
    }
    Ok(())
}

fn tensor2<B: Backend>(t: &F32Tensor, device: &B::Device) -> Result<Tensor<B, 2>, WorkloadError> {
    if t.shape.len() != 2 {
        return Err(WorkloadError::Input(TensorError::Invalid {
            name: "matrix".into(),
            reason: format!("shape {:?} is not 2-D", t.shape),
        }));
    }
    Ok(Tensor::from_data(
        TensorData::new(t.values.clone(), t.shape.clone()),
        device,
    ))
}

fn tensor1<B: Backend>(t: &F32Tensor, device: &B::Device) -> Result<Tensor<B, 1>, WorkloadError> {
    if t.shape.len() != 1 {
        return Err(WorkloadError::Input(TensorError::Invalid {
            name: "vector".into(),
            reason: format!("shape {:?} is not 1-D", t.shape),
        }));
    }
    Ok(Tensor::from_data(
        TensorData::new(t.values.clone(), t.shape.clone()),
        device,
    ))
}

fn to_pb<B: Backend, const D: usize>(
    name: &str,
    t: Tensor<B, D>,
) -> Result<pb::Tensor, WorkloadError> {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| WorkloadError::Backend(format!("{e:?}")))?;
    Ok(F32Tensor::new(shape, values).to_pb(name))
}

fn mse<B: Backend>(pred: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 1> {
    let err = pred - target;
    (err.clone() * err).mean()
}

/// Names and shapes of the tensors a job of `kind` outputs.
pub fn output_spec(cfg: &MlpConfig, kind: JobKind) -> Vec<(String, Vec<usize>)> {
    let d = dims(cfg);
    let params = |prefix: &str| -> Vec<(String, Vec<usize>)> {
        PARAMS
            .iter()
            .map(|n| {
                let shape = if n.starts_with('w') {
                    vec![d, d]
                } else {
                    vec![d]
                };
                (format!("{prefix}{n}"), shape)
            })
            .collect()
    };
    let scalar = |n: &str| (n.to_string(), vec![1]);
    match kind {
        JobKind::Forward => vec![
            ("x".into(), vec![step_rows(cfg), d]),
            ("y".into(), vec![step_rows(cfg), d]),
            scalar("train_loss"),
        ],
        JobKind::Inner => {
            let mut out = params("delta.");
            out.push(scalar("loss"));
            out
        }
        JobKind::Reduce => params("delta."),
        JobKind::Outer => {
            let mut out = params("");
            out.extend(params("m."));
            out
        }
        JobKind::Eval => vec![scalar("eval_loss")],
        JobKind::Unspecified | JobKind::Backward => Vec::new(),
    }
}

/// Executes one job of this workload and returns its output tensors.
/// `inputs` are the artifacts the manifest lists, in manifest order.
pub fn execute<B: AutodiffBackend>(
    cfg: &MlpConfig,
    job: &pb::JobManifest,
    inputs: &[&pb::TensorArtifact],
    device: &B::Device,
) -> Result<Vec<pb::Tensor>, WorkloadError> {
    let d = dims(cfg);
    let expect_inputs = |n: usize| {
        if inputs.len() == n {
            Ok(())
        } else {
            Err(WorkloadError::Input(TensorError::Invalid {
                name: job.job_id.clone(),
                reason: format!("{} inputs, expected {n}", inputs.len()),
            }))
        }
    };
    let kind = JobKind::try_from(job.kind).map_err(|_| WorkloadError::UnknownKind(job.kind))?;
    match kind {
        JobKind::Forward => {
            expect_inputs(1)?;
            let student = Mlp::<B::InnerBackend>::from_artifact(inputs[0], "", device)?;
            let teacher = Mlp::<B::InnerBackend>::from_named(&teacher(cfg), device)?;
            let x = tensor2::<B::InnerBackend>(&inputs_for_step(cfg, job.step), device)?;
            let y = teacher.forward(x.clone());
            let loss = mse(student.forward(x.clone()), y.clone());
            Ok(vec![
                to_pb("x", x)?,
                to_pb("y", y)?,
                to_pb("train_loss", loss)?,
            ])
        }
        JobKind::Inner => {
            expect_inputs(2)?;
            let (m, r) = (job.micro_batch, job.replica);
            if m >= cfg.micro_batches || r >= cfg.replicas {
                return Err(WorkloadError::Config(format!(
                    "micro-batch {m} / replica {r} out of range"
                )));
            }
            let rows = cfg.batch_size as usize;
            let start = ((m * cfg.replicas + r) as usize) * rows;
            let x_all = inputs[1].tensor("x")?;
            let y_all = inputs[1].tensor("y")?;
            check_shape(&x_all, &[step_rows(cfg), d], "x")?;
            check_shape(&y_all, &[step_rows(cfg), d], "y")?;
            let slice = |t: &F32Tensor| {
                F32Tensor::new(
                    vec![rows, d],
                    t.values[start * d..(start + rows) * d].to_vec(),
                )
            };
            let x = tensor2::<B>(&slice(&x_all), device)?;
            let y = tensor2::<B>(&slice(&y_all), device)?;
            let start_params = Mlp::<B::InnerBackend>::from_artifact(inputs[0], "", device)?;
            let mut p = Mlp::<B> {
                w1: Tensor::from_inner(start_params.w1.clone()),
                b1: Tensor::from_inner(start_params.b1.clone()),
                w2: Tensor::from_inner(start_params.w2.clone()),
                b2: Tensor::from_inner(start_params.b2.clone()),
            };
            let mut first_loss = None;
            for _ in 0..cfg.inner_steps {
                let tracked = Mlp::<B> {
                    w1: p.w1.clone().require_grad(),
                    b1: p.b1.clone().require_grad(),
                    w2: p.w2.clone().require_grad(),
                    b2: p.b2.clone().require_grad(),
                };
                let loss = mse(tracked.forward(x.clone()), y.clone());
                let grads = loss.backward();
                if first_loss.is_none() {
                    first_loss = Some(loss.clone().inner());
                }
                let lr = cfg.inner_lr;
                let step2 = |t: &Tensor<B, 2>| -> Result<Tensor<B, 2>, WorkloadError> {
                    let g = t
                        .grad(&grads)
                        .ok_or_else(|| WorkloadError::Backend("missing gradient".into()))?;
                    Ok(Tensor::from_inner(t.clone().inner() - g.mul_scalar(lr)))
                };
                let step1 = |t: &Tensor<B, 1>| -> Result<Tensor<B, 1>, WorkloadError> {
                    let g = t
                        .grad(&grads)
                        .ok_or_else(|| WorkloadError::Backend("missing gradient".into()))?;
                    Ok(Tensor::from_inner(t.clone().inner() - g.mul_scalar(lr)))
                };
                p = Mlp {
                    w1: step2(&tracked.w1)?,
                    b1: step1(&tracked.b1)?,
                    w2: step2(&tracked.w2)?,
                    b2: step1(&tracked.b2)?,
                };
            }
            let delta = Mlp::<B::InnerBackend> {
                w1: p.w1.inner() - start_params.w1,
                b1: p.b1.inner() - start_params.b1,
                w2: p.w2.inner() - start_params.w2,
                b2: p.b2.inner() - start_params.b2,
            };
            let mut out = delta.into_named("delta.")?;
            let loss =
                first_loss.ok_or_else(|| WorkloadError::Backend("no inner step ran".into()))?;
            out.push(to_pb("loss", loss)?);
            Ok(out)
        }
        JobKind::Reduce => {
            let expected = (cfg.micro_batches * cfg.replicas) as usize;
            expect_inputs(expected)?;
            let mut sum: Option<Mlp<B::InnerBackend>> = None;
            for input in inputs {
                let delta = Mlp::<B::InnerBackend>::from_artifact(input, "delta.", device)?;
                sum = Some(match sum {
                    None => delta,
                    Some(acc) => Mlp {
                        w1: acc.w1 + delta.w1,
                        b1: acc.b1 + delta.b1,
                        w2: acc.w2 + delta.w2,
                        b2: acc.b2 + delta.b2,
                    },
                });
            }
            let sum = sum.ok_or_else(|| WorkloadError::Config("reduce of zero inputs".into()))?;
            let n = expected as f32;
            let mean = Mlp {
                w1: sum.w1.div_scalar(n),
                b1: sum.b1.div_scalar(n),
                w2: sum.w2.div_scalar(n),
                b2: sum.b2.div_scalar(n),
            };
            mean.into_named("delta.")
        }
        JobKind::Outer => {
            expect_inputs(2)?;
            let params = Mlp::<B::InnerBackend>::from_artifact(inputs[0], "", device)?;
            let momentum = Mlp::<B::InnerBackend>::from_artifact(inputs[0], "m.", device)?;
            let delta = Mlp::<B::InnerBackend>::from_artifact(inputs[1], "delta.", device)?;
            let (mu, lr) = (cfg.outer_momentum, cfg.outer_lr);
            let m = Mlp {
                w1: momentum.w1.mul_scalar(mu) + delta.w1,
                b1: momentum.b1.mul_scalar(mu) + delta.b1,
                w2: momentum.w2.mul_scalar(mu) + delta.w2,
                b2: momentum.b2.mul_scalar(mu) + delta.b2,
            };
            let next = Mlp {
                w1: params.w1 + m.w1.clone().mul_scalar(lr),
                b1: params.b1 + m.b1.clone().mul_scalar(lr),
                w2: params.w2 + m.w2.clone().mul_scalar(lr),
                b2: params.b2 + m.b2.clone().mul_scalar(lr),
            };
            let mut out = next.into_named("")?;
            out.extend(m.into_named("m.")?);
            Ok(out)
        }
        JobKind::Eval => {
            expect_inputs(1)?;
            let student = Mlp::<B::InnerBackend>::from_artifact(inputs[0], "", device)?;
            let teacher = Mlp::<B::InnerBackend>::from_named(&teacher(cfg), device)?;
            let x = tensor2::<B::InnerBackend>(&eval_inputs(cfg), device)?;
            let loss = mse(student.forward(x.clone()), teacher.forward(x));
            Ok(vec![to_pb("eval_loss", loss)?])
        }
        JobKind::Unspecified | JobKind::Backward => Err(WorkloadError::UnknownKind(job.kind)),
    }
}
