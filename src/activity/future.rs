use http::Request;

use super::config::Shared;

crate::support::gate::response_future! {
    /// Response future of [`ActivityService`](super::ActivityService): the inner service's
    /// future, with the request's event reported when it answers (or is dropped).
    ResponseFuture<S, ReqBody>, Request<ReqBody>, Shared
}
