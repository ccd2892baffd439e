//! moto's server for the Route 53 API, behind a recording proxy (moto accepts any
//! signature and any change id, so the tests check the requests' shape themselves), and a
//! copier that mirrors moto's TXT records into BIND with nsupdate (moto serves no DNS;
//! Pebble validates against BIND). Stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Moto {
    child: Child,
    /// The proxy's URL (what certwright is given as the endpoint).
    pub endpoint: String,
    /// moto's own URL (the test's setup calls go straight to it).
    pub direct: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

fn server() -> Option<String> {
    let path = std::env::var("CERTWRIGHT_MOTO_SERVER")
        .unwrap_or_else(|_| "/var/tmp/certwright-moto/5.2.5/bin/moto_server".into());
    if std::path::Path::new(&path).is_file() {
        return Some(path);
    }
    let why = format!("moto's server is not installed ({path}); run scripts/dns-bin.sh");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (required in CI)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// moto's server tells services apart by the credential scope of the Authorization
/// header: the test's own calls say "route53" (moto checks no signature).
const SCOPE: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=00";

/// A request as read off the wire: its first line, headers and body.
struct Raw {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Raw> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    if line.trim().is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Raw {
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}

/// Forwards one request to moto (a fresh connection, `Connection: close`) and returns the
/// raw response.
fn forward(
    upstream: &str,
    line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(upstream).ok()?;
    let mut req = format!("{line}\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("connection") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(out)
}

impl Moto {
    pub fn start() -> Option<Moto> {
        let bin = server()?;
        let port = super::pebble::free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts moto_server");
        let direct = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(&direct).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2, up) = (seen.clone(), stop.clone(), direct.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let (s3, up) = (s2.clone(), up.clone());
                std::thread::spawn(move || {
                    let mut w = conn.try_clone().expect("clone");
                    let mut r = BufReader::new(conn);
                    // One request per connection (moto is asked to close, and so
                    // does its answer).
                    let Some(raw) = read_request(&mut r) else {
                        return;
                    };
                    let mut parts = raw.line.split(' ');
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default().to_string();
                    s3.lock().expect("seen").push(Seen {
                        method,
                        path,
                        headers: raw.headers.clone(),
                        body: String::from_utf8_lossy(&raw.body).into_owned(),
                    });
                    if let Some(rsp) = forward(&up, &raw.line, &raw.headers, &raw.body) {
                        let _ = w.write_all(&rsp);
                    }
                });
            }
        });
        Some(Moto {
            child,
            endpoint,
            direct: format!("http://{direct}"),
            seen,
            stop,
        })
    }

    /// Creates a hosted zone in moto and returns its id (`Z...`).
    pub fn create_zone(&self, name: &str) -> String {
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>{name}.</Name><CallerReference>{name}-{}</CallerReference></CreateHostedZoneRequest>"#,
            std::process::id()
        );
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                "content-type: application/xml",
                "-H",
                SCOPE,
                "--data-binary",
                &body,
            ])
            .arg(format!("{}/2013-04-01/hostedzone", self.direct))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains("<Id>"),
            "CreateHostedZone: {text}"
        );
        let id = text
            .split("<Id>")
            .nth(1)
            .and_then(|s| s.split("</Id>").next())
            .expect("zone id");
        id.trim_start_matches("/hostedzone/").to_string()
    }

    /// The TXT record sets of a zone in moto: (name, values).
    pub fn txt_records(&self, zone_id: &str) -> Vec<(String, Vec<String>)> {
        txt_records(&self.direct, zone_id)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

/// The TXT record sets of a zone in the moto at `direct`: (name, values).
fn txt_records(direct: &str, zone_id: &str) -> Vec<(String, Vec<String>)> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-H", SCOPE])
        .arg(format!("{direct}/2013-04-01/hostedzone/{zone_id}/rrset"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("<ResourceRecordSet>")
        .skip(1)
        .filter(|s| s.contains("<Type>TXT</Type>"))
        .filter_map(|s| {
            let name = s
                .split("<Name>")
                .nth(1)?
                .split("</Name>")
                .next()?
                .to_string();
            let values = s
                .split("<Value>")
                .skip(1)
                .filter_map(|v| v.split("</Value>").next())
                .map(|v| v.replace("&quot;", "\"").trim_matches('"').to_string())
                .collect();
            Some((name, values))
        })
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mirrors moto's TXT records of a zone into BIND (nsupdate, TSIG-signed) every 200 ms
/// until dropped.
pub struct Copier {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Copier {
    pub fn start(moto: &Moto, zone_id: &str, bind: &super::bind::Bind) -> Copier {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, zone_id) = (stop.clone(), zone_id.to_string());
        let (bind, zone) = (bind.address(), bind.zone.clone());
        let direct = moto.direct.clone();
        let handle = std::thread::spawn(move || {
            let mut pushed: Vec<(String, Vec<String>)> = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let now = txt_records(&direct, &zone_id);
                if now != pushed {
                    let mut script = format!("server {}\nzone {zone}.\n", bind.replace(':', " "));
                    for (name, _) in &pushed {
                        script.push_str(&format!("update delete {name} TXT\n"));
                    }
                    for (name, values) in &now {
                        for v in values {
                            script.push_str(&format!("update add {name} 10 TXT \"{v}\"\n"));
                        }
                    }
                    script.push_str("send\n");
                    let mut p = Command::new("nsupdate")
                        .args([
                            "-y",
                            &format!(
                                "hmac-sha256:{}:{}",
                                super::bind::TSIG_KEY,
                                super::bind::TSIG_SECRET
                            ),
                        ])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("nsupdate");
                    let _ = p.stdin.take().expect("stdin").write_all(script.as_bytes());
                    if p.wait().map(|s| s.success()).unwrap_or(false) {
                        pushed = now;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Copier {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
