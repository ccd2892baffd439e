//! certwright's engine: a Certificate's whole lifecycle, once for both runtimes. The local
//! and operator shells read what it needs (the spec, the Secret, the issuer's spec and CA
//! Secret, passwords, the kept state) and apply what it returns ([`lifecycle::step`]); the
//! engine resolves the issuer ([`resolve`]), decides ([`decide`]), issues through the
//! [`issue::Issuer`] seam, renders the Secret ([`render`]) and keeps the conditions. It
//! reads and writes nothing itself; an issuer may (an ACME order).

pub mod annotated;
pub mod backoff;
pub mod cainject;
pub mod carotation;
pub mod decide;
pub mod issue;
pub mod lifecycle;
pub mod observe;
pub mod render;
pub mod resolve;
pub mod rollout;
pub mod routes;
pub mod shim;
pub mod status;
#[cfg(test)]
mod test_support;
pub mod testing;

#[cfg(test)]
mod tests;

pub use backoff::BackoffPolicy;
pub use decide::{decide, Decision, Failures, Inputs, LastIssuance, Trigger};
pub use lifecycle::{step, Effect, Observed, Pending, Problem, State, Step};
pub use observe::{SecretData, TlsMaterial};
pub use resolve::Resolved;
