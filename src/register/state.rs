//! The state file: which subscription this installation owns, so that a changed address (a new
//! tunnel URL) still finds the old subscription to delete. Written atomically (temp + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Platform the subscription lives on; a state for another server is ignored.
    pub server: String,
    /// Subscription id.
    pub id: String,
    /// Delivery address it was created with.
    pub address: String,
    /// Lifetime the platform granted at the last create, renew or update, in seconds.
    #[serde(default)]
    pub lifetime: Option<u64>,
}

/// The default path: `$XDG_STATE_HOME/ringhook/state.json`, else
/// `$HOME/.local/state/ringhook/state.json`.
pub fn default_path(xdg_state_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    if let Some(x) = xdg_state_home.filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(x).join("ringhook/state.json"));
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(h).join(".local/state/ringhook/state.json"))
}

/// Reads the state. A missing file is no state; an unreadable one is an error; a damaged one
/// is reported and ignored (it only helps find the old subscription after an address change).
pub fn load(path: &Path) -> Result<Option<State>, Error> {
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
pub fn save(path: &Path, state: &State) -> Result<(), Error> {
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
        let mut f = std::fs::File::create(&tmp)?;
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
pub fn remove(path: &Path) -> Result<(), Error> {
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
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(load(&path).unwrap(), None);
        remove(&path).unwrap();
        remove(&path).unwrap();
    }
}
