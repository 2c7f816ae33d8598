//! One event-log line → one readable line. Pure: bytes in, text out; tested with a table of every
//! RingCentral sample in `tests/data/events/`.
//!
//! `HH:MM:SS  kind       ext N    detail` — the time is when it was received (UTC, as logged); the kind
//! names the common events (presence, call, missed, sms in/out, voicemail, fax, messages,
//! renewal); anything else shows its event path and its first fields. Text from the event is
//! cleaned of control characters: a notification must not drive the operator's terminal.

use std::fmt::Write as _;

use serde_json::Value;

use crate::log::line::{Body, Line};

/// A log line, parsed.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A notification.
    Notification {
        /// When it was received, as logged.
        received_at: String,
        /// The notification.
        body: Value,
        /// The body's first fields in the order sent (`Value` sorts them).
        first: Vec<(String, Value)>,
    },
    /// `invalidJson` / `invalidJsonBase64`: a verified body that was not JSON.
    Invalid {
        /// When it was received, as logged.
        received_at: String,
        /// The body as text (`None` when it was not UTF-8 either).
        text: Option<String>,
    },
    /// Not a line of the event log.
    Unreadable {
        /// Its length in bytes.
        len: usize,
    },
}

impl Entry {
    /// Parses one line (without its `\n`).
    pub(crate) fn parse(line: &[u8]) -> Entry {
        let Some(logged) = Line::parse(line) else {
            return Entry::Unreadable { len: line.len() };
        };
        let received_at = logged.received_at.into_owned();
        match logged.body {
            Body::Notification(raw) => {
                let raw = raw.get();
                let body: Value = serde_json::from_str(raw).unwrap_or_default();
                // Fields in order for events without a format of their own: the body's, or the
                // notification's own when it has no event at all.
                let first = if body.get("event").is_some() {
                    serde_json::from_str::<InOrder>(raw).map(|n| n.body.0)
                } else {
                    serde_json::from_str::<FirstFields>(raw).map(|f| f.0)
                };
                Entry::Notification {
                    received_at,
                    body,
                    first: first.unwrap_or_default(),
                }
            }
            Body::Invalid(text) => Entry::Invalid {
                received_at,
                text: text.map(|t| t.into_owned()),
            },
            // Recovered records are catchup's; `tail` shows notifications.
            Body::Recovered { .. } => Entry::Unreadable { len: line.len() },
        }
    }

    /// The notification's `event`, for `--filter`.
    pub(crate) fn event(&self) -> Option<&str> {
        match self {
            Entry::Notification { body, .. } => body.get("event")?.as_str(),
            _ => None,
        }
    }
}

/// A notification's `{"body":{…}}`, keeping the body's first fields in order.
#[derive(serde::Deserialize)]
struct InOrder {
    #[serde(default)]
    body: FirstFields,
}

/// The first [`FIELDS`] entries of an object, in order; the rest is skipped unread.
#[derive(Default)]
struct FirstFields(Vec<(String, Value)>);

const FIELDS: usize = 4;

impl<'de> serde::Deserialize<'de> for FirstFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FirstFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<FirstFields, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if v.len() < FIELDS {
                        v.push((k, m.next_value()?));
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(FirstFields(v))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What kind of line it is, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Call,
    Message,
    Alarm,
    Other,
}

