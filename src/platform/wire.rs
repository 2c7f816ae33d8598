//! RingCentral's JSON: the typed values the rest of ringhook sees ([`Subscription`],
//! [`Extension`]), the request and answer bodies, and error bodies turned into one-liners.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::PlatformError;
use super::transport::RetryPolicy;
use crate::https::TrustRoots;
use crate::secret::Secret;

/// Where and as whom to talk to the platform.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `https://platform.ringcentral.com`, without a trailing slash.
    pub server: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Roots to trust.
    pub roots: TrustRoots,
    /// Retry policy.
    pub policy: RetryPolicy,
}

/// How the user proves who they are.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// The JWT grant (RingCentral's current flow).
    Jwt(Secret),
    /// The password grant, ended by RingCentral on 2024-03-31; kept for old accounts.
    Password {
        /// Phone number or email.
        username: String,
        /// The password.
        password: Secret,
        /// Extension number, when the username is a company number.
        extension: Option<String>,
    },
}

impl Credentials {
    /// The OAuth token request's form for this grant (JWT or password).
    pub(crate) fn grant_form(&self) -> Vec<(&'static str, &str)> {
        match self {
            Credentials::Jwt(jwt) => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", jwt.expose()),
            ],
            Credentials::Password {
                username,
                password,
                extension,
            } => {
                let mut f = vec![
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password.expose()),
                ];
                if let Some(ext) = extension {
                    f.push(("extension", ext.as_str()));
                }
                f
            }
        }
    }
}

/// An extension of the account, as far as filters need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extension {
    /// Internal id (digits), as used in filters.
    pub id: String,
}

/// A subscription as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Its id.
    pub id: String,
    /// `Active`, `Blacklisted` (older docs also `Suspended`).
    pub status: String,
    /// Event filters, including those the platform reports as disabled.
    pub filters: Vec<String>,
    /// Filters the platform disabled, with its reason.
    pub disabled: Vec<(String, String)>,
    /// `WebHook`, `PubNub`, `WebSocket`...
    pub transport: String,
    /// Delivery address (WebHook only).
    pub address: Option<String>,
    /// When it expires, if the platform said in a form we read.
    pub expires_at: Option<SystemTime>,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// Why it was blacklisted, when it was.
    pub blacklist_reason: Option<String>,
}

impl Subscription {
    /// True for an active WebHook subscription.
    pub(crate) fn is_active(&self) -> bool {
        self.status.eq_ignore_ascii_case("Active")
    }
}

/// A new subscription.
#[derive(Debug, Clone)]
pub(crate) struct NewSubscription<'a> {
    /// Event filters.
    pub filters: &'a [String],
    /// Delivery address.
    pub address: &'a str,
    /// Sent as `deliveryMode.verificationToken`.
    pub verification_token: Option<&'a str>,
    /// Lifetime asked for, in seconds.
    pub expires_in: u64,
}

// ---- RingCentral JSON -------------------------------------------------------------------------

