//! The client's address, resolved once per request for every layer that needs it (the
//! per-address rate limits, the failed-authentication limit, key allowlists, activity):
//! the connection's peer, or behind configured trusted proxies the rightmost untrusted
//! forwarded address. [`ClientIpLayer`] goes outermost.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use axum::extract::ConnectInfo;
//! use http::{Request, Response};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_api_key::client_ip::{ClientIp, ClientIpLayer, ResolvedClientIp};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client_ip = ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap();
//! let service = ClientIpLayer::new(client_ip).layer(service_fn(|request: Request<()>| async move {
//!     let ip = request.extensions().get::<ResolvedClientIp>().unwrap().ip().unwrap();
//!     Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
//! }));
//! // From the trusted proxy 10.0.0.7, for the client 203.0.113.9.
//! let mut request = Request::get("/").header("x-forwarded-for", "203.0.113.9").body(()).unwrap();
//! request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 443))));
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.body(), "203.0.113.9");
//! # }
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::reject::{AuthRejection, InvalidRequestReason};

mod layer;

pub use layer::{ClientIpLayer, ClientIpService, ResolvedClientIp};

/// The client's address for the layers of the crate: the one [`ClientIpLayer`] resolved, or
/// else the connection's peer, no proxy trusted.
pub(crate) fn client_ip_of(
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<IpAddr, ClientIpError> {
    match extensions.get::<ResolvedClientIp>() {
        Some(resolved) => resolved.ip(),
        None => ClientIp::peer().resolve(headers, extensions),
    }
}

/// The key the client is limited under: its address grouped as its [`ClientIpLayer`] says
/// (IPv6 per /64 without one).
pub(crate) fn client_key_of(
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<IpAddr, ClientIpError> {
    match extensions.get::<ResolvedClientIp>() {
        Some(resolved) => resolved.limit_key(),
        None => Ok(Ipv6Grouping::default().key(ClientIp::peer().resolve(headers, extensions)?)),
    }
}

/// The address of the connection's peer, as a request extension.
///
/// axum's `ConnectInfo<SocketAddr>` is read as well (feature `axum`); with plain hyper,
/// insert a `ClientAddr` per connection. For anything else, see
/// [`ClientIp::peer_addr_from`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// How many leading bits of an IPv6 address make one client for rate limits and the
/// failed-authentication limit: one subscriber usually holds a whole /64, and some
/// providers hand out a /56 or a /48. IPv4 addresses are always one client each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Ipv6Grouping {
    /// One client per /64 (the default).
    #[default]
    Prefix64,
    /// One client per /56.
    Prefix56,
    /// One client per /48.
    Prefix48,
}

impl Ipv6Grouping {
    const fn bits(self) -> u32 {
        match self {
            Self::Prefix64 => 64,
            Self::Prefix56 => 56,
            Self::Prefix48 => 48,
        }
    }

    /// The key `ip` is limited under: IPv6 masked to the prefix, IPv4 as is.
    pub fn key(self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let masked = u128::from(v6) & (u128::MAX << (128 - self.bits()));
                IpAddr::V6(Ipv6Addr::from(masked))
            }
            v4 @ IpAddr::V4(_) => v4,
        }
    }
}

/// Which header a trusted proxy writes the client's address into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

type PeerResolver = dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync;

/// How the client's address is found: the connection's peer, or, only when that peer is a
/// configured trusted proxy, the rightmost untrusted address of the forwarded header.
///
/// No forwarded header is trusted by default. IPv4-mapped IPv6 addresses count as IPv4.
///
/// ```
/// use std::net::IpAddr;
/// use http::{Extensions, HeaderMap};
/// use tower_api_key::client_ip::{ClientAddr, ClientIp};
///
/// let client_ip = ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap();
/// let mut extensions = Extensions::new();
/// extensions.insert(ClientAddr("10.1.2.3".parse().unwrap()));
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.9.9.9".parse().unwrap());
///
/// // 10.9.9.9 is a trusted proxy; 203.0.113.7 is the first address nobody vouches beyond.
/// let ip = client_ip.resolve(&headers, &extensions).unwrap();
/// assert_eq!(ip, "203.0.113.7".parse::<IpAddr>().unwrap());
/// ```
#[derive(Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    grouping: Ipv6Grouping,
    peer: Option<Arc<PeerResolver>>,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::peer()
    }
}

