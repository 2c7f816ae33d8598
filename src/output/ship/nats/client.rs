//! The small synchronous subset of the NATS client protocol that `ship` needs: INFO, CONNECT,
//! PING/PONG, +OK/-ERR, SUB, HPUB and MSG/HMSG, over a `TcpStream` (or rustls for `tls://` and
//! servers that require TLS) with timeouts. No maintained synchronous client crate exists (`nats`
//! is deprecated, `async-nats` needs tokio), and this is a few hundred lines.
//!
//! [`parse`] is Sans-IO: bytes in, one server operation out; [`NatsConn`] does the I/O.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::https::TrustRoots;
use crate::secret::Secret;

/// Largest control line accepted from the server.
const MAX_CONTROL: usize = 64 << 10;
/// Largest message accepted from the server (acknowledgements are tiny).
const MAX_MESSAGE: usize = 8 << 20;

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO {json}`.
    Info(String),
    /// `MSG` or `HMSG`.
    Msg {
        /// The subject it was published to.
        subject: String,
        /// The headers block (`NATS/1.0 503\r\n…`), when it was `HMSG`.
        headers: Option<Vec<u8>>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `PING`: answer `PONG`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'why'`.
    Err(String),
}

/// Parses the first operation in `buf`: `Ok(None)` when it is not all there yet, else the
/// operation and the bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(ServerOp, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_CONTROL {
            return Err("control line too long".into());
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "control line not UTF-8")?;
    let (op, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let rest = rest.trim();
    let simple = |op| Ok(Some((op, eol + 2)));
    match op.to_ascii_uppercase().as_str() {
        "PING" => simple(ServerOp::Ping),
        "PONG" => simple(ServerOp::Pong),
        "+OK" => simple(ServerOp::Ok),
        "-ERR" => simple(ServerOp::Err(rest.trim_matches('\'').to_string())),
        "INFO" => simple(ServerOp::Info(rest.to_string())),
        "MSG" | "HMSG" => {
            let words: Vec<&str> = rest.split_ascii_whitespace().collect();
            let hmsg = op.eq_ignore_ascii_case("HMSG");
            // MSG subject sid [reply] size; HMSG subject sid [reply] hdr_size total_size
            let sizes = if hmsg { 2 } else { 1 };
            if words.len() < 2 + sizes || words.len() > 3 + sizes {
                return Err(format!("malformed {op} line"));
            }
            let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad size in {op}"));
            let total = num(words[words.len() - 1])?;
            let hdr = if hmsg {
                num(words[words.len() - 2])?
            } else {
                0
            };
            if hdr > total || total > MAX_MESSAGE {
                return Err(format!("bad sizes in {op}"));
            }
            let start = eol + 2;
            let end = start + total;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(format!("{op} payload not followed by CRLF"));
            }
            Ok(Some((
                ServerOp::Msg {
                    subject: words[0].to_string(),
                    headers: hmsg.then(|| buf[start..start + hdr].to_vec()),
                    payload: buf[start + hdr..end].to_vec(),
                },
                end + 2,
            )))
        }
        _ => Err(format!("unknown operation from the server: {op:.16}")),
    }
}

