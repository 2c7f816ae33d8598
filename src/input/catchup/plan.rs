//! `catchup`'s pure decisions: what the subscription's filters cover, which sync to ask for, when
//! the platform's answer means "start over", which records count, the per-run budget and the
//! summary line. No I/O, no clock: times come in as arguments.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::state::SyncPoint;

/// Message types the message store knows ([SPEC] MessageTypeEnum, sent as `messageType`).
pub(crate) const MESSAGE_TYPES: &[&str] = &["SMS", "Pager", "VoiceMail", "Fax"];

/// Call Log Sync returns at most this many records; an ISync that brings this many may have lost
/// some, and its FSync (`recordCount` max 250) leaves older ones to the call-log list.
pub(crate) const MAX_SYNC_RECORDS: usize = 250;

/// Records created this long before the last sync point still count: the platform syncs with an
/// overlap (5 s), and messages and calls reach the stores a little after they happen.
pub(crate) const MESSAGE_SLACK: Duration = Duration::from_secs(3600);
/// A call reaches the call log when it ends (15–30 s after): its start may be hours before.
pub(crate) const CALL_SLACK: Duration = Duration::from_secs(3 * 3600);
/// The call log reaches back 30 days at most ([SPEC] syncAccountCallLog `dateFrom`).
pub(crate) const CALL_LOG_DEPTH: Duration = Duration::from_secs(30 * 86_400 - 3600);
/// Without a sync point, a notification or `--since`: the platform's own default window.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(86_400);

/// One message type (and direction, when the filter names one) a filter asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MessageKind {
    /// `SMS`, `Pager`, `VoiceMail` or `Fax`.
    pub kind: &'static str,
    /// `Inbound` or `Outbound`; `None` for both.
    pub direction: Option<String>,
}

/// Which calls the filters cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallScope {
    /// An account-level telephony or presence filter: every extension's calls.
    Account,
    /// The calls of these extensions only.
    Extensions(Vec<String>),
}

/// What the subscription's filters cover, and so what `catchup` may fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    /// Account id as the filters name it (`~` when they do not).
    pub account: String,
    /// Message kinds by extension id.
    pub messages: BTreeMap<String, Vec<MessageKind>>,
    /// Calls, when a telephony or presence filter is there.
    pub calls: Option<CallScope>,
}

impl Coverage {
    /// True when no filter covers messages or calls.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.calls.is_none()
    }

    /// True when a message of `kind` and `direction` for `extension` is covered.
    pub(crate) fn covers_message(&self, extension: &str, kind: &str, direction: &str) -> bool {
        self.messages.get(extension).is_some_and(|kinds| {
            kinds
                .iter()
                .any(|k| k.kind == kind && k.direction.as_deref().is_none_or(|d| d == direction))
        })
    }

    /// True when a call of `extension` (`None`: the record does not say) is covered.
    pub(crate) fn covers_call(&self, extension: Option<&str>) -> bool {
        match (&self.calls, extension) {
            (None, _) => false,
            (Some(CallScope::Account), _) => true,
            // A record that does not name its extension is kept: better once too often than lost.
            (Some(CallScope::Extensions(_)), None) => true,
            (Some(CallScope::Extensions(list)), Some(e)) => list.iter().any(|x| x == e),
        }
    }

    /// The `messageType` set a Message Sync frame for `extension` asks for, as stored with its
    /// token (a changed set needs a new frame).
    pub(crate) fn frame(&self, extension: &str) -> String {
        let mut kinds: Vec<&str> = self.messages[extension].iter().map(|k| k.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.join(",")
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Reads what `filters` (as the platform reports them, ids in place of `~`) cover.
pub(crate) fn coverage(filters: &[String]) -> Coverage {
    let mut c = Coverage {
        account: "~".into(),
        ..Coverage::default()
    };
    let mut call_exts: Vec<String> = Vec::new();
    let mut all_calls = false;
    for f in filters {
        let (path, query) = f.split_once('?').unwrap_or((f, ""));
        let Some(rest) = path.strip_prefix("/restapi/v1.0/account/") else {
            continue;
        };
        let (account, rest) = rest.split_once('/').unwrap_or((rest, ""));
        c.account = account.to_string();
        let (ext, what) = match rest.strip_prefix("extension/") {
            Some(r) => {
                let (e, w) = r.split_once('/').unwrap_or((r, ""));
                (Some(e), w)
            }
            None => (None, rest),
        };
        let direction = query_value(query, "direction").map(str::to_string);
        let typed = |t: Option<&str>| -> Vec<&'static str> {
            match t {
                None => MESSAGE_TYPES.to_vec(),
                Some(t) => MESSAGE_TYPES
                    .iter()
                    .copied()
                    .filter(|k| k.eq_ignore_ascii_case(t))
                    .collect(),
            }
        };
        let (kinds, direction): (Vec<&'static str>, Option<String>) = match what {
            "message-store" => (typed(query_value(query, "type")), direction),
            // Only new inbound SMS are pushed on this filter.
            "message-store/instant" => (vec!["SMS"], Some("Inbound".into())),
            "voicemail" => (vec!["VoiceMail"], direction),
            "fax" => (vec!["Fax"], direction),
            "presence" | "telephony/sessions" => {
                match ext {
                    Some(e) => call_exts.push(e.to_string()),
                    None => all_calls = true,
                }
                continue;
            }
            _ => continue,
        };
        let Some(ext) = ext else { continue };
        let list = c.messages.entry(ext.to_string()).or_default();
        for kind in kinds {
            let k = MessageKind {
                kind,
                direction: direction.clone(),
            };
            if !list.contains(&k) {
                list.push(k);
            }
        }
    }
    c.messages.retain(|_, kinds| !kinds.is_empty());
    if all_calls {
        c.calls = Some(CallScope::Account);
    } else if !call_exts.is_empty() {
        call_exts.sort();
        call_exts.dedup();
        c.calls = Some(CallScope::Extensions(call_exts));
    }
    c
}

/// Which sync to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncStep {
    /// Changes since the token.
    ISync {
        /// The stored token.
        token: String,
        /// Records created before this are not new (modified old ones also come back).
        cutoff: SystemTime,
    },
    /// A full sync of everything since `from`.
    FSync {
        /// Start of the frame.
        from: SystemTime,
    },
}