/// Appends the readable line for `entry` (no newline) to `out`; with `colour`, ANSI colours.
pub(crate) fn render(entry: &Entry, colour: bool, out: &mut String) {
    let (received_at, kind, ext, detail, tone) = match entry {
        Entry::Notification {
            received_at,
            body,
            first,
        } => {
            let (kind, ext, detail, tone) = describe(body, first);
            (received_at.as_str(), kind, ext, detail, tone)
        }
        Entry::Invalid { received_at, text } => {
            let detail = match text {
                Some(t) => {
                    // Whitespace runs (a pretty-printed body's newlines) as one space.
                    let flat: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
                    let mut d = format!("not JSON ({} bytes): ", t.len());
                    let mut chars = flat.chars();
                    d.push_str(&clean(&chars.by_ref().take(70).collect::<String>()));
                    if chars.next().is_some() {
                        d.push('…');
                    }
                    d
                }
                None => "not JSON, not UTF-8 (logged as base64)".to_string(),
            };
            (received_at.as_str(), "invalid", None, detail, Tone::Alarm)
        }
        Entry::Unreadable { len } => (
            "",
            "unreadable",
            None,
            format!("not an event-log line ({len} bytes)"),
            Tone::Alarm,
        ),
    };
    // `2026-11-22T21:52:35.034Z` → `21:52:35`.
    let time = received_at.get(11..19).unwrap_or("--:--:--");
    let paint = |out: &mut String, code: &str, text: &str, width: usize| {
        if colour {
            let _ = write!(out, "\x1b[{code}m{text}\x1b[0m");
        } else {
            out.push_str(text);
        }
        for _ in text.chars().count()..width {
            out.push(' ');
        }
    };
    paint(out, "2", time, 0);
    out.push_str("  ");
    let code = match tone {
        Tone::Call => "36",
        Tone::Message => "32",
        Tone::Alarm => "31",
        Tone::Other => "1",
    };
    paint(out, code, kind, 9);
    out.push_str("  ");
    let ext = ext.map(|e| format!("ext {e}")).unwrap_or_default();
    out.push_str(&ext);
    for _ in ext.chars().count()..7 {
        out.push(' ');
    }
    out.push_str("  ");
    out.push_str(detail.trim_end());
}

/// Kind, extension, detail and tone of a notification.
fn describe(n: &Value, first: &[(String, Value)]) -> (&'static str, Option<String>, String, Tone) {
    let event = n.get("event").and_then(Value::as_str).unwrap_or("");
    let path = event.split('?').next().unwrap_or("");
    let body = n.get("body").unwrap_or(&Value::Null);
    let mut ext = extension(path, n);
    let mut d = String::new();
    let (kind, tone) = if path.ends_with("/presence") {
        let status: Vec<&str> = ["presenceStatus", "telephonyStatus"]
            .iter()
            .filter_map(|k| text(body, k))
            .collect();
        d.push_str(&clean(&status.join(" · ")));
        let calls = body
            .get("activeCalls")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if calls > 0 {
            let _ = write!(d, " · {calls} call{}", if calls == 1 { "" } else { "s" });
        }
        ("presence", Tone::Call)
    } else if path.ends_with("/telephony/sessions") {
        let party = body.pointer("/parties/0").unwrap_or(&Value::Null);
        if let Some(e) = text(party, "extensionId") {
            ext = Some(clean(e));
        }
        let _ = write!(
            d,
            "{}  {} → {}",
            party
                .pointer("/status/code")
                .and_then(Value::as_str)
                .map_or(String::new(), clean),
            who(party.get("from")),
            who(party.get("to"))
        );
        if party.get("missedCall") == Some(&Value::Bool(true)) {
            ("missed", Tone::Alarm)
        } else {
            ("call", Tone::Call)
        }
    } else if path.ends_with("/message-store/instant") || path.ends_with("/a2p-sms/messages") {
        let outbound = text(body, "direction") == Some("Outbound");
        let words = text(body, "subject")
            .or_else(|| text(body, "text"))
            .unwrap_or("");
        if outbound {
            let _ = write!(d, "→ {} ", who(body.pointer("/to/0")));
        } else {
            let _ = write!(d, "{} → ", who(body.get("from")));
        }
        quoted(&mut d, words, 60);
        (if outbound { "sms out" } else { "sms in" }, Tone::Message)
    } else if path.ends_with("/voicemail") {
        let _ = write!(d, "from {}", who(body.get("from")));
        if let Some(s) = body
            .pointer("/attachments/0/vmDuration")
            .and_then(Value::as_u64)
        {
            let _ = write!(d, ", {s} s");
        }
        ("voicemail", Tone::Message)
    } else if path.ends_with("/fax") {
        let _ = write!(d, "from {}", who(body.get("from")));
        if let Some(p) = body.get("faxPageCount").and_then(Value::as_u64) {
            let _ = write!(d, ", {p} page{}", if p == 1 { "" } else { "s" });
        }
        ("fax", Tone::Message)
    } else if path.ends_with("/message-store") {
        let changes = body.get("changes").and_then(Value::as_array);
        for c in changes.into_iter().flatten() {
            let kind = text(c, "type").map_or(String::new(), clean);
            for (field, word) in [("newCount", "new"), ("updatedCount", "updated")] {
                match c.get(field).and_then(Value::as_u64) {
                    Some(0) | None => {}
                    Some(k) => {
                        let sep = if d.is_empty() { "" } else { ", " };
                        let _ = write!(d, "{sep}{kind} {k} {word}");
                    }
                }
            }
        }
        ("messages", Tone::Message)
    } else if path.starts_with("/restapi/v1.0/subscription") {
        match body.get("expiresIn").and_then(Value::as_u64) {
            Some(s) => {
                let left = humantime::format_duration(std::time::Duration::from_secs(s));
                let _ = write!(d, "subscription expires in {left}");
            }
            None => first_fields(&mut d, path, first),
        }
        ("renewal", Tone::Alarm)
    } else {
        first_fields(&mut d, path, first);
        if path.ends_with("/missed-calls") {
            ("missed", Tone::Alarm)
        } else {
            ("event", Tone::Other)
        }
    };
    (kind, ext, d, tone)
}

