//! [`HeaderText`]: a short header value written on the stack, numbers with `itoa`.
//!
//! The `RateLimit` and `Spend-Cap` values are written per response; `write!` through
//! `core::fmt` cost more than the rest of the rate-limit decision (issue 16's profile).

use http::HeaderValue;

/// Room for the longest value the crate writes (`RateLimit`: a 32-character class name, a
/// `u32` and a `u64`, 70 bytes; `Spend-Cap`: three `u64`s, 78 bytes).
const CAPACITY: usize = 96;

/// A header value under construction; text past the capacity is refused, not truncated.
pub(crate) struct HeaderText {
    buffer: [u8; CAPACITY],
    length: usize,
    overflowed: bool,
}

impl HeaderText {
    pub(crate) fn new() -> Self {
        Self {
            buffer: [0; CAPACITY],
            length: 0,
            overflowed: false,
        }
    }

    /// Appends `text`.
    pub(crate) fn text(mut self, text: &str) -> Self {
        let end = self.length + text.len();
        match self.buffer.get_mut(self.length..end) {
            Some(room) => {
                room.copy_from_slice(text.as_bytes());
                self.length = end;
            }
            None => self.overflowed = true,
        }
        self
    }

    /// Appends `n` in decimal.
    pub(crate) fn number(self, n: u64) -> Self {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(n);
        self.text(text)
    }

    /// The value, or `None` if it did not fit or is not a valid header value.
    pub(crate) fn value(&self) -> Option<HeaderValue> {
        if self.overflowed {
            return None;
        }
        HeaderValue::from_bytes(&self.buffer[..self.length]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_text_and_numbers() {
        let value = HeaderText::new()
            .text("limit=")
            .number(u64::MAX)
            .text(", remaining=")
            .number(0)
            .value()
            .unwrap();
        assert_eq!(value, "limit=18446744073709551615, remaining=0");
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_header_value() {
        assert!(HeaderText::new().text(&"x".repeat(97)).value().is_none());
        assert!(HeaderText::new().text(&"x".repeat(96)).value().is_some());
        assert!(HeaderText::new().text("a\nb").value().is_none());
    }
}