/// Where a full sync starts without a usable token: `--since`, else where the last sync reached,
/// else the last notification in the log, else the platform's default day.
pub(crate) fn full_from(
    since: Option<SystemTime>,
    point: Option<&SyncPoint>,
    last_notification: Option<SystemTime>,
    now: SystemTime,
) -> SystemTime {
    since
        .or_else(|| point.and_then(|p| humantime::parse_rfc3339_weak(&p.time).ok()))
        .or(last_notification)
        .unwrap_or(now - DEFAULT_WINDOW)
}

/// Where a full sync of messages starts: [`full_from`], less [`MESSAGE_SLACK`] unless it is
/// `--since` (a time the user chose). The last run reached its sync time, but a message created
/// before it may reach the store after it: the platform's own sync overlap is 5 s, RingCentral's
/// voicemail sample is stored 10 s after its creationTime, and a long voicemail or a fax only
/// when it ends, minutes later. Without the slack, a full sync in place of a refused token
/// would start exactly at the sync time and never see such a message; with it, the full sync
/// reaches back as far as the ISync it replaces accepts (its cutoff is the same slack), and the
/// log's dedupe drops the overlap.
pub(crate) fn message_full_from(
    since: Option<SystemTime>,
    point: Option<&SyncPoint>,
    last_notification: Option<SystemTime>,
    now: SystemTime,
) -> SystemTime {
    let from = full_from(since, point, last_notification, now);
    match since {
        Some(_) => from,
        None => from - MESSAGE_SLACK,
    }
}

/// ISync when there is a token for this very frame and no `--since`; FSync otherwise.
pub(crate) fn step(
    since: Option<SystemTime>,
    point: Option<&SyncPoint>,
    frame: &str,
    last_notification: Option<SystemTime>,
    slack: Duration,
    now: SystemTime,
) -> SyncStep {
    if since.is_none() {
        if let Some(p) = point.filter(|p| p.frame == frame) {
            if let (Some(token), Ok(t)) = (&p.token, humantime::parse_rfc3339_weak(&p.time)) {
                return SyncStep::ISync {
                    token: token.clone(),
                    cutoff: t - slack,
                };
            }
        }
    }
    SyncStep::FSync {
        from: full_from(since, point, last_notification, now),
    }
}

/// True when an error answer to an ISync means the token is no good and a full sync is due:
/// MSG-333, CLG-101…105, and "Parameter [syncToken] is invalid" (CMN-101, also sent when more
/// than 250 call-log records arrived since the token).
pub(crate) fn needs_full_sync(status: u16, code: Option<&str>, text: &str) -> bool {
    if status != 400 {
        return false;
    }
    let code = code.unwrap_or("");
    code == "MSG-333"
        || matches!(
            code,
            "CLG-101" | "CLG-102" | "CLG-103" | "CLG-104" | "CLG-105"
        )
        || text.contains("syncToken")
}

/// The platform's rate groups `catchup` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Message Sync and the message list (50 a minute).
    Light,
    /// Every call-log endpoint (10 a minute).
    Heavy,
}

/// Requests one run may make; what does not fit is left for the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Light requests left.
    pub light: u32,
    /// Heavy requests left.
    pub heavy: u32,
}

