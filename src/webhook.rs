//! The webhook wire contract with RingCentral, in one place for both sides: the receiver
//! (`serve`) and the tools that talk to it (`check`, `register`'s probe).
//!
//! What the platform sends: a `Validation-Token` header when a subscription is created (to be
//! echoed within [`TIME_LIMIT`] in an answer of at most [`MAX_ANSWER_BYTES`]), then notifications
//! carrying the subscription's `Verification-Token`, whose JSON body starts with the
//! [`Envelope`] fields. Nothing here does I/O.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

/// The header RingCentral sends when a subscription is created, to be echoed back.
pub(crate) const VALIDATION_TOKEN: HeaderName = HeaderName::from_static("validation-token");
/// The header carrying the shared secret on every notification.
pub(crate) const VERIFICATION_TOKEN: HeaderName = HeaderName::from_static("verification-token");

/// The platform's limit on a webhook answer (status line, headers and body): larger answers get
/// the endpoint blacklisted.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024;

/// The platform's limit on answering the validation handshake.
pub(crate) const TIME_LIMIT: Duration = Duration::from_millis(3000);

/// The fields of a notification body that ringhook reads; the rest is kept as sent. Borrowed from
/// the body when they hold no escape, so reading them allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Envelope<'a> {
    /// Unique per notification: the key that drops redeliveries.
    pub uuid: Option<Cow<'a, str>>,
    /// The event filter that matched, e.g. `/restapi/v1.0/account/~/extension/101/presence`.
    pub event: Option<Cow<'a, str>>,
    /// The subscription that delivered it.
    pub subscription_id: Option<Cow<'a, str>>,
    /// When the platform produced it (RFC 3339), as sent.
    pub timestamp: Option<Cow<'a, str>>,
}

/// [`Envelope`] as read. serde borrows a `Cow` only as a field of its own, never inside an
/// `Option`, so each field is an `Option` of [`Text`]. Not `#[serde(default)]` with a
/// `deserialize_with`: serde reads a struct from an array too, and with defaults a short one
/// (`["u1"]`) would pass for an envelope with a uuid; as plain `Option`s it is refused.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    uuid: Option<Text<'a>>,
    #[serde(borrow)]
    event: Option<Text<'a>>,
    #[serde(rename = "subscriptionId", borrow)]
    subscription_id: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
}

/// A string, borrowed when it holds no escape.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> Envelope<'a> {
    /// The envelope of `body`, or `None` when it is not a JSON object with these fields' types.
    pub(crate) fn parse(body: &'a [u8]) -> Option<Envelope<'a>> {
        let w: Wire<'a> = serde_json::from_slice(body).ok()?;
        let text = |t: Option<Text<'a>>| t.map(|t| t.0);
        Some(Envelope {
            uuid: text(w.uuid),
            event: text(w.event),
            subscription_id: text(w.subscription_id),
            timestamp: text(w.timestamp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_borrowed_unless_escaped() {
        let body =
            br#"{"uuid":"u-1","event":"\/restapi\/x","timestamp":null,"body":{"uuid":"no"}}"#;
        let env = Envelope::parse(body).unwrap();
        assert!(matches!(env.uuid, Some(Cow::Borrowed("u-1"))));
        assert!(matches!(env.event.as_deref(), Some("/restapi/x")));
        assert_eq!((env.subscription_id, env.timestamp), (None, None));
        assert!(Envelope::parse(br#"{"uuid":5}"#).is_none());
        assert!(Envelope::parse(br#"{"uuid":"a","uuid":"b"}"#).is_none());
        assert!(
            Envelope::parse(br#"["u1"]"#).is_none(),
            "a short array is no envelope"
        );
    }
}
