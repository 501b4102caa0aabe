//! Property tests (proptest) of the proxy parsers, through the public API: a PROXY header of
//! either version is read whole however its bytes arrive and never past its end; nothing a
//! proxy's client writes into `X-Forwarded-For` or `Forwarded` can choose its address; and no
//! input makes any of them panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chat_core::proxy::forwarded::{forwarded_for, rightmost_untrusted, x_forwarded_for};
use chat_core::proxy::header::{V2_SIGNATURE, crc32c, parse};
use chat_core::proxy::{Cidr, Parsed, TrustedProxies, client_address};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Where the smallest failing inputs are kept, to be tried first on later runs.
const REGRESSIONS: &str = "tests/proxy.proptest-regressions";

fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

/// What a generated header must be read as: the client, or none.
#[derive(Clone, Debug)]
struct Case {
    bytes: Vec<u8>,
    source: Option<SocketAddr>,
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from_bits(b))),
        any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from_bits(b))),
        // Short spellings (`::`, `::1`) and IPv4 inside IPv6.
        (0u128..4).prop_map(|b| IpAddr::V6(Ipv6Addr::from_bits(b))),
        any::<u32>().prop_map(|b| IpAddr::V6(Ipv4Addr::from_bits(b).to_ipv6_mapped())),
    ]
}

/// Two addresses of one family.
fn pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    (ip(), ip()).prop_map(|(a, b)| match (a, b) {
        (IpAddr::V4(_), IpAddr::V6(_)) => (a, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        (IpAddr::V6(_), IpAddr::V4(b)) => (a, IpAddr::V6(b.to_ipv6_mapped())),
        _ => (a, b),
    })
}

fn v1() -> impl Strategy<Value = Case> {
    prop_oneof![
        (pair(), any::<u16>(), any::<u16>()).prop_map(|((src, dst), sport, dport)| {
            let protocol = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            Case {
                bytes: format!("PROXY {protocol} {src} {dst} {sport} {dport}\r\n").into_bytes(),
                source: Some(SocketAddr::new(src, sport)),
            }
        }),
        "[ -~]{0,80}".prop_map(|rest| Case {
            bytes: format!("PROXY UNKNOWN {rest}\r\n").into_bytes(),
            source: None,
        }),
        Just(Case {
            bytes: b"PROXY UNKNOWN\r\n".to_vec(),
            source: None,
        }),
    ]
}

fn v2() -> impl Strategy<Value = Case> {
    let tlvs = vec((any::<u8>(), vec(any::<u8>(), 0..40)), 0..5);
    (
        pair(),
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
        tlvs,
        any::<bool>(),
    )
        .prop_map(|((src, dst), sport, dport, local, tlvs, crc)| {
            let mut block = Vec::new();
            let family = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    block.extend_from_slice(&s.octets());
                    block.extend_from_slice(&d.octets());
                    0x11
                }
                (s, d) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        IpAddr::V6(v6) => v6,
                    };
                    block.extend_from_slice(&v6(s).octets());
                    block.extend_from_slice(&v6(d).octets());
                    0x21
                }
            };
            block.extend_from_slice(&sport.to_be_bytes());
            block.extend_from_slice(&dport.to_be_bytes());
            for (kind, value) in &tlvs {
                // Any kind but CRC32C, which is added (right) below when asked for.
                block.push(if *kind == 0x03 { 0x04 } else { *kind });
                block.extend_from_slice(&(value.len() as u16).to_be_bytes());
                block.extend_from_slice(value);
            }
            if crc {
                block.extend_from_slice(&[0x03, 0, 4, 0, 0, 0, 0]);
            }
            let mut bytes = V2_SIGNATURE.to_vec();
            bytes.push(if local { 0x20 } else { 0x21 });
            bytes.push(family);
            bytes.extend_from_slice(&(block.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&block);
            if crc {
                let sum = crc32c(bytes.iter().copied());
                let at = bytes.len() - 4;
                bytes[at..].copy_from_slice(&sum.to_be_bytes());
            }
            let source = match src {
                IpAddr::V4(_) => src,
                IpAddr::V6(_) if family == 0x21 => src,
                _ => unreachable!(),
            };
            Case {
                bytes,
                source: (!local).then_some(SocketAddr::new(source, sport)),
            }
        })
}

fn header() -> impl Strategy<Value = Case> {
    prop_oneof![v1(), v2()]
}

