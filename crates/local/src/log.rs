//! Structured log lines on stderr: `TIME LEVEL message key=value …`. Callers never pass
//! key material or passwords.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(1);

/// 0 = debug, 1 = info, 2 = warn, 3 = error.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

fn quote(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

fn emit(level: u8, name: &str, msg: &str, fields: &[(&str, &str)]) {
    if level < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut line = format!("{} {name} {msg}", certwright_pki::der::rfc3339(now));
    for (k, v) in fields {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&quote(v));
    }
    eprintln!("{line}");
}

pub fn debug(msg: &str, fields: &[(&str, &str)]) {
    emit(0, "DEBUG", msg, fields);
}
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    emit(1, "INFO", msg, fields);
}
pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    emit(2, "WARN", msg, fields);
}
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    emit(3, "ERROR", msg, fields);
}
