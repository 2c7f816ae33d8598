//! The NATS JetStream sink: HPUB each notification with `Nats-Msg-Id: <uuid>` and a reply
//! subject of our own inbox, and count it delivered when the stream's acknowledgement comes back
//! (`{"stream":…,"seq":…}`, duplicates included). A window of publishes is in flight; the
//! reply subject's last token is the record's slot, so acknowledgements find their publish, and
//! one for no publish in flight (a duplicate, a stranger) is ignored. Each publish must be
//! acknowledged within the timeout counted from when it was sent.
//! No responders (status 503), a JetStream error, `-ERR`, a silent server or a lost connection
//! are failures: the driver resets the connection and publishes the unacknowledged records
//! again, which the stream's duplicate window turns into no-ops where they had landed. The
//! JetStream errors no retry can cure (the message too large for the stream, an expectation
//! header the stream does not meet) dead-letter the record instead, unless a server or stream
//! says a message under 1 KiB is too large: that is its setup's fault, and every record would
//! follow, so it is a failure like the others. While idle, the server's
//! PINGs are answered, so a quiet spell does not cost the connection.

pub(crate) mod client;
pub(crate) mod nkey;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Outgoing, SMALLEST_LIMIT, Sink, Verdict};
use crate::cli;
use crate::config::{Setting, Vars, secret_or_file};
use crate::error::Error;
use crate::https::TrustRoots;
use crate::oplog::Escaped;
use crate::secret::Secret;
use client::{Auth, NatsConn, ServerOp, status_of};

/// NATS credentials, from the environment, the env file or a credential file only.
#[derive(Debug, Clone, Default)]
pub(crate) struct NatsAuth {
    /// `NATS_USER`.
    pub user: Option<Secret>,
    /// `NATS_PASSWORD`.
    pub pass: Option<Secret>,
    /// `NATS_TOKEN`.
    pub token: Option<Secret>,
    /// `NATS_CREDS`: a `.creds` file or an nkey seed file, checked at start-up.
    pub creds: Option<nkey::Creds>,
    /// Its path, to read it again at each connect.
    pub creds_path: Option<std::path::PathBuf>,
}

/// A NATS sink's settings: `nats://HOST:PORT/SUBJECT` or `tls://…`, and how to log in.
#[derive(Debug, Clone)]
pub(crate) struct NatsConfig {
    /// TLS from the start (`tls://`).
    pub tls: bool,
    /// `HOST:PORT`.
    pub addr: String,
    /// The subject, possibly holding `{event}`.
    pub subject: String,
    /// How to log in.
    pub auth: NatsAuth,
}

impl NatsConfig {
    /// Checks what follows `nats://` or `tls://` (`scheme`): `HOST:PORT/SUBJECT`.
    pub(crate) fn parse_url(s: &Setting, scheme: &str, rest: &str) -> Result<NatsConfig, Error> {
        let bad =
            |why: &str| Error::Config(format!("invalid {}: '{}': {why}", s.origin, s.text.trim()));
        let (addr, subject) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected nats://HOST:PORT/SUBJECT"))?;
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(bad(
                "expected HOST:PORT, such as nats://127.0.0.1:4222/SUBJECT",
            ));
        }
        let probe = subject.replace("{event}", "x");
        let valid = !probe.is_empty()
            && probe.split('.').all(|tok| {
                !tok.is_empty()
                    && tok != "*"
                    && tok != ">"
                    && tok
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
            });
        if !valid {
            return Err(bad(
                "the subject must be dot-separated tokens without spaces or wildcards, such as ringcentral.{event}",
            ));
        }
        Ok(NatsConfig {
            tls: scheme == "tls",
            addr: addr.to_string(),
            subject: subject.to_string(),
            auth: NatsAuth::default(),
        })
    }

    /// The sink `s` names, with its credentials from `vars`.
    pub(crate) fn resolve(
        s: &Setting,
        scheme: &str,
        rest: &str,
        vars: &Vars,
    ) -> Result<NatsConfig, Error> {
        Ok(NatsConfig {
            auth: auth(vars)?,
            ..NatsConfig::parse_url(s, scheme, rest)?
        })
    }
}

