//! The operator runtime (in progress).
