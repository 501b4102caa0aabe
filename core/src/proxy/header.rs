//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy sends it (`send-proxy`,
//! `send-proxy-v2`): the header a proxy writes first on a connection it opens for a client,
//! naming that client's address. Pure: [`parse`] reads what has arrived so far and says whether
//! the header is complete, how many more bytes it needs at least, or why these bytes cannot be
//! one.
//!
//! The driver reads at most [`Parsed::Incomplete`]'s `needed` bytes at a time, so it never
//! reads past the header: what follows it (a name at the prompt, a TLS ClientHello) is left in
//! the socket for the connection's own code.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a trusted proxy's line connection is told when it does not begin with a header (none
/// within the time allowed, or one that cannot be read), before it is closed.
pub const NO_HEADER: &str = "Error: connections from this address must begin with a PROXY protocol header \
     (it is a --trusted-proxy); closing.";

/// The first twelve bytes of a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, `\r\n` included, as the specification bounds it.
pub const V1_MAX: usize = 107;
/// The most bytes read after a version 2 header's first 16 (addresses and TLVs). The format
/// allows 65 535; HAProxy's addresses and TLVs (ALPN, authority, unique id, SSL, CRC32C) take
/// a few hundred at most.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// The shortest header of either version (`PROXY UNKNOWN\r\n`; a version 2 header has 16).
const MIN_HEADER: usize = 15;
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The TLV type of a CRC32C of the whole header, which [`parse`] checks when present.
pub const PP2_TYPE_CRC32C: u8 = 0x03;

/// Which version of the protocol a header is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Text: `PROXY TCP4 203.0.113.7 192.0.2.1 56324 8888\r\n`.
    V1,
    /// Binary, beginning with [`V2_SIGNATURE`].
    V2,
}

/// A whole header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Its version.
    pub version: Version,
    /// The client (`source`) and the address it connected to (`destination`); `None` when the
    /// header names no client: version 1's `UNKNOWN`, version 2's `LOCAL` command (the proxy's
    /// own health checks), or an address family other than TCP over IPv4 or IPv6. The
    /// connection is then the proxy's own.
    pub addresses: Option<Addresses>,
    /// Version 2's type-length-value fields after the addresses, in order (none in version 1,
    /// nor with `LOCAL`, whose address block is skipped whole).
    pub tlvs: Vec<Tlv>,
}

/// The two ends of the client's connection to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// Where the client connected (the proxy's listener).
    pub destination: SocketAddr,
}

/// One type-length-value field of a version 2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlv {
    /// Its type (`PP2_TYPE_ALPN` is 0x01, `PP2_TYPE_AUTHORITY` 0x02, ...).
    pub kind: u8,
    /// Its value.
    pub value: Vec<u8>,
}

/// What the bytes so far amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not yet a whole header: at least `needed` more bytes (never 0) must come before it can
    /// be, and a header cannot end sooner, so that reading `needed` bytes never reads past it.
    Incomplete {
        /// The fewest bytes that may still complete it.
        needed: usize,
    },
    /// A whole header, the first `len` bytes; whatever follows is the client's.
    Complete {
        /// The header's length in bytes.
        len: usize,
        /// What it says.
        header: ProxyHeader,
    },
}