/// Reads a header as the server does: at most `needed` bytes a read, each read cut shorter
/// as the network may cut it. Returns what was read in all and the verdict.
fn read_like_the_server(stream: &[u8], cuts: &[usize]) -> (usize, Option<Parsed>) {
    let mut read = 0;
    let mut cuts = cuts.iter().cycle();
    loop {
        match parse(&stream[..read]) {
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1);
                let cut = cuts.next().map_or(needed, |c| 1 + c % needed);
                if read == stream.len() {
                    return (read, None);
                }
                read = (read + cut.min(needed)).min(stream.len());
            }
            Ok(done) => return (read, Some(done)),
            Err(_) => return (read, None),
        }
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn a_header_is_read_whole_and_never_past_its_end(
        case in header(),
        after in vec(any::<u8>(), 0..64),
        cuts in vec(0usize..200, 1..10),
    ) {
        let mut stream = case.bytes.clone();
        stream.extend_from_slice(&after);
        let (read, verdict) = read_like_the_server(&stream, &cuts);
        prop_assert_eq!(read, case.bytes.len(), "read exactly the header");
        let Some(Parsed::Complete { len, header }) = verdict else {
            panic!("not read: {verdict:?}");
        };
        prop_assert_eq!(len, case.bytes.len());
        prop_assert_eq!(header.addresses.map(|a| a.source), case.source);
    }

    #[test]
    fn every_prefix_of_a_header_asks_for_no_more_than_the_rest(case in header()) {
        for cut in 0..case.bytes.len() {
            match parse(&case.bytes[..cut]) {
                Ok(Parsed::Incomplete { needed }) => {
                    prop_assert!(needed >= 1 && cut + needed <= case.bytes.len());
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_verdict_on_some_bytes_holds_whatever_follows(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..120),
            header().prop_flat_map(|case| {
                let len = case.bytes.len();
                (Just(case.bytes), 0..len + 1, vec(any::<u8>(), 0..8), any::<usize>())
                    .prop_map(|(mut bytes, cut, noise, at)| {
                        // A header with a byte or a few changed, cut somewhere.
                        for (i, b) in noise.iter().enumerate() {
                            let len = bytes.len();
                            bytes[(at + i * 7) % len] = *b;
                        }
                        bytes.truncate(cut);
                        bytes
                    })
            }),
        ],
        more in vec(any::<u8>(), 1..40),
    ) {
        let verdict = parse(&bytes);
        let mut longer = bytes.clone();
        longer.extend_from_slice(&more);
        let later = parse(&longer);
        match verdict {
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Ok(complete @ Parsed::Complete { .. }) => {
                let Parsed::Complete { len, .. } = &complete else { unreachable!() };
                prop_assert!(*len <= bytes.len());
                prop_assert_eq!(later, Ok(complete));
            }
            Err(_) => prop_assert!(later.is_err(), "{:?} then {:?}", bytes, later),
        }
    }
}

/// A network that holds `ip` and up to 2^(`host_bits` % 8) - 1 neighbours.
fn network_of(ip: IpAddr, host_bits: u8) -> Cidr {
    let host_bits = u32::from(host_bits % 8);
    let masked = match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() >> host_bits << host_bits)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() >> host_bits << host_bits)),
    };
    let max = if masked.is_ipv4() { 32 } else { 128 };
    format!("{masked}/{}", max - host_bits).parse().unwrap()
}

/// How a node is written in either header.
fn spelled(ip: IpAddr, port: Option<u16>, forwarded: bool) -> String {
    let node = match (ip, port) {
        (IpAddr::V4(v4), None) => v4.to_string(),
        (IpAddr::V4(v4), Some(p)) => format!("{v4}:{p}"),
        (IpAddr::V6(v6), None) if !forwarded => v6.to_string(),
        (IpAddr::V6(v6), None) => format!("[{v6}]"),
        (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
    };
    if forwarded {
        format!("for=\"{node}\"")
    } else {
        node
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn nothing_left_of_the_proxies_entries_can_choose_the_client(
        client in ip(),
        port in proptest::option::of(any::<u16>()),
        proxies in vec((ip(), 0u8..8), 1..4),
        claims in vec("[ -~]{0,30}", 0..4),
        forwarded in any::<bool>(),
    ) {
        let trusted = TrustedProxies::new(proxies.iter().map(|&(ip, p)| network_of(ip, p)));
        prop_assume!(!trusted.contains(client));
        let peer = SocketAddr::new(proxies[0].0, 4000);
        // What the client wrote, then what the proxies appended, nearest last: the client's
        // address, then each proxy's but the peer's.
        let mut entries: Vec<String> = claims.clone();
        entries.push(spelled(client, port, forwarded));
        for &(ip, _) in proxies[1..].iter().rev() {
            entries.push(spelled(ip, None, forwarded));
        }
        let line = entries.join(", ");
        let (fwd, xff): (Vec<&[u8]>, Vec<&[u8]>) = if forwarded {
            (vec![line.as_bytes()], vec![])
        } else {
            (vec![], vec![line.as_bytes()])
        };
        let got = client_address(&trusted, peer, fwd, xff);
        prop_assert_eq!(got, SocketAddr::new(client.to_canonical(), port.unwrap_or(0)), "{}", line);
    }

    #[test]
    fn any_header_gives_the_peer_or_an_address_it_names(
        lines in vec("[ -~]{0,60}", 0..4),
        mixed in vec(prop_oneof![Just("for=".to_owned()), "[0-9a-f.:\\[\\]\"_,;= ]{0,20}"], 0..6),
    ) {
        let trusted = TrustedProxies::new(["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let mut all = lines.clone();
        all.push(mixed.concat());
        for forwarded in [false, true] {
            let bytes = all.iter().map(|l| l.as_bytes());
            let nodes = if forwarded { forwarded_for(bytes) } else { x_forwarded_for(bytes) };
            let got = rightmost_untrusted(&trusted, peer, &nodes);
            let named = nodes.iter().any(|n| matches!(*n,
                chat_core::proxy::Node::Addr(ip, p)
                    if SocketAddr::new(ip.to_canonical(), p.unwrap_or(0)) == got));
            prop_assert!(got == peer || named, "{:?} gave {}", all, got);
        }
    }
}

#[test]
fn the_protocol_doc_quotes_the_refusal_of_a_connection_without_a_header() {
    let doc = include_str!("../../docs/protocol.md");
    assert!(
        doc.contains(&format!("```text\n{}\n```", chat_core::proxy::NO_HEADER)),
        "docs/protocol.md quotes {:?}",
        chat_core::proxy::NO_HEADER
    );
}
