//! The decision, pure: (what is wanted, what exists, what we own) → one plan.
//!
//! Rules, in order:
//! - Ours are the WebHook subscriptions at the wanted address, plus the one the state file
//!   names wherever it points. Subscriptions at other addresses that the state file does not
//!   name belong to someone else and are never touched.
//! - Of the active ones at our address one is kept (the state's, else one with the wanted
//!   filters, else the longest-lived); every other one there is a duplicate and is deleted.
//! - The kept one is updated when its filter *set* differs after [`normalise`], renewed when less
//!   than a third of its granted lifetime is left (see [`needs_renew`]), else left alone.
//! - With none active at our address: the state's one at another address is *moved* (delete +
//!   create), a non-active one here is *replaced* (delete + create), and otherwise one is created.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::platform::Subscription;

/// What the configuration asks for.
#[derive(Debug, Clone)]
pub(crate) struct Wanted<'a> {
    /// Delivery address.
    pub address: &'a str,
    /// Event filters, `{extensionId}` already expanded.
    pub filters: &'a [String],
    /// Lifetime asked for, in seconds.
    pub expires_in: u64,
}

/// What the state file says this installation owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owned {
    /// Subscription id.
    pub id: String,
    /// Lifetime the platform granted at the last create, renew or update, in seconds.
    pub lifetime: Option<u64>,
}

/// The one action of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// All is well.
    Nothing,
    /// Extend the kept subscription's life.
    Renew,
    /// Set the kept subscription's filters (`PUT`, same id).
    Update,
    /// Ours is not active (blacklisted, suspended): delete it and create a new one.
    Replace,
    /// The address changed: delete ours at the old address and create one at the new.
    Move,
    /// Nothing of ours exists: create one.
    Create,
}

impl Action {
    /// The word for reports: `created`, `renewed`... (`nothing` for nothing).
    pub(crate) fn done(self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::Renew => "renewed",
            Action::Update => "updated",
            Action::Replace => "replaced",
            Action::Move => "moved",
            Action::Create => "created",
        }
    }

    /// The word for a dry run: `create`, `renew`...
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::Renew => "renew",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Move => "move",
            Action::Create => "create",
        }
    }

    /// True when the action creates a subscription (and so needs the handshake to pass).
    pub(crate) fn creates(self) -> bool {
        matches!(self, Action::Replace | Action::Move | Action::Create)
    }
}

/// Why a subscription is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// Another active one at our address is kept.
    Duplicate,
    /// Not active (the status, and the blacklist reason when given).
    NotActive(String),
    /// Ours, at an address no longer configured.
    OldAddress(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Duplicate => f.write_str("a duplicate at the same address"),
            Why::NotActive(s) => write!(f, "{s}"),
            Why::OldAddress(a) => write!(f, "ours at the old address {a}"),
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The one action.
    pub action: Action,
    /// The subscription kept (for nothing, renew and update).
    pub keep: Option<String>,
    /// Deleted before the action, in this order.
    pub delete: Vec<(String, Why)>,
}

/// A filter in a form the platform's rewrites do not change: the account segment as `~` (a
/// token only ever sees its own account), the token owner's extension id as `~`, the
/// subscription's own id as `~`, no trailing slash, query parameters sorted.
pub(crate) fn normalise(
    filter: &str,
    owner_id: Option<&str>,
    subscription_id: Option<&str>,
) -> String {
    let (path, query) = match filter.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (filter, None),
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let prev = if i > 0 { segments[i - 1] } else { "" };
        let same = |id: Option<&str>| id.is_some_and(|id| id == *seg);
        let tilde = match prev {
            "account" => true,
            "extension" => same(owner_id),
            "subscription" => same(subscription_id),
            _ => false,
        };
        out.push(if tilde { "~" } else { seg });
    }
    let mut text = out.join("/");
    if let Some(q) = query {
        let mut params: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
        params.sort_unstable();
        if !params.is_empty() {
            text.push('?');
            text.push_str(&params.join("&"));
        }
    }
    text
}

fn filter_set<'a>(
    filters: impl IntoIterator<Item = &'a String>,
    owner_id: Option<&str>,
    subscription_id: Option<&str>,
) -> BTreeSet<String> {
    filters
        .into_iter()
        .map(|f| normalise(f, owner_id, subscription_id))
        .collect()
}

/// True when `sub` has the wanted filters, whatever ids the platform wrote in for `~`.
pub(crate) fn same_filters(sub: &Subscription, wanted: &[String], owner_id: Option<&str>) -> bool {
    filter_set(&sub.filters, owner_id, Some(&sub.id)) == filter_set(wanted, owner_id, None)
}