/// Why bytes are not a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// They begin neither `PROXY ` nor the version 2 signature.
    NotAHeader,
    /// Longer than [`V1_MAX`], or a version 2 header with more than [`V2_MAX_PAYLOAD`] bytes
    /// after its first 16.
    TooLong,
    /// A header, but not a well-formed one; the text says what is wrong.
    Malformed(&'static str),
    /// A version 2 header whose CRC32C field does not match its bytes.
    Checksum,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotAHeader => f.write_str("not a PROXY protocol header"),
            HeaderError::TooLong => write!(
                f,
                "PROXY protocol header too long (version 1: {V1_MAX} bytes; version 2: \
                 {V2_MAX_PAYLOAD} after the first 16)"
            ),
            HeaderError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
            HeaderError::Checksum => f.write_str("PROXY protocol header with a wrong CRC32C"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Reads a PROXY header, version 1 or 2, from the start of `buf` (the first bytes of a
/// connection). See [`Parsed`]; an error as soon as the bytes so far cannot begin a header.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let v2 = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2] == V2_SIGNATURE[..v2] {
        return match buf.len() {
            0 => Ok(Parsed::Incomplete { needed: MIN_HEADER }),
            _ => parse_v2(buf),
        };
    }
    let v1 = buf.len().min(V1_PREFIX.len());
    if buf[..v1] != V1_PREFIX[..v1] {
        return Err(HeaderError::NotAHeader);
    }
    if buf.len() < V1_PREFIX.len() {
        return Ok(Parsed::Incomplete {
            needed: MIN_HEADER - buf.len(),
        });
    }
    parse_v1(buf)
}

/// The protocols of version 1, with the fewest bytes that may follow each name (`" " ADDR " "
/// ADDR " " PORT " " PORT "\r\n"` at its shortest; `UNKNOWN` may end at once).
const V1_PROTOCOLS: [(&[u8], usize); 3] = [
    (b"TCP4", 1 + 7 + 1 + 7 + 1 + 1 + 1 + 1 + 2),
    (b"TCP6", 1 + 2 + 1 + 2 + 1 + 1 + 1 + 1 + 2),
    (b"UNKNOWN", 2),
];

/// A field of a `TCP4` or `TCP6` line: the shortest and longest it may be, and its bytes.
#[derive(Clone, Copy)]
enum Field {
    Address { v6: bool },
    Port,
}

impl Field {
    const fn of(v6: bool, i: usize) -> Field {
        if i < 2 {
            Field::Address { v6 }
        } else {
            Field::Port
        }
    }

    fn min(self) -> usize {
        match self {
            Field::Address { v6: false } => 7, // 0.0.0.0
            Field::Address { v6: true } => 2,  // ::
            Field::Port => 1,
        }
    }

    fn max(self) -> usize {
        match self {
            Field::Address { v6: false } => 15,
            Field::Address { v6: true } => 45, // ffff:...:255.255.255.255
            Field::Port => 5,
        }
    }

    fn allows(self, b: u8) -> bool {
        match self {
            Field::Address { v6: false } => b.is_ascii_digit() || b == b'.',
            Field::Address { v6: true } => b.is_ascii_hexdigit() || b == b':' || b == b'.',
            Field::Port => b.is_ascii_digit(),
        }
    }

    /// Whether `bytes` may begin (or be) this field.
    fn check_partial(self, bytes: &[u8]) -> Result<(), HeaderError> {
        if bytes.len() > self.max() {
            return Err(HeaderError::Malformed("an address or port too long"));
        }
        if !bytes.iter().all(|&b| self.allows(b)) {
            return Err(HeaderError::Malformed(match self {
                Field::Address { .. } => "an address with a character no address has",
                Field::Port => "a port that is not a decimal number",
            }));
        }
        Ok(())
    }
}

/// A version 1 header: `PROXY ` has been seen.
fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::TooLong);
        }
        let needed = v1_needed(&buf[V1_PREFIX.len()..])?;
        return Ok(Parsed::Incomplete { needed });
    };
    if lf >= V1_MAX {
        return Err(HeaderError::TooLong);
    }
    if buf[lf - 1] != b'\r' {
        return Err(HeaderError::Malformed("the line does not end with CR LF"));
    }
    let line = &buf[V1_PREFIX.len()..lf - 1];
    if line.contains(&b'\r') {
        return Err(HeaderError::Malformed("a CR inside the line"));
    }
    let addresses = v1_line(line)?;
    Ok(Parsed::Complete {
        len: lf + 1,
        header: ProxyHeader {
            version: Version::V1,
            addresses,
            tlvs: Vec::new(),
        },
    })
}

