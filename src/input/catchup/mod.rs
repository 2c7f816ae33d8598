//! `ringhook catchup`: recover the messages and calls the receiver missed, into the event log.
//!
//! RingCentral does not redeliver webhooks, but messages (Message Sync, per extension) and calls
//! (Call Log Sync, for the account) can be read back. The run: read the state file (the
//! subscription and the sync tokens) and the end of the event log, sign in, read the
//! subscription's filters ([`plan::coverage`]: nothing they do not cover is fetched), sync each
//! kind ([`api::sync`]), keep what is covered, new and not yet in the log or its rotated copies
//! ([`record::Seen`]), append it as recovered lines (`crate::log::line::recovered_line`), then
//! store the new tokens. Lines are durable before the tokens move, so a crash repeats work rather
//! than losing records.
//!
//! Concurrency: `serve` appends to the log with group commit, cuts failed batches back and
//! repairs a torn tail at start; a second writer could be cut away. So `catchup` appends only
//! under an exclusive `flock` of the log, which it cannot get while a receiver holds it.

pub(crate) mod api;
pub(crate) mod plan;
pub(crate) mod record;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cli::Flags;
use crate::config::Vars;
use crate::error::Error;
use crate::oplog::Escaped;
use crate::platform::settings::ManageSettings;
use crate::platform::{self, Session};
use crate::state::{self, SyncPoint};

use api::{Failure, SyncEndpoints};
use plan::{Budget, Coverage, Group, SyncStep, Tally};

/// Lines logged this long before a candidate's own time are read for dedupe (clock skew).
const SKEW: Duration = Duration::from_secs(600);

/// Everything `catchup` needs.
struct Settings {
    manage: ManageSettings,
    state_path: PathBuf,
    log_path: PathBuf,
    since: Option<SystemTime>,
    dry_run: bool,
    json: bool,
    /// `--emit`: the lines go to stdout for `serve` to log; tokens move once it says "ok".
    emit: bool,
}

fn settings(flags: &Flags, vars: &Vars) -> Result<Settings, Error> {
    let manage = ManageSettings::resolve(flags, vars)?;
    let state_path = manage.state_path.clone().ok_or_else(|| {
        Error::Config(
            "catchup needs the state file: set RINGHOOK_STATE (or --state; there is no XDG_STATE_HOME or HOME)".into(),
        )
    })?;
    let log_path = match vars.flag_or(flags, &crate::cli::LOG_FILE) {
        Some(s) if s.text != "-" => PathBuf::from(s.text),
        _ => {
            return Err(Error::Config(
                "catchup needs the event log file serve writes: set RINGHOOK_LOG_FILE (or --log-file)".into(),
            ));
        }
    };
    let since = flags
        .value(&crate::cli::SINCE)
        .map(|t| {
            humantime::parse_rfc3339_weak(t).map_err(|e| {
                Error::Config(format!(
                    "invalid --since: '{t}': {e} (expected a time such as 2026-11-23T02:10:00Z)"
                ))
            })
        })
        .transpose()?;
    let emit = flags.switch(&crate::cli::EMIT);
    if emit && flags.switch(&crate::cli::JSON) {
        return Err(Error::Usage(
            "--emit and --json cannot go together: both use stdout".into(),
        ));
    }
    Ok(Settings {
        manage,
        state_path,
        log_path,
        since,
        dry_run: flags.switch(&crate::cli::DRY_RUN),
        json: flags.switch(&crate::cli::JSON),
        emit,
    })
}

/// The log, opened for reading and (unless a dry run) appending under an exclusive lock.
fn open_log(path: &Path, dry_run: bool) -> Result<File, Error> {
    let what = |e: std::io::Error| {
        Error::runtime_hint(
            format!("cannot open the event log {}: {e}", path.display()),
            "check RINGHOOK_LOG_FILE (or --log-file): the file serve writes",
        )
    };
    if dry_run {
        return File::open(path).map_err(what);
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(what)?;
    // Fail fast when a receiver holds it, rather than after the platform calls.
    lock(&file, path)?;
    let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
    Ok(file)
}

/// Takes the log's exclusive lock (held until exit) or says who has it. `serve` holds it while
/// it runs; `catchup` only from its dedupe read to its append, so a receiver starting meanwhile
/// is refused only for that long.
fn lock(file: &File, path: &Path) -> Result<(), Error> {
    use rustix::fs::{FlockOperation, flock};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            Error::runtime_hint(
                format!(
                    "the event log {} is in use by a running receiver (or another catchup)",
                    path.display()
                ),
                "a second writer could be cut away by serve's repairs: run catchup while serve is stopped, or let 'serve --register' run it",
            )
        } else {
            Error::runtime(format!("cannot lock the event log {}: {e}", path.display()))
        }
    })
}

