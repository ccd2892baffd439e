//! Amazon Route 53 for DNS-01: TXT records changed through the REST API
//! (ChangeResourceRecordSets, GetChange, ListHostedZonesByName, ListResourceRecordSets),
//! requests signed with SigV4 by the `aws-sigv4` crate.
//!
//! The endpoint is `AWS_ENDPOINT_URL_ROUTE_53`, else `AWS_ENDPOINT_URL`, else AWS's, as
//! AWS's own SDKs choose it. A TXT record set may hold several values (a name and its
//! wildcard are validated through the same `_acme-challenge` name): a value is added to
//! what is there and removed from it, never replacing another order's.
//!
//! The responses are small XML documents of which a handful of elements are read; the
//! reader for them ([`elements`]) is a few lines here rather than an XML crate.

use crate::http::{Transport, TransportError};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hyper::Method;
use std::time::{Duration, SystemTime};

const AWS_ENDPOINT: &str = "https://route53.amazonaws.com";
const API: &str = "2013-04-01";

/// Why a Route 53 call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Route53Error {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("Route 53 {action}: HTTP {status}: {code}: {message}")]
    Api {
        action: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("Route 53: {0}")]
    Other(String),
}

/// AWS credentials; the secret never shows in debug output.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A Route 53 client for one solver.
#[derive(Clone, Debug)]
pub struct Route53 {
    pub endpoint: String,
    pub region: String,
    pub hosted_zone_id: Option<String>,
    pub credentials: AwsCredentials,
}

