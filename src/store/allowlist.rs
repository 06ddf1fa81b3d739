//! [`AllowedNetworks`]: the client networks a key may be used from.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The networks a key may be used from: empty (the default) allows every address.
///
/// Checked by the authentication layer against the client address the stack resolved (one
/// [`ClientIpLayer`](crate::client_ip::ClientIpLayer), trusted proxies included, or the
/// socket peer); a request from elsewhere gets 403 `ip_not_allowed`. At most 32 networks.
/// Serde form: a list of CIDR strings.
///
/// ```
/// use tower_api_key::store::AllowedNetworks;
///
/// let office = AllowedNetworks::new(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
/// assert!(office.allows("203.0.113.7".parse().unwrap()));
/// assert!(!office.allows("198.51.100.1".parse().unwrap()));
/// assert!(AllowedNetworks::default().allows("198.51.100.1".parse().unwrap()));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct AllowedNetworks(Vec<IpNet>);

/// A network is not CIDR or an address, or there are more than 32.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("allowed networks are at most 32 CIDR networks or addresses (`{0}` is not one)")]
pub struct InvalidNetworks(String);

impl AllowedNetworks {
    const MAX: usize = 32;

    /// Parses `networks` (CIDR, or single addresses).
    ///
    /// # Errors
    /// [`InvalidNetworks`] naming the first entry that is neither, or when there are too many.
    pub fn new<N: AsRef<str>>(
        networks: impl IntoIterator<Item = N>,
    ) -> Result<Self, InvalidNetworks> {
        let mut parsed = Vec::new();
        for network in networks {
            let network = network.as_ref();
            let net = network
                .parse::<IpNet>()
                .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidNetworks(network.chars().take(64).collect()))?;
            parsed.push(net);
            if parsed.len() > Self::MAX {
                return Err(InvalidNetworks(format!("#{}", Self::MAX + 1)));
            }
        }
        Ok(Self(parsed))
    }

    /// Every address allowed.
    pub(crate) const EMPTY: Self = Self(Vec::new());

    /// Whether `ip` may use the key.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether every address is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AllowedNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|n| n.to_string()))
            .finish()
    }
}

impl TryFrom<Vec<String>> for AllowedNetworks {
    type Error = InvalidNetworks;
    fn try_from(networks: Vec<String>) -> Result<Self, Self::Error> {
        Self::new(networks)
    }
}

impl From<AllowedNetworks> for Vec<String> {
    fn from(networks: AllowedNetworks) -> Self {
        networks.0.iter().map(ToString::to_string).collect()
    }
}
