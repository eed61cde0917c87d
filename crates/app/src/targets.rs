//! Outbound targets: where Siyu may send a request that carries a tenant's credentials.
//!
//! A tenant admin sets the Ocean Engine `base_url`, and the lead poller sends the tenant's
//! access token there. Left open, that lets an admin make the server call its own loopback
//! services or the cloud metadata endpoint (169.254.169.254) with a token attached, or send the
//! token in clear over http. So every outbound URL is held to a [`TargetPolicy`]: by default
//! https only, and no host that is, or resolves to, a loopback, private (RFC 1918, unique-local
//! fc00::/7), link-local (169.254/16, fe80::/10), unspecified, CGNAT (100.64/10), broadcast or
//! multicast address. The operator lifts both rules with `SIYU_ALLOW_PRIVATE_TARGETS=1` (tests,
//! local set-ups); the binary reads the variable once into the policy that is passed down, so
//! library code never reads the environment and tests choose a policy without touching it.
//!
//! Checked twice. When a URL is set, [`TargetPolicy::check`] looks at it as written: the
//! scheme, and hosts that are addresses or `localhost` (names are not resolved then: a name's
//! addresses may change). Before each request, [`CheckedResolver`] resolves the host and refuses
//! the request if any address is not allowed; the request then connects to exactly the addresses
//! that were checked, so a DNS answer that changes between the check and the connection (DNS
//! rebinding) cannot slip a private address in.

use std::net::{IpAddr, Ipv4Addr};

/// Which outbound targets are allowed. The default allows only public https hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    allow_private: bool,
}

/// The environment variable that allows private targets (read by the binary only).
pub const ALLOW_PRIVATE_ENV: &str = "SIYU_ALLOW_PRIVATE_TARGETS";

impl TargetPolicy {
    /// Public https hosts only.
    pub const PUBLIC_ONLY: TargetPolicy = TargetPolicy {
        allow_private: false,
    };
    /// Any host, http too: tests with local servers, and local set-ups.
    pub const ALLOW_PRIVATE: TargetPolicy = TargetPolicy {
        allow_private: true,
    };

    /// The policy [`ALLOW_PRIVATE_ENV`]'s value asks for: `1`, `true` or `yes` allow private
    /// targets; anything else (or no value) does not.
    pub fn from_env_value(value: Option<&str>) -> TargetPolicy {
        let on = value.is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
        });
        TargetPolicy { allow_private: on }
    }

    pub fn allows_private(self) -> bool {
        self.allow_private
    }

    /// Checks a URL as written (`field` names the setting in errors) and returns it parsed.
    /// Host names are not resolved here; [`CheckedResolver`] checks their addresses at request
    /// time.
    pub fn check(self, field: &'static str, raw: &str) -> Result<url::Url, TargetError> {
        let invalid = |message: String| TargetError::Invalid { field, message };
        if raw.contains(char::is_whitespace) || raw.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{field} must be an https:// origin without spaces, e.g. https://api.oceanengine.com"
            )));
        }
        let url = url::Url::parse(raw).map_err(|e| {
            invalid(format!(
                "{field} is not a URL ({e}); e.g. https://api.oceanengine.com"
            ))
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid(format!(
                "{field} must be an https:// origin, e.g. https://api.oceanengine.com"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(format!(
                "{field} must not hold a user name or password"
            )));
        }
        let Some(host) = url.host() else {
            return Err(invalid(format!("{field} has no host")));
        };
        if self.allow_private {
            return Ok(url);
        }
        let origin = origin(&url);
        if url.scheme() != "https" {
            return Err(TargetError::NotAllowed {
                field,
                message: format!(
                    "{field} {origin} is not allowed: outbound requests carry credentials and go \
                     only over https{HINT}"
                ),
            });
        }
        let refused = match host {
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                (d == "localhost" || d.ends_with(".localhost")).then_some("a loopback name")
            }
            url::Host::Ipv4(ip) => refused(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => refused(IpAddr::V6(ip)),
        };
        match refused {
            Some(class) => Err(TargetError::NotAllowed {
                field,
                message: format!("{field} {origin} is not allowed: it is {class}{HINT}"),
            }),
            None => Ok(url),
        }
    }

    /// Checks one address a host resolved to.
    pub fn check_addr(
        self,
        field: &'static str,
        host: &str,
        ip: IpAddr,
    ) -> Result<(), TargetError> {
        if self.allow_private {
            return Ok(());
        }
        match refused(ip) {
            Some(class) => Err(TargetError::NotAllowed {
                field,
                message: format!(
                    "{field} host {host} resolves to {ip}, which is {class}; refused{HINT}"
                ),
            }),
            None => Ok(()),
        }
    }
}

const HINT: &str =
    " (an operator can allow private and http targets with SIYU_ALLOW_PRIVATE_TARGETS=1)";

/// `scheme://host[:port]`: what errors show of a URL (never a path, query or user info).
fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// What kind of address `ip` is, if it is one no outbound request may reach by default.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return refused_v4(Ipv4Addr::new(a, b, c, d));
            }
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique-local (private) address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private (RFC 1918) address")
    } else if ip.is_link_local() {
        Some("a link-local address (the cloud metadata service lives there)")
    } else if a == 0 {
        Some("the unspecified network (0.0.0.0/8)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared CGNAT address (100.64.0.0/10)")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// An outbound URL that was refused; `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a usable URL at all.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A URL the policy does not allow (http, or a private host).
    #[error("{message}")]
    NotAllowed {
        field: &'static str,
        message: String,
    },
}