/// The status code of a headers block (`NATS/1.0 503` → 503); `None` when it has none.
pub fn status_of(headers: &[u8]) -> Option<u16> {
    let first = headers.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(first).ok()?;
    text.strip_prefix("NATS/1.0")?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How to log in.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// User and password.
    pub user: Option<(Secret, Secret)>,
    /// A token.
    pub token: Option<Secret>,
    /// A credentials file's JWT and nkey seed (`NATS_CREDS`): answers the server's nonce.
    pub creds: Option<super::nkey::Creds>,
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection to a NATS server.
pub struct NatsConn {
    stream: Box<dyn Stream>,
    tcp: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The server's `max_payload`.
    pub max_payload: usize,
}

fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

impl NatsConn {
    /// Connects to `addr` (`HOST:PORT`), upgrades to TLS when `tls` or the server requires it,
    /// logs in with `auth` and waits for the server's `PONG`: a connection that is usable.
    pub fn connect(
        addr: &str,
        tls: bool,
        auth: &Auth,
        roots: &TrustRoots,
        timeout: Duration,
    ) -> Result<NatsConn, String> {
        // One deadline for the whole login: the addresses, the TLS handshake, INFO and PONG.
        let deadline = Instant::now() + timeout;
        let left = || {
            let d = deadline.saturating_duration_since(Instant::now());
            (!d.is_zero()).then_some(d)
        };
        // Each address in turn (`localhost` may give ::1 first to a server on 127.0.0.1 only).
        let mut last = format!("{addr}: no address");
        let mut tcp = None;
        for sock in addr.to_socket_addrs().map_err(|e| format!("{addr}: {e}"))? {
            let Some(d) = left() else {
                last = format!("{addr}: timed out");
                break;
            };
            match TcpStream::connect_timeout(&sock, d) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true).ok();
        tcp.set_read_timeout(Some(timeout)).ok();
        tcp.set_write_timeout(Some(timeout)).ok();
        let mut conn = NatsConn {
            stream: Box::new(tcp.try_clone().map_err(|e| e.to_string())?),
            tcp,
            rbuf: Vec::with_capacity(64 << 10),
            wbuf: Vec::with_capacity(64 << 10),
            max_payload: 1 << 20,
        };
        let info = match conn.read_op(deadline)? {
            ServerOp::Info(i) => i,
            other => return Err(format!("expected INFO, got {other:?}")),
        };
        let info: serde_json::Value =
            serde_json::from_str(&info).map_err(|_| "INFO is not JSON".to_string())?;
        if let Some(m) = info.get("max_payload").and_then(|v| v.as_u64()) {
            conn.max_payload = usize::try_from(m).unwrap_or(usize::MAX);
        }
        if info.get("headers").and_then(|v| v.as_bool()) == Some(false) {
            return Err("the server does not support headers (nats-server >= 2.2 needed)".into());
        }
        if tls || info.get("tls_required").and_then(|v| v.as_bool()) == Some(true) {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| format!("{host}: not a TLS server name"))?;
            let mut client = rustls::ClientConnection::new(crate::https::tls_config(roots)?, name)
                .map_err(|e| format!("TLS: {e}"))?;
            let mut sock = conn.tcp.try_clone().map_err(|e| e.to_string())?;
            // The handshake now (bounded by the socket timeouts), so that a certificate the
            // roots do not trust is reported as what it is, not as a failed first write.
            while client.is_handshaking() {
                let d = left().ok_or("TLS: the handshake timed out")?;
                sock.set_read_timeout(Some(d)).ok();
                client
                    .complete_io(&mut sock)
                    .map_err(|e| format!("TLS: {e}"))?;
            }
            sock.set_read_timeout(Some(timeout)).ok();
            conn.stream = Box::new(rustls::StreamOwned::new(client, sock));
        }
        let mut c = String::from(
            r#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"lang":"ringhook","version":""#,
        );
        c.push_str(env!("CARGO_PKG_VERSION"));
        c.push_str(r#"","name":"ringhook ship""#);
        if let Some((u, p)) = &auth.user {
            c.push_str(r#","user":"#);
            json_str(&mut c, u.expose());
            c.push_str(r#","pass":"#);
            json_str(&mut c, p.expose());
        }
        if let Some(t) = &auth.token {
            c.push_str(r#","auth_token":"#);
            json_str(&mut c, t.expose());
        }
        if let Some(creds) = &auth.creds {
            let nonce = info.get("nonce").and_then(|v| v.as_str()).ok_or(
                "NATS_CREDS is set but the server asked for no signature (no nonce in its INFO)",
            )?;
            // Both: a server of an operator takes the JWT (and checks the signature against its
            // subject), a server with nkey users takes the public key; each ignores the other.
            if let Some(jwt) = &creds.jwt {
                c.push_str(r#","jwt":"#);
                json_str(&mut c, jwt.expose());
            }
            c.push_str(r#","nkey":"#);
            json_str(&mut c, &creds.public_key());
            c.push_str(r#","sig":"#);
            json_str(&mut c, &creds.sign(nonce));
        }
        c.push_str("}\r\nPING\r\n");
        conn.write(c.as_bytes())?;
        conn.flush()?;
        loop {
            match conn.read_op(deadline)? {
                ServerOp::Pong => return Ok(conn),
                ServerOp::Err(e) => return Err(format!("the server refused the login: {e}")),
                _ => {}
            }
        }
    }

    /// Queues raw protocol bytes (flushed by [`NatsConn::flush`]).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wbuf.extend_from_slice(bytes);
        Ok(())
    }

    /// Sends what was queued.
    pub fn flush(&mut self) -> Result<(), String> {
        let sent = self
            .stream
            .write_all(&self.wbuf)
            .and_then(|()| self.stream.flush());
        self.wbuf.clear();
        sent.map_err(|e| format!("write: {e}"))
    }

    /// Subscribes `sid` to `subject`.
    pub fn subscribe(&mut self, subject: &str, sid: u64) -> Result<(), String> {
        self.write(format!("SUB {subject} {sid}\r\n").as_bytes())
    }

    /// Queues a publish with headers (`headers` is `Name: value\r\n` lines, or empty).
    pub fn hpub(
        &mut self,
        subject: &str,
        reply: &str,
        headers: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        let hdr_len = "NATS/1.0\r\n".len() + headers.len() + 2;
        let head = format!(
            "HPUB {subject} {reply} {hdr_len} {}\r\nNATS/1.0\r\n{headers}\r\n",
            hdr_len + payload.len()
        );
        self.wbuf.extend_from_slice(head.as_bytes());
        self.wbuf.extend_from_slice(payload);
        self.wbuf.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The next operation, answering PINGs, until `deadline` (then an error saying so).
    /// `Ok(None)` only when `deadline` passed with nothing (`poll` style).
    pub fn next(&mut self, deadline: Instant) -> Result<Option<ServerOp>, String> {
        loop {
            if let Some((op, used)) = parse(&self.rbuf)? {
                self.rbuf.drain(..used);
                if op == ServerOp::Ping {
                    self.write(b"PONG\r\n")?;
                    self.flush()?;
                    continue;
                }
                return Ok(Some(op));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.tcp
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .ok();
            let len = self.rbuf.len();
            self.rbuf.resize(len + (64 << 10), 0);
            let got = self.stream.read(&mut self.rbuf[len..]);
            self.rbuf.truncate(len + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn read_op(&mut self, deadline: Instant) -> Result<ServerOp, String> {
        self.next(deadline)?
            .ok_or_else(|| "timed out waiting for the server".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_operations() {
        let msg = |subject: &str, headers: Option<&[u8]>, payload: &[u8]| ServerOp::Msg {
            subject: subject.into(),
            headers: headers.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        };
        type Case<'a> = (&'a [u8], Option<(ServerOp, usize)>);
        let cases: &[Case] = &[
            (b"PING\r\n", Some((ServerOp::Ping, 6))),
            (b"pong\r\nPING", Some((ServerOp::Pong, 6))),
            (b"+OK\r\n", Some((ServerOp::Ok, 5))),
            (
                b"-ERR 'Authorization Violation'\r\n",
                Some((ServerOp::Err("Authorization Violation".into()), 32)),
            ),
            (
                b"INFO {\"a\":1}\r\n",
                Some((ServerOp::Info("{\"a\":1}".into()), 14)),
            ),
            (
                b"MSG a.b 1 5\r\nhello\r\n",
                Some((msg("a.b", None, b"hello"), 20)),
            ),
            (
                b"MSG a.b 1 r 5\r\nhello\r\nx",
                Some((msg("a.b", None, b"hello"), 22)),
            ),
            (b"MSG a.b 1 5\r\nhel", None),
            (b"MSG a.b 1 5\r\nhello\r", None),
            (b"PIN", None),
            (
                b"HMSG _I.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
                Some((msg("_I.1", Some(b"NATS/1.0 503\r\n\r\n"), b""), 37)),
            ),
            (
                b"HMSG s 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                Some((msg("s", Some(b"NATS/1.0\r\n\r\n"), b"hi"), 34)),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                &parse(input).unwrap(),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        for bad in [
            &b"WHAT\r\n"[..],
            b"MSG a 1\r\n",
            b"MSG a 1 x\r\n",
            b"HMSG a 1 9 5\r\n",
            b"MSG a 1 2\r\nabcd\r\n",
            b"MSG a 1 99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&vec![b'x'; MAX_CONTROL + 1]).is_err());
        assert_eq!(status_of(b"NATS/1.0 503\r\n\r\n"), Some(503));
        assert_eq!(status_of(b"NATS/1.0\r\nA: b\r\n\r\n"), None);
    }
}
