//! The local runtime's edge: what OpenShift's router does with Routes, done by a real
//! HAProxy that certwright starts, configures and keeps up to date.
//!
//! - One HTTPS port. Passthrough Routes are picked by SNI and their TLS goes untouched to
//!   the Service; everything else is terminated here, with the Route's certificate picked
//!   by SNI (a default certificate otherwise) and the Route picked by the Host header.
//!   Re-encrypt Routes call the Service over TLS, verifying its certificate against the
//!   Route's destination CA for the name `SERVICE.NAMESPACE.svc`, as the router does; edge
//!   Routes call it over plain HTTP.
//! - A Route certificate's change reaches the running HAProxy through its runtime API
//!   (`set ssl cert` / `commit ssl cert`): no process change, no connection dropped. A
//!   new, changed or removed Route, or a new destination CA (HAProxy 2.6 does not apply
//!   `set ssl ca-file` to server lines: checked, the old CAs stay in force), changes the
//!   configuration: it is checked with `haproxy -c` and loaded by a master-worker reload
//!   (the new worker takes over the listening sockets, the old one finishes its
//!   connections).
//! - Everything lives in `STATE/edge/`: the configuration, one PEM file per Route
//!   certificate and destination CA (named `NAMESPACE_NAME.pem`: `_` is in no Kubernetes
//!   name, so no two Routes share a file), and the sockets.
//!
//! The runtime API is a line protocol over a UNIX socket, a few lines here; no crate
//! speaks it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::Key;
use certwright_engine::Problem;

/// How the edge is set up (`certwright local run --edge-listen ...`).
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// The HTTPS port all Routes share.
    pub listen: SocketAddr,
    /// The haproxy binary.
    pub haproxy: PathBuf,
    /// Where each Service is: (namespace, name) → address. A Route whose Service is not
    /// here is not admitted.
    pub endpoints: BTreeMap<Key, SocketAddr>,
    /// Route certificate changes through a reload instead of the runtime API (to measure
    /// what each drops; not for production).
    pub reload_certificates: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Termination {
    Edge,
    Reencrypt,
    Passthrough,
    /// No `spec.tls`: plain HTTP, which this edge (HTTPS only) does not serve.
    None,
}

impl Termination {
    pub fn parse(tls: Option<&serde_json::Value>) -> Termination {
        match tls
            .and_then(|t| t.get("termination"))
            .and_then(|t| t.as_str())
        {
            Some("edge") => Termination::Edge,
            Some("reencrypt") => Termination::Reencrypt,
            Some("passthrough") => Termination::Passthrough,
            _ => Termination::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Termination::Edge => "edge",
            Termination::Reencrypt => "reencrypt",
            Termination::Passthrough => "passthrough",
            Termination::None => "none",
        }
    }
}

/// One Route as the edge is to serve it (worked out by the runtime from the manifest,
/// the Secrets and the engine's answer).
#[derive(Debug, Clone)]
pub struct EdgeRoute {
    pub key: Key,
    pub host: String,
    pub termination: Termination,
    pub service: String,
    pub backend: Option<SocketAddr>,
    /// Certificate chain then key, PEM (edge and re-encrypt; none: the default one).
    pub certificate: Option<String>,
    /// The destination CA (re-encrypt).
    pub destination_ca: Option<String>,
    /// Why the Route is not served, or served without what it asks for.
    pub problem: Option<Problem>,
}

impl EdgeRoute {
    /// Served at all: a backend, a termination this edge does, and for re-encrypt a CA
    /// to check the Service with.
    pub fn admitted(&self) -> bool {
        self.backend.is_some()
            && self.termination != Termination::None
            && (self.termination != Termination::Reencrypt || self.destination_ca.is_some())
    }

    fn file(&self) -> String {
        format!("{}_{}.pem", self.key.0, self.key.1)
    }
}

/// What the last [`Edge::apply`] did, for status and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Files updated in place through the runtime API.
    pub updated: Vec<String>,
    /// The configuration was (re)loaded.
    pub reloaded: bool,
    /// HAProxy was started.
    pub started: bool,
    /// Why HAProxy is not serving the wanted configuration (it may serve an older one).
    pub error: Option<String>,
}

