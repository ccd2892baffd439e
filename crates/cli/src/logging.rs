//! Logging for both runtimes through `tracing`: one line per event on stderr, as text
//! (`time LEVEL message key=value...`) or JSON (one object per line with `timestamp`,
//! `level`, `message` and the fields, for log collectors). The level applies to certwright
//! and kube-runtime alike (HTTP and TLS internals stay at warn); `RUST_LOG`, when set,
//! overrides it with per-crate directives. Fields never carry key material or
//! passwords (the libraries never log them).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber. `level`: debug, info, warn or error; `format`: text or json.
pub fn init(level: &str, format: &str) -> anyhow::Result<()> {
    let level = match level.to_ascii_lowercase().as_str() {
        l @ ("debug" | "info" | "warn" | "error") => l.to_string(),
        other => anyhow::bail!("unknown log level {other:?} (debug, info, warn, error)"),
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        // HTTP and TLS plumbing stays at warn: its debug lines are noise, not events.
        _ => EnvFilter::try_new(format!(
            "{level},hyper=warn,hyper_util=warn,h2=warn,rustls=warn,tower=warn"
        ))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        "text" => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => anyhow::bail!("unknown log format {other:?} (text, json)"),
    }
    .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_checked() {
        let e = super::init("loud", "text").expect_err("unknown level");
        assert!(e.to_string().contains("unknown log level \"loud\""), "{e}");
        let e = super::init("info", "xml").expect_err("unknown format");
        assert!(e.to_string().contains("unknown log format \"xml\""), "{e}");
    }
}
