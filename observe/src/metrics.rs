//! A small Prometheus registry for the daemons.
//!
//! ```no_run
//! # async fn example() -> Result<(), locus_observe::Error> {
//! use locus_observe::metrics::{self, Metrics};
//! let metrics = Metrics::new();
//! let executed = metrics.counter("jobs_executed_total", "Jobs this miner executed");
//! executed.inc();
//! metrics
//!     .duration("replay_seconds", "Time spent replaying sampled jobs")
//!     .observe(std::time::Duration::from_millis(250));
//! let addr = metrics::serve("127.0.0.1:0".parse().unwrap(), metrics.clone(), std::future::pending()).await?;
//! # let _ = addr;
//! # Ok(())
//! # }
//! ```
//!
//! Registering a metric returns a cheap handle (an `Arc` around an atomic);
//! registering the same name and labels again returns the same series, so
//! callers may look metrics up by name wherever that is convenient. The
//! registry renders the Prometheus text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use locus_protocol::Bucket;
use warp::{Filter as _, Reply as _};

use crate::{Error, http};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Clone, Debug)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Summary(DurationMetric),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    /// Keyed by the rendered label set (`a="x",b="y"`, sorted by name).
    series: BTreeMap<String, Series>,
}

#[derive(Debug, Default)]
struct Registry {
    families: BTreeMap<String, Family>,
    buckets: Vec<(String, Bucket)>,
    health: Option<HealthCheck>,
}

/// What `/healthz` reports: `Ok` answers 200 `ok`, `Err(text)` answers 503
/// with the text (which should say what is wrong).
type HealthFn = dyn Fn() -> Result<(), String> + Send + Sync;

#[derive(Clone)]
struct HealthCheck(Arc<HealthFn>);

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthCheck")
    }
}

