//! Reading multi-document YAML manifests into typed resources.
//!
//! Each document is parsed on its own, so one broken document costs only itself. A
//! document that cannot be typed still names its kind, namespace and name when it can,
//! so the error lands on the right resource.

use crate::legacy;
use crate::types::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A typed resource.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing would only add noise
pub enum Resource {
    Certificate(Certificate),
    Issuer(Issuer),
    ClusterIssuer(Issuer),
    CertificateRequest(CertificateRequest),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Route(Route),
    ReloadHook(ReloadHook),
}

/// Identity of a document's resource, as far as it could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub reason: &'static str,
    pub message: String,
}

/// One document of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    /// `file:line` where the document starts.
    pub source: String,
    /// The resource's identity, when it could be read (namespace not yet defaulted).
    pub id: Option<ResourceId>,
    /// Whether the document used the legacy v1alpha1 API.
    pub legacy: bool,
    /// The legacy per-certificate ACME block, kept for `convert`.
    pub legacy_acme: Option<legacy::LegacyAcmeCertificateConfig>,
    pub result: Result<Resource, DocError>,
}

/// Splits a YAML stream at `---` lines, keeping each document's first line number;
/// documents holding only blank lines and comments are skipped. Lazy: one document at a
/// time is copied out of the text.
fn documents(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut lines = text.lines().enumerate().peekable();
    let mut start = 1;
    std::iter::from_fn(move || loop {
        lines.peek()?;
        let mut cur = String::new();
        let first = start;
        for (i, line) in lines.by_ref() {
            let is_sep = line == "---"
                || line.starts_with("--- ")
                || line.starts_with("---\t")
                || line == "...";
            if is_sep {
                start = i + 2;
                break;
            }
            cur.push_str(line);
            cur.push('\n');
        }
        let meaningful = cur
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            return Some((first, cur));
        }
    })
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, DocError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        DocError {
            reason: "InvalidManifest",
            message: if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

fn identity(v: &Value) -> Option<ResourceId> {
    let kind = v.get("kind")?.as_str()?.to_string();
    let meta = v.get("metadata");
    Some(ResourceId {
        kind,
        namespace: meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        name: meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

/// The largest document accepted, in bytes: the Kubernetes API server refuses request
/// bodies over 3 MiB, so no real manifest is larger.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;
/// Checks a document's size before it reaches the YAML parser (whose budget then bounds
/// its depth, nodes and aliases).
pub fn check_budget(doc: &str) -> Result<(), DocError> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(DocError {
            reason: "ManifestTooLarge",
            message: format!(
                "the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted (the Kubernetes API limit)",
                doc.len()
            ),
        });
    }
    Ok(())
}

/// A YAML error as a document's problem: a budget breach names what was too much.
fn yaml_problem(e: crate::yaml::Error) -> DocError {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::granit_parser::ErrorKind;
    use serde_saphyr::{Error, ExternalMessageSource};
    let too_deep = |location: &serde_saphyr::Location| DocError {
        reason: "ManifestTooDeep",
        message: format!(
            "line {}: nested more than {} levels deep; not parsed",
            location.line(),
            crate::yaml::MAX_DEPTH
        ),
    };
    let mut inner = &e;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = inner {
        inner = error;
    }
    match inner {
        Error::Budget {
            breach: BudgetBreach::Depth { .. },
            location,
        } => too_deep(location),
        // The scanner's own bound on nested flow collections ([[[[…).
        Error::ExternalMessage {
            source, location, ..
        } if matches!(&**source, ExternalMessageSource::Parser(p)
            if matches!(p.kind(), ErrorKind::RecursionLimitExceeded)) =>
        {
            too_deep(location)
        }
        Error::Budget { .. }
        | Error::AliasReplayLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => DocError {
            reason: "ManifestTooLarge",
            message: format!("{e}; not parsed"),
        },
        _ => DocError {
            reason: "InvalidYAML",
            message: format!("YAML syntax error: {e}"),
        },
    }
}

/// The parser counts lines from the start of the document: "at line N" becomes the line
/// of the file, so that the message and the `file:line` before it agree.
fn in_file(mut e: DocError, first_line: usize) -> DocError {
    const AT: &str = " at line ";
    if let Some(i) = e.message.find(AT) {
        let rest = &e.message[i + AT.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<usize>() {
            let absolute = n + first_line.saturating_sub(1);
            e.message = format!("{}{AT}{absolute}{}", &e.message[..i], &rest[digits.len()..]);
        }
    }
    e
}

/// Parses every document of a YAML text. `source` names the file in messages.
pub fn parse_documents(text: &str, source: &str) -> Vec<Document> {
    let mut out = Vec::new();
    for_each_document(text, source, |d| out.push(d));
    out
}

/// Parses the documents of a YAML text one at a time, handing each to `f`: a large file is
/// never held parsed all at once.
pub fn for_each_document(text: &str, source: &str, mut f: impl FnMut(Document)) {
    for (line, doc) in documents(text) {
        let src = format!("{source}:{line}");
        if let Err(e) = check_budget(&doc) {
            f(Document {
                source: src,
                id: None,
                legacy: false,
                legacy_acme: None,
                result: Err(e),
            });
            continue;
        }
        let value: Value = match crate::yaml::from_str::<Value>(&doc) {
            Ok(v) => v,
            Err(e) => {
                f(Document {
                    source: src,
                    id: None,
                    legacy: false,
                    legacy_acme: None,
                    result: Err(in_file(yaml_problem(e), line)),
                });
                continue;
            }
        };
        drop(doc);
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                f(parse_value(item, format!("{src} (items[{i}])")));
            }
            continue;
        }
        f(parse_value(value, src));
    }
}

/// Types one document's value.
pub fn parse_value(value: Value, source: String) -> Document {
    let id = identity(&value);
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let legacy = legacy::is_legacy(&api_version);
    let mut legacy_acme = None;
    let result = (|| -> Result<Resource, DocError> {
        if !value.is_object() {
            return Err(DocError {
                reason: "InvalidManifest",
                message: "a manifest must be a mapping".into(),
            });
        }
        if kind.is_empty() {
            return Err(DocError {
                reason: "InvalidManifest",
                message: "kind: required".into(),
            });
        }
        if api_version.is_empty() {
            return Err(DocError {
                reason: "InvalidManifest",
                message: "apiVersion: required".into(),
            });
        }
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Secret") => Ok(Resource::Secret(typed(value.clone())?)),
            ("v1", "ConfigMap") => Ok(Resource::ConfigMap(typed(value.clone())?)),
            (ROUTE_API_VERSION, "Route") => Ok(Resource::Route(typed(value.clone())?)),
            (API_VERSION, "Certificate") => Ok(Resource::Certificate(typed(value.clone())?)),
            (API_VERSION, "Issuer") => Ok(Resource::Issuer(typed(value.clone())?)),
            (API_VERSION, "ClusterIssuer") => Ok(Resource::ClusterIssuer(typed(value.clone())?)),
            (API_VERSION, "CertificateRequest") => Ok(Resource::CertificateRequest(typed(value.clone())?)),
            (CERTWRIGHT_API_VERSION, "ReloadHook") => Ok(Resource::ReloadHook(typed(value.clone())?)),
            (LEGACY_API_VERSION, "Certificate") => {
                let mut v = value.clone();
                let spec_v = v.get("spec").cloned().unwrap_or(Value::Null);
                let spec: legacy::LegacyCertificateSpec = typed(spec_v).map_err(|e| DocError {
                    reason: e.reason,
                    message: format!("spec.{}", e.message),
                })?;
                let (v1, acme) = legacy::convert_certificate_spec(&spec)
                    .map_err(|m| DocError { reason: "InvalidManifest", message: m.to_string() })?;
                legacy_acme = acme;
                if let Some(o) = v.as_object_mut() {
                    o.insert("apiVersion".into(), Value::String(API_VERSION.into()));
                    o.insert("spec".into(), serde_json::to_value(v1).unwrap_or(Value::Null));
                    o.remove("status");
                }
                Ok(Resource::Certificate(typed(v)?))
            }
            (LEGACY_API_VERSION, "Issuer") | (LEGACY_API_VERSION, "ClusterIssuer") => {
                let mut v = value.clone();
                let spec = legacy::convert_issuer_spec(v.get("spec").unwrap_or(&Value::Null))
                    .map_err(|m| DocError { reason: "InvalidManifest", message: m.to_string() })?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("apiVersion".into(), Value::String(API_VERSION.into()));
                    o.insert("spec".into(), spec);
                    o.remove("status");
                }
                let issuer: Issuer = typed(v)?;
                Ok(if kind == "Issuer" { Resource::Issuer(issuer) } else { Resource::ClusterIssuer(issuer) })
            }
            (API_VERSION | LEGACY_API_VERSION, other) => Err(DocError {
                reason: "UnknownKind",
                message: format!("unknown kind {other:?} in {api_version}"),
            }),
            (av, k) => Err(DocError {
                reason: "UnknownKind",
                message: format!(
                    "unsupported apiVersion/kind {av}/{k}: certwright reads cert-manager.io/v1 (and certmanager.k8s.io/v1alpha1) Certificate, Issuer, ClusterIssuer, CertificateRequest, v1 Secret and ConfigMap, route.openshift.io/v1 Route, and certwright.io/v1alpha1 ReloadHook"
                ),
            }),
        }
    })();
    Document {
        source,
        id,
        legacy,
        legacy_acme,
        result,
    }
}

