//! certwright's resource model: cert-manager's `cert-manager.io/v1` types with their field
//! names and defaults, the legacy `certmanager.k8s.io/v1alpha1` API, validation, and the
//! annotation names certwright honours.

pub mod acme;
pub mod annotations;
pub mod crds;
pub mod cron;
pub mod duration;
pub mod legacy;
pub mod manifest;
pub mod types;
pub mod validate;
pub mod yaml;

pub use types::*;
