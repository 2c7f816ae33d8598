//! One line of the event log: what it holds, how it is written, how it is read. The only place
//! that spells a field of a line; everything else asks this module.
//!
//! Format (one JSON object per line, `\n`-terminated, fields in this order):
//! - `{"receivedAt":"2026-11-22T21:45:18.123Z","notification":{...}}` — a notification, the body
//!   exactly as received (same keys, same order, same number text), insignificant whitespace
//!   removed;
//! - `{"receivedAt":"...","invalidJson":"..."}` — a verified body that is not JSON, as a string;
//! - `{"receivedAt":"...","invalidJsonBase64":"..."}` — the same, for a body that is not UTF-8;
//! - `{"receivedAt":"...","recovered":{"source":"message-sync","extensionId":"62000"},"record":{...}}`
//!   — a record `catchup` recovered from the platform: `source` is the endpoint it came from
//!   (`message-sync`, `message-store`, `call-log-sync`, `call-log`), then `extensionId`
//!   (messages) or `accountId` (calls); `record` exactly as the platform sent it, minified.

use std::borrow::Cow;
use std::io::Write;
use std::time::SystemTime;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::webhook::Envelope;

/// One notification, ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The envelope's `uuid`, `event`, `subscriptionId` and `timestamp` back to back: one
    /// allocation per record instead of one per field (see [`Record::uuid`] and its siblings).
    fields: String,
    /// Where each of those fields sits in `fields`, in that order; `None` when it is missing.
    spans: [Option<(u32, u32)>; 4],
    /// The complete line, `\n` included.
    pub line: Vec<u8>,
    /// Where the notification's JSON sits in `line` (none for bodies that are not JSON).
    notification: Option<std::ops::Range<usize>>,
}

const UUID: usize = 0;
const EVENT: usize = 1;
const SUBSCRIPTION_ID: usize = 2;
const TIMESTAMP: usize = 3;

/// `{"receivedAt":"2026-11-22T21:45:18.123Z","notification":`: the head of a notification's line.
const HEAD: usize = PREFIX.len() + TIME.len() + MIDDLE.len();
const PREFIX: &[u8] = b"{\"receivedAt\":\"";
/// A time as the line holds it, for its length (years 0 to 9999).
const TIME: &[u8] = b"2026-11-22T21:45:18.123Z";
const MIDDLE: &[u8] = b"\",\"notification\":";

/// A body being received, with room in front for its line's head: a JSON body becomes its line
/// where it lies, without a second buffer or a copy (one allocation per notification, not two).
#[derive(Debug, Default)]
pub(crate) struct BodyBuffer {
    /// `HEAD` bytes of room, then the body; empty until the first byte or reservation.
    buf: Vec<u8>,
}

impl BodyBuffer {
    /// Makes room for `n` more body bytes (and the line's head and end).
    pub(crate) fn reserve_exact(&mut self, n: usize) {
        if self.buf.is_empty() {
            self.buf.reserve_exact(HEAD + n + 2);
            self.buf.resize(HEAD, 0);
        } else {
            self.buf.reserve_exact(n + 2);
        }
    }