pub struct Edge {
    opts: EdgeOptions,
    dir: PathBuf,
    child: Option<Child>,
    /// The configuration HAProxy runs, and the content of each file it loaded.
    config: Option<String>,
    loaded: BTreeMap<PathBuf, String>,
    /// Times the configuration was loaded by a reload and files updated in place.
    pub reloads: u64,
    pub updates: u64,
    /// The last configuration HAProxy refused (or did not start with), why, and when: it
    /// is not tried again for a while unless something changes.
    refused: Option<(String, String, Instant)>,
}

/// How long a refused configuration waits before it is tried again as it is.
const RETRY: Duration = Duration::from_secs(10);

fn io_context<'a>(
    what: &str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> std::io::Error + 'a {
    let what = what.to_string();
    move |e| std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

impl Edge {
    /// Prepares `dir` (mode 0700: it holds private keys) and the default certificate,
    /// after checking that the haproxy binary runs.
    pub fn new(opts: EdgeOptions, dir: PathBuf) -> std::io::Result<Edge> {
        let version = Command::new(&opts.haproxy)
            .arg("-v")
            .stdin(Stdio::null())
            .output();
        match version {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout);
                tracing::info!(haproxy = %opts.haproxy.display(), version = v.lines().next().unwrap_or("").trim(), "edge");
            }
            Ok(o) => {
                return Err(std::io::Error::other(format!(
                    "{} -v exited with {}",
                    opts.haproxy.display(),
                    o.status
                )))
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot run {} (install HAProxy, or give --haproxy PATH): {e}",
                        opts.haproxy.display()
                    ),
                ))
            }
        }
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_context("creating", &dir))?;
        // HAProxy's configuration names files by absolute path, unquoted: a path it would
        // split or misread is refused here rather than there.
        let dir = std::fs::canonicalize(&dir).map_err(io_context("resolving", &dir))?;
        match dir.to_str() {
            Some(d) if d.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c)) && d.len() < 80 => {}
            _ => {
                return Err(std::io::Error::other(format!(
                    "{}: the edge needs a state directory path of letters, digits and /._-+@ only, under 80 bytes (it names sockets there)",
                    dir.display()
                )))
            }
        }
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for sub in ["certs", "ca"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join(sub))?;
        }
        let default = dir.join("default.pem");
        if std::fs::read(&default)
            .map(|b| b.is_empty())
            .unwrap_or(true)
        {
            write_file(
                &default,
                &default_certificate().map_err(std::io::Error::other)?,
            )?;
        }
        Ok(Edge {
            opts,
            dir,
            child: None,
            config: None,
            loaded: BTreeMap::new(),
            reloads: 0,
            updates: 0,
            refused: None,
        })
    }

    fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The HAProxy process id, while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        self.alive()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    tracing::error!(%status, "haproxy exited; it is started again");
                    self.child = None;
                    self.config = None;
                    false
                }
                Err(_) => false,
            },
            None => false,
        }
    }

    /// Makes HAProxy serve `routes`: starts it, updates certificates in place, or reloads
    /// the configuration, whichever the change needs.
    pub fn apply(&mut self, routes: &[EdgeRoute]) -> Applied {
        let mut out = Applied::default();
        let served: Vec<&EdgeRoute> = routes.iter().filter(|r| r.admitted()).collect();
        let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
        for r in &served {
            if let (Some(pem), Termination::Edge | Termination::Reencrypt) =
                (&r.certificate, r.termination)
            {
                files.insert(self.dir.join("certs").join(r.file()), pem.clone());
            }
            if let (Some(ca), Termination::Reencrypt) = (&r.destination_ca, r.termination) {
                files.insert(self.dir.join("ca").join(r.file()), ca.clone());
            }
        }
        let config = render(&self.dir, self.opts.listen, &served);
        let crt = crt_list(&self.dir, &served);
        // What only a reload changes: the configuration, the crt-list it loads, and the
        // destination CAs (HAProxy 2.6 takes `set ssl ca-file` for bind lines only: a
        // server line keeps verifying against the CAs it started with).
        let mut topology = format!("{config}\n{crt}");
        for (path, content) in files
            .iter()
            .filter(|(p, _)| p.starts_with(self.dir.join("ca")))
        {
            topology.push_str(&format!("\n{}\n{content}", path.display()));
        }
        let running = self.alive();
        let in_place = !self.opts.reload_certificates || self.loaded == files;
        if running
            && in_place
            && self.config.as_deref() == Some(topology.as_str())
            && self.loaded.keys().eq(files.keys())
        {
            // Same Routes and CAs: only Route certificates may have changed.
            let changed: Vec<(&PathBuf, &String)> = files
                .iter()
                .filter(|(p, c)| self.loaded.get(*p) != Some(*c))
                .collect();
            for (path, content) in changed {
                let result = write_file(path, content)
                    .map_err(|e| e.to_string())
                    .and_then(|()| self.update_in_place(path, content));
                match result {
                    Ok(()) => {
                        self.loaded.insert(path.clone(), content.clone());
                        self.updates += 1;
                        out.updated.push(
                            path.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        );
                    }
                    Err(e) => {
                        // The file on disk is new: a reload picks it up.
                        tracing::warn!(file = %path.display(), error = %e, "in-place update refused; reloading instead");
                        self.config = None;
                        return self.apply(routes);
                    }
                }
            }
            return out;
        }
        if let Some((t, e, at)) = &self.refused {
            if *t == topology && at.elapsed() < RETRY {
                out.error = Some(e.clone());
                return out;
            }
        }
        let result = self.load(&topology, &config, &crt, &files, running);
        match &result {
            Ok(()) => self.refused = None,
            Err(e) => self.refused = Some((topology.clone(), e.clone(), Instant::now())),
        }
        match result {
            Ok(()) if running => {
                out.reloaded = true;
                self.reloads += 1;
            }
            Ok(()) => out.started = true,
            Err(e) => out.error = Some(e),
        }
        out
    }

    /// Writes the files and the configuration, checks it, then starts or reloads.
    fn load(
        &mut self,
        topology: &str,
        config: &str,
        crt: &str,
        files: &BTreeMap<PathBuf, String>,
        running: bool,
    ) -> Result<(), String> {
        let crt_path = self.dir.join("crt-list");
        for (path, content) in files.iter().chain([(&crt_path, &crt.to_string())]) {
            write_file(path, content).map_err(|e| e.to_string())?;
        }
        let cfg_path = self.dir.join("haproxy.cfg");
        let next = self.dir.join("haproxy.cfg.next");
        write_file(&next, config).map_err(|e| e.to_string())?;
        if let Err(e) = self.check(&next) {
            tracing::error!(error = %e, "the edge configuration was refused; the previous one stays");
            return Err(e);
        }
        std::fs::rename(&next, &cfg_path)
            .map_err(|e| format!("installing {}: {e}", cfg_path.display()))?;
        let result = if running {
            self.reload()
        } else {
            self.start(&cfg_path)
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "the edge did not take the configuration");
            return result;
        }
        self.config = Some(topology.to_string());
        // Files of Routes gone stay until the configuration that named them is gone too:
        // now.
        for old in self.loaded.keys() {
            if !files.contains_key(old) {
                let _ = std::fs::remove_file(old);
            }
        }
        self.loaded = files.clone();
        Ok(())
    }

    /// `haproxy -c`: the configuration and every file it names load.
    fn check(&self, cfg: &Path) -> Result<(), String> {
        let out = Command::new(&self.opts.haproxy)
            .arg("-c")
            .arg("-f")
            .arg(cfg)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.opts.haproxy.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            let alerts: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ALERT") && !l.contains("Fatal errors found"))
                .map(str::trim)
                .collect();
            Err(format!(
                "haproxy -c refused the configuration: {}",
                if alerts.is_empty() {
                    text.trim().to_string()
                } else {
                    alerts.join("; ")
                }
            ))
        }
    }

    fn start(&mut self, cfg: &Path) -> Result<(), String> {
        let _ = std::fs::remove_file(self.admin_socket());
        let child = Command::new(&self.opts.haproxy)
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.opts.haproxy.display()))?;
        tracing::info!(pid = child.id(), listen = %self.opts.listen, "edge started (haproxy)");
        // HAProxy's own messages join certwright's log, one event per line.
        let mut child = child;
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    let line = line.trim();
                    if line.contains("[ALERT]") {
                        tracing::error!(target: "haproxy", "{line}");
                    } else if !line.is_empty() {
                        tracing::info!(target: "haproxy", "{line}");
                    }
                }
            });
        }
        self.child = Some(child);
        self.wait_for_worker(None)
    }

    /// Master-worker reload (SIGUSR2 to the master): a new worker with the new
    /// configuration takes over the listening sockets; the old one finishes its
    /// connections and exits.
    fn reload(&mut self) -> Result<(), String> {
        let before = self.worker_pid();
        let Some(child) = &self.child else {
            return Err("haproxy is not running".into());
        };
        let pid =
            rustix::process::Pid::from_raw(child.id() as i32).ok_or("no haproxy process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::USR2)
            .map_err(|e| format!("signalling haproxy: {e}"))?;
        self.wait_for_worker(before)
    }

    /// Waits until a worker answers on the admin socket (one other than `old`).
    fn wait_for_worker(&mut self, old: Option<String>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = self.worker_pid() {
                if Some(&pid) != old.as_ref() {
                    return Ok(());
                }
            }
            if !self.alive() {
                return Err("haproxy exited (its messages are above)".into());
            }
            if Instant::now() > deadline {
                return Err("haproxy's worker did not answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn worker_pid(&self) -> Option<String> {
        let info = self.command("show info\n").ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .map(str::to_owned)
    }

    /// One runtime API command (the connection closes after the answer).
    fn command(&self, cmd: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(self.admin_socket())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(cmd.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// `set ssl cert PATH <<` with the new content, then `commit`.
    fn update_in_place(&self, path: &Path, content: &str) -> Result<(), String> {
        let kind = "cert";
        let p = path.display();
        let mut payload = content.trim_end().to_string();
        payload.push_str("\n\n");
        let set = self
            .command(&format!("set ssl {kind} {p} <<\n{payload}"))
            .map_err(|e| e.to_string())?;
        if !set.to_ascii_lowercase().contains("transaction") {
            return Err(format!("set ssl {kind}: {}", first_line(&set)));
        }
        let commit = self
            .command(&format!("commit ssl {kind} {p}\n"))
            .map_err(|e| e.to_string())?;
        if !commit.contains("Success!") {
            let _ = self.command(&format!("abort ssl {kind} {p}\n"));
            return Err(format!("commit ssl {kind}: {}", first_line(&commit)));
        }
        Ok(())
    }

    /// Stops HAProxy: soft stop (SIGUSR1: listeners close, idle connections close,
    /// requests in flight finish), then SIGTERM after 3 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::USR1);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    tracing::info!("edge stopped");
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = child.wait();
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no answer")
}

/// Written beside, then renamed over: HAProxy never reads half a file.
fn write_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_context("writing", &tmp))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).map_err(io_context("installing", path))
}

/// The certificate served to a host no Route (or no Route certificate) covers, as the
/// router's default certificate.
fn default_certificate() -> Result<String, String> {
    use certwright_pki::cert::{self, Profile, Signer, Validity};
    use certwright_pki::{pem, KeyAlgorithm, KeyEncoding, PrivateKey};
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(certwright_pki::Curve::P256))
        .map_err(|e| e.to_string())?;
    let profile = Profile {
        dns_names: vec!["certwright-edge-default".into()],
        ..Default::default()
    };
    let csr = cert::parse_csr(&cert::build_csr(&profile, &key).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let validity = Validity {
        not_before: now - 60,
        not_after: now + 10 * 365 * 86_400,
    };
    let der = cert::sign_csr(
        &csr,
        false,
        &validity,
        &cert::random_serial(),
        &Signer::SelfSigned(&key),
        None,
        &[],
    )
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{}{}",
        pem::encode("CERTIFICATE", &der),
        key.to_pem(KeyEncoding::Pkcs8).map_err(|e| e.to_string())?
    ))
}

