//! The receiver's invariant oracle: an exchange driven over arbitrary bytes, every answer and
//! every logged record checked against what the bytes frame. For the fuzz targets (`fuzz/`) and
//! the property tests only: compiled under `cfg(test)` and cargo-fuzz's `cfg(fuzzing)`, never
//! into the binary.

use std::net::SocketAddr;
use std::time::SystemTime;

use super::config::Limits;
use super::exchange::{BodyBudget, Ctx, Exchange, Step};
use super::metrics::Counters;
use super::policy::Policy;
use super::throttle::Throttle;
use crate::log::Record;

/// Feeds `input` to a fresh exchange in pieces whose sizes cycle through `cuts` (0 is read as 1),
/// acknowledges every record (alternately as logged and as failed), and returns every byte the
/// exchange answered. Panics when an invariant breaks: a hang (no progress), a malformed answer,
/// an answer over the platform's 1024 bytes, a log record that is not one JSON line, a 2xx to a
/// notification whose exact body is not what was logged, a 2xx to bytes that frame no request,
/// or an answer after ambiguous framing (the connection must close). What the input frames is
/// read independently by [`expected_requests`].
///
/// For the fuzz targets (`fuzz/`) and the property tests; not part of the receiver.
#[doc(hidden)]
pub fn check_invariants(input: &[u8], cuts: &[usize], policy: &Policy) -> Vec<u8> {
    let limits = Limits {
        max_body: policy.max_body,
        max_header: 4096,
        ..Limits::default()
    };
    let mut scratch = vec![0u8; 32 * 1024];
    let mut counters = Counters::default();
    let mut budget = BodyBudget {
        held: 0,
        max: policy.max_body,
    };
    let mut throttle = Throttle::default();
    let mut ex = Exchange::new(SocketAddr::from(([127, 0, 0, 1], 9)));
    let mut answers = Vec::new();
    // (index of the request, the record, acknowledged as logged)
    let mut logged: Vec<(usize, Record, bool)> = Vec::new();
    let (mut pos, mut cut, mut steps, mut ok) = (0usize, 0usize, 0usize, true);
    let bound = 1000 + 8 * input.len();
    loop {
        steps += 1;
        assert!(steps < bound, "no progress after {steps} steps");
        let mut ctx = Ctx {
            policy,
            limits: &limits,
            log_health: if ok {
                crate::input::serve::policy::Health::Ok
            } else {
                crate::input::serve::policy::Health::Unwritable
            },
            draining: false,
            scratch: &mut scratch,
            counters: &mut counters,
            budget: &mut budget,
            throttle: &mut throttle,
        };
        match ex.advance(&mut ctx) {
            Step::Flush => answers.append(&mut ex.output),
            Step::Read(limit) if pos < input.len() => {
                let want = cuts
                    .get(cut % cuts.len().max(1))
                    .copied()
                    .unwrap_or(usize::MAX);
                cut += 1;
                let room = limit.saturating_sub(ex.input.len()).max(1);
                let n = want.max(1).min(room).min(input.len() - pos);
                ex.input.extend_from_slice(&input[pos..pos + n]);
                pos += n;
            }
            Step::Read(_) => ex.eof = true,
            Step::Log(rec) => {
                assert_eq!(rec.line.last(), Some(&b'\n'));
                assert!(!rec.line[..rec.line.len() - 1].contains(&b'\n'), "one line");
                serde_json::from_slice::<&serde_json::value::RawValue>(&rec.line)
                    .expect("a record is JSON");
                ex.acknowledge(ok, &mut ctx);
                logged.push((check_answers(&answers).len(), rec, ok));
                ok = !ok;
            }
            Step::Metrics => ex.provide_metrics(b"m 1\n", &mut ctx),
            Step::Wait => panic!("Wait without a record in flight"),
            Step::Held => panic!("a body held back with no other body holding the budget"),
            Step::Close => break,
        }
    }
    ex.release(&mut budget);
    assert_eq!(budget.held, 0, "the budget is given back");
    let statuses = check_answers(&answers);
    let expected = expected_requests(input, policy);
    for (k, rec, ok) in &logged {
        let Some(Expected::Framed { body, .. }) = expected.get(*k) else {
            panic!("request {k} was logged, but the input frames no such request");
        };
        // The line after its time (up to the first comma): what the body became.
        let after_time =
            |line: &[u8]| line[line.iter().position(|&b| b == b',').unwrap()..].to_vec();
        let want = Record::new(body, SystemTime::UNIX_EPOCH).line;
        assert_eq!(
            String::from_utf8_lossy(&after_time(&rec.line)),
            String::from_utf8_lossy(&after_time(&want)),
            "request {k}: the record is not its body"
        );
        assert_eq!(statuses.get(*k), Some(&if *ok { 200 } else { 503 }));
    }
    for (k, &status) in statuses.iter().enumerate() {
        let success = (200..300).contains(&status);
        match expected.get(k) {
            None => assert!(
                !success,
                "{status} to request {k}, which the input does not frame"
            ),
            Some(Expected::Refused) => {
                assert!(
                    !success,
                    "{status} to request {k}, whose framing is ambiguous"
                );
                assert_eq!(statuses.len(), k + 1, "answers after ambiguous framing");
            }
            Some(Expected::Framed {
                notification,
                close,
                ..
            }) => {
                if *close {
                    assert_eq!(statuses.len(), k + 1, "answers after ambiguous framing");
                }
                if success && *notification {
                    assert!(
                        logged.iter().any(|(i, _, ok)| i == &k && *ok),
                        "{status} to notification {k}, which was not logged"
                    );
                }
            }
        }
    }
    answers
}

