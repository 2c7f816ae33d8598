//! What `catchup` knows of platform records, and what the log already holds of them. The
//! recovered line itself is written by `crate::log::line::recovered_line`.
//!
//! Dedupe is derived from the log itself, so it survives restarts and needs no second store: a
//! message is in the log when a notification carried its id (a string there, a number in the
//! message store: both are compared as text) or a recovered line holds it; a call when a
//! recovered line holds its id, or a telephony or presence notification named its session.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::log::line::{Body, Line};
use crate::oplog::Escaped;

/// The fields of a message or call-log record that `catchup` reads; the record is kept whole.
/// (A plain `Value`, not a derived struct: the binary already carries its parser.)
#[derive(Debug, Default)]
pub(crate) struct RecordHead(Value);

/// An id as text: `606090030016` whether it came as a number or a string.
pub(crate) fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl RecordHead {
    /// Reads the head of `raw` (a record that is not an object reads as empty).
    pub(crate) fn parse(raw: &RawValue) -> RecordHead {
        RecordHead(serde_json::from_slice(raw.get().as_bytes()).unwrap_or_default())
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    /// The id (a number in the message store, a string in the call log) as text.
    pub(crate) fn id(&self) -> Option<String> {
        id_text(self.0.get("id"))
    }

    /// Message: `SMS`, `VoiceMail`, …; call: `Voice`, `Fax`.
    pub(crate) fn kind(&self) -> &str {
        self.text("type").unwrap_or("")
    }

    /// `Inbound` / `Outbound`.
    pub(crate) fn direction(&self) -> &str {
        self.text("direction").unwrap_or("")
    }

    /// The record's time: creation (message) or start (call).
    pub(crate) fn time(&self) -> Option<SystemTime> {
        crate::log::line::parse_time(self.text("creationTime").or(self.text("startTime"))?)
    }

    /// False for what the sync APIs return about deleted records (id and availability only).
    pub(crate) fn alive(&self) -> bool {
        self.0.get("deleted").and_then(Value::as_bool) != Some(true)
            && self.text("availability").is_none_or(|a| a == "Alive")
    }

    /// Call (account call log): whose call it is.
    pub(crate) fn extension(&self) -> Option<String> {
        id_text(self.0.get("extension")?.get("id"))
    }

    /// Call: its session ids (telephony, legacy), as notifications name them.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = &str> {
        ["telephonySessionId", "sessionId"]
            .into_iter()
            .filter_map(|k| self.text(k))
    }
}

/// What the log already holds, read from its end back to a point in time: keys `m:` message
/// ids, `c:` call-log record ids, `s:` session ids (one set, one hash table's code).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    keys: HashSet<String>,
    /// When the newest notification (not a recovered line) was received.
    pub last_notification: Option<SystemTime>,
}

impl Seen {
    /// Remembers `key` (`m:606090030016`); false when it was there already.
    pub(crate) fn insert(&mut self, key: String) -> bool {
        self.keys.insert(key)
    }

    /// True when the log holds the message `id`.
    pub(crate) fn has_message(&self, id: &str) -> bool {
        self.keys.contains(&format!("m:{id}"))
    }

    /// True when the call `head` (id `id`) is in the log, itself or through its session.
    pub(crate) fn has_call(&self, id: &str, head: &RecordHead) -> bool {
        self.keys.contains(&format!("c:{id}"))
            || head
                .sessions()
                .any(|s| self.keys.contains(&format!("s:{s}")))
    }

    fn sessions_of(&mut self, v: &Value) {
        for k in ["telephonySessionId", "sessionId"] {
            if let Some(s) = v.get(k).and_then(Value::as_str) {
                self.keys.insert(format!("s:{s}"));
            }
        }
    }

    fn take(&mut self, line: &[u8]) -> Option<SystemTime> {
        let logged = Line::parse(line)?;
        let at = logged.received();
        let n: Value = match logged.body {
            Body::Recovered { record, .. } => {
                let r: Value = serde_json::from_str(record.get()).ok()?;
                let call = r.get("startTime").is_some();
                if call {
                    self.sessions_of(&r);
                }
                if let Some(id) = id_text(r.get("id")) {
                    self.keys
                        .insert(format!("{}:{id}", if call { 'c' } else { 'm' }));
                }
                return at;
            }
            Body::Notification(n) => serde_json::from_str(n.get()).ok()?,
            Body::Invalid(_) => return at,
        };
        if self.last_notification.is_none() {
            self.last_notification = at;
        }
        let event = n.get("event").and_then(Value::as_str).unwrap_or("");
        let body = n.get("body")?;
        let path = event.split('?').next().unwrap_or("");
        if path.contains("/message-store") || path.ends_with("/voicemail") || path.ends_with("/fax")
        {
            let mut ids: Vec<Option<String>> = vec![id_text(body.get("id"))];
            // `…/message-store` events list new ids (int64) per type, where the spec has them.
            for c in body
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let new = c.get("newMessageIds").and_then(Value::as_array);
                ids.extend(new.into_iter().flatten().map(|id| id_text(Some(id))));
            }
            for id in ids.into_iter().flatten() {
                self.keys.insert(format!("m:{id}"));
            }
        } else if path.ends_with("/telephony/sessions") || path.ends_with("/presence") {
            self.sessions_of(body);
            let calls = body.get("activeCalls").and_then(Value::as_array);
            for c in calls.into_iter().flatten() {
                self.sessions_of(c);
            }
        }
        at
    }
}