impl TargetError {
    /// The stable code at the edge.
    pub fn code(&self) -> &'static str {
        match self {
            TargetError::Invalid { .. } => "invalid_connector_setting",
            TargetError::NotAllowed { .. } => "target_not_allowed",
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            TargetError::Invalid { field, .. } | TargetError::NotAllowed { field, .. } => field,
        }
    }
}

/// ureq's resolver with every address checked against a policy: a request whose host resolves
/// to any address not allowed fails with a [`TargetError`] (inside `ureq::Error::Io`) before a
/// connection is made, and an allowed request connects to the addresses checked here.
#[derive(Debug)]
pub struct CheckedResolver {
    policy: TargetPolicy,
    field: &'static str,
    inner: ureq::unversioned::resolver::DefaultResolver,
}

impl CheckedResolver {
    pub fn new(policy: TargetPolicy, field: &'static str) -> CheckedResolver {
        CheckedResolver {
            policy,
            field,
            inner: Default::default(),
        }
    }

    /// An agent whose requests resolve through this resolver.
    pub fn agent(self, config: ureq::config::Config) -> ureq::Agent {
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            self,
        )
    }
}

impl ureq::unversioned::resolver::Resolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or("");
        for a in &addrs {
            self.policy
                .check_addr(self.field, host, a.ip())
                .map_err(|e| ureq::Error::Io(std::io::Error::other(e)))?;
        }
        Ok(addrs)
    }
}

/// The [`TargetError`] a ureq error carries, if a [`CheckedResolver`] refused the request.
pub fn refused_by_resolver(e: &ureq::Error) -> Option<TargetError> {
    match e {
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<TargetError>())
            .cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_refuses_http_and_private_hosts() {
        let p = TargetPolicy::default();
        assert_eq!(p, TargetPolicy::PUBLIC_ONLY);
        for url in [
            "http://api.oceanengine.com",
            "https://127.0.0.1",
            "https://127.1.2.3:8443",
            "https://10.0.0.7",
            "https://172.16.0.1",
            "https://192.168.1.1",
            "https://[::1]:9000",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:127.0.0.1]",
            "https://[64:ff9b::a9fe:a9fe]",
            "https://localhost",
            "https://LOCALHOST.:8080",
            "https://api.localhost",
            "https://169.254.169.254",
            "https://0.0.0.0",
            "https://[::]",
            "https://100.64.0.1",
            "https://100.127.255.254",
            "https://2130706433",
            "https://0x7f.1",
        ] {
            let e = p.check("base_url", url).unwrap_err();
            assert_eq!(e.code(), "target_not_allowed", "{url}: {e}");
            assert_eq!(e.field(), "base_url");
            assert!(e.to_string().contains("SIYU_ALLOW_PRIVATE_TARGETS"), "{e}");
        }
        for url in [
            "https://api.oceanengine.com",
            "https://api.oceanengine.com:443/",
            "https://100.128.0.1",
            "https://8.8.8.8",
            "https://[2001:4860:4860::8888]",
        ] {
            assert!(p.check("base_url", url).is_ok(), "{url}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_whatever_the_policy() {
        for p in [TargetPolicy::PUBLIC_ONLY, TargetPolicy::ALLOW_PRIVATE] {
            for url in [
                "ftp://x",
                "api.oceanengine.com",
                "https://a b",
                "https://user:pw@api.oceanengine.com",
                "",
            ] {
                let e = p.check("base_url", url).unwrap_err();
                assert_eq!(e.code(), "invalid_connector_setting", "{url}");
                assert!(!e.to_string().contains("pw@"), "{e}");
            }
        }
    }

    #[test]
    fn allowing_private_targets_allows_local_servers() {
        let p = TargetPolicy::ALLOW_PRIVATE;
        for url in ["http://127.0.0.1:9", "https://localhost", "http://[::1]:80"] {
            assert!(p.check("base_url", url).is_ok(), "{url}");
        }
        assert!(
            p.check_addr("base_url", "x", "127.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn resolved_addresses_are_checked() {
        let p = TargetPolicy::PUBLIC_ONLY;
        let e = p
            .check_addr("base_url", "evil.example", "10.1.2.3".parse().unwrap())
            .unwrap_err();
        assert_eq!(e.code(), "target_not_allowed");
        assert!(e.to_string().contains("evil.example"), "{e}");
        assert!(
            p.check_addr("base_url", "x", "203.0.114.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_setting_reads_as_documented() {
        for v in ["1", "true", "YES", " 1 "] {
            assert!(
                TargetPolicy::from_env_value(Some(v)).allows_private(),
                "{v}"
            );
        }
        for v in [None, Some(""), Some("0"), Some("no"), Some("2")] {
            assert!(!TargetPolicy::from_env_value(v).allows_private(), "{v:?}");
        }
    }

    #[test]
    fn a_request_to_a_name_that_resolves_to_loopback_is_refused_before_connecting() {
        let agent = CheckedResolver::new(TargetPolicy::PUBLIC_ONLY, "base_url")
            .agent(ureq::Agent::config_builder().build());
        // `localhost` resolves without a network; the literal check is skipped here on purpose.
        let e = agent.get("https://localhost:9/").call().unwrap_err();
        let refused = refused_by_resolver(&e).unwrap_or_else(|| panic!("{e}"));
        assert_eq!(refused.code(), "target_not_allowed");
    }
}
