//! The layers in front of a tonic gRPC server: `Server::builder().layer(..)`.
//!
//! ```text
//! cargo run --example tonic_server               # listens on 127.0.0.1:50051
//! ```
//!
//! The service is `forg.v1.WhoAmI/Get`; its message types are written with `prost`'s
//! derive and its server and client glue by hand (what `tonic-build` would generate), so no
//! `protoc` is needed:
//!
//! ```proto
//! service WhoAmI { rpc Get(WhoAmIRequest) returns (WhoAmIReply); }
//! message WhoAmIRequest {}
//! message WhoAmIReply { string key_id = 1; string owner = 2; string environment = 3; repeated string scopes = 4; }
//! ```
//!
//! Keys travel in metadata as `authorization: Bearer <key>` or `x-forgeos-api-key: <key>`.
//! Failures come back as gRPC statuses: UNAUTHENTICATED (16), PERMISSION_DENIED (7),
//! RESOURCE_EXHAUSTED (8), UNAVAILABLE (14), INVALID_ARGUMENT (3).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::Service;
use tower_api_key::client_ip::{ClientIp, ClientIpLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::store::IssuedKey;
use tower_api_key::{require, AuthLayer, ForgScope, KeyStore, MemoryKeyStore, NewKey, Principal};

/// `forg.v1.WhoAmIRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIRequest {}

/// `forg.v1.WhoAmIReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIReply {
    /// The caller's key id.
    #[prost(string, tag = "1")]
    pub key_id: String,
    /// The key's owner.
    #[prost(string, tag = "2")]
    pub owner: String,
    /// `live` or `test`.
    #[prost(string, tag = "3")]
    pub environment: String,
    /// Granted scopes.
    #[prost(string, repeated, tag = "4")]
    pub scopes: Vec<String>,
}

const GET: &str = "/forg.v1.WhoAmI/Get";

/// The handler: reads the identity the authentication layer put in the request.
async fn who_am_i(request: Request<WhoAmIRequest>) -> Result<Response<WhoAmIReply>, Status> {
    let identity = request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::internal("authentication layer missing"))?;
    Ok(Response::new(WhoAmIReply {
        key_id: identity.key_id().to_string(),
        owner: identity.owner().to_owned(),
        environment: identity.environment().to_string(),
        scopes: identity
            .scope_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }))
}

/// The server side of `forg.v1.WhoAmI`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WhoAmIServer;

impl NamedService for WhoAmIServer {
    const NAME: &'static str = "forg.v1.WhoAmI";
}

impl Service<http::Request<Body>> for WhoAmIServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != GET {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<WhoAmIReply, WhoAmIRequest>::default());
            Ok(grpc.unary(tower::service_fn(who_am_i), request).await)
        })
    }
}

/// Serves `forg.v1.WhoAmI` on `listener` behind authentication, rate limiting (`class`,
/// keyed per key) and a requirement of `required`, in any scope vocabulary.
pub async fn serve<St: KeyStore>(
    listener: TcpListener,
    store: Arc<St>,
    class: RateClass,
    required: St::Scope,
) -> Result<(), tonic::transport::Error> {
    // tonic puts the peer address in `TcpConnectInfo`; per-address classes read it there.
    let client_ip = ClientIp::peer().peer_addr_from(|extensions| {
        extensions
            .get::<TcpConnectInfo>()?
            .remote_addr()
            .map(|addr| addr.ip())
    });
    let limits = RateLimits::new();
    Server::builder()
        .layer(ClientIpLayer::new(client_ip))
        .layer(AuthLayer::new(store).sources(forg::credential_sources()))
        .layer(limits.layer(class))
        .layer(require(required))
        .add_service(WhoAmIServer)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// The client side: calls `Get` with `metadata` (name, value) pairs.
pub async fn call_who_am_i(
    addr: SocketAddr,
    metadata: &[(&'static str, &str)],
) -> Result<WhoAmIReply, Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(WhoAmIRequest {});
    for (name, value) in metadata {
        let value: MetadataValue<_> = value
            .parse()
            .map_err(|_| Status::invalid_argument("bad metadata"))?;
        request.metadata_mut().append(*name, value);
    }
    let codec = ProstCodec::<WhoAmIRequest, WhoAmIReply>::default();
    let response = grpc
        .unary(request, PathAndQuery::from_static(GET), codec)
        .await?;
    Ok(response.into_inner())
}

/// A key with `read:sessions`, for the demo.
pub async fn demo_key(store: &MemoryKeyStore<ForgScope>) -> IssuedKey<ForgScope> {
    store
        .issue(
            NewKey::new("org_acme", "grpc demo", &KeyFamily::FOS).scopes(ForgScope::ReadSessions),
        )
        .await
        .expect("a fresh store has room for one key")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .parse()?;
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = demo_key(&store).await;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(
        listener,
        store,
        forg::STANDARD,
        ForgScope::ReadSessions,
    ));

    let key = issued.key().expose_secret();
    println!("gRPC server forg.v1.WhoAmI with tower-api-key on {addr}\n");
    println!("key (shown once): {key}\n");
    let bearer = format!("Bearer {key}");
    match call_who_am_i(addr, &[("authorization", &bearer)]).await {
        Ok(reply) => println!("Get with authorization: Bearer …   -> {reply:?}"),
        Err(status) => println!("Get with authorization: Bearer …   -> {status:?}"),
    }
    match call_who_am_i(addr, &[]).await {
        Ok(reply) => println!("Get without a key                   -> {reply:?}"),
        Err(status) => println!(
            "Get without a key                   -> {:?}: {}",
            status.code(),
            status.message()
        ),
    }
    println!("\nserving until Ctrl-C");
    tokio::select! {
        result = server => { result??; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
