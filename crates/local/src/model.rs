//! The resources the local runtime manages, loaded from manifest files and directories.

use base64::Engine;
use certwright_api::legacy::LegacyAcmeCertificateConfig;
use certwright_api::manifest::{self, DocError, Resource, ResourceId};
use certwright_api::validate::{self, CertificateParams, FieldError, IssuerType};
use certwright_api::{Issuer, IssuerRef, ReloadHook, Route, Secret};
use certwright_engine::SecretData;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A problem attached to a resource, or to a document whose resource is unknown.
pub use certwright_engine::Problem;

fn from_fields(errors: &[FieldError]) -> Problem {
    Problem::new(errors[0].reason, validate::join(errors))
}

fn from_doc(source: &str, e: &DocError) -> Problem {
    Problem::new(e.reason, format!("{source}: {}", e.message))
}

/// The largest manifest file read (many documents of at most 3 MiB each).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// (namespace, name); cluster-scoped resources use an empty namespace.
pub type Key = (String, String);

#[derive(Debug, Clone)]
pub struct CertEntry {
    pub source: String,
    /// Validated parameters, or why the Certificate is unusable.
    pub params: Result<Box<CertificateParams>, Problem>,
    /// The Certificate's labels (ACME solver selectors match them).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct IssuerEntry {
    pub source: String,
    pub issuer: Option<Issuer>,
    pub kind: Result<IssuerType, Problem>,
}

/// Everything read from the manifests.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub certificates: BTreeMap<Key, CertEntry>,
    pub issuers: BTreeMap<Key, IssuerEntry>,
    pub cluster_issuers: BTreeMap<String, IssuerEntry>,
    /// Secret manifests, decoded.
    pub secrets: BTreeMap<Key, (String, SecretData)>,
    /// ConfigMap manifests, decoded.
    pub configmaps: BTreeMap<Key, (String, ConfigMapData)>,
    pub hooks: BTreeMap<Key, (String, ReloadHook)>,
    /// Route manifests that passed [`check_route`] (the edge serves them).
    pub routes: BTreeMap<Key, (String, Route)>,
    /// Documents whose resource could not be identified, or kinds the runtime does not
    /// manage (for example CertificateRequest).
    pub errors: Vec<(String, Problem)>,
    /// The files read, with their modification stamps, for change detection.
    pub files: Vec<PathBuf>,
    /// Secrets that a valid Certificate writes.
    pub owned_secrets: std::collections::BTreeSet<Key>,
    /// v1alpha1 Certificates' `acme.config` (which provider solves which domains), merged
    /// into their issuers' solvers once every manifest is read.
    legacy_acme: Vec<(String, IssuerRef, String, LegacyAcmeCertificateConfig)>,
}

fn collect_files(
    path: &Path,
    recursive: bool,
    top: bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            let name = e
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if e.is_dir() {
                if recursive {
                    collect_files(&e, recursive, false, out)?;
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") {
                out.push(e);
            }
        }
    } else if top {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The manifest files under `paths`: files as given, and the `.yaml`, `.yml` and `.json`
/// files of directories (their subdirectories too when `recursive`, as `kubectl -R`).
pub fn manifest_files(
    paths: &[PathBuf],
    recursive: bool,
) -> (Vec<PathBuf>, Vec<(String, Problem)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if let Err(e) = collect_files(p, recursive, true, &mut files) {
            errors.push((
                p.display().to_string(),
                Problem::new("ManifestUnreadable", format!("{}: {e}", p.display())),
            ));
        }
    }
    (files, errors)
}

/// A ConfigMap manifest's content: `data` as text, `binaryData` decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMapData {
    pub data: BTreeMap<String, String>,
    pub binary: BTreeMap<String, Vec<u8>>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