/// One kind to sync: messages of an extension, or the account's calls.
struct SyncKind {
    /// `Some(extension id)` for messages, `None` for calls.
    extension: Option<String>,
    target: SyncEndpoints,
    step: SyncStep,
    full_from: SystemTime,
}

fn kinds(
    c: &Coverage,
    saved: &state::SyncState,
    since: Option<SystemTime>,
    last: Option<SystemTime>,
    now: SystemTime,
) -> Vec<SyncKind> {
    let account = format!("/restapi/v1.0/account/{}", c.account);
    let mut out = Vec::new();
    // Least recently synced first, so a budget too small for every extension starves none.
    let mut exts: Vec<&String> = c.messages.keys().collect();
    exts.sort_by_key(|e| saved.messages.get(*e).map(|p| p.time.clone()));
    for ext in exts {
        let frame = c.frame(ext);
        let query: String = if frame.split(',').count() == plan::MESSAGE_TYPES.len() {
            String::new()
        } else {
            frame
                .split(',')
                .map(|k| format!("&messageType={k}"))
                .collect()
        };
        let point = saved.messages.get(ext);
        // A message reaches the store after its creationTime (a voicemail when its recording
        // ends): a full sync reaches back as far as an ISync's cutoff would accept.
        let full_from = plan::message_full_from(since, point, last, now);
        let mut step = plan::step(since, point, &frame, last, plan::MESSAGE_SLACK, now);
        if let SyncStep::FSync { from } = &mut step {
            *from = full_from;
        }
        out.push(SyncKind {
            extension: Some(ext.clone()),
            step,
            full_from,
            target: SyncEndpoints {
                sync: format!("{account}/extension/{ext}/message-sync"),
                list: format!("{account}/extension/{ext}/message-store"),
                frame_query: query,
                group: Group::Light,
                sources: ("message-sync", "message-store"),
                permission: "ReadMessages",
                frame,
            },
        });
    }
    if c.calls.is_some() {
        let point = saved.calls.as_ref();
        // The call log reaches back 30 days; asking for more is an error.
        let floor = now - plan::CALL_LOG_DEPTH;
        // A call is logged when it ends: a full sync reaches back to calls that started a
        // while before (the log's dedupe makes the overlap harmless).
        let full_from = (plan::full_from(since, point, last, now) - plan::CALL_SLACK).max(floor);
        let mut step = plan::step(since, point, "", last, plan::CALL_SLACK, now);
        if let SyncStep::FSync { from } = &mut step {
            *from = full_from;
        }
        out.push(SyncKind {
            extension: None,
            step,
            full_from,
            target: SyncEndpoints {
                sync: format!("{account}/call-log-sync"),
                list: format!("{account}/call-log"),
                frame_query: String::new(),
                group: Group::Heavy,
                sources: ("call-log-sync", "call-log"),
                permission: "ReadCallLog",
                frame: String::new(),
            },
        });
    }
    out
}

/// What the sync of one kind left to write and store.
struct KindOutcome {
    extension: Option<String>,
    records: Vec<api::Fetched>,
    point: Option<SyncPoint>,
    floor: SystemTime,
}

fn fail(what: &str) -> impl FnOnce(platform::PlatformError) -> Error + '_ {
    move |e| Error::Runtime {
        message: format!("{what}: {e}"),
        hint: e.hint(),
    }
}

/// Signs in, reads the subscription's filters, syncs every kind they cover. Permission and rate
/// trouble skip a kind with one line; other failures end the run after what was fetched.
fn fetch_all(
    s: &Settings,
    saved: &state::State,
    last: Option<SystemTime>,
    now: SystemTime,
) -> Result<(Coverage, Vec<KindOutcome>, Option<Error>), Error> {
    let p = &s.manage.platform;
    let session = platform::login(p.endpoint.clone(), &p.credentials)
        .map_err(fail(&format!("cannot sign in to {}", p.endpoint.server)))?;
    let result = (|| {
        let subs = session
            .subscriptions()
            .map_err(fail("cannot list the subscriptions"))?;
        // What any subscription of the file covers: register's webhook, connect's WebSocket.
        let ids = saved.subscription_ids();
        let found: Vec<_> = subs
            .into_iter()
            .filter(|x| ids.contains(&x.id.as_str()))
            .collect();
        if found.is_empty() {
            let what = match ids.as_slice() {
                [] => "the state file names no subscription".to_string(),
                ids => format!(
                    "the subscription {} named by the state file is gone",
                    Escaped(&ids.join(", "))
                ),
            };
            return Err(Error::runtime_hint(
                what,
                "run 'ringhook register' (or 'ringhook connect') to create it again, then catchup",
            ));
        }
        let filters: Vec<String> = found.into_iter().flat_map(|x| x.filters).collect();
        let coverage = plan::coverage(&filters);
        if coverage.is_empty() {
            info!("the subscription's filters cover no messages and no calls: nothing to catch up");
        }
        let (outcomes, failure) = sync_kinds(&session, &coverage, s, saved, last, now);
        Ok((coverage, outcomes, failure))
    })();
    if let Err(e) = session.revoke() {
        warn!("could not end the session (revoke): {e}");
    }
    result
}

