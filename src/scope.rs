//! Scopes: a typed vocabulary and [`ScopeSet`], a `Copy` bitset of granted scopes.
//! (About 430 lines, half of them documentation and the text and serde forms of the set:
//! the trait, its macro and the set are one concept.)
//!
//! The FORG vocabulary is [`forg::ForgScope`](crate::forg::ForgScope); there is no default
//! vocabulary, so a route can never silently read another vocabulary's bits. `admin`
//! satisfies every requirement; otherwise scopes are additive and independent.
//!
//! ```
//! use tower_api_key::forg::ForgScope;
//! use tower_api_key::scope::ScopeSet;
//!
//! let granted: ScopeSet<ForgScope> = "read:sessions read:reports".parse().unwrap();
//! assert!(granted.contains(ForgScope::ReadSessions));
//! assert!(!granted.contains(ForgScope::WriteRules));
//!
//! let admin = ScopeSet::from(ForgScope::Admin);
//! assert!(admin.contains_all(ScopeSet::<ForgScope>::all()));
//!
//! assert_eq!(
//!     "read:rules wrte:rules".parse::<ScopeSet<ForgScope>>().unwrap_err().to_string(),
//!     "unknown scope `wrte:rules`"
//! );
//! ```
//!
//! A service defines its own vocabulary with [`scopes!`](crate::scopes) and uses every
//! feature of the crate with it:
//!
//! ```
//! tower_api_key::scopes! {
//!     /// Scopes of a document service.
//!     pub enum DocScope {
//!         Read = "docs:read",
//!         Write = "docs:write",
//!         Owner = "docs:owner",
//!     }
//!     admin = Owner;
//! }
//!
//! use tower_api_key::scope::ScopeSet;
//! let owner: ScopeSet<DocScope> = "docs:owner".parse().unwrap();
//! assert!(owner.contains(DocScope::Write));
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A scope vocabulary: a fieldless enum of at most 64 scopes with stable names.
///
/// Implement it with [`scopes!`](crate::scopes), which keeps [`ALL`](Self::ALL) and
/// [`index`](Self::index) consistent. By hand: `index` must be the scope's position in
/// `ALL`, and every name must be distinct and free of whitespace.
pub trait Scope: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// Every scope, in index order. At most 64.
    const ALL: &'static [Self];

    /// The scope that satisfies every requirement, if the vocabulary has one.
    const ADMIN: Option<Self> = None;

    /// The scope's name, e.g. `"write:rules"`.
    fn as_str(self) -> &'static str;

    /// The scope's position in [`ALL`](Self::ALL).
    fn index(self) -> u32;

    /// The scope called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}

/// Defines a scope vocabulary: a `Copy` enum implementing [`Scope`](crate::scope::Scope).
///
/// The optional `admin = Variant;` line names the scope that satisfies every requirement.
/// More than 64 scopes fail to compile.
///
/// ```
/// tower_api_key::scopes! {
///     /// Billing scopes.
///     pub enum BillingScope {
///         ReadInvoices = "invoices:read",
///         Refund = "invoices:refund",
///     }
/// }
///
/// use tower_api_key::scope::Scope;
/// assert_eq!(BillingScope::Refund.as_str(), "invoices:refund");
/// assert_eq!(BillingScope::from_name("invoices:read"), Some(BillingScope::ReadInvoices));
/// ```
#[macro_export]
macro_rules! scopes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $str:literal ),+ $(,)?
        }
        $( admin = $admin:ident; )?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::scope::Scope for $name {
            const ALL: &'static [Self] = &[ $( Self::$variant ),+ ];
            $( const ADMIN: ::core::option::Option<Self> = ::core::option::Option::Some(Self::$admin); )?

            fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $str ),+ }
            }

            #[inline]
            fn index(self) -> u32 {
                self as u32
            }
        }

        const _: () = ::core::assert!(
            <$name as $crate::scope::Scope>::ALL.len() <= 64,
            "a scope vocabulary has at most 64 scopes"
        );

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str($crate::scope::Scope::as_str(*self))
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::scope::UnknownScope;

            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                <Self as $crate::scope::Scope>::from_name(s)
                    .ok_or_else(|| $crate::scope::UnknownScope::new(s))
            }
        }
    };
}

/// A name that is not a scope of the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{name}`")]
pub struct UnknownScope {
    name: String,
}

impl UnknownScope {
    /// An error naming `name` (cut to 64 characters, so hostile input cannot bloat errors).
    pub fn new(name: &str) -> Self {
        let name = match name.char_indices().nth(64) {
            Some((end, _)) => format!("{}…", &name[..end]),
            None => name.to_owned(),
        };
        Self { name }
    }

    /// The unknown name (cut to 64 characters).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A set of scopes of vocabulary `S`: one `u64`, `Copy`.
///
/// [`contains`](Self::contains), [`contains_all`](Self::contains_all) and
/// [`contains_any`](Self::contains_any) answer "does this grant satisfy that requirement",
/// so the vocabulary's admin scope satisfies everything. [`iter`](Self::iter) and
/// [`len`](Self::len) see only the scopes literally in the set.
///
/// Text form: names separated by spaces (the OAuth `scope` form). Serde form: a list of
/// names (a space-separated string is accepted too).
pub struct ScopeSet<S: Scope> {
    bits: u64,
    // fn() -> S: the set is Send, Sync and Copy whatever S is.
    vocabulary: PhantomData<fn() -> S>,
}

impl<S: Scope> ScopeSet<S> {
    const fn from_bits(bits: u64) -> Self {
        Self {
            bits,
            vocabulary: PhantomData,
        }
    }

