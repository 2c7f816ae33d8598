//! An authenticated session: login (JWT or password grant), the calls `register`, `list`,
//! `unregister` and `catchup` make, and the revoke that ends it.

use std::fmt;

use super::settings::{EXTENSION_ID, ExtensionScope};
use super::transport::{Backoff, Reply, Transport};
use super::wire::*;
use super::{MAX_BODY, MAX_PAGES, PlatformError};
use crate::error::Error;
use crate::secret::Secret;

/// An authenticated session. End it with [`Session::revoke`].
pub(crate) struct Session {
    http: Transport,
    access: Secret,
    owner_id: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.http.endpoint.server)
            .field("owner_id", &self.owner_id)
            .finish_non_exhaustive()
    }
}

/// Obtains an access token with Basic client authentication.
pub(crate) fn login(
    endpoint: Endpoint,
    credentials: &Credentials,
) -> Result<Session, PlatformError> {
    let http = Transport::new(endpoint);
    let form = credentials.grant_form();
    let token = http.token("authenticate", &form)?;
    Ok(Session {
        http,
        access: Secret::new(token.access_token),
        owner_id: token.owner_id.as_ref().and_then(id_text),
    })
}

/// Why `{extensionId}` could not be expanded.
#[derive(Debug)]
pub(crate) enum ExpandError {
    /// The extension list failed.
    List(PlatformError),
    /// No extension matched and no other filter is left.
    NoneLeft,
}

impl ExpandError {
    /// The user's error, with what we were doing and a hint.
    pub(crate) fn into_error(self) -> Error {
        match self {
            ExpandError::List(e) => Error::Runtime {
                message: format!("cannot list the extensions ({EXTENSION_ID}): {e}"),
                hint: e.hint(),
            },
            ExpandError::NoneLeft => Error::runtime_hint(
                format!("no event filters left: {EXTENSION_ID} matched no extension"),
                "check RINGHOOK_EXTENSION_TYPES and RINGHOOK_EXTENSION_STATUSES, or add a filter without the placeholder",
            ),
        }
    }
}

impl Session {
    /// A session on an access token obtained elsewhere (`connect`'s kept OAuth session). Not
    /// revoked by anyone but its owner.
    #[cfg(feature = "connect")]
    pub(crate) fn with_access(endpoint: Endpoint, access: Secret) -> Session {
        Session {
            http: Transport::new(endpoint),
            access,
            owner_id: None,
        }
    }

