//! The WebSocket Gateway's messages, pure: every message is a JSON array `[meta]` or
//! `[meta, body]`; [`Message::parse`] reads the meta and keeps the body's bytes exactly as sent
//! (`RawValue`), the builders write the client's requests. Samples: `tests/data/websocket/`.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A field read leniently: a value of another type than expected (a number where a string
/// should be, a negative size) is as if it were absent, instead of making the whole message
/// unreadable (and with it the fields that were fine: a `recoveryState`, a notification).
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// A count or a status: an unsigned integer, or one written as a string.
fn lenient_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(n.and_then(|n| T::try_from(n).ok()))
}

/// Headers: the ones whose value is a string (others are not headers we read).
fn lenient_headers<'de, D>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => Some(
            m.into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    })
}

/// The meta (first element) of any message. Every field but `type` is read leniently.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    /// `ConnectionDetails`, `ClientRequest`, `ServerNotification`, `Heartbeat`, `Error`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient")]
    pub message_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub status: Option<u16>,
    #[serde(default, deserialize_with = "lenient")]
    pub wsc: Option<Wsc>,
    #[serde(default, deserialize_with = "lenient_headers")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// The session-context token.
#[derive(Debug, Deserialize)]
pub(crate) struct Wsc {
    pub token: String,
}

/// `ConnectionDetails`' body (every field optional and read leniently: read what is there).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Details {
    #[serde(default, deserialize_with = "lenient")]
    pub recovery_state: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub recovery_error_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub recovery_timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub idle_timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub absolute_timeout: Option<u64>,
    /// How many notifications the gateway keeps while disconnected (the most recent ones).
    #[serde(default, deserialize_with = "lenient_number")]
    pub recovery_buffer_size: Option<u64>,
}

/// An `Error` body, or any error answer's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GatewayError {
    #[serde(default, deserialize_with = "lenient")]
    pub error_code: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub message: Option<String>,
}

/// A subscription answer's body, as far as we need it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SubscriptionBody {
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
}

/// A `ServerNotification`'s body, as far as the session looks into it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NotificationBody {
    /// Its subscription: a string, or another JSON value's text (not ours either way).
    #[serde(default, deserialize_with = "any_text")]
    pub subscription_id: Option<String>,
}

/// A string as it is; any other value (but null) as its JSON text.
fn any_text<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        v => Some(v.to_string()),
    })
}

