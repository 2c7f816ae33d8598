//! `ringhook check URL`: the platform's validation handshake, performed by us and judged
//! against the platform's limits. `register` runs the same probe before it creates a
//! subscription, so a dead tunnel is reported precisely instead of as `SUB-525`.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{self, Flags};
use crate::config::{self, Setting, Vars};
use crate::error::Error;
use crate::https::{self, TrustRoots};
use crate::secret::VerificationToken;
use crate::stdout;
use crate::webhook::{MAX_ANSWER_BYTES, TIME_LIMIT, VALIDATION_TOKEN};

/// The most of an answer body we read; anything near this is far over the limit anyway.
const READ_LIMIT: u64 = 1024 * 1024;

/// What one handshake showed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// The address probed.
    pub url: String,
    /// True when every limit was met.
    pub ok: bool,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// True when the answer carried our `Validation-Token` back.
    pub echo: Option<bool>,
    /// The answer's `Content-Type`.
    pub content_type: Option<String>,
    /// Status line, headers and body together, in bytes.
    pub size: Option<usize>,
    /// From sending the request to the last byte of the answer.
    pub latency_ms: u128,
    /// Each failed limit (or the reason no answer came), in words.
    pub problems: Vec<String>,
    /// What to do about the first problem.
    #[serde(skip)]
    pub hint: Option<String>,
}

impl Report {
    /// The first problems, for an error message.
    pub(crate) fn summary(&self) -> String {
        self.problems.join("; ")
    }
}

/// A validation token nobody can predict, so an echo proves the receiver read our request.
fn fresh_token() -> String {
    let a = std::collections::hash_map::RandomState::new().build_hasher();
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let (x, y) = (a.finish(), b.finish());
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        y >> 52,
        y & 0xffff_ffff_ffff
    )
}

impl Report {
    /// A report on `url` with nothing learnt yet.
    fn blank(url: &str, elapsed: Duration) -> Report {
        Report {
            url: url.to_string(),
            ok: false,
            status: None,
            echo: None,
            content_type: None,
            size: None,
            latency_ms: elapsed.as_millis(),
            problems: Vec::new(),
            hint: None,
        }
    }
}

/// Performs the handshake against `url` as the platform would and judges the answer.
pub(crate) fn probe(
    url: &str,
    token: Option<&VerificationToken>,
    roots: &TrustRoots,
    timeout: Duration,
) -> Report {
    let validation = fresh_token();
    let agent = https::agent(roots, timeout, timeout);
    let started = Instant::now();
    let mut req = agent
        .post(url)
        .header("Validation-Token", &validation)
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Verification-Token", t.expose());
    }
    let mut resp = match req.send_empty() {
        Ok(r) => r,
        Err(e) => return unanswered(url, &e, timeout, started.elapsed()),
    };
    let body = resp
        .body_mut()
        .with_config()
        .limit(READ_LIMIT)
        .read_to_vec();
    let answer = Handshake {
        validation: &validation,
        status: resp.status(),
        headers: resp.headers(),
        body: body.as_deref().ok(),
    };
    judge(url, &answer, started.elapsed())
}

/// Why no answer came, as a report.
fn unanswered(url: &str, e: &ureq::Error, timeout: Duration, elapsed: Duration) -> Report {
    let mut report = Report::blank(url, elapsed);
    let (detail, tls) = https::describe_transport(e);
    let (problem, hint) = if matches!(e, ureq::Error::Timeout(_)) {
        (
            format!("no answer within {} ms", timeout.as_millis()),
            "the receiver must answer well within 3000 ms: is it up, and the tunnel?",
        )
    } else if tls {
        (
            format!("TLS failed: {detail}"),
            "the platform needs a valid certificate chain (TLS 1.2+) on the public address",
        )
    } else {
        (
            format!("cannot connect: {detail}"),
            "is 'ringhook serve' running, and the tunnel or proxy in front of it up?",
        )
    };
    report.problems.push(problem);
    report.hint = Some(hint.into());
    report
}

/// What came back from the handshake, as the wire had it.
struct Handshake<'a> {
    /// The `Validation-Token` we sent, to be echoed.
    validation: &'a str,
    status: http::StatusCode,
    headers: &'a http::HeaderMap,
    /// The body, or `None` when it could not be read (or is over [`READ_LIMIT`]).
    body: Option<&'a [u8]>,
}

