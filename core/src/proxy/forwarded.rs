//! Who an HTTP request came from, by what proxies add to it: `X-Forwarded-For` (the de facto
//! standard, which HAProxy's `option forwardfor`, nginx, and most load balancers append to) and
//! `Forwarded` (RFC 7239). Pure: the header values in, the client's address out.
//!
//! Each proxy appends the address it was reached from, so the list reads client first, nearest
//! proxy last, and everything left of the nearest proxy's entry is what the request said of
//! itself: anyone can write it. The client is therefore the **rightmost entry that is not a
//! trusted proxy**, walking leftwards from the connection's peer (a trusted proxy) only across
//! entries that trusted proxies wrote. Where that walk meets something that is not an address
//! (`unknown`, an obfuscated `_hidden`, an element without `for=`, garbage), the client is the
//! last address it knew: the proxy that wrote the entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::cidr::TrustedProxies;

/// One hop of a forwarding header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// An address, with its port when one was given (an obfuscated port is none).
    Addr(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier (`_hidden`), a `Forwarded` element without `for=`,
    /// or anything that is not an address.
    Unknown,
}

impl Node {
    /// A node as both headers write one: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]`,
    /// `[2001:db8::1]:4711`, and (`X-Forwarded-For` only, but read in both) a bare
    /// `2001:db8::1`; `unknown` and `_obfuscated` are [`Node::Unknown`].
    pub fn parse(text: &str) -> Node {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return Node::Unknown;
            };
            let Ok(ip) = ip.parse::<Ipv6Addr>() else {
                return Node::Unknown;
            };
            return match after {
                "" => Node::Addr(IpAddr::V6(ip), None),
                _ => match after.strip_prefix(':').map(port) {
                    Some(Ok(port)) => Node::Addr(IpAddr::V6(ip), port),
                    _ => Node::Unknown,
                },
            };
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Node::Addr(ip, None);
        }
        match text.split_once(':') {
            Some((ip, after)) => match (ip.parse::<Ipv4Addr>(), port(after)) {
                (Ok(ip), Ok(port)) => Node::Addr(IpAddr::V4(ip), port),
                _ => Node::Unknown,
            },
            None => Node::Unknown,
        }
    }
}

/// A node's port: `Some` for a decimal port, `None` for an obfuscated one (`_abc`), `Err` for
/// anything else.
fn port(text: &str) -> Result<Option<u16>, ()> {
    if text.starts_with('_') && text.len() > 1 {
        return Ok(None);
    }
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    text.parse().map(Some).map_err(drop)
}

/// The hops of `X-Forwarded-For`, over all its lines in order: comma-separated nodes; empty
/// entries are skipped.
pub fn x_forwarded_for<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            nodes.push(Node::Unknown);
            continue;
        };
        nodes.extend(
            text.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(Node::parse),
        );
    }
    nodes
}

/// The hops of `Forwarded`, over all its lines in order: each element's `for=` parameter, the
/// value a token or a quoted string (`for="[2001:db8::1]:4711"`); an element without one, with
/// two, or that cannot be read is [`Node::Unknown`]. Empty elements are skipped.
pub fn forwarded_for<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            nodes.push(Node::Unknown);
            continue;
        };
        for element in split_outside_quotes(text, b',') {
            let Some(element) = element else {
                nodes.push(Node::Unknown); // An unterminated quoted string.
                continue;
            };
            if element.trim().is_empty() {
                continue;
            }
            nodes.push(element_for(element));
        }
    }
    nodes
}

/// The `for=` node of one element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn element_for(element: &str) -> Node {
    let mut found = None;
    for pair in split_outside_quotes(element, b';') {
        let Some(pair) = pair else {
            return Node::Unknown;
        };
        let Some((name, value)) = pair.split_once('=') else {
            if pair.trim().is_empty() {
                continue;
            }
            return Node::Unknown;
        };
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return Node::Unknown; // A parameter may appear once per element.
        }
        found = Some(match unquote(value.trim()) {
            Some(value) => Node::parse(&value),
            None => Node::Unknown,
        });
    }
    found.unwrap_or(Node::Unknown)
}

