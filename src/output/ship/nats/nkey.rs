//! NATS credentials files (`.creds`: a user JWT and its nkey seed) and nkey seed files, and the
//! signature of the server's nonce that proves the seed is held.
//!
//! The format, as nats-io/nkeys and the NATS clients write and read it: a seed is base32
//! (RFC 4648, no padding) of two prefix bytes (`S`eed and the key's kind, `U`ser), the 32-byte
//! Ed25519 seed and a CRC-16/XMODEM of what precedes it, little-endian; a public key is the same
//! with one prefix byte (`U`) and the 32-byte public key. The client answers the nonce in the
//! server's `INFO` with `"sig"`: the Ed25519 signature of the nonce, base64url without padding,
//! with `"nkey"` (the public key, for a server with nkey users) and, from a `.creds` file,
//! `"jwt"` (for a server of an operator, which checks the signature against the JWT's subject).

use base64::Engine;

use crate::secret::Secret;

const PREFIX_SEED: u8 = 18 << 3;
const PREFIX_USER: u8 = 20 << 3;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// A seed or credentials file is never this big.
const MAX_FILE: u64 = 16 << 10;

/// What a credentials file holds: the user's JWT (absent in a bare seed file) and the seed.
#[derive(Clone)]
pub struct Creds {
    /// The user JWT, sent as is.
    pub jwt: Option<Secret>,
    seed: [u8; 32],
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Creds(redacted)")
    }
}

impl Creds {
    /// Reads `path` (a `.creds` file or a file holding a user nkey seed), bounded and checked.
    pub fn read(path: &std::path::Path) -> Result<Creds, String> {
        Creds::parse(&crate::config::read_bounded_text(
            path,
            MAX_FILE,
            "a credentials file",
        )?)
    }

    /// Parses a `.creds` file's text, or a bare seed. Errors never quote the file.
    fn parse(text: &str) -> Result<Creds, String> {
        // An editor's byte-order mark is not part of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // The line after a `-----BEGIN …-----` marker, if the marker is there.
        let after = |what: &str| {
            lines
                .iter()
                .position(|l| l.starts_with("---") && l.contains(what))
                .map(|i| lines.get(i + 1).copied().unwrap_or(""))
        };
        let jwt = match after("BEGIN NATS USER JWT") {
            None => None,
            Some(l) if l.is_empty() || l.starts_with("---") => {
                return Err("its NATS USER JWT section is empty".into());
            }
            Some(l) => Some(Secret::new(l)),
        };
        let seed = match after("BEGIN USER NKEY SEED") {
            Some(l) => l,
            None => lines
                .iter()
                .copied()
                .find(|l| l.starts_with("SU"))
                .ok_or("no user nkey seed (a line starting with SU) in it")?,
        };
        Ok(Creds {
            jwt,
            seed: decode_seed(seed)?,
        })
    }

    fn key_pair(&self) -> ring::signature::Ed25519KeyPair {
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&self.seed)
            .expect("any 32 bytes are an Ed25519 seed")
    }

    /// The user's public key (`U…`), as the server's configuration names it.
    pub(crate) fn public_key(&self) -> String {
        use ring::signature::KeyPair;
        let mut raw = vec![PREFIX_USER];
        raw.extend_from_slice(self.key_pair().public_key().as_ref());
        let crc = crc16(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        base32(&raw)
    }

    /// The signature of `nonce`, base64url without padding.
    pub(crate) fn sign(&self, nonce: &str) -> String {
        let sig = self.key_pair().sign(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
    }
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), as nkeys checksums its keys.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The 32-byte Ed25519 seed in a user seed (`SU…`), its checksum and kind checked.
fn decode_seed(text: &str) -> Result<[u8; 32], String> {
    let bad = |why: &str| format!("not a valid user nkey seed: {why}");
    let raw = unbase32(text).ok_or_else(|| bad("not base32"))?;
    if raw.len() != 36 {
        return Err(bad("wrong length"));
    }
    let (body, crc) = raw.split_at(34);
    if crc16(body).to_le_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    let kind = ((body[0] & 7) << 5) | ((body[1] & 0xf8) >> 3);
    if body[0] & 0xf8 != PREFIX_SEED || kind != PREFIX_USER {
        return Err(bad("not a user seed"));
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&body[2..]);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From nats-server's own test fixtures (server/configs/one.creds): the seed, and the public
    // key that the JWT beside it names as its subject.
    const SEED: &str = "SUAPCDMU5TSHHLWUUZSOUABJXP2GXRCZVEOVWPSVM5XRSXYGQMRRFDYNMY";
    const PUBLIC: &str = "UDCIBGGGHCJBQPOO4SCJJBHZDR37NQGGCIWMNG2DDAKJ6WMKBMAKXIMO";

    #[test]
    fn a_known_seed_gives_its_public_key_and_verifiable_signatures() {
        let creds = Creds::parse(SEED).unwrap();
        assert!(creds.jwt.is_none());
        assert_eq!(creds.public_key(), PUBLIC);
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(creds.sign("nonce-123"))
            .unwrap();
        use ring::signature::KeyPair;
        let public = creds.key_pair().public_key().as_ref().to_vec();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(b"nonce-123", &sig)
            .unwrap();
        assert_eq!(format!("{creds:?}"), "Creds(redacted)");
    }

    #[test]
    fn a_creds_file_gives_the_jwt_and_the_seed() {
        let text = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGc.eyJzdWIi.sig\n------END NATS USER JWT------\n\n\
             ***** IMPORTANT *****\n\n-----BEGIN USER NKEY SEED-----\n{SEED}\n\
             ------END USER NKEY SEED------\n"
        );
        let creds = Creds::parse(&text).unwrap();
        assert_eq!(creds.jwt.as_ref().unwrap().expose(), "eyJhbGc.eyJzdWIi.sig");
        assert_eq!(creds.public_key(), PUBLIC);
        // Written on Windows: a byte-order mark, CRLF line ends, indented.
        let lines: String = text.lines().map(|l| format!("  {l}\r\n")).collect();
        let windows = format!("\u{feff}{lines}");
        let creds = Creds::parse(&windows).unwrap();
        assert_eq!(creds.jwt.as_ref().unwrap().expose(), "eyJhbGc.eyJzdWIi.sig");
        assert_eq!(creds.public_key(), PUBLIC);
        // A JWT marker with nothing under it is an error, not a silent nkey-only login.
        let empty = text.replace("eyJhbGc.eyJzdWIi.sig\n", "");
        assert!(
            Creds::parse(&empty)
                .unwrap_err()
                .contains("JWT section is empty")
        );
    }

    #[test]
    fn bad_seeds_are_refused_without_quoting_them() {
        let mut flipped = SEED.to_string();
        flipped.replace_range(10..11, "A");
        for (text, why) in [
            ("", "no user nkey seed"),
            ("SUxyz!", "not base32"),
            ("SUAPCDMU5TSHHLWUUZ", "wrong length"),
            (flipped.as_str(), "checksum mismatch"),
        ] {
            let err = Creds::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(text.len() < 8 || !err.contains(text), "{err}");
        }
        assert_eq!(base32(&unbase32(PUBLIC).unwrap()), PUBLIC);
        // A well-formed seed of another kind (an account's, `SA…`) is not a user's.
        let mut raw = vec![PREFIX_SEED, 0];
        raw.extend_from_slice(&[7; 32]);
        let crc = crc16(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        let account = base32(&raw);
        assert!(account.starts_with("SA"), "{account}");
        assert!(
            decode_seed(&account)
                .unwrap_err()
                .contains("not a user seed")
        );
    }
}
