//! [`ApiCode`]: the management API's own refusals, one row each (status, code, message),
//! beside the request path's [`RejectionKind`](crate::reject::RejectionKind) table, whose
//! rows the API also answers with.

use axum::http::StatusCode;

crate::support::table_enum! {
    /// A refusal only the management API gives. Its [`status`](Self::status),
    /// [`code`](Self::code) and [`message`](Self::message) are written here once; the API's other refusals are
    /// [`RejectionKind`](crate::reject::RejectionKind)s.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use tower_api_key::manage::ApiCode;
    ///
    /// assert_eq!(ApiCode::KeyLimitReached.status(), StatusCode::CONFLICT);
    /// assert_eq!(ApiCode::KeyLimitReached.code(), "key_limit_reached");
    /// assert_eq!(ApiCode::ALL.len(), 17);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum ApiCode {
        /// 401 `invalid_credentials`: a login with an unknown e-mail or a wrong password.
        InvalidCredentials,
        /// 401 `invalid_signature`: a leak report without a signature that verifies with a
        /// configured public key.
        InvalidSignature,
        /// 403 `forbidden`: the credential is of another scope vocabulary.
        Forbidden,
        /// 403 `session_required`: a key without the configured management scope.
        SessionRequired,
        /// 404 `key_not_found`: unknown, or another owner's (or environment's) key.
        KeyNotFound,
        /// 404 `webhook_not_found`: unknown, or another owner's webhook endpoint.
        WebhookNotFound,
        /// 409 `key_limit_reached`: the owner holds the most keys the policy allows.
        KeyLimitReached,
        /// 409 `webhook_limit_reached`: the owner has 10 webhook endpoints.
        WebhookLimitReached,
        /// 409 `conflict`: a concurrent change won; try again.
        Conflict,
        /// 409 `replayed`: a leak report received before.
        Replayed,
        /// 409 `key_not_changeable`: the key is revoked or expired; only an active or
        /// disabled key is updated in place.
        KeyNotChangeable,
        /// 412 `precondition_failed`: `If-Match` names a version the key is no longer at.
        PreconditionFailed,
        /// 428 `precondition_required`: this API updates keys only with `If-Match`.
        PreconditionRequired,
        /// 501 `not_implemented`: the key store cannot do this (it predates the operation).
        NotImplemented,
        /// 413 `payload_too_large`: the body is over the limit.
        PayloadTooLarge,
        /// 415 `unsupported_media_type`: the body is not `application/json`.
        UnsupportedMediaType,
        /// 422 `validation_failed`: JSON, with a field that is wrong (named in `fields`).
        ValidationFailed,
    }
}

impl ApiCode {
    #[rustfmt::skip]
    const fn row(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidCredentials =>   (StatusCode::UNAUTHORIZED,           "invalid_credentials",    "Invalid email or password"),
            Self::InvalidSignature =>     (StatusCode::UNAUTHORIZED,           "invalid_signature",      "The report's signature does not verify with a configured public key"),
            Self::Forbidden =>            (StatusCode::FORBIDDEN,              "forbidden",              "This credential cannot manage these keys"),
            Self::SessionRequired =>      (StatusCode::FORBIDDEN,              "session_required",       "Keys are managed from a logged-in session (Dashboard or API after session auth)"),
            Self::KeyNotFound =>          (StatusCode::NOT_FOUND,              "key_not_found",          "Key not found"),
            // Said with the policy's number where it is known (`ApiError::from(ManageError)`).
            Self::KeyLimitReached =>      (StatusCode::CONFLICT,               "key_limit_reached",      "Key limit reached. Delete unused keys before creating new ones."),
            Self::WebhookNotFound =>      (StatusCode::NOT_FOUND,              "webhook_not_found",      "Webhook not found"),
            Self::WebhookLimitReached =>  (StatusCode::CONFLICT,               "webhook_limit_reached",  "Maximum 10 webhook endpoints per owner. Remove one before adding another."),
            Self::Conflict =>             (StatusCode::CONFLICT,               "conflict",               "Try again"),
            Self::Replayed =>             (StatusCode::CONFLICT,               "replayed",               "This report was received before"),
            Self::KeyNotChangeable =>     (StatusCode::CONFLICT,               "key_not_changeable",     "A revoked or expired key cannot be changed"),
            Self::PreconditionFailed =>   (StatusCode::PRECONDITION_FAILED,    "precondition_failed",    "The key changed since you read it: read it again and retry with its new ETag"),
            Self::PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED,  "precondition_required",  "Send If-Match with the key's ETag (from GET /keys/{id})"),
            Self::PayloadTooLarge =>      (StatusCode::PAYLOAD_TOO_LARGE,      "payload_too_large",      "The body is over the limit"),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Expected `Content-Type: application/json`"),
            Self::ValidationFailed =>     (StatusCode::UNPROCESSABLE_ENTITY,   "validation_failed",      "Validation failed"),
            Self::NotImplemented =>       (StatusCode::NOT_IMPLEMENTED,        "not_implemented",        "This key store cannot do that"),
        }
    }

    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        self.row().0
    }

    /// The stable snake_case code of the body.
    pub const fn code(self) -> &'static str {
        self.row().1
    }

    /// The crate's message for people (an application words its own with
    /// [`KeysApi::message`](super::KeysApi::message)).
    pub const fn message(self) -> &'static str {
        self.row().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once_and_no_code_is_a_rejection_kind() {
        let codes: std::collections::BTreeSet<&str> =
            ApiCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ApiCode::ALL.len());
        for kind in crate::reject::RejectionKind::ALL {
            assert!(
                !codes.contains(kind.code()),
                "{} is in both tables",
                kind.code()
            );
        }
    }
}