/// `POST /restapi/oauth/token`'s answer, for a login and for a refresh.
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) owner_id: Option<serde_json::Value>,
    /// Seconds the access token lives (`connect` keeps the session; the rest log in per run).
    #[serde(default)]
    #[cfg_attr(not(feature = "connect"), allow(dead_code))]
    pub(super) expires_in: Option<u64>,
    #[serde(default)]
    #[cfg_attr(not(feature = "connect"), allow(dead_code))]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    #[cfg_attr(not(feature = "connect"), allow(dead_code))]
    pub(super) refresh_token_expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorBody {
    pub(super) error_code: Option<String>,
    pub(super) message: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
    #[serde(default)]
    pub(super) errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorEntry {
    pub(super) error_code: Option<String>,
    pub(super) message: Option<String>,
    pub(super) parameter_name: Option<String>,
    pub(super) parameter_value: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct ExtensionPage {
    pub(super) records: Vec<ExtensionRecord>,
    #[serde(default)]
    pub(super) navigation: Option<Navigation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExtensionRecord {
    pub(super) id: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Navigation {
    pub(super) next_page: Option<PageUri>,
}

#[derive(Deserialize)]
pub(super) struct PageUri {
    pub(super) uri: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SubscriptionList {
    pub(super) records: Vec<SubscriptionInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscriptionInfo {
    pub(super) id: String,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) event_filters: Vec<String>,
    #[serde(default)]
    pub(super) disabled_filters: Vec<DisabledFilter>,
    #[serde(default)]
    pub(super) expiration_time: Option<String>,
    #[serde(default)]
    pub(super) creation_time: Option<String>,
    #[serde(default)]
    pub(super) delivery_mode: Option<DeliveryMode>,
    #[serde(default)]
    pub(super) blacklisted_data: Option<BlacklistedData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DisabledFilter {
    pub(super) filter: String,
    #[serde(default)]
    pub(super) reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryMode {
    #[serde(default)]
    pub(super) transport_type: Option<String>,
    #[serde(default)]
    pub(super) address: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct BlacklistedData {
    #[serde(default)]
    pub(super) reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateBody<'a> {
    pub(super) event_filters: &'a [String],
    pub(super) delivery_mode: DeliveryModeRequest<'a>,
    pub(super) expires_in: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryModeRequest<'a> {
    pub(super) transport_type: &'static str,
    pub(super) address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) verification_token: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateBody<'a> {
    pub(super) event_filters: &'a [String],
    pub(super) expires_in: u64,
}

pub(super) fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    let t = text?;
    humantime::parse_rfc3339_weak(t)
        .or_else(|_| humantime::parse_rfc3339(t))
        .ok()
        // `+0000` offsets (seen in notifications) are UTC too; humantime wants `Z`.
        .or_else(|| humantime::parse_rfc3339(&t.replace("+0000", "Z")).ok())
}

impl From<SubscriptionInfo> for Subscription {
    fn from(s: SubscriptionInfo) -> Subscription {
        let mode = s.delivery_mode.unwrap_or(DeliveryMode {
            transport_type: None,
            address: None,
        });
        let disabled: Vec<(String, String)> = s
            .disabled_filters
            .into_iter()
            .map(|d| (d.filter, d.reason.unwrap_or_default()))
            .collect();
        let mut filters = s.event_filters;
        for (f, _) in &disabled {
            if !filters.contains(f) {
                filters.push(f.clone());
            }
        }
        Subscription {
            id: s.id,
            status: s.status.unwrap_or_else(|| "Unknown".into()),
            filters,
            disabled,
            transport: mode.transport_type.unwrap_or_default(),
            address: mode.address,
            expires_at: parse_time(s.expiration_time.as_deref()),
            created_at: parse_time(s.creation_time.as_deref()),
            blacklist_reason: s.blacklisted_data.and_then(|b| b.reason),
        }
    }
}

pub(super) fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns an error answer into a one-liner: the first `errors[]` entry's code and message,
/// the parameter it names, and any further entries.
pub(super) fn api_error(status: u16, body: &[u8]) -> PlatformError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let mut entries = parsed.errors.iter().map(|e| {
        let mut text = e.message.clone().unwrap_or_default();
        if let Some(p) = &e.parameter_name {
            let value = match &e.parameter_value {
                Some(serde_json::Value::String(s)) => format!(" = '{}'", truncate(s, 120)),
                Some(v) => format!(" = {}", truncate(&v.to_string(), 120)),
                None => String::new(),
            };
            text = format!("{text} [{p}{value}]");
        }
        (e.error_code.clone(), text)
    });
    let first = entries.next();
    let code = parsed
        .error_code
        .clone()
        .or_else(|| first.as_ref().and_then(|(c, _)| c.clone()))
        .or_else(|| parsed.error.clone());
    let message = parsed
        .message
        .clone()
        .or_else(|| first.as_ref().map(|(_, m)| m.clone()))
        .or_else(|| parsed.error_description.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_string()
        });
    let mut details: Vec<String> = Vec::new();
    if let Some((_, m)) = &first {
        if m != &message && !m.is_empty() {
            details.push(m.clone());
        }
    }
    details.extend(entries.map(|(c, m)| match c {
        Some(c) => format!("{c} {m}"),
        None => m,
    }));
    PlatformError::Api {
        status,
        code,
        message,
        details,
    }
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub(super) fn bad(detail: impl Into<String>) -> PlatformError {
    PlatformError::BadAnswer {
        detail: detail.into(),
    }
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(
    what: &str,
    body: &[u8],
) -> Result<T, PlatformError> {
    serde_json::from_slice(body).map_err(|e| {
        let start = body.trim_ascii_start();
        if start.is_empty() {
            bad(format!("{what} is empty"))
        } else if start.starts_with(b"<") {
            // A proxy's or load balancer's page; its text is not ours to print.
            bad(format!("{what} is an HTML page, not JSON"))
        } else {
            // serde quotes offending strings whole: keep the line short.
            bad(format!(
                "{what} is not the JSON expected: {}",
                truncate(&e.to_string(), 160)
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_liners() {
        let e = api_error(
            400,
            br#"{"errorCode":"SUB-505","message":"Subscriptions limit exceeded","errors":[{"errorCode":"SUB-505","message":"Subscriptions limit exceeded"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "SUB-505 Subscriptions limit exceeded (HTTP 400)"
        );
        assert!(e.hint().unwrap().contains("ringhook list"));

        let e = api_error(
            400,
            br#"{"error":"invalid_grant","errors":[{"errorCode":"OAU-140","message":"Invalid resource owner credentials"}],"error_description":"Invalid resource owner credentials"}"#,
        );
        assert_eq!(
            e.to_string(),
            "OAU-140 Invalid resource owner credentials (HTTP 400)"
        );
        assert!(e.hint().unwrap().contains("RC_JWT"));

        let e = api_error(
            400,
            br#"{"errorCode":"CMN-101","message":"Parameter [expiresIn] value is invalid","errors":[{"errorCode":"CMN-101","message":"Parameter [expiresIn] value is invalid","parameterName":"expiresIn","parameterValue":"9"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "CMN-101 Parameter [expiresIn] value is invalid; Parameter [expiresIn] value is invalid [expiresIn = '9'] (HTTP 400)"
        );
    }

    #[test]
    fn error_without_a_body_names_the_status() {
        assert_eq!(
            api_error(503, b"<html>").to_string(),
            "Service Unavailable (HTTP 503)"
        );
    }

    #[test]
    fn the_blacklist_sample_parses() {
        let raw = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/events/blacklist.json"),
        )
        .expect("tests/data/events/blacklist.json");
        let list: SubscriptionList = serde_json::from_slice(&raw).unwrap();
        let s: Subscription = list.records.into_iter().next().unwrap().into();
        assert_eq!(s.status, "Blacklisted");
        assert!(!s.is_active());
        assert_eq!(s.transport, "WebHook");
        assert_eq!(s.filters.len(), 3);
        assert!(s.expires_at.is_some());
        assert_eq!(
            s.blacklist_reason.as_deref(),
            Some("I/O operation is failed. Details: [Read timed out]")
        );
    }

    #[test]
    fn times_with_offsets_parse() {
        assert!(parse_time(Some("2014-04-29T14:29:27.408+0000")).is_some());
        assert!(parse_time(Some("2037-03-14T01:45:30.573Z")).is_some());
        assert!(parse_time(Some("soon")).is_none());
    }
}
