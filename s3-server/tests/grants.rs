//! Grant URLs made by `locus_protocol`'s presigner against the loopback
//! server: the conditions a grant signs (`if-none-match: *`, an exact
//! `content-length`) are enforced by the store's signature check itself.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use locus_protocol::bucket::S3Options;
use locus_protocol::envelope::{pad_to, seal};
use locus_protocol::presign::Conditions;
use locus_protocol::{Bucket, Expect, Keypair, pb};
use locus_s3_server::S3Server;

const TTL: Duration = Duration::from_secs(60);

async fn start() -> (tempfile::TempDir, S3Server, Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let server = locus_s3_server::start(dir.path(), "locus-test")
        .await
        .unwrap();
    let owner = Bucket::open_with(
        "s3://locus-test",
        1,
        &S3Options {
            endpoint: Some(server.endpoint.clone()),
            region: Some(locus_s3_server::REGION.into()),
            access_key_id: Some(server.writer.access_key_id.clone()),
            secret_access_key: Some(server.writer.secret_access_key.clone()),
            path_style: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(owner.can_presign());
    (dir, server, owner)
}

fn http() -> reqwest::Client {
    locus_protocol::tls::http_client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A sealed receipt for `key`, padded to `size`.
fn receipt(key: &str, signer: &Keypair, job: &str, size: u64) -> Vec<u8> {
    let record = pb::Receipt {
        run_id: "r".into(),
        job_id: job.into(),
        attempt: 1,
        ..Default::default()
    };
    pad_to(seal(&record, key, signer).bytes, size as usize).unwrap()
}

async fn put(url: &str, body: Vec<u8>, create_only: bool) -> (u16, String) {
    let mut request = http().put(url).body(body);
    if create_only {
        request = request.header("if-none-match", "*");
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn refused_for_signature((status, body): (u16, String)) {
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
}

#[tokio::test]
async fn create_only_sized_url() {
    let (_dir, _server, owner) = start().await;
    let miner = Keypair::generate();
    let key = "v1/netuid=1/runs/r/receipts/s000000/j/a001.pb";
    const N: u64 = 4096;
    let url = owner
        .presign("PUT", key, TTL, Conditions::create_only(N))
        .unwrap()
        .unwrap();
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bhost%3Bif-none-match"),
        "{url}"
    );
    let first = receipt(key, &miner, "j", N);

    // (b) Without If-None-Match the signature does not match, even on a
    // key that does not exist yet.
    refused_for_signature(put(&url, first.clone(), false).await);
    assert!(owner.get_bytes(key).await.unwrap_err().is_not_found());

    // (c) Any other length is refused before anything is written.
    for size in [N - 1, N + 1, 2 * N] {
        let other = receipt(key, &miner, "j", size);
        refused_for_signature(put(&url, other, true).await);
    }
    assert!(owner.get_bytes(key).await.unwrap_err().is_not_found());

    // (a) The request the grant describes succeeds, and the padded object
    // opens and verifies.
    let (status, body) = put(&url, first.clone(), true).await;
    assert_eq!(status, 200, "{body}");
    let got: locus_protocol::Verified<pb::Receipt> = owner
        .get(key, Expect::Signer(&miner.hotkey()))
        .await
        .unwrap();
    assert_eq!(got.size() as u64, N);
    assert_eq!(got.job_id, "j");

    // (b) Overwriting is refused: with the header by the precondition,
    // without it by the signature.
    let second = receipt(key, &miner, "changed", N);
    let (status, body) = put(&url, second.clone(), true).await;
    assert_eq!(status, 412, "{body}");
    refused_for_signature(put(&url, second, false).await);
    assert_eq!(
        owner.get_bytes(key).await.unwrap().as_ref(),
        first.as_slice()
    );
}

/// Chunked transfer encoding sends no `content-length` at all: the signed
/// header is missing and the request is refused.
#[tokio::test]
async fn chunked_upload_cannot_skip_the_signed_length() {
    let (_dir, server, owner) = start().await;
    let key = "v1/netuid=1/runs/r/artifacts/j/a001.pb";
    let url = owner
        .presign("PUT", key, TTL, Conditions::create_only(64))
        .unwrap()
        .unwrap();
    let path = url.strip_prefix(&server.endpoint).unwrap().to_string();
    let addr = server.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let chunk = vec![b'x'; 1000];
        let mut request = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nIf-None-Match: *\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
            chunk.len()
        )
        .into_bytes();
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        // The server may answer before reading the body.
        let _ = stream.write_all(&request);
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("SignatureDoesNotMatch"), "{response}");
    assert!(owner.get_bytes(key).await.unwrap_err().is_not_found());
}

/// (d) A heartbeat URL signs the size but not `if-none-match`: the same
/// URL rewrites the object at exactly its size, never with a larger body.
#[tokio::test]
async fn heartbeat_url_rewrites_at_its_size_only() {
    let (_dir, _server, owner) = start().await;
    let miner = Keypair::generate();
    let key = "v1/netuid=1/heartbeats/x/w000.pb";
    const N: u64 = 1024;
    let url = owner
        .presign("PUT", key, TTL, Conditions::exact_size(N))
        .unwrap()
        .unwrap();
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bhost&"),
        "{url}"
    );
    let beat = |n: u64, size: u64| {
        let record = pb::WorkerHeartbeat {
            hotkey: miner.hotkey().to_bytes().to_vec(),
            jobs_done: n,
            ..Default::default()
        };
        pad_to(seal(&record, key, &miner).bytes, size as usize).unwrap()
    };
    for n in 0..3 {
        let (status, body) = put(&url, beat(n, N), false).await;
        assert_eq!(status, 200, "{body}");
        let got: locus_protocol::Verified<pb::WorkerHeartbeat> = owner
            .get(key, Expect::Signer(&miner.hotkey()))
            .await
            .unwrap();
        assert_eq!(got.jobs_done, n);
    }
    refused_for_signature(put(&url, beat(9, N + 1), false).await);
    refused_for_signature(put(&url, beat(9, 64 * 1024 * 1024), false).await);
    refused_for_signature(put(&url, beat(9, N - 1), false).await);
    let got: locus_protocol::Verified<pb::WorkerHeartbeat> = owner
        .get(key, Expect::Signer(&miner.hotkey()))
        .await
        .unwrap();
    assert_eq!(got.jobs_done, 2);
}

/// GET URLs sign only `host`, and a GET URL carries no PUT right.
#[tokio::test]
async fn get_urls() {
    let (_dir, _server, owner) = start().await;
    let miner = Keypair::generate();
    let key = "v1/netuid=1/runs/r/artifacts/init/a000.pb";
    owner
        .put(key, &pb::RunState::default(), &miner)
        .await
        .unwrap();
    let url = owner
        .presign("GET", key, TTL, Conditions::NONE)
        .unwrap()
        .unwrap();
    assert!(url.contains("X-Amz-SignedHeaders=host&"), "{url}");
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        owner.get_bytes(key).await.unwrap()
    );
    assert_eq!(put(&url, b"x".to_vec(), true).await.0, 403);
    assert!(
        owner
            .presign("GET", key, TTL, Conditions::exact_size(1))
            .is_err()
    );
}