fn sync_kinds(
    session: &Session,
    coverage: &Coverage,
    s: &Settings,
    saved: &state::State,
    last: Option<SystemTime>,
    now: SystemTime,
) -> (Vec<KindOutcome>, Option<Error>) {
    let mut budget = Budget::default();
    let mut out = Vec::new();
    let mut first_error = None;
    for k in kinds(coverage, &saved.sync, s.since, last, now) {
        let name = match &k.extension {
            Some(e) => format!("messages of extension {e}"),
            None => "calls".to_string(),
        };
        let old = match &k.extension {
            Some(e) => saved.sync.messages.get(e),
            None => saved.sync.calls.as_ref(),
        };
        let step = k.step.clone();
        match api::sync(session, &mut budget, &k.target, step, old, k.full_from) {
            Ok(synced) => {
                let mut floor = match synced.step {
                    SyncStep::ISync { cutoff, .. } => cutoff,
                    SyncStep::FSync { from } => from,
                };
                if let Some((from, _)) = old.and_then(|o| o.backfill.as_ref()) {
                    if let Ok(f) = humantime::parse_rfc3339_weak(from) {
                        floor = floor.min(f);
                    }
                }
                if let Some(why) = &synced.stopped {
                    info!(
                        "catch-up of {name} stopped short ({}); the rest is left for the next run",
                        describe(why)
                    );
                }
                out.push(KindOutcome {
                    extension: k.extension,
                    records: synced.records,
                    point: synced.point,
                    floor,
                });
            }
            Err(Failure::Permission(p)) => warn!(
                "catch-up of {name} skipped: the app lacks the {p} permission (403 InsufficientPermissions); add {p} to the app in the RingCentral developer console"
            ),
            Err(Failure::Later(why)) => {
                info!("catch-up of {name} left for the next run: {why}")
            }
            Err(Failure::Platform(e)) => {
                let err = fail(&format!("cannot catch up the {name}"))(e);
                error!("{err}");
                first_error.get_or_insert(err);
            }
        }
    }
    (out, first_error)
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::Permission(p) => format!("the app lacks the {p} permission"),
        Failure::Later(why) => why.clone(),
        Failure::Platform(e) => e.to_string(),
    }
}

