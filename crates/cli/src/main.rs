//! The `certwright` binary: parses flags and calls the libraries.

mod convert;
mod inspect;
mod logging;
mod renew;
mod status;
mod text;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "certwright",
    version,
    about = "Issues, converts, delivers and rolls out certificates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The local runtime: manifests from files, secrets as directories.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Print the status of a local runtime's certificates.
    Status {
        /// The state directory of `local run`.
        #[arg(long)]
        state: PathBuf,
        /// Output format: table or json.
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Describe a certificate, key or keystore file, or a secret directory.
    Inspect {
        path: PathBuf,
        /// Keystore password (default: the secret's cert-utils annotation, else changeme).
        #[arg(long)]
        password: Option<String>,
    },
    /// Ask for new certificates now: in a local state directory (--state), or in the
    /// cluster of the current kubeconfig (the Issuing condition, as `cmctl renew` sets it).
    Renew {
        /// Certificates to renew.
        names: Vec<String>,
        /// Their namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Every Certificate of the namespace.
        #[arg(long)]
        all: bool,
        /// Every Certificate of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// A local runtime's state directory (default: the cluster).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions (cert-manager.io/v1) generated from the types.
    Crds,
    /// Run in a Kubernetes cluster (kubeconfig from KUBECONFIG, ~/.kube/config, or in-cluster).
    Operator(Box<OperatorArgs>),
    /// Print the cert-manager.io/v1 equivalent of manifests (legacy v1alpha1 converted).
    Convert {
        /// Manifest files or directories (.yaml, .yml, .json), repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Also read manifests in subdirectories.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Reconcile the manifests under the given paths into the state directory.
    Run(Box<LocalRunArgs>),
}

#[derive(clap::Args)]
struct LocalRunArgs {
    /// Manifest files or directories (.yaml, .yml, .json), repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    paths: Vec<PathBuf>,
    /// Also read manifests in subdirectories.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// State directory: secrets/, status/, requests/.
    #[arg(long)]
    state: PathBuf,
    /// Reconcile once and exit: 0 only if every Certificate is Ready.
    #[arg(long)]
    once: bool,
    /// Namespace holding ClusterIssuers' secrets.
    #[arg(long, default_value = "cert-manager")]
    cluster_resource_namespace: String,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Skip fsync (faster; a power cut may lose the latest writes).
    #[arg(long)]
    no_fsync: bool,
    /// Refuse ReloadHooks' `command` (hook manifests then cannot run programs as this
    /// user); signal hooks still work.
    #[arg(long)]
    no_command_hooks: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format: text (time LEVEL message key=value...) or json (one object per line).
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Honour Issuers' certwright.io/test-issuer annotation (for certwright's own tests).
    #[arg(long, hide = true)]
    allow_test_issuers: bool,
    /// Serve ACME HTTP-01 challenge tokens on this address (HOST:PORT); the CA must reach
    /// it as port 80 of every name it validates.
    #[arg(long, value_name = "HOST:PORT")]
    acme_http01_address: Option<std::net::SocketAddr>,
    /// With --once: how long to wait for ACME orders to finish (Go duration).
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    acme: AcmeArgs,
    /// Serve the Route manifests on this HTTPS address (HOST:PORT) with HAProxy, as
    /// OpenShift's router does (not with --once).
    #[arg(long, value_name = "HOST:PORT")]
    edge_listen: Option<std::net::SocketAddr>,
    /// The haproxy binary the edge runs.
    #[arg(long, default_value = "haproxy", value_name = "PATH")]
    haproxy: PathBuf,
    /// Where a Service is (Routes name Services): NAMESPACE/SERVICE=HOST:PORT, repeatable.
    #[arg(long = "endpoint", value_name = "NAMESPACE/SERVICE=HOST:PORT", value_parser = endpoint)]
    endpoints: Vec<((String, String), std::net::SocketAddr)>,
    /// Route certificate changes through a HAProxy reload instead of its runtime API (for
    /// bench/rotation.sh's comparison only).
    #[arg(long, hide = true)]
    edge_reload_certificates: bool,
}

/// `--endpoint NAMESPACE/SERVICE=HOST:PORT` (no namespace: `default`).
fn endpoint(s: &str) -> Result<((String, String), std::net::SocketAddr), String> {
    let (svc, addr) = s
        .split_once('=')
        .ok_or("expected NAMESPACE/SERVICE=HOST:PORT")?;
    let (ns, name) = svc.split_once('/').unwrap_or(("default", svc));
    certwright_api::validate::check_namespace(ns, "namespace").map_err(|e| e.to_string())?;
    certwright_api::validate::check_name(name, "service").map_err(|e| e.to_string())?;
    let addr = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    Ok(((ns.to_string(), name.to_string()), addr))
}

/// ACME flags, the same for both runtimes (the DNS-01 ones with cert-manager's names).
#[derive(clap::Args, Clone)]
struct AcmeArgs {
    /// New ACME orders per Certificate per hour, at most.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    acme_max_orders_per_hour: u32,
    /// Recursive nameservers (HOST:PORT,...) that DNS-01 finds zones and their
    /// authoritative servers with (default: those of /etc/resolv.conf).
    #[arg(long, value_name = "HOST:PORT,...", value_parser = nameserver_list)]
    dns01_recursive_nameservers: Option<Nameservers>,
    /// Check DNS-01 propagation with the recursive nameservers only, not the zone's
    /// authoritative servers.
    #[arg(long)]
    dns01_recursive_nameservers_only: bool,
    /// How long a DNS-01 record may take to be served by the servers checked before the
    /// order fails (Go duration).
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    dns01_propagation_timeout: std::time::Duration,
}

impl AcmeArgs {
    fn config(&self) -> certwright_acme::Config {
        let mut c = certwright_acme::Config {
            max_orders_per_hour: self.acme_max_orders_per_hour,
            propagation_timeout: self.dns01_propagation_timeout,
            ..Default::default()
        };
        if let Some(ns) = &self.dns01_recursive_nameservers {
            c.nameservers.recursive = ns.0.clone();
        }
        c.nameservers.recursive_only = self.dns01_recursive_nameservers_only;
        c
    }
}

/// A parsed `--dns01-recursive-nameservers` (one value holding the list).
#[derive(Clone, Debug)]
struct Nameservers(Vec<std::net::SocketAddr>);

fn nameserver_list(s: &str) -> Result<Nameservers, String> {
    certwright_acme::dns::Nameservers::parse_list(s).map(Nameservers)
}

/// A Go duration flag value (`90s`, `5m`, `1h30m`).
fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    certwright_api::duration::parse(s).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Namespace holding ClusterIssuers' secrets.
    #[arg(long, default_value = "cert-manager")]
    cluster_resource_namespace: String,
    /// Watch one namespace only (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Address for /metrics, /healthz and /readyz ("" to disable).
    #[arg(long, default_value = "0.0.0.0:9402")]
    metrics_address: String,
    /// Reconcile only while holding the Lease `certwright` (for several replicas).
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else certwright).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Least severe level logged: debug, info, warn, error.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format: text (time LEVEL message key=value...) or json (one object per line).
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Reconciles in flight per controller; bounds memory when much needs work at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// Honour Issuers' certwright.io/test-issuer annotation (for certwright's own tests).
    #[arg(long, hide = true)]
    allow_test_issuers: bool,
    /// Serve ACME HTTP-01 tokens on this address (every replica serves every token).
    #[arg(long, value_name = "HOST:PORT")]
    acme_http01_address: Option<std::net::SocketAddr>,
    /// The operator's Service in front of --acme-http01-address: HTTP-01 solver Services
    /// route to its ready addresses (NAMESPACE/NAME).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = namespaced_name)]
    acme_http01_service: Option<(String, String)>,
    #[command(flatten)]
    acme: AcmeArgs,
    #[command(flatten)]
    webhook: WebhookArgs,
    /// What to do besides cert-manager's work, comma-separated: cainjector (CA
    /// injection), keystores (cert-utils keystores on annotated Secrets and ConfigMaps),
    /// reloader (rollouts of workloads with Reloader's annotations), routes (cert-utils
    /// Route annotations), shims (Certificates for Ingresses and Routes annotated with an
    /// issuer). Empty: none of them.
    #[arg(long, value_name = "LIST", default_value = "cainjector,keystores,reloader,routes,shims", value_parser = certwright_operator::Capabilities::parse)]
    enable: certwright_operator::Capabilities,
    #[command(flatten)]
    rollouts: RolloutArgs,
}

