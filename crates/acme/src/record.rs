//! What certwright keeps about an order between steps: the issuer state of a pending
//! request (`Pending.state` in the engine). With it an order resumes after a restart of
//! either runtime, or on another replica, with the same order URL and the same key; and
//! from it the operator writes Order and Challenge objects and the local runtime's
//! `status` shows the order's progress.

use certwright_api::acme::ChallengeKind;
use serde::{Deserialize, Serialize};

/// An order's state, with cert-manager's names (`Order.status.state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// Not yet created on the server.
    #[default]
    #[serde(rename = "")]
    New,
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
    Expired,
    Errored,
}

impl OrderState {
    pub fn parse(s: &str) -> OrderState {
        match s {
            "pending" => OrderState::Pending,
            "ready" => OrderState::Ready,
            "processing" => OrderState::Processing,
            "valid" => OrderState::Valid,
            "invalid" => OrderState::Invalid,
            "expired" => OrderState::Expired,
            _ => OrderState::Errored,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::New => "",
            OrderState::Pending => "pending",
            OrderState::Ready => "ready",
            OrderState::Processing => "processing",
            OrderState::Valid => "valid",
            OrderState::Invalid => "invalid",
            OrderState::Expired => "expired",
            OrderState::Errored => "errored",
        }
    }
}

/// One challenge certwright chose to solve for one authorization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeRecord {
    pub authorization_url: String,
    /// The name being validated, as the server wrote it (lowercase), without `*.`.
    pub dns_name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wildcard: bool,
    /// `HTTP-01` or `DNS-01`.
    #[serde(rename = "type")]
    pub kind: Option<ChallengeKind>,
    pub url: String,
    pub token: String,
    /// What the solver presents: the key authorization (HTTP-01), or its digest (the
    /// DNS-01 TXT value). Public by design (the CA reads it); kept so that a restarted
    /// runtime serves the token again before anything else.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Index of the issuer's solver that solves it.
    pub solver: usize,
    /// The challenge's state on the server: pending, processing, valid, invalid.
    pub state: String,
    /// The token is served / the record is written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presented: bool,
    /// The server was told to validate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
    /// What it waits for, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// An order in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    /// The account the order belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    /// The order's URL, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub state: OrderState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub finalize_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeRecord>,
    /// What the order waits for, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// ACME requests made for this order so far.
    #[serde(default)]
    pub requests: u32,
    /// Transient failures of this request so far (no response, 5xx, rateLimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub transient_failures: u32,
    /// Unix seconds before which the order is not touched again (the server's
    /// Retry-After, or the backoff after a transient failure).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub not_before: i64,
    /// Unix seconds: when this order's certificate request was first sent.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub created: i64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

impl OrderRecord {
    /// The HTTP-01 tokens this order presents: (token, key authorization).
    pub fn http01_tokens(&self) -> impl Iterator<Item = (&str, &str)> {
        self.challenges
            .iter()
            .filter(|c| {
                c.kind == Some(ChallengeKind::Http01)
                    && c.presented
                    && !c.key.is_empty()
                    && !matches!(c.state.as_str(), "valid" | "invalid")
            })
            .map(|c| (c.token.as_str(), c.key.as_str()))
    }

