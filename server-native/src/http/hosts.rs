//! Which names the server goes by: the defence against DNS rebinding. A page of another site
//! (`http://evil.example`) can have its name point at this server's address once loaded; the
//! browser then takes this server for the page's own origin, lets the page read every answer
//! (the page, `/metrics`, `/healthz`) and sends `Origin: http://evil.example` with
//! `Host: evil.example` on `/ws`, which looks like the server's own page. What gives it away is
//! the name: the server answers only requests whose `Host` names it, which is
//!
//! - an IP address (`127.0.0.1`, `[::1]`, any other): no name was looked up, so none can have
//!   been rebound;
//! - `localhost` and names under `.localhost`, which browsers resolve to loopback themselves
//!   (RFC 6761);
//! - the name in `--http`, when it is a name;
//! - the host of each `--allow-origin` origin;
//! - the names given with `--allow-host` (`*`: any, for a proxy in front that checks).
//!
//! Names are compared without regard to case or a final dot; ports are not compared, since
//! behind a proxy or a port mapping they are not the listener's. A request without `Host`
//! (HTTP/1.0) is not from a browser, which always sends it, and passes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hyper::header::HOST;
use hyper::http::request::Parts;

/// The names the server goes by, besides addresses and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// `--allow-host *`: any name.
    any: bool,
    /// Lowercase, without a final dot.
    names: Vec<String>,
}

/// A request for a name the server does not go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// A name: its lowercase form, without port or final dot.
    Name(String),
    /// Not a host at all, as sent.
    Malformed(String),
}

impl fmt::Display for Foreign {
    /// Why, in a clause that fits in a sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why("this", "the"))
    }
}

impl Foreign {
    /// The one-line answer to a request (other than `/ws`) for a name not the server's.
    pub fn answer(&self) -> String {
        format!("{}.", self.why("This", "The"))
    }

    /// Why, beginning with `this` or `the` (capitalised or not, as given).
    fn why(&self, this: &str, the: &str) -> String {
        match self {
            Foreign::Name(name) => format!(
                "{this} server does not go by the name {name:?} (a page of another site may have \
                 pointed its own name at this address); if it does, start the server with \
                 --allow-host {name}"
            ),
            Foreign::Malformed(host) => format!("{the} Host {host:?} names no server"),
        }
    }
}

impl Hosts {
    /// The names of `--allow-host` (`*`: any), the hosts of the `--allow-origin` origins and
    /// the name of `--http` (`NAME:PORT`), if it is one.
    pub fn new(allow_host: &[String], allow_origin: &[String], http: &str) -> Hosts {
        let mut hosts = Hosts::default();
        for name in allow_host {
            match name.trim() {
                "*" => hosts.any = true,
                name => hosts.add(name),
            }
        }
        for origin in allow_origin {
            if let Some((_, rest)) = origin.trim().split_once("://") {
                hosts.add(rest.split('/').next().unwrap_or_default());
            }
        }
        hosts.add(http);
        hosts
    }

    fn add(&mut self, authority: &str) {
        if let Some(Host::Name(name)) = parse(authority)
            && !self.names.contains(&name)
        {
            self.names.push(name);
        }
    }

    /// `Ok` when a request with this `Host` value is for this server.
    pub fn check(&self, host: Option<&str>) -> Result<(), Foreign> {
        let Some(host) = host.map(str::trim).filter(|host| !host.is_empty()) else {
            return Ok(());
        };
        match parse(host) {
            None => Err(Foreign::Malformed(host.to_owned())),
            Some(Host::Address) => Ok(()),
            Some(Host::Name(name)) => {
                if self.any
                    || name == "localhost"
                    || name.ends_with(".localhost")
                    || self.names.contains(&name)
                {
                    Ok(())
                } else {
                    Err(Foreign::Name(name))
                }
            }
        }
    }

    /// [`Hosts::check`] for a request: its `Host`, and the authority of its target when that
    /// is absolute (`GET http://name/ HTTP/1.1`), which then stands for the `Host`.
    pub fn check_request(&self, head: &Parts) -> Result<(), Foreign> {
        if let Some(host) = head.headers.get(HOST) {
            // Not text: no browser sends that (names beyond ASCII go as punycode).
            let host = host.to_str().map_err(|_| {
                Foreign::Malformed(String::from_utf8_lossy(host.as_bytes()).into_owned())
            })?;
            self.check(Some(host))?;
        }
        self.check(head.uri.authority().map(|authority| authority.as_str()))
    }
}

