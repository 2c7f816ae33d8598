//! The webhook wire contract with RingCentral, in one place for both sides: the receiver
//! (`serve`) and the tools that talk to it (`check`, `register`'s probe).
//!
//! What the platform sends: a `Validation-Token` header when a subscription is created (to be
//! echoed within [`TIME_LIMIT`] in an answer of at most [`MAX_ANSWER_BYTES`]), then notifications
//! carrying the subscription's `Verification-Token`, whose JSON body starts with the
//! [`Envelope`] fields. Nothing here does I/O.

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

/// The fields of a notification body that ringhook reads; the rest is kept as sent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope {
    /// Unique per notification: the key that drops redeliveries.
    pub uuid: Option<String>,
    /// The event filter that matched, e.g. `/restapi/v1.0/account/~/extension/101/presence`.
    pub event: Option<String>,
    /// The subscription that delivered it.
    #[serde(rename = "subscriptionId")]
    pub subscription_id: Option<String>,
    /// When the platform produced it (RFC 3339), as sent.
    pub timestamp: Option<String>,
}

impl Envelope {
    /// The envelope of `body`, or `None` when it is not a JSON object with these fields' types.
    pub(crate) fn parse(body: &[u8]) -> Option<Envelope> {
        serde_json::from_slice(body).ok()
    }
}
