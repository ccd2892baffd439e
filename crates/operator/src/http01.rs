//! HTTP-01 tokens on every replica.
//!
//! cert-manager starts a solver pod per challenge behind a Service and an Ingress.
//! certwright serves the tokens from its own pods instead: every replica (leader or not)
//! watches the Challenge objects and answers `/.well-known/acme-challenge/TOKEN` for each
//! HTTP-01 one on `--acme-http01-address`. No pod to schedule, pull and wait for per
//! challenge, nothing left behind when an order is abandoned, and a leader change mid-order
//! needs nothing started again: the tokens are in the Challenges, which every replica
//! already serves. The per-challenge Service and Ingress (see `acme_objects`) route to
//! these pods.
//!
//! The CA validates as soon as it is told to, from several places at once, so the leader
//! does not tell it before the token is served everywhere: a token counts as published once
//! this replica's watch has seen its Challenge marked presented (the Challenge is marked
//! after its Service and Ingress exist), and the other replicas' watches see the same write
//! within the same moment.

use crate::kinds::ChallengeObject;
use certwright_acme::service::Http01Published;
use certwright_acme::Tokens;
use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// What the watch has seen: token by Challenge, and the tokens marked presented.
#[derive(Default)]
struct Seen {
    by_challenge: HashMap<String, (String, String)>,
    presented: HashSet<String>,
}

/// The HTTP-01 tokens of the Challenges in `namespace` (None: all), kept in `tokens`.
pub(crate) struct Watch {
    seen: Arc<RwLock<Seen>>,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        Watch {
            seen: Arc::default(),
        }
    }

    /// Says whether a token is served by every replica (for the ACME service).
    pub(crate) fn published(&self) -> Http01Published {
        let seen = self.seen.clone();
        Http01Published(Arc::new(move |token: &str| {
            seen.read().is_ok_and(|s| s.presented.contains(token))
        }))
    }

    /// Follows the Challenges until the process ends, keeping `tokens` to what they hold.
    pub(crate) async fn run(self, client: Client, namespace: Option<String>, tokens: Tokens) {
        let api: Api<ChallengeObject> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let mut init: Option<Vec<ChallengeObject>> = None;
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(c)) => self.apply(&c, &tokens),
                Ok(watcher::Event::Delete(c)) => self.remove(&key(&c), &tokens),
                Ok(watcher::Event::Init) => init = Some(Vec::new()),
                Ok(watcher::Event::InitApply(c)) => init.get_or_insert_with(Vec::new).push(c),
                Ok(watcher::Event::InitDone) => {
                    let listed = init.take().unwrap_or_default();
                    let keep: HashSet<String> = listed.iter().map(key).collect();
                    let gone: Vec<String> = self
                        .seen
                        .read()
                        .map(|s| {
                            s.by_challenge
                                .keys()
                                .filter(|k| !keep.contains(*k))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    for k in gone {
                        self.remove(&k, &tokens);
                    }
                    for c in &listed {
                        self.apply(c, &tokens);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching ACME Challenges");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn apply(&self, c: &ChallengeObject, tokens: &Tokens) {
        let Ok(obj) = c.object() else { return };
        if obj.spec.type_ != "HTTP-01" || obj.spec.token.is_empty() {
            return;
        }
        let k = key(c);
        let presented = obj.status.as_ref().is_some_and(|s| s.presented);
        let Ok(mut seen) = self.seen.write() else {
            return;
        };
        if let Some((old, _)) = seen.by_challenge.get(&k) {
            if *old != obj.spec.token {
                let old = old.clone();
                tokens.remove(&old);
                seen.presented.remove(&old);
            }
        }
        tokens.insert(&obj.spec.token, &obj.spec.key);
        if presented {
            seen.presented.insert(obj.spec.token.clone());
        } else {
            seen.presented.remove(&obj.spec.token);
        }
        seen.by_challenge
            .insert(k, (obj.spec.token.clone(), obj.spec.key.clone()));
    }

    fn remove(&self, k: &str, tokens: &Tokens) {
        let Ok(mut seen) = self.seen.write() else {
            return;
        };
        if let Some((token, _)) = seen.by_challenge.remove(k) {
            tokens.remove(&token);
            seen.presented.remove(&token);
        }
    }
}

fn key(c: &ChallengeObject) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}
