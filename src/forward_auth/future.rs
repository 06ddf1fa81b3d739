//! [`ResponseFuture`]: the stack's answer, made the proxy's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;

use super::layer::Config;
use crate::body::ResponseBody;
use crate::principal::Principal;

/// The most of a refusal's body copied into the error-body header.
const ERROR_BODY_LIMIT: usize = 4096;

type Answer<B> = Response<ResponseBody<B>>;

pin_project! {
    /// Response future of [`ForwardAuth`](super::ForwardAuth).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Answered { response: Option<Answer<B>> },
        Called { #[pin] future: F, config: Arc<Config> },
        // A refusal whose body is being read into the error-body header (small: boxed once).
        Copying { future: Pin<Box<dyn Future<Output = Answer<B>> + Send>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn answered(response: Answer<B>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(super) fn called(future: F, config: Arc<Config>) -> Self {
        Self {
            state: State::Called { future, config },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Answer<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                StateProj::Copying { future } => return future.as_mut().poll(cx).map(Ok),
                StateProj::Called { future, config } => {
                    let response = ready!(future.poll(cx))?;
                    if response.status().is_success() {
                        return Poll::Ready(Ok(allowed(response, config)));
                    }
                    match config.error_body.clone() {
                        None => return Poll::Ready(Ok(response.map(ResponseBody::inner))),
                        Some(header) => State::Copying {
                            future: Box::pin(copied(response, header)),
                        },
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// 200, empty, with the stack's headers and the principal's.
fn allowed<B>(response: Response<B>, config: &Config) -> Answer<B> {
    let (parts, _) = response.into_parts();
    let mut headers = parts.headers;
    for header in [CONTENT_TYPE, CONTENT_LENGTH, TRANSFER_ENCODING] {
        headers.remove(header);
    }
    if let Some(principal) = parts.extensions.get::<Principal>() {
        let values = principal_values(principal);
        for (name, value) in config.principal_headers().into_iter().zip(values) {
            headers.insert(name.clone(), value);
        }
    }
    let mut answer = Response::new(ResponseBody::rejection(Bytes::new()));
    *answer.status_mut() = StatusCode::OK;
    *answer.headers_mut() = headers;
    answer
}

fn principal_values(principal: &Principal) -> [HeaderValue; 5] {
    [
        header_safe(principal.owner()),
        header_safe(principal.key_id().as_str()),
        header_safe(&principal.scope_names().join(" ")),
        HeaderValue::from_static(principal.environment().as_str()),
        HeaderValue::from_static(principal.kind().as_str()),
    ]
}

/// `text` as a header value: printable ASCII as it is, every other byte (and `%`)
/// percent-encoded, so an owner of any UTF-8 reaches the upstream, unambiguously.
fn header_safe(text: &str) -> HeaderValue {
    let mut safe = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (byte.is_ascii_graphic() || byte == b' ') && byte != b'%' {
            safe.push(char::from(byte));
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&safe).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The refusal as it is, its body (up to 4 KiB) also in `header`.
async fn copied<B>(response: Response<B>, header: http::HeaderName) -> Answer<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = response.into_parts();
    let bytes = match Limited::new(body, ERROR_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Ok(value) = HeaderValue::from_bytes(&bytes) {
        if !bytes.is_empty() {
            parts.headers.insert(header, value);
        }
    }
    Response::from_parts(parts, ResponseBody::rejection(bytes))
}
