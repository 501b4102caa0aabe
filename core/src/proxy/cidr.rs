//! The addresses trusted to speak for their clients (`--trusted-proxy`): IPv4 and IPv6 networks
//! in CIDR notation, or single addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is its own network (`/32`,
/// `/128`). IPv4 in IPv6 (`::ffff:10.0.0.0/104`) is kept as the IPv4 network it is, so that
/// it matches whichever way the socket reports the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` value is not a network, in a sentence that says what would be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits that name the network.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(ip.to_bits(), self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(ip.to_bits(), self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6, spaces around it ignored. Bits set past the
    /// prefix (`10.0.0.5/8`) are refused rather than dropped: trusting a whole network for
    /// a mistyped address is too costly a guess.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let err =
            |why: String| CidrError(format!("{text:?} is not an address or a network: {why}"));
        if text.is_empty() {
            return Err(CidrError(
                "an empty value is not an address or a network (e.g. 10.0.0.0/8, 192.0.2.7, \
                 2001:db8::/32)"
                    .to_owned(),
            ));
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            let what = if prefix.is_some() {
                format!("{addr:?}")
            } else {
                "it".to_owned()
            };
            err(format!(
                "{what} is neither an IPv4 nor an IPv6 address (e.g. 10.0.0.0/8, 192.0.2.7, \
                 2001:db8::/32)"
            ))
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(err(format!("the prefix after '/' must be 0 to {max}"))),
            },
        };
        let cidr = canonical(addr, prefix);
        let masked = match cidr.addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(mask_v4(v4.to_bits(), cidr.prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(mask_v6(v6.to_bits(), cidr.prefix))),
        };
        if masked != cidr.addr {
            return Err(err(format!(
                "it has bits set past the prefix; write {masked}/{} for the network, or {} alone \
                 for the one address",
                cidr.prefix, cidr.addr
            )));
        }
        Ok(cidr)
    }
}

/// IPv4-mapped IPv6 networks (`::ffff:0:0/96` and narrower) as the IPv4 networks they are.
fn canonical(addr: IpAddr, prefix: u8) -> Cidr {
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Cidr {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            None => Cidr { addr, prefix },
        },
        _ => Cidr { addr, prefix },
    }
}

impl fmt::Display for Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`; a single address without its prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == whole {
            self.addr.fmt(f)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The networks of `--trusted-proxy`; empty: nobody may speak for a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// These networks.
    pub fn new(networks: impl IntoIterator<Item = Cidr>) -> TrustedProxies {
        TrustedProxies(networks.into_iter().collect())
    }

    /// Whether no network is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 counting as IPv4) is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match text.parse::<Cidr>() {
            Ok(cidr) => panic!("{text} was taken as {cidr}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn ipv4_networks_and_bare_addresses() {
        let ten = net("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.1")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(!ten.contains(ip("9.255.255.255")));
        let one = net("192.0.2.7");
        assert_eq!(one.prefix(), 32);
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let all = net("0.0.0.0/0");
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("2001:db8::1")), "IPv4's 0/0 is not IPv6");
        assert!(net("192.0.2.0/31").contains(ip("192.0.2.1")));
        assert!(!net("192.0.2.0/31").contains(ip("192.0.2.2")));
    }

    #[test]
    fn ipv6_networks_and_bare_addresses() {
        let doc = net("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(!doc.contains(ip("10.0.0.1")));
        let one = net("::1");
        assert_eq!(one.prefix(), 128);
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert!(net("::/0").contains(ip("fe80::1")));
        assert!(net("2001:db8::/127").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4_both_ways() {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        let mapped = net("::ffff:10.0.0.0/104");
        assert_eq!(mapped, net("10.0.0.0/8"));
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.1.2.3")));
        assert_eq!(net("::ffff:192.0.2.7"), net("192.0.2.7"));
    }

    #[test]
    fn bad_values_are_refused_saying_what_would_do() {
        let err = refused("10.0.0.5/8");
        assert!(err.contains("bits set past the prefix"), "{err}");
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!(err.contains("10.0.0.5 alone"), "{err}");
        let err = refused("2001:db8::1/32");
        assert!(err.contains("2001:db8::/32"), "{err}");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/x",
        ] {
            let err = refused(bad);
            assert!(
                err.contains("the prefix after '/' must be 0 to"),
                "{bad}: {err}"
            );
        }
        for bad in [
            "example.org",
            "10.0.0",
            "10.0.0.256",
            "[::1]",
            "10.0.0.0/8/8",
            "*",
        ] {
            let err = refused(bad);
            assert!(
                err.contains("is not an address or a network"),
                "{bad}: {err}"
            );
        }
        assert!(refused("").contains("empty"));
        assert!(refused("  ").contains("empty"));
    }

    #[test]
    fn spaces_around_a_value_are_ignored_and_display_is_canonical() {
        assert_eq!(net(" 10.0.0.0/8 "), net("10.0.0.0/8"));
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.7/32").to_string(), "192.0.2.7");
        assert_eq!(net("2001:0db8:0::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn a_set_trusts_what_any_of_its_networks_holds() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert!(!none.contains(ip("127.0.0.1")));
        let set = TrustedProxies::new([net("10.0.0.0/8"), net("2001:db8::/32"), net("127.0.0.1")]);
        assert!(!set.is_empty());
        for yes in ["10.9.9.9", "2001:db8::5", "127.0.0.1", "::ffff:127.0.0.1"] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in ["127.0.0.2", "192.0.2.1", "::1", "2001:db9::"] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        assert_eq!(set.networks().len(), 3);
    }
}
