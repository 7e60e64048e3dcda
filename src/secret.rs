//! A string that must never be shown: tokens, refresh tokens, passwords, client secrets.
//!
//! `Debug` and `Display` print `[redacted]`, the memory is wiped on drop, and the only
//! way to the text is [`Secret::expose`], which is easy to grep for in review.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serialized as the plain string: only the token store and the daemon's socket (a 0600
/// unix socket with a peer uid check) ever serialize records that hold secrets.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("ya29.very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "ya29.very-secret");
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let s = Secret::new("tok");
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"tok\"");
        let back: Secret = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }
}