/// Rollouts of workloads following a changed Secret or ConfigMap (Reloader's annotations).
#[derive(clap::Args)]
struct RolloutArgs {
    /// How a rollout is made, as Reloader's flag: env-vars (a STAKATER_* variable on the
    /// container) or annotations (reloader.stakater.com/last-reloaded-from on the pod
    /// template).
    #[arg(long, default_value = "env-vars", value_parser = certwright_engine::rollout::Strategy::parse)]
    reload_strategy: certwright_engine::rollout::Strategy,
    /// Wait this long after a change is first seen, then roll out once with every change
    /// made meanwhile (Go duration).
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    rollout_debounce: std::time::Duration,
    /// Rollouts per minute over all workloads; the rest wait their turn (0: no limit).
    #[arg(long, default_value_t = 60)]
    rollouts_per_minute: u32,
    /// How long a workload whose pods are not yet updated from its previous rollout is
    /// left before it is rolled out again anyway (Go duration).
    #[arg(long, default_value = "10m", value_parser = go_duration)]
    rollout_wait: std::time::Duration,
}

impl RolloutArgs {
    fn config(&self) -> certwright_operator::RolloutConfig {
        certwright_operator::RolloutConfig {
            strategy: self.reload_strategy,
            debounce: self.rollout_debounce,
            per_minute: self.rollouts_per_minute,
            wait: self.rollout_wait,
        }
    }
}