/// What a whole line (after `PROXY `, before CR LF) says.
fn v1_line(line: &[u8]) -> Result<Option<Addresses>, HeaderError> {
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        // Whatever follows UNKNOWN is to be ignored.
        Some(b"UNKNOWN") => return Ok(None),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => {
            return Err(HeaderError::Malformed(
                "the protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let fields: Vec<&[u8]> = fields.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(HeaderError::Malformed(
            "not the four fields source, destination, source port, destination port",
        ));
    };
    let source = SocketAddr::new(v1_address(src, v6)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_address(dst, v6)?, v1_port(dport)?);
    Ok(Some(Addresses {
        source,
        destination,
    }))
}

fn v1_address(field: &[u8], v6: bool) -> Result<IpAddr, HeaderError> {
    let text = std::str::from_utf8(field).map_err(|_| HeaderError::Malformed("not ASCII"))?;
    if v6 {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| HeaderError::Malformed("a TCP6 address that is not IPv6"))
    } else {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| HeaderError::Malformed("a TCP4 address that is not IPv4"))
    }
}

fn v1_port(field: &[u8]) -> Result<u16, HeaderError> {
    let digits = !field.is_empty() && field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    std::str::from_utf8(field)
        .ok()
        .filter(|_| digits)
        .and_then(|text| text.parse().ok())
        .ok_or(HeaderError::Malformed("a port that is not 0 to 65535"))
}

/// The fewest bytes that may still complete a version 1 line of which `rest` (after `PROXY `,
/// no LF yet) has come, or why it cannot become one.
fn v1_needed(rest: &[u8]) -> Result<usize, HeaderError> {
    let ends_cr = rest.last() == Some(&b'\r');
    let body = if ends_cr {
        &rest[..rest.len() - 1]
    } else {
        rest
    };
    if body.contains(&b'\r') {
        return Err(HeaderError::Malformed("a CR inside the line"));
    }
    let mut fields = body.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    let fields: Vec<&[u8]> = fields.collect();
    if fields.is_empty() && !ends_cr {
        // The protocol's name is still coming.
        return V1_PROTOCOLS
            .iter()
            .filter(|(name, _)| name.starts_with(protocol))
            .map(|(name, after)| name.len() - protocol.len() + after)
            .min()
            .ok_or(HeaderError::Malformed(
                "the protocol is not TCP4, TCP6 or UNKNOWN",
            ));
    }
    let v6 = match protocol {
        b"UNKNOWN" => return Ok(if ends_cr { 1 } else { 2 }),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => {
            return Err(HeaderError::Malformed(
                "the protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    if fields.len() > 4 {
        return Err(HeaderError::Malformed(
            "more than four fields after the protocol",
        ));
    }
    let last = fields.len().saturating_sub(1);
    for (i, &field) in fields.iter().enumerate() {
        let kind = Field::of(v6, i);
        kind.check_partial(field)?;
        if i < last {
            // A field followed by a space is whole.
            match kind {
                Field::Address { .. } => {
                    v1_address(field, v6)?;
                }
                Field::Port => {
                    v1_port(field)?;
                }
            }
        }
    }
    if ends_cr {
        return match fields[..] {
            [_, _, _, dport] if !dport.is_empty() => Ok(1),
            _ => Err(HeaderError::Malformed(
                "the line ends before its four fields",
            )),
        };
    }
    let current = Field::of(v6, last);
    let rest_of_current = current.min().saturating_sub(fields[last].len());
    let later: usize = (last + 1..4).map(|i| 1 + Field::of(v6, i).min()).sum();
    Ok(rest_of_current + later + 2)
}

/// A version 2 header: what has come of it agrees with the signature so far.
fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    const FIXED: usize = 16;
    if buf.len() < FIXED {
        return Ok(Parsed::Incomplete {
            needed: FIXED - buf.len(),
        });
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(HeaderError::Malformed(
            "version 2 signature with another version",
        ));
    }
    let local = match command {
        0x0 => true,
        0x1 => false,
        _ => {
            return Err(HeaderError::Malformed(
                "a command other than LOCAL or PROXY",
            ));
        }
    };
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(HeaderError::TooLong);
    }
    let len = FIXED + payload;
    if buf.len() < len {
        return Ok(Parsed::Incomplete {
            needed: len - buf.len(),
        });
    }
    let header = &buf[..len];
    if local {
        // "The receiver must accept this connection as valid and must use the real connection
        // endpoints and discard the protocol block including the family."
        return Ok(Parsed::Complete {
            len,
            header: ProxyHeader {
                version: Version::V2,
                addresses: None,
                tlvs: Vec::new(),
            },
        });
    }
    let block = &header[FIXED..];
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let address_len = match family {
        0x0 => 0,   // AF_UNSPEC
        0x1 => 12,  // AF_INET: two addresses of 4 bytes, two ports of 2
        0x2 => 36,  // AF_INET6: two of 16, two ports
        0x3 => 216, // AF_UNIX: two paths of 108
        _ => return Err(HeaderError::Malformed("an unknown address family")),
    };
    if transport > 0x2 {
        return Err(HeaderError::Malformed("an unknown transport protocol"));
    }
    if block.len() < address_len {
        return Err(HeaderError::Malformed(
            "the address block is shorter than its family's addresses",
        ));
    }
    let (addrs, tlv_bytes) = block.split_at(address_len);
    let addresses = match (family, transport) {
        (0x1 | 0x2, 0x2) => {
            return Err(HeaderError::Malformed("a datagram's addresses on a stream"));
        }
        (0x1, _) => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(be::<4>(addrs, at)));
            Some(Addresses {
                source: SocketAddr::new(ip(0), u16::from_be_bytes(be::<2>(addrs, 8))),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes(be::<2>(addrs, 10))),
            })
        }
        (0x2, _) => {
            let ip = |at: usize| IpAddr::V6(Ipv6Addr::from(be::<16>(addrs, at)));
            Some(Addresses {
                source: SocketAddr::new(ip(0), u16::from_be_bytes(be::<2>(addrs, 32))),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes(be::<2>(addrs, 34))),
            })
        }
        _ => None,
    };
    let tlvs = v2_tlvs(tlv_bytes)?;
    if let Some(crc) = tlvs.iter().find(|t| t.kind == PP2_TYPE_CRC32C) {
        let Ok(expected) = <[u8; 4]>::try_from(crc.value.as_slice()) else {
            return Err(HeaderError::Malformed("a CRC32C field that is not 4 bytes"));
        };
        if crc32c_zeroed(header, FIXED + address_len, &tlvs) != u32::from_be_bytes(expected) {
            return Err(HeaderError::Checksum);
        }
    }
    Ok(Parsed::Complete {
        len,
        header: ProxyHeader {
            version: Version::V2,
            addresses,
            tlvs,
        },
    })
}