/// The endpoint AWS's SDKs would use for Route 53, from the environment.
pub fn endpoint_from_env() -> String {
    ["AWS_ENDPOINT_URL_ROUTE_53", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| AWS_ENDPOINT.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The text of every `<tag>...</tag>` in `xml`, in order (entities decoded).
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest: &'a str = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One TXT record set: its TTL and unquoted values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtSet {
    pub ttl: u32,
    pub values: Vec<String>,
}

/// The body of a ChangeResourceRecordSets request with one change.
pub fn change_body(action: &str, name: &str, set: &TxtSet) -> String {
    let records: String = set
        .values
        .iter()
        .map(|v| {
            format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                escape(&format!("\"{v}\""))
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Comment>certwright ACME DNS-01</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{}</Name><Type>TXT</Type><TTL>{}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#,
        escape(name),
        set.ttl
    )
}

fn zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

impl Route53 {
    async fn call(
        &self,
        t: &Transport,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
        action: &'static str,
    ) -> Result<String, Route53Error> {
        let url = format!("{}{path_and_query}", self.endpoint);
        let body_bytes = body.unwrap_or_default().into_bytes();
        let identity: Identity = Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            None,
            None,
            "certwright",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("route53")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Route53Error::Other(format!("signing: {e}")))?
            .into();
        let content_type = [("content-type", "application/xml")];
        let headers: &[(&str, &str)] = if body_bytes.is_empty() {
            &[]
        } else {
            &content_type
        };
        let signable = SignableRequest::new(
            method.as_str(),
            url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body_bytes),
        )
        .map_err(|e| Route53Error::Other(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Route53Error::Other(format!("signing: {e}")))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.extend(signed.iter().map(|h| (h.name(), h.value())));
        let body = (!body_bytes.is_empty()).then(|| body_bytes.clone());
        let rsp = t.send(method, &url, &all, body, action).await?;
        let text = String::from_utf8_lossy(&rsp.body).into_owned();
        if !rsp.status.is_success() {
            return Err(Route53Error::Api {
                action,
                status: rsp.status.as_u16(),
                code: elements(&text, "Code")
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
                message: elements(&text, "Message")
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
            });
        }
        Ok(text)
    }

    /// The hosted zone to change: the configured one, else the zone named `zone` (the DNS
    /// zone found for the record), else the longest hosted zone whose name ends `fqdn`.
    pub async fn zone_for(
        &self,
        t: &Transport,
        fqdn: &str,
        zone: Option<&str>,
    ) -> Result<String, Route53Error> {
        if let Some(id) = self.hosted_zone_id.as_deref().filter(|s| !s.is_empty()) {
            return Ok(zone_id(id).to_string());
        }
        let fqdn = format!("{}.", fqdn.trim_end_matches('.'));
        let mut candidates: Vec<String> = Vec::new();
        if let Some(z) = zone {
            candidates.push(format!("{}.", z.trim_end_matches('.')));
        }
        let labels: Vec<&str> = fqdn.trim_end_matches('.').split('.').collect();
        for i in 0..labels.len().saturating_sub(1) {
            candidates.push(format!("{}.", labels[i..].join(".")));
        }
        for c in candidates {
            let xml = self
                .call(
                    t,
                    Method::GET,
                    &format!("/{API}/hostedzonesbyname?dnsname={c}&maxitems=1"),
                    None,
                    "ListHostedZonesByName",
                )
                .await?;
            let ids = elements(&xml, "Id");
            let names = elements(&xml, "Name");
            if let Some((id, _)) = ids
                .iter()
                .zip(names.iter())
                .find(|(_, n)| n.eq_ignore_ascii_case(&c))
            {
                return Ok(zone_id(id).to_string());
            }
        }
        Err(Route53Error::Other(format!(
            "no hosted zone found for {fqdn}"
        )))
    }

    /// The TXT record set at `name`, if any.
    pub async fn get_txt(
        &self,
        t: &Transport,
        zone: &str,
        name: &str,
    ) -> Result<Option<TxtSet>, Route53Error> {
        let xml = self
            .call(
                t,
                Method::GET,
                &format!("/{API}/hostedzone/{zone}/rrset?name={name}&type=TXT&maxitems=1"),
                None,
                "ListResourceRecordSets",
            )
            .await?;
        let Some(set) = elements(&xml, "ResourceRecordSet").into_iter().next() else {
            return Ok(None);
        };
        let same_name = elements(&set, "Name").first().is_some_and(|n| {
            n.trim_end_matches('.')
                .eq_ignore_ascii_case(name.trim_end_matches('.'))
        });
        let is_txt = elements(&set, "Type").first().is_some_and(|t| t == "TXT");
        if !same_name || !is_txt {
            return Ok(None);
        }
        let ttl = elements(&set, "TTL")
            .first()
            .and_then(|t| t.parse().ok())
            .unwrap_or(10);
        let values = elements(&set, "Value")
            .into_iter()
            .map(|v| v.trim_matches('"').to_string())
            .collect();
        Ok(Some(TxtSet { ttl, values }))
    }

    async fn change(
        &self,
        t: &Transport,
        zone: &str,
        action: &str,
        name: &str,
        set: &TxtSet,
    ) -> Result<(), Route53Error> {
        let xml = self
            .call(
                t,
                Method::POST,
                &format!("/{API}/hostedzone/{zone}/rrset"),
                Some(change_body(action, name, set)),
                "ChangeResourceRecordSets",
            )
            .await?;
        let id = elements(&xml, "Id").into_iter().next().unwrap_or_default();
        let id = id.trim_start_matches("/change/").to_string();
        // Wait until the change is INSYNC (every Route 53 server has it), at most 2 min.
        let start = std::time::Instant::now();
        let mut status = elements(&xml, "Status")
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut delay = Duration::from_millis(500);
        while status != "INSYNC" && !id.is_empty() {
            if start.elapsed() > Duration::from_secs(120) {
                return Err(Route53Error::Other(format!(
                    "change {id} not INSYNC after 120s"
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            let xml = self
                .call(
                    t,
                    Method::GET,
                    &format!("/{API}/change/{id}"),
                    None,
                    "GetChange",
                )
                .await?;
            status = elements(&xml, "Status")
                .into_iter()
                .next()
                .unwrap_or_default();
        }
        Ok(())
    }

    /// Adds `value` to the TXT record set at `name`.
    pub async fn add(
        &self,
        t: &Transport,
        zone: &str,
        name: &str,
        value: &str,
    ) -> Result<(), Route53Error> {
        let mut set = self.get_txt(t, zone, name).await?.unwrap_or(TxtSet {
            ttl: 10,
            values: vec![],
        });
        if set.values.iter().any(|v| v == value) {
            return Ok(());
        }
        set.values.push(value.to_string());
        self.change(t, zone, "UPSERT", name, &set).await
    }

    /// Removes `value` from the TXT record set at `name` (the set goes with its last value).
    pub async fn remove(
        &self,
        t: &Transport,
        zone: &str,
        name: &str,
        value: &str,
    ) -> Result<(), Route53Error> {
        let Some(set) = self.get_txt(t, zone, name).await? else {
            return Ok(());
        };
        if !set.values.iter().any(|v| v == value) {
            return Ok(());
        }
        let rest: Vec<String> = set.values.iter().filter(|v| *v != value).cloned().collect();
        if rest.is_empty() {
            self.change(t, zone, "DELETE", name, &set).await
        } else {
            self.change(
                t,
                zone,
                "UPSERT",
                name,
                &TxtSet {
                    ttl: set.ttl,
                    values: rest,
                },
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_change_bodies() {
        let xml =
            "<ChangeInfo><Id>/change/C1</Id><Status>PENDING</Status></ChangeInfo><Id>x&amp;y</Id>";
        assert_eq!(elements(xml, "Id"), vec!["/change/C1", "x&y"]);
        assert_eq!(elements(xml, "Status"), vec!["PENDING"]);
        assert!(elements(xml, "Nope").is_empty());
        assert!(elements("<Id>unterminated", "Id").is_empty());
        let body = change_body(
            "UPSERT",
            "_acme-challenge.example.test.",
            &TxtSet {
                ttl: 10,
                values: vec!["abc".into(), "d<e".into()],
            },
        );
        assert!(body.contains("<Action>UPSERT</Action>"), "{body}");
        // TXT values are quoted, as Route 53 requires; markup is escaped.
        assert!(body.contains("<Value>&quot;abc&quot;</Value>"), "{body}");
        assert!(body.contains("<Value>&quot;d&lt;e&quot;</Value>"), "{body}");
        assert_eq!(elements(&body, "Value"), vec!["\"abc\"", "\"d<e\""]);
    }
}
