//! [`RejectionKind`]: one row per code, the one place its status, gRPC code and (when it
//! does not depend on the request) message are written.

use http::StatusCode;

use super::GrpcCode;

crate::support::table_enum! {
    /// What kind of rejection: one per error code. Its [`status`](Self::status),
    /// [`code`](Self::code) and [`grpc_code`](Self::grpc_code) come from one table; an
    /// [`AuthRejection`](super::AuthRejection) adds the details of one request.
    ///
    /// ```
    /// use tower_api_key::reject::{AuthRejection, RejectionKind, RetryAfter};
    ///
    /// let rejection = AuthRejection::rate_limited(RetryAfter::ONE_SECOND);
    /// assert_eq!(rejection.kind(), RejectionKind::RateLimited);
    /// assert_eq!(RejectionKind::RateLimited.status(), 429);
    /// assert_eq!(RejectionKind::RateLimited.code(), "rate_limited");
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum RejectionKind {
        /// 400 `invalid_request`.
        InvalidRequest,
        /// 401 `invalid_api_key`.
        InvalidApiKey,
        /// 402 `spend_cap_exceeded`.
        SpendCapExceeded,
        /// 403 `environment_not_allowed`.
        EnvironmentNotAllowed,
        /// 403 `insufficient_scope`.
        InsufficientScope,
        /// 403 `ip_not_allowed`.
        IpNotAllowed,
        /// 403 `csrf_failed`.
        CsrfFailed,
        /// 403 `plan_required`.
        PlanRequired,
        /// 429 `rate_limited`.
        RateLimited,
        /// 500 `internal_error`.
        InternalError,
        /// 503 `auth_unavailable`.
        Unavailable,
    }
}

/// One row of the table.
struct Row {
    status: StatusCode,
    code: &'static str,
    grpc: GrpcCode,
    /// The client's message when it is the same for every rejection of the kind.
    message: Option<&'static str>,
}

const fn row(
    status: u16,
    code: &'static str,
    grpc: GrpcCode,
    message: Option<&'static str>,
) -> Row {
    let status = match StatusCode::from_u16(status) {
        Ok(status) => status,
        Err(_) => panic!("not a status code"),
    };
    Row {
        status,
        code,
        grpc,
        message,
    }
}

impl RejectionKind {
    #[rustfmt::skip]
    const fn row(self) -> Row {
        use GrpcCode::{Internal, InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable};
        match self {
            Self::InvalidRequest =>        row(400, "invalid_request",         InvalidArgument,   None),
            Self::InvalidApiKey =>         row(401, "invalid_api_key",         Unauthenticated,   Some("Invalid API key")),
            Self::SpendCapExceeded =>      row(402, "spend_cap_exceeded",      ResourceExhausted, Some("AI spend cap exceeded: upgrade plan or wait for the reset")),
            Self::EnvironmentNotAllowed => row(403, "environment_not_allowed", PermissionDenied,  None),
            Self::InsufficientScope =>     row(403, "insufficient_scope",      PermissionDenied,  None),
            Self::IpNotAllowed =>          row(403, "ip_not_allowed",          PermissionDenied,  Some("This key may not be used from this address")),
            Self::CsrfFailed =>            row(403, "csrf_failed",             PermissionDenied,  None),
            Self::PlanRequired =>          row(403, "plan_required",           PermissionDenied,  None),
            Self::RateLimited =>           row(429, "rate_limited",            ResourceExhausted, Some("Rate limit exceeded")),
            Self::InternalError =>         row(500, "internal_error",          Internal,          None),
            Self::Unavailable =>           row(503, "auth_unavailable",        Unavailable,       Some("Authentication is temporarily unavailable")),
        }
    }

    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        self.row().status
    }

    /// The machine-readable code of the JSON body, e.g. `rate_limited`.
    pub const fn code(self) -> &'static str {
        self.row().code
    }

    /// The gRPC status of the trailers-only response.
    pub const fn grpc_code(self) -> GrpcCode {
        self.row().grpc
    }

    /// The client's message when every rejection of this kind has the same one.
    pub(crate) const fn constant_message(self) -> Option<&'static str> {
        self.row().message
    }

    /// The index of this kind in [`ALL`](Self::ALL).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_at_its_index_and_codes_are_unique() {
        for (at, kind) in RejectionKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), at);
            let same_code = RejectionKind::ALL
                .iter()
                .filter(|other| other.code() == kind.code())
                .count();
            assert_eq!(same_code, 1, "{kind:?}");
        }
    }
}