/// True when less than a third of the subscription's lifetime is left.
///
/// The lifetime is what the platform granted (the state file records it at each create, renew
/// and update), else its expiry minus its creation, never more than is asked: the platform may
/// grant less than asked, and judging against the asked 10 years would renew on every run.
pub(crate) fn needs_renew(
    sub: &Subscription,
    owned: Option<&Owned>,
    wanted_lifetime: u64,
    now: SystemTime,
) -> bool {
    let Some(expires) = sub.expires_at else {
        return false;
    };
    let left = expires.duration_since(now).unwrap_or(Duration::ZERO);
    let granted = owned
        .filter(|o| o.id == sub.id)
        .and_then(|o| o.lifetime)
        .map(Duration::from_secs)
        .or_else(|| sub.created_at.and_then(|c| expires.duration_since(c).ok()))
        .unwrap_or(Duration::from_secs(wanted_lifetime))
        .min(Duration::from_secs(wanted_lifetime));
    left < granted / 3
}

/// True when `sub` is a WebHook delivering to `address`.
fn delivers_to(sub: &Subscription, address: Option<&str>) -> bool {
    address.is_some()
        && sub.address.as_deref() == address
        && sub.transport.eq_ignore_ascii_case("WebHook")
}

/// True when `sub` belongs to this installation: the one the state file names (`owned_id`),
/// wherever it points, or a WebHook at our `address`. Anything else is someone else's.
pub(crate) fn is_ours(sub: &Subscription, owned_id: Option<&str>, address: Option<&str>) -> bool {
    Some(sub.id.as_str()) == owned_id || delivers_to(sub, address)
}

/// True when `register` or `unregister` may change or delete `sub` without being given its id:
/// ours, and a WebHook. A WebSocket subscription (`connect`'s, whose state file may be this
/// one) lives and dies with its socket: only `connect` ends it, or `unregister --id`.
pub(crate) fn is_ours_to_change(
    sub: &Subscription,
    owned_id: Option<&str>,
    address: Option<&str>,
) -> bool {
    sub.transport.eq_ignore_ascii_case("WebHook") && is_ours(sub, owned_id, address)
}

