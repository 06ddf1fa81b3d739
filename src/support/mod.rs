//! What the layers and stores share and users never see: the gate every layer's response
//! future is built on, header text checks, amortised sweeps, RFC 3339 times and the wiring
//! checks.

pub(crate) mod gate;
pub(crate) mod header_text;
pub(crate) mod sweep;
pub(crate) mod timestamp;
pub(crate) mod wiring;
