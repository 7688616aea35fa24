//! Outbound HTTP under an egress policy.
//!
//! Every request Keyward makes to another server on behalf of an external application (token
//! exchanges, proxied API calls) goes through [`Egress::send`], which enforces the
//! application's [`EgressPolicy`]:
//!
//! - only hosts on the policy are contacted (`check_url`: http/https, no userinfo, host and
//!   port matched by an entry);
//! - private, loopback, link-local and other non-public addresses are refused unless the
//!   policy names them (`allows_address`);
//! - names are resolved by our own resolver, which drops refused addresses before hyper sees
//!   them, so the address connected to is always one that was checked (no second lookup, no
//!   DNS rebinding between check and connect); IP-literal hosts are checked directly;
//! - redirects are followed by hand, each target checked from scratch, with `Authorization`,
//!   `Proxy-Authorization` and `Cookie` removed on every redirect;
//! - the whole exchange has one deadline and the response body a size cap.
//!
//! Clients are cached per policy: a client's connection pool only ever holds connections
//! that were checked under that same policy, so a connection opened under a lenient policy
//! is never reused under a stricter one. System proxies are never used (a proxy would
//! resolve the names itself).
//!
//! Nothing here logs headers or bodies; transport error messages carry no URL.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION,
    PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};

pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, StatusCode, Url};

/// How many per-policy clients are kept; beyond this one is dropped to make room.
const MAX_CACHED_CLIENTS: usize = 64;

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// One policy entry, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entry {
    /// An exact hostname (lowercase ASCII, IDNA-encoded, no trailing dot).
    Host { name: String, port: Option<u16> },
    /// `*.suffix`: any name strictly below `suffix`.
    Wildcard { suffix: String, port: Option<u16> },
    /// An IP literal (IPv4-mapped IPv6 stored as IPv4).
    Ip { addr: IpAddr, port: Option<u16> },
    /// A CIDR block (host bits cleared); any port.
    Cidr { network: IpAddr, prefix: u8 },
}

impl Entry {
    fn parse(raw: &str) -> Option<Entry> {
        let s = raw.trim();
        if s.is_empty() {
            return None;
        }
        if let Some((addr, prefix)) = s.split_once('/') {
            return parse_cidr(addr, prefix);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let addr: Ipv6Addr = inside.parse().ok()?;
            let port = match after {
                "" => None,
                _ => Some(parse_port(after.strip_prefix(':')?)?),
            };
            return Some(Entry::Ip {
                addr: canonical(IpAddr::V6(addr)),
                port,
            });
        }
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Some(Entry::Ip {
                addr: canonical(addr),
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (s, None),
        };
        if host.contains(':') {
            return None;
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            return match url::Host::parse(suffix).ok()? {
                url::Host::Domain(d) => Some(Entry::Wildcard {
                    suffix: valid_domain(&d)?,
                    port,
                }),
                _ => None,
            };
        }
        match url::Host::parse(host).ok()? {
            url::Host::Domain(d) => Some(Entry::Host {
                name: valid_domain(&d)?,
                port,
            }),
            url::Host::Ipv4(a) => Some(Entry::Ip {
                addr: IpAddr::V4(a),
                port,
            }),
            url::Host::Ipv6(a) => Some(Entry::Ip {
                addr: canonical(IpAddr::V6(a)),
                port,
            }),
        }
    }

    fn port_matches(port: Option<u16>, actual: u16) -> bool {
        port.is_none_or(|p| p == actual)
    }

    /// Whether this entry names `addr` (IP literal or CIDR; ports do not matter here).
    fn names_address(&self, addr: IpAddr) -> bool {
        match *self {
            Entry::Ip { addr: a, .. } => a == addr,
            Entry::Cidr { network, prefix } => cidr_contains(network, prefix, addr),
            Entry::Host { .. } | Entry::Wildcard { .. } => false,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Host { name, port: None } => write!(f, "{name}"),
            Entry::Host {
                name,
                port: Some(p),
            } => write!(f, "{name}:{p}"),
            Entry::Wildcard { suffix, port: None } => write!(f, "*.{suffix}"),
            Entry::Wildcard {
                suffix,
                port: Some(p),
            } => write!(f, "*.{suffix}:{p}"),
            Entry::Ip { addr, port: None } => write!(f, "{addr}"),
            Entry::Ip {
                addr: IpAddr::V4(a),
                port: Some(p),
            } => write!(f, "{a}:{p}"),
            Entry::Ip {
                addr: IpAddr::V6(a),
                port: Some(p),
            } => write!(f, "[{a}]:{p}"),
            Entry::Cidr { network, prefix } => write!(f, "{network}/{prefix}"),
        }
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

fn parse_cidr(addr: &str, prefix: &str) -> Option<Entry> {
    let addr: IpAddr = addr.parse().ok()?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let network = match addr {
        IpAddr::V4(a) if prefix <= 32 => {
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_u32(prefix)))
        }
        IpAddr::V6(a) if prefix <= 128 => {
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_u128(prefix)))
        }
        _ => return None,
    };
    Some(Entry::Cidr { network, prefix })
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn cidr_contains(network: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (network, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask_u32(prefix) == u32::from(n),
        (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask_u128(prefix) == u128::from(n),
        _ => false,
    }
}

/// A domain as `url` normalized it, checked for hostname characters; trailing dot removed.
fn valid_domain(d: &str) -> Option<String> {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > 253 {
        return None;
    }
    let ok = d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    });
    ok.then(|| d.to_owned())
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as the IPv4 address they stand for.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Public (globally routable unicast) IPv4 address.
fn is_public_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, b3] = a.octets();
    !(b0 == 0 // "this network", incl. unspecified
        || b0 == 10 // RFC 1918
        || (b0 == 100 && (b1 & 0xc0) == 64) // shared address space 100.64/10
        || b0 == 127 // loopback
        || (b0 == 169 && b1 == 254) // link-local (cloud metadata)
        || (b0 == 172 && (b1 & 0xf0) == 16) // RFC 1918
        || (b0 == 192 && b1 == 0 && b2 == 0 && b3 != 9 && b3 != 10) // IETF protocol assignments
        || (b0 == 192 && b1 == 0 && b2 == 2) // TEST-NET-1
        || (b0 == 192 && b1 == 88 && b2 == 99) // 6to4 relay anycast (deprecated)
        || (b0 == 192 && b1 == 168) // RFC 1918
        || (b0 == 198 && (b1 & 0xfe) == 18) // benchmarking 198.18/15
        || (b0 == 198 && b1 == 51 && b2 == 100) // TEST-NET-2
        || (b0 == 203 && b1 == 0 && b2 == 113) // TEST-NET-3
        || b0 >= 224) // multicast, reserved, broadcast
}