    /// Appends body bytes.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.buf.is_empty() {
            self.reserve_exact(bytes.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The body received so far.
    pub(crate) fn body(&self) -> &[u8] {
        self.buf.get(HEAD..).unwrap_or_default()
    }

    /// The log line for the body, received at `received_at`.
    pub(crate) fn into_record(mut self, received_at: SystemTime) -> Record {
        let body = self.body();
        // One pass for the usual notification: parsing the envelope validates the whole body.
        // Valid JSON that is not an object, or whose fields have other types, is logged all the
        // same; it just has no uuid to deduplicate on.
        let envelope = Envelope::parse(body);
        let json = envelope.is_some() || serde_json::from_slice::<&RawValue>(body).is_ok();
        let (fields, spans) = envelope.map(keep_fields).unwrap_or_default();
        let mut time = [0u8; TIME.len()];
        let mut rest = &mut time[..];
        // Formatted in place: `to_string` would allocate and copy a String per event.
        let stamp = humantime::format_rfc3339_millis(received_at);
        let fits = write!(rest, "{stamp}").is_ok() && rest.is_empty();
        if !json || !fits {
            // Not JSON (or a time past the year 9999): a line of another shape, built apart.
            let mut line = Vec::with_capacity(body.len() + 64);
            line.extend_from_slice(PREFIX);
            write!(line, "{stamp}").expect("writing to a Vec cannot fail");
            line.extend_from_slice(b"\",");
            let notification = write_body(body, json, &mut line);
            line.extend_from_slice(b"}\n");
            return Record {
                fields,
                spans,
                line,
                notification,
            };
        }
        let line = &mut self.buf;
        line[..PREFIX.len()].copy_from_slice(PREFIX);
        line[PREFIX.len()..PREFIX.len() + TIME.len()].copy_from_slice(&time);
        line[PREFIX.len() + TIME.len()..HEAD].copy_from_slice(MIDDLE);
        minify_in_place(line, HEAD);
        let end = line.len();
        line.extend_from_slice(b"}\n");
        // A chunked body had `--max-body` reserved; the line waits for the disk, so give the
        // slack back.
        if line.capacity() - line.len() > 64 * 1024 {
            line.shrink_to_fit();
        }
        Record {
            fields,
            spans,
            line: self.buf,
            notification: Some(HEAD..end),
        }
    }
}

/// The envelope's fields as one string and their spans in it.
fn keep_fields(env: Envelope) -> (String, [Option<(u32, u32)>; 4]) {
    let all = [env.uuid, env.event, env.subscription_id, env.timestamp];
    let len = all.iter().flatten().map(|f| f.len()).sum();
    let mut fields = String::with_capacity(len);
    let mut spans = [None; 4];
    for (span, field) in spans.iter_mut().zip(&all) {
        if let Some(f) = field {
            let start = fields.len() as u32;
            fields.push_str(f);
            *span = Some((start, fields.len() as u32));
        }
    }
    (fields, spans)
}

/// Appends `body` as a line's `"notification":` (valid `json`), `"invalidJson":` or
/// `"invalidJsonBase64":` field; returns where the notification sits.
fn write_body(body: &[u8], json: bool, line: &mut Vec<u8>) -> Option<std::ops::Range<usize>> {
    if json {
        line.extend_from_slice(b"\"notification\":");
        let start = line.len();
        minify_into(body, line);
        return Some(start..line.len());
    }
    if let Ok(text) = std::str::from_utf8(body) {
        line.extend_from_slice(b"\"invalidJson\":");
        serde_json::to_writer(&mut *line, text).expect("writing to a Vec cannot fail");
    } else {
        line.extend_from_slice(b"\"invalidJsonBase64\":\"");
        line.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .as_bytes(),
        );
        line.push(b'"');
    }
    None
}

impl Record {
    /// Builds the log line for `body`, received at `received_at`.
    pub(crate) fn new(body: &[u8], received_at: SystemTime) -> Record {
        let mut buf = BodyBuffer::default();
        buf.extend_from_slice(body);
        buf.into_record(received_at)
    }

    /// A line `catchup --emit` recovered (already whole JSON, one line, no newline): logged as
    /// is; `--exec` without filters gets the whole line.
    pub(crate) fn recovered(mut line: Vec<u8>) -> Record {
        let end = line.len();
        line.push(b'\n');
        Record {
            fields: String::new(),
            spans: [None; 4],
            line,
            notification: Some(0..end),
        }
    }

    fn field(&self, i: usize) -> Option<&str> {
        self.spans[i].map(|(a, b)| &self.fields[a as usize..b as usize])
    }

    /// The notification's `uuid`, when it has one (used to drop redeliveries).
    pub(crate) fn uuid(&self) -> Option<&str> {
        self.field(UUID)
    }

    /// The notification's `event` (the filter that matched).
    pub(crate) fn event(&self) -> Option<&str> {
        self.field(EVENT)
    }

    /// The notification's `subscriptionId`.
    pub(crate) fn subscription_id(&self) -> Option<&str> {
        self.field(SUBSCRIPTION_ID)
    }

    /// The notification's `timestamp`, as sent.
    pub(crate) fn timestamp(&self) -> Option<&str> {
        self.field(TIMESTAMP)
    }

    /// The notification's JSON exactly as logged (one line, no newline); `None` for a body that
    /// is not JSON.
    pub(crate) fn notification(&self) -> Option<&[u8]> {
        self.notification.clone().map(|r| &self.line[r])
    }
}

/// Copies valid JSON without its insignificant whitespace, so it fits on one line. Strings are
/// copied byte for byte: JSON strings cannot hold a raw newline, so the result is one line.
fn minify_into(json: &[u8], out: &mut Vec<u8>) {
    // One copy, then compaction in place. Strings, most of a notification's bytes, move as whole
    // spans found with memchr; a byte-at-a-time loop over them cost ~15 instructions a byte.
    let start = out.len();
    out.extend_from_slice(json);
    minify_in_place(out, start);
}

