//! `ringhook check URL`: the platform's validation handshake, performed by us and judged
//! against the platform's limits. `register` runs the same probe before it creates a
//! subscription, so a dead tunnel is reported precisely instead of as `SUB-525`.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{self, Flags};
use crate::config::{self, Setting, Vars};
use crate::error::Error;
use crate::platform::{self, TrustRoots};
use crate::secret::VerificationToken;
use crate::webhook::{MAX_ANSWER_BYTES, TIME_LIMIT};

/// The most of an answer body we read; anything near this is far over the limit anyway.
const READ_LIMIT: u64 = 1024 * 1024;

/// What one handshake showed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
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
    pub fn summary(&self) -> String {
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

/// Performs the handshake against `url` as the platform would and judges the answer.
pub fn probe(
    url: &str,
    token: Option<&VerificationToken>,
    roots: &TrustRoots,
    timeout: Duration,
) -> Report {
    let validation = fresh_token();
    let agent = platform::agent(roots, timeout, timeout);
    let mut report = Report {
        url: url.to_string(),
        ok: false,
        status: None,
        echo: None,
        content_type: None,
        size: None,
        latency_ms: 0,
        problems: Vec::new(),
        hint: None,
    };
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
        Err(e) => {
            report.latency_ms = started.elapsed().as_millis();
            let (detail, tls) = platform::describe_transport(&e);
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
            return report;
        }
    };
    let body = resp
        .body_mut()
        .with_config()
        .limit(READ_LIMIT)
        .read_to_vec();
    report.latency_ms = started.elapsed().as_millis();
    let status = resp.status();
    report.status = Some(status.as_u16());
    // ureq hands over the parsed answer; rebuild its wire size from the parts.
    let head: usize = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .len()
        + resp
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.as_bytes().len() + 2)
            .sum::<usize>()
        + 2;
    report.size = match &body {
        Ok(b) => Some(head + b.len()),
        Err(_) => None,
    };
    let echoed = resp
        .headers()
        .get("validation-token")
        .is_some_and(|v| v.as_bytes() == validation.as_bytes());
    report.echo = Some(echoed);
    report.content_type = resp
        .headers()
        .get("content-type")
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
pub fn run(flags: &Flags, vars: &Vars) -> Result<(), Error> {
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
    if flags.switch(&cli::JSON) {
        println!(
            "{}",
            serde_json::to_string(&report).expect("plain struct serializes")
        );
    } else {
        print_report(&report);
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

fn print_report(r: &Report) {
    let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
    println!("handshake with {}", r.url);
    if let Some(status) = r.status {
        println!("  status        {status:<22} {}", mark(status == 200));
        let echo = r.echo.unwrap_or(false);
        println!(
            "  echo          {:<22} {}",
            if echo { "Validation-Token" } else { "none" },
            mark(echo)
        );
        let ct = r.content_type.as_deref().unwrap_or("(none)");
        let ct_ok = !r.problems.iter().any(|p| p.starts_with("content type"));
        println!("  content type  {:<22} {}", ct, mark(ct_ok));
        match r.size {
            Some(n) => println!(
                "  size          {:<22} {} (limit {MAX_ANSWER_BYTES})",
                format!("{n} bytes"),
                mark(n <= MAX_ANSWER_BYTES)
            ),
            None => println!("  size          {:<22} FAIL", "unreadable"),
        }
    }
    println!(
        "  latency       {:<22} {} (limit {} ms)",
        format!("{} ms", r.latency_ms),
        mark(r.status.is_some() && r.latency_ms <= TIME_LIMIT.as_millis()),
        TIME_LIMIT.as_millis()
    );
    if r.ok {
        println!("ok: the platform would accept this address");
    } else {
        for p in &r.problems {
            println!("  problem: {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        assert_ne!(fresh_token(), fresh_token());
        assert_eq!(fresh_token().len(), 36);
    }
}