/// Public IPv6 address: global unicast (2000::/3) outside the special-purpose blocks, or
/// NAT64 (64:ff9b::/96) of a public IPv4 address.
fn is_public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [h0, h1] = hi.to_be_bytes();
        let [l0, l1] = lo.to_be_bytes();
        Ipv4Addr::new(h0, h1, l0, l1)
    };
    // NAT64 well-known prefix 64:ff9b::/96: the embedded IPv4 address decides.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] & 0xe000 != 0x2000 {
        return false; // not global unicast: ::/8, fc00::/7, fe80::/10, ff00::/8, ...
    }
    if s[0] == 0x2001 && s[1] < 0x200 {
        // 2001::/23, IETF protocol assignments (Teredo, ORCHID, ...); a few are global.
        let global = (s[1] == 1 && s[2..7] == [0, 0, 0, 0, 0] && (s[7] == 1 || s[7] == 2))
            || s[1] == 3
            || (s[1] == 4 && s[2] == 0x112)
            || (0x20..=0x3f).contains(&s[1]);
        return global;
    }
    if s[0] == 0x2001 && s[1] == 0xdb8 {
        return false; // documentation
    }
    if s[0] == 0x2002 {
        // 6to4: the embedded IPv4 address decides.
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    if s[0] == 0x3fff && s[1] < 0x1000 {
        return false; // documentation 3fff::/20
    }
    true
}

fn is_public(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => is_public_v6(a),
    }
}

fn is_localhost(host: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
}

/// A parsed egress policy. Entries (strings, as admins type them):
///  - a hostname, optionally with a port: "api.example.com", "api.example.com:8443", "localhost"
///  - a wildcard for subdomains: "*.example.com" (matches a.example.com, a.b.example.com, not
///    example.com), optionally with a port
///  - an IP literal, optionally with port: "127.0.0.1", "127.0.0.1:5000", "[::1]:8080",
///    "10.1.2.3", "::1"
///  - a CIDR block: "10.0.0.0/8", "fd00::/8" (host bits are cleared)
///
/// An entry without a port allows any port. Hostnames are compared case-insensitively,
/// without a trailing dot; internationalized names are compared in their IDNA (punycode)
/// form, as URLs carry them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EgressPolicy {
    entries: Vec<Entry>,
}

impl EgressPolicy {
    /// Parses admin-typed entries (surrounding whitespace ignored, duplicates dropped). An
    /// empty list is a valid policy that allows nothing. The error names the first bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, EgressPolicyError> {
        let mut parsed: Vec<Entry> = Vec::with_capacity(entries.len());
        for raw in entries {
            let raw = raw.as_ref();
            let entry =
                Entry::parse(raw).ok_or_else(|| EgressPolicyError::InvalidEntry(raw.to_owned()))?;
            if !parsed.contains(&entry) {
                parsed.push(entry);
            }
        }
        Ok(EgressPolicy { entries: parsed })
    }

    /// The normalized entries, for display and storage; `parse` of them gives this policy.
    pub fn entries(&self) -> Vec<String> {
        self.entries.iter().map(ToString::to_string).collect()
    }

    /// Host/port check without DNS: Ok when the URL's scheme is http/https, it has no
    /// userinfo, and its host (+ effective port) is matched by an entry.
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::InvalidUrl(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::InvalidUrl(
                "credentials in the URL are not allowed".to_owned(),
            ));
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(EgressError::InvalidUrl("the URL has no host".to_owned()));
        };
        let allowed = match host {
            url::Host::Domain(d) => {
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                self.entries.iter().any(|e| match e {
                    Entry::Host { name, port: p } => *name == d && Entry::port_matches(*p, port),
                    Entry::Wildcard { suffix, port: p } => {
                        d.len() > suffix.len() + 1
                            && d.ends_with(suffix.as_str())
                            && d[..d.len() - suffix.len()].ends_with('.')
                            && Entry::port_matches(*p, port)
                    }
                    Entry::Ip { .. } | Entry::Cidr { .. } => false,
                })
            }
            url::Host::Ipv4(a) => self.names_ip_host(IpAddr::V4(a), port),
            url::Host::Ipv6(a) => self.names_ip_host(IpAddr::V6(a), port),
        };
        if allowed {
            Ok(())
        } else {
            Err(EgressError::HostNotAllowed {
                host: url.host_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// An IP-literal URL host is on the policy when an IP entry (with a matching port, if
    /// any) or a CIDR entry covers it.
    fn names_ip_host(&self, addr: IpAddr, port: u16) -> bool {
        let canon = canonical(addr);
        self.entries.iter().any(|e| match *e {
            Entry::Ip { addr: a, port: p } => a == canon && Entry::port_matches(p, port),
            Entry::Cidr { .. } => e.names_address(addr) || e.names_address(canon),
            Entry::Host { .. } | Entry::Wildcard { .. } => false,
        })
    }

    /// Whether `addr` may be connected to for a URL whose host is `host`: public (global
    /// unicast) addresses yes; loopback, private (RFC 1918, fc00::/7), link-local
    /// (169.254/16, fe80::/10), unspecified, broadcast, documentation, shared (100.64/10),
    /// IPv4-mapped forms of those, multicast etc. only when "named": an IP-literal or CIDR
    /// entry covers the address (whatever its port), or the host is "localhost", the entry
    /// "localhost" is on the policy and the address is loopback.
    pub fn allows_address(&self, host: &str, addr: IpAddr) -> bool {
        if is_public(addr) {
            return true;
        }
        let canon = canonical(addr);
        if self
            .entries
            .iter()
            .any(|e| e.names_address(addr) || e.names_address(canon))
        {
            return true;
        }
        canon.is_loopback()
            && is_localhost(host)
            && self
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Host { name, .. } if name == "localhost"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EgressPolicyError {
    #[error("invalid egress policy entry {0:?}")]
    InvalidEntry(String),
}

// ---------------------------------------------------------------------------------------
// Errors, request, response
// ---------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The host (or host and port) is not on the policy.
    #[error("host {host:?} is not on the egress policy")]
    HostNotAllowed { host: String },
    /// The host's address is private, loopback, link-local, ... and not named by the
    /// policy (also when DNS answered only such addresses).
    #[error("address {address} of host {host:?} is refused by the egress policy")]
    AddressRefused { host: String, address: IpAddr },
    /// Bad scheme, userinfo in the URL, no host, unusable redirect location.
    #[error("invalid egress URL: {0}")]
    InvalidUrl(String),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("the outbound request timed out")]
    Timeout,
    #[error("the response body is too large")]
    ResponseTooLarge,
    /// Connect, TLS, DNS or I/O failure (the message carries no URL, headers or body).
    #[error("outbound request failed: {0}")]
    Transport(String),
}

impl EgressError {
    /// The request was refused by the policy (nothing was sent to the refused target).
    pub fn is_policy_refusal(&self) -> bool {
        matches!(
            self,
            EgressError::HostNotAllowed { .. }
                | EgressError::AddressRefused { .. }
                | EgressError::InvalidUrl(_)
        )
    }
}

pub struct EgressRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub follow_redirects: bool,
}

impl fmt::Debug for EgressRequest {
    /// Method, host and path only; the query, headers and body may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressRequest")
            .field("method", &self.method)
            .field("host", &self.url.host_str())
            .field("path", &self.url.path())
            .field("follow_redirects", &self.follow_redirects)
            .finish_non_exhaustive()
    }
}

