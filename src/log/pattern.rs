//! `--exec-filter` and `tail --filter`: which notifications a pattern over their `event` picks.

/// An `--exec-filter` pattern over a notification's `event`.
///
/// `*` matches any run of characters; a pattern without one matches as a prefix. `?` is literal
/// (filters carry query strings: `…/message-store/instant?type=SMS`). A path segment that is just `~` matches `~` or a numeric id, so
/// `/restapi/v1.0/account/~/extension/~/presence` matches the presence events of every
/// extension, whichever way the platform wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPattern {
    text: String,
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    Any,
    Id,
}

impl EventPattern {
    /// Compiles `text`.
    pub fn new(text: &str) -> EventPattern {
        let b = text.as_bytes();
        let mut tokens = Vec::with_capacity(b.len() + 1);
        for (i, &c) in b.iter().enumerate() {
            let whole_segment = (i == 0 || b[i - 1] == b'/')
                && matches!(b.get(i + 1), None | Some(b'/') | Some(b'?'));
            tokens.push(match c {
                b'*' => Tok::Any,
                b'~' if whole_segment => Tok::Id,
                _ => Tok::Byte(c),
            });
        }
        if !tokens.contains(&Tok::Any) {
            tokens.push(Tok::Any);
        }
        EventPattern {
            text: text.to_string(),
            tokens,
        }
    }

    /// True when `event` matches.
    pub fn matches(&self, event: &str) -> bool {
        let s = event.as_bytes();
        // reach[j]: the tokens so far can match exactly s[..j].
        let mut reach = vec![false; s.len() + 1];
        reach[0] = true;
        for t in &self.tokens {
            let mut next = vec![false; s.len() + 1];
            for j in (0..=s.len()).filter(|&j| reach[j]) {
                match *t {
                    Tok::Byte(b) => {
                        if s.get(j) == Some(&b) {
                            next[j + 1] = true;
                        }
                    }
                    Tok::Any => next[j..].iter_mut().for_each(|r| *r = true),
                    Tok::Id => {
                        if s.get(j) == Some(&b'~') {
                            next[j + 1] = true;
                        }
                        let digits = s[j..].iter().take_while(|c| c.is_ascii_digit()).count();
                        if digits > 0 {
                            next[j + digits] = true;
                        }
                    }
                }
            }
            reach = next;
        }
        reach[s.len()]
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let cases = [
            (
                "*/presence*",
                "/restapi/v1.0/account/~/extension/12/presence?detailedTelephonyState=true",
                true,
            ),
            (
                "*/presence*",
                "/restapi/v1.0/account/~/extension/12/voicemail",
                false,
            ),
            (
                "*/voicemail",
                "/restapi/v1.0/account/~/extension/~/voicemail",
                true,
            ),
            (
                "*/voicemail",
                "/restapi/v1.0/account/~/extension/~/voicemail/x",
                false,
            ),
            // No wildcard: a prefix.
            (
                "/restapi/v1.0/account/~/extension/~/message-store",
                "/restapi/v1.0/account/~/extension/406149828004/message-store",
                true,
            ),
            (
                "/restapi/v1.0/account/~/extension/~/message-store",
                "/restapi/v1.0/account/1/extension/2/message-store/instant?type=SMS",
                true,
            ),
            (
                "/restapi/v1.0/account/~/extension/~/presence",
                "/restapi/v1.0/account/~/extension/abc/presence",
                false,
            ),
            (
                "/restapi/v1.0/account/~/telephony/sessions",
                "/restapi/v1.0/account/37439510/telephony/sessions",
                true,
            ),
            (
                "*/extension/~/presence",
                "/restapi/v1.0/account/~/extension/~/presence",
                true,
            ),
            (
                "/restapi/v1.0/account/12/extension",
                "/restapi/v1.0/account/13/extension",
                false,
            ),
            (
                "*?type=SMS",
                "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS",
                true,
            ),
            ("", "/anything", true),
        ];
        for (p, e, want) in cases {
            assert_eq!(EventPattern::new(p).matches(e), want, "{p} ~ {e}");
        }
    }
}
