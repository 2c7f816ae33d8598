//! The state file: which subscription this installation owns, so that a changed address (a new
//! tunnel URL) still finds the old subscription to delete, and where `catchup` left off (its sync
//! tokens). Written atomically (temp + rename), 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    /// Platform the subscription lives on; a state for another server is ignored.
    pub server: String,
    /// `register`'s subscription id (a webhook's; `connect` keeps its own in `connect`).
    #[serde(default)]
    pub id: String,
    /// Delivery address it was created with.
    #[serde(default)]
    pub address: String,
    /// Lifetime the platform granted at the last create, renew or update, in seconds.
    #[serde(default)]
    pub lifetime: Option<u64>,
    /// Where `catchup` left off; absent from files written before it existed.
    #[serde(default, skip_serializing_if = "SyncState::is_empty")]
    pub sync: SyncState,
    /// `connect`'s WebSocket session; absent for webhook installations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectState>,
}

impl State {
    /// The subscriptions this file names: `register`'s webhook and `connect`'s WebSocket one
    /// (one file may hold both).
    #[cfg_attr(not(feature = "catchup"), allow(dead_code))]
    pub(crate) fn subscription_ids(&self) -> Vec<&str> {
        let connect = self
            .connect
            .as_ref()
            .and_then(|c| c.subscription_id.as_deref());
        [Some(self.id.as_str()), connect]
            .into_iter()
            .flatten()
            .filter(|id| !id.is_empty())
            .collect()
    }
}

/// What `connect` keeps across restarts: the OAuth session (a new login would make the
/// WebSocket session unrecoverable) and the WebSocket session's recovery token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectState {
    /// The WebSocket subscription's id: `connect`'s own, apart from `register`'s webhook in
    /// [`State::id`] (the two may share one state file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The OAuth refresh token (a secret: never in `Debug`).
    #[serde(default)]
    pub refresh_token: String,
    /// When it stops working (RFC 3339).
    #[serde(default)]
    pub refresh_until: String,
    /// The WebSocket session's `wsc` token, for recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsc: Option<String>,
    /// Until when (RFC 3339) the gateway keeps the session for recovery: the connection's last
    /// sign of life plus `recoveryTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_until: Option<String>,
    /// The connection's last sign of life (RFC 3339): a catch-up starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive_at: Option<String>,
    /// When (RFC 3339) the last run's loop was found gone (killed) while the session child
    /// held the session: what it had been handed may be in no log, and a recovered session
    /// does not resend it. The next start catches up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_lost_at: Option<String>,
    /// When the last WebSocket tokens were taken (RFC 3339), so the Auth group's limit holds
    /// across restarts of the session child and of the process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ws_tokens: Vec<String>,
}

impl std::fmt::Debug for ConnectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectState")
            .field("subscription_id", &self.subscription_id)
            .field("refresh_token", &"(redacted)")
            .field("refresh_until", &self.refresh_until)
            .field("wsc", &self.wsc.as_ref().map(|_| "(redacted)"))
            .field("recoverable_until", &self.recoverable_until)
            .field("alive_at", &self.alive_at)
            .field("loop_lost_at", &self.loop_lost_at)
            .field("ws_tokens", &self.ws_tokens)
            .finish()
    }
}

/// `catchup`'s sync points: Message Sync per extension id, Call Log Sync for the account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncState {
    /// Message Sync, by extension id (`~` for the token's owner).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<String, SyncPoint>,
    /// Call Log Sync of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<SyncPoint>,
}

impl SyncState {
    /// True when `catchup` never ran.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.calls.is_none()
    }
}

/// One sync: the platform's token and how far it reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncPoint {
    /// The last `syncInfo.syncToken`; `None` after the platform refused it (a full sync is due).
    #[serde(default)]
    pub token: Option<String>,
    /// Everything up to this time (RFC 3339) is in the log: the next full sync starts here.
    pub time: String,
    /// What the token's frame covers (message types), so a changed filter forces a full sync.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub frame: String,
    /// A full sync's older part not yet listed (`from…to`), left for the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<(String, String)>,
}