/// The extension the event is about: its `/extension/ID` segment, `~` meaning the owner.
fn extension(path: &str, n: &Value) -> Option<String> {
    let after = path.split("/extension/").nth(1)?;
    let id = after.split('/').next()?;
    match id {
        "" => None,
        "~" => text(n, "ownerId").map(clean),
        id => Some(clean(id)),
    }
}

/// `event-path  key=value key=[n] …`, for events without a format of their own.
fn first_fields(d: &mut String, path: &str, fields: &[(String, Value)]) {
    d.push_str(&if path.is_empty() {
        "(no event)".to_string()
    } else {
        clean(path)
    });
    for (k, v) in fields {
        let _ = write!(d, "  {}=", clean(k));
        match v {
            Value::String(s) => quoted(d, s, 40),
            Value::Array(a) => {
                let _ = write!(d, "[{}]", a.len());
            }
            Value::Object(_) => d.push_str("{…}"),
            other => d.push_str(&other.to_string()),
        }
    }
}

/// A party or correspondent: its phone number (spaced), else its extension, else its name.
fn who(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "?".into();
    };
    if let Some(s) = v.as_str() {
        return phone(s);
    }
    let number = text(v, "phoneNumber").map(phone);
    let name = text(v, "name").map(clean);
    match (number, name) {
        (Some(p), Some(n)) => format!("{p} ({n})"),
        (Some(p), None) => p,
        (None, _) if text(v, "extensionNumber").is_some() => {
            format!("ext {}", clean(text(v, "extensionNumber").unwrap_or("")))
        }
        (None, Some(n)) => n,
        (None, None) => "?".into(),
    }
}

