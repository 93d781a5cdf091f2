//! Which addresses webhooks may be sent to (SSRF protection): the policy,
//! one place for every host. A webhook URL is chosen by whoever configures
//! the endpoint, and the request is made from inside a host's network:
//! without a filter it could reach the cloud metadata service, an admin
//! port on loopback or a database on the private network.
//!
//! This module judges addresses (and URLs whose host is an address); a
//! sender applies it to every address it actually dials, and every host
//! applies it when an endpoint is set (`check-webhook-url`), with the
//! exceptions its operator allowed. Resolving names is the sender's (this
//! crate does no I/O).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

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
                 (allow {ip} explicitly if it is meant: --webhook-allow in the CLI, \
                 the allow list in the Node and Python packages)",
                self.why
            ),
            Some(ip) => write!(
                f,
                "refused to send a webhook to {}: it resolves to {ip}, a {} address \
                 (allow {} explicitly if it is meant: --webhook-allow in the CLI, \
                 the allow list in the Node and Python packages)",
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

    /// What this policy allows, in a canonical form (its rules sorted,
    /// comma-separated; empty for the default): two policies with the same
    /// fingerprint refuse the same addresses.
    pub fn fingerprint(&self) -> String {
        let mut rules: Vec<String> = self
            .allow
            .iter()
            .map(|a| match a {
                Allow::Host(h) => h.clone(),
                Allow::Net(n) => n.to_string(),
            })
            .collect();
        rules.sort();
        rules.dedup();
        rules.join(",")
    }

    /// A policy from rules given one by one.
    pub fn from_rules(rules: &[String]) -> Result<Self, String> {
        rules
            .iter()
            .try_fold(Self::new(), |p, s| Ok(p.allow(s.trim().parse()?)))
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

    /// Check a URL when an endpoint is set: only http(s), and a host that
    /// is an IP address (in any form a URL parser reads as one: `127.1`,
    /// `0x7f.0.0.1`, `2130706433`, `[::ffff:127.0.0.1]`) must pass. A host
    /// name passes here: what it resolves to is checked when it is dialled.
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let refused = |host: &str, why: String| Refused {
            host: host.to_owned(),
            ip: None,
            why,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(refused(url, "it is not a URL".into()));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(refused(
                url,
                format!("only http and https are allowed, not {scheme}"),
            ));
        }
        let authority = authority(rest);
        if let Some(why) = unplain(authority) {
            return Err(refused(url, why));
        }
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host.is_empty() {
            return Err(refused(url, "the URL has no host".into()));
        }
        match host_ip(host) {
            Some(ip) => self.check(&ip.to_string(), ip),
            None => Ok(()),
        }
    }
}

/// The authority of a URL (what follows `scheme://`, up to the path): a
/// WHATWG parser ends it at `\` too, as it reads `\` as `/` in http(s).
pub fn authority(rest: &str) -> &str {
    rest.split(['/', '?', '#', '\\']).next().unwrap_or_default()
}

/// Why an authority is refused whatever its host, if it is: one a URL
/// parser would decode into another host than it reads as (percent
/// escapes, non-ASCII characters it maps, such as full-width digits and
/// ideographic full stops, to ASCII ones: `%31%32%37.0.0.1` and
/// `１２７.０.０.１` are 127.0.0.1 to a WHATWG parser). A host name with
/// non-ASCII letters is written in its ASCII (punycode) form.
pub fn unplain(authority: &str) -> Option<String> {
    if authority.contains('%') {
        return Some("its host must not contain percent escapes ('%')".into());
    }
    if !authority.is_ascii() {
        return Some(
            "its host must be plain ASCII (a name with other letters in its punycode form, xn--...)"
                .into(),
        );
    }
    None
}

/// The address a URL's host is, if it is one: an IPv6 literal, or an IPv4
/// address in any of the forms the WHATWG URL parser accepts (one to four
/// dot-separated numbers, each decimal, `0x` hexadecimal or `0` octal, the
/// last filling the remaining bytes).
pub fn host_ip(host: &str) -> Option<IpAddr> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    // Only a host whose last label is a number is an IPv4 address.
    let number = |p: &str| -> Option<u64> {
        let p = p.to_ascii_lowercase();
        if let Some(hex) = p.strip_prefix("0x") {
            return if hex.is_empty() {
                Some(0)
            } else {
                u64::from_str_radix(hex, 16).ok()
            };
        }
        if p.len() > 1 && p.starts_with('0') {
            return u64::from_str_radix(&p[1..], 8).ok();
        }
        p.parse().ok()
    };
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let nums: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - nums.len() as u32) {
        return None;
    }
    let mut v: u64 = *last;
    for (i, &n) in init.iter().enumerate() {
        v += n << (8 * (3 - i));
    }
    Some(IpAddr::V4(Ipv4Addr::from(v as u32)))
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address
/// they reach, so `::ffff:127.0.0.1` is judged (and allowed) as loopback.
pub fn canonical(ip: IpAddr) -> IpAddr {
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
        let check = |u: &str| p.check_url(u);
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("http://[::ffff:127.0.0.1]:8080/x").is_err());
        assert!(
            check("http://2130706433/").is_err(),
            "127.0.0.1 as a number"
        );
        assert!(check("https://example.com/hook").is_ok());
        for literal in [
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1:80/x",
            "http://[::1]/",
        ] {
            assert!(check(literal).is_err(), "{literal}");
        }
        for name in [
            "http://hooks.example.com/",
            "http://127.0.0.1.example/",
            "http://1.2.3.4.5/",
            "http://hooks.example.com/a%20path?q=%31",
        ] {
            assert!(check(name).is_ok(), "{name}");
        }
        // What a WHATWG parser (Node's) decodes into 127.0.0.1 or reads
        // as a path: refused before a host name could pass.
        for disguised in [
            "http://%31%32%37.0.0.1:8080/",
            "http://127.0.0.1%2e:8080/",
            "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
            "http://127\u{3002}0\u{3002}0\u{3002}1/",
            "http://127.0.0.1\\hook",
            "http://%31%36%39.254.169.254/latest/meta-data",
        ] {
            assert!(check(disguised).is_err(), "{disguised}");
            assert!(
                crate::webhook::validate_url(disguised).is_err() || disguised.contains('\\'),
                "{disguised}"
            );
        }
    }
}