/// A token as it is, a quoted string without its quotes and escapes; `None` if it is neither.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.is_empty() && !value.contains(['"', '\\', ' ', '\t']))
            .then(|| value.into());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None // No closing quote.
}

/// `text` cut at each `delimiter` outside quoted strings, in order; a piece in which a quoted
/// string does not end is `None`.
///
/// Read from the right, because the right end is what the nearest proxy wrote: should a client
/// leave a quoted string open (`Forwarded: for="`) before a proxy appends `, for=203.0.113.7`
/// to the same line, the open quote spoils only the client's own piece, not the proxy's.
fn split_outside_quotes(text: &str, delimiter: u8) -> Vec<Option<&str>> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let (mut end, mut quoted) = (bytes.len(), false);
    for i in (0..bytes.len()).rev() {
        if bytes[i] == b'"' && !escaped(&bytes[..i]) {
            quoted = !quoted;
        } else if bytes[i] == delimiter && !quoted {
            // `delimiter` is ASCII: both sides of it are character boundaries.
            pieces.push(Some(&text[i + 1..end]));
            end = i;
        }
    }
    pieces.push((!quoted).then(|| &text[..end]));
    pieces.reverse();
    pieces
}

/// Whether the character after `before` is escaped: an odd number of backslashes ends it.
fn escaped(before: &[u8]) -> bool {
    before.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The client of a request that came from the trusted proxy `peer`, by the rightmost entry of
/// `nodes` (client first, nearest proxy last) that is not a trusted proxy; see the module's
/// documentation. IPv4-mapped IPv6 addresses come back as IPv4; a node without a port has
/// port 0.
pub fn rightmost_untrusted(
    trusted: &TrustedProxies,
    peer: SocketAddr,
    nodes: &[Node],
) -> SocketAddr {
    let mut client = peer;
    for node in nodes.iter().rev() {
        match *node {
            Node::Addr(ip, port) => {
                client = SocketAddr::new(ip.to_canonical(), port.unwrap_or(0));
                if !trusted.contains(ip) {
                    break;
                }
            }
            Node::Unknown => break,
        }
    }
    client
}

/// The client of a request that came from the trusted proxy `peer`, given the values of its
/// `Forwarded` and `X-Forwarded-For` lines: by `X-Forwarded-For` when the request has it (every
/// common proxy appends to it, and a client may write either), else by `Forwarded`, else the
/// peer itself (the proxy's own request, a health check).
pub fn client_address<'a>(
    trusted: &TrustedProxies,
    peer: SocketAddr,
    forwarded: impl IntoIterator<Item = &'a [u8]>,
    x_forwarded_for: impl IntoIterator<Item = &'a [u8]>,
) -> SocketAddr {
    let mut x_forwarded_for = x_forwarded_for.into_iter().peekable();
    let nodes = if x_forwarded_for.peek().is_some() {
        self::x_forwarded_for(x_forwarded_for)
    } else {
        forwarded_for(forwarded)
    };
    rightmost_untrusted(trusted, peer, &nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Cidr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn trusted(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(networks.iter().map(|n| n.parse::<Cidr>().unwrap()))
    }

    fn xff(values: &[&str]) -> Vec<Node> {
        x_forwarded_for(values.iter().map(|v| v.as_bytes()))
    }

    fn fwd(values: &[&str]) -> Vec<Node> {
        forwarded_for(values.iter().map(|v| v.as_bytes()))
    }

    const PROXY: &str = "10.0.0.2:40000";

    /// The client by these header lines, from the trusted proxy 10.0.0.2 (10.0.0.0/8 trusted).
    fn client(forwarded: &[&str], x_forwarded_for: &[&str]) -> SocketAddr {
        client_address(
            &trusted(&["10.0.0.0/8"]),
            addr(PROXY),
            forwarded.iter().map(|v| v.as_bytes()),
            x_forwarded_for.iter().map(|v| v.as_bytes()),
        )
    }

    #[test]
    fn nodes_are_addresses_with_or_without_ports() {
        assert_eq!(
            Node::parse("192.0.2.60"),
            Node::Addr(ip("192.0.2.60"), None)
        );
        assert_eq!(
            Node::parse(" 192.0.2.60:4711 "),
            Node::Addr(ip("192.0.2.60"), Some(4711))
        );
        assert_eq!(
            Node::parse("2001:db8::1"),
            Node::Addr(ip("2001:db8::1"), None)
        );
        assert_eq!(
            Node::parse("[2001:db8::1]"),
            Node::Addr(ip("2001:db8::1"), None)
        );
        assert_eq!(
            Node::parse("[2001:db8:cafe::17]:4711"),
            Node::Addr(ip("2001:db8:cafe::17"), Some(4711))
        );
        assert_eq!(
            Node::parse("192.0.2.60:_port"),
            Node::Addr(ip("192.0.2.60"), None)
        );
        assert_eq!(Node::parse("[::1]:_x"), Node::Addr(ip("::1"), None));
        for unknown in [
            "unknown",
            "_hidden",
            "_SEVKISEK",
            "",
            "example.org",
            "192.0.2.60:",
            "192.0.2.60:x",
            "192.0.2.60:65536",
            "[2001:db8::1",
            "[2001:db8::1]4711",
            "[192.0.2.1]",
            "1.2.3.4:5:6",
            "[::1]:_",
            "999.0.0.1",
        ] {
            assert_eq!(Node::parse(unknown), Node::Unknown, "{unknown:?}");
        }
    }

    #[test]
    fn x_forwarded_for_lists_every_line_in_order() {
        assert_eq!(
            xff(&["203.0.113.7, 198.51.100.1", "10.0.0.9"]),
            [
                Node::Addr(ip("203.0.113.7"), None),
                Node::Addr(ip("198.51.100.1"), None),
                Node::Addr(ip("10.0.0.9"), None),
            ]
        );
        assert_eq!(xff(&["", " , ,", "unknown"]), [Node::Unknown]);
        assert_eq!(x_forwarded_for([&b"\xff"[..]]), [Node::Unknown]);
    }

    #[test]
    fn forwarded_reads_for_in_each_element_quoted_or_not() {
        assert_eq!(
            fwd(&[
                "for=192.0.2.43, For=\"[2001:db8:cafe::17]:4711\"",
                "proto=https;for=198.51.100.17;by=203.0.113.43",
            ]),
            [
                Node::Addr(ip("192.0.2.43"), None),
                Node::Addr(ip("2001:db8:cafe::17"), Some(4711)),
                Node::Addr(ip("198.51.100.17"), None),
            ]
        );
        // RFC 7239's examples of what is not an address.
        assert_eq!(
            fwd(&["for=unknown", "for=\"_gazonk\"", "for=_hidden"]),
            [Node::Unknown; 3]
        );
        // No `for`, `for` twice, an unterminated or garbled quoted string, a bad pair.
        assert_eq!(
            fwd(&[
                "proto=http",
                "for=192.0.2.1;for=192.0.2.2",
                "for=\"192.0.2.1",
                "for=\"192.0.2.1\"x",
                "for",
                "for=",
            ]),
            [Node::Unknown; 6]
        );
        // Commas and semicolons inside a quoted string do not cut it; escapes are undone.
        assert_eq!(
            fwd(&["by=\"a,b;c\";for=\"192.0.2.\\9\", for=192.0.2.10"]),
            [
                Node::Addr(ip("192.0.2.9"), None),
                Node::Addr(ip("192.0.2.10"), None),
            ]
        );
        // Empty elements are skipped, as HTTP lists allow.
        assert_eq!(
            fwd(&[", for=192.0.2.1 ,,"]),
            [Node::Addr(ip("192.0.2.1"), None)]
        );
        assert_eq!(forwarded_for([&b"for=\xff"[..]]), [Node::Unknown]);
    }

    #[test]
    fn the_client_is_the_rightmost_entry_that_is_not_a_trusted_proxy() {
        // One proxy: what it appended.
        assert_eq!(client(&[], &["203.0.113.7"]), addr("203.0.113.7:0"));
        // What the client wrote itself, left of it, is never believed.
        assert_eq!(
            client(&[], &["1.1.1.1, 203.0.113.7"]),
            addr("203.0.113.7:0")
        );
        assert_eq!(
            client(&[], &["1.1.1.1", "203.0.113.7"]),
            addr("203.0.113.7:0")
        );
        // Through two trusted proxies (10.0.0.9 in front of the peer).
        assert_eq!(
            client(&[], &["1.1.1.1, 203.0.113.7, 10.0.0.9"]),
            addr("203.0.113.7:0")
        );
        // Every entry a trusted proxy: the leftmost, a proxy's own request.
        assert_eq!(client(&[], &["10.0.0.7, 10.0.0.9"]), addr("10.0.0.7:0"));
        // No header at all: the proxy's own request (a health check).
        assert_eq!(client(&[], &[]), addr(PROXY));
        assert_eq!(client(&[], &[""]), addr(PROXY));
        // IPv4-mapped comes back as IPv4; a port is kept.
        assert_eq!(client(&[], &["::ffff:203.0.113.7"]), addr("203.0.113.7:0"));
        assert_eq!(
            client(&[], &["[2001:db8::1]:4711"]),
            addr("[2001:db8::1]:4711")
        );
        assert_eq!(
            client(&["for=\"[2001:db8::1]:4711\""], &[]),
            addr("[2001:db8::1]:4711")
        );
    }

    #[test]
    fn an_entry_that_is_not_an_address_leaves_the_proxy_that_wrote_it() {
        // The peer wrote `unknown`: it is the peer's.
        assert_eq!(client(&[], &["203.0.113.7, unknown"]), addr(PROXY));
        assert_eq!(client(&["for=_hidden"], &[]), addr(PROXY));
        assert_eq!(client(&["for=203.0.113.7, proto=https"], &[]), addr(PROXY));
        // A proxy further away (10.0.0.9) wrote it: that proxy's.
        assert_eq!(
            client(&["for=203.0.113.7, for=_hidden, for=10.0.0.9"], &[]),
            addr("10.0.0.9:0")
        );
        // A quoted string the client left open spoils only what the client wrote.
        assert_eq!(
            client(&["for=\"1.1.1.1, for=203.0.113.7"], &[]),
            addr("203.0.113.7:0")
        );
        assert_eq!(
            client(&["for=\"[::1]:80\\\", for=203.0.113.7"], &[]),
            addr("203.0.113.7:0")
        );
        // Garbage left of the client's entry changes nothing.
        assert_eq!(
            client(&[], &["garbage, ::zz, 203.0.113.7"]),
            addr("203.0.113.7:0")
        );
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        // A proxy that appends X-Forwarded-For, and a client that wrote Forwarded itself.
        assert_eq!(
            client(&["for=1.1.1.1"], &["203.0.113.7"]),
            addr("203.0.113.7:0")
        );
        assert_eq!(client(&["for=203.0.113.7"], &[]), addr("203.0.113.7:0"));
    }

    #[test]
    fn an_ipv6_proxy_and_mapped_peers_are_recognised() {
        let set = trusted(&["2001:db8:1::/48", "10.0.0.0/8"]);
        let peer = addr("[2001:db8:1::5]:1234");
        let nodes = xff(&["203.0.113.7, 2001:db8:1::9"]);
        assert_eq!(
            rightmost_untrusted(&set, peer, &nodes),
            addr("203.0.113.7:0")
        );
        let nodes = xff(&["203.0.113.7, ::ffff:10.0.0.1"]);
        assert_eq!(
            rightmost_untrusted(&set, peer, &nodes),
            addr("203.0.113.7:0")
        );
    }
}