/// What a `Host` value names.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    /// An IP address.
    Address,
    /// A name, lowercase, without a final dot.
    Name(String),
}

/// The host of `authority` (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`); `None` when it
/// is none.
fn parse(authority: &str) -> Option<Host> {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (address, port) = rest.split_once(']')?;
        let port_ok = port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        return (port_ok && address.parse::<Ipv6Addr>().is_ok()).then_some(Host::Address);
    }
    // A bare IPv6 address is not a valid Host, but it is an address all the same.
    if authority.parse::<Ipv6Addr>().is_ok() {
        return Some(Host::Address);
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        Some(_) => return None,
        None => authority,
    };
    if host.parse::<Ipv4Addr>().is_ok() {
        return Some(Host::Address);
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.split('.').all(label_ok).then_some(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(allow_host: &[&str], allow_origin: &[&str], http: &str) -> Hosts {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Hosts::new(&strings(allow_host), &strings(allow_origin), http)
    }

    #[test]
    fn addresses_and_localhost_are_always_the_servers_own() {
        let h = hosts(&[], &[], "127.0.0.1:8080");
        for own in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "[2001:db8::7]",
            "::1",
            "localhost:8080",
            "LocalHost",
            "localhost.",
            "app.localhost:3000",
        ] {
            assert_eq!(h.check(Some(own)), Ok(()), "{own}");
        }
        assert_eq!(h.check(None), Ok(()));
        assert_eq!(h.check(Some("")), Ok(()));
    }

    #[test]
    fn other_names_are_foreign_unless_configured() {
        let h = hosts(&[], &[], "127.0.0.1:8080");
        for (host, name) in [
            ("evil.example", "evil.example"),
            ("Evil.Example:8080", "evil.example"),
            ("evil.example.:80", "evil.example"),
            ("localhost.evil.example", "localhost.evil.example"),
            ("x", "x"),
            ("127.0.0.1.evil.example", "127.0.0.1.evil.example"),
        ] {
            assert_eq!(
                h.check(Some(host)),
                Err(Foreign::Name(name.into())),
                "{host}"
            );
        }
        for malformed in [
            "evil.example:http",
            "a b",
            "user@127.0.0.1",
            "[::1",
            "[zz]:80",
            "a..b",
        ] {
            assert_eq!(
                h.check(Some(malformed)),
                Err(Foreign::Malformed(malformed.into())),
                "{malformed}"
            );
        }

        let h = hosts(
            &["Chat.Example.org", "other.example:443"],
            &["https://app.example.org", "*", "http://[::1]:3000"],
            "box.lan:8080",
        );
        for own in [
            "chat.example.org",
            "CHAT.example.org.:8443",
            "other.example",
            "app.example.org:443",
            "box.lan",
        ] {
            assert_eq!(h.check(Some(own)), Ok(()), "{own}");
        }
        assert!(h.check(Some("evil.example")).is_err());
        assert_eq!(hosts(&["*"], &[], "").check(Some("evil.example")), Ok(()));
    }

    #[test]
    fn a_request_is_checked_by_its_host_and_an_absolute_targets_authority() {
        let h = hosts(&[], &[], "127.0.0.1:8080");
        let head = |uri: &str, host: &[u8]| {
            let request = hyper::Request::builder()
                .uri(uri)
                .header(HOST, hyper::header::HeaderValue::from_bytes(host).unwrap());
            request.body(()).unwrap().into_parts().0
        };
        assert_eq!(h.check_request(&head("/", b"localhost:8080")), Ok(()));
        assert!(h.check_request(&head("/", b"evil.example")).is_err());
        assert!(
            h.check_request(&head("http://evil.example/", b"localhost"))
                .is_err()
        );
        assert_eq!(
            h.check_request(&head("http://[::1]:8080/", b"[::1]:8080")),
            Ok(())
        );
        assert!(matches!(
            h.check_request(&head("/", b"caf\xe9.example")),
            Err(Foreign::Malformed(_))
        ));
        let bare = hyper::Request::builder().uri("/").body(()).unwrap();
        assert_eq!(h.check_request(&bare.into_parts().0), Ok(()));
    }

    #[test]
    fn the_reason_names_the_host_and_the_flag_in_one_line() {
        let h = hosts(&[], &[], "127.0.0.1:8080");
        let why = h.check(Some("Evil.Example:8080")).unwrap_err();
        let answer = why.answer();
        assert!(answer.starts_with("This server does not go by the name \"evil.example\""));
        assert!(answer.ends_with("start the server with --allow-host evil.example."));
        assert!(!answer.contains('\n'), "{answer}");
    }
}
