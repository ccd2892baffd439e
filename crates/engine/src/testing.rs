//! Issuers for tests of the lifecycle, selected by an Issuer's
//! `certwright.io/test-issuer` annotation when a runtime allows them (the parity suite
//! does; the command line never does):
//! - `pending-twice`: answers like an ACME order, pending twice (five seconds apart), then
//!   self-signs; its count lives in the request's issuer state, so it resumes after a
//!   restart only if that state and the request's key were kept;
//! - `garbage`: "issues" bytes that are not a certificate, and backs off like a remote
//!   CA (an hour), so a test sees the backoff survive a restart without racing it.

use crate::issue::{self, Issued, Issuer, Outcome, Request};
use crate::lifecycle::Problem;
use crate::resolve::Ready;
use crate::BackoffPolicy;
use std::sync::Arc;
use std::time::Duration;

/// Answers pending twice, then self-signs.
pub struct PendingTwice;

impl Issuer for PendingTwice {
    fn process(&self, req: &Request<'_>) -> Outcome {
        let polls = req.state.get("polls").and_then(|p| p.as_u64()).unwrap_or(0);
        if polls < 2 {
            return Outcome::Pending {
                reason: "OrderPending".into(),
                message: format!("test order, poll {}", polls + 1),
                retry_after: Duration::from_secs(5),
                state: serde_json::json!({"order": "test-order", "polls": polls + 1}),
            };
        }
        issue::SelfSigned::default().process(req)
    }
}

/// Returns something that is not a certificate.
pub struct Garbage;

impl Issuer for Garbage {
    fn process(&self, _: &Request<'_>) -> Outcome {
        Outcome::Issued(Issued {
            chain: vec![b"not a certificate".to_vec()],
            ca: vec![],
            state: serde_json::Value::Null,
        })
    }
}

/// The test issuer of that name.
pub fn issuer(name: &str) -> Result<Ready, Problem> {
    let (issuer, policy): (Arc<dyn Issuer>, _) = match name {
        "pending-twice" => (Arc::new(PendingTwice), BackoffPolicy::LOCAL),
        "garbage" => (Arc::new(Garbage), BackoffPolicy::REMOTE),
        other => {
            return Err(Problem::new(
                "InvalidIssuer",
                format!("unknown test issuer {other:?} (pending-twice, garbage)"),
            ))
        }
    };
    Ok(Ready {
        issuer,
        policy,
        digest: format!("test:{name}"),
        reason: "IsReady",
        message: "",
    })
}
