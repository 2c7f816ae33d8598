//! The OAuth session `connect` keeps for days: a login that also brings a refresh token, the
//! `refresh_token` grant that renews the access token inside the same session (WebSocket
//! recovery works only within one session), the single-use WebSocket token
//! (`POST /restapi/oauth/wstoken`), and the revoke that ends the session.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::PlatformError;
use super::transport::Transport;
use super::wire::{Credentials, Endpoint, api_error, parse_json};
use crate::secret::Secret;

/// The tokens of one OAuth session.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    /// The bearer token.
    pub access: Secret,
    /// When `access` stops working.
    pub access_until: SystemTime,
    /// The refresh token (absent when the platform gave none).
    pub refresh: Option<Secret>,
    /// When `refresh` stops working.
    pub refresh_until: SystemTime,
}

/// The WebSocket token and where to use it.
#[derive(Debug)]
pub(crate) struct WsToken {
    /// `wss://…/ws`.
    pub uri: String,
    /// The single-use token for `?access_token=`.
    pub token: Secret,
}

#[derive(Deserialize)]
struct WsTokenBody {
    uri: String,
    ws_access_token: String,
}

/// The platform client `connect` uses; cheap to keep, one agent.
pub(crate) struct OAuth {
    http: Transport,
}

impl OAuth {
    /// A client for `endpoint`.
    pub(crate) fn new(endpoint: Endpoint) -> OAuth {
        OAuth {
            http: Transport::new(endpoint),
        }
    }

    /// The server, for the state file.
    pub(crate) fn server(&self) -> &str {
        &self.http.endpoint.server
    }

    fn grant(&self, what: &str, form: &[(&str, &str)]) -> Result<Tokens, PlatformError> {
        let now = SystemTime::now();
        let t = self.http.token(what, form)?;
        // Bounded (ten years): a huge `expires_in` must not overflow the clock (a panic).
        let secs = |s: Option<u64>, d: u64| {
            now + Duration::from_secs(s.unwrap_or(d).min(10 * 365 * 86_400))
        };
        Ok(Tokens {
            access: Secret::new(t.access_token),
            access_until: secs(t.expires_in, 3600),
            refresh: t.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
            refresh_until: secs(t.refresh_token_expires_in, 7 * 86_400),
        })
    }

    /// A new session (JWT or password grant).
    pub(crate) fn login(&self, credentials: &Credentials) -> Result<Tokens, PlatformError> {
        let form = credentials.grant_form();
        self.grant("authenticate", &form)
    }

    /// A new access token in the same session.
    pub(crate) fn refresh(&self, refresh: &Secret) -> Result<Tokens, PlatformError> {
        self.grant(
            "refresh the access token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
            ],
        )
    }

    /// A fresh single-use WebSocket token (Auth rate group). One try: a 429 comes back as
    /// [`PlatformError::RateLimited`] for the caller, which paces its tries and waits the
    /// `Retry-After` (a retry here would escape that pacing).
    pub(crate) fn ws_token(&self, access: &Secret) -> Result<WsToken, PlatformError> {
        let url = self.http.url("/restapi/oauth/wstoken");
        let auth = format!("Bearer {}", access.expose());
        // Not retried at all: each try counts against the 5 a minute.
        let answer = self.http.send_once(|agent| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_empty()
        })?;
        if answer.status != 200 {
            return Err(api_error(answer.status, &answer.body));
        }
        let t: WsTokenBody = parse_json("the WebSocket token answer", &answer.body)?;
        Ok(WsToken {
            uri: t.uri,
            token: Secret::new(t.ws_access_token),
        })
    }

    /// Ends the session (best effort, one try).
    pub(crate) fn revoke(&self, token: &Secret) -> Result<(), PlatformError> {
        let url = self.http.url("/restapi/oauth/revoke");
        let auth = self.http.basic();
        let answer = self.http.send("revoke the session", false, |agent| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .send_form([("token", token.expose())])
        })?;
        match answer.status {
            200 | 204 => Ok(()),
            s => Err(api_error(s, &answer.body)),
        }
    }
}