/// The HAProxy configuration for the admitted Routes. Every name in it was validated
/// (DNS names, Kubernetes names) before it got here; paths are the state directory's.
fn render(dir: &Path, listen: SocketAddr, routes: &[&EdgeRoute]) -> String {
    use std::fmt::Write as _;
    let d = dir.display();
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Written by certwright's local runtime from Route manifests; edits are overwritten."
    );
    let _ = writeln!(c, "global");
    let _ = writeln!(
        c,
        "    stats socket {d}/admin.sock mode 600 level admin expose-fd listeners"
    );
    let _ = writeln!(c, "    ssl-default-bind-options ssl-min-ver TLSv1.2");
    let _ = writeln!(c, "    ssl-server-verify required");
    let _ = writeln!(c, "    hard-stop-after 60s");
    // Sessions that end abnormally (a refused backend certificate, a client gone
    // mid-request) are logged, to stderr, which certwright's log takes in.
    let _ = writeln!(c, "    log stderr format short local0 info");
    let _ = writeln!(c, "defaults");
    let _ = writeln!(c, "    log global");
    let _ = writeln!(c, "    option httplog");
    let _ = writeln!(c, "    option dontlog-normal");
    // A reload's old worker does not close idle kept-alive connections under a client
    // about to send on them: it answers their next request with `Connection: close`.
    let _ = writeln!(c, "    option idle-close-on-response");
    let _ = writeln!(c, "    mode http");
    let _ = writeln!(c, "    timeout connect 5s");
    let _ = writeln!(c, "    timeout client 30s");
    let _ = writeln!(c, "    timeout server 30s");
    let _ = writeln!(c, "    timeout http-keep-alive 30s");
    let _ = writeln!(c, "    http-reuse safe");
    // The public port: passthrough by SNI, the rest to the terminating frontend.
    let _ = writeln!(c, "frontend public_ssl");
    let _ = writeln!(c, "    mode tcp");
    let _ = writeln!(c, "    bind {listen}");
    let _ = writeln!(c, "    tcp-request inspect-delay 5s");
    let _ = writeln!(
        c,
        "    tcp-request content accept if {{ req_ssl_hello_type 1 }}"
    );
    for r in routes
        .iter()
        .filter(|r| r.termination == Termination::Passthrough)
    {
        let _ = writeln!(
            c,
            "    use_backend be_tcp_{}_{} if {{ req_ssl_sni -i {} }}",
            r.key.0, r.key.1, r.host
        );
    }
    let _ = writeln!(c, "    default_backend be_terminate");
    let _ = writeln!(c, "backend be_terminate");
    let _ = writeln!(c, "    mode tcp");
    let _ = writeln!(
        c,
        "    server terminate unix@{d}/terminate.sock send-proxy-v2"
    );
    let _ = writeln!(c, "frontend fe_terminate");
    let _ = writeln!(c, "    bind unix@{d}/terminate.sock mode 600 accept-proxy ssl crt-list {d}/crt-list alpn http/1.1");
    let _ = writeln!(c, "    http-request set-header X-Forwarded-Proto https");
    let _ = writeln!(
        c,
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower"
    );
    for r in routes
        .iter()
        .filter(|r| matches!(r.termination, Termination::Edge | Termination::Reencrypt))
    {
        let _ = writeln!(
            c,
            "    use_backend be_{}_{}_{} if {{ var(txn.host) -m str {} }}",
            r.termination.as_str(),
            r.key.0,
            r.key.1,
            r.host
        );
    }
    let _ = writeln!(c, "    default_backend be_no_route");
    let _ = writeln!(c, "backend be_no_route");
    let _ = writeln!(c, "    http-request return status 503 content-type text/plain string \"no route for this host\\n\"");
    for r in routes {
        let Some(addr) = r.backend else { continue };
        let (ns, name) = (&r.key.0, &r.key.1);
        match r.termination {
            Termination::Passthrough => {
                let _ = writeln!(c, "backend be_tcp_{ns}_{name}");
                let _ = writeln!(c, "    mode tcp");
                let _ = writeln!(c, "    server ep {addr}");
            }
            Termination::Edge => {
                let _ = writeln!(c, "backend be_edge_{ns}_{name}");
                let _ = writeln!(c, "    server ep {addr}");
            }
            Termination::Reencrypt => {
                let svc = format!("{}.{ns}.svc", r.service);
                let _ = writeln!(c, "backend be_reencrypt_{ns}_{name}");
                let _ = writeln!(c, "    server ep {addr} ssl verify required ca-file {d}/ca/{} verifyhost {svc} sni str({svc})", r.file());
            }
            Termination::None => {}
        }
    }
    c
}

/// The crt-list HAProxy's terminating frontend loads: the default certificate first, then
/// each Route's, for its host.
fn crt_list(dir: &Path, routes: &[&EdgeRoute]) -> String {
    let mut out = format!("{}/default.pem\n", dir.display());
    for r in routes.iter().filter(|r| {
        r.certificate.is_some()
            && matches!(r.termination, Termination::Edge | Termination::Reencrypt)
    }) {
        out.push_str(&format!(
            "{}/certs/{} {}\n",
            dir.display(),
            r.file(),
            r.host
        ));
    }
    out
}
