//! `/metrics` and `/healthz` of the daemons' exporter.

use std::time::Duration;

use locus_observe::metrics::{self, Metrics};
use locus_observe::testkit::{check_prometheus_text, http_get};
use locus_protocol::{Bucket, Keypair, pb};

/// A bucket with `n` objects written to it (so it has request counts).
async fn written_bucket(dir: &std::path::Path, n: usize) -> Bucket {
    let bucket = Bucket::open(dir.to_str().expect("utf-8 path"), 7).expect("bucket");
    let owner = Keypair::generate();
    for i in 0..n {
        let run = format!("run-{i}");
        let state = pb::RunState {
            run_id: run.clone(),
            ..Default::default()
        };
        let key = bucket.layout().run_state(&run);
        bucket.put(&key, &state, &owner).await.expect("put");
    }
    bucket
}

#[tokio::test]
async fn metrics_endpoint_serves_valid_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = written_bucket(dir.path(), 31).await;
    let m = Metrics::new();
    for name in [
        "jobs_published_total",
        "jobs_executed_total",
        "jobs_verified_total",
        "jobs_failed_total",
        "worker_restarts_total",
    ] {
        m.counter(name, &format!("{name} of this daemon")).inc();
    }
    let executed = m.counter("jobs_executed_total", "ignored: already registered");
    let clone = m.clone();
    let task = tokio::spawn(async move {
        for _ in 0..9 {
            clone.counter("jobs_executed_total", "").inc();
        }
    });
    task.await.expect("task");
    m.duration("replay_seconds", "Time spent replaying sampled jobs")
        .observe(Duration::from_millis(1250));
    m.gauge_with(
        "workers_alive",
        "Workers with a fresh heartbeat",
        &[("device", "cuda:0")],
    )
    .set(2.0);
    m.counter_with(
        "odd_total",
        "Label \"escaping\"\nchecked",
        &[("why", "quote \" backslash \\ newline \n")],
    )
    .inc();
    m.track_bucket("main", &bucket);

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let addr = metrics::serve("127.0.0.1:0".parse().expect("addr"), m.clone(), async {
        let _ = rx.await;
    })
    .await
    .expect("serve");
    assert_ne!(addr.port(), 0);

    let (status, content_type, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let samples = check_prometheus_text(&text);
    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing from\n{text}"))
    };
    assert_eq!(executed.get(), 10);
    assert_eq!(value("jobs_executed_total", ""), 10.0);
    assert_eq!(value("worker_restarts_total", ""), 1.0);
    assert_eq!(value("replay_seconds_count", ""), 1.0);
    assert_eq!(value("replay_seconds_sum", ""), 1.25);
    assert_eq!(value("workers_alive", "device=\"cuda:0\""), 2.0);
    assert!(
        value("bucket_requests_total", "op=\"put\"") > 30.0,
        "the writes above"
    );
    assert!(value("bucket_request_seconds_sum", "op=\"put\"") > 0.0);
    assert_eq!(
        value("bucket_request_seconds_count", "op=\"put\""),
        value("bucket_requests_total", "op=\"put\"")
    );
    value("bucket_request_errors_total", "");
    assert!(text.contains("# TYPE jobs_executed_total counter\n"));
    assert!(text.contains("# TYPE replay_seconds summary\n"));
    assert!(
        text.contains("# HELP odd_total Label \"escaping\"\\nchecked\n"),
        "{text}"
    );

    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // A failing health check answers 503 with its reason, read per request.
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = down.clone();
    m.set_health(move || {
        if flag.load(std::sync::atomic::Ordering::Relaxed) {
            Err("worker 0 (cpu): down".into())
        } else {
            Ok(())
        }
    });
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (503, "worker 0 (cpu): down\n"));
    down.store(false, std::sync::atomic::Ordering::Relaxed);
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, _) = http_get(addr, "/other").await;
    assert_eq!(status, 404);

    // Graceful shutdown closes the listener.
    let _ = tx.send(());
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "server still accepting after shutdown");
}

#[tokio::test]
async fn binding_a_busy_port_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let busy = listener.local_addr().expect("addr");
    let err = metrics::serve(busy, Metrics::new(), std::future::pending())
        .await
        .expect_err("port in use");
    assert!(err.to_string().contains(&busy.to_string()), "{err}");
}
