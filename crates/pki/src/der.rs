//! Minimal DER (ITU-T X.690) writer and reader: just what certificates, CSRs, PKCS#8,
//! PKCS#12 and JKS need. Definite lengths only.

use std::fmt;

pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const PRINTABLE_STRING: u8 = 0x13;
pub const IA5_STRING: u8 = 0x16;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const BMP_STRING: u8 = 0x1e;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;

/// Context-specific tag number `n`, constructed.
pub const fn ctx(n: u8) -> u8 {
    0xa0 | n
}

/// Context-specific tag number `n`, primitive.
pub const fn ctx_prim(n: u8) -> u8 {
    0x80 | n
}

/// Encodes one tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed value from already-encoded parts.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(SEQUENCE, parts)
}

/// A DER SET OF: elements sorted by their encoding (X.690 §11.6).
pub fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(SET, &parts.concat())
}

/// INTEGER from an unsigned big-endian magnitude.
pub fn uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        &bytes[skip.min(bytes.len().saturating_sub(1))..]
    };
    if trimmed.is_empty() {
        return tlv(INTEGER, &[0]);
    }
    if trimmed[0] & 0x80 != 0 {
        let mut v = Vec::with_capacity(trimmed.len() + 1);
        v.push(0);
        v.extend_from_slice(trimmed);
        tlv(INTEGER, &v)
    } else {
        tlv(INTEGER, trimmed)
    }
}

pub fn small_uint(v: u64) -> Vec<u8> {
    uint(&v.to_be_bytes())
}

pub fn boolean(v: bool) -> Vec<u8> {
    tlv(BOOLEAN, &[if v { 0xff } else { 0 }])
}

pub fn null() -> Vec<u8> {
    vec![NULL, 0]
}

pub fn octets(v: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, v)
}

/// BIT STRING with no unused bits.
pub fn bits(v: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(v.len() + 1);
    c.push(0);
    c.extend_from_slice(v);
    tlv(BIT_STRING, &c)
}

pub fn utf8(s: &str) -> Vec<u8> {
    tlv(UTF8_STRING, s.as_bytes())
}

pub fn printable(s: &str) -> Vec<u8> {
    tlv(PRINTABLE_STRING, s.as_bytes())
}

pub fn ia5(s: &str) -> Vec<u8> {
    tlv(IA5_STRING, s.as_bytes())
}

/// BMPString (UTF-16BE), as PKCS#12 friendly names use.
pub fn bmp(s: &str) -> Vec<u8> {
    let b: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    tlv(BMP_STRING, &b)
}

/// Encodes a dotted OID string's content octets. Panics only on a malformed literal, which
/// is a programming error: every caller passes a constant.
pub fn oid_content(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().expect("OID literal is well-formed"))
        .collect();
    let mut out = Vec::new();
    let first = arcs[0] * 40 + arcs[1];
    push_base128(&mut out, first);
    for a in &arcs[2..] {
        push_base128(&mut out, *a);
    }
    out
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len();
    for (j, b) in tmp[i..].iter().enumerate() {
        out.push(if i + j == n - 1 { *b } else { b | 0x80 });
    }
}

pub fn oid(dotted: &str) -> Vec<u8> {
    tlv(OID, &oid_content(dotted))
}

/// Decodes OID content octets into dotted form.
pub fn oid_to_string(content: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for b in content {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    let mut out = String::new();
    if let Some(first) = arcs.first() {
        let (a, b) = if *first < 40 {
            (0, *first)
        } else if *first < 80 {
            (1, first - 40)
        } else {
            (2, first - 80)
        };
        out.push_str(&format!("{a}.{b}"));
        for x in &arcs[1..] {
            out.push_str(&format!(".{x}"));
        }
    }
    out
}

/// AlgorithmIdentifier with optional parameters (already encoded).
pub fn algorithm(dotted: &str, params: Option<&[u8]>) -> Vec<u8> {
    match params {
        Some(p) => seq(&[&oid(dotted), p]),
        None => seq(&[&oid(dotted)]),
    }
}

/// Time as UTCTime before 2050 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
pub fn time(unix: i64) -> Vec<u8> {
    let t = utc(unix);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    if (1950..2050).contains(&y) {
        let t = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(UTC_TIME, t.as_bytes())
    } else {
        let t = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        tlv(GENERALIZED_TIME, t.as_bytes())
    }
}

/// A Unix time as a UTC date and time, saturated to the years 0000 to 9999 (what an
/// X.509 time and RFC 3339 can express; every caller's time is inside that range).
pub fn utc(unix: i64) -> time::OffsetDateTime {
    use time::{Date, Month, OffsetDateTime, Time};
    let first = Date::from_calendar_date(0, Month::January, 1)
        .unwrap_or(Date::MIN)
        .with_time(Time::MIDNIGHT)
        .assume_utc();
    let last = Date::from_calendar_date(9999, Month::December, 31)
        .unwrap_or(Date::MAX)
        .with_hms(23, 59, 59)
        .unwrap_or(time::PrimitiveDateTime::MAX)
        .assume_utc();
    let clamped = unix.clamp(first.unix_timestamp(), last.unix_timestamp());
    OffsetDateTime::from_unix_timestamp(clamped).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 rendering of a Unix time (UTC, seconds precision), as Kubernetes writes times.
pub fn rfc3339(unix: i64) -> String {
    utc(unix)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "0000-01-01T00:00:00Z".into())
}

/// Parses an RFC 3339 timestamp such as `2026-01-02T03:04:05Z` or with an offset and
/// fractions (which are dropped) into a Unix time.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// A DER decoding error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError(pub String);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DER: {}", self.0)
    }
}

