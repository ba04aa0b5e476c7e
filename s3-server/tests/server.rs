//! End-to-end checks of the loopback S3 server with object_store's S3 client
//! and a plain HTTP client for presigned URLs.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use locus_s3_server::{Credentials, S3Server};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

fn client(server: &S3Server, creds: &Credentials) -> AmazonS3 {
    client_for(&server.endpoint, &server.bucket, creds)
}

fn client_for(endpoint: &str, bucket: &str, creds: &Credentials) -> AmazonS3 {
    locus_protocol::tls::install_crypto_provider();
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(&creds.access_key_id)
        .with_secret_access_key(&creds.secret_access_key)
        .build()
        .expect("build S3 client")
}

fn http() -> reqwest::Client {
    locus_protocol::tls::http_client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start() -> (tempfile::TempDir, S3Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = locus_s3_server::start(dir.path(), "locus-test")
        .await
        .unwrap();
    assert!(
        server.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        server.endpoint
    );
    (dir, server)
}

async fn list_all(store: &AmazonS3, prefix: &str) -> object_store::Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn writer_put_get_list_delete() {
    let (dir, server) = start().await;
    let w = client(&server, &server.writer);

    w.put(
        &Path::from("runs/1/a.bin"),
        PutPayload::from_static(b"alpha"),
    )
    .await
    .unwrap();
    w.put(
        &Path::from("runs/1/b.bin"),
        PutPayload::from_static(b"beta"),
    )
    .await
    .unwrap();
    w.put(
        &Path::from("other/c.bin"),
        PutPayload::from_static(b"gamma"),
    )
    .await
    .unwrap();

    let got = w
        .get(&Path::from("runs/1/a.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, Bytes::from_static(b"alpha"));
    let head = w.head(&Path::from("runs/1/b.bin")).await.unwrap();
    assert_eq!(head.size, 4);

    assert_eq!(
        list_all(&w, "runs").await.unwrap(),
        vec!["runs/1/a.bin", "runs/1/b.bin"]
    );
    let listing = w.list_with_delimiter(None).await.unwrap();
    let prefixes: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(prefixes.contains(&"runs".to_string()), "{prefixes:?}");

    // Overwrite is allowed in the default mode.
    w.put(
        &Path::from("runs/1/a.bin"),
        PutPayload::from_static(b"alpha2"),
    )
    .await
    .unwrap();
    let got = w
        .get(&Path::from("runs/1/a.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, Bytes::from_static(b"alpha2"));

    w.delete(&Path::from("runs/1/a.bin")).await.unwrap();
    let err = w.get(&Path::from("runs/1/a.bin")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

    // Objects live under ROOT/BUCKET on disk.
    assert!(dir.path().join("locus-test/runs/1/b.bin").is_file());
    server.stop().await;
}

#[tokio::test]
async fn reader_can_read_but_not_write() {
    let (_dir, server) = start().await;
    let w = client(&server, &server.writer);
    let r = client(&server, &server.reader);
    let path = Path::from("shared/obj.bin");
    w.put(&path, PutPayload::from_static(b"payload"))
        .await
        .unwrap();

    let got = r.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"payload"));
    assert_eq!(r.head(&path).await.unwrap().size, 7);
    assert_eq!(
        list_all(&r, "shared").await.unwrap(),
        vec!["shared/obj.bin"]
    );
    r.list_with_delimiter(Some(&Path::from("shared")))
        .await
        .unwrap();

    let err = r
        .put(
            &Path::from("shared/evil.bin"),
            PutPayload::from_static(b"x"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    let err = r.delete(&path).await.unwrap_err().to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    let err = r
        .copy(&path, &Path::from("shared/copy.bin"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    let err = r
        .put_opts(
            &Path::from("shared/new.bin"),
            PutPayload::from_static(b"x"),
            PutOptions::from(PutMode::Create),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    let err = match r.put_multipart(&Path::from("shared/mp.bin")).await {
        Err(e) => e.to_string(),
        Ok(mut upload) => {
            let e = upload.put_part(PutPayload::from_static(b"x")).await;
            let e = match e {
                Err(e) => e,
                Ok(()) => upload.complete().await.unwrap_err(),
            };
            e.to_string()
        }
    };
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    // Nothing the reader tried changed the bucket.
    assert_eq!(
        list_all(&w, "shared").await.unwrap(),
        vec!["shared/obj.bin"]
    );
    let got = w.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"payload"));
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_anonymous_requests_are_refused() {
    let (_dir, server) = start().await;
    let w = client(&server, &server.writer);
    w.put(&Path::from("k"), PutPayload::from_static(b"v"))
        .await
        .unwrap();

    let stranger = Credentials {
        access_key_id: "LOCUSXSTRANGER000000".into(),
        secret_access_key: "x".repeat(40),
    };
    let err = client(&server, &stranger)
        .get(&Path::from("k"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");

    // The writer's key id with a wrong secret.
    let forged = Credentials {
        access_key_id: server.writer.access_key_id.clone(),
        secret_access_key: "y".repeat(40),
    };
    let err = client(&server, &forged)
        .put(&Path::from("k"), PutPayload::from_static(b"forged"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("403") || err.contains("SignatureDoesNotMatch"),
        "{err}"
    );

    let h = http();
    let url = format!("{}/{}/k", server.endpoint, server.bucket);
    assert_eq!(h.get(&url).send().await.unwrap().status().as_u16(), 403);
    assert_eq!(
        h.put(&url)
            .body("anon")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let got = w
        .get(&Path::from("k"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, Bytes::from_static(b"v"));
    server.stop().await;
}

#[tokio::test]
async fn presigned_urls_are_verified() {
    let (_dir, server) = start().await;
    let w = client(&server, &server.writer);
    let h = http();
    let path = Path::from("uploads/a.bin");

    // PUT then GET with presigned URLs before expiry.
    let put_url = w
        .signed_url(Method::PUT, &path, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(put_url.as_str().starts_with(&server.endpoint), "{put_url}");
    let resp = h
        .put(put_url.as_str())
        .body("via presigned put")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    let got = w.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"via presigned put"));

    let get_url = w
        .signed_url(Method::GET, &path, Duration::from_secs(60))
        .await
        .unwrap();
    let resp = h.get(get_url.as_str()).send().await.unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    assert_eq!(resp.text().await.unwrap(), "via presigned put");

    // A GET URL does not authorise a PUT (the method is signed).
    let resp = h
        .put(get_url.as_str())
        .body("method swap")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // The same signature on another key.
    let moved = put_url
        .as_str()
        .replace("/uploads/a.bin?", "/uploads/b.bin?");
    assert_ne!(moved, put_url.as_str());
    let resp = h.put(&moved).body("moved").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let err = w.head(&Path::from("uploads/b.bin")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

    // A tampered signature.
    let mut url = put_url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "X-Amz-Signature" {
                let mut s = v.into_owned();
                let last = s.pop().unwrap();
                s.push(if last == '0' { '1' } else { '0' });
                s
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    assert_ne!(url, put_url);
    let resp = h.put(url.as_str()).body("tampered").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // A longer claimed lifetime than was signed.
    let stretched = put_url
        .as_str()
        .replace("X-Amz-Expires=60", "X-Amz-Expires=600");
    assert_ne!(stretched, put_url.as_str());
    let resp = h.put(&stretched).body("stretched").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // Expiry.
    let short = w
        .signed_url(Method::PUT, &path, Duration::from_secs(1))
        .await
        .unwrap();
    let short_get = w
        .signed_url(Method::GET, &path, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resp = h.put(short.as_str()).body("too late").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("expired"), "{body}");
    let resp = h.get(short_get.as_str()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    let got = w.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"via presigned put"));
    server.stop().await;
}

#[tokio::test]
async fn presigned_urls_carry_the_signers_rights() {
    let (_dir, server) = start().await;
    let r = client(&server, &server.reader);
    let w = client(&server, &server.writer);
    let h = http();
    w.put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    let get_url = r
        .signed_url(Method::GET, &Path::from("x"), Duration::from_secs(60))
        .await
        .unwrap();
    let resp = h.get(get_url.as_str()).send().await.unwrap();
    assert!(resp.status().is_success(), "{resp:?}");

    let put_url = r
        .signed_url(Method::PUT, &Path::from("y"), Duration::from_secs(60))
        .await
        .unwrap();
    let resp = h.put(put_url.as_str()).body("nope").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().await.unwrap().contains("AccessDenied"));
    server.stop().await;
}

#[tokio::test]
async fn conditional_create() {
    let (_dir, server) = start().await;
    let w = client(&server, &server.writer);
    let path = Path::from("once/obj");
    let create = || PutOptions::from(PutMode::Create);

    w.put_opts(&path, PutPayload::from_static(b"first"), create())
        .await
        .unwrap();
    let err = w
        .put_opts(&path, PutPayload::from_static(b"second"), create())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ),
        "{err:?}"
    );
    let got = w.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"first"));

    // Racing creates of one key: exactly one wins.
    let w = Arc::new(w);
    let race = Path::from("once/race");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let w = Arc::clone(&w);
            let race = race.clone();
            tokio::spawn(async move {
                let body = PutPayload::from(format!("writer-{i}-{}", "x".repeat(64 * 1024)));
                w.put_opts(&race, body, PutOptions::from(PutMode::Create))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(wins, 1);

    // A presigned create-only PUT: the If-None-Match header is signed.
    let h = http();
    let p = Path::from("once/presigned");
    let opts = SignedUrlOptions::default()
        .with_signed_header(http_if_none_match(), HeaderValue::from_static("*"));
    let url = w
        .signed_url_opts(Method::PUT, &p, Duration::from_secs(60), &opts)
        .await
        .unwrap();
    // Without the signed header the signature does not match.
    let resp = h.put(url.as_str()).body("no header").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = h
        .put(url.as_str())
        .header("if-none-match", "*")
        .body("first")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    let resp = h
        .put(url.as_str())
        .header("if-none-match", "*")
        .body("replay")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 412);
    let got = w.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"first"));
    server.stop().await;
}

fn http_if_none_match() -> object_store::signer::HeaderName {
    object_store::signer::HeaderName::from_static("if-none-match")
}

#[tokio::test]
async fn stop_closes_the_listener() {
    let (_dir, server) = start().await;
    let addr = server.addr;
    let w = client(&server, &server.writer);
    w.put(&Path::from("k"), PutPayload::from_static(b"v"))
        .await
        .unwrap();
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // Dropping also shuts the server down.
    let (_dir, server) = start().await;
    let addr = server.addr;
    drop(server);
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed);
}

#[tokio::test]
async fn data_survives_a_restart_with_new_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = locus_s3_server::start(dir.path(), "locus-test")
        .await
        .unwrap();
    client(&s1, &s1.writer)
        .put(&Path::from("persist"), PutPayload::from_static(b"kept"))
        .await
        .unwrap();
    let old_writer = s1.writer.clone();
    s1.stop().await;

    let s2 = locus_s3_server::start(dir.path(), "locus-test")
        .await
        .unwrap();
    assert_ne!(s2.writer, old_writer);
    let got = client(&s2, &s2.reader)
        .get(&Path::from("persist"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, Bytes::from_static(b"kept"));
    let err = client(&s2, &old_writer)
        .get(&Path::from("persist"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");
    s2.stop().await;
}

#[tokio::test]
async fn binary_prints_credentials_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let creds_path = dir.path().join("s3.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_locus-s3-server"))
        .arg("--root")
        .arg(dir.path().join("data"))
        .args(["--bucket", "locus-bin", "--port", "0", "--credentials-file"])
        .arg(&creds_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    assert_eq!(v, on_disk);
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let endpoint = v["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(v["bucket"], "locus-bin");
    let creds = |role: &str| Credentials {
        access_key_id: v[role]["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: v[role]["secret_access_key"].as_str().unwrap().to_owned(),
    };
    let w = client_for(endpoint, "locus-bin", &creds("writer"));
    let r = client_for(endpoint, "locus-bin", &creds("reader"));
    w.put(&Path::from("hello"), PutPayload::from_static(b"world"))
        .await
        .unwrap();
    let got = r
        .get(&Path::from("hello"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, Bytes::from_static(b"world"));
    assert!(
        r.put(&Path::from("hello"), PutPayload::from_static(b"no"))
            .await
            .is_err()
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