/// A trusted-proxy entry is neither a CIDR network nor an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network (CIDR) or an IP address")]
pub struct InvalidNetwork(String);

/// No usable client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIpError {
    /// The request carries no peer address (no `ClientAddr`, no `ConnectInfo`).
    #[error("the request carries no peer address")]
    NoPeerAddress,
    /// A trusted proxy sent a forwarded header whose client entry is not an address.
    #[error("the forwarded header from a trusted proxy is malformed")]
    MalformedForwarded,
}

impl From<ClientIpError> for AuthRejection {
    /// A malformed forwarded header is the client's 400; a missing peer address is the
    /// server's misconfiguration (500), never a shared bucket.
    fn from(error: ClientIpError) -> Self {
        match error {
            ClientIpError::MalformedForwarded => {
                AuthRejection::InvalidRequest(InvalidRequestReason::MalformedForwarded)
            }
            ClientIpError::NoPeerAddress => {
                AuthRejection::MissingLayer("the client address (ConnectInfo or ClientAddr)")
            }
        }
    }
}

impl ClientIp {
    /// The connection's peer address; no proxy trusted.
    pub fn peer() -> Self {
        Self {
            trusted: Vec::new(),
            header: ForwardedHeader::default(),
            grouping: Ipv6Grouping::default(),
            peer: None,
        }
    }

    /// Trusts these networks as proxies: their forwarded headers are read. Each is CIDR
    /// (`10.0.0.0/8`, `fd00::/8`) or a single address.
    ///
    /// # Errors
    /// [`InvalidNetwork`] naming the first entry that is neither.
    pub fn trust_proxies<N: AsRef<str>>(
        mut self,
        networks: impl IntoIterator<Item = N>,
    ) -> Result<Self, InvalidNetwork> {
        for network in networks {
            let network = network.as_ref();
            let parsed = network
                .parse::<IpNet>()
                .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidNetwork(network.chars().take(64).collect()))?;
            self.trusted.push(parsed);
        }
        Ok(self)
    }

    /// How IPv6 clients are grouped for limits (default: per /64).
    pub fn ipv6_grouping(mut self, grouping: Ipv6Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Which forwarded header trusted proxies write (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Reads the peer address with `resolve` instead of [`ClientAddr`] / `ConnectInfo`
    /// (e.g. tonic's `TcpConnectInfo`).
    pub fn peer_addr_from(
        mut self,
        resolve: impl Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.peer = Some(Arc::new(resolve));
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    fn peer_addr(&self, extensions: &Extensions) -> Option<IpAddr> {
        if let Some(resolve) = &self.peer {
            return resolve(extensions);
        }
        if let Some(ClientAddr(ip)) = extensions.get::<ClientAddr>() {
            return Some(*ip);
        }
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        None
    }

    /// The client's address.
    ///
    /// # Errors
    /// [`ClientIpError`] when the request has no peer address, or a trusted proxy's header
    /// is malformed where the client's entry should be.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<IpAddr, ClientIpError> {
        let peer = self
            .peer_addr(extensions)
            .ok_or(ClientIpError::NoPeerAddress)?
            .to_canonical();
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Repeated header lines are one list, in order (RFC 9110 §5.3).
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all(name) {
            let value = value
                .to_str()
                .map_err(|_| ClientIpError::MalformedForwarded)?;
            entries.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()));
        }
        let mut leftmost = peer;
        for entry in entries.iter().rev() {
            let ip = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(entry),
                ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_node),
            }
            .ok_or(ClientIpError::MalformedForwarded)?
            .to_canonical();
            if !self.is_trusted(ip) {
                return Ok(ip);
            }
            leftmost = ip;
        }
        // Every hop is trusted: the request started inside.
        Ok(leftmost)
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted", &self.trusted)
            .field("header", &self.header)
            .field("grouping", &self.grouping)
            .field("custom_peer_resolver", &self.peer.is_some())
            .finish()
    }
}

/// The `for=` parameter of one RFC 7239 element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}
