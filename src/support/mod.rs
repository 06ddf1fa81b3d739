//! What the layers and stores share and users never see: the gate every layer's response
//! future is built on, header text checks, amortised sweeps, RFC 3339 times, Unix-millisecond
//! times and the wiring checks.

pub(crate) mod gate;
pub(crate) mod header_text;
pub(crate) mod sweep;
pub(crate) mod timestamp;
pub(crate) mod unix_millis;
pub(crate) mod wiring;

/// An enum of table rows and its `ALL` from one list of variants: `ALL`'s length is counted
/// by the compiler and a variant cannot be left out of it (`RejectionKind`, `ApiCode`).
macro_rules! table_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$doc:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every row, in the order of the table.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];
        }
    };
}

pub(crate) use table_enum;
