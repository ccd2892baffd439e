//! DNS for DNS-01: queries (UDP, TCP when truncated), the zone of a name found through the
//! configured recursive nameservers, the zone's authoritative servers, CNAME following,
//! the propagation check, and RFC 2136 updates signed with TSIG. Messages and TSIG are
//! hickory-proto's; the few lines of transport are here.
//!
//! Every query goes to an address the caller gave (the recursive nameservers, the
//! authoritative servers they name, an RFC 2136 primary): the system resolver is never
//! asked, so tests pin every lookup to servers on 127.0.0.1.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordSet, RecordType, TSigner};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the zone's authoritative servers are asked (DNS's port).
pub const AUTHORITATIVE_PORT: u16 = 53;

/// Why a DNS exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    #[error("{server}: {message}")]
    Exchange { server: SocketAddr, message: String },
    #[error("{server}: {name} {rtype}: {rcode}")]
    Rcode {
        server: SocketAddr,
        name: String,
        rtype: String,
        rcode: String,
    },
    #[error("{0}")]
    Other(String),
}

/// The recursive nameservers, as `--dns01-recursive-nameservers` gives them, and whether
/// the propagation check asks only them (`--dns01-recursive-nameservers-only`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nameservers {
    pub recursive: Vec<SocketAddr>,
    pub recursive_only: bool,
}

impl Nameservers {
    /// Reads `HOST:PORT,...` (IP addresses; port 53 when none is given).
    pub fn parse_list(s: &str) -> Result<Vec<SocketAddr>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                certwright_api::acme::parse_nameserver(p)
                    .ok_or_else(|| format!("{p:?} is not an IP address with an optional port"))
            })
            .collect()
    }

    /// The system's nameservers from /etc/resolv.conf, the default when no flag is given
    /// (as cert-manager does).
    pub fn system() -> Vec<SocketAddr> {
        std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| IpAddr::from_str(a.trim()).ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }
}

/// A fully qualified name.
pub fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name.trim_end_matches('.'))
        .map_err(|e| DnsError::Other(format!("{name:?} is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

fn exchange_err(server: SocketAddr, message: impl Into<String>) -> DnsError {
    DnsError::Exchange {
        server,
        message: message.into(),
    }
}

async fn udp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, DnsError> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().map_err(|_| exchange_err(server, "bind"))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| exchange_err(server, "bind"))?
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| exchange_err(server, e.to_string()))?;
    sock.connect(server)
        .await
        .map_err(|e| exchange_err(server, e.to_string()))?;
    sock.send(bytes)
        .await
        .map_err(|e| exchange_err(server, e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .await
        .map_err(|e| exchange_err(server, e.to_string()))?;
    buf.truncate(n);
    Ok(buf)
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, DnsError> {
    let e = |e: std::io::Error| exchange_err(server, e.to_string());
    let mut s = tokio::net::TcpStream::connect(server).await.map_err(e)?;
    let len = u16::try_from(bytes.len()).map_err(|_| exchange_err(server, "message too long"))?;
    s.write_all(&len.to_be_bytes()).await.map_err(e)?;
    s.write_all(bytes).await.map_err(e)?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await.map_err(e)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut buf).await.map_err(e)?;
    Ok(buf)
}

/// Sends a message and reads the answer: UDP, then TCP when the answer is truncated (or
/// at once for a signed update, which must not be cut).
pub async fn exchange(
    server: SocketAddr,
    msg: &Message,
    use_tcp: bool,
) -> Result<Message, DnsError> {
    let bytes = msg
        .to_vec()
        .map_err(|e| exchange_err(server, format!("encoding: {e}")))?;
    let id = msg.metadata.id;
    let run = async {
        let mut raw = if use_tcp {
            tcp(server, &bytes).await?
        } else {
            udp(server, &bytes).await?
        };
        let mut rsp = Message::from_vec(&raw)
            .map_err(|e| exchange_err(server, format!("malformed answer: {e}")))?;
        if rsp.metadata.truncation && !use_tcp {
            raw = tcp(server, &bytes).await?;
            rsp = Message::from_vec(&raw)
                .map_err(|e| exchange_err(server, format!("malformed answer: {e}")))?;
        }
        if rsp.metadata.id != id {
            return Err(exchange_err(
                server,
                "answer to another query (id mismatch)",
            ));
        }
        Ok(rsp)
    };
    tokio::time::timeout(QUERY_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            Err(exchange_err(
                server,
                format!("no answer within {}s", QUERY_TIMEOUT.as_secs()),
            ))
        })
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u16::from_be_bytes(b)
}

/// One query; `recurse` sets RD (for recursive servers).
pub async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    recurse: bool,
) -> Result<Message, DnsError> {
    let mut m = Message::new(random_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = recurse;
    m.add_query(Query::query(name.clone(), rtype));
    let rsp = exchange(server, &m, false).await?;
    match rsp.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(rsp),
        rc => Err(DnsError::Rcode {
            server,
            name: name.to_string(),
            rtype: rtype.to_string(),
            rcode: rc.to_string(),
        }),
    }
}

