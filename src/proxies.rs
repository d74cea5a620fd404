//! `listen.trusted_proxies`: the peers whose word on the original request (`X-Original-*`,
//! `X-Forwarded-*`) the HTTP forward-auth adapter takes. Anyone else could name any path.

use std::net::IpAddr;

/// Addresses and networks (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl TrustedProxies {
    /// Every entry parsed, or one message per entry that is not an address or a network.
    pub fn parse(entries: &[String]) -> Result<Self, Vec<String>> {
        let mut networks = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for entry in entries {
            match Network::parse(entry) {
                Some(n) => networks.push(n),
                None => problems.push(format!(
                    "{entry:?} is not an IP address or network (10.0.0.0/8, ::1)"
                )),
            }
        }
        match problems.is_empty() {
            true => Ok(Self(networks)),
            false => Err(problems),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, peer: IpAddr) -> bool {
        // A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        self.0.iter().any(|n| n.contains(peer))
    }
}

impl Network {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            // Digits only: `u8::from_str` would also take "+8".
            Some(bits) if !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()) => {
                bits.parse().ok().filter(|p| *p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Self {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    fn contains(self, peer: IpAddr) -> bool {
        match (self.addr, peer) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(net.to_bits()) << 96,
                u128::from(ip.to_bits()) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(net.to_bits(), ip.to_bits(), self.prefix)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

/// Whether the first `prefix` bits (from the top) of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    match prefix {
        0 => true,
        p => (a ^ b) >> (128 - u32::from(p)) == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_hold_their_addresses_and_no_others() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(p.contains(ip("10.255.1.2")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("192.168.1.7")));
        assert!(!p.contains(ip("192.168.1.8")));
        assert!(p.contains(ip("fd12::1")));
        assert!(!p.contains(ip("fe80::1")));
        // An IPv4 peer on a dual-stack socket.
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert!(!p.contains(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn empty_trusts_nobody_and_zero_prefix_trusts_its_family() {
        assert!(!proxies(&[]).contains(ip("127.0.0.1")));
        let all4 = proxies(&["0.0.0.0/0"]);
        assert!(all4.contains(ip("203.0.113.9")));
        assert!(!all4.contains(ip("::1")));
    }

    #[test]
    fn every_bad_entry_is_named() {
        let bad = [
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0/8",
            "::1/129",
            "localhost",
            "10.0.0.0/",
        ];
        let err = TrustedProxies::parse(&bad.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_err();
        assert_eq!(err.len(), bad.len(), "{err:?}");
        assert!(err[4].contains("\"localhost\""), "{err:?}");
    }
}
