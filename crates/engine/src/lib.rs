//! certwright's engine: pure decisions over a Certificate's spec, observed state and a
//! clock value. It does no I/O; the local and operator shells read and write, then ask it
//! what to do.

pub mod backoff;
pub mod decide;
pub mod issue;
pub mod observe;
pub mod render;
pub mod status;

#[cfg(test)]
mod tests;

pub use backoff::BackoffPolicy;
pub use decide::{decide, Decision, Failures, Inputs, LastIssuance, Trigger};
pub use observe::{SecretData, TlsMaterial};
