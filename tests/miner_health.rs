//! A miner supervisor's `/healthz` speaks for its workers: a worker that
//! cannot start (here: its metrics port is taken) makes it answer 503 with
//! the worker, its device and its restarts named, and it is `ok` again once
//! the worker runs.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::{System, http_get as get};

/// Two free consecutive loopback ports: the first released (for the
/// supervisor), the second held (worker 0's, taken by "someone else").
fn port_pair() -> (u16, TcpListener) {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(second) = TcpListener::bind(("127.0.0.1", port + 1)) {
            return (port, second);
        }
    }
    panic!("no two consecutive free ports");
}

fn wait_for<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn supervisor_healthz_names_a_worker_whose_metrics_port_is_taken() {
    let sys = System::new(1);
    let (port, taken) = port_pair();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let worker_addr = format!("127.0.0.1:{}", port + 1);
    let mut miner = sys.start_miner(0, &[&format!("--metrics-addr={addr}")]);

    let body = wait_for("a 503 from the supervisor's /healthz", 60, || {
        assert!(miner.is_running(), "minerd exited:\n{}", miner.log_text());
        match get(addr, "/healthz") {
            Some((503, body)) => Some(body),
            _ => None,
        }
    });
    assert!(body.contains("1 of 1 workers failing"), "{body}");
    assert!(body.contains("worker 0 (cpu): "), "{body}");
    assert!(body.contains("restarts in the last 60 s"), "{body}");
    assert!(body.contains("last exit: exit status: 1"), "{body}");
    // The supervisor's metrics still serve, and count the restarts.
    let (status, metrics) = get(addr, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("worker_restarts_total "), "{metrics}");
    // The worker said which address it could not serve on.
    wait_for("the worker's bind error in the log", 30, || {
        miner
            .log_text()
            .contains(&format!(
                "worker cannot serve its /metrics on {worker_addr}"
            ))
            .then_some(())
    });

    // Once the port is free the restarted worker runs, and both answer ok
    // (after the restarts have left the crash window, if there were many).
    drop(taken);
    let worker: SocketAddr = worker_addr.parse().expect("worker addr");
    wait_for("worker 0 serving its own /healthz", 60, || {
        matches!(get(worker, "/healthz"), Some((200, _))).then_some(())
    });
    wait_for("the supervisor's /healthz back to ok", 90, || {
        matches!(get(addr, "/healthz"), Some((200, ref body)) if body == "ok\n").then_some(())
    });
    miner.terminate();
    assert!(miner.wait(60).success(), "{}", miner.log_text());
}
