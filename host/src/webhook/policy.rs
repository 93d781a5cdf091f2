//! The address policy applied where a webhook is dialled: IP literals are
//! checked before the request, host names inside the resolver the HTTP
//! client uses, so a name that resolves differently on a second look (DNS
//! rebinding) is still checked on what is connected to. The policy itself
//! is the core's (`agent_session_core::address`), the one every host
//! applies when an endpoint is set.

use std::net::SocketAddr;

pub use agent_session_core::address::{AddressPolicy, Allow, Refused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Check a URL before a request: only http(s), and an IP-literal host
/// (which the client dials without asking the resolver) must pass. The
/// parsed URL's text has its host in canonical form, which the core's
/// check reads.
pub fn check_url(policy: &AddressPolicy, url: &reqwest::Url) -> Result<(), Refused> {
    policy.check_url(url.as_str())
}

/// Resolve `host` and check every address; the allowed ones are returned.
/// Used by the client's resolver and to check an endpoint when it is
/// configured.
pub async fn resolve(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, BoxError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match policy.check(host, a.ip()) {
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The resolver given to the HTTP client: the system resolver, filtered.
pub(crate) struct PolicyResolver(pub(crate) AddressPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            // The port is the connector's business; 0 is replaced by it.
            let addrs = resolve(&policy, name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_side_check_reads_every_literal_form() {
        // The policy's own cases are the core's (`address.rs`); here: what
        // the client's URL parser reads as an address, the core reads too.
        let p = AddressPolicy::new();
        let check = |u: &str| check_url(&p, &reqwest::Url::parse(u).unwrap());
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("https://example.com/hook").is_ok());
        for u in [
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://2130706433/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]:8080/x",
        ] {
            assert_eq!(check(u).is_err(), p.check_url(u).is_err(), "{u}");
        }
    }
}