fn decode_configmap(c: &certwright_api::types::ConfigMap) -> Result<ConfigMapData, Problem> {
    let mut binary = BTreeMap::new();
    for (k, v) in &c.binary_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| {
                Problem::new(
                    "InvalidConfigMap",
                    format!("binaryData.{k}: not valid base64"),
                )
            })?;
        binary.insert(k.clone(), bytes);
    }
    for k in c.data.keys().chain(binary.keys()) {
        if !crate::store::valid_key(k) {
            return Err(Problem::new(
                "InvalidConfigMap",
                format!("{k}: invalid key (letters, digits, '-', '_', '.')"),
            ));
        }
        if c.data.contains_key(k) && binary.contains_key(k) {
            return Err(Problem::new(
                "InvalidConfigMap",
                format!("{k}: in both data and binaryData"),
            ));
        }
    }
    Ok(ConfigMapData {
        data: c.data.clone(),
        binary,
        annotations: c.metadata.annotations.clone(),
        labels: c.metadata.labels.clone(),
    })
}

fn decode_secret(s: &Secret) -> Result<SecretData, Problem> {
    let mut data = BTreeMap::new();
    for (k, v) in &s.data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| Problem::new("InvalidSecret", format!("data.{k}: not valid base64")))?;
        data.insert(k.clone(), bytes);
    }
    for (k, v) in &s.string_data {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    for k in data.keys() {
        if !crate::store::valid_key(k) {
            return Err(Problem::new(
                "InvalidSecret",
                format!("data.{k}: invalid key (letters, digits, '-', '_', '.')"),
            ));
        }
    }
    Ok(SecretData {
        type_: s.type_.clone(),
        data,
        annotations: s.metadata.annotations.clone(),
        labels: s.metadata.labels.clone(),
    })
}