/// Decides what to do. Pure: the same inputs give the same plan.
pub(crate) fn plan(
    wanted: &Wanted<'_>,
    existing: &[Subscription],
    owned: Option<&Owned>,
    owner_id: Option<&str>,
    now: SystemTime,
) -> Plan {
    let owned_id = owned.map(|o| o.id.as_str());
    let address = Some(wanted.address);
    let here: Vec<&Subscription> = existing
        .iter()
        .filter(|s| delivers_to(s, address))
        .collect();
    let elsewhere = existing
        .iter()
        .find(|s| is_ours_to_change(s, owned_id, address) && s.address.as_deref() != address);

    // The keeper: ours by the state file, else the right filters, else the longest-lived.
    let keeper = here.iter().filter(|s| s.is_active()).max_by_key(|s| {
        (
            Some(s.id.as_str()) == owned_id,
            same_filters(s, wanted.filters, owner_id),
            s.expires_at,
        )
    });

    let mut delete = Vec::new();
    for s in &here {
        if Some(s.id.as_str()) == keeper.map(|k| k.id.as_str()) {
            continue;
        }
        let why = if s.is_active() {
            Why::Duplicate
        } else {
            Why::NotActive(match &s.blacklist_reason {
                Some(r) => format!("{}: {r}", s.status),
                None => s.status.clone(),
            })
        };
        delete.push((s.id.clone(), why));
    }
    if let Some(old) = elsewhere {
        delete.push((
            old.id.clone(),
            Why::OldAddress(old.address.clone().unwrap_or_default()),
        ));
    }

    let (action, keep) = match keeper {
        Some(k) if !same_filters(k, wanted.filters, owner_id) => (Action::Update, Some(k)),
        Some(k) if needs_renew(k, owned, wanted.expires_in, now) => (Action::Renew, Some(k)),
        Some(k) => (Action::Nothing, Some(k)),
        None if elsewhere.is_some() => (Action::Move, None),
        None if !here.is_empty() => (Action::Replace, None),
        None => (Action::Create, None),
    };
    Plan {
        action,
        keep: keep.map(|k| k.id.clone()),
        delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const TEN_YEARS: u64 = 315_360_000;
    const ADDR: &str = "https://hooks.example.com/webhook";
    const OWNER: &str = "2253168021";

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// A subscription as the platform lists it: `~` rewritten to real ids.
    fn sub(
        id: &str,
        status: &str,
        address: &str,
        filters: &[&str],
        days_left: u64,
    ) -> Subscription {
        Subscription {
            id: id.into(),
            status: status.into(),
            filters: filters
                .iter()
                .map(|f| {
                    f.replace("account/~", "account/37439510")
                        .replace("extension/~", &format!("extension/{OWNER}"))
                })
                .collect(),
            disabled: vec![],
            transport: "WebHook".into(),
            address: Some(address.into()),
            expires_at: Some(now() + Duration::from_secs(days_left * DAY)),
            created_at: Some(now() - Duration::from_secs(DAY)),
            blacklist_reason: None,
        }
    }

    fn owned(id: &str, lifetime_days: u64) -> Owned {
        Owned {
            id: id.into(),
            lifetime: Some(lifetime_days * DAY),
        }
    }

    const F1: &str = "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS";
    const F2: &str =
        "/restapi/v1.0/account/~/extension/62/presence?detailedTelephonyState=true&aggregated=true";
    const F3: &str = "/restapi/v1.0/glip/posts";

    struct Case {
        name: &'static str,
        existing: Vec<Subscription>,
        owned: Option<Owned>,
        wanted: &'static [&'static str],
        action: Action,
        keep: Option<&'static str>,
        delete: &'static [&'static str],
    }

    #[test]
    fn plans() {
        let cases = vec![
            Case {
                name: "nothing exists: create",
                existing: vec![],
                owned: None,
                wanted: &[F1],
                action: Action::Create,
                keep: None,
                delete: &[],
            },
            Case {
                name: "same filters after the platform rewrote ~: nothing",
                existing: vec![sub("a", "Active", ADDR, &[F1, F2], 89)],
                owned: Some(owned("a", 90)),
                wanted: &[F2, F1],
                action: Action::Nothing,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "granted far less than asked, fresh: nothing (not renew every run)",
                existing: vec![sub("a", "Active", ADDR, &[F1], 7)],
                owned: Some(owned("a", 7)),
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "less than a third of the lifetime left: renew",
                existing: vec![sub("a", "Active", ADDR, &[F1], 20)],
                owned: Some(owned("a", 90)),
                wanted: &[F1],
                action: Action::Renew,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "no state: lifetime from creation time",
                existing: vec![sub("a", "Active", ADDR, &[F1], 89)],
                owned: None,
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "filter added: update",
                existing: vec![sub("a", "Active", ADDR, &[F1], 89)],
                owned: Some(owned("a", 90)),
                wanted: &[F1, F3],
                action: Action::Update,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "filter removed: update",
                existing: vec![sub("a", "Active", ADDR, &[F1, F3], 89)],
                owned: Some(owned("a", 90)),
                wanted: &[F1],
                action: Action::Update,
                keep: Some("a"),
                delete: &[],
            },
            Case {
                name: "blacklisted at our address: replace",
                existing: vec![sub("a", "Blacklisted", ADDR, &[F1], 89)],
                owned: Some(owned("a", 90)),
                wanted: &[F1],
                action: Action::Replace,
                keep: None,
                delete: &["a"],
            },
            Case {
                name: "suspended (older docs): replace",
                existing: vec![sub("a", "Suspended", ADDR, &[F1], 89)],
                owned: None,
                wanted: &[F1],
                action: Action::Replace,
                keep: None,
                delete: &["a"],
            },
            Case {
                name: "address changed: move",
                existing: vec![sub("a", "Active", "https://old.example/webhook", &[F1], 89)],
                owned: Some(owned("a", 90)),
                wanted: &[F1],
                action: Action::Move,
                keep: None,
                delete: &["a"],
            },
            Case {
                name: "others' subscriptions are never touched",
                existing: vec![
                    sub("x", "Active", "https://other.example/hook", &[F1], 89),
                    sub("y", "Blacklisted", "https://other.example/hook", &[F1], 89),
                ],
                owned: None,
                wanted: &[F1],
                action: Action::Create,
                keep: None,
                delete: &[],
            },
            Case {
                name: "duplicates: keep the state's, delete the rest",
                existing: vec![
                    sub("a", "Active", ADDR, &[F1], 89),
                    sub("b", "Active", ADDR, &[F1], 89),
                    sub("c", "Blacklisted", ADDR, &[F1], 89),
                ],
                owned: Some(owned("b", 90)),
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("b"),
                delete: &["a", "c"],
            },
            Case {
                name: "duplicates without state: keep the one with the right filters",
                existing: vec![
                    sub("a", "Active", ADDR, &[F3], 300),
                    sub("b", "Active", ADDR, &[F1], 89),
                ],
                owned: None,
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("b"),
                delete: &["a"],
            },
            Case {
                name: "moved already, old one left behind: delete it, keep the new",
                existing: vec![
                    sub("old", "Active", "https://old.example/webhook", &[F1], 89),
                    sub("new", "Active", ADDR, &[F1], 89),
                ],
                owned: Some(owned("old", 90)),
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("new"),
                delete: &["old"],
            },
            Case {
                name: "state names a subscription that is gone: create",
                existing: vec![],
                owned: Some(owned("gone", 90)),
                wanted: &[F1],
                action: Action::Create,
                keep: None,
                delete: &[],
            },
            Case {
                name: "blacklisted duplicate beside an active one: delete it, nothing else",
                existing: vec![
                    sub("a", "Blacklisted", ADDR, &[F1], 89),
                    sub("b", "Active", ADDR, &[F1], 89),
                ],
                owned: Some(owned("a", 90)),
                wanted: &[F1],
                action: Action::Nothing,
                keep: Some("b"),
                delete: &["a"],
            },
        ];
        for c in cases {
            let wanted: Vec<String> = c.wanted.iter().map(|s| s.to_string()).collect();
            let p = plan(
                &Wanted {
                    address: ADDR,
                    filters: &wanted,
                    expires_in: TEN_YEARS,
                },
                &c.existing,
                c.owned.as_ref(),
                Some(OWNER),
                now(),
            );
            assert_eq!(p.action, c.action, "{}: {p:?}", c.name);
            assert_eq!(p.keep.as_deref(), c.keep, "{}: {p:?}", c.name);
            let deleted: Vec<&str> = p.delete.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(deleted, c.delete, "{}: {p:?}", c.name);
        }
    }

    #[test]
    fn ours_is_the_state_ones_or_a_webhook_at_our_address() {
        let mut socket = sub("ws", "Active", ADDR, &["/a"], 100);
        socket.transport = "WebSocket".into();
        let cases: &[(&Subscription, Option<&str>, Option<&str>, bool)] = &[
            (
                &sub("a", "Active", ADDR, &["/a"], 100),
                None,
                Some(ADDR),
                true,
            ),
            (&sub("a", "Active", ADDR, &["/a"], 100), None, None, false),
            (
                &sub("b", "Active", "https://other/", &[], 1),
                Some("b"),
                Some(ADDR),
                true,
            ),
            (
                &sub("b", "Active", "https://other/", &[], 1),
                Some("c"),
                Some(ADDR),
                false,
            ),
            (
                &sub("b", "Active", "https://other/", &[], 1),
                None,
                None,
                false,
            ),
            (&socket, None, Some(ADDR), false),
            (&socket, Some("ws"), None, true),
        ];
        for (s, owned_id, address, want) in cases {
            assert_eq!(
                is_ours(s, *owned_id, *address),
                *want,
                "{} {owned_id:?} {address:?}",
                s.id
            );
            // Listed as ours, but never changed or deleted without its id.
            assert_eq!(
                is_ours_to_change(s, *owned_id, *address),
                *want && s.transport == "WebHook",
                "{} {owned_id:?} {address:?}",
                s.id
            );
        }
    }

    #[test]
    fn normalising_undoes_the_platforms_rewrites() {
        let n = |f: &str| normalise(f, Some(OWNER), Some("sub-1"));
        assert_eq!(
            n("/restapi/v1.0/account/37439510/extension/2253168021/presence?b=2&a=1"),
            "/restapi/v1.0/account/~/extension/~/presence?a=1&b=2"
        );
        assert_eq!(
            n("/restapi/v1.0/account/~/extension/~/presence?a=1&b=2"),
            "/restapi/v1.0/account/~/extension/~/presence?a=1&b=2"
        );
        // Another extension's id stays: it is not what `~` means.
        assert_eq!(
            n("/restapi/v1.0/account/1/extension/62/presence"),
            "/restapi/v1.0/account/~/extension/62/presence"
        );
        assert_eq!(
            n("/restapi/v1.0/subscription/sub-1?threshold=60&interval=30"),
            "/restapi/v1.0/subscription/~?interval=30&threshold=60"
        );
        assert_eq!(n("/restapi/v1.0/glip/posts/"), "/restapi/v1.0/glip/posts");
    }

    #[test]
    fn renew_threshold_is_a_third_of_the_granted_lifetime() {
        let s = sub("a", "Active", ADDR, &[F1], 31);
        assert!(!needs_renew(&s, Some(&owned("a", 90)), TEN_YEARS, now()));
        let s = sub("a", "Active", ADDR, &[F1], 29);
        assert!(needs_renew(&s, Some(&owned("a", 90)), TEN_YEARS, now()));
        // Expired but still listed: renew.
        let mut s = sub("a", "Active", ADDR, &[F1], 0);
        s.expires_at = Some(now() - Duration::from_secs(60));
        assert!(needs_renew(&s, Some(&owned("a", 90)), TEN_YEARS, now()));
        // Unknown expiry: cannot judge, leave it.
        s.expires_at = None;
        assert!(!needs_renew(&s, None, TEN_YEARS, now()));
    }
}
