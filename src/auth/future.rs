use http::Request;

use super::verify::Config;
use crate::store::KeyStore;

crate::gate::response_future! {
    /// Response future of [`AuthService`](super::AuthService).
    ///
    /// When the store answers at once ([`KeyStore::lookup_now`]) this is the inner
    /// service's future or a ready rejection: nothing boxed.
    ResponseFuture<S, St, ReqBody>, Request<ReqBody>, Config<St>
    where St: KeyStore,
}