/// The admission webhooks (validation at apply time, the requester on CertificateRequests).
#[derive(clap::Args)]
struct WebhookArgs {
    /// Serve the admission webhooks on this address (every replica serves them).
    #[arg(long, value_name = "HOST:PORT")]
    webhook_address: Option<std::net::SocketAddr>,
    /// The Service in front of --webhook-address (NAMESPACE/NAME): its DNS names go into
    /// the serving certificate.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = namespaced_name)]
    webhook_service: Option<(String, String)>,
    /// Another name or IP address for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME_OR_IP")]
    webhook_host: Vec<String>,
    /// The Secret holding the webhook's CA (NAMESPACE/NAME; default: certwright-webhook-ca
    /// in the Service's namespace, else $POD_NAMESPACE, else certwright).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = namespaced_name)]
    webhook_ca_secret: Option<(String, String)>,
    /// The Mutating- and ValidatingWebhookConfiguration whose caBundle is kept current.
    #[arg(long, default_value = "certwright-webhook")]
    webhook_configuration: String,
    /// Life of each replica's serving certificate (replaced at two thirds; Go duration).
    #[arg(long, default_value = "168h", value_parser = go_duration)]
    webhook_certificate_duration: std::time::Duration,
    /// Life of the webhook's CA (replaced at two thirds; Go duration).
    #[arg(long, default_value = "8760h", value_parser = go_duration)]
    webhook_ca_duration: std::time::Duration,
}

impl WebhookArgs {
    fn config(&self) -> Option<certwright_operator::webhook::WebhookConfig> {
        let address = self.webhook_address?;
        let mut hosts = Vec::new();
        if let Some((ns, name)) = &self.webhook_service {
            hosts.extend([
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
                format!("{name}.{ns}"),
                name.clone(),
            ]);
        }
        hosts.extend(self.webhook_host.iter().cloned());
        let namespace = self
            .webhook_service
            .as_ref()
            .map(|(ns, _)| ns.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "certwright".into());
        Some(certwright_operator::webhook::WebhookConfig {
            address,
            hosts,
            ca_secret: self
                .webhook_ca_secret
                .clone()
                .unwrap_or((namespace, "certwright-webhook-ca".into())),
            configuration: self.webhook_configuration.clone(),
            leaf_duration: self.webhook_certificate_duration,
            ca_duration: self.webhook_ca_duration,
        })
    }
}