/// One message: its meta, and its body's bytes as sent.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub meta: Meta,
    pub body: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    /// Reads `[meta]` or `[meta, body]`; anything else is not a gateway message.
    pub(crate) fn parse(text: &'a [u8]) -> Result<Message<'a>, String> {
        let parts: Vec<&'a RawValue> =
            serde_json::from_slice(text).map_err(|_| "not a JSON array".to_string())?;
        let (meta, body) = match parts.as_slice() {
            [m] => (*m, None),
            [m, b] => (*m, Some(*b)),
            _ => return Err(format!("an array of {} elements", parts.len())),
        };
        let meta: Meta =
            serde_json::from_str(meta.get()).map_err(|_| "a meta without a type".to_string())?;
        Ok(Message { meta, body })
    }

    /// The body read as `T` (a missing or unreadable body gives `T::default()`).
    pub(crate) fn body_as<T: for<'de> Deserialize<'de> + Default>(&self) -> T {
        self.body
            .and_then(|b| serde_json::from_str(b.get()).ok())
            .unwrap_or_default()
    }

    /// A header of the meta.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.meta
            .headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The body as one line: a raw newline or carriage return in JSON text is whitespace (inside a
/// string it must be escaped), so turning them into spaces keeps the very same JSON, which the
/// log minifies exactly as it would have the original.
pub(crate) fn one_line(body: &RawValue) -> Vec<u8> {
    body.get()
        .bytes()
        .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// `[{"type":"Heartbeat","messageId":ID}]`.
pub(crate) fn heartbeat(id: &str) -> String {
    format!(r#"[{{"type":"Heartbeat","messageId":{}}}]"#, json_str(id))
}

/// The `ClientRequest` creating the subscription (all filters, WebSocket delivery).
pub(crate) fn create_subscription(id: &str, filters: &[String]) -> String {
    let filters = serde_json::to_string(filters).expect("strings serialize");
    format!(
        r#"[{{"type":"ClientRequest","messageId":{},"method":"POST","path":"/restapi/v1.0/subscription"}},{{"eventFilters":{filters},"deliveryMode":{{"transportType":"WebSocket"}}}}]"#,
        json_str(id)
    )
}

/// The `ClientRequest` deleting subscription `sub`.
pub(crate) fn delete_subscription(id: &str, sub: &str) -> String {
    format!(
        r#"[{{"type":"ClientRequest","messageId":{},"method":"DELETE","path":{}}}]"#,
        json_str(id),
        json_str(&format!("/restapi/v1.0/subscription/{sub}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/websocket/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn published_samples_parse() {
        let d = sample("docs-connection-details.json");
        let m = Message::parse(&d).unwrap();
        assert_eq!(m.meta.kind, "ConnectionDetails");
        assert_eq!(
            m.meta.wsc.as_ref().unwrap().token,
            "RTFhRG5nfExxxxxxxxxxxcHE3bXkyRURQVQ"
        );
        let det: Details = m.body_as();
        assert_eq!(
            (det.idle_timeout, det.absolute_timeout, det.recovery_timeout),
            (Some(1800), Some(86400), Some(180))
        );
        assert_eq!(det.recovery_buffer_size, Some(100));
        assert!(det.recovery_state.is_none());
        let f = sample("widgets-connection-details-recovery-failed.json");
        let det: Details = Message::parse(&f).unwrap().body_as();
        assert_eq!(det.recovery_state.as_deref(), Some("Failed"));
        assert_eq!(det.recovery_error_code.as_deref(), Some("WSG-1005"));
        let s = sample("widgets-client-request-create-subscription-response.json");
        let m = Message::parse(&s).unwrap();
        assert_eq!(
            m.header("WSG-SubscriptionId"),
            Some("9c5bf39a-2c66-43e4-a927-737de24097b1")
        );
        assert_eq!(
            m.body_as::<SubscriptionBody>().id.as_deref(),
            Some("9c5bf39a-2c66-43e4-a927-737de24097b1")
        );
        let n = sample("docs-server-notification.json");
        let m = Message::parse(&n).unwrap();
        assert_eq!(m.meta.kind, "ServerNotification");
        assert_eq!(
            m.body_as::<NotificationBody>().subscription_id.as_deref(),
            Some("2db5fcc4-xxxx-xxxx-xxxx-fa9b78dd9a55")
        );
        let body = m.body.unwrap();
        // The body's bytes are those inside the message, and one_line keeps the same JSON.
        let line = one_line(body);
        assert!(!line.contains(&b'\n'));
        let a: serde_json::Value = serde_json::from_str(body.get()).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(a, b);
        let h = sample("widgets-heartbeat-response.json");
        assert_eq!(Message::parse(&h).unwrap().meta.kind, "Heartbeat");
        assert!(
            Message::parse(&sample(
                "docs-session-recovery-connection-details.NOT-VALID-JSON.json"
            ))
            .is_err()
        );
        assert!(Message::parse(b"{}").is_err());
        assert!(Message::parse(b"[1,2,3]").is_err());
    }

    #[test]
    fn an_odd_field_leaves_the_others_readable() {
        let d = br#"[{"type":"ConnectionDetails","status":"200","headers":{"A":1,"B":"b"},"wsc":{"token":5}},
            {"recoveryState":"Successful","recoveryBufferSize":"7","recoveryTimeout":-1,"idleTimeout":[1]}]"#;
        let m = Message::parse(d).unwrap();
        assert_eq!(m.meta.status, Some(200));
        assert!(m.meta.wsc.is_none());
        assert_eq!(m.header("b"), Some("b"));
        assert_eq!(m.header("a"), None);
        let det: Details = m.body_as();
        assert_eq!(det.recovery_state.as_deref(), Some("Successful"));
        assert_eq!(det.recovery_buffer_size, Some(7));
        assert_eq!((det.recovery_timeout, det.idle_timeout), (None, None));
        let n = br#"[{"type":"ServerNotification","status":70000},{"subscriptionId":7}]"#;
        let m = Message::parse(n).unwrap();
        assert_eq!(m.meta.status, None);
        let b: NotificationBody = m.body_as();
        assert_eq!(b.subscription_id.as_deref(), Some("7"));
    }

    #[test]
    fn requests_are_the_documented_shape() {
        let r = create_subscription(
            "m1",
            &["/restapi/v1.0/account/~/extension/~/presence".into()],
        );
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v[0]["type"], "ClientRequest");
        assert_eq!(v[1]["deliveryMode"]["transportType"], "WebSocket");
        let v: serde_json::Value = serde_json::from_str(&heartbeat("h\"1")).unwrap();
        assert_eq!(v[0]["messageId"], "h\"1");
        let v: serde_json::Value = serde_json::from_str(&delete_subscription("d", "s1")).unwrap();
        assert_eq!(v[0]["path"], "/restapi/v1.0/subscription/s1");
        assert_eq!(v.as_array().unwrap().len(), 1);
    }
}
