//! The live discovery UI: a single page plus a JSON API over the
//! [`DiscoveryIndex`](crate::index::DiscoveryIndex), refreshed in the
//! background. The page polls `/api/overview` every two seconds.
//!
//! | route | content |
//! | --- | --- |
//! | `GET /` | the page (HTML, CSS and JS in one file, no external assets) |
//! | `GET /api/overview` | stats, workers, runs, latest receipts, latest score window, latest rejections |
//! | `GET /api/workers` | workers with heartbeat age |
//! | `GET /api/auditors` | auditors verdicts rest on, and those a validator dropped (with its reason) |
//! | `GET /api/runs` | runs with per-step progress and eval loss |
//! | `GET /api/receipts?hotkey=&run=&limit=` | receipts with their verdicts, newest first |
//! | `GET /api/scores?window=` | a score window (latest by default) with its chain weights |
//! | `GET /api/hotkey/{ss58}?window=` | the receipts and verdicts behind one hotkey's score |
//! | `GET /api/rejected` | every rejected object with its reason |
//! | `GET /metrics`, `GET /healthz` | the UI's own metrics (bucket requests, refresh time) |
//!
//! Bucket traffic does not depend on how many pages are open: only the
//! background refresh reads the bucket.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Hotkey};
use tokio::sync::watch;
use tracing::{info, warn};
use warp::Filter as _;

use locus_observe::http;
use locus_observe::metrics::{self, Metrics};

use crate::Error;
use crate::index::{DiscoveryIndex, IndexConfig, Snapshot};
use crate::views::Stats;

const PAGE: &str = include_str!("../static/index.html");

/// Settings of [`serve_ui_with`].
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// Pause between background refreshes of the index.
    pub refresh_every: Duration,
    pub index: IndexConfig,
    /// Receipts and rejections included in `/api/overview`.
    pub overview_receipts: usize,
    pub overview_rejected: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            refresh_every: Duration::from_secs(2),
            index: IndexConfig::default(),
            overview_receipts: 100,
            overview_rejected: 100,
        }
    }
}