pub struct EgressResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The URL of the last hop (after followed redirects).
    pub final_url: Url,
}

impl fmt::Debug for EgressResponse {
    /// Status, host, path and body length only; headers and body may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressResponse")
            .field("status", &self.status)
            .field("host", &self.final_url.host_str())
            .field("path", &self.final_url.path())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Resolver
// ---------------------------------------------------------------------------------------

/// A name resolver replacing system DNS (tests): name -> addresses.
pub type EgressResolver = Arc<dyn Fn(&str) -> Vec<IpAddr> + Send + Sync>;

/// Carried through reqwest's error chain when every address of a name was refused.
#[derive(Debug, thiserror::Error)]
#[error("address {address} of host {host:?} is refused by the egress policy")]
struct Refusal {
    host: String,
    address: IpAddr,
}

/// The only resolver a policy's client uses: looks the name up once and hands hyper only
/// the addresses the policy allows.
struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    lookup: Option<EgressResolver>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = Arc::clone(&self.policy);
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let mut found: Vec<IpAddr> = match lookup {
                Some(lookup) => lookup(&host),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|sa| sa.ip())
                    .collect(),
            };
            let mut seen = Vec::with_capacity(found.len());
            found.retain(|a| {
                let new = !seen.contains(a);
                seen.push(*a);
                new
            });
            let Some(&first) = found.first() else {
                return Err(format!("no addresses found for {host:?}").into());
            };
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.allows_address(&host, *a))
                .map(|a| SocketAddr::new(a, 0))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refusal {
                    host,
                    address: first,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Egress
// ---------------------------------------------------------------------------------------

struct Inner {
    timeout: Duration,
    max_response_bytes: usize,
    max_redirects: usize,
    lookup: Option<EgressResolver>,
    clients: Mutex<HashMap<EgressPolicy, reqwest::Client>>,
}

/// The outbound HTTP client. Cheap to clone; lives in `AppState`.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Inner>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("timeout", &self.inner.timeout)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .field("max_redirects", &self.inner.max_redirects)
            .field("custom_resolver", &self.inner.lookup.is_some())
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// `timeout`: the whole exchange (all hops and the body); `max_response_bytes`: body cap
    /// (`ResponseTooLarge` beyond it); `max_redirects`: redirects followed at most.
    pub fn new(timeout: Duration, max_response_bytes: usize, max_redirects: usize) -> Self {
        Egress {
            inner: Arc::new(Inner {
                timeout,
                max_response_bytes,
                max_redirects,
                lookup: None,
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Tests: a resolver replacing system DNS (name -> addresses), to simulate rebinding.
    pub fn with_resolver(self, resolver: EgressResolver) -> Self {
        Egress {
            inner: Arc::new(Inner {
                timeout: self.inner.timeout,
                max_response_bytes: self.inner.max_response_bytes,
                max_redirects: self.inner.max_redirects,
                lookup: Some(resolver),
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Sends `request` under `policy`, following redirects if asked (each target checked
    /// from scratch, credentials removed). The 3xx response itself is returned when
    /// `follow_redirects` is false or it has no `Location`.
    pub async fn send(
        &self,
        policy: &EgressPolicy,
        request: EgressRequest,
    ) -> Result<EgressResponse, EgressError> {
        match tokio::time::timeout(self.inner.timeout, self.send_inner(policy, request)).await {
            Ok(result) => result,
            Err(_) => Err(EgressError::Timeout),
        }
    }

    async fn send_inner(
        &self,
        policy: &EgressPolicy,
        request: EgressRequest,
    ) -> Result<EgressResponse, EgressError> {
        let EgressRequest {
            mut method,
            mut url,
            mut headers,
            mut body,
            follow_redirects,
        } = request;
        let mut client: Option<reqwest::Client> = None;
        let mut redirects = 0usize;
        loop {
            check_hop(policy, &url)?;
            let http = match &client {
                Some(c) => c.clone(),
                None => {
                    let c = self.client_for(policy)?;
                    client = Some(c.clone());
                    c
                }
            };
            let mut builder = http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let response = builder.send().await.map_err(map_reqwest_error)?;
            let status = response.status();

            let redirect = follow_redirects
                && matches!(
                    status,
                    StatusCode::MOVED_PERMANENTLY
                        | StatusCode::FOUND
                        | StatusCode::SEE_OTHER
                        | StatusCode::TEMPORARY_REDIRECT
                        | StatusCode::PERMANENT_REDIRECT
                );
            let location = if redirect {
                response.headers().get(LOCATION).cloned()
            } else {
                None
            };
            let Some(location) = location else {
                let headers = response.headers().clone();
                let body = read_body(response, self.inner.max_response_bytes).await?;
                return Ok(EgressResponse {
                    status,
                    headers,
                    body,
                    final_url: url,
                });
            };
            drop(response);

            redirects += 1;
            if redirects > self.inner.max_redirects {
                return Err(EgressError::TooManyRedirects);
            }
            let next = location
                .to_str()
                .ok()
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| EgressError::InvalidUrl("unusable redirect location".to_owned()))?;

            // 301/302/303 after anything but GET/HEAD continue as GET without a body (a HEAD
            // stays HEAD); 307/308 keep the method and body.
            let to_get = matches!(
                status,
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
            ) && method != Method::GET
                && method != Method::HEAD;
            if to_get {
                method = Method::GET;
                body = None;
                for h in [
                    CONTENT_TYPE,
                    CONTENT_LENGTH,
                    CONTENT_ENCODING,
                    TRANSFER_ENCODING,
                ] {
                    headers.remove(h);
                }
            }
            // Credentials never follow a redirect, whatever the target.
            for h in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, HOST] {
                headers.remove(h);
            }
            url = next;
        }
    }

    /// The client for `policy`: built once, its resolver bound to that policy.
    fn client_for(&self, policy: &EgressPolicy) -> Result<reqwest::Client, EgressError> {
        {
            let clients = self
                .inner
                .clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(c) = clients.get(policy) {
                return Ok(c.clone());
            }
        }
        let resolver = PolicyResolver {
            policy: Arc::new(policy.clone()),
            lookup: self.inner.lookup.clone(),
        };
        let built = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(self.inner.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(map_reqwest_error)?;
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !clients.contains_key(policy) && clients.len() >= MAX_CACHED_CLIENTS {
            if let Some(victim) = clients.keys().next().cloned() {
                clients.remove(&victim);
            }
        }
        Ok(clients.entry(policy.clone()).or_insert(built).clone())
    }
}

/// Per-hop checks before anything is sent: the URL against the policy, and an IP-literal
/// host's address (hyper does not call the resolver for those).
fn check_hop(policy: &EgressPolicy, url: &Url) -> Result<(), EgressError> {
    policy.check_url(url)?;
    let literal = match url.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        _ => None,
    };
    if let Some(address) = literal {
        let host = url.host_str().unwrap_or_default();
        if !policy.allows_address(host, address) {
            return Err(EgressError::AddressRefused {
                host: host.to_owned(),
                address,
            });
        }
    }
    Ok(())
}

async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, EgressError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > max as u64) {
        return Err(EgressError::ResponseTooLarge);
    }
    let capacity = declared
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0)
        .min(max);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(map_reqwest_error)? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(EgressError::ResponseTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's error as ours: a policy refusal from our resolver comes back as
/// `AddressRefused`; the transport message is the error chain without the URL.
fn map_reqwest_error(err: reqwest::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return EgressError::AddressRefused {
                host: refusal.host.clone(),
                address: refusal.address,
            };
        }
        source = e.source();
    }
    if err.is_timeout() {
        return EgressError::Timeout;
    }
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    EgressError::Transport(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::{Body, Bytes};
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    use axum::Router;
    use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};

    use super::*;

    // --- test servers --------------------------------------------------------------------

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    /// What one test server received, in order.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<Seen>>>);

    impl Log {
        fn all(&self) -> Vec<Seen> {
            self.0.lock().unwrap().clone()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// Routes: `/ok` (200 "hello", `x-reply: yes`), `/echo` (the body back, `x-method`),
    /// `/redirect?status=S&to=L`, `/loop` (302 to itself), `/hop/N` (N redirects, then
    /// 200), `/big?n=N` (N bytes, with Content-Length), `/stream` (4 × 500 bytes, chunked),
    /// `/slow` (answers after 5 s).
    async fn handler(State(log): State<Log>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let raw_query = parts.uri.query().unwrap_or_default().to_owned();
        let query: HashMap<String, String> = url::form_urlencoded::parse(raw_query.as_bytes())
            .into_owned()
            .collect();
        let path = parts.uri.path().to_owned();
        log.0.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            query: raw_query,
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        match path.as_str() {
            "/ok" => ([("x-reply", "yes")], "hello").into_response(),
            "/echo" => ([("x-method", parts.method.to_string())], body).into_response(),
            "/redirect" => {
                let status = StatusCode::from_u16(query["status"].parse().unwrap()).unwrap();
                (status, [(LOCATION, query["to"].clone())]).into_response()
            }
            "/loop" => (StatusCode::FOUND, [(LOCATION, "/loop")]).into_response(),
            "/big" => vec![b'x'; query["n"].parse::<usize>().unwrap()].into_response(),
            "/stream" => Body::from_stream(futures_util::stream::iter(
                (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 500]))),
            ))
            .into_response(),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late".into_response()
            }
            p if p.starts_with("/hop/") => {
                let n: usize = p["/hop/".len()..].parse().unwrap();
                if n == 0 {
                    "done".into_response()
                } else {
                    (StatusCode::FOUND, [(LOCATION, format!("/hop/{}", n - 1))]).into_response()
                }
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn server() -> (SocketAddr, Log) {
        let log = Log::default();
        let router = Router::new().fallback(handler).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (addr, log)
    }

    // --- helpers ---------------------------------------------------------------------------

    fn policy(entries: &[&str]) -> EgressPolicy {
        EgressPolicy::parse(entries).unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn get(u: &str) -> EgressRequest {
        EgressRequest {
            method: Method::GET,
            url: url(u),
            headers: HeaderMap::new(),
            body: None,
            follow_redirects: true,
        }
    }

    fn egress() -> Egress {
        Egress::new(Duration::from_secs(10), 1 << 20, 5)
    }

    /// A fake DNS: fixed answers, and a count of lookups.
    fn fake_dns(answers: &[(&str, &[&str])]) -> (EgressResolver, Arc<AtomicUsize>) {
        let map: HashMap<String, Vec<IpAddr>> = answers
            .iter()
            .map(|(name, addrs)| (name.to_string(), addrs.iter().map(|a| ip(a)).collect()))
            .collect();
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&lookups);
        let resolver = Arc::new(move |name: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            map.get(name).cloned().unwrap_or_default()
        });
        (resolver, lookups)
    }

    fn assert_refused(result: Result<EgressResponse, EgressError>, host: &str, address: &str) {
        match result {
            Err(EgressError::AddressRefused {
                host: h,
                address: a,
            }) => {
                assert_eq!(h, host);
                assert_eq!(a, ip(address));
            }
            other => panic!("expected AddressRefused for {host} {address}, got {other:?}"),
        }
    }

    fn assert_host_not_allowed(result: Result<EgressResponse, EgressError>, host: &str) {
        match result {
            Err(e @ EgressError::HostNotAllowed { .. }) => {
                assert!(e.is_policy_refusal());
                let EgressError::HostNotAllowed { host: h } = e else {
                    unreachable!()
                };
                assert_eq!(h, host);
            }
            other => panic!("expected HostNotAllowed for {host}, got {other:?}"),
        }
    }

    // --- policy parsing ----------------------------------------------------------------------

    #[test]
    fn parse_normalizes_hostnames_wildcards_ports_ips_and_cidrs() {
        let p = policy(&[
            " API.Example.com. ",
            "api.example.com:8443",
            "*.Example.org",
            "*.example.net:444",
            "127.0.0.1",
            "127.0.0.1:5000",
            "[::1]:8080",
            "::1",
            "[::1]",
            "10.1.2.3/8",
            "fd00::/8",
            "localhost",
            "bücher.example",
            "::ffff:10.0.0.1",
            "api.example.com",
        ]);
        assert_eq!(
            p.entries(),
            vec![
                "api.example.com",
                "api.example.com:8443",
                "*.example.org",
                "*.example.net:444",
                "127.0.0.1",
                "127.0.0.1:5000",
                "[::1]:8080",
                "::1",
                "10.0.0.0/8",
                "fd00::/8",
                "localhost",
                "xn--bcher-kva.example",
                "10.0.0.1",
            ]
        );
        assert_eq!(EgressPolicy::parse(&p.entries()).unwrap(), p);
        let empty = EgressPolicy::parse::<&str>(&[]).unwrap();
        assert!(empty.entries().is_empty());
        assert!(matches!(
            empty.check_url(&url("https://api.example.com/")),
            Err(EgressError::HostNotAllowed { .. })
        ));
    }

    #[test]
    fn parse_rejects_bad_entries_and_names_them() {
        for bad in [
            "",
            "   ",
            "http://api.example.com",
            "api.example.com/path",
            "user@api.example.com",
            "api example.com",
            "exa..mple.com",
            "*",
            "*.",
            "a*.example.com",
            "*.*.example.com",
            "*.10.0.0.1",
            "api.example.com:0",
            "api.example.com:65536",
            "api.example.com:",
            "api.example.com:+80",
            "a:b:c",
            "1.2.3.4.5",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "fd00::/129",
            "example.com/8",
            "[::1",
            "[::1]8080",
            "[::1]:0",
            "[127.0.0.1]",
        ] {
            let err = EgressPolicy::parse(&["api.example.com", bad]).unwrap_err();
            let EgressPolicyError::InvalidEntry(named) = &err;
            assert_eq!(named, bad, "{bad:?} was accepted or misnamed");
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn check_url_matches_hosts_ports_wildcards_and_ip_entries() {
        let p = policy(&[
            "api.example.com",
            "pay.example.com:8443",
            "*.example.org",
            "127.0.0.1:5000",
            "[::1]:8080",
            "10.0.0.0/8",
            "fd00::/8",
        ]);
        for ok in [
            "https://api.example.com/x?y=1",
            "http://API.EXAMPLE.COM.:81/",
            "https://pay.example.com:8443/",
            "https://a.example.org/",
            "https://a.b.example.org:444/",
            "http://127.0.0.1:5000/",
            "http://[::1]:8080/",
            "http://10.9.8.7:1234/",
            "http://[fd00::5]/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(p.check_url(&url(ok)).is_ok(), "{ok} refused");
        }
        for refused in [
            "https://pay.example.com/",
            "https://example.org/",
            "https://badexample.org/",
            "https://api.example.com.evil.net/",
            "https://evil.net/api.example.com",
            "http://127.0.0.1/",
            "http://127.0.0.2:5000/",
            "http://[::1]/",
            "http://11.0.0.1/",
            "http://[fe80::1]/",
        ] {
            assert!(
                matches!(
                    p.check_url(&url(refused)),
                    Err(EgressError::HostNotAllowed { .. })
                ),
                "{refused} allowed"
            );
        }
        for invalid in [
            "ftp://api.example.com/",
            "file:///etc/passwd",
            "data:text/plain,hi",
            "https://user:pw@api.example.com/",
            "https://user@api.example.com/",
            "https://:pw@api.example.com/",
        ] {
            let err = p.check_url(&url(invalid)).unwrap_err();
            assert!(
                matches!(err, EgressError::InvalidUrl(_)),
                "{invalid}: {err:?}"
            );
            assert!(err.is_policy_refusal());
        }
    }

    #[test]
    fn allows_address_refuses_non_public_addresses_unless_named() {
        let hostnames_only = policy(&["api.example.com", "*.example.org"]);
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "192.0.0.9",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(
                hostnames_only.allows_address("api.example.com", ip(public)),
                "{public}"
            );
        }
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "2001:db8::1",
            "2001::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:a00:1::1",
        ] {
            assert!(
                !hostnames_only.allows_address("api.example.com", ip(private)),
                "{private}"
            );
        }

        let named = policy(&[
            "127.0.0.1",
            "169.254.169.254:80",
            "10.0.0.0/8",
            "fd00::/8",
            "::1",
        ]);
        for ok in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "10.200.1.1",
            "fd00::1",
            "::1",
        ] {
            assert!(named.allows_address("api.example.com", ip(ok)), "{ok}");
        }
        for refused in [
            "127.0.0.2",
            "192.168.1.1",
            "fe80::1",
            "fc00::1",
            "172.16.0.1",
        ] {
            assert!(
                !named.allows_address("api.example.com", ip(refused)),
                "{refused}"
            );
        }

        let localhost = policy(&["localhost"]);
        assert!(localhost.allows_address("localhost", ip("127.0.0.1")));
        assert!(localhost.allows_address("LOCALHOST.", ip("::1")));
        assert!(!localhost.allows_address("localhost", ip("10.0.0.1")));
        assert!(!localhost.allows_address("api.example.com", ip("127.0.0.1")));
        assert!(!hostnames_only.allows_address("localhost", ip("127.0.0.1")));
    }

    // --- send: policy ----------------------------------------------------------------------

    #[tokio::test]
    async fn host_not_on_policy_is_refused_before_any_connection() {
        let (addr, log) = server().await;
        let (dns, lookups) = fake_dns(&[("other.test", &["127.0.0.1"])]);
        let egress = egress().with_resolver(dns);
        let p = policy(&["api.example.com", "127.0.0.1:1"]);

        let result = egress
            .send(&p, get(&format!("http://other.test:{}/ok", addr.port())))
            .await;
        assert_host_not_allowed(result, "other.test");
        let result = egress.send(&p, get(&format!("http://{addr}/ok"))).await;
        assert_host_not_allowed(result, "127.0.0.1");

        assert_eq!(log.count(), 0);
        assert_eq!(lookups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn dns_rebinding_to_loopback_is_refused_unless_loopback_is_named() {
        let (addr, log) = server().await;
        let (dns, _) = fake_dns(&[
            ("api.test", &["127.0.0.1"]),
            ("mixed.test", &["192.0.2.1", "127.0.0.1"]),
        ]);
        let egress = egress().with_resolver(dns);
        let target = format!("http://api.test:{}/ok", addr.port());

        let result = egress.send(&policy(&["api.test"]), get(&target)).await;
        assert_refused(result, "api.test", "127.0.0.1");
        assert_eq!(log.count(), 0);

        let ok = egress
            .send(&policy(&["api.test", "127.0.0.1"]), get(&target))
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.body, b"hello");

        // Only the allowed answers are connected to (192.0.2.1 is dropped, not tried).
        let ok = egress
            .send(
                &policy(&["mixed.test", "127.0.0.0/8"]),
                get(&format!("http://mixed.test:{}/ok", addr.port())),
            )
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(log.count(), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_is_not_reused_under_a_stricter_policy() {
        let (addr, log) = server().await;
        let (dns, _) = fake_dns(&[("api.test", &["127.0.0.1"])]);
        let egress = egress().with_resolver(dns);
        let target = format!("http://api.test:{}/ok", addr.port());
        let lenient = policy(&["api.test", "127.0.0.1"]);
        let strict = policy(&["api.test"]);

        assert_eq!(
            egress.send(&lenient, get(&target)).await.unwrap().status,
            StatusCode::OK
        );
        assert_refused(
            egress.send(&strict, get(&target)).await,
            "api.test",
            "127.0.0.1",
        );
        let (a, b) = tokio::join!(
            egress.send(&lenient, get(&target)),
            egress.send(&strict, get(&target))
        );
        assert_eq!(a.unwrap().status, StatusCode::OK);
        assert_refused(b, "api.test", "127.0.0.1");
        assert_eq!(log.count(), 2);
    }

    #[tokio::test]
    async fn private_link_local_and_mapped_addresses_are_refused_unless_named() {
        let (dns, _) = fake_dns(&[
            ("meta.test", &["169.254.169.254"]),
            ("ten.test", &["10.1.2.3"]),
            ("v6.test", &["::1"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("ula.test", &["fd00::1"]),
        ]);
        let egress = egress().with_resolver(dns);
        let p = policy(&[
            "meta.test",
            "ten.test",
            "v6.test",
            "mapped.test",
            "ula.test",
        ]);
        for (host, address) in [
            ("meta.test", "169.254.169.254"),
            ("ten.test", "10.1.2.3"),
            ("v6.test", "::1"),
            ("mapped.test", "::ffff:127.0.0.1"),
            ("ula.test", "fd00::1"),
        ] {
            let result = egress
                .send(&p, get(&format!("http://{host}/latest/meta-data/")))
                .await;
            assert_refused(result, host, address);
        }
        // Named, the same answers pass the address check (shown here without connecting).
        let named = policy(&[
            "169.254.169.254",
            "10.0.0.0/8",
            "::1",
            "127.0.0.1",
            "fd00::/8",
        ]);
        for address in [
            "169.254.169.254",
            "10.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
        ] {
            assert!(named.allows_address("any.test", ip(address)), "{address}");
        }
    }

    #[tokio::test]
    async fn localhost_entry_allows_loopback_for_localhost_only() {
        let (addr, log) = server().await;
        // System DNS for "localhost".
        let ok = egress()
            .send(
                &policy(&["localhost"]),
                get(&format!("http://localhost:{}/ok", addr.port())),
            )
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(log.count(), 1);

        let (dns, _) = fake_dns(&[("api.test", &["127.0.0.1"]), ("localhost", &["127.0.0.1"])]);
        let egress = egress().with_resolver(dns);
        let result = egress
            .send(
                &policy(&["api.test", "localhost"]),
                get(&format!("http://api.test:{}/ok", addr.port())),
            )
            .await;
        assert_refused(result, "api.test", "127.0.0.1");
        let result = egress
            .send(
                &policy(&["localhost:1"]),
                get(&format!("http://localhost:{}/ok", addr.port())),
            )
            .await;
        assert_host_not_allowed(result, "localhost");
        assert_eq!(log.count(), 1);
    }

    #[tokio::test]
    async fn userinfo_in_the_url_is_refused() {
        let (addr, log) = server().await;
        let result = egress()
            .send(
                &policy(&["127.0.0.1"]),
                get(&format!("http://user:secret@{addr}/ok")),
            )
            .await;
        let err = result.unwrap_err();
        assert!(matches!(err, EgressError::InvalidUrl(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"));
        assert_eq!(log.count(), 0);
    }

    // --- send: redirects -------------------------------------------------------------------

    fn redirect(addr: SocketAddr, status: u16, to: &str) -> String {
        let to: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
        format!("http://{addr}/redirect?status={status}&to={to}")
    }

    #[tokio::test]
    async fn redirect_to_a_host_not_on_the_policy_is_refused() {
        let (addr, log) = server().await;
        let (dns, lookups) = fake_dns(&[("evil.test", &["127.0.0.1"])]);
        let egress = egress().with_resolver(dns);
        let p = policy(&["127.0.0.1"]);

        let to = format!("http://evil.test:{}/ok", addr.port());
        assert_host_not_allowed(
            egress.send(&p, get(&redirect(addr, 302, &to))).await,
            "evil.test",
        );
        let result = egress
            .send(
                &p,
                get(&redirect(
                    addr,
                    307,
                    "http://169.254.169.254/latest/meta-data/",
                )),
            )
            .await;
        assert_host_not_allowed(result, "169.254.169.254");
        assert_eq!(
            log.count(),
            2,
            "only the redirecting requests reached a server"
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn redirect_to_a_private_address_is_refused() {
        let (addr, log) = server().await;
        let (dns, _) = fake_dns(&[
            ("internal.test", &["10.0.0.1"]),
            ("meta.test", &["169.254.169.254"]),
        ]);
        let egress = egress().with_resolver(dns);
        let p = policy(&["127.0.0.1", "internal.test", "meta.test"]);

        let to = format!("http://internal.test:{}/ok", addr.port());
        assert_refused(
            egress.send(&p, get(&redirect(addr, 302, &to))).await,
            "internal.test",
            "10.0.0.1",
        );
        let to = "http://meta.test/latest/meta-data/";
        assert_refused(
            egress.send(&p, get(&redirect(addr, 307, to))).await,
            "meta.test",
            "169.254.169.254",
        );
        assert_eq!(
            log.count(),
            2,
            "only the redirecting requests reached a server"
        );
    }

    #[tokio::test]
    async fn credentials_are_not_sent_after_a_redirect() {
        let (a, a_log) = server().await;
        let (b, b_log) = server().await;
        let (dns, _) = fake_dns(&[("b.test", &["127.0.0.1"])]);
        let egress = egress().with_resolver(dns);
        let p = policy(&["127.0.0.1", "b.test"]);

        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        headers.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic cHJveHk6cHc="),
        );
        headers.insert(COOKIE, HeaderValue::from_static("sid=abc"));
        headers.insert("x-custom", HeaderValue::from_static("kept"));

        // 307 to another (allowed) host: method, body and other headers kept.
        let to = format!("http://b.test:{}/echo", b.port());
        let response = egress
            .send(
                &p,
                EgressRequest {
                    method: Method::POST,
                    url: url(&redirect(a, 307, &to)),
                    headers: headers.clone(),
                    body: Some(b"payload".to_vec()),
                    follow_redirects: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.final_url, url(&to));
        assert_eq!(response.body, b"payload");
        let first = &a_log.all()[0];
        assert_eq!(first.headers[AUTHORIZATION], "Bearer s3cret");
        assert_eq!(first.headers[COOKIE], "sid=abc");
        let second = &b_log.all()[0];
        assert_eq!(second.method, "POST");
        assert_eq!(second.body, b"payload");
        assert_eq!(second.headers["x-custom"], "kept");
        for h in ["authorization", "proxy-authorization", "cookie"] {
            assert!(!second.headers.contains_key(h), "{h} sent after redirect");
        }

        // 308 on the same host: still stripped.
        let response = egress
            .send(
                &p,
                EgressRequest {
                    method: Method::PUT,
                    url: url(&redirect(a, 308, "/echo")),
                    headers,
                    body: Some(b"again".to_vec()),
                    follow_redirects: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(response.body, b"again");
        let seen = a_log.all();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].path, "/echo");
        assert_eq!(seen[2].method, "PUT");
        for h in ["authorization", "proxy-authorization", "cookie"] {
            assert!(
                !seen[2].headers.contains_key(h),
                "{h} sent after same-host redirect"
            );
        }
        assert_eq!(seen[2].headers["x-custom"], "kept");
    }

    #[tokio::test]
    async fn see_other_turns_post_into_get_without_body() {
        let (addr, log) = server().await;
        let egress = egress();
        let p = policy(&["127.0.0.0/8"]);
        let post = |target: String, follow: bool| {
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            EgressRequest {
                method: Method::POST,
                url: url(&target),
                headers,
                body: Some(b"a=1".to_vec()),
                follow_redirects: follow,
            }
        };

        let response = egress
            .send(&p, post(redirect(addr, 303, "/echo"), true))
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["x-method"], "GET");
        let response = egress
            .send(&p, post(redirect(addr, 302, "/echo"), true))
            .await
            .unwrap();
        assert_eq!(response.headers["x-method"], "GET");
        let seen = log.all();
        for followed in [&seen[1], &seen[3]] {
            assert_eq!(followed.method, "GET");
            assert!(followed.body.is_empty());
            assert!(!followed.headers.contains_key("content-type"));
        }

        // Without follow_redirects the 303 itself comes back.
        let response = egress
            .send(&p, post(redirect(addr, 303, "/echo"), false))
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::SEE_OTHER);
        assert_eq!(response.headers[LOCATION], "/echo");
        assert_eq!(log.count(), 5);
    }

    #[tokio::test]
    async fn too_many_redirects_is_an_error() {
        let (addr, log) = server().await;
        let egress = Egress::new(Duration::from_secs(10), 1 << 20, 3);
        let p = policy(&["127.0.0.1"]);

        let err = egress
            .send(&p, get(&format!("http://{addr}/loop")))
            .await
            .unwrap_err();
        assert!(matches!(err, EgressError::TooManyRedirects), "{err:?}");
        assert!(!err.is_policy_refusal());
        assert_eq!(log.count(), 4);

        let ok = egress
            .send(&p, get(&format!("http://{addr}/hop/3")))
            .await
            .unwrap();
        assert_eq!(ok.body, b"done");
        assert_eq!(ok.final_url, url(&format!("http://{addr}/hop/0")));
        let err = egress
            .send(&p, get(&format!("http://{addr}/hop/4")))
            .await
            .unwrap_err();
        assert!(matches!(err, EgressError::TooManyRedirects), "{err:?}");
    }

    // --- send: limits and round trips --------------------------------------------------------

    #[tokio::test]
    async fn response_larger_than_the_cap_is_refused() {
        let (addr, _) = server().await;
        let egress = Egress::new(Duration::from_secs(10), 1000, 5);
        let p = policy(&["127.0.0.1"]);

        let ok = egress
            .send(&p, get(&format!("http://{addr}/big?n=1000")))
            .await
            .unwrap();
        assert_eq!(ok.body.len(), 1000);
        let err = egress
            .send(&p, get(&format!("http://{addr}/big?n=1001")))
            .await
            .unwrap_err();
        assert!(matches!(err, EgressError::ResponseTooLarge), "{err:?}");
        // Chunked, without Content-Length.
        let err = egress
            .send(&p, get(&format!("http://{addr}/stream")))
            .await
            .unwrap_err();
        assert!(matches!(err, EgressError::ResponseTooLarge), "{err:?}");
        let ok = Egress::new(Duration::from_secs(10), 2000, 5)
            .send(&p, get(&format!("http://{addr}/stream")))
            .await
            .unwrap();
        assert_eq!(ok.body, vec![b'y'; 2000]);
    }

    #[tokio::test]
    async fn the_whole_exchange_has_a_deadline() {
        let (addr, _) = server().await;
        let egress = Egress::new(Duration::from_millis(300), 1 << 20, 5);
        let started = std::time::Instant::now();
        let err = egress
            .send(&policy(&["127.0.0.1"]), get(&format!("http://{addr}/slow")))
            .await
            .unwrap_err();
        assert!(matches!(err, EgressError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn transport_errors_carry_no_url() {
        // A port nobody listens on (bound, then released).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = egress()
            .send(
                &policy(&["127.0.0.1"]),
                get(&format!("http://127.0.0.1:{port}/path?token=s3cret")),
            )
            .await
            .unwrap_err();
        let EgressError::Transport(message) = &err else {
            panic!("{err:?}")
        };
        assert!(!message.contains("s3cret"), "{message}");
        assert!(!err.is_policy_refusal());
    }

    #[tokio::test]
    async fn get_and_post_round_trip() {
        let (addr, log) = server().await;
        let egress = egress();
        let p = policy(&[&format!("127.0.0.1:{}", addr.port())]);

        let response = egress
            .send(&p, get(&format!("http://{addr}/ok?x=1&y=two")))
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, b"hello");
        assert_eq!(response.headers["x-reply"], "yes");
        assert_eq!(
            response.final_url,
            url(&format!("http://{addr}/ok?x=1&y=two"))
        );

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let response = egress
            .send(
                &p,
                EgressRequest {
                    method: Method::POST,
                    url: url(&format!("http://{addr}/echo")),
                    headers,
                    body: Some(br#"{"k":"v"}"#.to_vec()),
                    follow_redirects: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["x-method"], "POST");
        assert_eq!(response.body, br#"{"k":"v"}"#);

        let seen = log.all();
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].query, "x=1&y=two");
        assert_eq!(seen[1].headers[CONTENT_TYPE], "application/json");
        assert_eq!(seen[1].headers[AUTHORIZATION], "Bearer t");
        assert_eq!(seen[1].body, br#"{"k":"v"}"#);
    }
}