/// `N` bytes of `bytes` from `at` (which the caller has checked are there).
fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// The TLVs filling `bytes` exactly.
fn v2_tlvs(mut bytes: &[u8]) -> Result<Vec<Tlv>, HeaderError> {
    let mut tlvs = Vec::new();
    while !bytes.is_empty() {
        let [kind, hi, lo, ..] = *bytes else {
            return Err(HeaderError::Malformed("a TLV cut short"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(value) = bytes.get(3..3 + len) else {
            return Err(HeaderError::Malformed("a TLV longer than the header"));
        };
        tlvs.push(Tlv {
            kind,
            value: value.to_vec(),
        });
        bytes = &bytes[3 + len..];
    }
    Ok(tlvs)
}

/// The CRC32C of `header` with the value of its CRC32C TLV (the first, among `tlvs` that
/// begin at `tlvs_at`) taken as zeros, as the sender computed it.
fn crc32c_zeroed(header: &[u8], tlvs_at: usize, tlvs: &[Tlv]) -> u32 {
    let mut at = tlvs_at;
    for tlv in tlvs {
        if tlv.kind == PP2_TYPE_CRC32C {
            break;
        }
        at += 3 + tlv.value.len();
    }
    let value = at + 3..at + 7;
    let bytes = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if value.contains(&i) { 0 } else { b });
    crc32c(bytes)
}

/// CRC-32C (Castagnoli), bit by bit: a header's few hundred bytes do not need a table.
pub fn crc32c(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn complete(bytes: &[u8]) -> (usize, ProxyHeader) {
        match parse(bytes) {
            Ok(Parsed::Complete { len, header }) => (len, header),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn needed(bytes: &[u8]) -> usize {
        match parse(bytes) {
            Ok(Parsed::Incomplete { needed }) => needed,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn error(bytes: &[u8]) -> HeaderError {
        match parse(bytes) {
            Err(err) => err,
            ok => panic!("{:?}: {ok:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// A version 2 header: command (0 LOCAL, 1 PROXY), family and transport byte, the
    /// address block and TLVs.
    fn v2(command: u8, family: u8, block: &[u8], tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut payload = block.to_vec();
        for (kind, value) in tlvs {
            payload.push(*kind);
            payload.extend_from_slice(&(value.len() as u16).to_be_bytes());
            payload.extend_from_slice(value);
        }
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        header.extend_from_slice(&payload);
        header
    }

    fn inet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut block = [src, dst].concat();
        block.extend_from_slice(&sport.to_be_bytes());
        block.extend_from_slice(&dport.to_be_bytes());
        block
    }

    #[test]
    fn v1_tcp4_names_the_client_and_leaves_what_follows() {
        let bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 8888\r\nalice\n";
        let (len, header) = complete(bytes);
        assert_eq!(&bytes[len..], b"alice\n");
        assert_eq!(header.version, Version::V1);
        let addresses = header.addresses.unwrap();
        assert_eq!(addresses.source, addr("203.0.113.7:56324"));
        assert_eq!(addresses.destination, addr("192.0.2.1:8888"));
        assert!(header.tlvs.is_empty());
    }

    #[test]
    fn v1_tcp6_names_the_client() {
        let (len, header) = complete(b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 8888\r\n");
        assert_eq!(len, 46);
        let addresses = header.addresses.unwrap();
        assert_eq!(addresses.source, addr("[2001:db8::1]:4711"));
        assert_eq!(addresses.destination, addr("[2001:db8::2]:8888"));
        let (_, mapped) = complete(b"PROXY TCP6 ::ffff:203.0.113.7 :: 0 65535\r\n");
        assert_eq!(
            mapped.addresses.unwrap().source,
            addr("[::ffff:203.0.113.7]:0")
        );
    }

    #[test]
    fn v1_unknown_names_no_client_whatever_follows_it() {
        for bytes in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            b"PROXY UNKNOWN anything at all\r\n",
        ] {
            let (len, header) = complete(bytes);
            assert_eq!(len, bytes.len());
            assert_eq!(header.addresses, None);
        }
    }

    #[test]
    fn v1_needs_more_until_the_line_end_and_never_asks_past_it() {
        let whole = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 8888\r\n";
        for cut in 0..whole.len() {
            let more = needed(&whole[..cut]);
            assert!(more >= 1, "cut at {cut}");
            assert!(cut + more <= whole.len(), "cut at {cut} asks for {more}");
        }
        assert_eq!(needed(b""), 15);
        assert_eq!(needed(b"PROXY "), 9); // UNKNOWN\r\n
        assert_eq!(needed(b"PROXY TCP4 "), 21); // 0.0.0.0 0.0.0.0 0 0\r\n
        assert_eq!(needed(b"PROXY TCP6 "), 11); // :: :: 0 0\r\n
        assert_eq!(needed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), 2);
        assert_eq!(needed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), 1);
        assert_eq!(needed(b"PROXY UNKNOWN"), 2);
    }

    #[test]
    fn v1_garbage_is_refused_as_soon_as_it_shows() {
        assert_eq!(error(b"alice\n"), HeaderError::NotAHeader);
        assert_eq!(error(b"a"), HeaderError::NotAHeader);
        assert_eq!(error(b"PROXY\r\n"), HeaderError::NotAHeader);
        assert_eq!(error(b"proxy TCP4"), HeaderError::NotAHeader);
        assert_eq!(error(b"GET / HTTP/1.1\r\n"), HeaderError::NotAHeader);
        for early in [
            &b"PROXY TCP5"[..],
            b"PROXY UDP4 ",
            b"PROXY TCP4 1.2.3.x",
            b"PROXY TCP4 1.2.3.4  ",
            b"PROXY TCP4 1.2.3 ",
            b"PROXY TCP4 2001:db8::1 ",
            b"PROXY TCP6 1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2",
            b"PROXY TCP4 1.2.3.4\r",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx",
        ] {
            assert!(
                matches!(error(early), HeaderError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(early)
            );
        }
        for whole in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            b"PROXY \r\n",
        ] {
            assert!(
                matches!(error(whole), HeaderError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(whole)
            );
        }
    }

    #[test]
    fn v1_longer_than_107_bytes_is_refused() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX - 2, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(complete(&long).0, V1_MAX, "107 bytes is the most");
        let mut longer = b"PROXY UNKNOWN ".to_vec();
        longer.resize(V1_MAX - 1, b'x');
        longer.extend_from_slice(b"\r\n");
        assert_eq!(error(&longer), HeaderError::TooLong);
        let mut endless = b"PROXY UNKNOWN ".to_vec();
        endless.resize(V1_MAX, b'x');
        assert_eq!(
            error(&endless),
            HeaderError::TooLong,
            "no line end in sight"
        );
        assert!(matches!(
            parse(&endless[..V1_MAX - 1]),
            Ok(Parsed::Incomplete { .. })
        ));
    }

    #[test]
    fn v2_proxy_over_ipv4_names_the_client() {
        let mut bytes = v2(
            0x1,
            0x11,
            &inet([203, 0, 113, 7], [192, 0, 2, 1], 56324, 8888),
            &[],
        );
        let len = bytes.len();
        bytes.extend_from_slice(b"\x16\x03\x01"); // the TLS ClientHello that follows
        let (got, header) = complete(&bytes);
        assert_eq!(got, len);
        assert_eq!(len, 28);
        assert_eq!(header.version, Version::V2);
        let addresses = header.addresses.unwrap();
        assert_eq!(addresses.source, addr("203.0.113.7:56324"));
        assert_eq!(addresses.destination, addr("192.0.2.1:8888"));
    }

    #[test]
    fn v2_proxy_over_ipv6_names_the_client() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut block = [src.octets(), dst.octets()].concat();
        block.extend_from_slice(&4711u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        let (len, header) = complete(&v2(0x1, 0x21, &block, &[]));
        assert_eq!(len, 16 + 36);
        let addresses = header.addresses.unwrap();
        assert_eq!(addresses.source, addr("[2001:db8::1]:4711"));
        assert_eq!(addresses.destination, addr("[2001:db8::2]:443"));
    }

    #[test]
    fn v2_tlvs_are_read_and_a_crc32c_is_checked() {
        let block = inet([198, 51, 100, 4], [192, 0, 2, 1], 1000, 8888);
        let tlvs: [(u8, &[u8]); 3] = [
            (0x01, b"h2"),               // ALPN
            (0x02, b"chat.example.org"), // authority
            (0x04, &[0; 5]),             // NOOP, padding
        ];
        let (_, header) = complete(&v2(0x1, 0x11, &block, &tlvs));
        assert_eq!(header.addresses.unwrap().source, addr("198.51.100.4:1000"));
        let kinds: Vec<u8> = header.tlvs.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [0x01, 0x02, 0x04]);
        assert_eq!(header.tlvs[1].value, b"chat.example.org");

        // With a CRC32C, as HAProxy's `proxy-v2-options crc32c` sends it.
        let with_crc = |crc: u32| {
            let mut bytes = v2(
                0x1,
                0x11,
                &block,
                &[(0x02, b"a"), (PP2_TYPE_CRC32C, &[0; 4])],
            );
            let at = bytes.len() - 4;
            bytes[at..].copy_from_slice(&crc.to_be_bytes());
            bytes
        };
        let good = crc32c(with_crc(0));
        assert!(matches!(
            parse(&with_crc(good)),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(error(&with_crc(good ^ 1)), HeaderError::Checksum);
    }

    #[test]
    fn crc32c_is_castagnolis() {
        assert_eq!(crc32c(*b"123456789"), 0xe306_9283);
        assert_eq!(crc32c([]), 0);
    }

    #[test]
    fn v2_local_and_unspecified_families_name_no_client() {
        // HAProxy's health checks with `check-send-proxy`: LOCAL, AF_UNSPEC, nothing after.
        let (len, local) = complete(&v2(0x0, 0x00, &[], &[]));
        assert_eq!((len, local.addresses), (16, None));
        // LOCAL ignores the block, whatever family it claims.
        let (_, local) = complete(&v2(0x0, 0x11, &inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), &[]));
        assert_eq!(local.addresses, None);
        assert_eq!(complete(&v2(0x0, 0xf0, &[1, 2, 3], &[])).1.addresses, None);
        // PROXY over AF_UNSPEC or AF_UNIX: no client address either.
        assert_eq!(complete(&v2(0x1, 0x00, &[], &[])).1.addresses, None);
        assert_eq!(complete(&v2(0x1, 0x31, &[0; 216], &[])).1.addresses, None);
    }

    #[test]
    fn v2_needs_its_fixed_part_then_its_length_and_never_asks_past_it() {
        let whole = v2(
            0x1,
            0x11,
            &inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
            &[(0x02, b"host")],
        );
        for cut in 0..whole.len() {
            let more = needed(&whole[..cut]);
            assert!(
                more >= 1 && cut + more <= whole.len(),
                "cut at {cut}: {more}"
            );
        }
        assert_eq!(needed(&whole[..1]), 15);
        assert_eq!(needed(&whole[..16]), whole.len() - 16);
    }

    #[test]
    fn v2_truncated_oversized_or_garbled_is_refused() {
        let block = inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        // A wrong signature byte.
        let mut bad = v2(0x1, 0x11, &block, &[]);
        bad[5] = b'X';
        assert_eq!(error(&bad), HeaderError::NotAHeader);
        assert_eq!(error(b"\r\n\r\nX"), HeaderError::NotAHeader);
        // Version 1 in a version 2 signature, an unknown command, family, transport.
        for (byte, value) in [(12, 0x11), (12, 0x22), (13, 0x41), (13, 0x13), (13, 0x12)] {
            let mut bad = v2(0x1, 0x11, &block, &[]);
            bad[byte] = value;
            assert!(
                matches!(error(&bad), HeaderError::Malformed(_)),
                "{byte}: {value:#x}"
            );
        }
        // An address block shorter than its family's addresses.
        assert!(matches!(
            error(&v2(0x1, 0x11, &block[..11], &[])),
            HeaderError::Malformed(_)
        ));
        assert!(matches!(
            error(&v2(0x1, 0x21, &[0; 35], &[])),
            HeaderError::Malformed(_)
        ));
        // TLVs that do not fill the rest exactly.
        let mut cut = block.clone();
        cut.extend_from_slice(&[0x02, 0x00]);
        assert!(matches!(
            error(&v2(0x1, 0x11, &cut, &[])),
            HeaderError::Malformed(_)
        ));
        let mut over = block.clone();
        over.extend_from_slice(&[0x02, 0x00, 0x09, b'a']);
        assert!(matches!(
            error(&v2(0x1, 0x11, &over, &[])),
            HeaderError::Malformed(_)
        ));
        // A CRC32C field of the wrong size.
        let short_crc = v2(0x1, 0x11, &block, &[(PP2_TYPE_CRC32C, &[0; 3])]);
        assert!(matches!(error(&short_crc), HeaderError::Malformed(_)));
        // More than the bound after the fixed part, refused before it is read.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11]);
        huge.extend_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        assert_eq!(error(&huge), HeaderError::TooLong);
        let largest = v2(
            0x1,
            0x11,
            &block,
            &[(0x04, &vec![0; V2_MAX_PAYLOAD - 12 - 3])],
        );
        assert_eq!(complete(&largest).0, 16 + V2_MAX_PAYLOAD);
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            HeaderError::NotAHeader.to_string(),
            "not a PROXY protocol header"
        );
        assert!(HeaderError::TooLong.to_string().contains("107 bytes"));
        assert_eq!(
            HeaderError::Malformed("a CR inside the line").to_string(),
            "malformed PROXY protocol header: a CR inside the line"
        );
    }
}