/// Judges an answer against the platform's rules: 200, the token echoed, JSON, at most
/// [`MAX_ANSWER_BYTES`] in all, within [`TIME_LIMIT`]. Pure.
fn judge(url: &str, answer: &Handshake<'_>, elapsed: Duration) -> Report {
    let mut report = Report::blank(url, elapsed);
    let status = answer.status;
    report.status = Some(status.as_u16());
    // ureq hands over the parsed answer; rebuild its wire size from the parts.
    let head: usize = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .len()
        + answer
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.as_bytes().len() + 2)
            .sum::<usize>()
        + 2;
    report.size = answer.body.map(|b| head + b.len());
    let echoed = answer
        .headers
        .get(VALIDATION_TOKEN)
        .is_some_and(|v| v.as_bytes() == answer.validation.as_bytes());
    report.echo = Some(echoed);
    report.content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let mut hints: Vec<&str> = Vec::new();
    if status.as_u16() != 200 {
        report
            .problems
            .push(format!("status {} (want 200)", status.as_u16()));
        hints.push(match status.as_u16() {
            403 => {
                "403: the path is wrong, or the receiver's verification token differs from WEBHOOK_VERIFICATION_TOKEN"
            }
            404 => "404: is the path right (serve's --path / WEBHOOK_PATH)?",
            502..=504 => "the proxy or tunnel is up but the receiver behind it is not",
            _ => "the receiver must answer the handshake with 200",
        });
    }
    if !echoed {
        report
            .problems
            .push("Validation-Token not echoed".to_string());
        hints.push(
            "the answer must carry the request's Validation-Token header back (else SUB-520)",
        );
    }
    let json = report.content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        report.problems.push(format!(
            "content type {} (want application/json)",
            report.content_type.as_deref().unwrap_or("missing")
        ));
        hints.push("answer with Content-Type: application/json, even with no body (else SUB-525)");
    }
    match report.size {
        Some(n) if n <= MAX_ANSWER_BYTES => {}
        Some(n) => {
            report.problems.push(format!(
                "answer of {n} bytes (limit {MAX_ANSWER_BYTES}, status line and headers included)"
            ));
            hints.push("the whole answer must fit in 1024 bytes: send no body");
        }
        None => {
            report.problems.push(format!(
                "answer body unreadable or over {READ_LIMIT} bytes (limit {MAX_ANSWER_BYTES})"
            ));
            hints.push("the whole answer must fit in 1024 bytes: send no body");
        }
    }
    if report.latency_ms > TIME_LIMIT.as_millis() {
        report.problems.push(format!(
            "answered in {} ms (limit {})",
            report.latency_ms,
            TIME_LIMIT.as_millis()
        ));
        hints.push("the receiver must answer well within 3000 ms");
    }
    report.ok = report.problems.is_empty();
    report.hint = hints.first().map(|h| h.to_string());
    report
}

/// `ringhook check URL`.
pub(crate) fn run(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let url = config::parse_url(&Setting {
        text: flags.positional.first().cloned().unwrap_or_default(),
        origin: "URL".into(),
    })?;
    let timeout = match flags.value(&cli::TIMEOUT) {
        Some(t) => {
            let s = Setting {
                text: t.into(),
                origin: cli::TIMEOUT.name.into(),
            };
            let d = config::parse_duration(&s)?;
            if d.is_zero() {
                return Err(config::invalid(&s, "must be more than zero"));
            }
            d
        }
        None => TIME_LIMIT,
    };
    let (token, _) = config::verification_token(flags, vars)?;
    let roots = config::trust_roots(vars)?;
    let report = probe(&url, token.as_ref(), &roots, timeout);
    let text = if flags.switch(&cli::JSON) {
        let mut line = serde_json::to_string(&report).expect("plain struct serializes");
        line.push('\n');
        line
    } else {
        render(&report)
    };
    // The verdict is the exit status: a reader gone from stdout does not change it.
    match stdout::print(&text) {
        Ok(()) | Err(Error::StdoutClosed) => {}
        Err(e) => return Err(e),
    }
    if report.ok {
        Ok(())
    } else {
        let message = format!("handshake with {url} failed: {}", report.summary());
        Err(match report.hint {
            Some(h) => Error::runtime_hint(message, h),
            None => Error::runtime(message),
        })
    }
}