impl std::error::Error for DerError {}

/// One decoded element.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    /// The whole encoding, tag and length included.
    pub raw: &'a [u8],
}

impl<'a> Element<'a> {
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.content)
    }

    pub fn expect(self, tag: u8, what: &str) -> Result<Self, DerError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(DerError(format!(
                "{what}: expected tag 0x{tag:02x}, found 0x{:02x}",
                self.tag
            )))
        }
    }

    /// An INTEGER that fits u64.
    pub fn small_uint(&self) -> Result<u64, DerError> {
        if self.tag != INTEGER || self.content.is_empty() || self.content.len() > 9 {
            return Err(DerError("expected a small INTEGER".into()));
        }
        if self.content[0] & 0x80 != 0 {
            return Err(DerError("negative INTEGER".into()));
        }
        let mut v: u64 = 0;
        for b in self.content {
            v = v.checked_shl(8).unwrap_or(0) | u64::from(*b);
        }
        Ok(v)
    }

    pub fn oid_string(&self) -> Result<String, DerError> {
        if self.tag != OID {
            return Err(DerError("expected an OBJECT IDENTIFIER".into()));
        }
        Ok(oid_to_string(self.content))
    }

    pub fn is_oid(&self, dotted: &str) -> bool {
        self.tag == OID && self.content == oid_content(dotted).as_slice()
    }
}

/// Sequential reader over DER content.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub fn next(&mut self, what: &str) -> Result<Element<'a>, DerError> {
        let d = self.data;
        let err = |m: &str| DerError(format!("{what}: {m}"));
        if d.len() < 2 {
            return Err(err("truncated"));
        }
        let tag = d[0];
        if tag & 0x1f == 0x1f {
            return Err(err("multi-byte tags are not supported"));
        }
        let (len, hdr) = match d[1] {
            l if l < 0x80 => (l as usize, 2),
            0x80 => return Err(err("indefinite length (BER) is not supported")),
            l => {
                let n = (l & 0x7f) as usize;
                if n > 4 || d.len() < 2 + n {
                    return Err(err("bad length"));
                }
                let mut v = 0usize;
                for b in &d[2..2 + n] {
                    v = (v << 8) | *b as usize;
                }
                (v, 2 + n)
            }
        };
        if d.len() - hdr < len {
            return Err(err("truncated"));
        }
        let el = Element {
            tag,
            content: &d[hdr..hdr + len],
            raw: &d[..hdr + len],
        };
        self.data = &d[hdr + len..];
        Ok(el)
    }

    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Element<'a>, DerError> {
        self.next(what)?.expect(tag, what)
    }

    /// Reads an element if the next tag is `tag`.
    pub fn optional(&mut self, tag: u8, what: &str) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.next(what).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Parses a whole buffer as exactly one element.