/// `ringhook catchup`.
pub(crate) fn run(flags: &Flags, vars: &Vars) -> Result<(), Error> {
    let s = settings(flags, vars)?;
    let server = &s.manage.platform.endpoint.server;
    let saved = state::load(&s.state_path)?
        .filter(|st| &st.server == server)
        .ok_or_else(|| {
            Error::runtime_hint(
                format!(
                    "no subscription of this installation on {server} in the state file {}",
                    s.state_path.display()
                ),
                "run 'ringhook register' first: catchup covers what its subscription's filters cover",
            )
        })?;
    // With --emit, serve writes the log: only read it.
    let mut log = open_log(&s.log_path, s.dry_run || s.emit)?;
    let io = |e: std::io::Error| {
        Error::runtime(format!(
            "cannot read the event log {}: {e}",
            s.log_path.display()
        ))
    };
    let last = record::scan_with_copies(&s.log_path, &log, None, true)
        .map_err(io)?
        .last_notification;
    let now = SystemTime::now();
    let (coverage, outcomes, failure) = fetch_all(&s, &saved, last, now)?;

    // Keep what is covered, alive, inside its frame; then drop what the log already holds.
    let candidates = outcomes.iter().flat_map(|o| {
        o.records
            .iter()
            .filter(move |r| r.head.alive() && r.head.time().is_some_and(|t| t >= o.floor))
            .map(move |r| (o, r))
    });
    if !s.dry_run && !s.emit {
        lock(&log, &s.log_path)?;
    }
    let back_to = candidates.clone().filter_map(|(_, r)| r.head.time()).min();
    let seen = match back_to {
        Some(t) => {
            record::scan_with_copies(&s.log_path, &log, Some(t - SKEW), false).map_err(io)?
        }
        None => record::Seen::default(),
    };
    let mut lines = Vec::new();
    let mut tally = Tally::default();
    let mut written = record::Seen::default();
    for (o, r) in candidates {
        let h = &r.head;
        let Some(id) = h.id() else { continue };
        match &o.extension {
            Some(ext) => {
                if !coverage.covers_message(ext, h.kind(), h.direction())
                    || seen.has_message(&id)
                    || !written.insert(format!("m:{id}"))
                {
                    continue;
                }
                tally.message(h.kind());
                let line =
                    crate::log::line::recovered_line(now, r.source, ("extensionId", ext), &r.raw);
                lines.push((h.time(), line));
            }
            None => {
                if !coverage.covers_call(h.extension().as_deref())
                    || seen.has_call(&id, h)
                    || !written.insert(format!("c:{id}"))
                {
                    continue;
                }
                tally.calls += 1;
                let scope = ("accountId", coverage.account.as_str());
                lines.push((
                    h.time(),
                    crate::log::line::recovered_line(now, r.source, scope, &r.raw),
                ));
            }
        }
    }
    // In the order they happened, as notifications would have been.
    lines.sort_by_key(|(t, _)| *t);
    let lines: Vec<u8> = lines.into_iter().flat_map(|(_, l)| l).collect();
    let from = outcomes.iter().map(|o| o.floor).min().unwrap_or(now);
    if s.emit && !s.dry_run {
        hand_over(&lines)?;
        store(&s.state_path, server, &outcomes)?;
    } else if !s.dry_run {
        append(&mut log, &lines).map_err(|e| {
            Error::runtime(format!(
                "cannot append to the event log {}: {e}",
                s.log_path.display()
            ))
        })?;
        store(&s.state_path, server, &outcomes)?;
    }
    info!("{}", plan::summary(&tally, from, now, s.dry_run));
    if s.json {
        // By hand: the type names are the store's own words (covered kinds only), the rest numbers.
        let types: Vec<String> = tally
            .messages
            .iter()
            .map(|(k, n)| format!("\"{k}\":{n}"))
            .collect();
        crate::stdout::print(&format!(
            "{{\"dryRun\":{},\"messages\":{},\"messageTypes\":{{{}}},\"calls\":{},\"from\":\"{}\",\"to\":\"{}\"}}",
            s.dry_run,
            tally.message_count(),
            types.join(","),
            tally.calls,
            humantime::format_rfc3339_seconds(from),
            humantime::format_rfc3339_seconds(now),
        ))?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `--emit`: prints the lines for `serve --register`, which logs them through its own event log
/// and answers `ok` on stdin once they are synced; anything else keeps the tokens where they were,
/// so the next run fetches the records again.
fn hand_over(lines: &[u8]) -> Result<(), Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    // An empty line ends the lines: the child now waits for the answer.
    out.write_all(lines)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| Error::runtime(format!("cannot hand the recovered lines over: {e}")))?;
    drop(out);
    let mut answer = String::new();
    use std::io::{BufRead, Read};
    let _ = std::io::stdin().lock().take(16).read_line(&mut answer);
    if answer.trim() != "ok" {
        return Err(Error::runtime(
            "the receiver did not log the recovered records; the sync tokens stay where they were",
        ));
    }
    Ok(())
}

/// Appends `lines` with one write and one sync; a failure cuts the file back to where it was.
fn append(log: &mut File, lines: &[u8]) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let len = log.metadata()?.len();
    let result = log.write_all(lines).and_then(|()| log.sync_data());
    if result.is_err() {
        let _ = log.set_len(len);
    }
    result
}

/// Stores the new sync points into the state file as it is now (register may have written it).
fn store(path: &Path, server: &str, outcomes: &[KindOutcome]) -> Result<(), Error> {
    let Some(mut st) = state::load(path)?.filter(|st| st.server == server) else {
        warn!(
            "the state file {} changed hands during the run; sync tokens not stored",
            path.display()
        );
        return Ok(());
    };
    let before = st.clone();
    for o in outcomes {
        let Some(p) = &o.point else { continue };
        match &o.extension {
            Some(e) => {
                st.sync.messages.insert(e.clone(), p.clone());
            }
            None => st.sync.calls = Some(p.clone()),
        }
    }
    if st != before {
        state::save(path, &st)?;
    }
    Ok(())
}
