//! YAML in and out of certwright, through serde-saphyr.
//!
//! Manifests are untrusted input. serde-saphyr checks a budget while it parses (parser
//! events, nesting depth, anchors, aliases, alias replay), so an alias bomb ("billion
//! laughs") or a deeply nested document is refused with a clear error in milliseconds
//! instead of expanding in memory. The options below read YAML 1.2's core schema, as
//! serde_yaml did before (`yes` stays a string, duplicate keys are an error).
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Most alias replays one manifest document may cause: far more than any real manifest
/// uses (anchors are rare in Kubernetes YAML), far less than an alias bomb needs.
pub const MAX_REPLAYED_EVENTS: usize = 100_000;

/// The deepest nesting of mappings and sequences accepted in one document: real manifests
/// stay far below (a CRD schema reaches about 30). The parser recurses per level, and the
/// budget is checked as it goes, so this also keeps a hostile document inside a thread's
/// default 2 MiB stack, unoptimised builds included (measured: 64 fits, 100 does not).
pub const MAX_DEPTH: usize = 64;

/// What a YAML text or document failed on.
pub type Error = serde_saphyr::Error;

/// The parser options for every YAML certwright reads.
pub fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = 10_000;
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    let mut limits = serde_saphyr::options::AliasLimits::default();
    limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.alias_limits = limits;
    o.strict_booleans = true;
    o.with_snippet = false;
    o
}

/// Reads one YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_saphyr::from_str_with_options(text, options())
}

/// Writes a value as YAML.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn core_schema_as_kubernetes_manifests_expect() {
        let v: Value = from_str("a: yes\nb: true\nc: '1'\nd: 1\ne: null\n").expect("parses");
        assert_eq!(v["a"], "yes");
        assert_eq!(v["b"], true);
        assert_eq!(v["c"], "1");
        assert_eq!(v["d"], 1);
        assert!(v["e"].is_null());
        let dup = from_str::<Value>("a: 1\na: 2\n");
        assert!(dup.is_err(), "duplicate keys are an error");
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        // Nine levels of nine aliases: 9^9 = 387,420,489 strings once expanded.
        let mut text = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let p = format!("*a{}", i - 1);
            let items = [p.as_str(); 9].join(",");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let start = std::time::Instant::now();
        let err = from_str::<Value>(&text).expect_err("an alias bomb must be refused");
        let took = start.elapsed();
        let msg = err.to_string();
        assert!(msg.contains("alias") || msg.contains("budget"), "{msg}");
        eprintln!("alias bomb refused in {took:?}: {msg}");
    }
}