#[derive(Default)]
struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    stats: RwLock<Stats>,
    ready: RwLock<bool>,
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn stats(&self) -> Stats {
        self.stats
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// Serves the discovery UI for `bucket` on `addr` (port 0 picks a free port)
/// until `shutdown` completes, trusting `owner` as the signer of runs, jobs,
/// assignments and run states. Returns the bound address as soon as the
/// listener is up; the index fills in the background.
pub async fn serve_ui(
    bucket: Bucket,
    owner: Hotkey,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, Error> {
    serve_ui_with(UiConfig::default(), bucket, owner, addr, shutdown).await
}

/// [`serve_ui`] with explicit settings.
pub async fn serve_ui_with(
    config: UiConfig,
    bucket: Bucket,
    owner: Hotkey,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, Error> {
    // One stop signal for the server and the refresh loop.
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Metrics::new();
    metrics.track_bucket("discovery", &bucket);
    let shared = Arc::new(Shared::default());
    let mut stop = stop_rx.clone();
    let bound = http::serve(
        addr,
        routes(shared.clone(), metrics.clone(), config.clone()),
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
        "discovery UI",
    )
    .await?;
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tokio::spawn(refresh_loop(
        DiscoveryIndex::new(bucket, owner, config.index),
        config.refresh_every,
        shared,
        metrics,
        stop_rx,
    ));
    info!(addr = %bound, "discovery UI listening");
    Ok(bound)
}

/// Opens `url` in the desktop's browser (`xdg-open`, or `open` on macOS).
pub fn open_in_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

async fn refresh_loop(
    mut index: DiscoveryIndex,
    every: Duration,
    shared: Arc<Shared>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let refresh_time = metrics.duration(
        "discovery_refresh_seconds",
        "Time spent refreshing the discovery index",
    );
    let refresh_errors = metrics.counter(
        "discovery_refresh_errors_total",
        "Discovery index refreshes that failed",
    );
    let fetched = metrics.counter(
        "discovery_objects_fetched_total",
        "Bucket objects read by the discovery index",
    );
    let rejected = metrics.gauge(
        "discovery_rejected_objects",
        "Objects currently rejected by the discovery UI",
    );
    let mut first = true;
    loop {
        let result = {
            let _timer = refresh_time.start_timer();
            index.refresh().await
        };
        let changed = match result {
            Ok(report) => {
                fetched.inc_by(report.fetched);
                report.changed
            }
            Err(e) => {
                refresh_errors.inc();
                warn!(error = %e, "discovery refresh failed; retrying");
                false
            }
        };
        if changed || first {
            let snapshot = index.snapshot();
            rejected.set(snapshot.rejected.len() as f64);
            if let Ok(mut slot) = shared.snapshot.write() {
                *slot = Arc::new(snapshot);
            }
        }
        if let Ok(mut stats) = shared.stats.write() {
            *stats = index.snapshot_stats();
        }
        if first {
            first = false;
            if let Ok(mut ready) = shared.ready.write() {
                *ready = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> warp::reply::Response {
    use warp::Reply as _;
    warp::reply::with_header(warp::reply::json(value), "cache-control", "no-store").into_response()
}

type Query = HashMap<String, String>;

fn limit(q: &Query, default: usize) -> usize {
    q.get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(default)
        .min(100_000)
}

fn routes(
    shared: Arc<Shared>,
    metrics: Metrics,
    config: UiConfig,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
+ Clone
+ Send
+ Sync
+ 'static {
    use warp::Reply as _;
    let with = move || {
        let shared = shared.clone();
        warp::any().map(move || shared.clone())
    };
    let page = warp::path::end().map(|| {
        warp::reply::with_header(warp::reply::html(PAGE), "cache-control", "no-store")
            .into_response()
    });
    let overview = warp::path!("api" / "overview").and(with()).map({
        let config = config.clone();
        move |s: Arc<Shared>| {
            let mut o = s.snapshot().overview(
                unix_ms(),
                config.overview_receipts,
                config.overview_rejected,
            );
            o.stats = s.stats();
            json(&o)
        }
    });
    let workers = warp::path!("api" / "workers")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.snapshot().workers_at(unix_ms())));
    let runs = warp::path!("api" / "runs")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.snapshot().runs_at(unix_ms())));
    let receipts = warp::path!("api" / "receipts")
        .and(with())
        .and(warp::query::<Query>())
        .map(|s: Arc<Shared>, q: Query| {
            json(&s.snapshot().receipts_of(
                q.get("hotkey").map(String::as_str),
                q.get("run").map(String::as_str),
                limit(&q, 1000),
            ))
        });
    let scores = warp::path!("api" / "scores")
        .and(with())
        .and(warp::query::<Query>())
        .map(|s: Arc<Shared>, q: Query| {
            json(
                &s.snapshot()
                    .score_window(q.get("window").map(String::as_str)),
            )
        });
    let hotkey = warp::path!("api" / "hotkey" / String)
        .and(with())
        .and(warp::query::<Query>())
        .map(|hotkey: String, s: Arc<Shared>, q: Query| {
            json(&s.snapshot().hotkey_detail(
                &hotkey,
                q.get("window").map(String::as_str),
                unix_ms(),
            ))
        });
    let auditors = warp::path!("api" / "auditors")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.snapshot().auditors));
    let rejected = warp::path!("api" / "rejected")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.snapshot().rejected));
    let stats = warp::path!("api" / "stats")
        .and(with())
        .map(|s: Arc<Shared>| json(&s.stats()));
    let metrics_route = warp::path!("metrics").map(move || {
        warp::reply::with_header(metrics.render(), "content-type", metrics::CONTENT_TYPE)
            .into_response()
    });
    let health = warp::path!("healthz").and(with()).map(|s: Arc<Shared>| {
        let ready = s.ready.read().map(|r| *r).unwrap_or(false);
        if ready {
            "ok\n".into_response()
        } else {
            warp::reply::with_status("indexing\n", warp::http::StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    });
    warp::get()
        .and(
            page.or(overview)
                .unify()
                .or(workers)
                .unify()
                .or(runs)
                .unify()
                .or(receipts)
                .unify()
                .or(scores)
                .unify()
                .or(hotkey)
                .unify()
                .or(rejected)
                .unify()
                .or(auditors)
                .unify()
                .or(stats)
                .unify()
                .or(metrics_route)
                .unify()
                .or(health)
                .unify(),
        )
        .or(http::not_found())
        .unify()
}
