//! The operator's web-facing state: Prometheus metrics (cert-manager's metric names, so
//! existing dashboards and alerts keep working, plus certwright's own), `/healthz` and
//! `/readyz`. Kept apart from the reconcile context; reconcile only reports into it.
//!
//! The registry and its text encoding are prometheus-client's (OpenMetrics text, which
//! Prometheus scrapes natively); the server is hyper's HTTP/1 server with a header
//! timeout, so a slow or broken client costs one task and nothing else.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the metrics say about one Certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CertMetric {
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub renewal: Option<i64>,
    /// "True", "False" or "Unknown".
    pub ready: String,
    pub issuer_name: String,
    pub issuer_kind: String,
    pub issuer_group: String,
}

/// cert-manager's labels for a Certificate's series, in its order.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    name: String,
    namespace: String,
    issuer_name: String,
    issuer_kind: String,
    issuer_group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    #[prometheus(flatten)]
    cert: CertLabels,
    condition: &'static str,
}

/// cert-manager's labels for ACME client requests (`path` holds the ACME action).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcmeLabels {
    scheme: String,
    host: String,
    path: &'static str,
    method: &'static str,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn acme_histogram() -> Histogram {
    // 10 ms to about 40 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

const CONDITIONS: [&str; 3] = ["True", "False", "Unknown"];

