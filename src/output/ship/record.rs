//! What a log line means to the shipper: its idempotency key, the bytes to send, the event's
//! name for `{event}` subjects — or why it cannot be shipped. Pure; no I/O.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::webhook::Envelope;

/// One line of the event log, fields borrowed from it.
#[derive(Deserialize)]
struct Logged<'a> {
    #[serde(rename = "receivedAt", borrow)]
    received_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    notification: Option<&'a RawValue>,
    #[serde(rename = "invalidJson", borrow)]
    invalid_json: Option<&'a RawValue>,
    #[serde(rename = "invalidJsonBase64", borrow)]
    invalid_base64: Option<&'a RawValue>,
    /// `catchup`'s recovered lines: `{"source":"message-sync",…}` beside the platform `record`.
    #[serde(borrow)]
    recovered: Option<&'a RawValue>,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
}

/// A line that can be shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shippable {
    /// The idempotency key: the notification's uuid, or `message:<id>` / `call:<id>`.
    pub key: String,
    /// The event's last path segment without its query (`presence`), for `{event}` subjects.
    pub event: String,
    /// `receivedAt` as logged.
    pub received_at: String,
    /// Where the payload (the notification exactly as logged) sits in the line.
    pub payload: Range<usize>,
}

fn range_in(line: &[u8], raw: &RawValue) -> Range<usize> {
    // The raw value borrows from `line`: its offset is the distance between the two pointers.
    let start = raw.get().as_ptr() as usize - line.as_ptr() as usize;
    start..start + raw.get().len()
}

/// The last path segment of an event filter, without its query, as a subject token.
pub(crate) fn event_name(event: &str) -> String {
    let path = event.split('?').next().unwrap_or("");
    let seg = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let name: String = seg
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// The idempotency key and event name of a line, or why there is none. Recovered lines
/// (`catchup`) are keyed by their kind and the platform record's id.
fn key_of(logged: &Logged<'_>) -> Result<(String, String, &'static str), &'static str> {
    if let Some(n) = logged.notification {
        let env = Envelope::parse(n.get().as_bytes()).unwrap_or_default();
        let uuid = env.uuid.filter(|u| !u.is_empty()).ok_or("no uuid")?;
        return Ok((uuid, event_name(env.event.as_deref().unwrap_or("")), "n"));
    }
    if let (Some(src), Some(rec)) = (logged.recovered, logged.record) {
        let field = |raw: &RawValue, k: &str| -> Option<String> {
            let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            match v.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let source = field(src, "source").unwrap_or_default();
        let kind = if source.starts_with("call") {
            "call"
        } else {
            "message"
        };
        let id = field(rec, "id").ok_or("recovered record without an id")?;
        return Ok((format!("{kind}:{id}"), kind.into(), "r"));
    }
    Err("neither a notification nor a recovered record")
}

/// Reads one log line: what to ship, or the reason it goes to the dead-letter file.
pub(crate) fn parse(line: &[u8]) -> Result<Shippable, &'static str> {
    let logged: Logged<'_> = serde_json::from_slice(line).map_err(|_| "not a log line")?;
    if logged.invalid_json.is_some() || logged.invalid_base64.is_some() {
        return Err("invalidJson: the body was not JSON");
    }
    let (key, event, kind) = key_of(&logged)?;
    let raw = if kind == "n" {
        logged.notification
    } else {
        logged.record
    }
    .expect("key_of found it");
    Ok(Shippable {
        key,
        event,
        received_at: logged.received_at.map(Cow::into_owned).unwrap_or_default(),
        payload: range_in(line, raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_what_they_ship() {
        let n = br#"{"receivedAt":"2026-01-01T00:00:00.000Z","notification":{"uuid":"u1","event":"/restapi/v1.0/account/~/extension/1/presence?detailedTelephonyState=true","body":{"a":[1, 2]}}}"#;
        let s = parse(n).unwrap();
        assert_eq!(s.key, "u1");
        assert_eq!(s.event, "presence");
        assert_eq!(s.received_at, "2026-01-01T00:00:00.000Z");
        assert!(
            std::str::from_utf8(&n[s.payload.clone()])
                .unwrap()
                .starts_with("{\"uuid\"")
        );
        assert_eq!(s.payload.end, n.len() - 1);

        let r =
            br#"{"receivedAt":"t","recovered":{"source":"call-log-sync"},"record":{"id":"c9"}}"#;
        let s = parse(r).unwrap();
        assert_eq!((s.key.as_str(), s.event.as_str()), ("call:c9", "call"));
        assert_eq!(&r[s.payload], br#"{"id":"c9"}"#);

        let cases: &[(&[u8], &str)] = &[
            (br#"{"receivedAt":"t","invalidJson":"x"}"#, "invalidJson"),
            (
                br#"{"receivedAt":"t","invalidJsonBase64":"eA=="}"#,
                "invalidJson",
            ),
            (
                br#"{"receivedAt":"t","notification":{"event":"/x"}}"#,
                "no uuid",
            ),
            (br#"{"receivedAt":"t","notification":[1]}"#, "no uuid"),
            (b"garbage", "not a log line"),
            (br#"{"receivedAt":"t"}"#, "neither"),
        ];
        for (line, why) in cases {
            assert!(parse(line).unwrap_err().contains(why), "{line:?}");
        }
    }

    #[test]
    fn event_names() {
        for (event, name) in [
            (
                "/restapi/v1.0/account/~/extension/1/presence?x=1",
                "presence",
            ),
            (
                "/restapi/v1.0/account/~/extension/1/message-store/instant?type=SMS",
                "instant",
            ),
            ("/restapi/v1.0/account/~/extension/1/voicemail", "voicemail"),
            ("/a/b.c/", "b_c"),
            ("", "unknown"),
        ] {
            assert_eq!(event_name(event), name);
        }
    }
}
