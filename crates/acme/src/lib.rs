//! certwright's ACME issuer (RFC 8555): accounts, orders, HTTP-01 and DNS-01 solving, for
//! both runtimes through one [`Service`].
//!
//! The protocol client is certwright's own, on hyper and aws-lc-rs, rather than the
//! instant-acme crate. instant-acme (0.8) was the first choice; it lacks four things this
//! issuer needs: RSA account keys (cert-manager generates RSA account keys, so a user
//! moving from it brings one), the alternate chains of a certificate download (`Link:
//! rel="alternate"`, which `preferredChain` chooses from), the `Retry-After` of an error
//! response (rate limits and 5xx must be honoured), and control over `badNonce` retries.
//! What is written here is the protocol's small core: JWS signing over the keys of
//! [`certwright_pki`], nonces, problem documents, and the order state machine.

pub mod client;
pub mod dns;
pub mod http;
pub mod order;
pub mod record;
pub mod route53;
pub mod service;
pub mod solve;

pub use record::{ChallengeRecord, OrderRecord, OrderState};
pub use service::{Config, IssuerCheck, IssuerInputs, Service, Wake, Waker};
pub use solve::Tokens;
