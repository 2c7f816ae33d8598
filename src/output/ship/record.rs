//! What a log line means to the shipper: its idempotency key, the bytes to send, the event's
//! name for `{event}` subjects — or why it cannot be shipped. Pure; no I/O.

use std::ops::Range;

use serde_json::value::RawValue;

use crate::log::line::{Body, Line};
use crate::webhook::Envelope;

/// A line that can be shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shippable {
    /// The idempotency key: the notification's uuid, or `message:<id>` / `call:<id>`.
    pub key: String,
    /// The event's last path segment without its query (`presence`), for `{event}` subjects.
    pub event: String,
    /// When it was received, as logged.
    pub received_at: String,
    /// Where the payload (the notification exactly as logged) sits in the line.
    pub payload: Range<usize>,
}

/// Longest key sent as a header value; RingCentral's uuids are a few dozen characters.
const MAX_KEY: usize = 256;

/// True for text that can be a header value as it is: visible ASCII only (no space, no control
/// character such as CR, LF or ESC, nothing beyond U+007E), not empty, at most [`MAX_KEY`] bytes.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_KEY && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Shippable {
    /// Why this record still cannot go to any sink, though it parsed: its key and time of
    /// receipt become header values (`Idempotency-Key`, `Nats-Msg-Id`, `Ringhook-Received-At`), and a
    /// value that is not plain visible ASCII would break the request (an HTTP client refuses
    /// it, so it would be retried for ever) or inject headers (NATS sends it as it is). Such a
    /// record is dead-lettered, never encoded: an encoded key would no longer be the uuid the
    /// consumer sees in the payload, and only a sender with the token can write one.
    pub(crate) fn refusal(&self) -> Option<&'static str> {
        if !header_safe(&self.key) {
            Some(
                "its uuid cannot be a header value (only visible ASCII, at most 256 bytes, is sent as Idempotency-Key or Nats-Msg-Id)",
            )
        } else if !header_safe(&self.received_at) {
            Some("its time of receipt cannot be a header value")
        } else {
            None
        }
    }
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

/// A recovered record's `field` as text (ids are numbers in the message store, strings in the
/// call log).
fn text_of(raw: &RawValue, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    match v.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads one log line: what to ship, or the reason it goes to the dead-letter file.
/// Notifications are keyed by their uuid; recovered lines (`catchup`) by their kind and the
/// platform record's id.
pub(crate) fn parse(line: &[u8]) -> Result<Shippable, &'static str> {
    let logged = Line::parse(line).ok_or("not a log line")?;
    let (key, event, payload) = match logged.body {
        Body::Invalid(_) => return Err("the body was not JSON"),
        Body::Notification(n) => {
            let env = Envelope::parse(n.get().as_bytes()).unwrap_or_default();
            let uuid = env
                .uuid
                .filter(|u| !u.is_empty())
                .ok_or("no uuid")?
                .into_owned();
            (uuid, event_name(env.event.as_deref().unwrap_or("")), n)
        }
        Body::Recovered { source, record } => {
            let source = text_of(source, "source").unwrap_or_default();
            let kind = if source.starts_with("call") {
                "call"
            } else {
                "message"
            };
            let id = text_of(record, "id").ok_or("recovered record without an id")?;
            (format!("{kind}:{id}"), kind.into(), record)
        }
    };
    Ok(Shippable {
        key,
        event,
        received_at: logged.received_at.into_owned(),
        payload: range_in(line, payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> std::time::SystemTime {
        humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn logged(body: &[u8]) -> Vec<u8> {
        let mut line = crate::log::Record::new(body, at()).line;
        line.pop();
        line
    }

    #[test]
    fn lines_and_what_they_ship() {
        let n = logged(
            br#"{"uuid":"u1","event":"/restapi/v1.0/account/~/extension/1/presence?detailedTelephonyState=true","body":{"a":[1, 2]}}"#,
        );
        let s = parse(&n).unwrap();
        assert_eq!(s.key, "u1");
        assert_eq!(s.event, "presence");
        assert_eq!(s.received_at, "2026-01-01T00:00:00.000Z");
        assert!(
            std::str::from_utf8(&n[s.payload.clone()])
                .unwrap()
                .starts_with("{\"uuid\"")
        );
        assert_eq!(s.payload.end, n.len() - 1);

        let rec: Box<RawValue> = serde_json::from_str(r#"{"id":"c9"}"#).unwrap();
        let mut r =
            crate::log::line::recovered_line(at(), "call-log-sync", ("accountId", "1"), &rec);
        r.pop();
        let s = parse(&r).unwrap();
        assert_eq!((s.key.as_str(), s.event.as_str()), ("call:c9", "call"));
        assert_eq!(&r[s.payload], br#"{"id":"c9"}"#);
        let rec: Box<RawValue> = serde_json::from_str(r#"{"id":606}"#).unwrap();
        let mut r =
            crate::log::line::recovered_line(at(), "message-sync", ("extensionId", "2"), &rec);
        r.pop();
        assert_eq!(parse(&r).unwrap().key, "message:606");

        let cases: &[(Vec<u8>, &str)] = &[
            (logged(b"x"), "not JSON"),
            (logged(b"\xff"), "not JSON"),
            (logged(br#"{"event":"/x"}"#), "no uuid"),
            (logged(b"[1]"), "no uuid"),
            (b"garbage".to_vec(), "not a log line"),
            (b"{}".to_vec(), "not a log line"),
        ];
        for (line, why) in cases {
            assert!(parse(line).unwrap_err().contains(why), "{line:?}");
        }
    }

    #[test]
    fn keys_that_cannot_be_header_values_are_refused() {
        let key = |k: &str| Shippable {
            key: k.into(),
            event: "presence".into(),
            received_at: "2026-01-01T00:00:00.000Z".into(),
            payload: 0..0,
        };
        for ok in ["u1", "message:606", "5a0a-7c3e_x.y~z", &"k".repeat(MAX_KEY)] {
            assert_eq!(key(ok).refusal(), None, "{ok}");
        }
        for bad in [
            "crlf\r\nX-Injected: yes",
            "a\u{1b}[31m",
            "two words",
            "caf\u{e9}",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            &"k".repeat(MAX_KEY + 1),
        ] {
            assert!(key(bad).refusal().unwrap().contains("uuid"), "{bad:?}");
        }
        let mut s = key("u1");
        s.received_at = "2026\r\nX: y".into();
        assert!(s.refusal().unwrap().contains("time of receipt"));
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