pub fn parse_one<'a>(data: &'a [u8], what: &str) -> Result<Element<'a>, DerError> {
    let mut r = Reader::new(data);
    let el = r.next(what)?;
    if !r.is_empty() {
        return Err(DerError(format!("{what}: trailing data")));
    }
    Ok(el)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_round_trip() {
        for s in [
            "1.2.840.113549.1.1.11",
            "2.5.29.17",
            "1.3.6.1.4.1.42.2.17.1.1",
            "2.999.3",
        ] {
            assert_eq!(oid_to_string(&oid_content(s)), s);
        }
        assert_eq!(oid("2.5.4.3"), vec![0x06, 0x03, 0x55, 0x04, 0x03]);
    }

    #[test]
    fn lengths() {
        let long = vec![7u8; 300];
        let enc = tlv(OCTET_STRING, &long);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let el = parse_one(&enc, "x").expect("parses");
        assert_eq!(el.content, long.as_slice());
    }

    #[test]
    fn integers() {
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0, 0, 1]), vec![0x02, 0x01, 0x01]);
        assert_eq!(small_uint(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(
            parse_one(&small_uint(2048), "i").and_then(|e| e.small_uint()),
            Ok(2048)
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2000-02-29T01:00:00+01:00"),
            Some(951_782_400)
        );
        assert_eq!(time(951_782_400), tlv(UTC_TIME, b"000229000000Z"));
        assert_eq!(&time(2_556_143_999 + 1)[..1], &[GENERALIZED_TIME]);
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339("2000-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00.75Z"), Some(951_782_400));
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(time(-1), tlv(UTC_TIME, b"691231235959Z"));
    }

    /// The writer checked against an independent DER reader (der-parser, through
    /// x509-parser): lengths at each form's boundary, integers that need a leading zero,
    /// strings, and SET OF ordering.
    #[test]
    fn the_writer_agrees_with_an_independent_reader() {
        use x509_parser::der_parser::ber::BerObjectContent;
        use x509_parser::der_parser::der::parse_der;
        for n in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let content = vec![0xa5u8; n];
            let enc = octets(&content);
            let (rest, obj) = parse_der(&enc).expect("der-parser reads the length");
            assert!(rest.is_empty(), "{n}: trailing bytes");
            assert_eq!(obj.as_slice().expect("octets"), content.as_slice(), "{n}");
            // The shortest length form, as DER requires.
            let len_octets = enc.len() - 1 - n;
            let expected = match n {
                0..=127 => 1,
                128..=255 => 2,
                256..=65_535 => 3,
                _ => 4,
            };
            assert_eq!(len_octets, expected, "{n}");
        }
        for v in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            0x7fff_ffff,
            0x8000_0000,
            u64::MAX,
        ] {
            let enc = small_uint(v);
            let (_, obj) = parse_der(&enc).expect("integer");
            let BerObjectContent::Integer(raw) = obj.content else {
                panic!("{v}: not an INTEGER");
            };
            // Positive: no leading 0xff, a leading zero only before a high bit.
            assert_eq!(raw[0] & 0x80, 0, "{v}: {raw:02x?}");
            assert!(
                raw.len() == 1 || raw[0] != 0 || raw[1] & 0x80 != 0,
                "{v}: {raw:02x?}"
            );
            let back = raw.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
            assert_eq!(back, u128::from(v));
        }
        let enc_b = boolean(true);
        let (_, b) = parse_der(&enc_b).expect("boolean");
        assert!(b.as_bool().expect("bool"));
        let enc_u = utf8("héllo");
        let (_, u) = parse_der(&enc_u).expect("utf8");
        assert_eq!(u.as_str().expect("str"), "héllo");
        let enc_p = printable("Acme Co");
        let (_, p) = parse_der(&enc_p).expect("printable");
        assert_eq!(p.as_str().expect("str"), "Acme Co");
        let enc_i = ia5("a@example.com");
        let (_, i) = parse_der(&enc_i).expect("ia5");
        assert_eq!(i.as_str().expect("str"), "a@example.com");
        let enc_bm = bmp("alias");
        let (_, bm) = parse_der(&enc_bm).expect("bmp");
        assert_eq!(bm.header.tag().0, u32::from(BMP_STRING));
        let enc_bs = bits(&[0xa0]);
        let (_, bs) = parse_der(&enc_bs).expect("bit string");
        let BerObjectContent::BitString(unused, data) = bs.content else {
            panic!("not a BIT STRING");
        };
        assert_eq!((unused, data.data), (0, &[0xa0u8][..]));
        // SET OF: sorted by encoding whatever the input order.
        let set = set_of(vec![utf8("b"), utf8("a"), small_uint(5)]);
        let (_, obj) = parse_der(&set).expect("set");
        let items = obj.as_set().expect("set");
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0].content, BerObjectContent::Integer(_)));
        assert_eq!(items[1].as_str().expect("str"), "a");
        assert_eq!(items[2].as_str().expect("str"), "b");
        let enc_alg = algorithm("1.2.840.10045.4.3.2", None);
        let (_, alg) = parse_der(&enc_alg).expect("algorithm");
        let seq = alg.as_sequence().expect("sequence");
        assert_eq!(
            seq[0].as_oid().expect("oid").to_id_string(),
            "1.2.840.10045.4.3.2"
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(parse_one(&[0x30, 0x05, 0x01], "x").is_err());
        assert!(parse_one(&[0x30, 0x80, 0, 0], "x").is_err());
        assert!(parse_one(&[], "x").is_err());
    }
}
