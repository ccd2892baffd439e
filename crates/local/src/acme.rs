//! The local runtime's ACME side: the ACME service on a small tokio runtime of its own,
//! the HTTP-01 listener (`--acme-http01-address`), and the wake-ups that orders and
//! account registrations send back to the reconcile loop.

use crate::model::Key;
use certwright_acme::{Config, Service, Wake};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// ACME settings of the local runtime.
#[derive(Debug, Clone, Default)]
pub struct AcmeOptions {
    /// Serve HTTP-01 tokens here.
    pub http01_address: Option<SocketAddr>,
    /// What every ACME issuer shares (orders per hour, DNS-01 nameservers, propagation
    /// timeout), the same settings as the operator's.
    pub config: Config,
}

/// What orders and registrations asked to look at again.
#[derive(Debug, Default)]
pub struct Wakes {
    pub certificates: BTreeSet<Key>,
    /// An issuer's account registration finished.
    pub issuers: bool,
}

/// The ACME service, its runtime and its listener.
pub struct LocalAcme {
    _rt: tokio::runtime::Runtime,
    pub service: Service,
    wakes: Arc<Mutex<Wakes>>,
}

impl LocalAcme {
    /// Starts the service; binds the HTTP-01 listener first, so a bad address fails here.
    /// `in_flight`: the issuer states of pending requests, whose HTTP-01 tokens are
    /// served again before the listener accepts anything (the CA may be validating
    /// them across the restart).
    pub fn start<'a>(
        opts: &AcmeOptions,
        in_flight: impl Iterator<Item = &'a serde_json::Value>,
    ) -> std::io::Result<LocalAcme> {
        let listener = opts
            .http01_address
            .map(certwright_acme::solve::bind_http01)
            .transpose()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("certwright-acme")
            .enable_all()
            .build()?;
        let wakes: Arc<Mutex<Wakes>> = Arc::default();
        let w = wakes.clone();
        let waker = Arc::new(move |wake: Wake| {
            if let Ok(mut w) = w.lock() {
                match wake {
                    Wake::Issuer(_) => w.issuers = true,
                    Wake::Certificate(subject) => {
                        if let Some((ns, name)) = subject.split_once('/') {
                            w.certificates.insert((ns.to_string(), name.to_string()));
                        }
                    }
                }
            }
        });
        let service = Service::new(rt.handle().clone(), opts.config.clone(), waker, None);
        let tokens = service.tokens();
        for state in in_flight {
            let rec = certwright_acme::OrderRecord::from_state(state);
            for (token, key) in rec.http01_tokens() {
                tokens.insert(token, key);
            }
        }
        if let Some(l) = listener {
            let addr = l.local_addr()?;
            let tokens = service.tokens();
            let _guard = rt.enter();
            let l = tokio::net::TcpListener::from_std(l)?;
            rt.spawn(certwright_acme::solve::serve_http01(l, tokens));
            tracing::info!(%addr, "serving ACME HTTP-01 tokens");
        }
        Ok(LocalAcme {
            _rt: rt,
            service,
            wakes,
        })
    }

    /// Takes the wake-ups that arrived since the last call.
    pub fn take_wakes(&self) -> Wakes {
        self.wakes
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Whether an account registration or an order is still going.
    pub fn busy(&self) -> bool {
        self.service.busy()
    }
}