/// [`minify_into`] for JSON already in `out` from `start` on.
fn minify_in_place(out: &mut Vec<u8>, start: usize) {
    let text = &mut out[start..];
    let (mut read, mut kept) = (0, 0);
    while read < text.len() {
        let b = text[read];
        read += 1;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        text[kept] = b;
        kept += 1;
        if b == b'"' {
            // A string: kept whole, escapes and all, through its closing quote.
            loop {
                let (end, closed) = match memchr::memchr2(b'"', b'\\', &text[read..]) {
                    Some(i) if text[read + i] == b'"' => (read + i + 1, true),
                    // An escape: the byte after the backslash is the string's too.
                    Some(i) => ((read + i + 2).min(text.len()), false),
                    None => (text.len(), true),
                };
                text.copy_within(read..end, kept);
                kept += end - read;
                read = end;
                if closed {
                    break;
                }
            }
        }
    }
    out.truncate(start + kept);
}

/// A line of the log, read: its fields borrowed from the bytes.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// When it was received (RFC 3339, UTC, milliseconds), as logged; empty if missing.
    pub received_at: Cow<'a, str>,
    /// What it holds.
    pub body: Body<'a>,
}

/// What a line holds.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    /// A notification, exactly as logged.
    Notification(&'a RawValue),
    /// A verified body that was not JSON: its text, or `None` when it was not UTF-8 either.
    Invalid(Option<Cow<'a, str>>),
    /// A record `catchup` recovered: where from (`{"source":…,…}`) and the record as sent.
    Recovered {
        /// `{"source":"message-sync","extensionId":"62000"}`.
        #[cfg_attr(not(feature = "ship"), allow(dead_code))]
        source: &'a RawValue,
        /// The platform's record.
        #[cfg_attr(not(any(feature = "ship", feature = "catchup")), allow(dead_code))]
        record: &'a RawValue,
    },
}

/// The line's fields as they are spelled in the file.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "receivedAt", borrow)]
    received_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    notification: Option<&'a RawValue>,
    #[serde(rename = "invalidJson", borrow)]
    invalid_json: Option<Cow<'a, str>>,
    #[serde(rename = "invalidJsonBase64", borrow)]
    invalid_base64: Option<&'a RawValue>,
    #[serde(borrow)]
    recovered: Option<&'a RawValue>,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
}

impl<'a> Line<'a> {
    /// Reads one line (without its `\n`); `None` when it is not a line of the event log.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Line<'a>> {
        let f: Fields<'a> = serde_json::from_slice(bytes).ok()?;
        let body = if let Some(n) = f.notification {
            Body::Notification(n)
        } else if let (Some(source), Some(record)) = (f.recovered, f.record) {
            Body::Recovered { source, record }
        } else if let Some(text) = f.invalid_json {
            Body::Invalid(Some(text))
        } else if f.invalid_base64.is_some() {
            Body::Invalid(None)
        } else {
            return None;
        };
        Some(Line {
            received_at: f.received_at.unwrap_or_default(),
            body,
        })
    }

    /// When it was received, parsed.
    #[cfg_attr(not(feature = "catchup"), allow(dead_code))]
    pub(crate) fn received(&self) -> Option<SystemTime> {
        parse_time(&self.received_at)
    }

    /// The notification's uuid, when the line is a notification that has one.
    pub(crate) fn uuid(&self) -> Option<String> {
        match self.body {
            Body::Notification(n) => Envelope::parse(n.get().as_bytes())?
                .uuid
                .map(Cow::into_owned),
            _ => None,
        }
    }
}

/// An RFC 3339 time as the log and the platform write them.
#[cfg_attr(not(any(feature = "catchup", feature = "connect")), allow(dead_code))]
pub(crate) fn parse_time(t: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(t)
        .or_else(|_| humantime::parse_rfc3339(t))
        .ok()
}