const BLOCK: u64 = 64 * 1024;

/// Reads the log at `file` backwards from its last whole line until a line received before
/// `back_to` (or the start), collecting what [`Seen`] holds. With `first_notification`, stops at
/// the newest notification instead (all that a first run needs to know before fetching).
#[cfg(test)]
pub(crate) fn scan(
    file: &File,
    back_to: Option<SystemTime>,
    first_notification: bool,
) -> io::Result<Seen> {
    let mut seen = Seen::default();
    scan_into(&mut seen, file, back_to, first_notification)?;
    Ok(seen)
}

/// [`scan`] of the log at `path` (open as `file`), then, while the point is not reached, of its
/// rotated copies newest first (`crate::log::rotated`): after `mv events.jsonl events.jsonl.1`,
/// what the copy holds is still in the log. A copy that cannot be read is skipped with a line.
pub(crate) fn scan_with_copies(
    path: &Path,
    file: &File,
    back_to: Option<SystemTime>,
    first_notification: bool,
) -> io::Result<Seen> {
    let mut seen = Seen::default();
    if scan_into(&mut seen, file, back_to, first_notification)? {
        return Ok(seen);
    }
    for copy in crate::log::rotated::copies(path).iter().rev() {
        let read = File::open(&copy.path)
            .and_then(|f| scan_into(&mut seen, &f, back_to, first_notification));
        match read {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(
                "cannot read the rotated copy {} of the event log: {e}; not deduplicating against it",
                Escaped(&copy.path.to_string_lossy())
            ),
        }
    }
    Ok(seen)
}

