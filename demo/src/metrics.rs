//! Prometheus metrics of a hop: traffic, handshakes, and what it serves.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::material::Material;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Served {
    pub serial: String,
    pub version: String,
}

#[derive(Default)]
pub struct Metrics {
    pub requests: Counter,
    pub failures: Counter,
    pub handshakes: Family<ResultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    certificate: Family<Served, Gauge>,
    not_after: Gauge,
    anchors: Gauge,
    reloaded_at: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn registry(self: &std::sync::Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("certwright_demo");
        r.register("requests", "Requests answered", self.requests.clone());
        r.register(
            "failures",
            "Requests answered with a 5xx status",
            self.failures.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes with callers, by result",
            self.handshakes.clone(),
        );
        r.register(
            "reloads",
            "Reads of a new certificate version, by result",
            self.reloads.clone(),
        );
        r.register(
            "certificate_info",
            "The certificate served now (value 1), by serial and ..data version",
            self.certificate.clone(),
        );
        r.register(
            "certificate_not_after_seconds",
            "notAfter of the certificate served now",
            self.not_after.clone(),
        );
        r.register(
            "trust_anchors",
            "Certificates in the ca.crt trusted now",
            self.anchors.clone(),
        );
        r.register(
            "certificate_loaded_timestamp_seconds",
            "When the certificate served now was loaded",
            self.reloaded_at.clone(),
        );
        r
    }

    pub fn served(&self, now: &Material, before: Option<&Material>) {
        if let Some(b) = before {
            self.certificate.remove(&Served {
                serial: b.serial.clone(),
                version: b.version.clone(),
            });
            self.reloads
                .get_or_create(&ResultLabel { result: "ok" })
                .inc();
        }
        self.certificate
            .get_or_create(&Served {
                serial: now.serial.clone(),
                version: now.version.clone(),
            })
            .set(1);
        self.not_after.set(now.not_after);
        self.anchors.set(now.anchors as i64);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.reloaded_at.set(t);
    }

    pub fn reload_failed(&self) {
        self.reloads
            .get_or_create(&ResultLabel { result: "error" })
            .inc();
    }

    pub fn handshake(&self, ok: bool) {
        self.handshakes
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}
