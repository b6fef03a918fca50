//! Who the client is, for the limits kept per address.
//!
//! Behind a reverse proxy every connection comes from the proxy: keyed on the socket's peer,
//! one client's failed tokens would lock every client out, and the public request endpoint's
//! budget would be the whole internet's. So when the peer is a proxy the operator named
//! (`trusted_proxies`), the client is the address that proxy put in `X-Forwarded-For`: read
//! from the right, the first address that is not itself a trusted proxy. Every other
//! peer's `X-Forwarded-For` is ignored, since anyone can send one.

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The proxies whose `X-Forwarded-For` is believed: addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`, `::1`) and networks (`10.0.0.0/8`); the error names the
    /// entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{e:?} is neither an IP address nor a network such as 10.0.0.0/8")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may reach an IPv6 socket as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values in order.
    fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // What a trusted proxy wrote is an address; anything else is where the chain
            // of trust ends, and the last proxy is all that is known.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// The client's address, when the server runs with connection info (`serve` does).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let Some(trusted) = parts.extensions.get::<Arc<TrustedProxies>>() else {
        return Some(peer);
    };
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .into_iter()
        .filter_map(|v| v.to_str().ok());
    Some(trusted.client(peer, forwarded))
}

/// The client's address as an extractor: see [`client_ip`].
pub struct ClientAddr(pub Option<IpAddr>);

/// A client's address is personal data: `Debug` does not show it.
impl std::fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAddr(..)")
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_ip(parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1", "::1"]).unwrap();
        // (peer, X-Forwarded-For values, the client)
        let cases: &[(&str, &[&str], &str)] = &[
            // Not a proxy: its header is the client's own word, ignored.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // A trusted proxy without a header: the proxy is all that is known.
            ("10.1.2.3", &[], "10.1.2.3"),
            ("10.1.2.3", &["198.51.100.1"], "198.51.100.1"),
            // Two proxies; the client put a made-up address in front.
            (
                "10.1.2.3",
                &["1.2.3.4, 198.51.100.1, 192.0.2.1"],
                "198.51.100.1",
            ),
            // The same over two header lines.
            (
                "10.1.2.3",
                &["1.2.3.4, 198.51.100.1", "192.0.2.1"],
                "198.51.100.1",
            ),
            // Every hop trusted: the leftmost.
            ("10.1.2.3", &["10.9.9.9, 192.0.2.1"], "10.9.9.9"),
            // Garbage ends the chain of trust at the last address read.
            ("10.1.2.3", &["198.51.100.1, not-an-address"], "10.1.2.3"),
            ("10.1.2.3", &["not-an-address, 10.4.4.4"], "10.4.4.4"),
            ("::1", &["2001:db8::5"], "2001:db8::5"),
            // An IPv4 proxy seen through an IPv6 socket.
            ("::ffff:10.1.2.3", &["198.51.100.1"], "198.51.100.1"),
        ];
        for (peer, header, client) in cases {
            assert_eq!(
                trusted.client(ip(peer), header.iter().copied()),
                ip(client),
                "{peer} {header:?}"
            );
        }
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client(ip("10.1.2.3"), ["198.51.100.1"].into_iter()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn an_entry_that_is_no_address_is_refused_by_name() {
        let e = TrustedProxies::parse(&["10.0.0.0/8", "proxy.internal"]).unwrap_err();
        assert!(e.contains("\"proxy.internal\""), "{e}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }
}
