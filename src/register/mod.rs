//! `ringhook register`, `list` and `unregister`: keep one subscription alive, idempotently.
//!
//! `register` signs in, expands `{extensionId}`, reads the subscriptions and the state file,
//! lets the pure [`plan::plan`] decide, probes the address before any create, carries the plan
//! out, records what it owns, and signs out. A second run with the same configuration makes no
//! changing call.

pub(crate) mod check;
pub(crate) mod plan;

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::cli::{self, Flags};
use crate::config::Vars;
use crate::error::Error;
use crate::platform::{self, NewSubscription, PlatformError, Session, Subscription};
use crate::stdout;

use crate::platform::settings::{ManageSettings, PlatformSettings, RegisterSettings};
use crate::state::{self, State};
use plan::{Action, Owned, Wanted};

/// Turns a platform failure into the user's error, with what we were doing and a hint.
fn fail(what: &str) -> impl FnOnce(PlatformError) -> Error + '_ {
    move |e| Error::Runtime {
        message: format!("{what}: {e}"),
        hint: e.hint(),
    }
}

/// Signs in, runs `f`, and signs out whatever `f` returned (best effort, no retry).
fn with_session<T>(
    p: &PlatformSettings,
    f: impl FnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let session = platform::login(p.endpoint.clone(), &p.credentials)
        .map_err(fail(&format!("cannot sign in to {}", p.endpoint.server)))?;
    let result = f(&session);
    if let Err(e) = session.revoke() {
        warn!("could not end the session (revoke): {e}");
    }
    result
}

fn time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// What `register` did (or, in a dry run, would do).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterOutcome {
    /// `created`, `renewed`, `updated`, `replaced`, `moved`, `nothing` (dry run: `create`...).
    action: &'static str,
    dry_run: bool,
    id: Option<String>,
    status: Option<String>,
    address: String,
    expiration_time: Option<String>,
    filters: usize,
    deleted: Vec<String>,
}

fn reconcile(
    session: &Session,
    s: &RegisterSettings,
    saved: Option<&State>,
    dry_run: bool,
) -> Result<RegisterOutcome, Error> {
    let filters = session
        .expand_filters(&s.filters, &s.scope)
        .map_err(platform::session::ExpandError::into_error)?;
    let existing = session
        .subscriptions()
        .map_err(fail("cannot list the subscriptions"))?;
    let owned = saved.map(|st| Owned {
        id: st.id.clone(),
        lifetime: st.lifetime,
    });
    let now = SystemTime::now();
    let wanted = Wanted {
        address: &s.address,
        filters: &filters,
        expires_in: s.expires_in,
    };
    let plan = plan::plan(&wanted, &existing, owned.as_ref(), session.owner_id(), now);
    let kept = plan
        .keep
        .as_ref()
        .and_then(|id| existing.iter().find(|x| &x.id == id))
        .cloned();

    if plan.action.creates() {
        probe_before_create(s, dry_run)?;
    }

    if dry_run {
        for (id, why) in &plan.delete {
            info!("dry run: would delete {id} ({why})");
        }
        return Ok(RegisterOutcome {
            action: plan.action.verb(),
            dry_run: true,
            id: kept.as_ref().map(|k| k.id.clone()),
            status: kept.as_ref().map(|k| k.status.clone()),
            address: s.address.clone(),
            expiration_time: kept.as_ref().map(|k| time(k.expires_at)),
            filters: filters.len(),
            deleted: plan.delete.iter().map(|(id, _)| id.clone()).collect(),
        });
    }

    let sub = carry_out(session, s, &plan, kept, &filters, &existing)?;
    for (f, reason) in &sub.disabled {
        warn!("the platform disabled the filter {f}: {reason}");
    }
    record(s, saved, owned.as_ref(), plan.action, &sub, now)?;
    Ok(RegisterOutcome {
        action: plan.action.done(),
        dry_run: false,
        id: Some(sub.id.clone()),
        status: Some(sub.status.clone()),
        address: s.address.clone(),
        expiration_time: Some(time(sub.expires_at)),
        filters: filters.len(),
        deleted: plan.delete.iter().map(|(id, _)| id.clone()).collect(),
    })
}