/// Adds what `file` holds to `seen`, backwards; true when it reached where the scan stops.
fn scan_into(
    seen: &mut Seen,
    mut file: &File,
    back_to: Option<SystemTime>,
    first_notification: bool,
) -> io::Result<bool> {
    let mut pos = file.metadata()?.len();
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.append(&mut carry);
        pos = start;
        let mut lines: Vec<&[u8]> = chunk.split(|&b| b == b'\n').collect();
        // After the last newline: nothing (the carry ends in one), or at the file's end a write
        // in progress or a torn tail, not a line yet.
        lines.pop();
        // The first piece may be the tail of a line that started in an earlier block.
        if pos > 0 && !lines.is_empty() {
            carry = lines.remove(0).to_vec();
            carry.push(b'\n');
        }
        for l in lines.into_iter().rev().filter(|l| !l.is_empty()) {
            let at = seen.take(l);
            if first_notification && seen.last_notification.is_some() {
                return Ok(true);
            }
            if let (Some(at), Some(b)) = (at, back_to) {
                if at < b {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::line::recovered_line as line;
    use std::io::Write;

    fn at() -> SystemTime {
        humantime::parse_rfc3339("2026-11-23T04:55:00.123Z").unwrap()
    }

    /// A line `serve` logs for `body` received at `time` (through the log's own writer).
    fn notification(time: &str, body: &str) -> Vec<u8> {
        crate::log::Record::new(body.as_bytes(), humantime::parse_rfc3339(time).unwrap()).line
    }

    /// A line `catchup` writes for `record` from `source`.
    fn recovered(time: &str, source: &str, scope: (&str, &str), record: &str) -> Vec<u8> {
        let raw: Box<RawValue> = serde_json::from_str(record).unwrap();
        line(humantime::parse_rfc3339(time).unwrap(), source, scope, &raw)
    }

    #[test]
    fn the_line_keeps_the_record_as_sent_on_one_line() {
        let raw: Box<RawValue> = serde_json::from_str(
            "{\n  \"id\" : 5475920007, \"subject\": \"a  b\\\" \\n\",\n \"n\": 1.50 }",
        )
        .unwrap();
        let l = line(at(), "message-sync", ("extensionId", "62000"), &raw);
        let text = String::from_utf8(l.clone()).unwrap();
        assert!(
            text.ends_with(
                ",\"record\":{\"id\":5475920007,\"subject\":\"a  b\\\" \\n\",\"n\":1.50}}\n"
            ),
            "{text}"
        );
        let mut seen = Seen::default();
        seen.take(&l[..l.len() - 1]);
        assert!(seen.has_message("5475920007"));
        assert!(seen.last_notification.is_none());
    }

    #[test]
    fn the_sample_records_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sync");
        let raw = std::fs::read(dir.join("widgets-fixture-call-log-sync-fsync.json"))
            .expect("tests/data/sync");
        #[derive(serde::Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            records: Vec<&'a RawValue>,
        }
        let page: Page = serde_json::from_slice(&raw).unwrap();
        let h = RecordHead::parse(page.records[0]);
        assert_eq!(h.id().as_deref(), Some("QwVrCHkfAA9NQA"));
        assert!(h.alive() && h.time().is_some());
        assert_eq!(
            h.sessions().collect::<Vec<_>>(),
            ["s-a4a04391ca1cfz195a2985337z1340ea0000", "3164985006"]
        );
        let raw = std::fs::read(dir.join("widgets-fixture-message-sync-fsync.json")).unwrap();
        let page: Page = serde_json::from_slice(&raw).unwrap();
        let h = RecordHead::parse(page.records[2]);
        assert_eq!(h.id().as_deref(), Some("5475920007"));
        assert_eq!((h.kind(), h.direction()), ("SMS", "Outbound"));
        let gone: Box<RawValue> =
            serde_json::from_str(r#"{"id":1,"availability":"Purged"}"#).unwrap();
        assert!(!RecordHead::parse(&gone).alive());
    }

    #[test]
    fn the_scan_reads_notifications_and_recovered_lines_back_to_a_time() {
        let mut f = tempfile::tempfile().unwrap();
        let sms = "/restapi/v1.0/account/1/extension/2/message-store/instant?type=SMS";
        let lines = [
            notification(
                "2026-11-23T00:30:00Z",
                &format!(r#"{{"event":"{sms}","body":{{"id":"000"}}}}"#),
            ),
            notification(
                "2026-11-23T01:00:00Z",
                &format!(r#"{{"event":"{sms}","body":{{"id":"111"}}}}"#),
            ),
            notification(
                "2026-11-23T03:00:00Z",
                r#"{"event":"/restapi/v1.0/account/1/extension/2/voicemail","body":{"id":"222"}}"#,
            ),
            notification(
                "2026-11-23T03:01:00Z",
                r#"{"event":"/restapi/v1.0/glip/posts","body":{"id":"999"}}"#,
            ),
            notification(
                "2026-11-23T03:02:00Z",
                r#"{"event":"/restapi/v1.0/account/1/extension/2/message-store","body":{"changes":[{"type":"SMS","newCount":1,"newMessageIds":[333]}]}}"#,
            ),
            notification(
                "2026-11-23T03:03:00Z",
                r#"{"event":"/restapi/v1.0/account/1/extension/2/telephony/sessions","body":{"sessionId":"425","telephonySessionId":"s-a6"}}"#,
            ),
            notification("2026-11-23T03:04:00Z", "{"),
            recovered(
                "2026-11-23T04:00:00Z",
                "call-log-sync",
                ("accountId", "1"),
                r#"{"id":"IVW","startTime":"2026-11-23T02:00:00.000Z","telephonySessionId":"s-b7"}"#,
            ),
            recovered(
                "2026-11-23T04:00:00Z",
                "message-sync",
                ("extensionId", "2"),
                r#"{"id":444,"creationTime":"2026-11-23T02:00:00.000Z"}"#,
            ),
        ];
        for l in &lines {
            f.write_all(l).unwrap();
        }
        // A torn tail: a line being written, not a line yet.
        f.write_all(&notification("2026-11-23T05:00:00Z", "{}")[..30])
            .unwrap();
        let seen = scan(
            &f,
            Some(humantime::parse_rfc3339("2026-11-23T02:00:00Z").unwrap()),
            false,
        )
        .unwrap();
        let mut keys: Vec<&str> = seen.keys.iter().map(String::as_str).collect();
        keys.sort();
        // The first line older than the time is read, and nothing before it; no glip post.
        assert_eq!(
            keys,
            [
                "c:IVW", "m:111", "m:222", "m:333", "m:444", "s:425", "s:s-a6", "s:s-b7"
            ]
        );
        assert_eq!(
            seen.last_notification,
            Some(humantime::parse_rfc3339("2026-11-23T03:03:00Z").unwrap())
        );
        let first = scan(&f, None, true).unwrap();
        assert!(!first.has_message("333") && first.keys.contains("s:s-a6"));
        let all = scan(&f, None, false).unwrap();
        assert!(all.has_message("000"));
    }

    #[test]
    fn the_scan_reads_across_blocks() {
        let mut f = tempfile::tempfile().unwrap();
        for i in 0..3000 {
            let body = format!(
                r#"{{"event":"/restapi/v1.0/account/1/extension/2/voicemail","body":{{"id":"{i}","pad":"{}"}}}}"#,
                "x".repeat(100)
            );
            f.write_all(&notification("2026-11-23T01:00:00Z", &body))
                .unwrap();
        }
        let seen = scan(&f, None, false).unwrap();
        assert_eq!(seen.keys.len(), 3000);
    }
}