/// The report as `check` prints it for people.
fn render(r: &Report) -> String {
    let mut out = String::new();
    let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
    let _ = writeln!(out, "handshake with {}", r.url);
    if let Some(status) = r.status {
        let _ = writeln!(out, "  status        {status:<22} {}", mark(status == 200));
        let echo = r.echo.unwrap_or(false);
        let _ = writeln!(
            out,
            "  echo          {:<22} {}",
            if echo { "Validation-Token" } else { "none" },
            mark(echo)
        );
        let ct = r.content_type.as_deref().unwrap_or("(none)");
        let ct_ok = !r.problems.iter().any(|p| p.starts_with("content type"));
        let _ = writeln!(out, "  content type  {:<22} {}", ct, mark(ct_ok));
        let _ = match r.size {
            Some(n) => writeln!(
                out,
                "  size          {:<22} {} (limit {MAX_ANSWER_BYTES})",
                format!("{n} bytes"),
                mark(n <= MAX_ANSWER_BYTES)
            ),
            None => writeln!(out, "  size          {:<22} FAIL", "unreadable"),
        };
    }
    let _ = writeln!(
        out,
        "  latency       {:<22} {} (limit {} ms)",
        format!("{} ms", r.latency_ms),
        mark(r.status.is_some() && r.latency_ms <= TIME_LIMIT.as_millis()),
        TIME_LIMIT.as_millis()
    );
    if r.ok {
        out.push_str("ok: the platform would accept this address\n");
    } else {
        for p in &r.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = "0f0e0d0c-0b0a-4098-a765-432100112233";

    /// Judges an answer built from parts, as `probe` would have received it.
    fn judged(status: u16, headers: &[(&str, &str)], body: Option<&[u8]>, ms: u64) -> Report {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let answer = Handshake {
            validation: SENT,
            status: http::StatusCode::from_u16(status).unwrap(),
            headers: &map,
            body,
        };
        judge(
            "https://x.example/webhook",
            &answer,
            Duration::from_millis(ms),
        )
    }

    #[test]
    fn judge_applies_every_platform_rule() {
        const JSON: (&str, &str) = ("content-type", "application/json");
        const ECHO: (&str, &str) = ("validation-token", SENT);
        let big = vec![b'x'; 1000];
        // (what, status, headers, body, ms, the problems' beginnings, the hint's beginning)
        type Case<'a> = (
            &'a str,
            u16,
            &'a [(&'a str, &'a str)],
            Option<&'a [u8]>,
            u64,
            &'a [&'a str],
            &'a str,
        );
        let cases: &[Case] = &[
            ("good", 200, &[ECHO, JSON], Some(b""), 20, &[], ""),
            (
                "charset is fine",
                200,
                &[ECHO, ("content-type", "Application/JSON; charset=utf-8")],
                Some(b"{}"),
                20,
                &[],
                "",
            ),
            (
                "wrong token",
                403,
                &[JSON],
                Some(b""),
                20,
                &["status 403", "Validation-Token not echoed"],
                "403: the path is wrong",
            ),
            (
                "no such path",
                404,
                &[ECHO, JSON],
                Some(b""),
                20,
                &["status 404"],
                "404:",
            ),
            (
                "tunnel up, receiver down",
                502,
                &[ECHO, JSON],
                Some(b""),
                20,
                &["status 502"],
                "the proxy or tunnel",
            ),
            (
                "someone else's token",
                200,
                &[("validation-token", "other"), JSON],
                Some(b""),
                20,
                &["Validation-Token not echoed"],
                "the answer must carry",
            ),
            (
                "no content type",
                200,
                &[ECHO],
                Some(b""),
                20,
                &["content type missing (want application/json)"],
                "answer with Content-Type",
            ),
            (
                "text",
                200,
                &[ECHO, ("content-type", "text/plain")],
                Some(b""),
                20,
                &["content type text/plain"],
                "answer with Content-Type",
            ),
            (
                "too big",
                200,
                &[ECHO, JSON],
                Some(&big),
                20,
                &["answer of 1107 bytes (limit 1024"],
                "the whole answer must fit",
            ),
            (
                "unreadable",
                200,
                &[ECHO, JSON],
                None,
                20,
                &["answer body unreadable"],
                "the whole answer must fit",
            ),
            (
                "slow",
                200,
                &[ECHO, JSON],
                Some(b""),
                3001,
                &["answered in 3001 ms (limit 3000)"],
                "the receiver must answer well within",
            ),
        ];
        for (what, status, headers, body, ms, problems, hint) in cases {
            let r = judged(*status, headers, *body, *ms);
            assert_eq!(r.ok, problems.is_empty(), "{what}: {:?}", r.problems);
            assert_eq!(r.problems.len(), problems.len(), "{what}: {:?}", r.problems);
            for (got, want) in r.problems.iter().zip(problems.iter()) {
                assert!(got.starts_with(want), "{what}: {got:?} is not {want:?}");
            }
            match &r.hint {
                Some(h) => assert!(h.starts_with(hint) && !hint.is_empty(), "{what}: {h}"),
                None => assert!(hint.is_empty(), "{what}: no hint"),
            }
            assert_eq!(r.status, Some(*status), "{what}");
            assert_eq!(r.latency_ms, u128::from(*ms), "{what}");
        }
        // The wire size: status line, each header line, the blank line, the body.
        let r = judged(200, &[ECHO, JSON], Some(b""), 1);
        assert_eq!(r.size, Some(17 + 56 + 32 + 2));
        assert_eq!(r.echo, Some(true));
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn the_report_reads_as_a_checklist() {
        let ok = judged(
            200,
            &[
                ("validation-token", SENT),
                ("content-type", "application/json"),
            ],
            Some(b""),
            12,
        );
        assert_eq!(
            render(&ok),
            "handshake with https://x.example/webhook
  status        200                    ok
  echo          Validation-Token       ok
  content type  application/json       ok
  size          107 bytes              ok (limit 1024)
  latency       12 ms                  ok (limit 3000 ms)
ok: the platform would accept this address
"
        );
        let bad = judged(404, &[], Some(b""), 5);
        let text = render(&bad);
        assert!(
            text.contains("  status        404                    FAIL\n"),
            "{text}"
        );
        assert!(
            text.contains("  problem: status 404 (want 200)\n"),
            "{text}"
        );
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(fresh_token(), fresh_token());
        assert_eq!(fresh_token().len(), 36);
    }
}