/// Asks each server in turn until one answers.
async fn ask_any(
    servers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
) -> Result<Message, DnsError> {
    let mut last = DnsError::Other("no recursive nameservers configured".into());
    for s in servers {
        match query(*s, name, rtype, true).await {
            Ok(m) => return Ok(m),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Follows CNAMEs from `name` (cnameStrategy Follow), at most ten.
pub async fn follow_cname(ns: &Nameservers, name: &Name) -> Result<Name, DnsError> {
    let mut cur = name.clone();
    for _ in 0..10 {
        let rsp = ask_any(&ns.recursive, &cur, RecordType::CNAME).await?;
        let next = rsp.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == cur => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(n) => cur = n,
            None => return Ok(cur),
        }
    }
    Err(DnsError::Other(format!("{name}: more than ten CNAMEs")))
}

/// The zone holding `name`: the closest enclosing name with an SOA record, as the
/// recursive nameservers see it.
pub async fn find_zone(ns: &Nameservers, name: &Name) -> Result<Name, DnsError> {
    let mut cur = name.clone();
    // A server failure for one name (a forwarder that knows nothing of it) is not the
    // end: the zone may be further up.
    let mut refused: Option<String> = None;
    loop {
        match ask_any(&ns.recursive, &cur, RecordType::SOA).await {
            Ok(rsp) => {
                let soa = rsp
                    .answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA && r.name == cur);
                if soa && rsp.metadata.response_code == ResponseCode::NoError {
                    return Ok(cur);
                }
            }
            Err(DnsError::Rcode { rcode, server, .. }) => {
                refused.get_or_insert_with(|| format!("{server} answered {rcode} for {cur}"));
            }
            Err(e) => return Err(e),
        }
        if cur.is_root() || cur.num_labels() <= 1 {
            return Err(DnsError::Other(format!(
                "no zone found for {name} (no SOA record up to the top-level domain{})",
                refused.map(|r| format!("; {r}")).unwrap_or_default()
            )));
        }
        cur = cur.base_name();
    }
}

/// The addresses of the zone's authoritative servers (its NS records, resolved through
/// the recursive nameservers), on port 53.
pub async fn authoritative(ns: &Nameservers, zone: &Name) -> Result<Vec<SocketAddr>, DnsError> {
    let rsp = ask_any(&ns.recursive, zone, RecordType::NS).await?;
    let names: Vec<Name> = rsp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for n in names {
        let glue: Vec<IpAddr> = rsp
            .additionals
            .iter()
            .filter(|r| r.name == n)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        let addrs = if glue.is_empty() {
            let a = ask_any(&ns.recursive, &n, RecordType::A).await?;
            a.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect()
        } else {
            glue
        };
        out.extend(
            addrs
                .into_iter()
                .map(|ip| SocketAddr::new(ip, AUTHORITATIVE_PORT)),
        );
    }
    if out.is_empty() {
        return Err(DnsError::Other(format!(
            "zone {zone} has no reachable NS records"
        )));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The TXT values at `name` on one server.
pub async fn txt_values(
    server: SocketAddr,
    name: &Name,
    recurse: bool,
) -> Result<Vec<String>, DnsError> {
    let rsp = query(server, name, RecordType::TXT, recurse).await?;
    Ok(rsp
        .answers
        .iter()
        .filter(|r| r.name == *name)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// Whether every server that should have it serves `value` at `name`: the zone's
/// authoritative servers, or the recursive ones with `recursive_only`. Ok(Err(why)) while
/// not yet.
pub async fn propagated(
    ns: &Nameservers,
    name: &Name,
    value: &str,
) -> Result<Result<(), String>, DnsError> {
    let (servers, recurse) = if ns.recursive_only {
        (ns.recursive.clone(), true)
    } else {
        let zone = find_zone(ns, name).await?;
        (authoritative(ns, &zone).await?, false)
    };
    for s in servers {
        let values = txt_values(s, name, recurse).await?;
        if !values.iter().any(|v| v == value) {
            return Ok(Err(format!(
                "{s} does not serve the TXT record at {name} yet"
            )));
        }
    }
    Ok(Ok(()))
}

/// A TSIG key for RFC 2136 updates.
pub struct Tsig {
    pub name: String,
    pub algorithm: certwright_api::acme::TsigAlgorithm,
    pub secret: Vec<u8>,
}

fn signer(t: &Tsig) -> Result<TSigner, DnsError> {
    use certwright_api::acme::TsigAlgorithm as A;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm as H;
    let alg = match t.algorithm {
        A::HmacSha256 => H::HmacSha256,
        A::HmacSha512 => H::HmacSha512,
        A::HmacMd5 | A::HmacSha1 => {
            return Err(DnsError::Other(
                "TSIG with HMACMD5 or HMACSHA1 is not supported by certwright: use HMACSHA256 or HMACSHA512".into(),
            ))
        }
    };
    TSigner::new(t.secret.clone(), alg, fqdn(&t.name)?, 300)
        .map_err(|e| DnsError::Other(format!("TSIG key {:?}: {e}", t.name)))
}

/// Adds (`add`) or removes one TXT value at `name` in `zone` on the primary `server`
/// (RFC 2136), signed with `tsig` when given. A refusal names the server's answer
/// (NOTAUTH with BADSIG, BADKEY or BADTIME for a TSIG problem; REFUSED; NOTZONE).
pub async fn update_txt(
    server: SocketAddr,
    zone: &Name,
    name: &Name,
    value: &str,
    add: bool,
    tsig: Option<&Tsig>,
) -> Result<(), DnsError> {
    let mut rrset = RecordSet::with_ttl(name.clone(), RecordType::TXT, 60);
    rrset.add_rdata(RData::TXT(TXT::new(vec![value.to_string()])));
    let mut msg = if add {
        hickory_proto::op::update_message::append(rrset, zone.clone(), false, false)
    } else {
        hickory_proto::op::update_message::delete_by_rdata(rrset, zone.clone(), false)
    };
    msg.metadata.id = random_id();
    if let Some(t) = tsig {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        msg.finalize(&signer(t)?, now)
            .map_err(|e| DnsError::Other(format!("signing the update: {e}")))?;
    }
    let rsp = exchange(server, &msg, true).await?;
    let rcode = rsp.metadata.response_code;
    if rcode == ResponseCode::NoError {
        return Ok(());
    }
    use hickory_proto::rr::rdata::tsig::TsigError;
    let tsig_error = rsp.signature().and_then(|r| r.data.error).map(|e| match e {
        TsigError::BadSig => "BADSIG".to_string(),
        TsigError::BadKey => "BADKEY".to_string(),
        TsigError::BadTime => "BADTIME".to_string(),
        TsigError::BadTrunc => "BADTRUNC".to_string(),
        TsigError::Unknown(c) => format!("TSIG error {c}"),
    });
    Err(DnsError::Rcode {
        server,
        name: name.to_string(),
        rtype: "UPDATE".into(),
        rcode: match tsig_error {
            Some(e) => format!("{rcode} ({e}: the server rejected the TSIG signature)"),
            None => rcode.to_string(),
        },
    })
}

/// Whether the CAA records relevant to `name` (RFC 8659: its own, else its closest
/// ancestor's) let a CA known by `identities` issue for it (`issuewild` for a wildcard
/// when there is one). Ok(Err(why)) when they do not; lookups through the recursive
/// nameservers.
pub async fn caa_allows(
    ns: &Nameservers,
    name: &str,
    wildcard: bool,
    identities: &[String],
) -> Result<Result<(), String>, DnsError> {
    let mut cur = fqdn(name)?;
    loop {
        let rsp = ask_any(&ns.recursive, &cur, RecordType::CAA).await?;
        let caas: Vec<&hickory_proto::rr::rdata::CAA> = rsp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::CAA(c) => Some(c),
                _ => None,
            })
            .collect();
        if !caas.is_empty() {
            let wild = wildcard && caas.iter().any(|c| c.tag.eq_ignore_ascii_case("issuewild"));
            let tag = if wild { "issuewild" } else { "issue" };
            let allowed: Vec<String> = caas
                .iter()
                .filter(|c| c.tag.eq_ignore_ascii_case(tag))
                .map(|c| match c.value_as_issue() {
                    Ok((Some(d), _)) => d.to_string().trim_end_matches('.').to_ascii_lowercase(),
                    _ => String::new(),
                })
                .collect();
            if allowed.is_empty()
                || allowed
                    .iter()
                    .any(|a| identities.iter().any(|i| i.eq_ignore_ascii_case(a)))
            {
                return Ok(Ok(()));
            }
            let named: Vec<&str> = allowed
                .iter()
                .filter(|a| !a.is_empty())
                .map(String::as_str)
                .collect();
            return Ok(Err(format!(
                "the CAA records at {cur} let {} issue{}, not this CA ({})",
                if named.is_empty() {
                    "no CA".to_string()
                } else {
                    named.join(", ")
                },
                if wild { " wildcards" } else { "" },
                identities.join(", ")
            )));
        }
        if cur.num_labels() <= 1 {
            return Ok(Ok(()));
        }
        cur = cur.base_name();
    }
}