    /// Reads the issuer state of a pending request; anything else starts afresh.
    pub fn from_state(v: &serde_json::Value) -> OrderRecord {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    pub fn to_state(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// One line for people: what the order is doing.
    pub fn summary(&self) -> String {
        let mut s = match &self.url {
            None => "creating the ACME order".to_string(),
            Some(u) => format!("ACME order {u} is {}", self.state.as_str()),
        };
        if !self.reason.is_empty() {
            s.push_str(": ");
            s.push_str(&self.reason);
        } else if let Some(c) = self
            .challenges
            .iter()
            .find(|c| c.state != "valid" && !c.reason.is_empty())
        {
            s.push_str(&format!(": {}: {}", c.dns_name, c.reason));
        }
        s
    }
}

/// A name as cert-manager makes Order and Challenge names: the prefix cut to 52
/// characters (ending on a letter or digit), a hyphen, and the FNV-1 32-bit hash of the
/// object's JSON in decimal: at most 63 characters, the same for the same object.
pub fn object_name(prefix: &str, json: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in json {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    let mut p: String = prefix.chars().take(52).collect();
    while p.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        p.pop();
    }
    format!("{p}-{h}")
}

impl OrderRecord {
    /// The Order object's status, as cert-manager writes it.
    pub fn order_status(&self) -> certwright_api::acme::OrderStatus {
        use certwright_api::acme::{OrderAuthorization, OrderStatus};
        OrderStatus {
            url: self.url.clone(),
            finalize_url: Some(self.finalize_url.clone()).filter(|u| !u.is_empty()),
            certificate: None,
            state: self.url.as_ref().map(|_| self.state.as_str().to_string()),
            reason: Some(self.reason.clone()).filter(|r| !r.is_empty()),
            authorizations: self
                .challenges
                .iter()
                .map(|c| OrderAuthorization {
                    url: c.authorization_url.clone(),
                    identifier: Some(c.dns_name.clone()).filter(|d| !d.is_empty()),
                    wildcard: Some(c.wildcard),
                    initial_state: None,
                })
                .collect(),
            failure_time: None,
        }
    }

    /// The Challenge objects of the chosen challenges: spec (with the issuer's solver) and
    /// status.
    pub fn challenge_objects(
        &self,
        issuer: &certwright_api::acme::AcmeIssuer,
        issuer_ref: &certwright_api::IssuerRef,
    ) -> Vec<(
        certwright_api::acme::ChallengeSpec,
        certwright_api::acme::ChallengeStatus,
    )> {
        use certwright_api::acme::{ChallengeSpec, ChallengeStatus};
        self.challenges
            .iter()
            .filter(|c| !c.url.is_empty())
            .map(|c| {
                let spec = ChallengeSpec {
                    url: c.url.clone(),
                    authorization_url: c.authorization_url.clone(),
                    dns_name: c.dns_name.clone(),
                    wildcard: c.wildcard,
                    type_: c
                        .kind
                        .map(|k| match k {
                            ChallengeKind::Http01 => "HTTP-01",
                            ChallengeKind::Dns01 => "DNS-01",
                        })
                        .unwrap_or_default()
                        .to_string(),
                    token: c.token.clone(),
                    key: c.key.clone(),
                    solver: issuer.solvers.get(c.solver).cloned().unwrap_or_default(),
                    issuer_ref: issuer_ref.clone(),
                };
                let status = ChallengeStatus {
                    processing: !matches!(c.state.as_str(), "valid" | "invalid"),
                    presented: c.presented,
                    reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                    state: Some(c.state.clone()).filter(|s| !s.is_empty()),
                };
                (spec, status)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cert_managers_shape_and_stable() {
        // FNV-1 32 of "" is the offset basis.
        assert_eq!(object_name("web-1", b""), "web-1-2166136261");
        let a = object_name("web-1", br#"{"request":"x"}"#);
        assert_eq!(a, object_name("web-1", br#"{"request":"x"}"#));
        assert_ne!(a, object_name("web-1", br#"{"request":"y"}"#));
        let long = format!("{}-.-", "a".repeat(60));
        let n = object_name(&long, b"{}");
        assert!(
            n.len() <= 63 && n.starts_with(&"a".repeat(52)) && !n.contains("--"),
            "{n}"
        );
    }

    #[test]
    fn objects_mirror_the_record() {
        let rec = OrderRecord {
            url: Some("https://ca/order/1".into()),
            state: OrderState::Pending,
            finalize_url: "https://ca/finalize/1".into(),
            challenges: vec![ChallengeRecord {
                authorization_url: "https://ca/authz/1".into(),
                dns_name: "a.example.com".into(),
                kind: Some(ChallengeKind::Dns01),
                url: "https://ca/chall/1".into(),
                token: "tok".into(),
                key: "digest".into(),
                state: "pending".into(),
                presented: true,
                reason: "waiting for DNS-01 propagation".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let st = rec.order_status();
        assert_eq!(st.state.as_deref(), Some("pending"));
        assert_eq!(
            st.authorizations[0].identifier.as_deref(),
            Some("a.example.com")
        );
        let issuer = certwright_api::acme::AcmeIssuer {
            solvers: vec![certwright_api::acme::AcmeSolver {
                dns01: Some(Default::default()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let objs = rec.challenge_objects(&issuer, &Default::default());
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].0.type_, "DNS-01");
        assert!(objs[0].0.solver.dns01.is_some());
        assert!(objs[0].1.processing && objs[0].1.presented);
        assert_eq!(
            objs[0].1.reason.as_deref(),
            Some("waiting for DNS-01 propagation")
        );
    }
}