/// The operator's metrics; counters and histograms are updated by reconcile directly.
pub struct Metrics {
    registry: Registry,
    /// The label set each Certificate's series were last written with (to remove them).
    labels: Mutex<BTreeMap<(String, String), CertLabels>>,
    expiration: Family<CertLabels, Gauge>,
    renewal: Family<CertLabels, Gauge>,
    not_before: Family<CertLabels, Gauge>,
    ready_status: Family<ReadyLabels, Gauge>,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub issuances: Counter,
    pub issuance_failures: Counter,
    /// Writes refused with 409 Conflict (another writer got there first) and retried.
    pub conflicts: Counter,
    /// CertificateRequests created by others and signed.
    pub requests_signed: Counter,
    /// Seconds per Certificate reconciliation, whatever it did.
    pub reconcile_duration: Histogram,
    /// Seconds from the start of a reconciliation that issued to its Secret written.
    pub issuance_duration: Histogram,
    /// A gauge that only grows: under cert-manager's name, which OpenMetrics would turn
    /// into `..._count_total` were it typed counter.
    acme_requests: Family<AcmeLabels, Gauge<u64, std::sync::atomic::AtomicU64>>,
    acme_duration: HistogramFamily<AcmeLabels>,
    /// cert-utils' metrics, for Secrets with its expiry-alert annotation.
    cu_issue: Family<SecretLabels, Gauge>,
    cu_expiry: Family<SecretLabels, Gauge>,
    /// Workloads rolled out.
    pub rollouts: Counter,
    /// Workloads with a change seen and not yet rolled out (debounce, a previous rollout
    /// in progress, or the rate limit).
    pub rollouts_pending: Gauge,
    /// Of those, the ones waiting for their turn under the rate limit.
    pub rollouts_backlog: Gauge,
    pub ready: AtomicBool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecretLabels {
    name: String,
    namespace: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            labels: Mutex::default(),
            expiration: Family::default(),
            renewal: Family::default(),
            not_before: Family::default(),
            ready_status: Family::default(),
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            issuances: Counter::default(),
            issuance_failures: Counter::default(),
            conflicts: Counter::default(),
            requests_signed: Counter::default(),
            // 1 ms to about 33 s.
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            issuance_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            acme_requests: Family::default(),
            acme_duration: Family::new_with_constructor(acme_histogram),
            cu_issue: Family::default(),
            cu_expiry: Family::default(),
            rollouts: Counter::default(),
            rollouts_pending: Gauge::default(),
            rollouts_backlog: Gauge::default(),
            ready: AtomicBool::new(false),
        };
        m.registry.register(
            "certutils_certificate_issue_time",
            "The latest notBefore of the Secret's tls.crt, in seconds since the Unix epoch (cert-utils-operator's metric).",
            m.cu_issue.clone(),
        );
        m.registry.register(
            "certutils_certificate_expiry_time",
            "The earliest notAfter of the Secret's tls.crt, in seconds since the Unix epoch (cert-utils-operator's metric).",
            m.cu_expiry.clone(),
        );
        let r = &mut m.registry;
        for (name, help, family) in [
            (
                "certmanager_certificate_expiration_timestamp_seconds",
                "The timestamp after which the certificate expires, in seconds since the Unix epoch.",
                &m.expiration,
            ),
            (
                "certmanager_certificate_renewal_timestamp_seconds",
                "The timestamp after which the certificate should be renewed, in seconds since the Unix epoch.",
                &m.renewal,
            ),
            (
                "certmanager_certificate_not_before_timestamp_seconds",
                "The timestamp before which the certificate is not valid, in seconds since the Unix epoch.",
                &m.not_before,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register(
            "certwright_rollouts_pending",
            "Workloads with a change seen and not yet rolled out (debounce, previous rollout in progress, rate limit).",
            m.rollouts_pending.clone(),
        );
        r.register(
            "certwright_rollouts_backlog",
            "Workloads waiting for their turn under the rollout rate limit.",
            m.rollouts_backlog.clone(),
        );
        r.register(
            "certmanager_certificate_ready_status",
            "The ready status of the certificate.",
            m.ready_status.clone(),
        );
        // cert-manager's names as its /metrics shows them (subsystem http); its duration
        // is a summary, prometheus-client has histograms (quantiles come from buckets).
        r.register(
            "certmanager_http_acme_client_request_count",
            "The number of requests made by the ACME client.",
            m.acme_requests.clone(),
        );
        r.register(
            "certmanager_http_acme_client_request_duration_seconds",
            "The HTTP request latencies in seconds for the ACME client.",
            m.acme_duration.clone(),
        );
        for (name, help, c) in [
            (
                "certwright_reconciles",
                "Certificate reconciliations.",
                &m.reconciles,
            ),
            (
                "certwright_reconcile_errors",
                "Reconciliations (of any kind) that failed and were retried.",
                &m.reconcile_errors,
            ),
            ("certwright_issuances", "Certificates issued.", &m.issuances),
            (
                "certwright_issuance_failures",
                "Issuances that failed.",
                &m.issuance_failures,
            ),
            (
                "certwright_conflicts",
                "Writes refused with 409 Conflict and retried from a fresh read.",
                &m.conflicts,
            ),
            (
                "certwright_certificaterequests_signed",
                "CertificateRequests created by others and signed.",
                &m.requests_signed,
            ),
            (
                "certwright_rollouts",
                "Workloads rolled out because a Secret or ConfigMap they follow changed.",
                &m.rollouts,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        for (name, help, h) in [
            (
                "certwright_reconcile_duration_seconds",
                "Time taken by one Certificate reconciliation.",
                &m.reconcile_duration,
            ),
            (
                "certwright_issuance_duration_seconds",
                "Time from the start of a reconciliation that issued a certificate to its Secret written.",
                &m.issuance_duration,
            ),
        ] {
            r.register(name, help, h.clone());
        }
        m
    }
}

impl Metrics {
    /// Counts one ACME request and its duration.
    pub fn acme_request(&self, r: &certwright_acme::http::RequestRecord) {
        let labels = AcmeLabels {
            scheme: r.scheme.clone(),
            host: r.host.clone(),
            path: r.action,
            method: r.method,
            status: r.status.to_string(),
        };
        self.acme_requests.get_or_create(&labels).inc();
        self.acme_duration
            .get_or_create(&labels)
            .observe(r.duration.as_secs_f64());
    }

    pub fn set(&self, ns: &str, name: &str, m: CertMetric) {
        let labels = CertLabels {
            name: name.to_string(),
            namespace: ns.to_string(),
            issuer_name: m.issuer_name,
            issuer_kind: m.issuer_kind,
            issuer_group: m.issuer_group,
        };
        let Ok(mut known) = self.labels.lock() else {
            return;
        };
        let key = (ns.to_string(), name.to_string());
        if let Some(old) = known.insert(key, labels.clone()) {
            if old != labels {
                self.remove(&old);
            }
        }
        for (family, v) in [
            (&self.expiration, m.not_after),
            (&self.renewal, m.renewal),
            (&self.not_before, m.not_before),
        ] {
            match v {
                Some(v) => {
                    family.get_or_create(&labels).set(v);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
        for condition in CONDITIONS {
            let l = ReadyLabels {
                cert: labels.clone(),
                condition,
            };
            self.ready_status
                .get_or_create(&l)
                .set(i64::from(m.ready == condition));
        }
    }

    /// cert-utils' issue and expiry times of a Secret.
    pub fn set_cert_utils(&self, ns: &str, name: &str, issue: i64, expiry: i64) {
        let l = SecretLabels {
            name: name.to_string(),
            namespace: ns.to_string(),
        };
        self.cu_issue.get_or_create(&l).set(issue);
        self.cu_expiry.get_or_create(&l).set(expiry);
    }

    pub fn forget_cert_utils(&self, ns: &str, name: &str) {
        let l = SecretLabels {
            name: name.to_string(),
            namespace: ns.to_string(),
        };
        self.cu_issue.remove(&l);
        self.cu_expiry.remove(&l);
    }

    pub fn forget(&self, ns: &str, name: &str) {
        let old = self
            .labels
            .lock()
            .ok()
            .and_then(|mut k| k.remove(&(ns.to_string(), name.to_string())));
        if let Some(old) = old {
            self.remove(&old);
        }
    }

    fn remove(&self, labels: &CertLabels) {
        for family in [&self.expiration, &self.renewal, &self.not_before] {
            family.remove(labels);
        }
        for condition in CONDITIONS {
            self.ready_status.remove(&ReadyLabels {
                cert: labels.clone(),
                condition,
            });
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// OpenMetrics' content type, which Prometheus asks for and parses natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn answer(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.render()),
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// The next connection. A failed accept (out of file descriptors, say) is logged and
/// retried after a pause that grows with repeated failures, never in a spin.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    what: &str,
) -> tokio::net::TcpStream {
    let mut failures = 0u32;
    loop {
        match listener.accept().await {
            Ok((sock, _)) => return sock,
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(100 << failures.min(6));
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "{what}: accept failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let sock = accept(&listener, "metrics server").await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = answer(&metrics, req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics server: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_over_http_and_survives_a_silent_client() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::default());
        tokio::spawn(serve(listener, metrics.clone()));
        // A client that connects and says nothing does not hold up the others.
        let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        metrics.ready.store(true, Ordering::Relaxed);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        metrics.reconciles.inc();
        let text = get("/metrics").await;
        assert!(text.contains("application/openmetrics-text"), "{text}");
        assert!(text.contains("certwright_reconciles_total 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn renders_cert_manager_metric_names() {
        let m = Metrics::default();
        m.set(
            "demo",
            "web",
            CertMetric {
                not_before: Some(10),
                not_after: Some(100),
                renewal: Some(70),
                ready: "True".into(),
                issuer_name: "ca".into(),
                issuer_kind: "Issuer".into(),
                issuer_group: "cert-manager.io".into(),
            },
        );
        let text = m.render();
        assert!(text.contains("certmanager_certificate_expiration_timestamp_seconds{name=\"web\",namespace=\"demo\",issuer_name=\"ca\",issuer_kind=\"Issuer\",issuer_group=\"cert-manager.io\"} 100"), "{text}");
        assert!(text.contains("certmanager_certificate_ready_status{name=\"web\",namespace=\"demo\",issuer_name=\"ca\",issuer_kind=\"Issuer\",issuer_group=\"cert-manager.io\",condition=\"True\"} 1"), "{text}");
        assert!(text.contains("condition=\"False\"} 0"));
        assert!(
            text.contains("certmanager_certificate_renewal_timestamp_seconds{")
                && text.contains("} 70")
        );
        assert!(
            text.contains("# TYPE certwright_issuances counter"),
            "{text}"
        );
        assert!(text.contains("certwright_issuances_total 0"), "{text}");
        m.issuance_duration.observe(0.25);
        let text = m.render();
        assert!(
            text.contains("certwright_issuance_duration_seconds_bucket{le=\"0.256\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("certwright_issuance_duration_seconds_count 1"),
            "{text}"
        );
        // A new issuer replaces the series instead of adding a second one.
        m.set(
            "demo",
            "web",
            CertMetric {
                issuer_name: "other".into(),
                ready: "False".into(),
                ..CertMetric::default()
            },
        );
        let text = m.render();
        assert!(!text.contains("issuer_name=\"ca\""), "{text}");
        assert!(
            text.contains(
                "issuer_name=\"other\",issuer_kind=\"\",issuer_group=\"\",condition=\"False\"} 1"
            ),
            "{text}"
        );
        m.forget("demo", "web");
        assert!(!m.render().contains("name=\"web\""));
    }
}