impl Model {
    /// Loads manifests. Never fails: unreadable files and documents become `errors` or
    /// problems on their resources.
    pub fn load(paths: &[PathBuf], recursive: bool) -> Model {
        let (files, errors) = manifest_files(paths, recursive);
        let mut m = Model {
            errors,
            ..Default::default()
        };
        for f in &files {
            let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            if size > MAX_FILE_BYTES {
                m.errors.push((
                    f.display().to_string(),
                    Problem::new(
                        "ManifestTooLarge",
                        format!("{}: {size} bytes; manifest files of at most {MAX_FILE_BYTES} bytes are read", f.display()),
                    ),
                ));
                continue;
            }
            match std::fs::read(f) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    manifest::for_each_document(&text, &f.display().to_string(), |doc| m.add(doc));
                }
                Err(e) => m.errors.push((
                    f.display().to_string(),
                    Problem::new("ManifestUnreadable", format!("{}: {e}", f.display())),
                )),
            }
        }
        m.files = files;
        m.merge_legacy_acme();
        m.owned_secrets = m
            .certificates
            .iter()
            .filter_map(|(k, e)| {
                e.params
                    .as_ref()
                    .ok()
                    .map(|p| (k.0.clone(), p.secret_name.clone()))
            })
            .collect();
        m
    }

    /// Gives each v1alpha1 Certificate's `acme.config` to its issuer's solvers, as
    /// `certwright convert` does; an entry that names no solver is a problem.
    fn merge_legacy_acme(&mut self) {
        for (cert, r, ns, cfg) in std::mem::take(&mut self.legacy_acme) {
            let entry = match r.kind_or_default() {
                "ClusterIssuer" => self.cluster_issuers.get_mut(&r.name),
                _ => self.issuers.get_mut(&(ns, r.name.clone())),
            };
            let Some(IssuerEntry {
                source,
                kind: Ok(IssuerType::Acme(acme)),
                ..
            }) = entry
            else {
                continue;
            };
            let source = source.clone();
            for w in
                certwright_api::legacy::merge_solver_selectors(&mut [acme.as_mut()], &[(cert, cfg)])
            {
                self.errors
                    .push((source.clone(), Problem::new("UnmatchedACMEConfig", w)));
            }
        }
    }

    fn add(&mut self, doc: manifest::Document) {
        let source = doc.source.clone();
        // Names and namespaces become paths under the state directory: a resource whose
        // namespace or name Kubernetes would refuse is reported and otherwise ignored.
        let id = doc
            .id
            .clone()
            .or_else(|| doc.result.as_ref().ok().map(Resource::id));
        if let Some(id) = &id {
            if let Err(p) = check_identity(id) {
                self.errors.push((source, p));
                return;
            }
        }
        if let (Some(cfg), Ok(Resource::Certificate(c))) = (&doc.legacy_acme, &doc.result) {
            let ns = ns_or_default(c.metadata.namespace.as_deref().unwrap_or_default());
            let cert = format!("{ns}/{}", c.metadata.name);
            self.legacy_acme
                .push((cert, c.spec.issuer_ref.clone(), ns, cfg.clone()));
        }
        match doc.result {
            Ok(r) => self.add_resource(source, r),
            Err(e) => {
                let problem = from_doc(&source, &e);
                match doc.id {
                    Some(id) if id.kind == "Certificate" && !id.name.is_empty() => {
                        let key = (ns_or_default(&id.namespace), id.name.clone());
                        self.insert_cert(
                            key,
                            CertEntry {
                                source,
                                params: Err(problem),
                                labels: BTreeMap::new(),
                            },
                        );
                    }
                    Some(id)
                        if (id.kind == "Issuer" || id.kind == "ClusterIssuer")
                            && !id.name.is_empty() =>
                    {
                        let entry = IssuerEntry {
                            source,
                            issuer: None,
                            kind: Err(problem),
                        };
                        if id.kind == "Issuer" {
                            self.issuers
                                .insert((ns_or_default(&id.namespace), id.name), entry);
                        } else {
                            self.cluster_issuers.insert(id.name, entry);
                        }
                    }
                    _ => self.errors.push((source, problem)),
                }
            }
        }
    }

    fn insert_cert(&mut self, key: Key, entry: CertEntry) {
        if let Some(prev) = self.certificates.get(&key) {
            let p = Problem::new(
                "DuplicateResource",
                format!(
                    "Certificate {}/{} is defined twice: {} and {}",
                    key.0, key.1, prev.source, entry.source
                ),
            );
            self.errors.push((entry.source.clone(), p));
            return;
        }
        self.certificates.insert(key, entry);
    }

    fn add_resource(&mut self, source: String, r: Resource) {
        let id: ResourceId = r.id();
        match r {
            Resource::Certificate(mut c) => {
                let ns = ns_or_default(&id.namespace);
                c.metadata.namespace = Some(ns.clone());
                let params = validate::certificate(&c)
                    .map(Box::new)
                    .map_err(|e| from_fields(&e));
                let labels = std::mem::take(&mut c.metadata.labels);
                self.insert_cert((ns, id.name), CertEntry { source, params, labels });
            }
            Resource::Issuer(mut i) => {
                let ns = ns_or_default(&id.namespace);
                i.metadata.namespace = Some(ns.clone());
                let kind = validate::issuer(&i).map_err(|e| from_fields(&e));
                self.issuers.insert((ns, id.name), IssuerEntry { source, issuer: Some(i), kind });
            }
            Resource::ClusterIssuer(i) => {
                let kind = validate::issuer(&i).map_err(|e| from_fields(&e));
                self.cluster_issuers.insert(id.name, IssuerEntry { source, issuer: Some(i), kind });
            }
            Resource::Secret(s) => {
                let key = (ns_or_default(&id.namespace), id.name.clone());
                if let Err(e) = validate::check_name(&id.name, "metadata.name") {
                    self.errors.push((source, Problem::new(e.reason, format!("Secret: {e}"))));
                    return;
                }
                match decode_secret(&s) {
                    Ok(d) => {
                        self.secrets.insert(key, (source, d));
                    }
                    Err(p) => self.errors.push((source.clone(), Problem::new(p.reason, format!("{source}: Secret {}/{}: {}", key.0, key.1, p.message)))),
                }
            }
            Resource::ConfigMap(c) => {
                let key = (ns_or_default(&id.namespace), id.name.clone());
                if let Err(e) = validate::check_name(&id.name, "metadata.name") {
                    self.errors.push((source, Problem::new(e.reason, format!("ConfigMap: {e}"))));
                    return;
                }
                match decode_configmap(&c) {
                    Ok(d) => {
                        self.configmaps.insert(key, (source, d));
                    }
                    Err(p) => self.errors.push((source.clone(), Problem::new(p.reason, format!("{source}: ConfigMap {}/{}: {}", key.0, key.1, p.message)))),
                }
            }
            Resource::Route(mut r) => {
                let ns = ns_or_default(&id.namespace);
                r.metadata.namespace = Some(ns.clone());
                match check_route(&r) {
                    Ok(()) => {
                        self.routes.insert((ns, id.name), (source, r));
                    }
                    Err(m) => self.errors.push((source.clone(), Problem::new("InvalidRoute", format!("{source}: Route {ns}/{}: {m}", id.name)))),
                }
            }
            Resource::ReloadHook(mut h) => {
                let ns = ns_or_default(&id.namespace);
                h.metadata.namespace = Some(ns.clone());
                self.hooks.insert((ns, id.name), (source, h));
            }
            Resource::CertificateRequest(_) => self.errors.push((
                source.clone(),
                Problem::new("Unsupported", format!("{source}: {id}: the local runtime issues Certificates; CertificateRequests are its records, not inputs")),
            )),
        }
    }
}