    #[inline]
    fn bit(scope: S) -> u64 {
        debug_assert!(scope.index() < 64 && S::ALL.get(scope.index() as usize) == Some(&scope));
        1u64 << (scope.index() & 63)
    }

    /// No scopes.
    pub const fn empty() -> Self {
        Self::from_bits(0)
    }

    /// Every scope of the vocabulary, literally.
    pub fn all() -> Self {
        S::ALL.iter().copied().collect()
    }

    /// The set with `scope` added.
    #[must_use]
    pub fn with(self, scope: S) -> Self {
        Self::from_bits(self.bits | Self::bit(scope))
    }

    /// Adds `scope`.
    pub fn insert(&mut self, scope: S) {
        self.bits |= Self::bit(scope);
    }

    /// Removes `scope`.
    pub fn remove(&mut self, scope: S) {
        self.bits &= !Self::bit(scope);
    }

    /// Whether the set holds the vocabulary's admin scope.
    #[inline]
    pub fn is_admin(self) -> bool {
        S::ADMIN.is_some_and(|admin| self.bits & Self::bit(admin) != 0)
    }

    /// Whether this grant satisfies a requirement of `scope` (admin satisfies all).
    #[inline]
    pub fn contains(self, scope: S) -> bool {
        self.bits & Self::bit(scope) != 0 || self.is_admin()
    }

    /// Whether this grant satisfies every scope of `required` (admin satisfies all).
    #[inline]
    pub fn contains_all(self, required: impl Into<Self>) -> bool {
        required.into().bits & !self.bits == 0 || self.is_admin()
    }

    /// Whether this grant satisfies at least one scope of `required` (admin satisfies all).
    /// An empty `required` is never satisfied.
    #[inline]
    pub fn contains_any(self, required: impl Into<Self>) -> bool {
        let required = required.into();
        !required.is_empty() && (required.bits & self.bits != 0 || self.is_admin())
    }

    /// The scopes of `required` this grant does not satisfy (empty for admin).
    pub fn missing(self, required: impl Into<Self>) -> Self {
        if self.is_admin() {
            Self::empty()
        } else {
            Self::from_bits(required.into().bits & !self.bits)
        }
    }

    /// Both sets' scopes.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self::from_bits(self.bits | other.bits)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// How many scopes are literally in the set.
    pub fn len(self) -> usize {
        self.bits.count_ones() as usize
    }

    /// The scopes literally in the set, in vocabulary order.
    pub fn iter(self) -> impl Iterator<Item = S> {
        S::ALL
            .iter()
            .copied()
            .filter(move |&s| self.bits & Self::bit(s) != 0)
    }
}

impl<S: Scope> Clone for ScopeSet<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Scope> Copy for ScopeSet<S> {}

impl<S: Scope> PartialEq for ScopeSet<S> {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl<S: Scope> Eq for ScopeSet<S> {}

impl<S: Scope> Hash for ScopeSet<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bits.hash(state);
    }
}

impl<S: Scope> Default for ScopeSet<S> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<S: Scope> From<S> for ScopeSet<S> {
    fn from(scope: S) -> Self {
        Self::empty().with(scope)
    }
}

impl<S: Scope, const N: usize> From<[S; N]> for ScopeSet<S> {
    fn from(scopes: [S; N]) -> Self {
        scopes.into_iter().collect()
    }
}

impl<S: Scope> FromIterator<S> for ScopeSet<S> {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

impl<S: Scope> Extend<S> for ScopeSet<S> {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for scope in iter {
            self.insert(scope);
        }
    }
}

impl<S: Scope> BitOr for ScopeSet<S> {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl<S: Scope> BitOr<S> for ScopeSet<S> {
    type Output = Self;
    fn bitor(self, rhs: S) -> Self {
        self.with(rhs)
    }
}

impl<S: Scope> BitOrAssign<S> for ScopeSet<S> {
    fn bitor_assign(&mut self, rhs: S) {
        self.insert(rhs);
    }
}

impl<S: Scope> fmt::Display for ScopeSet<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl<S: Scope> fmt::Debug for ScopeSet<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScopeSet")?;
        f.debug_set()
            .entries(self.iter().map(|s| s.as_str()))
            .finish()
    }
}

impl<S: Scope> FromStr for ScopeSet<S> {
    type Err = UnknownScope;

    /// Names separated by ASCII whitespace; the empty string is the empty set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_ascii_whitespace()
            .map(|name| S::from_name(name).ok_or_else(|| UnknownScope::new(name)))
            .collect()
    }
}

impl<S: Scope> Serialize for ScopeSet<S> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for scope in self.iter() {
            seq.serialize_element(scope.as_str())?;
        }
        seq.end()
    }
}

impl<'de, S: Scope> Deserialize<'de> for ScopeSet<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetVisitor<S>(PhantomData<fn() -> S>);

        impl<'de, S: Scope> Visitor<'de> for SetVisitor<S> {
            type Value = ScopeSet<S>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scope names or a space-separated string of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut set = ScopeSet::empty();
                while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    let scope = S::from_name(&name)
                        .ok_or_else(|| de::Error::custom(UnknownScope::new(&name)))?;
                    set.insert(scope);
                }
                Ok(set)
            }
        }

        // Human-readable formats may use the string form; binary ones have only the list.
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(SetVisitor(PhantomData))
        } else {
            deserializer.deserialize_seq(SetVisitor(PhantomData))
        }
    }
}
