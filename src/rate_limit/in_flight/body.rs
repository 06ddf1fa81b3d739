//! [`InFlightBody`]: a response body that holds its request's slot until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The inner body, and the slot its request holds: given back at the end of the body
    /// (its last frame, an error, or the body dropped unread).
    pub struct InFlightBody<B, S> {
        #[pin]
        inner: B,
        slot: Option<S>,
    }
}

impl<B, S> InFlightBody<B, S> {
    pub(super) fn new(inner: B, slot: Option<S>) -> Self {
        Self { inner, slot }
    }
}

impl<B: Body, S> Body for InFlightBody<B, S> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.slot.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: std::fmt::Debug, S> std::fmt::Debug for InFlightBody<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.slot.is_some())
            .finish()
    }
}