/// Checks a resource's namespace (an RFC 1123 label) and name (an RFC 1123 subdomain),
/// as the Kubernetes API server does, before either is used as a key or a path.
pub fn check_identity(id: &ResourceId) -> Result<(), Problem> {
    let problem = |e: FieldError| Problem::new(e.reason, format!("{id}: {e}"));
    if !id.namespace.is_empty() {
        validate::check_namespace(&id.namespace, "metadata.namespace").map_err(problem)?;
    }
    if !id.name.is_empty() {
        validate::check_name(&id.name, "metadata.name").map_err(problem)?;
    }
    Ok(())
}

/// What the edge needs of a Route, checked before any of it reaches the proxy's
/// configuration: a host name, a Service name, and a known termination.
pub fn check_route(r: &Route) -> Result<(), String> {
    validate::check_name(&r.metadata.name, "metadata.name").map_err(|e| e.to_string())?;
    if r.spec.host.is_empty() {
        return Err("spec.host: required (the local edge does not make up host names)".into());
    }
    if r.spec.host.starts_with("*.") {
        return Err(format!(
            "spec.host: {:?}: wildcard routes are not served by the local edge",
            r.spec.host
        ));
    }
    validate::check_dns_name(&r.spec.host).map_err(|e| format!("spec.host: {e}"))?;
    if !r.spec.to.kind.is_empty() && r.spec.to.kind != "Service" {
        return Err(format!("spec.to.kind: {:?}: only Service", r.spec.to.kind));
    }
    validate::check_name(&r.spec.to.name, "spec.to.name").map_err(|e| e.to_string())?;
    if let Some(tls) = &r.spec.tls {
        if !tls.is_null() && !tls.is_object() {
            return Err("spec.tls: must be a mapping".into());
        }
        match tls.get("termination").and_then(|t| t.as_str()) {
            Some("edge" | "reencrypt" | "passthrough") => {}
            Some(other) => {
                return Err(format!(
                    "spec.tls.termination: {other:?}: one of edge, reencrypt, passthrough"
                ))
            }
            None if tls.is_null() => {}
            None => return Err("spec.tls.termination: required".into()),
        }
        for field in [
            "certificate",
            "key",
            "caCertificate",
            "destinationCACertificate",
            "insecureEdgeTerminationPolicy",
        ] {
            if tls
                .get(field)
                .is_some_and(|v| !v.is_string() && !v.is_null())
            {
                return Err(format!("spec.tls.{field}: must be a string"));
            }
        }
    }
    Ok(())
}

pub fn ns_or_default(ns: &str) -> String {
    if ns.is_empty() {
        "default".into()
    } else {
        ns.to_string()
    }
}
