//! Connections that come through a proxy (`--trusted-proxy`): which addresses may say who the
//! client is, and how they say it. Pure parsers, the driver does the reading.
//!
//! - [`cidr`]: [`Cidr`] and [`TrustedProxies`], the networks trusted to speak for their
//!   clients. From any other address nothing below is read: a PROXY line is a name like any
//!   other, and forwarding headers are ignored.
//! - [`header`]: the PROXY protocol, versions 1 and 2, which a proxy in TCP mode writes first
//!   on the connection (the line listener).
//! - [`forwarded`]: `X-Forwarded-For` and `Forwarded` (RFC 7239), which a proxy in HTTP mode
//!   adds to each request (the HTTP listener), and which of their entries names the client.

pub mod cidr;
pub mod forwarded;
pub mod header;

pub use cidr::{Cidr, CidrError, TrustedProxies};
pub use forwarded::{Node, client_address};
pub use header::{Addresses, HeaderError, NO_HEADER, Parsed, ProxyHeader, Tlv, Version};
