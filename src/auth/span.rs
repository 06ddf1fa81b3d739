//! The request span the authentication layer opens, and what it records on it as the
//! request goes (shared by the service, which opens it, and the verifier, which records).

/// The span a request is authenticated and served in: `tower_api_key.auth` at INFO, with
/// `credential.kind`, `key.id`, `owner` and `outcome` recorded as they become known, so
/// the inner service's events and spans carry them.
#[cfg(feature = "tracing")]
pub(crate) type RequestSpan = tracing::Span;
/// Without `tracing`: nothing (a unit struct, so the call sites stay the same).
#[cfg(not(feature = "tracing"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestSpan;

/// Whether a subscriber may want INFO spans: a load of the global maximum level, where
/// building a span that nobody records, entering it and finding it again to record fields
/// cost ~400 instructions per request (with `tracing`'s `log` feature, which axum's
/// defaults turn on, each of those steps also asks the `log` crate).
#[cfg(feature = "tracing")]
#[inline]
fn wanted() -> bool {
    tracing::level_enabled!(tracing::Level::INFO)
}

#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn request_span() -> RequestSpan {
    if !wanted() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: "tower_api_key",
        "tower_api_key.auth",
        credential.kind = tracing::field::Empty,
        key.id = tracing::field::Empty,
        owner = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn request_span() -> RequestSpan {
    RequestSpan
}

#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn entered(span: &RequestSpan) -> tracing::span::Entered<'_> {
    span.enter()
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn entered(_: &RequestSpan) -> RequestSpan {
    RequestSpan
}

/// Records the accepted principal on the current request span.
#[inline]
pub(crate) fn record_principal(_kind: &'static str, _key_id: &str, _owner: &str) {
    #[cfg(feature = "tracing")]
    if wanted() {
        tracing::Span::current()
            .record("credential.kind", _kind)
            .record("key.id", _key_id)
            .record("owner", _owner);
    }
}

/// Records how the request ended on the current request span.
#[inline]
pub(crate) fn record_outcome(_outcome: &'static str) {
    #[cfg(feature = "tracing")]
    if wanted() {
        tracing::Span::current().record("outcome", _outcome);
    }
}