/// A `NAMESPACE/NAME` flag value.
fn namespaced_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Local {
            command: LocalCommand::Run(args),
        } => local_run(*args),
        Command::Status { state, output } => status::print(&state, &output),
        Command::Inspect { path, password } => inspect::run(&path, password.as_deref()),
        Command::Convert { files, recursive } => convert::run(&files, recursive),
        Command::Operator(args) => operator(*args),
        Command::Renew {
            names,
            namespace,
            all,
            all_namespaces,
            state,
        } => {
            let sel = renew::Selection {
                names: &names,
                namespace: &namespace,
                all,
                all_namespaces,
            };
            match state {
                Some(dir) => renew::local(&dir, &sel)?,
                None => renew::cluster(&sel)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds => {
            print!("{}", certwright_api::crds::yaml());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `certwright local run`.
fn local_run(args: LocalRunArgs) -> Result<ExitCode> {
    let LocalRunArgs {
        paths,
        recursive,
        state,
        once,
        cluster_resource_namespace,
        workers,
        no_fsync,
        no_command_hooks,
        log_level,
        log_format,
        allow_test_issuers,
        acme_http01_address,
        timeout,
        acme,
        edge_listen,
        haproxy,
        endpoints,
        edge_reload_certificates,
    } = args;
    logging::init(&log_level, &log_format)?;
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let mut rt = certwright_local::Runtime::new(certwright_local::Options {
        paths,
        recursive,
        state,
        once,
        cluster_resource_namespace,
        workers,
        durable: !no_fsync,
        no_command_hooks,
        test_issuers: allow_test_issuers,
        clock: Default::default(),
        acme: certwright_local::acme::AcmeOptions {
            http01_address: acme_http01_address,
            config: acme.config(),
        },
        once_timeout: timeout,
        edge: edge_listen.map(|listen| certwright_local::edge::EdgeOptions {
            listen,
            haproxy,
            endpoints: endpoints.into_iter().collect(),
            reload_certificates: edge_reload_certificates,
        }),
    })?;
    let stop = certwright_local::runtime::stop_flag();
    let summary = rt.run(&stop);
    if once {
        let not_ready: Vec<_> = summary.certificates.iter().filter(|c| !c.ready()).collect();
        for c in &not_ready {
            let r = c.status.condition("Ready").cloned().unwrap_or_default();
            eprintln!(
                "not ready: Certificate {}/{}: {}: {}",
                c.namespace, c.name, r.reason, r.message
            );
        }
        for p in &summary.problems {
            // A document's message starts with its file and line already.
            let message = p
                .message
                .strip_prefix(&format!("{}: ", p.source))
                .unwrap_or(&p.message);
            eprintln!("problem: {}: {}: {}", p.source, p.reason, message);
        }
        let ready = summary.certificates.len() - not_ready.len();
        eprintln!(
            "{ready} of {} certificates ready, {} manifest problems",
            summary.certificates.len(),
            summary.problems.len()
        );
        return Ok(if summary.all_ready() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// `certwright operator`.
fn operator(args: OperatorArgs) -> Result<ExitCode> {
    let OperatorArgs {
        cluster_resource_namespace,
        namespace,
        metrics_address,
        leader_elect,
        leader_election_namespace,
        log_level,
        log_format,
        max_concurrent_reconciles,
        allow_test_issuers,
        acme_http01_address,
        acme_http01_service,
        acme,
        webhook,
        enable,
        rollouts,
    } = args;
    let webhook = webhook.config();
    logging::init(&log_level, &log_format)?;
    let metrics_address = if metrics_address.is_empty() {
        None
    } else {
        Some(metrics_address.parse()?)
    };
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "certwright".into());
    let leader_election = leader_elect.then(|| certwright_operator::leader::LeaseConfig {
        namespace: leader_election_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "certwright".into()),
        name: "certwright".into(),
        identity: instance.clone(),
        duration: std::time::Duration::from_secs(15),
        renew: std::time::Duration::from_secs(5),
    });
    // Key generation and signing run on the blocking pool; more threads than cores
    // would only add stacks and allocator arenas.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(cpus.max(2))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = kube::Client::try_default().await?;
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        certwright_operator::run(client, certwright_operator::Config { cluster_resource_namespace, namespace, metrics_address, instance: instance.clone(), leader_election, max_concurrent_reconciles, test_issuers: allow_test_issuers, acme: acme.config(), acme_http01_address, acme_http01_service, webhook, capabilities: enable, rollouts: rollouts.config() }, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
