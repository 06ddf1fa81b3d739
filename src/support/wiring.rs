//! Wiring checks. A layer that only works outside the [`AuthLayer`](crate::AuthLayer)
//! ([`FailureLimitLayer`](crate::failure_limit::FailureLimitLayer): inside, it never sees a
//! refusal and protects nothing; [`ActivityLayer`](crate::activity::ActivityLayer): inside,
//! it never sees a refused request) notices a request that arrives already authenticated.
//! It says so once, with an error-level `tracing` event, and fails a debug assertion, so
//! the mistake shows on the first authenticated request in development and in the logs of
//! a release build, instead of silently protecting nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::principal::Principal;

/// The check of one layer that belongs outside the authentication layer.
#[derive(Debug)]
pub(crate) struct OutsideAuth {
    layer: &'static str,
    consequence: &'static str,
    reported: AtomicBool,
}

impl OutsideAuth {
    pub(crate) const fn new(layer: &'static str, consequence: &'static str) -> Self {
        Self {
            layer,
            consequence,
            reported: AtomicBool::new(false),
        }
    }

    /// Checks a request on its way in: a [`Principal`] means the authentication layer
    /// already ran, so this layer sits inside it.
    #[inline]
    pub(crate) fn check(&self, extensions: &http::Extensions) {
        if extensions.get::<Principal>().is_some() {
            self.misplaced();
        }
    }

    #[cold]
    #[inline(never)]
    fn misplaced(&self) {
        if !self.reported.swap(true, Ordering::Relaxed) {
            #[cfg(feature = "tracing")]
            tracing::error!(
                target: "tower_api_key",
                layer = self.layer,
                "{} is inside the AuthLayer: {}; add it before (outside) the AuthLayer",
                self.layer,
                self.consequence
            );
        }
        debug_assert!(
            false,
            "{} is inside the AuthLayer: {}; add it before (outside) the AuthLayer",
            self.layer, self.consequence
        );
    }
}
