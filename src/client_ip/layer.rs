use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientIp, ClientIpError, Ipv6Grouping};

/// The client's address as the stack resolved it, once, for every layer after it: put in
/// request extensions by [`ClientIpLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedClientIp {
    ip: Result<IpAddr, ClientIpError>,
    grouping: Ipv6Grouping,
}

impl ResolvedClientIp {
    /// The address, or why there is none.
    ///
    /// # Errors
    /// As [`ClientIp::resolve`].
    pub fn ip(&self) -> Result<IpAddr, ClientIpError> {
        self.ip
    }

    /// The key the client is limited under (IPv6 grouped by prefix).
    ///
    /// # Errors
    /// As [`ClientIp::resolve`].
    pub fn limit_key(&self) -> Result<IpAddr, ClientIpError> {
        self.ip.map(|ip| self.grouping.key(ip))
    }
}

/// Resolves the client's address once per request with one [`ClientIp`] configuration
/// (trusted proxies, forwarded header, peer source) and shares it as a
/// [`ResolvedClientIp`] extension with every layer inside: per-address rate limits, the
/// failed-authentication limit, activity events.
///
/// Without it, those layers use the connection's peer address and trust no proxy.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_api_key::client_ip::{ClientIp, ClientIpLayer};
///
/// let stack = ServiceBuilder::new()
///     .layer(ClientIpLayer::new(ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap()));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientIpLayer {
    client_ip: Arc<ClientIp>,
}

impl ClientIpLayer {
    /// Resolves with `client_ip`.
    pub fn new(client_ip: ClientIp) -> Self {
        Self {
            client_ip: Arc::new(client_ip),
        }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            client_ip: Arc::clone(&self.client_ip),
        }
    }
}

/// The service [`ClientIpLayer`] wraps around the inner service.
#[derive(Clone)]
pub struct ClientIpService<S> {
    inner: S,
    client_ip: Arc<ClientIp>,
}

impl<S> ClientIpService<S> {
    crate::support::gate::inner_service_accessors!(S);
}

impl<S: fmt::Debug> fmt::Debug for ClientIpService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpService")
            .field("inner", &self.inner)
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let resolved = self
            .client_ip
            .resolve(request.headers(), request.extensions());
        request.extensions_mut().insert(ResolvedClientIp {
            ip: resolved,
            grouping: self.client_ip.grouping,
        });
        self.inner.call(request)
    }
}
