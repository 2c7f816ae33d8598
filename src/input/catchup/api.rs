//! The REST calls of `catchup`: Message Sync and the message-store list per extension, Call Log
//! Sync and the call-log list for the account. Records come back as the platform sent them.
//!
//! One sync per kind and scope: ISync with the stored token; FSync when there is none, the
//! platform refuses it (`plan::needs_full_sync`) or an ISync brings [`MAX_SYNC_RECORDS`] (it may
//! have dropped some). An FSync that does not reach back to its `dateFrom` (`olderRecordsExist`,
//! or 250 call records) leaves the older part to the paged list, as RingCentral's own client
//! does; what the budget does not allow is stored as `backfill` for the next run.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::platform::{PlatformError, Session};
use crate::state::SyncPoint;

use super::plan::{Budget, Group, MAX_SYNC_RECORDS, SyncStep, needs_full_sync};
use super::record::RecordHead;

/// A record fetched, with the endpoint it came from.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// `message-sync`, `message-store`, `call-log-sync` or `call-log`.
    pub source: &'static str,
    /// As sent.
    pub raw: Box<RawValue>,
    /// What `catchup` reads of it.
    pub head: RecordHead,
}

/// Why a kind was not (fully) caught up.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The app lacks this permission (403 InsufficientPermissions / CMN-401).
    Permission(String),
    /// Over the rate limit, or out of this run's budget: the rest is for the next run.
    Later(String),
    /// Anything else.
    Platform(PlatformError),
}

/// One kind of sync: where it lives and what its frame asks for.
#[derive(Debug)]
pub(crate) struct SyncEndpoints {
    /// `…/message-sync` or `…/call-log-sync`.
    pub sync: String,
    /// `…/message-store` or `…/call-log`, for the older part of a full sync.
    pub list: String,
    /// Query parameters of the frame (`messageType=SMS&…`), for FSync and list alike.
    pub frame_query: String,
    /// Rate group of both endpoints.
    pub group: Group,
    /// Source names of sync and list records.
    pub sources: (&'static str, &'static str),
    /// The permission both need.
    pub permission: &'static str,
    /// `frame` stored with the token.
    pub frame: String,
}

/// One answer: the records kept as sent, the rest read as a plain `Value`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncPage {
    records: Vec<Box<RawValue>>,
    #[serde(default)]
    sync_info: Value,
    #[serde(default)]
    navigation: Value,
}

impl SyncPage {
    fn info(&self, key: &str) -> Option<String> {
        Some(self.sync_info.get(key)?.as_str()?.to_string())
    }