impl Default for Budget {
    /// Well inside a minute's allowance (Light 50, Heavy 10), so a run never brings on the
    /// platform's 60 s penalty by itself.
    fn default() -> Budget {
        Budget {
            light: 40,
            heavy: 8,
        }
    }
}

impl Budget {
    /// Takes one request of `group`; false when none is left.
    pub(crate) fn take(&mut self, group: Group) -> bool {
        let left = match group {
            Group::Light => &mut self.light,
            Group::Heavy => &mut self.heavy,
        };
        if *left == 0 {
            return false;
        }
        *left -= 1;
        true
    }
}

/// What a run recovered, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Messages by type, in [`MESSAGE_TYPES`] order of first appearance.
    pub messages: Vec<(String, usize)>,
    /// Calls.
    pub calls: usize,
}

impl Tally {
    /// Counts one message of `kind`.
    pub(crate) fn message(&mut self, kind: &str) {
        match self.messages.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => self.messages.push((kind.to_string(), 1)),
        }
    }

    /// Messages in all.
    pub(crate) fn message_count(&self) -> usize {
        self.messages.iter().map(|(_, n)| n).sum()
    }
}

fn minute(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{}Z", &s[..16])
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// `recovered 3 messages (2 SMS, 1 voicemail) and 5 calls for 2026-11-23T02:10Z…04:55Z`.
pub(crate) fn summary(tally: &Tally, from: SystemTime, to: SystemTime, dry_run: bool) -> String {
    let mut counts = tally.messages.clone();
    // Most first; ties in the store's type order.
    counts.sort_by_key(|(k, n)| {
        let order = MESSAGE_TYPES.iter().position(|t| t == k);
        (std::cmp::Reverse(*n), order)
    });
    let kinds: Vec<String> = counts
        .iter()
        .map(|(k, n)| {
            let name = match k.as_str() {
                "VoiceMail" => "voicemail",
                "Fax" => "fax",
                "Pager" => "pager",
                other => other,
            };
            format!("{n} {name}")
        })
        .collect();

    let detail = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    let (a, b) = (minute(from), minute(to));
    // Same day: the end shows the time only.
    let b = if a[..10] == b[..10] { &b[11..] } else { &b[..] };
    format!(
        "{} {}{detail} and {} for {a}…{b}",
        if dry_run {
            "would recover"
        } else {
            "recovered"
        },
        plural(tally.message_count(), "message"),
        plural(tally.calls, "call"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn filters_map_to_what_they_cover() {
        let f = |list: &[&str]| coverage(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let k = |kind, d: Option<&str>| MessageKind {
            kind,
            direction: d.map(str::to_string),
        };
        let c = f(&[
            "/restapi/v1.0/account/37/extension/62000/message-store/instant?type=SMS",
            "/restapi/v1.0/account/37/extension/62000/voicemail",
            "/restapi/v1.0/account/37/extension/62001/fax?direction=Inbound",
            "/restapi/v1.0/account/37/extension/62002/message-store",
            "/restapi/v1.0/account/37/extension/62003/message-store?type=Pager",
            "/restapi/v1.0/account/37/extension/62000/presence?detailedTelephonyState=true",
            "/restapi/v1.0/glip/posts",
            "/restapi/v1.0/subscription/~?threshold=60&interval=15",
        ]);
        assert_eq!(c.account, "37");
        assert_eq!(
            c.messages["62000"],
            [k("SMS", Some("Inbound")), k("VoiceMail", None)]
        );
        assert_eq!(c.messages["62001"], [k("Fax", Some("Inbound"))]);
        assert_eq!(c.messages["62002"].len(), 4);
        assert_eq!(c.messages["62003"], [k("Pager", None)]);
        assert_eq!(c.calls, Some(CallScope::Extensions(vec!["62000".into()])));
        assert!(c.covers_message("62000", "SMS", "Inbound"));
        assert!(!c.covers_message("62000", "SMS", "Outbound"));
        assert!(!c.covers_message("62001", "SMS", "Inbound"));
        assert!(c.covers_call(Some("62000")) && !c.covers_call(Some("62001")));
        assert_eq!(c.frame("62000"), "SMS,VoiceMail");

        let c = f(&["/restapi/v1.0/account/~/telephony/sessions"]);
        assert_eq!(c.calls, Some(CallScope::Account));
        assert!(c.messages.is_empty() && c.covers_call(Some("1")));
        assert!(f(&["/restapi/v1.0/glip/posts"]).is_empty());
        assert!(f(&["/restapi/v1.0/account/~/extension/~/message-store?type=Nope"]).is_empty());
    }

    #[test]
    fn isync_only_with_a_token_for_the_same_frame() {
        let now = t("2026-11-23T05:00:00Z");
        let point = SyncPoint {
            token: Some("tok".into()),
            time: "2026-11-23T04:00:00Z".into(),
            frame: "SMS".into(),
            backfill: None,
        };
        let slack = Duration::from_secs(60);
        // (--since, stored point, frame, last notification, expected)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a SyncPoint>,
            &'a str,
            Option<&'a str>,
            SyncStep,
        );
        let cases: &[Case] = &[
            (
                None,
                Some(&point),
                "SMS",
                None,
                SyncStep::ISync {
                    token: "tok".into(),
                    cutoff: t("2026-11-23T03:59:00Z"),
                },
            ),
            // --since asks for that window whatever the token.
            (
                Some("2026-11-20T00:00:00Z"),
                Some(&point),
                "SMS",
                None,
                SyncStep::FSync {
                    from: t("2026-11-20T00:00:00Z"),
                },
            ),
            // Another frame (a filter was added): full sync from where the old one reached.
            (
                None,
                Some(&point),
                "SMS,VoiceMail",
                Some("2026-11-23T04:30:00Z"),
                SyncStep::FSync {
                    from: t("2026-11-23T04:00:00Z"),
                },
            ),
            // First run: from the last notification, else the last day.
            (
                None,
                None,
                "SMS",
                Some("2026-11-23T02:10:00Z"),
                SyncStep::FSync {
                    from: t("2026-11-23T02:10:00Z"),
                },
            ),
            (
                None,
                None,
                "SMS",
                None,
                SyncStep::FSync {
                    from: t("2026-11-22T05:00:00Z"),
                },
            ),
        ];
        for (since, point, frame, last, want) in cases {
            let got = step(since.map(t), *point, frame, last.map(t), slack, now);
            assert_eq!(&got, want, "{since:?} {frame}");
        }
        // A refused token (None) with its time kept: full sync from that time.
        let refused = SyncPoint {
            token: None,
            ..point.clone()
        };
        assert_eq!(
            step(None, Some(&refused), "SMS", None, slack, now),
            SyncStep::FSync {
                from: t("2026-11-23T04:00:00Z")
            }
        );
    }

    #[test]
    fn a_full_sync_of_messages_reaches_back_by_the_slack_but_not_before_since() {
        let now = t("2026-11-23T05:00:00Z");
        let point = SyncPoint {
            token: None,
            time: "2026-11-23T04:00:00Z".into(),
            ..Default::default()
        };
        assert_eq!(
            message_full_from(None, Some(&point), None, now),
            t("2026-11-23T03:00:00Z")
        );
        assert_eq!(
            message_full_from(None, None, Some(t("2026-11-23T04:30:00Z")), now),
            t("2026-11-23T03:30:00Z")
        );
        let since = t("2026-11-23T02:00:00Z");
        assert_eq!(
            message_full_from(Some(since), Some(&point), None, now),
            since
        );
    }

    #[test]
    fn which_errors_mean_start_over() {
        let cases: &[(u16, Option<&str>, &str, bool)] = &[
            (
                400,
                Some("MSG-333"),
                "Invalid message synchronisation request",
                true,
            ),
            (
                400,
                Some("CLG-101"),
                "Parameter [syncToken] is invalid",
                true,
            ),
            (400, Some("CLG-105"), "", true),
            (
                400,
                Some("CMN-101"),
                "Parameter [syncToken] is invalid [max sync record number limit is exceeded]",
                true,
            ),
            (
                400,
                Some("CMN-101"),
                "Parameter [messageType] value is invalid",
                false,
            ),
            (403, Some("CMN-401"), "syncToken", false),
            (429, Some("CMN-301"), "", false),
        ];
        for (status, code, text, want) in cases {
            assert_eq!(
                needs_full_sync(*status, *code, text),
                *want,
                "{code:?} {text}"
            );
        }
    }

    #[test]
    fn budget_runs_out() {
        let mut b = Budget { light: 1, heavy: 0 };
        assert!(b.take(Group::Light));
        assert!(!b.take(Group::Light));
        assert!(!b.take(Group::Heavy));
    }

    #[test]
    fn the_summary_line() {
        let mut tally = Tally::default();
        tally.message("VoiceMail");
        tally.message("SMS");
        tally.message("SMS");
        tally.calls = 5;
        let (a, b) = (t("2026-11-23T02:10:09Z"), t("2026-11-23T04:55:59Z"));
        assert_eq!(
            summary(&tally, a, b, false),
            "recovered 3 messages (2 SMS, 1 voicemail) and 5 calls for 2026-11-23T02:10Z…04:55Z"
        );
        tally = Tally::default();
        tally.calls = 1;
        assert_eq!(
            summary(&tally, a, t("2026-11-24T00:00:00Z"), true),
            "would recover 0 messages and 1 call for 2026-11-23T02:10Z…2026-11-24T00:00Z"
        );
    }
}