/// What the input holds at one request's place, by a strict reading of RFC 9112 §6.
#[derive(Debug)]
enum Expected {
    /// A request whose body is certain.
    Framed {
        /// The body, de-chunked.
        body: Vec<u8>,
        /// A `POST` to the webhook path without `Validation-Token`.
        notification: bool,
        /// Chunked beside a `Content-Length`: the connection must close after the answer.
        close: bool,
    },
    /// Framing that leaves the body's end in doubt: never a 2xx, and nothing after it.
    Refused,
}

/// The requests `input` frames, read one after another without the receiver's code: heads by
/// ureq-proto's parser (a head is a head), bodies by this function's own framing rules, up to
/// the first request that is incomplete or refused.
fn expected_requests(input: &[u8], policy: &Policy) -> Vec<Expected> {
    use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    let mut out = Vec::new();
    let mut rest = input;
    while let Ok(Some((used, req))) = ureq_proto::parser::try_parse_request::<128>(rest) {
        rest = &rest[used..];
        let h = req.headers();
        let http10 = req.version() == http::Version::HTTP_10;
        let method = req.method().clone();
        let bodiless = method == http::Method::HEAD || method == http::Method::CONNECT;
        let codings: Option<Vec<String>> = h
            .get_all(TRANSFER_ENCODING)
            .iter()
            .map(|v| v.to_str().ok().map(str::to_ascii_lowercase))
            .collect();
        let codings: Vec<String> = match codings {
            Some(c) => c
                .iter()
                .flat_map(|v| v.split(',').map(|c| c.trim().to_string()))
                .filter(|c| !c.is_empty())
                .collect(),
            None => vec!["?".into()],
        };
        let lengths: Vec<&[u8]> = h
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let length: Option<u64> = match lengths[..] {
            [] => None,
            [v] if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
                match std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()) {
                    Some(n) => Some(n),
                    None => break, // too large to be taken: 413 or 400, never a 2xx
                }
            }
            _ => {
                out.push(Expected::Refused);
                break;
            }
        };
        let te = h.contains_key(TRANSFER_ENCODING);
        let refused = (!http10 && h.get_all(HOST).iter().count() != 1)
            || (te && (http10 || codings != ["chunked"]))
            || (bodiless && (te || length.is_some_and(|n| n > 0)))
            || (http10 && !te && length.is_none() && method == http::Method::POST);
        if refused {
            out.push(Expected::Refused);
            break;
        }
        let body = if te {
            match dechunk(rest) {
                Some((body, n)) => {
                    rest = &rest[n..];
                    body
                }
                None => break,
            }
        } else {
            let n = length.unwrap_or(0);
            if n > rest.len() as u64 {
                break;
            }
            let (body, tail) = rest.split_at(n as usize);
            rest = tail;
            body.to_vec()
        };
        let close = te && length.is_some();
        out.push(Expected::Framed {
            body,
            notification: method == http::Method::POST
                && req.uri().path() == policy.path
                && !h.contains_key(crate::webhook::VALIDATION_TOKEN),
            close,
        });
        if close {
            break;
        }
    }
    out
}

/// A chunked body and the bytes it took, or `None` when it is incomplete or malformed.
fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = rest.len();
    let line = |r: &[u8]| r.windows(2).position(|w| w == b"\r\n");
    let mut body = Vec::new();
    loop {
        let end = line(rest)?;
        let size = &rest[..end];
        let size = &size[..size.iter().position(|&b| b == b';').unwrap_or(size.len())];
        let size = std::str::from_utf8(size).ok()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        rest = &rest[end + 2..];
        if n == 0 {
            break;
        }
        if rest.len() < n + 2 || &rest[n..n + 2] != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&rest[..n]);
        rest = &rest[n + 2..];
    }
    // Trailer lines, then the empty line.
    loop {
        let end = line(rest)?;
        rest = &rest[end + 2..];
        if end == 0 {
            return Some((body, start - rest.len()));
        }
    }
}

/// Every answer: `HTTP/1.1 NNN`, a head that ends, a `content-length` (but for 100 Continue), and
/// at most 1024 bytes in all. Returns the final answers' statuses, in order.
fn check_answers(mut rest: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("every answer's head ends")
            + 4;
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 "), "{head:?}");
        let status: u16 = head[9..12].parse().expect("a status code");
        let len = if status == 100 {
            0
        } else {
            statuses.push(status);
            head.lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("every answer has a content-length")
                .trim()
                .parse::<usize>()
                .expect("a number")
        };
        assert!(
            end + len <= crate::webhook::MAX_ANSWER_BYTES,
            "answer of {} bytes",
            end + len
        );
        rest = &rest[(end + len).min(rest.len())..];
    }
    statuses
}
