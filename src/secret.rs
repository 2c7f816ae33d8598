//! Secrets (client secret, JWT, password, tokens) in a type that never prints itself.

use std::fmt;

/// The variables holding the verification token itself (the tutorial's name second).
pub(crate) const VERIFICATION_TOKEN: &[&str] = &["WEBHOOK_VERIFICATION_TOKEN", "WEBHOOK_TOKEN"];
/// The app's client secret, under its current and older names.
pub(crate) const CLIENT_SECRET: &[&str] =
    &["RC_CLIENT_SECRET", "RC_APP_SECRET", "RC_APP_CLIENT_SECRET"];
/// The user's JWT credential.
pub(crate) const JWT: &[&str] = &["RC_JWT", "RC_USER_JWT"];
/// The user's password (the ended password grant).
pub(crate) const PASSWORD: &[&str] = &["RC_PASSWORD"];

/// `ship`'s bearer token for HTTP sinks.
pub(crate) const SHIP_TOKEN: &[&str] = &["RINGHOOK_SHIP_TOKEN"];
/// `ship`'s NATS password (with `NATS_USER`).
pub(crate) const NATS_PASSWORD: &[&str] = &["NATS_PASSWORD"];
/// `ship`'s NATS token.
pub(crate) const NATS_TOKEN: &[&str] = &["NATS_TOKEN"];

/// Every variable that holds a secret: a child that has no business with them (`--exec`) gets
/// none of them.
pub(crate) fn variables() -> impl Iterator<Item = &'static str> {
    [
        VERIFICATION_TOKEN,
        CLIENT_SECRET,
        JWT,
        PASSWORD,
        SHIP_TOKEN,
        NATS_PASSWORD,
        NATS_TOKEN,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// A secret string. `Debug` and `Display` print `(redacted)`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// The shared token RingCentral sends back as `Verification-Token` on every notification.
#[derive(Clone, Debug)]
pub struct VerificationToken(Secret);

impl VerificationToken {
    /// Wraps `secret`.
    pub fn new(secret: Secret) -> VerificationToken {
        VerificationToken(secret)
    }

    /// True when `presented` equals the token; the comparison's time does not depend on where
    /// the bytes first differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq::constant_time_eq(self.0.expose().as_bytes(), presented)
    }

    /// The token, for the create-subscription request.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "(redacted) (redacted)");
        let t = VerificationToken::new(s);
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn token_matches_only_exact_bytes() {
        let t = VerificationToken::new(Secret::new("abc"));
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"abd"));
        assert!(!t.matches(b"ab"));
        assert!(!t.matches(b"abcd"));
        assert!(!t.matches(b""));
    }
}
