//! X.501 distinguished names: building them from cert-manager's subject fields, and
//! parsing RFC 4514 strings (`literalSubject`).

use crate::der;

pub const OID_CN: &str = "2.5.4.3";
pub const OID_SERIAL_NUMBER: &str = "2.5.4.5";
pub const OID_C: &str = "2.5.4.6";
pub const OID_L: &str = "2.5.4.7";
pub const OID_ST: &str = "2.5.4.8";
pub const OID_STREET: &str = "2.5.4.9";
pub const OID_O: &str = "2.5.4.10";
pub const OID_OU: &str = "2.5.4.11";
pub const OID_POSTAL_CODE: &str = "2.5.4.17";
pub const OID_DC: &str = "0.9.2342.19200300.100.1.25";
pub const OID_UID: &str = "0.9.2342.19200300.100.1.1";
pub const OID_EMAIL: &str = "1.2.840.113549.1.9.1";

/// Why an RFC 4514 distinguished name does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty distinguished name")]
    Empty,
    #[error("{0:?} is not TYPE=VALUE")]
    NotTypeValue(String),
    #[error("unknown attribute type {0:?}")]
    UnknownType(String),
    #[error("bad hex value for {0}")]
    BadHex(String),
    #[error("dangling backslash")]
    DanglingBackslash,
    #[error("bad hex escape")]
    BadHexEscape,
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("empty component around {0:?}")]
    EmptyComponent(char),
    #[error("value is not UTF-8")]
    NotUtf8,
}

/// How an attribute value is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Utf8(String),
    Printable(String),
    Ia5(String),
    /// A pre-encoded value (RFC 4514 `#hex` form).
    Der(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    pub oid: String,
    pub value: AttrValue,
}

/// A Name: a sequence of RDNs, each a set of attribute type-and-values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name {
    pub rdns: Vec<Vec<Ava>>,
}

/// cert-manager's `subject` block fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectFields {
    pub common_name: Option<String>,
    pub countries: Vec<String>,
    pub provinces: Vec<String>,
    pub localities: Vec<String>,
    pub street_addresses: Vec<String>,
    pub postal_codes: Vec<String>,
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
    pub serial_number: Option<String>,
}