/// `+16505550100` → `+1 650 555 0100` (North American numbers); others as they are.
fn phone(p: &str) -> String {
    let digits = p
        .strip_prefix("+1")
        .filter(|d| d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()));
    match digits {
        Some(d) => format!("+1 {} {} {}", &d[..3], &d[3..6], &d[6..]),
        None => clean(p),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

/// `"text"`, cut at `max` characters with `…`, control characters escaped.
fn quoted(d: &mut String, s: &str, max: usize) {
    d.push('"');
    let mut chars = s.chars();
    d.push_str(&clean(&chars.by_ref().take(max).collect::<String>()));
    if chars.next().is_some() {
        d.push('…');
    }
    d.push('"');
}

/// Control characters and bidirectional overrides written escaped (`\u{1b}`, `\n`, `\u{202e}`).
fn clean(s: &str) -> String {
    crate::oplog::Escaped(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line `serve` would log for `body` (the log's own record builder).
    fn logged(body: &[u8]) -> Vec<u8> {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_173_585_418);
        let mut line = crate::log::Record::new(body, at).line;
        line.pop();
        line
    }

    fn line_for(body: &[u8], colour: bool) -> String {
        let mut out = String::new();
        render(&Entry::parse(&logged(body)), colour, &mut out);
        out
    }

    #[test]
    fn every_reference_sample_has_its_line() {
        // Every file in tests/data/events (RingCentral's samples), and what its line says after the time.
        let cases = [
            (
                "ace-rcx-event.json",
                "event               /ai/ringsense/v1/public/accounts/48154XXXX/domains/rcx/insights  eventType=\"Create\"  title=\"Inbound call with +1650222XXXX\"  rsRecordUri=\"https://ringsense.ringcentral.com/calls/…\"  domain=\"rcx\"",
            ),
            (
                "batch-messages-1.json",
                "sms in              +1 928 768 0662 → \"Thank you for the message\"",
            ),
            (
                "blacklist.json",
                "event               (no event)  uri=\"https://platform.ringcentral.com/restapi…\"  records=[1]",
            ),
            (
                "chat-1.json",
                "event               /team-messaging/v1/chats  id=\"1055879168002\"  name=null  description=null  type=\"Group\"",
            ),
            (
                "company-directory.json",
                "event               /restapi/v1.0/account/400386146004/directory/entries  contacts=[1]",
            ),
            (
                "detailed-extension-presence-with-sip.json",
                "presence   ext 297277020  Busy · OnHold · 2 calls",
            ),
            (
                "detailed-extension-presence.json",
                "presence   ext 6610372004  Busy · CallConnected · 2 calls",
            ),
            (
                "extension-list.json",
                "event               /restapi/v1.0/account/~/extension  extensions=[3]",
            ),
            (
                "extension-presence.json",
                "presence   ext 6610372004  Busy · CallConnected",
            ),
            (
                "fax-message.json",
                "fax        ext 823476228762  from +1 402 999 7777, 2 pages",
            ),
            (
                "instant-message.json",
                "invalid             not JSON (1209 bytes): { \"uuid\": \"ed1cf00c-0420-4bf5-a0ae-e659bb9f77e0\", \"event\": \"/restapi/v…",
            ),
            (
                "message.json",
                "invalid             not JSON (588 bytes): { \"timestamp\": \"2014-04-29T14:29:27.408+0000\", \"uuid\": \"b11c9430-9687-…",
            ),
            (
                "post-1.json",
                "event               /team-messaging/v1/posts  id=\"26848769679364\"  groupId=\"995723345922\"  type=\"TextMessage\"  text=\"Hello, World!\"",
            ),
            (
                "telephony-session-event.json",
                "call       ext 809646016  Setup  +1 408 338 8064 → +1 904 301 4558 (TESTER Babji)",
            ),
            (
                "voicemail-message.json",
                "voicemail  ext 823476228762  from +1 866 432 0079 (Jane Doe), 3 s",
            ),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/events");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("tests/data/events")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let named: Vec<&str> = cases.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, named, "a case for every sample, no more");
        let mut wrong = Vec::new();
        for (file, want) in cases {
            let body = std::fs::read(dir.join(file)).unwrap();
            let got = line_for(&body, false);
            if got != format!("01:06:25  {want}").trim_end() {
                wrong.push(format!("{file}\n  got:  {got}\n  want: 01:06:25  {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn text_from_an_event_cannot_reorder_or_drive_the_terminal() {
        let line = line_for(
            "{\"event\":\"/x\",\"body\":{\"name\":\"abc\\u202efed\\u001b[31m\\r\\n\"}}".as_bytes(),
            false,
        );
        assert!(line.contains(r"abc\u{202e}fed\u{1b}[31m\r\n"), "{line}");
        assert!(!line.contains(['\u{202e}', '\u{1b}', '\r', '\n']), "{line}");
    }

    #[test]
    fn the_issues_examples() {
        let cases: [(&str, &str); 5] = [
            (
                r#"{"event":"/restapi/v1.0/account/~/extension/101/presence","body":{"presenceStatus":"Busy","telephonyStatus":"CallConnected"}}"#,
                "presence   ext 101  Busy · CallConnected",
            ),
            (
                r#"{"event":"/restapi/v1.0/account/~/extension/102/message-store/instant?type=SMS","body":{"from":{"phoneNumber":"+16505550100"},"direction":"Inbound","subject":"running late, 10 min"}}"#,
                "sms in     ext 102  +1 650 555 0100 → \"running late, 10 min\"",
            ),
            (
                r#"{"event":"/restapi/v1.0/account/~/extension/101/voicemail","body":{"from":{"phoneNumber":"+16505550199"},"attachments":[{"vmDuration":23}]}}"#,
                "voicemail  ext 101  from +1 650 555 0199, 23 s",
            ),
            (
                r#"{"event":"/restapi/v1.0/account/~/extension/103/telephony/sessions","body":{"parties":[{"status":{"code":"Ringing"},"from":{"phoneNumber":"+16505550142"},"to":{"extensionNumber":"103"}}]}}"#,
                "call       ext 103  Ringing  +1 650 555 0142 → ext 103",
            ),
            (
                r#"{"event":"/restapi/v1.0/account/~/extension/103/telephony/sessions","body":{"parties":[{"missedCall":true,"status":{"code":"Disconnected"},"from":{"phoneNumber":"+442071234567"},"to":{"extensionNumber":"103"}}]}}"#,
                "missed     ext 103  Disconnected  +442071234567 → ext 103",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                line_for(body.as_bytes(), false),
                format!("01:06:25  {want}")
            );
        }
    }

    #[test]
    fn more_kinds_and_odd_lines() {
        let cases = [
            (
                &br#"{"event":"/restapi/v1.0/subscription/~?threshold=86400&interval=3600","body":{"expiresIn":86399}}"#[..],
                "01:06:25  renewal             subscription expires in 23h 59m 59s",
            ),
            (
                br#"{"event":"/restapi/v1.0/account/~/extension/~/message-store","ownerId":"55","body":{"changes":[{"type":"SMS","newCount":1,"updatedCount":0},{"type":"Pager","newCount":0,"updatedCount":2}]}}"#,
                "01:06:25  messages   ext 55   SMS 1 new, Pager 2 updated",
            ),
            (
                br#"{"event":"/restapi/v1.0/account/~/extension/7/message-store/instant?type=SMS","body":{"to":[{"phoneNumber":"+16505550100"}],"direction":"Outbound","subject":"on my way"}}"#,
                "01:06:25  sms out    ext 7    → +1 650 555 0100 \"on my way\"",
            ),
            // Terminal escapes in an event are shown, never sent to the terminal.
            (
                b"{\"event\":\"/x/extension/9/presence\",\"body\":{\"presenceStatus\":\"\\u001b[2J\"}}",
                "01:06:25  presence   ext 9    \\u{1b}[2J",
            ),
            (b"[1,2]", "01:06:25  event               (no event)"),
            (b"\xff\xfe", "01:06:25  invalid             not JSON, not UTF-8 (logged as base64)"),
        ];
        for (body, want) in cases {
            assert_eq!(line_for(body, false), want);
        }
        let mut out = String::new();
        render(&Entry::parse(b"{torn"), false, &mut out);
        assert_eq!(
            out,
            "--:--:--  unreadable           not an event-log line (5 bytes)"
        );
    }

    #[test]
    fn colour_wraps_the_time_and_the_kind_only() {
        let body = br#"{"event":"/a/extension/1/voicemail","body":{}}"#;
        let plain = line_for(body, false);
        let coloured = line_for(body, true);
        assert!(coloured.starts_with("\x1b[2m01:06:25\x1b[0m  \x1b[32mvoicemail\x1b[0m  "));
        let stripped = coloured
            .replace("\x1b[2m", "")
            .replace("\x1b[32m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn the_filter_sees_the_event() {
        let e = Entry::parse(&logged(
            br#"{"event":"/restapi/v1.0/account/~/extension/~/voicemail"}"#,
        ));
        assert_eq!(
            e.event(),
            Some("/restapi/v1.0/account/~/extension/~/voicemail")
        );
        assert_eq!(Entry::parse(&logged(b"not json")).event(), None);
    }
}