/// NATS credentials: one way to log in, each file read and checked.
fn auth(vars: &Vars) -> Result<NatsAuth, Error> {
    let creds_path = vars.get(cli::NATS_CREDS);
    let nats = NatsAuth {
        user: vars.get(cli::NATS_USER).map(|s| Secret::new(s.text)),
        pass: secret_or_file(vars, crate::secret::NATS_PASSWORD, cli::NATS_PASSWORD_FILE)?,
        token: secret_or_file(vars, crate::secret::NATS_TOKEN, cli::NATS_TOKEN_FILE)?,
        creds: match &creds_path {
            None => None,
            Some(f) => Some(
                nkey::Creds::read(std::path::Path::new(&f.text))
                    .map_err(|e| Error::Config(format!("{} {}: {e}", f.origin, f.text)))?,
            ),
        },
        creds_path: creds_path.map(|f| std::path::PathBuf::from(f.text)),
    };
    let ways = [
        nats.user.is_some(),
        nats.token.is_some(),
        nats.creds.is_some(),
    ];
    if ways.iter().filter(|w| **w).count() > 1 {
        return Err(Error::Config(
            "NATS_USER/NATS_PASSWORD, NATS_TOKEN and NATS_CREDS are ways to log in: give one"
                .into(),
        ));
    }
    if nats.user.is_some() != nats.pass.is_some() {
        return Err(Error::Config(
            "NATS_USER and NATS_PASSWORD go together".into(),
        ));
    }
    Ok(nats)
}

/// Publishes to one JetStream stream through one server.
pub(crate) struct NatsSink {
    addr: String,
    tls: bool,
    subject: String,
    auth: Auth,
    roots: TrustRoots,
    timeout: Duration,
    window: usize,
    /// `NATS_CREDS`, read again before each connect (a renewed user JWT is taken up).
    creds_path: Option<std::path::PathBuf>,
    conn: Option<NatsConn>,
    inbox: String,
    /// The publishes awaiting their acknowledgement: slot → when it was sent and its size
    /// (slots grow with time on one connection, so the first is the oldest).
    inflight: BTreeMap<u64, (Instant, usize)>,
    done: Vec<(u64, Verdict)>,
}

/// JetStream API errors (`err_code`, nats-server's `errors.json`) about the message itself, which
/// no retry can cure: message size exceeds maximum allowed (10054), header size exceeds maximum
/// allowed (10097), expected stream does not match (10060), wrong last msg ID (10070), wrong
/// last sequence (10071, 10164), invalid per-message TTL (10165), per-message TTL disabled
/// (10166). Everything else (storage full, no leader, a sealed stream, …) concerns the stream, is
/// retried, and the operator sees it failing.
const REFUSED_FOR_GOOD: &[u64] = &[10054, 10097, 10060, 10070, 10071, 10164, 10165, 10166];
/// Of those, the ones that say the message is too large (10054, 10097).
const TOO_LARGE: &[u64] = &[10054, 10097];

/// What an acknowledgement's JSON means for a publish of `size` bytes (headers and payload). A
/// publish smaller than [`SMALLEST_LIMIT`] refused as too large says the stream's limit is set
/// below what any notification stream needs: the stream's setup is at fault, so it is retried
/// rather than dead-lettered.
pub(crate) fn judge_ack(payload: &[u8], size: usize) -> Verdict {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    if let Some(e) = v.get("error") {
        let why = e
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("an error");
        let code = e.get("err_code").and_then(serde_json::Value::as_u64);
        if let Some(code) = code.filter(|c| TOO_LARGE.contains(c)) {
            if size < SMALLEST_LIMIT {
                return Verdict::Retry {
                    after: None,
                    reason: format!(
                        "JetStream refuses a message of {size} bytes as too large: {why} \
                         (err_code {code}); a stream limit below {} bytes is its setup's fault, \
                         not the records' (check the stream's max_msg_size)",
                        SMALLEST_LIMIT
                    ),
                };
            }
        }
        if let Some(code) = code.filter(|c| REFUSED_FOR_GOOD.contains(c)) {
            let status = e.get("code").and_then(serde_json::Value::as_u64);
            return Verdict::DeadLetter {
                status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
                reason: format!("JetStream refused it for good: {why} (err_code {code})"),
            };
        }
        return Verdict::Retry {
            after: None,
            reason: format!("JetStream: {why}"),
        };
    }
    if v.get("stream").is_some() {
        return Verdict::Delivered;
    }
    Verdict::Retry {
        after: None,
        reason: "an answer that is not a JetStream acknowledgement (is the subject a stream's?)"
            .into(),
    }
}

