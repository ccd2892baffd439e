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
