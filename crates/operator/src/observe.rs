//! The operator's web-facing state: Prometheus metrics (cert-manager's metric names, so
//! existing dashboards and alerts keep working, plus certwright's own), `/healthz` and
//! `/readyz`. Kept apart from the reconcile context; reconcile only reports into it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

#[derive(Default)]
pub struct Metrics {
    certs: Mutex<BTreeMap<(String, String), CertMetric>>,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub issuances: AtomicU64,
    pub issuance_failures: AtomicU64,
    /// Writes refused with 409 Conflict (another writer got there first) and retried.
    pub conflicts: AtomicU64,
    /// CertificateRequests created by others and signed.
    pub requests_signed: AtomicU64,
    pub ready: AtomicBool,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn set(&self, ns: &str, name: &str, m: CertMetric) {
        if let Ok(mut c) = self.certs.lock() {
            c.insert((ns.to_string(), name.to_string()), m);
        }
    }

    pub fn forget(&self, ns: &str, name: &str) {
        if let Ok(mut c) = self.certs.lock() {
            c.remove(&(ns.to_string(), name.to_string()));
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let certs = self.certs.lock().map(|c| c.clone()).unwrap_or_default();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        let labels = |(ns, name): &(String, String), m: &CertMetric| {
            format!(
                "name=\"{}\",namespace=\"{}\",issuer_name=\"{}\",issuer_kind=\"{}\",issuer_group=\"{}\"",
                escape(name),
                escape(ns),
                escape(&m.issuer_name),
                escape(&m.issuer_kind),
                escape(&m.issuer_group)
            )
        };
        for (metric, help, pick) in [
            (
                "certmanager_certificate_expiration_timestamp_seconds",
                "The timestamp after which the certificate expires, in seconds since the Unix epoch.",
                (|m: &CertMetric| m.not_after) as fn(&CertMetric) -> Option<i64>,
            ),
            (
                "certmanager_certificate_renewal_timestamp_seconds",
                "The timestamp after which the certificate should be renewed, in seconds since the Unix epoch.",
                |m: &CertMetric| m.renewal,
            ),
            (
                "certmanager_certificate_not_before_timestamp_seconds",
                "The timestamp before which the certificate is not valid, in seconds since the Unix epoch.",
                |m: &CertMetric| m.not_before,
            ),
        ] {
            gauge(&mut out, metric, help);
            for (k, m) in &certs {
                if let Some(v) = pick(m) {
                    let _ = writeln!(out, "{metric}{{{}}} {v}", labels(k, m));
                }
            }
        }
        gauge(
            &mut out,
            "certmanager_certificate_ready_status",
            "The ready status of the certificate.",
        );
        for (k, m) in &certs {
            for cond in ["True", "False", "Unknown"] {
                let v = u8::from(m.ready == cond);
                let _ = writeln!(
                    out,
                    "certmanager_certificate_ready_status{{{},condition=\"{cond}\"}} {v}",
                    labels(k, m)
                );
            }
        }
        for (name, help, v) in [
            (
                "certwright_reconciles_total",
                "Certificate reconciliations.",
                &self.reconciles,
            ),
            (
                "certwright_reconcile_errors_total",
                "Reconciliations (of any kind) that failed and were retried.",
                &self.reconcile_errors,
            ),
            (
                "certwright_issuances_total",
                "Certificates issued.",
                &self.issuances,
            ),
            (
                "certwright_issuance_failures_total",
                "Issuances that failed.",
                &self.issuance_failures,
            ),
            (
                "certwright_conflicts_total",
                "Writes refused with 409 Conflict and retried from a fresh read.",
                &self.conflicts,
            ),
            (
                "certwright_certificaterequests_signed_total",
                "CertificateRequests created by others and signed.",
                &self.requests_signed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends. Minimal HTTP/1.1:
/// one GET per connection, bounded request size.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                "/healthz" | "/livez" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
                    ("200 OK", "text/plain", "ok\n".to_string())
                }
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready\n".to_string(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        m.forget("demo", "web");
        assert!(!m.render().contains("name=\"web\""));
    }
}