    /// The sync point this answer gives (the backfill is the caller's).
    fn point(&self, t: &SyncEndpoints) -> SyncPoint {
        SyncPoint {
            token: self.info("syncToken"),
            time: self
                .info("syncTime")
                .unwrap_or_else(|| time(SystemTime::now())),
            frame: t.frame.clone(),
            backfill: None,
        }
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Percent-encodes a query value (sync tokens are opaque and may hold `+`, `/`, `=`).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

enum Got {
    SyncPage(SyncPage),
    /// The platform refused the sync token.
    Refused,
}

fn fetch(
    session: &Session,
    budget: &mut Budget,
    t: &SyncEndpoints,
    what: &str,
    url: &str,
) -> Result<Got, Failure> {
    if !budget.take(t.group) {
        return Err(Failure::Later(format!(
            "this run's budget of {} requests is spent",
            match t.group {
                Group::Light => "Light",
                Group::Heavy => "Heavy",
            }
        )));
    }
    let (status, body) = session.get_bytes(what, url).map_err(|e| match e {
        PlatformError::RateLimited { .. } => Failure::Later(e.to_string()),
        e => Failure::Platform(e),
    })?;
    if status == 200 {
        return serde_json::from_slice(&body)
            .map(Got::SyncPage)
            .map_err(|e| {
                Failure::Platform(PlatformError::BadAnswer {
                    detail: format!("{what}: {e}"),
                })
            });
    }
    let err = Session::error_of(status, &body);
    if let PlatformError::Api {
        code,
        message,
        details,
        ..
    } = &err
    {
        if status == 403 && matches!(code.as_deref(), Some("InsufficientPermissions" | "CMN-401")) {
            let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
            let errors = parsed.get("errors").and_then(Value::as_array);
            let name = errors
                .into_iter()
                .flatten()
                .find_map(|e| e.get("permissionName")?.as_str());
            return Err(Failure::Permission(
                name.unwrap_or(t.permission).to_string(),
            ));
        }
        let text = format!("{message} {}", details.join(" "));
        if url.contains("syncType=ISync") && needs_full_sync(status, code.as_deref(), &text) {
            return Ok(Got::Refused);
        }
    }
    Err(Failure::Platform(err))
}

fn heads(records: Vec<Box<RawValue>>, source: &'static str, out: &mut Vec<Fetched>) {
    for raw in records {
        let head = RecordHead::parse(&raw);
        out.push(Fetched { source, raw, head });
    }
}

fn oldest(records: &[Fetched], fallback: SystemTime) -> SystemTime {
    records
        .iter()
        .filter_map(|r| r.head.time())
        .min()
        .unwrap_or(fallback)
}

/// What one kind's sync brought: its records, the sync point to store, and why it stopped short.
#[derive(Debug)]
pub(crate) struct Synced {
    /// Records in the order fetched (newest first within a page).
    pub records: Vec<Fetched>,
    /// The new sync point; `None` when nothing moved.
    pub point: Option<SyncPoint>,
    /// The step actually taken (an ISync may have become an FSync).
    pub step: SyncStep,
    /// Set when the run stopped short (rate limit, budget); the point then says where.
    pub stopped: Option<Failure>,
}

/// Syncs one kind: the `step` `plan::step` chose, an FSync instead when the platform asks, then
/// as much of the older part as the budget allows. `full_from` is where a forced FSync starts.
pub(crate) fn sync(
    session: &Session,
    budget: &mut Budget,
    t: &SyncEndpoints,
    step: SyncStep,
    old: Option<&SyncPoint>,
    full_from: SystemTime,
) -> Result<Synced, Failure> {
    let mut records = Vec::new();
    let mut step = step;
    let mut point = None;
    if let SyncStep::ISync { token, .. } = &step {
        let url = format!("{}?syncType=ISync&syncToken={}", t.sync, encode(token));
        match fetch(session, budget, t, "sync (ISync)", &url)? {
            Got::SyncPage(p) if p.records.len() < MAX_SYNC_RECORDS => {
                point = Some(SyncPoint {
                    backfill: old.and_then(|o| o.backfill.clone()),
                    ..p.point(t)
                });
                heads(p.records, t.sources.0, &mut records);
            }
            Got::SyncPage(_) => {
                info!(
                    "{}: {MAX_SYNC_RECORDS} changes or more since the last run: a full sync instead",
                    t.sync
                );
                step = SyncStep::FSync { from: full_from };
            }
            Got::Refused => {
                info!(
                    "{}: the platform wants a full sync (the sync token is no longer valid)",
                    t.sync
                );
                step = SyncStep::FSync { from: full_from };
            }
        }
    }
    if let SyncStep::FSync { from } = step {
        let url = format!(
            "{}?syncType=FSync&dateFrom={}&recordCount={MAX_SYNC_RECORDS}{}",
            t.sync,
            encode(&time(from)),
            t.frame_query
        );
        let Got::SyncPage(p) = fetch(session, budget, t, "sync (FSync)", &url)? else {
            unreachable!("only ISync is refused");
        };
        let older = p
            .sync_info
            .get("olderRecordsExist")
            .and_then(Value::as_bool);
        let more = older == Some(true) || p.records.len() >= MAX_SYNC_RECORDS;
        let mut new_point = p.point(t);
        heads(p.records, t.sources.0, &mut records);
        // Up to a second past the oldest: records of the same millisecond may not all have
        // fitted, and whether `dateTo` is inclusive is not documented. Repeats are dropped.
        new_point.backfill = more.then(|| {
            let to = oldest(&records, SystemTime::now()) + Duration::from_secs(1);
            (time(from), time(to))
        });
        point = Some(new_point);
    }
    let mut stopped = None;
    if let Some(p) = point.as_mut() {
        if let Some((from, to)) = p.backfill.clone() {
            match list(session, budget, t, &from, &to, &mut records) {
                Ok(()) => p.backfill = None,
                Err((reached, why)) => {
                    p.backfill = Some((from, reached));
                    stopped = Some(why);
                }
            }
        }
    }
    Ok(Synced {
        records,
        point,
        step,
        stopped,
    })
}

/// Lists `from…to` page by page, newest first; on failure says how far back it got.
fn list(
    session: &Session,
    budget: &mut Budget,
    t: &SyncEndpoints,
    from: &str,
    to: &str,
    out: &mut Vec<Fetched>,
) -> Result<(), (String, Failure)> {
    let mut url = format!(
        "{}?dateFrom={}&dateTo={}&perPage={MAX_SYNC_RECORDS}&page=1{}",
        t.list,
        encode(from),
        encode(to),
        t.frame_query
    );
    let mut reached = to.to_string();
    // Bounded by the budget: every page takes one request of it.
    loop {
        let page = match fetch(session, budget, t, "list", &url) {
            Ok(Got::SyncPage(p)) => p,
            Ok(Got::Refused) => unreachable!("only ISync is refused"),
            Err(e) => return Err((reached, e)),
        };
        let start = out.len();
        heads(page.records, t.sources.1, out);
        if let Some(t) = out[start..].iter().filter_map(|r| r.head.time()).min() {
            reached = time(t);
        }
        let next = page.navigation.get("nextPage").and_then(|n| n.get("uri"));
        match next.and_then(Value::as_str) {
            Some(next) if next != url => url = next.to_string(),
            _ => return Ok(()),
        }
    }
}