/// The line for `record` recovered from `source` (`scope` is `("extensionId", id)` or
/// `("accountId", id)`) at `received_at`, `\n` included.
#[cfg_attr(not(feature = "catchup"), allow(dead_code))]
pub(crate) fn recovered_line(
    received_at: SystemTime,
    source: &str,
    scope: (&str, &str),
    record: &RawValue,
) -> Vec<u8> {
    let raw = record.get().as_bytes();
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.extend_from_slice(b"{\"receivedAt\":\"");
    write!(out, "{}", humantime::format_rfc3339_millis(received_at))
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"\",\"recovered\":{\"source\":");
    serde_json::to_writer(&mut out, source).expect("a string serializes");
    out.push(b',');
    serde_json::to_writer(&mut out, scope.0).expect("a string serializes");
    out.push(b':');
    serde_json::to_writer(&mut out, scope.1).expect("a string serializes");
    out.extend_from_slice(b"},\"record\":");
    minify_into(raw, &mut out);
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    }

    fn parse(line: &[u8]) -> serde_json::Value {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn pretty_json_becomes_one_line_with_the_same_bytes_inside_strings() {
        let body = b"{\n  \"uuid\": \"a b\",\n  \"n\": 1.50,\n  \"s\": \"q\\\" \\n x\"\n}";
        let r = Record::new(body, at());
        let text = std::str::from_utf8(&r.line).unwrap();
        assert_eq!(
            text,
            "{\"receivedAt\":\"2023-11-14T22:13:20.123Z\",\"notification\":{\"uuid\":\"a b\",\"n\":1.50,\"s\":\"q\\\" \\n x\"}}\n"
        );
        assert_eq!(r.uuid(), Some("a b"));
        parse(&r.line);
        let r = Record::new(br#"{"event":"\/a","uuid":"u","timestamp":"t"}"#, at());
        assert_eq!(
            (r.uuid(), r.event(), r.subscription_id(), r.timestamp()),
            (Some("u"), Some("/a"), None, Some("t"))
        );
    }

    #[test]
    fn an_array_shorter_than_the_envelope_has_no_fields() {
        // serde reads a struct from an array too, field by field; one with fewer elements than
        // the envelope has fields was never an envelope: no uuid to drop a redelivery on, no
        // variables for --exec. (Two `["u1"]` bodies are two events, both logged.)
        for body in [
            &br#"[]"#[..],
            br#"["u1"]"#,
            br#"["u2","e"]"#,
            br#"["u3","e","s"]"#,
        ] {
            let r = Record::new(body, at());
            assert_eq!(
                (r.uuid(), r.event(), r.subscription_id(), r.timestamp()),
                (None, None, None, None),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(r.notification(), Some(body));
            let l = Line::parse(&r.line[..r.line.len() - 1]).unwrap();
            assert_eq!(l.uuid(), None);
        }
    }

    /// The byte-at-a-time compaction `minify_into` replaced, as the reference.
    fn minify_reference(json: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_string = false;
        let mut escaped = false;
        for &b in json {
            if in_string {
                out.push(b);
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                out.push(b);
                in_string = b == b'"';
            }
        }
        out
    }

    #[test]
    fn minifying_keeps_strings_and_drops_whitespace_between_tokens() {
        let alphabet = b" \t\n\r\"\\{}[]:,a1";
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for len in 0..2000usize {
            let input: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut out = b"prefix".to_vec();
            minify_into(&input, &mut out);
            assert_eq!(
                out[6..],
                minify_reference(&input)[..],
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn invalid_json_is_kept_as_a_string() {
        let body = b"{\"a\": 1,, ...}\n";
        let r = Record::new(body, at());
        let v = parse(&r.line);
        assert_eq!(v["invalidJson"].as_str().unwrap().as_bytes(), body);
        assert!(r.uuid().is_none());
    }

    #[test]
    fn non_utf8_is_kept_as_base64() {
        let body = b"\xff\xfe{";
        let r = Record::new(body, at());
        let v = parse(&r.line);
        let back = base64::engine::general_purpose::STANDARD
            .decode(v["invalidJsonBase64"].as_str().unwrap())
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn every_kind_of_line_reads_back_as_written() {
        let n = Record::new(br#"{"uuid":"u1","event":"/x"}"#, at());
        let l = Line::parse(&n.line[..n.line.len() - 1]).unwrap();
        assert_eq!(l.received_at, "2023-11-14T22:13:20.123Z");
        assert_eq!(l.received(), Some(at()));
        assert_eq!(l.uuid().as_deref(), Some("u1"));
        assert!(
            matches!(l.body, Body::Notification(b) if b.get() == r#"{"uuid":"u1","event":"/x"}"#)
        );

        let i = Record::new(b"not json", at());
        let l = Line::parse(&i.line[..i.line.len() - 1]).unwrap();
        assert!(matches!(l.body, Body::Invalid(Some(ref t)) if t == "not json"));
        let b = Record::new(b"\xff", at());
        let l = Line::parse(&b.line[..b.line.len() - 1]).unwrap();
        assert!(matches!(l.body, Body::Invalid(None)));

        let rec: Box<RawValue> = serde_json::from_str(r#"{ "id": 5, "x": "a b" }"#).unwrap();
        let r = recovered_line(at(), "message-sync", ("extensionId", "62000"), &rec);
        assert_eq!(
            std::str::from_utf8(&r).unwrap(),
            "{\"receivedAt\":\"2023-11-14T22:13:20.123Z\",\"recovered\":{\"source\":\"message-sync\",\"extensionId\":\"62000\"},\"record\":{\"id\":5,\"x\":\"a b\"}}\n"
        );
        let l = Line::parse(&r[..r.len() - 1]).unwrap();
        assert!(
            matches!(l.body, Body::Recovered { record, .. } if record.get() == r#"{"id":5,"x":"a b"}"#)
        );
        assert_eq!(l.uuid(), None);

        for not_ours in [&b"{}"[..], b"[1]", b"{\"receivedAt\":\"t\"}", b"x"] {
            assert!(Line::parse(not_ours).is_none());
        }
    }
}
