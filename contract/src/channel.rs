//! The messaging channels chat4all delivers to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Channel {
    Whatsapp,
    Telegram,
    Instagram,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Whatsapp, Channel::Telegram, Channel::Instagram];

    /// The wire and database spelling: `WHATSAPP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Whatsapp => "WHATSAPP",
            Channel::Telegram => "TELEGRAM",
            Channel::Instagram => "INSTAGRAM",
        }
    }

    /// The connector service that delivers to this channel: `whatsapp-connector`.
    pub fn connector_service(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp-connector",
            Channel::Telegram => "telegram-connector",
            Channel::Instagram => "instagram-connector",
        }
    }

    /// Lower-case name used in metric labels and CLI arguments.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::Telegram => "telegram",
            Channel::Instagram => "instagram",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown channel {0:?} (expected one of WHATSAPP, TELEGRAM, INSTAGRAM)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownChannel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_rejects_unknown() {
        assert_eq!("whatsapp".parse::<Channel>().unwrap(), Channel::Whatsapp);
        assert_eq!("TELEGRAM".parse::<Channel>().unwrap(), Channel::Telegram);
        assert!("SMS".parse::<Channel>().is_err());
    }

    #[test]
    fn serializes_upper_case() {
        assert_eq!(serde_json::to_string(&Channel::Instagram).unwrap(), "\"INSTAGRAM\"");
    }
}
