//! A miner's writes through a grant against the loopback S3 server, with
//! read-only credentials: padded to the signed size, create-only, and a
//! clear error for an object larger than its grant.

use std::time::Duration;

use locus_protocol::bucket::S3Options;
use locus_protocol::grant::RECEIPT_SIZE;
use locus_protocol::presign::Conditions;
use locus_protocol::{Bucket, Expect, Keypair, Verified, pb};
use minerd::access::{Access, AccessError};

fn options(server: &locus_s3_server::S3Server, creds: &locus_s3_server::Credentials) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint.clone()),
        region: Some(locus_s3_server::REGION.into()),
        access_key_id: Some(creds.access_key_id.clone()),
        secret_access_key: Some(creds.secret_access_key.clone()),
        path_style: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn granted_creates_are_padded_create_only_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = locus_s3_server::start(dir.path(), "locus-test")
        .await
        .unwrap();
    let owner = Bucket::open_with("s3://locus-test", 1, &options(&server, &server.writer)).unwrap();
    let miner_bucket =
        Bucket::open_with("s3://locus-test", 1, &options(&server, &server.reader)).unwrap();
    let miner = Keypair::generate();
    let layout = owner.layout().clone();
    let receipt_key = layout.receipt("r", 0, "j", 1);
    let artifact_key = layout.artifact("r", "j", 1);
    let ttl = Duration::from_secs(60);
    let url = |key: &str, size: u64| pb::UrlGrant {
        method: "PUT".into(),
        key: key.to_string(),
        url: owner
            .presign("PUT", key, ttl, Conditions::create_only(size))
            .unwrap()
            .unwrap(),
        size,
    };
    let grant = pb::Grant {
        hotkey: miner.hotkey().to_bytes().to_vec(),
        // Room for a 64-element artifact, not for a 1000-element one.
        urls: vec![url(&receipt_key, RECEIPT_SIZE), url(&artifact_key, 512)],
        ..Default::default()
    };
    let access = Access::Granted(grant);
    let http: locus_protocol::tls::LazyHttpClient = locus_protocol::tls::http_client_builder()
        .no_proxy()
        .build()
        .unwrap()
        .into();

    let receipt = pb::Receipt {
        run_id: "r".into(),
        job_id: "j".into(),
        attempt: 1,
        hotkey: miner.hotkey().to_bytes().to_vec(),
        ..Default::default()
    };
    let digest = access
        .create(&http, &miner_bucket, &receipt_key, &receipt, &miner)
        .await
        .unwrap();
    let stored: Verified<pb::Receipt> = owner
        .get(&receipt_key, Expect::Signer(&miner.hotkey()))
        .await
        .unwrap();
    assert_eq!(stored.size() as u64, RECEIPT_SIZE);
    assert_eq!(stored.digest(), digest);

    // A retry of the same write finds it already there; another receipt on
    // the same key is refused by the store.
    let again = access
        .create(&http, &miner_bucket, &receipt_key, &receipt, &miner)
        .await
        .unwrap();
    assert_eq!(again, digest);
    let changed = pb::Receipt {
        worker: 7,
        ..receipt.clone()
    };
    let err = access
        .create(&http, &miner_bucket, &receipt_key, &changed, &miner)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("412"), "{err}");

    // An output larger than its grant: a named error, nothing written.
    let tensor = |n: usize| locus_protocol::tensor::F32Tensor::new(vec![n], vec![0.5; n]);
    let big = pb::TensorArtifact {
        run_id: "r".into(),
        job_id: "j".into(),
        attempt: 1,
        tensors: vec![tensor(1000).to_pb("x")],
    };
    let err = access
        .create(&http, &miner_bucket, &artifact_key, &big, &miner)
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("512 bytes granted"), "{err}");
    assert!(
        owner
            .get_bytes(&artifact_key)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let small = pb::TensorArtifact {
        tensors: vec![tensor(64).to_pb("x")],
        ..big
    };
    access
        .create(&http, &miner_bucket, &artifact_key, &small, &miner)
        .await
        .unwrap();
    assert_eq!(owner.get_bytes(&artifact_key).await.unwrap().len(), 512);
    server.stop().await;
}
