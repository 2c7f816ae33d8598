//! The NATS JetStream sink: HPUB each notification with `Nats-Msg-Id: <uuid>` and a reply
//! subject of our own inbox, and count it delivered when the stream's acknowledgement comes back
//! (`{"stream":…,"seq":…}`, duplicates included). A window of publishes is in flight; the
//! reply subject's last token is the record's slot, so acknowledgements find their publish.
//! No responders (status 503), a JetStream error, `-ERR`, a silent server or a lost connection
//! are failures: the driver resets the connection and publishes the unacknowledged records
//! again, which the stream's duplicate window turns into no-ops where they had landed.

pub(crate) mod client;
pub(crate) mod nkey;

use std::time::{Duration, Instant};

use super::{Item, NatsAuth, Sink, Verdict};
use crate::platform::TrustRoots;
use client::{Auth, Conn, ServerOp, status_of};

/// Publishes to one JetStream stream through one server.
pub(crate) struct NatsSink {
    addr: String,
    tls: bool,
    auth: Auth,
    roots: TrustRoots,
    timeout: Duration,
    window: usize,
    /// `NATS_CREDS`, read again before each connect (a renewed user JWT is taken up).
    creds_path: Option<std::path::PathBuf>,
    conn: Option<Conn>,
    inbox: String,
    outstanding: usize,
    last_progress: Instant,
    done: Vec<(u64, Verdict)>,
}

/// What an acknowledgement's JSON means.
pub(crate) fn judge_ack(payload: &[u8]) -> Verdict {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    if let Some(e) = v.get("error") {
        let why = e
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("an error");
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
    /// A sink for `addr` (`HOST:PORT`); it connects on the first publish.
    pub(crate) fn new(
        addr: String,
        tls: bool,
        auth: NatsAuth,
        roots: TrustRoots,
        timeout: Duration,
        window: usize,
    ) -> NatsSink {
        NatsSink {
            addr,
            tls,
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
            outstanding: 0,
            last_progress: Instant::now(),
            done: Vec::new(),
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, String> {
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
            let mut c = Conn::connect(&self.addr, self.tls, &self.auth, &self.roots, self.timeout)?;
            // A fresh inbox per connection: an acknowledgement can only answer this connection.
            let r = super::random();
            self.inbox = format!("_INBOX.ringhook{r:x}");
            c.subscribe(&format!("{}.*", self.inbox), 1)?;
            c.flush()?;
            info!("connected to NATS at {}", self.addr);
            self.conn = Some(c);
            self.outstanding = 0;
            self.last_progress = Instant::now();
        }
        Ok(self.conn.as_mut().expect("just set"))
    }
}

impl Sink for NatsSink {
    fn window(&self) -> usize {
        self.window
    }

    fn submit(&mut self, slot: u64, item: &Item, subject: &str) -> Result<(), String> {
        let ship = item
            .ship
            .as_ref()
            .expect("only shippable items are submitted");
        let payload = &item.line[ship.payload.clone()];
        let header = format!("Nats-Msg-Id: {}\r\n", ship.key);
        self.conn()?;
        let reply = format!("{}.{slot}", self.inbox);
        let conn = self.conn.as_mut().expect("connected above");
        if payload.len() + header.len() + 12 > conn.max_payload {
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
        conn.hpub(subject, &reply, &header, payload)?;
        self.outstanding += 1;
        Ok(())
    }

    fn poll(&mut self, wait: Duration, out: &mut Vec<(u64, Verdict)>) -> Result<(), String> {
        out.append(&mut self.done);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.flush()?;
        let mut deadline = Instant::now() + wait;
        while self.outstanding > 0 {
            let Some(op) = conn.next(deadline)? else {
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
                    if headers.as_deref().and_then(status_of) == Some(503) {
                        return Err("no responders: no JetStream stream takes this subject".into());
                    }
                    self.outstanding -= 1;
                    self.last_progress = Instant::now();
                    out.push((slot, judge_ack(&payload)));
                    // Take what else has arrived, without waiting.
                    deadline = Instant::now();
                }
                ServerOp::Err(e) => return Err(format!("the server said: {e}")),
                _ => {}
            }
        }
        if self.outstanding > 0 && self.last_progress.elapsed() > self.timeout {
            return Err(format!(
                "no acknowledgement within {}",
                humantime::format_duration(self.timeout)
            ));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.conn = None;
        self.done.clear();
        self.outstanding = 0;
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
            (br#"{"type":"other"}"#, false),
            (b"", false),
        ];
        for (ack, delivered) in cases {
            assert_eq!(judge_ack(ack) == Verdict::Delivered, *delivered, "{ack:?}");
        }
    }
}
