//! The local runtime: certwright without a cluster. Manifests come from files; each Secret
//! is a directory laid out as the kubelet mounts one; status is kept in the state
//! directory for `certwright status`; host services can be reloaded by hooks.

pub mod acme;
pub mod edge;
pub mod fsroot;
pub mod hooks;
pub mod model;
pub mod reconcile;
pub mod records;
pub mod runtime;
pub mod store;
pub mod watch;

pub use runtime::{Clock, Options, Runtime, Summary};