/// Probes the address the create would name: the platform would refuse it with a vague
/// SUB-525; this says precisely why, before anything changes.
fn probe_before_create(s: &RegisterSettings, dry_run: bool) -> Result<(), Error> {
    let r = check::probe(
        &s.address,
        s.token.as_ref(),
        &s.platform.endpoint.roots,
        crate::webhook::TIME_LIMIT,
    );
    if r.ok {
        return Ok(());
    }
    let message = format!(
        "the address {} fails the handshake, so no subscription was {}: {}",
        s.address,
        if dry_run { "planned" } else { "created" },
        r.summary()
    );
    Err(Error::Runtime {
        message,
        hint: r.hint,
    })
}

/// Deletes what the plan deletes, then does its one action; the subscription we then own.
fn carry_out(
    session: &Session,
    s: &RegisterSettings,
    plan: &plan::Plan,
    kept: Option<Subscription>,
    filters: &[String],
    existing: &[Subscription],
) -> Result<Subscription, Error> {
    for (id, why) in &plan.delete {
        session
            .delete_subscription(id)
            .map_err(fail(&format!("cannot delete subscription {id}")))?;
        info!("deleted {id}: {why}");
    }
    Ok(match (plan.action, kept) {
        (Action::Nothing, Some(k)) => k,
        (Action::Renew, Some(k)) => session
            .renew_subscription(&k.id)
            .map_err(fail(&format!("cannot renew subscription {}", k.id)))?,
        (Action::Update, Some(k)) => session
            .update_subscription(&k.id, filters, s.expires_in)
            .map_err(fail(&format!("cannot update subscription {}", k.id)))?,
        _ => {
            let known: Vec<String> = existing.iter().map(|x| x.id.clone()).collect();
            session
                .create_subscription(
                    &NewSubscription {
                        filters,
                        address: &s.address,
                        verification_token: s.token.as_ref().map(|t| t.expose()),
                        expires_in: s.expires_in,
                    },
                    &known,
                )
                .map_err(fail("cannot create the subscription"))?
        }
    })
}

/// Records `sub` as ours in the state file (when anything changed), with the lifetime granted.
fn record(
    s: &RegisterSettings,
    saved: Option<&State>,
    owned: Option<&Owned>,
    action: Action,
    sub: &Subscription,
    now: SystemTime,
) -> Result<(), Error> {
    if action != Action::Nothing {
        let granted = sub
            .expires_at
            .and_then(|e| e.duration_since(now).ok())
            .map_or(0, |d| d.as_secs());
        // Worth knowing: the renew threshold follows what was granted, not what was asked.
        if granted + 60 < s.expires_in {
            info!(
                "the platform granted {} days of the {} asked; 'register' renews when a third is left",
                granted / 86_400,
                s.expires_in / 86_400
            );
        }
    }
    let lifetime = match action {
        Action::Nothing => owned.filter(|o| o.id == sub.id).and_then(|o| o.lifetime),
        _ => sub
            .expires_at
            .and_then(|e| e.duration_since(now).ok())
            .map(|d| d.as_secs()),
    };
    // The file as it is now, not as it was at the start of the run: catchup and connect's
    // session write their parts of it meanwhile (connect every few seconds).
    let server = &s.platform.endpoint.server;
    let now_saved = state::load(&s.state_path)?.filter(|st| &st.server == server);
    let current = now_saved.as_ref().or(saved);
    let new_state = State {
        server: server.clone(),
        id: sub.id.clone(),
        address: s.address.clone(),
        lifetime,
        // catchup's sync points outlive a replaced subscription: they follow the extensions.
        sync: current.map(|st| st.sync.clone()).unwrap_or_default(),
        connect: current.and_then(|st| st.connect.clone()),
    };
    if now_saved.as_ref() != Some(&new_state) {
        state::save(&s.state_path, &new_state)?;
    }
    Ok(())
}