/// A registry of metrics. Cheap to clone; clones share the registry.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Registry>>,
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as `f64`).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, delta: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + delta).to_bits())
            });
    }

    pub fn inc(&self) {
        self.add(1.0);
    }

    pub fn dec(&self) {
        self.add(-1.0);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A summary without quantiles: how many observations and their total in
/// seconds (`name_count`, `name_sum`), enough for rates and mean durations.
#[derive(Clone, Debug, Default)]
pub struct DurationMetric(Arc<DurationInner>);

#[derive(Debug, Default)]
struct DurationInner {
    count: AtomicU64,
    micros: AtomicU64,
}

impl DurationMetric {
    pub fn observe(&self, elapsed: Duration) {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observes the time from now until the returned guard is dropped.
    pub fn start_timer(&self) -> Timer {
        Timer {
            metric: self.clone(),
            started: Instant::now(),
        }
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn sum_seconds(&self) -> f64 {
        self.0.micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Records its lifetime into a [`DurationMetric`] when dropped.
#[derive(Debug)]
pub struct Timer {
    metric: DurationMetric,
    started: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.metric.observe(self.started.elapsed());
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every mutation is a single insert), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        let name = sanitize_name(name, true);
        let labels = render_labels(labels);
        let mut reg = self.lock();
        let family = reg.families.entry(name.clone()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            tracing::warn!(
                metric = %name,
                registered = family.kind.as_str(),
                requested = kind.as_str(),
                "metric registered with another type; the new handle is not exported"
            );
            return make();
        }
        family.series.entry(labels).or_insert_with(make).clone()
    }

    /// The counter `name` without labels (registered on first use).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// The counter `name` with these labels (registered on first use).
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, Kind::Counter, labels, || {
            Series::Counter(Counter::default())
        }) {
            Series::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    pub fn gauge_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, Kind::Gauge, labels, || {
            Series::Gauge(Gauge::default())
        }) {
            Series::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// A duration summary (`name_count`, `name_sum` in seconds). By
    /// convention `name` ends in `_seconds`.
    pub fn duration(&self, name: &str, help: &str) -> DurationMetric {
        self.duration_with(name, help, &[])
    }

    pub fn duration_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> DurationMetric {
        match self.series(name, help, Kind::Summary, labels, || {
            Series::Summary(DurationMetric::default())
        }) {
            Series::Summary(d) => d,
            _ => DurationMetric::default(),
        }
    }

    /// Exports `bucket`'s request counts at every scrape:
    /// `bucket_requests_total{op}`, `bucket_request_errors_total` and the
    /// summary `bucket_request_seconds{op}` (`_sum` and `_count`). `name`
    /// becomes a `bucket` label when more than one bucket is tracked.
    pub fn track_bucket(&self, name: &str, bucket: &Bucket) {
        let mut reg = self.lock();
        reg.buckets.retain(|(n, _)| n != name);
        reg.buckets.push((name.to_string(), bucket.clone()));
    }

    /// Makes `/healthz` answer from `check` (called at every request)
    /// instead of always `ok`: `Err(text)` answers HTTP 503 with the text.
    pub fn set_health(&self, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.lock().health = Some(HealthCheck(Arc::new(check)));
    }

    /// What `/healthz` answers now (see [`Metrics::set_health`]).
    pub fn health(&self) -> Result<(), String> {
        let check = self.lock().health.clone();
        match check {
            Some(HealthCheck(check)) => check(),
            None => Ok(()),
        }
    }

    /// The whole registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let reg = self.lock();
        let mut out = String::new();
        for (name, family) in &reg.families {
            header(&mut out, name, &family.help, family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => sample(&mut out, name, labels, c.get() as f64),
                    Series::Gauge(g) => sample(&mut out, name, labels, g.get()),
                    Series::Summary(d) => {
                        sample(&mut out, &format!("{name}_sum"), labels, d.sum_seconds());
                        sample(&mut out, &format!("{name}_count"), labels, d.count() as f64);
                    }
                }
            }
        }
        render_buckets(&mut out, &reg.buckets);
        out
    }
}

fn render_buckets(out: &mut String, buckets: &[(String, Bucket)]) {
    if buckets.is_empty() {
        return;
    }
    let many = buckets.len() > 1;
    let label = |name: &str, op: Option<&str>| {
        let mut pairs = Vec::new();
        if many {
            pairs.push(("bucket", name));
        }
        if let Some(op) = op {
            pairs.push(("op", op));
        }
        render_labels(&pairs)
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    header(
        out,
        "bucket_requests_total",
        "Bucket requests made, by operation",
        Kind::Counter,
    );
    for (name, bucket) in buckets {
        let c = bucket.counts();
        for (op, count) in [("get", &c.gets), ("put", &c.puts), ("list", &c.lists)] {
            sample(
                out,
                "bucket_requests_total",
                &label(name, Some(op)),
                load(count) as f64,
            );
        }
    }
    header(
        out,
        "bucket_request_errors_total",
        "Bucket requests that failed (including not-found)",
        Kind::Counter,
    );
    for (name, bucket) in buckets {
        let errors = load(&bucket.counts().errors) as f64;
        sample(
            out,
            "bucket_request_errors_total",
            &label(name, None),
            errors,
        );
    }
    header(
        out,
        "bucket_request_seconds",
        "Cumulative bucket request latency, by operation",
        Kind::Summary,
    );
    for (name, bucket) in buckets {
        let c = bucket.counts();
        for (op, count, micros) in [
            ("get", &c.gets, &c.get_micros),
            ("put", &c.puts, &c.put_micros),
            ("list", &c.lists, &c.list_micros),
        ] {
            let labels = label(name, Some(op));
            sample(
                out,
                "bucket_request_seconds_sum",
                &labels,
                load(micros) as f64 / 1e6,
            );
            sample(
                out,
                "bucket_request_seconds_count",
                &labels,
                load(count) as f64,
            );
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let value = format_value(value);
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`; label names the same without
/// `:`. Invalid characters become `_`.
fn sanitize_name(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, ch) in name.chars().enumerate() {
        let ok = ch.is_ascii_alphabetic()
            || ch == '_'
            || (allow_colon && ch == ':')
            || (i > 0 && ch.is_ascii_digit());
        out.push(if ok { ch } else { '_' });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(String, &str)> = labels
        .iter()
        .map(|(k, v)| (sanitize_name(k, false), *v))
        .collect();
    sorted.sort();
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out
}

/// Serves `GET /metrics` (the registry) and `GET /healthz` (200 `ok`, or 503
/// with the reason when the registry's health check fails; see
/// [`Metrics::set_health`]) on `addr`
/// until `shutdown` completes. Port 0 picks a free port; the bound address
/// is returned once the listener is up, and the server runs on a spawned task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, Error> {
    let for_health = metrics.clone();
    let metrics_route = warp::path!("metrics").map(move || {
        warp::reply::with_header(metrics.render(), "content-type", CONTENT_TYPE).into_response()
    });
    let health = warp::path!("healthz").map(move || match for_health.health() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => {
            let mut text = why;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            warp::reply::with_status(text, warp::http::StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    });
    let routes = warp::get()
        .and(metrics_route.or(health).unify())
        .or(http::not_found())
        .unify();
    let bound = http::serve(addr, routes, shutdown, "metrics server").await?;
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_series_and_escaping() {
        let m = Metrics::new();
        m.counter("jobs_executed_total", "Jobs executed").inc();
        m.counter("jobs_executed_total", "Jobs executed").inc_by(2);
        m.counter_with("x_total", "with \"labels\"", &[("op", "a\"b\\c\nd")])
            .inc();
        m.gauge("workers", "Workers").set(2.5);
        let d = m.duration("replay_seconds", "Replay time");
        d.observe(Duration::from_millis(1500));
        let text = m.render();
        assert!(text.contains("jobs_executed_total 3\n"), "{text}");
        assert!(text.contains(r#"x_total{op="a\"b\\c\nd"} 1"#), "{text}");
        assert!(text.contains("workers 2.5\n"), "{text}");
        assert!(text.contains("replay_seconds_sum 1.5\n"), "{text}");
        assert!(text.contains("replay_seconds_count 1\n"), "{text}");
        assert!(text.contains("# TYPE replay_seconds summary\n"), "{text}");
    }

    #[test]
    fn kind_clash_does_not_export_twice() {
        let m = Metrics::new();
        m.counter("a", "a").inc();
        m.gauge("a", "a").set(5.0);
        let text = m.render();
        assert_eq!(text.matches("# TYPE a ").count(), 1);
        assert!(text.contains("a 1\n"));
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("9bad-name", true), "_bad_name");
        assert_eq!(sanitize_name("ns:ok_1", true), "ns:ok_1");
        assert_eq!(sanitize_name("ns:ok", false), "ns_ok");
    }
}
