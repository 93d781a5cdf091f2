//! Which addresses webhooks may be sent to (SSRF protection).
//!
//! A webhook URL is chosen by whoever configures the endpoint, and the
//! request is made from inside the host's network: without a filter it could
//! reach the cloud metadata service, an admin port on loopback or a database
//! on the private network. The filter runs on the addresses actually dialled:
//! IP literals are checked before the request, host names inside the
//! resolver the HTTP client uses, so a name that resolves differently on a
//! second look (DNS rebinding) is still checked on what is connected to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The address policy: special-purpose addresses are refused unless a rule
/// allows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Allow>,
}

/// One exception to the default policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// A host name (exact, case-insensitive): any address it resolves to.
    Host(String),
    /// An address or a range (`127.0.0.1`, `10.0.0.0/8`, `::1`).
    Net(IpNet),
}

impl FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(canonical(ip))));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if valid {
            Ok(Self::Host(s.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{s:?} is neither a host name, an IP address nor a range like 10.0.0.0/8"
            ))
        }
    }
}

/// Why a webhook was not sent to an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The host of the URL.
    pub host: String,
    /// The address refused (`None`: the URL itself was refused).
    pub ip: Option<IpAddr>,
    /// Why, e.g. "loopback".
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(ip) if ip.to_string() == self.host => write!(
                f,
                "refused to send a webhook to {ip}: it is a {} address \
                 (allow it explicitly with --webhook-allow {ip} if it is meant)",
                self.why
            ),
            Some(ip) => write!(
                f,
                "refused to send a webhook to {}: it resolves to {ip}, a {} address \
                 (allow it explicitly with --webhook-allow {} if it is meant)",
                self.host, self.why, self.host
            ),
            None => write!(
                f,
                "refused to send a webhook to {}: {}",
                self.host, self.why
            ),
        }
    }
}

impl std::error::Error for Refused {}

impl AddressPolicy {
    /// The default policy: public addresses only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also allow `rule`.
    pub fn allow(mut self, rule: Allow) -> Self {
        self.allow.push(rule);
        self
    }

    /// A policy from a comma-separated list of rules
    /// (`127.0.0.1,10.0.0.0/8,hooks.internal`).
    pub fn from_list(list: &str) -> Result<Self, String> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .try_fold(Self::new(), |p, s| Ok(p.allow(s.parse()?)))
    }

    /// Whether a host name is allowed whatever it resolves to.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Check one address that `host` names (or is).
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        let Some(why) = special_purpose(ip) else {
            return Ok(());
        };
        if self.allows_host(host)
            || self
                .allow
                .iter()
                .any(|a| matches!(a, Allow::Net(n) if n.contains(&ip)))
        {
            return Ok(());
        }
        Err(Refused {
            host: host.to_owned(),
            ip: Some(ip),
            why: why.to_owned(),
        })
    }

    /// Check a URL before a request: only http(s), and an IP-literal host
    /// (which the client dials without asking the resolver) must pass.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or_default().to_owned();
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused {
                host,
                ip: None,
                why: format!("only http and https are allowed, not {}", url.scheme()),
            });
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(&host, IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Refused {
                host,
                ip: None,
                why: "the URL has no host".into(),
            }),
        }
    }

    /// Resolve `host` and check every address; the allowed ones are
    /// returned. Used by the client's resolver and to check an endpoint
    /// when it is configured.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check(host, a.ip()) {
                Ok(()) => true,
                Err(r) => {
                    refused.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(r)) => Err(Box::new(r)),
            (true, None) => Err(format!("{host} resolves to no address").into()),
            (false, _) => Ok(allowed),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The resolver given to the HTTP client: the system resolver, filtered.
pub(crate) struct PolicyResolver(pub(crate) AddressPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            // The port is the connector's business; 0 is replaced by it.
            let addrs = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address
/// they reach, so `::ffff:127.0.0.1` is judged (and allowed) as loopback.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What kind of special-purpose address `ip` is, if it is one (IANA
/// special-purpose registries; only globally reachable unicast passes).
fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_unspecified() || a == 0 => "unspecified (\"this network\")",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private-network",
        _ if ip.is_link_local() => "link-local (cloud metadata)",
        _ if a == 100 && (64..128).contains(&b) => "carrier-grade NAT (shared)",
        _ if ip.is_documentation() => "documentation",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ if a == 192 && b == 0 && c == 0 => "IETF protocol assignment",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || a >= 240 => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that embed an IPv4 address reach it: judge that one.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if s[..6] == [0; 6] => return special_v4(embedded(s[6], s[7])).or(Some("reserved")),
        // NAT64 and 6to4 reach the IPv4 address they carry.
        _ if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] => {
            return special_v4(embedded(s[6], s[7]));
        }
        _ if s[0] == 0x64 && s[1] == 0xff9b => "NAT64 (local use)",
        _ if s[0] == 0x2002 => return special_v4(embedded(s[1], s[2])),
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_unicast_link_local() => "link-local",
        _ if ip.is_unique_local() => "unique-local (private)",
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => "documentation",
        _ if s[0] & 0xfff0 == 0x3ff0 => "documentation",
        _ if s[0] == 0x0100 && s[1..4] == [0; 3] => "discard-only",
        _ if s[0] == 0x2001 && s[1] < 0x0200 => "IETF protocol assignment",
        _ if s[0] & 0xe000 != 0x2000 => "reserved (not global unicast)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_purpose_addresses_are_refused_and_public_ones_pass() {
        let p = AddressPolicy::new();
        for refused in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "64:ff9b:1::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(p.check(refused, ip).is_err(), "{refused} must be refused");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(p.check(public, ip), Ok(()), "{public} is public");
        }
        let r = p.check("169.254.169.254", "169.254.169.254".parse().unwrap());
        assert!(r.unwrap_err().to_string().contains("link-local"));
    }

    #[test]
    fn rules_allow_chosen_addresses_ranges_and_hosts() {
        let p = AddressPolicy::from_list("127.0.0.1, 10.0.0.0/8,[::1],Hooks.Internal").unwrap();
        let ok = |host: &str, ip: &str| p.check(host, ip.parse().unwrap()).is_ok();
        assert!(ok("127.0.0.1", "127.0.0.1"));
        assert!(
            ok("x", "::ffff:127.0.0.1"),
            "mapped form of an allowed address"
        );
        assert!(!ok("x", "127.0.0.2"));
        assert!(ok("x", "10.20.30.40"));
        assert!(ok("x", "::1"));
        assert!(ok("hooks.internal", "192.168.0.1"));
        assert!(!ok("other.internal", "192.168.0.1"));
        assert!(AddressPolicy::from_list("10.0.0.0/33").is_err());
        assert!(AddressPolicy::from_list("a b").is_err());
    }

    #[test]
    fn urls_other_than_http_and_literal_special_addresses_are_refused() {
        let p = AddressPolicy::new();
        let check = |u: &str| p.check_url(&reqwest::Url::parse(u).unwrap());
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("http://[::ffff:127.0.0.1]:8080/x").is_err());
        assert!(
            check("http://2130706433/").is_err(),
            "127.0.0.1 as a number"
        );
        assert!(check("https://example.com/hook").is_ok());
    }
}