/// The default path: `$XDG_STATE_HOME/ringhook/state.json`, else
/// `$HOME/.local/state/ringhook/state.json`.
pub(crate) fn default_path(xdg_state_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    if let Some(x) = xdg_state_home.filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(x).join("ringhook/state.json"));
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(h).join(".local/state/ringhook/state.json"))
}

/// Reads the state. A missing file is no state; an unreadable one is an error; a damaged one
/// is reported and ignored (it only helps find the old subscription after an address change).
pub(crate) fn load(path: &Path) -> Result<Option<State>, Error> {
    // A FIFO or a device would block the read (a FIFO until someone writes it) or never end.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(Error::runtime_hint(
                format!(
                    "cannot read the state file {}: not a regular file",
                    path.display()
                ),
                "remove it, or point RINGHOOK_STATE elsewhere",
            ));
        }
        _ => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::runtime_hint(
                format!("cannot read the state file {}: {e}", path.display()),
                "fix its permissions, or point RINGHOOK_STATE elsewhere",
            ));
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            warn!(
                "state file {} is damaged ({e}); ignoring it",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Writes the state atomically: a crash leaves the old file or the new, never half of one.
pub(crate) fn save(path: &Path, state: &State) -> Result<(), Error> {
    let fail = |e: std::io::Error| {
        Error::runtime_hint(
            format!("cannot write the state file {}: {e}", path.display()),
            "make its directory writable, or point RINGHOOK_STATE elsewhere",
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut text = serde_json::to_vec_pretty(state).expect("plain struct serializes");
    text.push(b'\n');
    let written = (|| {
        // 0600 whatever the umask (it names the subscription, holds the sync tokens and
        // `connect`'s refresh token), as the event log is; the mode is set again in case a stale
        // temporary file had another.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every filesystem lets a directory be synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

/// Removes the state (after `unregister`).
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::runtime(format!(
            "cannot remove the state file {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_registers_and_connects_subscriptions_apart() {
        let read = |json: &str| serde_json::from_str::<State>(json).unwrap();
        let both = read(
            r#"{"server":"s","id":"wh","address":"https://a/","connect":{"subscriptionId":"ws","refreshToken":"r","refreshUntil":"t"}}"#,
        );
        assert_eq!(both.subscription_ids(), ["wh", "ws"]);
        // Before connect had a field of its own, its id was the file's (with no address).
        let legacy = read(
            r#"{"server":"s","id":"ws","address":"","connect":{"refreshToken":"r","refreshUntil":"t"}}"#,
        );
        assert_eq!(legacy.subscription_ids(), ["ws"]);
        let none = read(r#"{"server":"s","connect":{"wsTokens":["2026-12-07T00:00:00Z"]}}"#);
        assert!(none.subscription_ids().is_empty());
        let dbg = format!("{:?}", both.connect.unwrap());
        assert!(dbg.contains("ws") && !dbg.contains("\"r\""), "{dbg}");
    }

    #[test]
    fn default_path_prefers_xdg() {
        assert_eq!(
            default_path(Some("/x"), Some("/home/u")),
            Some(PathBuf::from("/x/ringhook/state.json"))
        );
        assert_eq!(
            default_path(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/ringhook/state.json"))
        );
        assert_eq!(default_path(None, None), None);
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        assert_eq!(load(&path).unwrap(), None);
        let s = State {
            server: "https://platform.ringcentral.com".into(),
            id: "abc".into(),
            address: "https://x/webhook".into(),
            lifetime: Some(7),
            sync: SyncState::default(),
            connect: None,
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "{not json").unwrap();
        assert!(load(dir.path()).is_err(), "a directory is not a state file");
        assert_eq!(load(&path).unwrap(), None);
        remove(&path).unwrap();
        remove(&path).unwrap();
    }

    #[test]
    fn files_from_before_catchup_still_load_and_round_trip() {
        let old = br#"{"server":"s","id":"i","address":"a","lifetime":9}"#;
        let s: State = serde_json::from_slice(old).unwrap();
        assert!(s.sync.is_empty());
        // Nothing new is written until catchup ran: the file stays as older versions wrote it.
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("sync"), "{text}");
        let mut s = s;
        s.sync.calls = Some(SyncPoint {
            token: Some("t".into()),
            time: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        });
        let back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
