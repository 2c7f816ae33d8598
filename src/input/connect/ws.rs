//! The client side of RFC 6455, written here: the opening handshake, masked frames out, frames
//! in (fragments joined, control frames answered), the closing handshake. Blocking I/O over one
//! `Read + Write` stream (a `TcpStream`, or rustls over it for `wss://`), with the read timeout
//! set by the caller so it wakes for its own clocks.
//!
//! Why not `tungstenite`: measured with `scripts/build-static.sh x86_64` (static musl, the
//! release profile) on one tree: without `connect` 1,854,328 B; `connect` over this module
//! 1,962,648 B (+108,320 B for all of `connect`); the same `connect` with this module replaced
//! by an adapter over `tungstenite` 0.30 (`default-features = false, features = ["handshake"]`,
//! TLS still ours) 2,005,496 B, i.e. 42,848 B more, a third of the 143 KB left under the
//! 2 MiB budget. The gateway needs text frames, ping/pong and close, no extensions, no
//! subprotocols, no server side: ~300 lines over the SHA-1 and randomness ring already brings,
//! no new crate to audit or keep current.
//!
//! Everything the peer sends is bounded: the response head ([`MAX_HEAD`]), a message
//! (`max_message`, the body limit); a frame that breaks the RFC is an error, never a panic.

use std::io::{self, Read, Write};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// The longest handshake answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What went wrong with the connection; every kind ends it.
#[derive(Debug)]
pub(crate) enum WsError {
    /// The socket (or TLS) failed, or the peer went away.
    Io(io::Error),
    /// The peer broke RFC 6455 (or the handshake was refused): what, in words.
    Protocol(String),
    /// A message larger than allowed.
    TooBig(usize),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "{e}"),
            WsError::Protocol(p) => write!(f, "protocol error: {p}"),
            WsError::TooBig(n) => write!(f, "a message larger than {n} bytes"),
        }
    }
}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> WsError {
        WsError::Io(e)
    }
}

fn protocol(what: impl Into<String>) -> WsError {
    WsError::Protocol(what.into())
}

/// True for an error that is only the read timeout passing (or a signal): try again.
pub(crate) fn is_timeout(e: &WsError) -> bool {
    // A signal (SIGTERM) interrupts a read with a timeout even under SA_RESTART (signal(7)).
    matches!(e, WsError::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted))
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole text message.
    Text(Vec<u8>),
    /// The peer closed (its close frame was answered): the code and reason it gave.
    Closed(Option<u16>, String),
}

/// An open WebSocket over `S`.
pub(crate) struct WebSocket<S> {
    stream: S,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    /// The message being assembled from fragments, with its opcode.
    partial: Option<(u8, Vec<u8>)>,
    max_message: usize,
    rng: SystemRandom,
    closed: bool,
}

/// A `wss://` or `ws://` address, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `wss`.
    pub tls: bool,
    /// Host name or address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub resource: String,
}

impl Target {
    /// Parses `wss://host[:port]/path?query`; `ws://` only for a loopback host (tests).
    pub(crate) fn parse(uri: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = uri.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err("not a wss:// address".into());
        };
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') || authority.is_empty() {
            return Err("no host, or credentials in the address".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port {p:?} in the address"))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err("ws:// (without TLS) is accepted only on a loopback address".into());
        }
        Ok(Target {
            tls,
            host,
            port,
            resource,
        })
    }
}