fn filters_text(n: usize) -> String {
    if n == 1 {
        "1 filter".into()
    } else {
        format!("{n} filters")
    }
}

/// `ringhook register`.
pub(crate) fn run_register(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let s = RegisterSettings::resolve(flags, vars)?;
    let saved = state::load(&s.state_path)?.filter(|st| st.server == s.platform.endpoint.server);
    let dry_run = flags.switch(&cli::DRY_RUN);
    let outcome = with_session(&s.platform, |session| {
        reconcile(session, &s, saved.as_ref(), dry_run)
    })?;
    let id = outcome.id.as_deref().unwrap_or("-");
    let expires = outcome.expiration_time.as_deref().unwrap_or("-");
    let filters = filters_text(outcome.filters);
    match (outcome.dry_run, outcome.action) {
        (true, "nothing") => info!("dry run: nothing to do: {id} expires {expires}, {filters}"),
        (true, verb) => info!(
            "dry run: would {verb} the subscription at {} with {filters}",
            outcome.address
        ),
        (false, "nothing") => info!(
            "nothing to do: {id} {} expires {expires}, {filters}",
            outcome.status.as_deref().unwrap_or("-")
        ),
        (false, done) => info!("{done} {id} expires {expires}, {filters}"),
    }
    if flags.switch(&cli::JSON) {
        stdout::print_json(&outcome)?;
    }
    Ok(())
}

/// One subscription for `list --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    id: &'a str,
    status: &'a str,
    transport: &'a str,
    address: Option<&'a str>,
    expiration_time: Option<String>,
    creation_time: Option<String>,
    filters: &'a [String],
    disabled_filters: Vec<&'a str>,
    blacklisted_reason: Option<&'a str>,
    /// Named by the state file, or at the configured address.
    ours: bool,
}

fn load_state(path: Option<&std::path::PathBuf>, server: &str) -> Result<Option<State>, Error> {
    Ok(match path {
        Some(p) => state::load(p)?.filter(|st| st.server == server),
        None => None,
    })
}

/// `ringhook list`.
pub(crate) fn run_list(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let s = ManageSettings::resolve(flags, vars)?;
    let saved = load_state(s.state_path.as_ref(), &s.platform.endpoint.server)?;
    let subs = with_session(&s.platform, |session| {
        session
            .subscriptions()
            .map_err(fail("cannot list the subscriptions"))
    })?;
    let owned_id = saved.as_ref().map(|st| st.id.as_str());
    let connects = saved
        .as_ref()
        .and_then(|st| st.connect.as_ref())
        .and_then(|c| c.subscription_id.as_deref());
    let ours = |x: &Subscription| {
        plan::is_ours(x, owned_id, s.address.as_deref()) || Some(x.id.as_str()) == connects
    };
    if flags.switch(&cli::JSON) {
        let listed: Vec<Listed> = subs
            .iter()
            .map(|x| Listed {
                id: &x.id,
                status: &x.status,
                transport: &x.transport,
                address: x.address.as_deref(),
                expiration_time: x.expires_at.map(|t| time(Some(t))),
                creation_time: x.created_at.map(|t| time(Some(t))),
                filters: &x.filters,
                disabled_filters: x.disabled.iter().map(|(f, _)| f.as_str()).collect(),
                blacklisted_reason: x.blacklist_reason.as_deref(),
                ours: ours(x),
            })
            .collect();
        return stdout::print_json(&listed);
    }
    if subs.is_empty() {
        return stdout::print("no subscriptions\n");
    }
    let mut text = format!(
        "{:<38} {:<12} {:<21} {:>7}  ADDRESS\n",
        "ID", "STATUS", "EXPIRES", "FILTERS"
    );
    for x in &subs {
        let _ = writeln!(
            text,
            "{:<38} {:<12} {:<21} {:>7}  {}{}",
            x.id,
            x.status,
            time(x.expires_at),
            x.filters.len(),
            x.address.as_deref().unwrap_or(&x.transport),
            if ours(x) { "  (this installation)" } else { "" }
        );
        if let Some(r) = &x.blacklist_reason {
            let _ = writeln!(text, "    blacklisted: {r}");
        }
        for f in &x.filters {
            let _ = writeln!(text, "    {f}");
        }
    }
    stdout::print(&text)
}