impl Resource {
    pub fn id(&self) -> ResourceId {
        let (kind, meta) = match self {
            Resource::Certificate(o) => ("Certificate", &o.metadata),
            Resource::Issuer(o) => ("Issuer", &o.metadata),
            Resource::ClusterIssuer(o) => ("ClusterIssuer", &o.metadata),
            Resource::CertificateRequest(o) => ("CertificateRequest", &o.metadata),
            Resource::Secret(o) => ("Secret", &o.metadata),
            Resource::ConfigMap(o) => ("ConfigMap", &o.metadata),
            Resource::Route(o) => ("Route", &o.metadata),
            Resource::ReloadHook(o) => ("ReloadHook", &o.metadata),
        };
        ResourceId {
            kind: kind.into(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_give_the_line_of_the_file() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: [oops\n";
        let docs = parse_documents(text, "m.yaml");
        assert_eq!(docs[1].source, "m.yaml:5");
        let e = docs[1].result.as_ref().expect_err("broken");
        assert!(e.message.contains("at line 7"), "{}", e.message);
    }

    #[test]
    fn the_ca_issuers_url_field_has_cert_managers_spelling_and_the_old_one_is_read() {
        for field in ["issuingCertificateURLs", "issuingCertificateUrls"] {
            let text = format!(
                "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: ca, namespace: d}}\nspec:\n  ca:\n    secretName: ca\n    {field}: [http://pki.example.com/ca.crt]\n"
            );
            let docs = parse_documents(&text, "f.yaml");
            let Ok(Resource::Issuer(i)) = &docs[0].result else {
                panic!("{field}: {:?}", docs[0].result.as_ref().err());
            };
            let ca = i.spec.ca.as_ref().expect("ca");
            assert_eq!(
                ca.issuing_certificate_urls,
                ["http://pki.example.com/ca.crt"]
            );
            let written = serde_json::to_value(ca).expect("json");
            assert!(written.get("issuingCertificateURLs").is_some(), "{written}");
            assert!(crate::validate::issuer(i).is_ok());
        }
        // URLs go into certificates as IA5Strings: anything else is refused, named.
        let text = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: ca, namespace: d}\nspec:\n  ca:\n    secretName: ca\n    ocspServers: [\"http://ocsp example\"]\n";
        let docs = parse_documents(text, "f.yaml");
        let Ok(Resource::Issuer(i)) = &docs[0].result else {
            panic!("parses");
        };
        let errs = crate::validate::issuer(i).expect_err("refused");
        assert_eq!(errs[0].field, "spec.ca.ocspServers[0]", "{errs:?}");
    }

    #[test]
    fn deep_huge_or_exploding_documents_are_refused() {
        let head = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata: ";
        let reason = |text: &str| -> &'static str {
            let docs = parse_documents(text, "f.yaml");
            docs[0]
                .result
                .as_ref()
                .map(|_| "parsed")
                .unwrap_or_else(|e| e.reason)
        };
        let start = std::time::Instant::now();
        let flow = format!("{head}{}{}\n", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(reason(&flow), "ManifestTooDeep");
        let mut block = String::from(head);
        block.push('\n');
        for i in 0..1_000 {
            block.push_str(&" ".repeat(i + 1));
            block.push_str("a:\n");
        }
        assert_eq!(reason(&block), "ManifestTooDeep");
        let dashes = format!("{head}\n{}x\n", "- ".repeat(5_000));
        assert_eq!(reason(&dashes), "ManifestTooDeep");
        // A quote inside a plain scalar changes nothing: the parser counts, not a guess.
        let sneaky = format!("{head}[don't, {}{}]\n", "[".repeat(500), "]".repeat(500));
        assert_eq!(reason(&sneaky), "ManifestTooDeep");
        // Billion laughs: ten levels of nine aliases, 9^10 strings once expanded.
        let mut bomb = String::from("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n");
        bomb.push_str("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..=10 {
            let items = vec![format!("*l{}", i - 1); 9].join(", ");
            bomb.push_str(&format!("l{i}: &l{i} [{items}]\n"));
        }
        let docs = parse_documents(&bomb, "bomb.yaml");
        let e = docs[0]
            .result
            .as_ref()
            .expect_err("an alias bomb is refused");
        assert_eq!(e.reason, "ManifestTooLarge", "{}", e.message);
        assert!(e.message.contains("alias"), "{}", e.message);
        let big = format!("{head}\"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(reason(&big), "ManifestTooLarge");
        // Seconds or unbounded memory without the budget; milliseconds with it.
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        // Real manifests pass, comments and quoted brackets included.
        for f in ["examples/e2e", "examples"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(f);
            for e in std::fs::read_dir(&dir).expect("dir").flatten() {
                if e.path().extension().is_some_and(|x| x == "yaml") {
                    let text = std::fs::read_to_string(e.path()).expect("read");
                    for d in parse_documents(&text, "example.yaml") {
                        if let Err(e) = &d.result {
                            assert!(!e.reason.starts_with("Manifest"), "{}: {e:?}", d.source);
                        }
                    }
                }
            }
        }
        let quoted = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {a: \"[[[[\", b: '{{{{'}\n";
        assert_eq!(reason(quoted), "parsed");
    }

    #[test]
    fn broken_documents_cost_only_themselves() {
        let text = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: a}\nspec: {selfSigned: {}}\n---\nkind: [unclosed\n---\n# only a comment\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c, namespace: demo}\nspec:\n  secretName: s\n  dnsName: [x]\n  issuerRef: {name: a}\n";
        let docs = parse_documents(text, "f.yaml");
        assert_eq!(docs.len(), 3);
        assert!(matches!(docs[0].result, Ok(Resource::Issuer(_))));
        let e = docs[1].result.as_ref().expect_err("yaml error");
        assert_eq!(e.reason, "InvalidYAML");
        assert_eq!(docs[1].source, "f.yaml:6");
        let e = docs[2].result.as_ref().expect_err("unknown field");
        assert!(
            e.message
                .starts_with("spec.dnsName: unknown field `dnsName`"),
            "{}",
            e.message
        );
        assert_eq!(docs[2].id.as_ref().map(|i| i.name.as_str()), Some("c"));
    }

    #[test]
    fn unknown_kinds_are_named() {
        let docs = parse_documents("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "f");
        let e = docs[0].result.as_ref().expect_err("unknown");
        assert_eq!(e.reason, "UnknownKind");
        assert!(e.message.contains("v1/Service"));
    }

    #[test]
    fn legacy_certificates_read_as_v1() {
        let text = "apiVersion: certmanager.k8s.io/v1alpha1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  secretName: s\n  issuerRef: {name: i}\n  commonName: c\n  keyAlgorithm: ecdsa\n  keySize: 256\n  keyEncoding: pkcs8\n";
        let docs = parse_documents(text, "f");
        match &docs[0].result {
            Ok(Resource::Certificate(c)) => {
                assert_eq!(c.api_version, API_VERSION);
                assert_eq!(
                    c.spec
                        .private_key
                        .as_ref()
                        .and_then(|p| p.algorithm.as_deref()),
                    Some("ECDSA")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(docs[0].legacy);
    }
}