fn is_printable(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

impl Name {
    /// The Name for a subject block, in the order Go's `pkix.Name` writes it (C, ST, L,
    /// street, postal code, O, OU, CN, serialNumber), so certificates read the same as
    /// cert-manager's.
    pub fn from_fields(f: &SubjectFields) -> Name {
        let mut rdns = Vec::new();
        let mut add = |oid: &str, vals: &[String]| {
            for v in vals {
                let value = if oid == OID_C || oid == OID_SERIAL_NUMBER {
                    if is_printable(v) {
                        AttrValue::Printable(v.clone())
                    } else {
                        AttrValue::Utf8(v.clone())
                    }
                } else {
                    AttrValue::Utf8(v.clone())
                };
                rdns.push(vec![Ava {
                    oid: oid.to_string(),
                    value,
                }]);
            }
        };
        add(OID_C, &f.countries);
        add(OID_ST, &f.provinces);
        add(OID_L, &f.localities);
        add(OID_STREET, &f.street_addresses);
        add(OID_POSTAL_CODE, &f.postal_codes);
        add(OID_O, &f.organizations);
        add(OID_OU, &f.organizational_units);
        if let Some(cn) = &f.common_name {
            add(OID_CN, std::slice::from_ref(cn));
        }
        if let Some(sn) = &f.serial_number {
            add(OID_SERIAL_NUMBER, std::slice::from_ref(sn));
        }
        Name { rdns }
    }

    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    pub fn to_der(&self) -> Vec<u8> {
        let rdns: Vec<Vec<u8>> = self
            .rdns
            .iter()
            .map(|rdn| {
                der::set_of(
                    rdn.iter()
                        .map(|ava| {
                            let v = match &ava.value {
                                AttrValue::Utf8(s) => der::utf8(s),
                                AttrValue::Printable(s) => der::printable(s),
                                AttrValue::Ia5(s) => der::ia5(s),
                                AttrValue::Der(d) => d.clone(),
                            };
                            der::seq(&[&der::oid(&ava.oid), &v])
                        })
                        .collect(),
                )
            })
            .collect();
        der::tlv(der::SEQUENCE, &rdns.concat())
    }

    /// Parses an RFC 4514 string. The string lists RDNs from last to first, so the result
    /// is reversed into encoding order.
    pub fn parse_rfc4514(s: &str) -> Result<Name, NameError> {
        if s.trim().is_empty() {
            return Err(NameError::Empty);
        }
        let mut rdns = Vec::new();
        for rdn in split_unescaped(s, ',')? {
            let mut avas = Vec::new();
            for ava in split_unescaped(&rdn, '+')? {
                let (ty, val) = ava
                    .split_once('=')
                    .ok_or_else(|| NameError::NotTypeValue(ava.clone()))?;
                let ty = ty.trim();
                let oid = attr_oid(ty).ok_or_else(|| NameError::UnknownType(ty.to_string()))?;
                let raw = val.trim_start();
                let value = if let Some(hex) = raw.strip_prefix('#') {
                    AttrValue::Der(
                        decode_hex(hex.trim()).ok_or_else(|| NameError::BadHex(ty.to_string()))?,
                    )
                } else {
                    let text = unescape(raw)?;
                    if oid == OID_DC || oid == OID_EMAIL {
                        AttrValue::Ia5(text)
                    } else if oid == OID_C || oid == OID_SERIAL_NUMBER {
                        AttrValue::Printable(text)
                    } else {
                        AttrValue::Utf8(text)
                    }
                };
                avas.push(Ava { oid, value });
            }
            rdns.push(avas);
        }
        rdns.reverse();
        Ok(Name { rdns })
    }
}

fn attr_oid(ty: &str) -> Option<String> {
    let known = match ty.to_ascii_uppercase().as_str() {
        "CN" => OID_CN,
        "C" => OID_C,
        "L" => OID_L,
        "ST" => OID_ST,
        "STREET" => OID_STREET,
        "O" => OID_O,
        "OU" => OID_OU,
        "POSTALCODE" => OID_POSTAL_CODE,
        "SERIALNUMBER" => OID_SERIAL_NUMBER,
        "DC" => OID_DC,
        "UID" => OID_UID,
        "EMAILADDRESS" | "E" => OID_EMAIL,
        _ => "",
    };
    if !known.is_empty() {
        return Some(known.to_string());
    }
    let dotted = ty.split('.').count() >= 2
        && ty
            .split('.')
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
    dotted.then(|| ty.to_string())
}

/// Splits on `sep` outside backslash escapes and quoted strings.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, NameError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err(NameError::DanglingBackslash),
                }
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c == sep && !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(NameError::UnterminatedQuote);
    }
    parts.push(cur);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(NameError::EmptyComponent(sep));
    }
    Ok(parts)
}

fn unescape(s: &str) -> Result<String, NameError> {
    let s = s.trim_end_matches(' ');
    let s = if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    let mut bytes = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let next = *b.get(i + 1).ok_or(NameError::DanglingBackslash)?;
            if next.is_ascii_hexdigit() {
                let h = s.get(i + 1..i + 3).ok_or(NameError::BadHexEscape)?;
                bytes.push(u8::from_str_radix(h, 16).map_err(|_| NameError::BadHexEscape)?);
                i += 3;
            } else {
                bytes.push(next);
                i += 2;
            }
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).map_err(|_| NameError::NotUtf8)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_go_order() {
        let n = Name::from_fields(&SubjectFields {
            common_name: Some("svc".into()),
            organizations: vec!["Acme".into()],
            countries: vec!["NL".into()],
            ..Default::default()
        });
        let oids: Vec<&str> = n.rdns.iter().map(|r| r[0].oid.as_str()).collect();
        assert_eq!(oids, vec![OID_C, OID_O, OID_CN]);
    }

    #[test]
    fn rfc4514_parses_escapes_and_multivalued_rdns() {
        let n =
            Name::parse_rfc4514(r#"CN=a\,b+UID=7,O="Acme, Inc.",DC=example,2.5.4.11=#0c026f75"#)
                .expect("parses");
        assert_eq!(n.rdns.len(), 4);
        assert_eq!(
            n.rdns[0][0].value,
            AttrValue::Der(vec![0x0c, 0x02, b'o', b'u'])
        );
        assert_eq!(n.rdns[2][0].value, AttrValue::Utf8("Acme, Inc.".into()));
        assert_eq!(n.rdns[3].len(), 2);
        assert_eq!(n.rdns[3][0].value, AttrValue::Utf8("a,b".into()));
    }

    #[test]
    fn rfc4514_errors() {
        assert!(Name::parse_rfc4514("").is_err());
        assert!(Name::parse_rfc4514("CN").is_err());
        assert!(Name::parse_rfc4514("XX=1").is_err());
        assert!(Name::parse_rfc4514("CN=a,,O=b").is_err());
        assert!(Name::parse_rfc4514("CN=a\\").is_err());
    }
}