impl<S: Read + Write> WebSocket<S> {
    /// Performs the opening handshake for `target` over `stream` (already connected, TLS done
    /// or lazily done by the first write).
    pub(crate) fn handshake(
        mut stream: S,
        target: &Target,
        max_message: usize,
    ) -> Result<WebSocket<S>, WsError> {
        let rng = SystemRandom::new();
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce)
            .map_err(|_| protocol("no randomness for the key"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.encode(nonce);
        let default_port = if target.tls { 443 } else { 80 };
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let host = if target.port == default_port {
            host
        } else {
            format!("{host}:{}", target.port)
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ringhook/{}\r\n\r\n",
            target.resource,
            env!("CARGO_PKG_VERSION")
        );
        stream.write_all(request.as_bytes())?;
        stream.flush()?;
        let mut input = Vec::with_capacity(4096);
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&input, b"\r\n\r\n") {
                break i + 4;
            }
            if input.len() > MAX_HEAD {
                return Err(protocol("the handshake answer's head is too long"));
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(WsError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            input.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&input[..head_end]).into_owned();
        check_answer(&head, &key)?;
        input.drain(..head_end);
        Ok(WebSocket {
            stream,
            input,
            partial: None,
            max_message,
            rng,
            closed: false,
        })
    }

    /// The stream, to set its timeouts.
    pub(crate) fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Sends one text message.
    pub(crate) fn send_text(&mut self, text: &[u8]) -> Result<(), WsError> {
        self.send_frame(0x1, text)
    }

    /// Sends a close frame with `code` (the closing handshake's first half).
    pub(crate) fn close(&mut self, code: u16) -> Result<(), WsError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.send_frame(0x8, &code.to_be_bytes())
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        let mut mask = [0u8; 4];
        self.rng
            .fill(&mut mask)
            .map_err(|_| protocol("no randomness for the mask"))?;
        let frame = encode_frame(opcode, payload, mask);
        self.stream.write_all(&frame)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Reads until a whole message or the peer's close arrives; pings are answered on the way.
    /// A read timeout comes back as an error [`is_timeout`] recognises; what was read so far is
    /// kept for the next call.
    pub(crate) fn read(&mut self) -> Result<Incoming, WsError> {
        loop {
            while let Some((frame, used)) = parse_frame(&self.input, self.max_message)? {
                self.input.drain(..used);
                if let Some(msg) = self.on_frame(frame)? {
                    return Ok(msg);
                }
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(WsError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    fn on_frame(&mut self, f: Frame) -> Result<Option<Incoming>, WsError> {
        match f.opcode {
            0x9 => {
                self.send_frame(0xA, &f.payload)?;
                Ok(None)
            }
            0xA => Ok(None),
            0x8 => {
                let (code, reason) = match f.payload.len() {
                    0 => (None, String::new()),
                    1 => return Err(protocol("a close frame with a one-byte body")),
                    _ => {
                        let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                        let reason = std::str::from_utf8(&f.payload[2..])
                            .map_err(|_| protocol("a close reason that is not UTF-8"))?;
                        (Some(code), reason.to_string())
                    }
                };
                // Echo the close (RFC 6455 §5.5.1); the peer then closes the TCP connection.
                let _ = self.close(echoed_close_code(code));
                Ok(Some(Incoming::Closed(code, reason)))
            }
            0x1 | 0x2 => {
                if self.partial.is_some() {
                    return Err(protocol("a new message inside a fragmented one"));
                }
                if f.fin {
                    return self.complete(f.opcode, f.payload).map(Some);
                }
                self.partial = Some((f.opcode, f.payload));
                Ok(None)
            }
            0x0 => {
                let Some((op, mut data)) = self.partial.take() else {
                    return Err(protocol("a continuation frame without a message"));
                };
                if data.len() + f.payload.len() > self.max_message {
                    return Err(WsError::TooBig(self.max_message));
                }
                data.extend_from_slice(&f.payload);
                if f.fin {
                    return self.complete(op, data).map(Some);
                }
                self.partial = Some((op, data));
                Ok(None)
            }
            op => Err(protocol(format!("unknown opcode {op:#x}"))),
        }
    }

    fn complete(&mut self, opcode: u8, data: Vec<u8>) -> Result<Incoming, WsError> {
        if opcode == 0x2 {
            return Err(protocol("a binary message (the gateway sends text)"));
        }
        if std::str::from_utf8(&data).is_err() {
            return Err(protocol("a text message that is not UTF-8"));
        }
        Ok(Incoming::Text(data))
    }
}

/// Checks the handshake answer: 101, the upgrade headers, and the accept value for `key`.
fn check_answer(head: &str, key: &str) -> Result<(), WsError> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    if code != "101" {
        let shown: String = status.chars().take(100).collect();
        return Err(protocol(format!(
            "the handshake was answered {}",
            crate::oplog::Escaped(&shown)
        )));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-accept" => accept = Some(value.to_string()),
            "sec-websocket-extensions" | "sec-websocket-protocol" => {
                return Err(protocol("the server chose an extension or subprotocol"));
            }
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err(protocol("the handshake answer lacks the upgrade headers"));
    }
    if accept.as_deref() != Some(accept_for(key).as_str()) {
        return Err(protocol("a wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for a key: base64 of SHA-1 of the key and the GUID.
pub(crate) fn accept_for(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One frame as read.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A whole frame at the start of `buf` and how many bytes it took; `None` when more is needed.
fn parse_frame(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(protocol("reserved bits set without an extension"));
    }
    if b1 & 0x80 != 0 {
        return Err(protocol("a masked frame from the server"));
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    let control = opcode & 0x8 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n >> 63 != 0 {
                return Err(protocol("a frame length with the top bit set"));
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    if control && (len > 125 || !fin) {
        return Err(protocol("a control frame fragmented or over 125 bytes"));
    }
    if len > max as u64 {
        return Err(WsError::TooBig(max));
    }
    let len = len as usize;
    if buf.len() < at + len {
        return Ok(None);
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at,
    )))
}

/// A client frame: FIN set, masked with `mask`.
fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The code to answer a peer's close with: its own when it may be sent (RFC 6455 §7.4), 1000
/// for a close without one, 1002 (protocol error) for one that must never be on the wire
/// (0–999, 1004–1006, 1015, 1016–2999, 5000 and up).
fn echoed_close_code(code: Option<u16>) -> u16 {
    match code {
        None => 1000,
        Some(c @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => c,
        Some(_) => 1002,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_answered_with_a_code_that_may_be_sent() {
        for (got, sent) in [
            (None, 1000),
            (Some(1000), 1000),
            (Some(1001), 1001),
            (Some(1011), 1011),
            (Some(4001), 4001),
            (Some(0), 1002),
            (Some(1005), 1002),
            (Some(1006), 1002),
            (Some(1015), 1002),
            (Some(2000), 1002),
            (Some(5000), 1002),
        ] {
            assert_eq!(echoed_close_code(got), sent, "{got:?}");
        }
    }

    #[test]
    fn accept_value_of_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn targets() {
        let t = Target::parse("wss://ws.example.com/ws?access_token=a").unwrap();
        assert_eq!(
            (t.tls, t.port, t.resource.as_str()),
            (true, 443, "/ws?access_token=a")
        );
        let t = Target::parse("ws://127.0.0.1:9000?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.resource.as_str()),
            ("127.0.0.1", 9000, "/?x=1")
        );
        assert!(Target::parse("ws://example.com/ws").is_err());
        assert!(Target::parse("https://example.com/ws").is_err());
        assert!(Target::parse("wss://u:p@example.com/").is_err());
        assert!(Target::parse("wss://[::1]:1/x").is_ok());
    }

    #[test]
    fn frames_round_and_limits() {
        let f = encode_frame(1, b"hello", [1, 2, 3, 4]);
        assert_eq!(f[1], 0x85);
        // Server frames are unmasked: a masked one is refused.
        assert!(parse_frame(&f, 100).is_err());
        let unmasked = [0x81, 5, b'h', b'e', b'l', b'l', b'o'];
        let (fr, n) = parse_frame(&unmasked, 100).unwrap().unwrap();
        assert_eq!((fr.payload.as_slice(), n), (&b"hello"[..], 7));
        assert!(parse_frame(&unmasked[..4], 100).unwrap().is_none());
        assert!(matches!(parse_frame(&unmasked, 4), Err(WsError::TooBig(4))));
        // 64-bit length over the limit is refused before it is read.
        let huge = [0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            parse_frame(&huge, 1 << 20),
            Err(WsError::TooBig(_))
        ));
        assert!(parse_frame(&[0xC1, 0], 10).is_err(), "RSV1");
        assert!(parse_frame(&[0x09, 0], 10).is_err(), "fragmented ping");
    }
}