    /// Expands `{extensionId}` into one filter per extension of `scope`, keeping the order and
    /// no repeats (`register`'s and `connect`'s filters). Without the placeholder: no call.
    pub(crate) fn expand_filters(
        &self,
        filters: &[String],
        scope: &ExtensionScope,
    ) -> Result<Vec<String>, ExpandError> {
        if !filters.iter().any(|f| f.contains(EXTENSION_ID)) {
            return Ok(filters.to_vec());
        }
        let extensions = self
            .extensions(&scope.types, &scope.statuses, scope.per_page)
            .map_err(ExpandError::List)?;
        info!(
            "{EXTENSION_ID}: {} extensions ({} {})",
            extensions.len(),
            scope.statuses.join("/"),
            scope.types.join("/")
        );
        let mut out: Vec<String> = Vec::new();
        for f in filters {
            let expanded: Vec<String> = if f.contains(EXTENSION_ID) {
                extensions
                    .iter()
                    .map(|e| f.replace(EXTENSION_ID, &e.id))
                    .collect()
            } else {
                vec![f.clone()]
            };
            for e in expanded {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        if out.is_empty() {
            return Err(ExpandError::NoneLeft);
        }
        Ok(out)
    }

    /// The extension id the token belongs to (`owner_id`), which `~` stands for in filters.
    pub(crate) fn owner_id(&self) -> Option<&str> {
        self.owner_id.as_deref()
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.access.expose())
    }

    fn get(&self, what: &str, url: &str) -> Result<Reply, PlatformError> {
        let auth = self.bearer();
        self.http.send(what, true, |agent| {
            agent
                .get(url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call()
        })
    }

    fn expect(answer: Reply, ok: u16) -> Result<Vec<u8>, PlatformError> {
        if answer.status == ok || (ok == 200 && answer.status == 201) {
            Ok(answer.body)
        } else {
            Err(api_error(answer.status, &answer.body))
        }
    }

    /// Every extension of the account of the given types and statuses, following
    /// `navigation.nextPage` to the end.
    pub(crate) fn extensions(
        &self,
        types: &[String],
        statuses: &[String],
        per_page: u32,
    ) -> Result<Vec<Extension>, PlatformError> {
        let mut query: Vec<String> = types.iter().map(|t| format!("type={t}")).collect();
        query.extend(statuses.iter().map(|s| format!("status={s}")));
        query.push(format!("perPage={per_page}"));
        query.push("page=1".into());
        let mut url = self.http.url(&format!(
            "/restapi/v1.0/account/~/extension?{}",
            query.join("&")
        ));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let body = Self::expect(self.get("list extensions", &url)?, 200)?;
            let page: ExtensionPage = parse_json("the extension list", &body)?;
            for r in page.records {
                let id = id_text(&r.id).ok_or_else(|| bad("an extension record without an id"))?;
                out.push(Extension { id });
            }
            let next = page
                .navigation
                .and_then(|n| n.next_page)
                .and_then(|p| p.uri);
            match next {
                None => return Ok(out),
                Some(next) => {
                    // The bearer token goes only to the server we were configured with.
                    let origin = format!("{}/", self.http.endpoint.server);
                    if !next.starts_with(&origin) {
                        return Err(bad(format!(
                            "navigation.nextPage points away from {}: {}",
                            self.http.endpoint.server,
                            truncate(&next, 200)
                        )));
                    }
                    if next == url {
                        return Err(bad("navigation.nextPage repeats the page just read"));
                    }
                    url = next;
                }
            }
        }
        Err(bad(format!(
            "the extension list goes on past {MAX_PAGES} pages"
        )))
    }

    /// The subscriptions of this app and user.
    pub(crate) fn subscriptions(&self) -> Result<Vec<Subscription>, PlatformError> {
        let url = self.http.url("/restapi/v1.0/subscription");
        let body = Self::expect(self.get("list subscriptions", &url)?, 200)?;
        let list: SubscriptionList = parse_json("the subscription list", &body)?;
        Ok(list.records.into_iter().map(Subscription::from).collect())
    }

    /// Creates a subscription, never twice: when the answer is lost, a 5xx or unreadable, lists
    /// again and adopts a new active subscription at the address (one not among `known_ids`).
    /// Only after a 5xx or a failed connection that created nothing is the create sent again; a
    /// timed-out create may still complete on the platform, so it is not (the next run finds it).
    pub(crate) fn create_subscription(
        &self,
        new: &NewSubscription<'_>,
        known_ids: &[String],
    ) -> Result<Subscription, PlatformError> {
        let url = self.http.url("/restapi/v1.0/subscription");
        let body = serde_json::to_vec(&CreateBody {
            event_filters: new.filters,
            delivery_mode: DeliveryModeRequest {
                transport_type: "WebHook",
                address: new.address,
                verification_token: new.verification_token,
            },
            expires_in: new.expires_in,
        })
        .expect("plain structs serialize");
        let auth = self.bearer();
        let mut backoff = Backoff::new(&self.http.endpoint.policy);
        loop {
            let result = self.http.send("create subscription", false, |agent| {
                agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .content_type("application/json")
                    .send(&body[..])
            });
            let err = match result {
                Ok(answer) => {
                    let body = Self::expect(answer, 200)?;
                    match parse_json::<SubscriptionInfo>("the new subscription", &body) {
                        Ok(info) => return Ok(info.into()),
                        // Created, but we cannot tell its id: look it up, never send it again.
                        Err(e) => e,
                    }
                }
                Err(e) if e.maybe_done() => e,
                Err(e) => return Err(e),
            };
            let resend = matches!(
                err,
                PlatformError::Api { .. } | PlatformError::Transport { .. }
            ) && backoff.left();
            // The platform may have created it before the answer was lost: look before resending.
            let adopted = self
                .created_meanwhile(new.address, known_ids)
                .inspect_err(|_| {
                    warn!("create subscription: {err}; whether it was created cannot be told");
                })?;
            if let Some(s) = adopted {
                warn!(
                    "create subscription: {err}; but it was created ({}), so it is not sent again",
                    s.id
                );
                return Ok(s);
            }
            if !resend {
                warn!("create subscription: {err}; the list shows none created; not sent again");
                return Err(err);
            }
            backoff.pause(
                "create subscription",
                format_args!("{err}; none was created"),
            );
        }
    }

    /// A new active subscription at `address` (one not among `known_ids`): what a create whose
    /// answer was lost made.
    fn created_meanwhile(
        &self,
        address: &str,
        known_ids: &[String],
    ) -> Result<Option<Subscription>, PlatformError> {
        Ok(self.subscriptions()?.into_iter().find(|s| {
            s.is_active() && s.address.as_deref() == Some(address) && !known_ids.contains(&s.id)
        }))
    }

    /// Replaces the filters (and asks for a new lifetime) of a subscription, keeping its id.
    pub(crate) fn update_subscription(
        &self,
        id: &str,
        filters: &[String],
        expires_in: u64,
    ) -> Result<Subscription, PlatformError> {
        let url = self.http.url(&format!("/restapi/v1.0/subscription/{id}"));
        let body = serde_json::to_vec(&UpdateBody {
            event_filters: filters,
            expires_in,
        })
        .expect("plain structs serialize");
        let auth = self.bearer();
        // Setting the same filters twice is harmless: an update may be retried.
        let answer = self.http.send("update subscription", true, |agent| {
            agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(&body[..])
        })?;
        let body = Self::expect(answer, 200)?;
        let info: SubscriptionInfo = parse_json("the updated subscription", &body)?;
        Ok(info.into())
    }

    /// Extends a subscription's life.
    pub(crate) fn renew_subscription(&self, id: &str) -> Result<Subscription, PlatformError> {
        let url = self
            .http
            .url(&format!("/restapi/v1.0/subscription/{id}/renew"));
        let auth = self.bearer();
        let answer = self.http.send("renew subscription", true, |agent| {
            agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_empty()
        })?;
        let body = Self::expect(answer, 200)?;
        let info: SubscriptionInfo = parse_json("the renewed subscription", &body)?;
        Ok(info.into())
    }

    /// Deletes a subscription; one that is already gone counts as deleted.
    pub(crate) fn delete_subscription(&self, id: &str) -> Result<(), PlatformError> {
        let url = self.http.url(&format!("/restapi/v1.0/subscription/{id}"));
        let auth = self.bearer();
        let answer = self.http.send("delete subscription", true, |agent| {
            agent
                .delete(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call()
        })?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            s => Err(api_error(s, &answer.body)),
        }
    }

    /// Ends the session (best effort, one try: the platform allows few parallel sessions).
    pub(crate) fn revoke(self) -> Result<(), PlatformError> {
        let url = self.http.url("/restapi/oauth/revoke");
        let auth = self.http.basic();
        let result = self
            .http
            .agent
            .post(&url)
            .header("Authorization", &auth)
            .send_form([("token", self.access.expose())]);
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if status == 200 || status == 204 {
                    Ok(())
                } else {
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_BODY)
                        .read_to_vec()
                        .unwrap_or_default();
                    Err(api_error(status, &body))
                }
            }
            Err(e) => Err(self.http.failed(&e)),
        }
    }
}

// ---- Raw reads (catchup) ----------------------------------------------------------------------

#[cfg(any(feature = "catchup", test))]
impl Session {
    /// GETs `target` (a path, or an absolute URL on the configured server such as a
    /// `navigation.nextPage`) under the retry policy, and hands back the status and the body as
    /// sent: `catchup` keeps records byte for byte and reads error codes itself.
    pub(crate) fn get_bytes(
        &self,
        what: &str,
        target: &str,
    ) -> Result<(u16, Vec<u8>), PlatformError> {
        let url = if target.starts_with('/') {
            self.http.url(target)
        } else if target.starts_with(&format!("{}/", self.http.endpoint.server)) {
            target.to_string()
        } else {
            // The bearer token goes only to the server we were configured with.
            return Err(bad(format!(
                "a link points away from {}: {}",
                self.http.endpoint.server,
                truncate(target, 200)
            )));
        };
        self.get(what, &url).map(|a| (a.status, a.body))
    }

    /// The one-line error an error answer stands for.
    pub(crate) fn error_of(status: u16, body: &[u8]) -> PlatformError {
        api_error(status, body)
    }
}