impl NatsSink {
    fn subject_for(&self, record: &Outgoing<'_>) -> String {
        self.subject.replace("{event}", record.event)
    }

    /// A sink for `addr` (`HOST:PORT`); it connects on the first publish.
    pub(crate) fn new(
        cfg: &NatsConfig,
        roots: TrustRoots,
        timeout: Duration,
        window: usize,
    ) -> NatsSink {
        let auth = cfg.auth.clone();
        NatsSink {
            addr: cfg.addr.clone(),
            tls: cfg.tls,
            subject: cfg.subject.clone(),
            auth: Auth {
                user: auth.user.zip(auth.pass),
                token: auth.token,
                creds: auth.creds,
            },
            roots,
            timeout,
            window,
            creds_path: auth.creds_path,
            conn: None,
            inbox: String::new(),
            inflight: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    fn conn(&mut self) -> Result<&mut NatsConn, String> {
        if self.conn.is_none() {
            if let Some(path) = &self.creds_path {
                // As the NATS clients do; a file that went bad keeps the last good one.
                match nkey::Creds::read(path) {
                    Ok(c) => self.auth.creds = Some(c),
                    Err(e) => warn!(
                        "NATS_CREDS {}: {e}; logging in with what it held before",
                        path.display()
                    ),
                }
            }
            let mut c =
                NatsConn::connect(&self.addr, self.tls, &self.auth, &self.roots, self.timeout)?;
            if c.max_payload < SMALLEST_LIMIT {
                return Err(format!(
                    "the server announces a max_payload of {} bytes, below the {SMALLEST_LIMIT} \
                     any usable server takes: a misconfigured or broken server; the records wait \
                     until it announces more",
                    c.max_payload
                ));
            }
            // A fresh inbox per connection: an acknowledgement can only answer this connection.
            let r = super::random();
            self.inbox = format!("_INBOX.ringhook{r:x}");
            c.subscribe(&format!("{}.*", self.inbox), 1)?;
            c.flush()?;
            info!("connected to NATS at {}", self.addr);
            self.conn = Some(c);
            self.inflight.clear();
        }
        Ok(self.conn.as_mut().expect("just set"))
    }
}

impl Sink for NatsSink {
    fn window(&self) -> usize {
        self.window
    }

    fn describe(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://{}/{}", self.addr, self.subject)
    }

    fn destination(&self, record: &Outgoing<'_>) -> String {
        self.subject_for(record)
    }

    fn submit(&mut self, slot: u64, record: &Outgoing<'_>) -> Result<(), String> {
        let payload = record.payload;
        let subject = self.subject_for(record);
        let header = format!("Nats-Msg-Id: {}\r\n", record.key);
        self.conn()?;
        let reply = format!("{}.{slot}", self.inbox);
        let conn = self.conn.as_mut().expect("connected above");
        let size = payload.len() + header.len() + 12;
        if size > conn.max_payload {
            let max = conn.max_payload;
            self.done.push((
                slot,
                Verdict::DeadLetter {
                    status: 0,
                    reason: format!("larger than the server's max_payload of {max} bytes"),
                },
            ));
            return Ok(());
        }
        conn.hpub(&subject, &reply, &header, payload)?;
        // Timed from the flush that follows (in `poll`, at once): near enough to the send.
        self.inflight.insert(slot, (Instant::now(), size));
        Ok(())
    }

    fn poll(&mut self, wait: Duration, out: &mut Vec<(u64, Verdict)>) -> Result<(), String> {
        out.append(&mut self.done);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.flush()?;
        let mut deadline = Instant::now() + wait;
        while let Some((_, &(oldest, _))) = self.inflight.first_key_value() {
            // Never wait past the oldest publish's timeout.
            let Some(op) = conn.next(deadline.min(oldest + self.timeout))? else {
                break;
            };
            match op {
                ServerOp::Msg {
                    subject,
                    headers,
                    payload,
                } => {
                    let Some(slot) = subject
                        .strip_prefix(self.inbox.as_str())
                        .and_then(|s| s.strip_prefix('.'))
                        .and_then(|s| s.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    // A duplicate, or an answer to a publish of before a reset: not ours.
                    let Some((_, size)) = self.inflight.remove(&slot) else {
                        continue;
                    };
                    if headers.as_deref().and_then(status_of) == Some(503) {
                        return Err("no responders: no JetStream stream takes this subject".into());
                    }
                    out.push((slot, judge_ack(&payload, size)));
                    // Take what else has arrived, without waiting.
                    deadline = Instant::now();
                }
                ServerOp::Err(e) => return Err(format!("the server said: {}", Escaped(&e))),
                _ => {}
            }
        }
        if let Some((_, (oldest, _))) = self.inflight.first_key_value() {
            if oldest.elapsed() >= self.timeout {
                return Err(format!(
                    "no acknowledgement within {}",
                    humantime::format_duration(self.timeout)
                ));
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.conn = None;
        self.done.clear();
        self.inflight.clear();
    }

    fn idle(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        // What has arrived (PINGs are answered inside `next`), waiting a millisecond at most.
        let lost = loop {
            match conn.next(Instant::now() + Duration::from_millis(1)) {
                Ok(None) => break None,
                Ok(Some(ServerOp::Err(e))) => {
                    break Some(format!("the server said: {}", Escaped(&e)));
                }
                Ok(Some(_)) => {}
                Err(e) => break Some(e),
            }
        };
        if let Some(why) = lost {
            info!(
                "NATS connection to {} lost while idle ({why}); connecting again for the next record",
                self.addr
            );
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements() {
        let cases: &[(&[u8], bool)] = &[
            (br#"{"stream":"EV","seq":7}"#, true),
            (br#"{"stream":"EV","seq":7,"duplicate":true}"#, true),
            (br#"{"error":{"code":503,"description":"raft"}}"#, false),
            (
                br#"{"error":{"code":503,"err_code":10008,"description":"temporarily unavailable"}}"#,
                false,
            ),
            (br#"{"type":"other"}"#, false),
            (b"", false),
        ];
        for (ack, delivered) in cases {
            assert_eq!(
                judge_ack(ack, 4096) == Verdict::Delivered,
                *delivered,
                "{ack:?}"
            );
        }
        // The message itself is refused: no retry will do; the stream's trouble: retried.
        // Too large, said of a message smaller than any stream of notifications needs: the
        // stream's setup, retried.
        for (code, size, dead) in [
            (10054, 4096, true),
            (10097, 1024, true),
            (10071, 4096, true),
            (10164, 4096, true),
            (10047, 4096, false),
            (10054, 1023, false),
            (10097, 300, false),
            (10071, 300, true),
        ] {
            let ack = format!(r#"{{"error":{{"code":400,"err_code":{code},"description":"d"}}}}"#);
            let v = judge_ack(ack.as_bytes(), size);
            assert_eq!(
                matches!(v, Verdict::DeadLetter { status: 400, .. }),
                dead,
                "{v:?}"
            );
            assert_eq!(matches!(v, Verdict::Retry { .. }), !dead, "{v:?}");
        }
    }
}
