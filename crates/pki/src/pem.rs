//! PEM (RFC 7468) encoding and decoding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// One PEM block: its label and DER payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Payloads may be private keys: never print them.
        write!(f, "Block({}, {} bytes)", self.label, self.der.len())
    }
}

/// Why a PEM document could not be read. Messages never include payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no PEM block found")]
    NoBlock,
    #[error("PEM block {label:?} at line {line} has no END line")]
    Unterminated { label: String, line: usize },
    #[error("PEM block {label:?} at line {line} ends with END {found:?}")]
    MismatchedEnd {
        label: String,
        line: usize,
        found: String,
    },
    #[error("PEM block {label:?} at line {line} has invalid base64")]
    BadBase64 { label: String, line: usize },
    #[error("PEM block {label:?} at line {line} has headers (encrypted PEM is not supported)")]
    Headers { label: String, line: usize },
}

/// Encodes DER as a PEM block with 64-column lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Decodes every PEM block in `input`, ignoring text between blocks (as OpenSSL does).
pub fn decode_all(input: &[u8]) -> Result<Vec<Block>, PemError> {
    let text = String::from_utf8_lossy(input);
    let mut blocks = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = i + 1;
        match &mut current {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    current = Some((label.to_string(), lineno, String::new()));
                }
            }
            Some((label, start, body)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(PemError::MismatchedEnd {
                            label: label.clone(),
                            line: *start,
                            found: end.to_string(),
                        });
                    }
                    let der =
                        STANDARD
                            .decode(body.as_bytes())
                            .map_err(|_| PemError::BadBase64 {
                                label: label.clone(),
                                line: *start,
                            })?;
                    blocks.push(Block {
                        label: label.clone(),
                        der,
                    });
                    current = None;
                } else if line.contains(':') {
                    return Err(PemError::Headers {
                        label: label.clone(),
                        line: *start,
                    });
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, line, _)) = current {
        return Err(PemError::Unterminated { label, line });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let two = format!("junk\n{pem}between\n{pem}");
        let blocks = decode_all(two.as_bytes()).expect("decodes");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].der, der);
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(decode_all(b"hello"), Err(PemError::NoBlock));
        assert!(matches!(
            decode_all(b"-----BEGIN X-----\nAAAA\n"),
            Err(PemError::Unterminated { .. })
        ));
        assert!(matches!(
            decode_all(b"-----BEGIN X-----\n!!!!\n-----END X-----\n"),
            Err(PemError::BadBase64 { .. })
        ));
        assert!(matches!(
            decode_all(b"-----BEGIN X-----\nAAAA\n-----END Y-----\n"),
            Err(PemError::MismatchedEnd { .. })
        ));
    }
}