/// What `unregister` deletes: the subscription `id` names (which must exist), else ours.
fn to_delete<'a>(
    subs: &'a [Subscription],
    id: Option<&str>,
    owned_id: Option<&str>,
    address: Option<&str>,
) -> Result<Vec<&'a Subscription>, Error> {
    let Some(id) = id else {
        return Ok(subs
            .iter()
            .filter(|x| plan::is_ours_to_change(x, owned_id, address))
            .collect());
    };
    let found: Vec<&Subscription> = subs.iter().filter(|x| x.id == id).collect();
    if found.is_empty() {
        return Err(Error::runtime_hint(
            format!("no subscription {id} among this app's subscriptions"),
            "see 'ringhook list'",
        ));
    }
    Ok(found)
}

/// Deletes each of `targets`, logging each; the ids deleted.
fn delete_all(session: &Session, targets: &[&Subscription]) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for x in targets {
        session
            .delete_subscription(&x.id)
            .map_err(fail(&format!("cannot delete subscription {}", x.id)))?;
        info!(
            "deleted {} ({})",
            x.id,
            x.address.as_deref().unwrap_or(&x.transport)
        );
        deleted.push(x.id.clone());
    }
    Ok(deleted)
}

#[derive(Serialize)]
struct Unregistered {
    action: &'static str,
    deleted: Vec<String>,
}

/// `ringhook unregister`.
pub(crate) fn run_unregister(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let s = ManageSettings::resolve(flags, vars)?;
    let saved = load_state(s.state_path.as_ref(), &s.platform.endpoint.server)?;
    let id = flags.value(&cli::ID).map(str::to_string);
    if id.is_none() && saved.is_none() && s.address.is_none() {
        return Err(Error::Config(format!(
            "nothing names the subscription to delete: no state file{}; give --id ID, or set WEBHOOK_ADDRESS (or --address)",
            s.state_path
                .as_ref()
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default()
        )));
    }
    let owned_id = saved.as_ref().map(|st| st.id.as_str());
    let deleted = with_session(&s.platform, |session| {
        let subs = session
            .subscriptions()
            .map_err(fail("cannot list the subscriptions"))?;
        let targets = to_delete(&subs, id.as_deref(), owned_id, s.address.as_deref())?;
        delete_all(session, &targets)
    })?;
    if deleted.is_empty() {
        info!("nothing to unregister: no subscription of this installation exists");
    }
    // The state no longer names a live subscription once ours is gone; `connect`'s session
    // in it is kept (its subscription was not ours to delete).
    if let (Some(path), Some(st)) = (&s.state_path, &saved) {
        if st.connect.is_some() {
            if deleted.contains(&st.id) {
                // As the file is now: connect's session may have saved during the run.
                let now = state::load(path)?
                    .filter(|n| n.server == st.server)
                    .unwrap_or_else(|| st.clone());
                state::save(
                    path,
                    &State {
                        id: String::new(),
                        address: String::new(),
                        lifetime: None,
                        ..now
                    },
                )?;
            }
        } else if id.is_none() || deleted.contains(&st.id) {
            state::remove(path)?;
        }
    }
    if flags.switch(&cli::JSON) {
        stdout::print_json(&Unregistered {
            action: if deleted.is_empty() {
                "nothing"
            } else {
                "deleted"
            },
            deleted,
        })?;
    }
    Ok(())
}
