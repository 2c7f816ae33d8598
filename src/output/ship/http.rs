//! The HTTP sink: POST each notification, byte for byte as logged, one at a time (head-of-line
//! order), with `Idempotency-Key` and `Ringhook-Received-At`. Which answers count as delivered,
//! retried or dead-lettered is [`judge`], a pure function.

use std::io::Read;
use std::time::Duration;

use super::{Outgoing, SMALLEST_LIMIT, Sink, Verdict};
use crate::cli;
use crate::config::{Setting, Vars, secret_or_file};
use crate::error::Error;
use crate::https::TrustRoots;
use crate::secret::Secret;

/// An HTTP sink's settings.
#[derive(Debug, Clone)]
pub(crate) struct HttpConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// `RINGHOOK_SHIP_TOKEN`: sent as a bearer token.
    pub token: Option<Secret>,
}

impl HttpConfig {
    /// The URL `s` with the bearer token from `vars`.
    pub(crate) fn resolve(s: &Setting, vars: &Vars) -> Result<HttpConfig, Error> {
        Ok(HttpConfig {
            url: crate::config::parse_url(s)?,
            token: secret_or_file(vars, crate::secret::SHIP_TOKEN, cli::SHIP_TOKEN_FILE)?,
        })
    }
}

/// Longest `Retry-After` honoured; a sink asking for more is asked again after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What one POST's answer means, for a body of `size` bytes.
pub(crate) fn judge(status: u16, retry_after: Option<&str>, size: usize) -> Verdict {
    let after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    match status {
        200..=299 => Verdict::Delivered,
        429 | 503 => Verdict::Retry {
            after,
            reason: format!("HTTP {status}"),
        },
        // 408: the sink timed out reading us; it is the sink's trouble, not the record's.
        408 | 500..=599 => Verdict::Retry {
            after: None,
            reason: format!("HTTP {status}"),
        },
        // Answers about the sink's setup, not about this record: a token that expired
        // (401, 403), a URL that is wrong or moved (404, 405, 410, 3xx: redirects are not
        // followed). Every record would get the same, so dead-lettering would empty the whole
        // backlog into the dead-letter file at full speed; wait until the operator fixes it.
        300..=399 | 401 | 403 | 404 | 405 | 410 => Verdict::Retry {
            after: None,
            reason: format!(
                "HTTP {status}: the sink refuses every record (check the URL and RINGHOOK_SHIP_TOKEN)"
            ),
        },
        // Too large, said of a body smaller than any stream of notifications needs: the sink's
        // (or a proxy's) body limit, which every record would hit.
        413 if size < SMALLEST_LIMIT => Verdict::Retry {
            after: None,
            reason: format!(
                "HTTP 413 for {size} bytes: the sink's body limit is below {SMALLEST_LIMIT} bytes, \
                 which no stream of notifications fits (check its or its proxy's limit)"
            ),
        },
        _ => Verdict::DeadLetter {
            status,
            reason: format!("the sink refused it with HTTP {status}"),
        },
    }
}

/// POSTs to one URL.
pub(crate) struct HttpSink {
    agent: ureq::Agent,
    url: String,
    token: Option<Secret>,
    done: Vec<(u64, Verdict)>,
}

impl HttpSink {
    /// A sink for `url` with an optional bearer token.
    pub(crate) fn new(cfg: &HttpConfig, roots: &TrustRoots, timeout: Duration) -> Self {
        HttpSink {
            agent: crate::https::agent(roots, timeout, timeout),
            url: cfg.url.clone(),
            token: cfg.token.clone(),
            done: Vec::new(),
        }
    }
}

impl Sink for HttpSink {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn destination(&self, _record: &Outgoing<'_>) -> String {
        self.url.clone()
    }

    fn window(&self) -> usize {
        1
    }

    fn submit(&mut self, slot: u64, record: &Outgoing<'_>) -> Result<(), String> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", record.key)
            .header("ringhook-received-at", record.received_at);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {}", t.expose()));
        }
        let resp = req
            .send(record.payload)
            .map_err(|e| crate::https::describe_transport(&e).0)?;
        let verdict = judge(
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            record.payload.len(),
        );
        // Drain a bounded body so the connection can be reused.
        let mut body = resp.into_body();
        let _ = std::io::copy(&mut body.as_reader().take(64 << 10), &mut std::io::sink());
        self.done.push((slot, verdict));
        Ok(())
    }

    fn poll(&mut self, _wait: Duration, out: &mut Vec<(u64, Verdict)>) -> Result<(), String> {
        out.append(&mut self.done);
        Ok(())
    }

    fn reset(&mut self) {
        self.done.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_verdicts() {
        let s = Duration::from_secs;
        let retry = |after| Verdict::Retry {
            after,
            reason: String::new(),
        };
        let dead = Verdict::DeadLetter {
            status: 0,
            reason: String::new(),
        };
        let cases = [
            (200, None, Verdict::Delivered),
            (204, None, Verdict::Delivered),
            (429, Some("7"), retry(Some(s(7)))),
            (503, Some(" 2 "), retry(Some(s(2)))),
            (503, Some("Wed, 21 Oct 2026 07:28:00 GMT"), retry(None)),
            (429, Some("99999999"), retry(Some(MAX_RETRY_AFTER))),
            (500, Some("5"), retry(None)),
            (502, None, retry(None)),
            (408, None, retry(None)),
            (400, None, dead.clone()),
            (413, None, dead.clone()),
            (415, None, dead.clone()),
            (422, None, dead.clone()),
            (409, None, dead),
            // The sink's setup, not the record: an expired token or a wrong URL must not
            // dead-letter the whole backlog at full speed.
            (401, None, retry(None)),
            (403, None, retry(None)),
            (404, None, retry(None)),
            (405, None, retry(None)),
            (410, None, retry(None)),
            (301, None, retry(None)),
            (308, None, retry(None)),
            (307, None, retry(None)),
        ];
        for (status, after, want) in cases {
            let got = judge(status, after, SMALLEST_LIMIT);
            let same = match (&got, &want) {
                (Verdict::Retry { after: a, .. }, Verdict::Retry { after: b, .. }) => a == b,
                (Verdict::DeadLetter { status: s, .. }, Verdict::DeadLetter { .. }) => *s == status,
                (a, b) => a == b,
            };
            assert!(same, "{status} {after:?}: {got:?}");
        }
        // 413 for a body under 1 KiB: the sink's limit, which every record would hit.
        assert!(matches!(
            judge(413, None, SMALLEST_LIMIT - 1),
            Verdict::Retry { after: None, .. }
        ));
    }
}
