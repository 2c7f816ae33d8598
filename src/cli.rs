//! Command-line parsing, stage one: arguments into typed-as-the-CLI flags, no syscalls.
//!
//! Every setting is declared once, below, as a named [`Opt`] constant: its flag, value
//! placeholder, the variables that may set it, its default and its help line. The per-command
//! tables list those constants; `--help` is generated from the tables, the parser accepts only
//! what they list, and settings are read through the same constants
//! (`vars.flag_or(flags, &cli::MAX_BODY)`, `flags.switch(&cli::JSON)`), so a misspelt name does
//! not compile. Values are validated in `config` and the commands' settings, which know the
//! environment.
//!
//! To add a flag: declare `pub(crate) const NAME: Opt = Opt::flag(..)` (or `Opt::switch`) with its
//! variables and default, list `&NAME` in its command's table, read it through `&cli::NAME`, and
//! regenerate `docs/reference.md` (`RINGHOOK_BLESS=1 cargo test --lib docs_reference`); a variable
//! without a flag is described in `UNFLAGGED` too. Tests check the help, and that the reference is
//! current and names every variable.
//! Where two commands word one flag differently, derive the second from the first
//! (`ADDRESS.reworded(..)`), so the variables stay declared once.
//!
//! To add a command: a table `const SHIP: &[&Opt]`, a [`Subcommand`] variant, one [`CommandSpec`] in
//! [`COMMANDS`] (the order `--help` lists them), and its arm in `lib.rs`'s dispatch.

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::error::Error;

/// What applies when neither the flag nor a variable sets a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// Nothing to say: the setting is simply absent (no `[default: …]` in the help).
    Absent,
    /// This text, parsed as if the user had given it (`1MiB`, `30s`); shown as the default.
    Value(&'static str),
    /// What absence means, in words (`off`, `stdout`); shown as the default, handled in code.
    Means(&'static str),
}

/// One setting a command accepts: declared once, read through this declaration.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Long name, with the dashes: `--listen`.
    pub name: &'static str,
    /// Placeholder for the value, or `None` for a switch.
    pub value: Option<&'static str>,
    /// Variables that set it when the flag is absent, first set wins.
    pub env: &'static [&'static str],
    /// Words after the variables inside the help's `[env: …]` (`, whitespace-separated`).
    pub env_note: &'static str,
    /// What applies when nothing sets it.
    pub unset: Unset,
    /// The help sentence, without the `[env: …]` and `[default: …]` that follow it.
    pub help: &'static str,
    /// True when the flag may be given more than once.
    pub repeat: bool,
    /// A one-letter form (`-f`), for the few flags people type all day.
    pub short: Option<char>,
}

impl Opt {
    /// A flag that takes a value, shown as `placeholder` in the help.
    const fn flag(name: &'static str, placeholder: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            value: Some(placeholder),
            env: &[],
            env_note: "",
            unset: Unset::Absent,
            help,
            repeat: false,
            short: None,
        }
    }

    /// A switch: present or not.
    const fn switch(name: &'static str, help: &'static str) -> Opt {
        Opt {
            value: None,
            ..Opt::flag(name, "", help)
        }
    }

    /// Read from these variables when the flag is absent.
    const fn env(self, env: &'static [&'static str]) -> Opt {
        Opt { env, ..self }
    }

    /// Words appended to the variables in the help.
    const fn env_note(self, env_note: &'static str) -> Opt {
        Opt { env_note, ..self }
    }

    /// The default, parsed like user input.
    const fn default(self, value: &'static str) -> Opt {
        Opt {
            unset: Unset::Value(value),
            ..self
        }
    }

    /// What absence means, in words.
    const fn means(self, words: &'static str) -> Opt {
        Opt {
            unset: Unset::Means(words),
            ..self
        }
    }

    /// Also accepted as `-c`.
    const fn short(self, c: char) -> Opt {
        Opt {
            short: Some(c),
            ..self
        }
    }

    /// May be given more than once.
    const fn repeatable(self) -> Opt {
        Opt {
            repeat: true,
            ..self
        }
    }

    /// The same setting, with another command's wording.
    const fn reworded(self, help: &'static str) -> Opt {
        Opt { help, ..self }
    }

    /// The same setting, without a default shown.
    const fn without_default(self) -> Opt {
        Opt {
            unset: Unset::Absent,
            ..self
        }
    }

    /// The help line: the sentence, then `[env: …]` and `[default: …]` when there are any.
    pub(crate) fn help_line(&self) -> String {
        let mut line = self.help.to_string();
        if !self.env.is_empty() || !self.env_note.is_empty() {
            line.push_str(" [env: ");
            line.push_str(&self.env.join(", "));
            line.push_str(self.env_note);
            line.push(']');
        }
        if let Unset::Value(d) | Unset::Means(d) = self.unset {
            line.push_str(" [default: ");
            line.push_str(d);
            line.push(']');
        }
        line
    }
}

// ---- serve ----

pub(crate) const LISTEN: Opt = Opt::flag("--listen", "ADDR:PORT", "Address to listen on")
    .env(&["RINGHOOK_LISTEN"])
    .env_note(", or PORT alone")
    .default("0.0.0.0:3000");
/// The tutorial's variable: the port alone, on every interface, when `--listen` is not set.
pub(crate) const PORT: &[&str] = &["PORT"];
pub(crate) const PATH: Opt = Opt::flag("--path", "PATH", "Path RingCentral posts to")
    .env(&["WEBHOOK_PATH"])
    .default("/webhook");
pub(crate) const LOG_FILE: Opt = Opt::flag(
    "--log-file",
    "FILE",
    "Append events to FILE, fdatasync'd before each 200; '-' is stdout",
)
.env(&["RINGHOOK_LOG_FILE"])
.means("stdout");
pub(crate) const HEALTH_PATH: Opt = Opt::flag(
    "--health-path",
    "PATH",
    "Answer GET PATH with 200 (503 while the log is unwritable)",
)
.env(&["RINGHOOK_HEALTH_PATH"])
.means("off");
pub(crate) const HEALTH_MAX_SYNC: Opt = Opt::flag(
    "--health-max-sync",
    "DURATION",
    "With --health-path: 503 while an fdatasync of the log has run longer than this",
)
.env(&["RINGHOOK_HEALTH_MAX_SYNC"])
.default("5s");
pub(crate) const METRICS_PATH: Opt = Opt::flag(
    "--metrics-path",
    "PATH",
    "Answer GET PATH with Prometheus metrics (text format 0.0.4)",
)
.env(&["RINGHOOK_METRICS_PATH"])
.means("off");
/// The variables holding the verification token itself.
pub(crate) const TOKEN: &[&str] = crate::secret::VERIFICATION_TOKEN;
pub(crate) const TOKEN_FILE: Opt = Opt::flag(
    "--verification-token-file",
    "FILE",
    "Read the verification token from FILE (systemd credentials, Docker secrets)",
)
.env_note("WEBHOOK_VERIFICATION_TOKEN holds the token itself");
pub(crate) const MAX_BODY: Opt = Opt::flag(
    "--max-body",
    "SIZE",
    "Largest request body accepted; larger gets 413 unread",
)
.env(&["RINGHOOK_MAX_BODY"])
.default("1MiB");
pub(crate) const MAX_HEADER: Opt = Opt::flag(
    "--max-header",
    "SIZE",
    "Largest request head accepted; larger gets 431",
)
.env(&["RINGHOOK_MAX_HEADER"])
.default("16KiB");
pub(crate) const REQUEST_TIMEOUT: Opt = Opt::flag(
    "--request-timeout",
    "DURATION",
    "A request must arrive whole within this; else 408 and close",
)
.env(&["RINGHOOK_REQUEST_TIMEOUT"])
.default("10s");
pub(crate) const IDLE_TIMEOUT: Opt = Opt::flag(
    "--idle-timeout",
    "DURATION",
    "Close a keep-alive connection idle this long",
)
.env(&["RINGHOOK_IDLE_TIMEOUT"])
.default("60s");
pub(crate) const MAX_CONNECTIONS: Opt = Opt::flag(
    "--max-connections",
    "N",
    "Open connections at most; when full, the longest idle or stalled one is closed",
)
.env(&["RINGHOOK_MAX_CONNECTIONS"])
.default("256");
pub(crate) const MAX_BUFFERED: Opt = Opt::flag(
    "--max-buffered",
    "SIZE",
    "Notification bodies held in memory at once, all connections together; beyond it, bodies wait unread (at least --max-body)",
)
.env(&["RINGHOOK_MAX_BUFFERED"])
.default("8MiB");
pub(crate) const DEDUPE_WINDOW: Opt = Opt::flag(
    "--dedupe-window",
    "N",
    "Remember this many recent notification uuids to drop redeliveries",
)
.env(&["RINGHOOK_DEDUPE_WINDOW"])
.default("10000");
pub(crate) const SHUTDOWN_GRACE: Opt = Opt::flag(
    "--shutdown-grace",
    "DURATION",
    "On SIGTERM, time given to requests in flight",
)
.env(&["RINGHOOK_SHUTDOWN_GRACE"])
.default("5s");
pub(crate) const REGISTER: Opt = Opt::switch(
    "--register",
    "Also keep the subscription alive: run 'register' beside the receiver (needs register's variables)",
)
.env(&["RINGHOOK_REGISTER"])
.env_note("=1");
pub(crate) const REGISTER_EVERY: Opt = Opt::flag(
    "--register-every",
    "DURATION",
    "With --register: run it again this often",
)
.env(&["RINGHOOK_REGISTER_EVERY"])
.default("12h");
pub(crate) const REGISTER_QUIET: Opt = Opt::flag(
    "--register-quiet",
    "DURATION",
    "With --register: also run it when no notification came for this long",
)
.env(&["RINGHOOK_REGISTER_QUIET"])
.means("off");
pub(crate) const REGISTER_RETRY: Opt = Opt::flag(
    "--register-retry",
    "DURATION",
    "With --register: first retry after a failed run, doubling up to 1h",
)
.env(&["RINGHOOK_REGISTER_RETRY"])
.default("30s");
pub(crate) const UNREGISTER_ON_EXIT: Opt = Opt::switch(
    "--unregister-on-exit",
    "With --register: delete the subscription at a clean stop (quick tunnels)",
)
.env(&["RINGHOOK_UNREGISTER_ON_EXIT"])
.env_note("=1");
pub(crate) const EXEC: Opt = Opt::flag(
    "--exec",
    "COMMAND",
    "Run COMMAND for each logged notification, JSON on stdin; no shell unless you write sh -c",
)
.env(&["RINGHOOK_EXEC"]);
pub(crate) const EXEC_FILTER: Opt = Opt::flag(
    "--exec-filter",
    "PATTERN",
    "Only for events matching PATTERN (* wildcard, else prefix; ~ matches ids); repeatable",
)
.env(&["RINGHOOK_EXEC_FILTER"])
.env_note(", whitespace-separated")
.repeatable();
pub(crate) const EXEC_MAX: Opt = Opt::flag("--exec-max", "N", "Commands running at once")
    .env(&["RINGHOOK_EXEC_MAX"])
    .default("2");
pub(crate) const EXEC_QUEUE: Opt = Opt::flag(
    "--exec-queue",
    "N",
    "Events waiting for a free slot; beyond it the command is skipped and logged",
)
.env(&["RINGHOOK_EXEC_QUEUE"])
.default("100");
pub(crate) const EXEC_TIMEOUT: Opt = Opt::flag(
    "--exec-timeout",
    "DURATION",
    "Kill a run (and its process group) after this",
)
.env(&["RINGHOOK_EXEC_TIMEOUT"])
.default("30s");

pub(crate) const SERVE_SHIP: Opt = Opt::flag(
    "--ship",
    "URL",
    "Also ship the log onward: run 'ship --to URL' beside the receiver (needs --log-file; ship's variables apply)",
)
.means("off");

// ---- ship ----
pub(crate) const TO: Opt = Opt::flag(
    "--to",
    "URL",
    "Sink: http(s)://HOST/PATH, or nats://HOST:PORT/SUBJECT (tls:// for TLS; SUBJECT may hold {event})",
)
.env(&["RINGHOOK_SHIP_TO"]);
pub(crate) const CURSOR: Opt = Opt::flag("--cursor", "FILE", "Where delivery has got to")
    .env(&["RINGHOOK_CURSOR"])
    .means("FILE.cursor");
pub(crate) const DEAD_LETTER: Opt = Opt::flag(
    "--dead-letter",
    "FILE",
    "Records the sink refused, one JSON line each",
)
.env(&["RINGHOOK_DEAD_LETTER"])
.means("FILE.dead-letter");
pub(crate) const FROM: Opt = Opt::flag(
    "--from",
    "WHERE",
    "Reset the cursor first: start, end, an RFC 3339 time or a uuid",
);
pub(crate) const WINDOW: Opt = Opt::flag(
    "--window",
    "N",
    "NATS publishes awaiting their acknowledgement at most",
)
.env(&["RINGHOOK_SHIP_WINDOW"])
.default("256");
pub(crate) const ONCE: Opt = Opt::switch("--once", "Ship what is in the log, then exit");
pub(crate) const SUPERVISED: Opt = Opt::switch(
    "--supervised",
    "Stop when stdin ends or the parent process dies (serve --ship runs ship so)",
);

// ---- register, list, unregister ----

pub(crate) const EVENT: Opt = Opt::flag(
    "--event",
    "FILTER",
    "Event filter; repeat for more; {extensionId} expands per extension",
)
.env(&["RINGHOOK_EVENT_FILTERS"])
.env_note(", whitespace-separated")
.repeatable();
pub(crate) const ADDRESS: Opt = Opt::flag("--address", "URL", "Public URL of the receiver").env(&[
    "WEBHOOK_ADDRESS",
    "DELIVERY_MODE_ADDRESS",
    "WEBHOOK_DELIVERY_ADDRESS",
]);
pub(crate) const STATE: Opt = Opt::flag(
    "--state",
    "FILE",
    "State file naming the subscription this installation owns",
)
.env(&["RINGHOOK_STATE"])
.means("$XDG_STATE_HOME/ringhook/state.json, else ~/.local/state/ringhook/state.json");
pub(crate) const DRY_RUN: Opt = Opt::switch(
    "--dry-run",
    "Show what would be done (the handshake probe included); change nothing",
);
pub(crate) const JSON: Opt =
    Opt::switch("--json", "Print the outcome as one JSON object on stdout");
pub(crate) const ID: Opt = Opt::flag(
    "--id",
    "ID",
    "Delete this subscription instead of the one this installation owns",
);

// ---- check ----

pub(crate) const TIMEOUT: Opt =
    Opt::flag("--timeout", "DURATION", "Give up after this long").means("3s, the platform's limit");

// ---- catchup ----

pub(crate) const SINCE: Opt = Opt::flag(
    "--since",
    "TIME",
    "Full sync from TIME (RFC 3339), whatever the tokens",
)
.means("where the last run reached, else the last notification in the log");
pub(crate) const EMIT: Opt = Opt::switch(
    "--emit",
    "Print the recovered lines on stdout instead, for serve --register to log; tokens move once it answers ok on stdin",
);

// ---- Variables without a flag (register, list, unregister; the CA file for check too) ----
// Secrets are only ever variables; their names are in `secret`.

/// The platform's server (origin only).
pub(crate) const SERVER_URL: &[&str] = &["RC_SERVER_URL", "RC_SERVER"];
/// `sandbox` or `production`, when no server URL is set.
pub(crate) const RC_ENV: &[&str] = &["RC_ENV"];
/// The app's client id, under its current and older names.
pub(crate) const CLIENT_ID: &[&str] = &["RC_CLIENT_ID", "RC_APP_KEY", "RC_APP_CLIENT_ID"];
/// The password grant's user name.
pub(crate) const USERNAME: &[&str] = &["RC_USERNAME"];
/// The password grant's extension.
pub(crate) const EXTENSION: &[&str] = &["RC_EXTENSION"];
/// Longest wait the platform may ask for (Retry-After, rate limits).
pub(crate) const MAX_WAIT: &[&str] = &["RINGHOOK_MAX_WAIT"];
/// One HTTP request's time limit.
pub(crate) const HTTP_TIMEOUT: &[&str] = &["RINGHOOK_HTTP_TIMEOUT"];
/// Page size of the extension list.
pub(crate) const EXTENSIONS_PER_PAGE: &[&str] = &["EXTENSIONS_PER_PAGE"];
/// Subscription lifetime asked for.
pub(crate) const EXPIRES_IN: &[&str] = &["RINGHOOK_EXPIRES_IN"];
/// Extension types `{extensionId}` expands over.
pub(crate) const EXTENSION_TYPES: &[&str] = &["RINGHOOK_EXTENSION_TYPES"];
/// Extension statuses `{extensionId}` expands over.
pub(crate) const EXTENSION_STATUSES: &[&str] = &["RINGHOOK_EXTENSION_STATUSES"];
/// Extra trusted roots (PEM) for outbound TLS.
pub(crate) const CA_FILE: &[&str] = &["RINGHOOK_CA_FILE"];
/// The system's state directory, for the default state file (not ours: not in the reference).
pub(crate) const XDG_STATE_HOME: &[&str] = &["XDG_STATE_HOME"];
/// Set by `connect` for its own session child (internal: the child holds the WebSocket).
pub(crate) const CONNECT_SESSION: &[&str] = &["RINGHOOK_CONNECT_SESSION"];
/// The home directory, the default state file's last resort (not ours: not in the reference).
pub(crate) const HOME: &[&str] = &["HOME"];

/// An HTTP answer or NATS acknowledgement must come within this (ship).
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const SHIP_TIMEOUT: &[&str] = &["RINGHOOK_SHIP_TIMEOUT"];
/// How often ship prints its status line and lag.
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const SHIP_STATUS_EVERY: &[&str] = &["RINGHOOK_SHIP_STATUS_EVERY"];
/// The NATS user (its password is a secret, in `secret`).
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const NATS_USER: &[&str] = &["NATS_USER"];

/// Files holding ship's secrets instead of the variables (systemd credentials, Docker secrets).
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const SHIP_TOKEN_FILE: &[&str] = &["RINGHOOK_SHIP_TOKEN_FILE"];
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const NATS_PASSWORD_FILE: &[&str] = &["NATS_PASSWORD_FILE"];
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const NATS_TOKEN_FILE: &[&str] = &["NATS_TOKEN_FILE"];
/// A NATS `.creds` file (user JWT and nkey seed) or nkey seed file.
#[cfg_attr(not(feature = "ship"), allow(dead_code))]
pub(crate) const NATS_CREDS: &[&str] = &["NATS_CREDS"];
/// <https://no-color.org>: set and not empty, `tail` prints no colours.
pub(crate) const NO_COLOR: &[&str] = &["NO_COLOR"];

/// The variables above that are ours, for the check that the reference names them all.
#[cfg(test)]
const VARIABLES: &[&[&str]] = &[
    PORT,
    TOKEN,
    SERVER_URL,
    RC_ENV,
    CLIENT_ID,
    USERNAME,
    EXTENSION,
    MAX_WAIT,
    HTTP_TIMEOUT,
    EXTENSIONS_PER_PAGE,
    EXPIRES_IN,
    EXTENSION_TYPES,
    EXTENSION_STATUSES,
    CA_FILE,
    SHIP_TIMEOUT,
    SHIP_STATUS_EVERY,
    NATS_USER,
    SHIP_TOKEN_FILE,
    NATS_PASSWORD_FILE,
    NATS_TOKEN_FILE,
    NATS_CREDS,
    NO_COLOR,
];

/// A variable that no flag reads, as `docs/reference.md` describes it.
#[cfg(test)]
struct Variable {
    /// Its names, first set wins.
    names: &'static [&'static str],
    /// The commands that read it.
    read_by: &'static str,
    /// What applies when it is not set (empty: nothing to say).
    unset: &'static str,
    /// What it is, for the reference.
    help: &'static str,
}

/// Every variable without a flag, secrets included, in the order the reference lists them.
#[cfg(test)]
const UNFLAGGED: &[Variable] = &[
    Variable {
        names: CONNECT_SESSION,
        read_by: "connect",
        unset: "",
        help: "Internal: set by connect for the child that holds the WebSocket session; never set it yourself",
    },
    Variable {
        names: PORT,
        read_by: "serve",
        unset: "",
        help: "The port alone, on every interface, when neither --listen nor RINGHOOK_LISTEN is set (the tutorial's variable)",
    },
    Variable {
        names: TOKEN,
        read_by: "serve, register, check",
        unset: "none: every notification is taken, with a warning at start",
        help: "The verification token itself (or --verification-token-file): 1–256 visible ASCII characters; serve checks it, register sends it as deliveryMode.verificationToken; set but empty is an error",
    },
    Variable {
        names: SERVER_URL,
        read_by: "register, list, unregister, catchup",
        unset: "`https://platform.ringcentral.com`",
        help: "The platform's server (origin only); must be https:// unless loopback",
    },
    Variable {
        names: RC_ENV,
        read_by: "register, list, unregister, catchup",
        unset: "",
        help: "sandbox or production, when no server URL is set",
    },
    Variable {
        names: CLIENT_ID,
        read_by: "register, list, unregister, catchup",
        unset: "required",
        help: "The app's client id",
    },
    Variable {
        names: crate::secret::CLIENT_SECRET,
        read_by: "register, list, unregister, catchup",
        unset: "required",
        help: "The app's client secret",
    },
    Variable {
        names: crate::secret::JWT,
        read_by: "register, list, unregister, catchup",
        unset: "required (or the password grant)",
        help: "The user's JWT credential",
    },
    Variable {
        names: USERNAME,
        read_by: "register, list, unregister, catchup",
        unset: "",
        help: "The legacy password grant's user name (the grant ended on 2024-03-31; warns)",
    },
    Variable {
        names: crate::secret::PASSWORD,
        read_by: "register, list, unregister, catchup",
        unset: "",
        help: "The legacy password grant's password",
    },
    Variable {
        names: EXTENSION,
        read_by: "register, list, unregister, catchup",
        unset: "",
        help: "The legacy password grant's extension",
    },
    Variable {
        names: EXTENSION_TYPES,
        read_by: "register, connect",
        unset: "`User`",
        help: "Extension types {extensionId} expands over",
    },
    Variable {
        names: EXTENSION_STATUSES,
        read_by: "register, connect",
        unset: "`Enabled`",
        help: "Extension statuses {extensionId} expands over",
    },
    Variable {
        names: EXTENSIONS_PER_PAGE,
        read_by: "register, connect",
        unset: "`500` (1–1000)",
        help: "Page size of the extension list",
    },
    Variable {
        names: EXPIRES_IN,
        read_by: "register",
        unset: "`315360000` (10 years; `90d` works too)",
        help: "Subscription lifetime asked for",
    },
    Variable {
        names: MAX_WAIT,
        read_by: "register, list, unregister, catchup",
        unset: "`5m`",
        help: "Total time to wait on HTTP 429 (Retry-After) before giving up",
    },
    Variable {
        names: HTTP_TIMEOUT,
        read_by: "register, list, unregister, catchup",
        unset: "`30s` (at most `1h`)",
        help: "Limit on each platform call, from connecting to the last byte of the answer; a call that times out is not retried",
    },
    Variable {
        names: CA_FILE,
        read_by: "register, list, unregister, check, catchup, ship",
        unset: "the built-in roots",
        help: "PEM CA certificates trusted instead of the built-in roots for outbound TLS (like curl --cacert)",
    },
    Variable {
        names: SHIP_TIMEOUT,
        read_by: "ship",
        unset: "`10s`",
        help: "An HTTP answer or a NATS acknowledgement must come within this",
    },
    Variable {
        names: SHIP_STATUS_EVERY,
        read_by: "ship",
        unset: "`10s`",
        help: "How often ship prints its status line and lag",
    },
    Variable {
        names: crate::secret::SHIP_TOKEN,
        read_by: "ship",
        unset: "none",
        help: "Sent as Authorization: Bearer to HTTP sinks",
    },
    Variable {
        names: NATS_USER,
        read_by: "ship",
        unset: "none",
        help: "The NATS user (with NATS_PASSWORD)",
    },
    Variable {
        names: crate::secret::NATS_PASSWORD,
        read_by: "ship",
        unset: "none",
        help: "The NATS user's password",
    },
    Variable {
        names: crate::secret::NATS_TOKEN,
        read_by: "ship",
        unset: "none",
        help: "The NATS token",
    },
    Variable {
        names: NATS_CREDS,
        read_by: "ship",
        unset: "none",
        help: "A NATS .creds file (user JWT and nkey seed) or a user nkey seed file; at most 16 KiB, read again before each connect",
    },
    Variable {
        names: SHIP_TOKEN_FILE,
        read_by: "ship",
        unset: "none",
        help: "Read RINGHOOK_SHIP_TOKEN from this file instead (systemd credentials, Docker secrets)",
    },
    Variable {
        names: NATS_PASSWORD_FILE,
        read_by: "ship",
        unset: "none",
        help: "Read NATS_PASSWORD from this file instead",
    },
    Variable {
        names: NATS_TOKEN_FILE,
        read_by: "ship",
        unset: "none",
        help: "Read NATS_TOKEN from this file instead",
    },
    Variable {
        names: NO_COLOR,
        read_by: "tail",
        unset: "colours when stdout is a terminal",
        help: "Set and not empty: tail prints no colours (<https://no-color.org>)",
    },
];

// ---- tail ----

pub(crate) const FOLLOW: Opt = Opt::switch(
    "--follow",
    "Keep printing events as they are appended, across logrotate",
)
.short('f');
pub(crate) const LINES: Opt = Opt::flag("--lines", "N", "Show the last N events first")
    .short('n')
    .default("10");
pub(crate) const FILTER: Opt = Opt::flag(
    "--filter",
    "PATTERN",
    "Only events matching PATTERN (as --exec-filter: * wildcard, else prefix; ~ matches ids); repeatable",
)
.repeatable();

/// `serve`'s settings, in the order its `--help` lists them.
pub(crate) const SERVE: &[&Opt] = &[
    &LISTEN,
    &PATH,
    &LOG_FILE,
    &HEALTH_PATH,
    &HEALTH_MAX_SYNC,
    &METRICS_PATH,
    &TOKEN_FILE,
    &MAX_BODY,
    &MAX_HEADER,
    &REQUEST_TIMEOUT,
    &IDLE_TIMEOUT,
    &MAX_CONNECTIONS,
    &MAX_BUFFERED,
    &DEDUPE_WINDOW,
    &SHUTDOWN_GRACE,
    &REGISTER,
    &REGISTER_EVERY,
    &REGISTER_QUIET,
    &REGISTER_RETRY,
    &UNREGISTER_ON_EXIT,
    &EXEC,
    &EXEC_FILTER,
    &EXEC_MAX,
    &EXEC_QUEUE,
    &EXEC_TIMEOUT,
    &SERVE_SHIP,
];

/// `connect`'s settings: serve's log, outputs and optional listener (health and metrics only).
const CONNECT: &[&Opt] = &[
    &LOG_FILE.reworded("Append events to FILE, fdatasync'd in batches; '-' is stdout"),
    &STATE.reworded("State file: the OAuth session and the WebSocket session to recover"),
    &EVENT.reworded("Event filter; repeat for more; {extensionId} expands per extension"),
    &LISTEN
        .reworded("Listen here for the health and metrics paths only (no webhook)")
        .env_note("")
        .means("no listener"),
    &HEALTH_PATH.reworded("Answer GET PATH with 200 while subscribed and the log is writable"),
    &METRICS_PATH,
    &MAX_BODY.reworded("Largest WebSocket message accepted; a larger one re-makes the connection"),
    &DEDUPE_WINDOW,
    &SHUTDOWN_GRACE.reworded(
        "On SIGTERM, time for the session to delete its subscription and for --exec commands",
    ),
    &EXEC,
    &EXEC_FILTER,
    &EXEC_MAX,
    &EXEC_QUEUE,
    &EXEC_TIMEOUT,
    &SERVE_SHIP,
];

const REGISTER_FLAGS: &[&Opt] = &[
    &EVENT,
    &ADDRESS,
    &STATE,
    &TOKEN_FILE.reworded("Read the verification token from FILE"),
    &DRY_RUN,
    &JSON,
];

const LIST: &[&Opt] = &[
    &ADDRESS.reworded("Mark subscriptions at this address as ours"),
    &STATE.without_default(),
    &JSON.reworded("Print the subscriptions as a JSON array on stdout"),
];

const UNREGISTER: &[&Opt] = &[
    &ID,
    &ADDRESS.reworded("Without a state file, delete the subscriptions at this address"),
    &STATE.without_default(),
    &JSON,
];

const CHECK: &[&Opt] = &[
    &TIMEOUT,
    &TOKEN_FILE.reworded("Send the verification token from FILE, as the platform does"),
    &JSON.reworded("Print the result as one JSON object on stdout"),
];

const CATCHUP: &[&Opt] = &[
    &SINCE,
    &LOG_FILE
        .reworded("The event log serve writes; recovered records are appended to it")
        .without_default(),
    &STATE.reworded("State file naming the subscription and holding the sync tokens"),
    &DRY_RUN.reworded("Show what would be recovered; write nothing"),
    &JSON.reworded("Print the counts as one JSON object on stdout"),
    &EMIT,
];

const TAIL: &[&Opt] = &[
    &LOG_FILE
        .reworded("The event log serve writes")
        .without_default(),
    &FOLLOW,
    &LINES,
    &FILTER,
    &JSON.reworded("Print the records exactly as logged, one per line"),
];

const SHIP: &[&Opt] = &[
    &LOG_FILE
        .reworded("The event log to follow, as serve writes it")
        .without_default(),
    &TO,
    &CURSOR,
    &DEAD_LETTER,
    &FROM,
    &WINDOW,
    &ONCE,
    &SUPERVISED,
    &DRY_RUN.reworded("Print one line per record saying what would be sent; send nothing"),
];

/// Which command runs; `lib.rs` dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subcommand {
    /// `ringhook serve`.
    Serve,
    /// `ringhook register`.
    Register,
    /// `ringhook list`.
    List,
    /// `ringhook unregister`.
    Unregister,
    /// `ringhook check URL`.
    Check,
    /// `ringhook catchup`.
    Catchup,
    /// `ringhook tail`.
    Tail,
    /// `ringhook ship`.
    Ship,
    /// `ringhook connect`.
    Connect,
}

/// A subcommand: its name, one-line description, positional argument and settings.
#[derive(Debug)]
pub(crate) struct CommandSpec {
    /// What runs.
    pub cmd: Subcommand,
    /// Subcommand name.
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Positional arguments, for the usage line (`URL`); empty when there are none.
    pub positional: &'static str,
    /// Settings accepted after the subcommand.
    pub flags: &'static [&'static Opt],
}

/// Every subcommand, in the order `--help` lists them.
pub(crate) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        cmd: Subcommand::Serve,
        name: "serve",
        about: "Receive webhooks: answer the handshake, verify, log each event durably",
        positional: "",
        flags: SERVE,
    },
    CommandSpec {
        cmd: Subcommand::Connect,
        name: "connect",
        about: "Receive the same events over RingCentral's WebSocket: no public address, no tunnel",
        positional: "",
        flags: CONNECT,
    },
    CommandSpec {
        cmd: Subcommand::Register,
        name: "register",
        about: "Make the subscription exist and stay alive (idempotent; run it from cron)",
        positional: "",
        flags: REGISTER_FLAGS,
    },
    CommandSpec {
        cmd: Subcommand::List,
        name: "list",
        about: "List this app's subscriptions",
        positional: "",
        flags: LIST,
    },
    CommandSpec {
        cmd: Subcommand::Unregister,
        name: "unregister",
        about: "Delete the subscription this installation owns",
        positional: "",
        flags: UNREGISTER,
    },
    CommandSpec {
        cmd: Subcommand::Check,
        name: "check",
        about: "Perform the validation handshake against URL and judge the answer",
        positional: "URL",
        flags: CHECK,
    },
    CommandSpec {
        cmd: Subcommand::Tail,
        name: "tail",
        about: "Show the event log one readable line per event; -f follows it",
        positional: "",
        flags: TAIL,
    },
    CommandSpec {
        cmd: Subcommand::Catchup,
        name: "catchup",
        about: "Recover the messages and calls the receiver missed, into the event log",
        positional: "",
        flags: CATCHUP,
    },
    CommandSpec {
        cmd: Subcommand::Ship,
        name: "ship",
        about: "Deliver every logged event onward (HTTP or NATS JetStream), at least once, in order",
        positional: "",
        flags: SHIP,
    },
];

/// Flags accepted before or after any subcommand.
const GLOBAL_HELP: &str = "\
Global options:
      --env-file FILE   Read variables from FILE [default: .env when present]
  -h, --help            Print help
  -V, --version         Print version
";

/// Options that apply to every subcommand.
#[derive(Debug, Default, Clone)]
pub struct Global {
    /// `--env-file`: read variables from this file instead of `./.env`.
    pub env_file: Option<PathBuf>,
}

/// The flags given to one subcommand, as strings; `config` validates them.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `(flag name, value)` in the order given; switches have an empty value.
    given: Vec<(&'static str, String)>,
    /// Positional arguments.
    pub positional: Vec<String>,
}

impl Flags {
    /// The last value of `opt`, if given.
    pub fn value(&self, opt: &Opt) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(n, _)| *n == opt.name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag, in order.
    pub fn values(&self, opt: &Opt) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(n, _)| *n == opt.name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when `opt` was given (a switch, or a flag with any value).
    pub fn switch(&self, opt: &Opt) -> bool {
        self.given.iter().any(|(n, _)| *n == opt.name)
    }

    /// The first of `opts` that was given.
    pub(crate) fn first_given(&self, opts: &[&'static Opt]) -> Option<&'static Opt> {
        opts.iter().copied().find(|o| self.switch(o))
    }

    /// Flags from `(setting, value)` pairs, as the parser would give them (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&Opt, &str)]) -> Flags {
        Flags {
            given: pairs.iter().map(|(o, v)| (o.name, v.to_string())).collect(),
            positional: vec![],
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Invocation {
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// Run a subcommand.
    Run(Subcommand, Global, Flags),
}

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: Vec<OsString>) -> Result<Invocation, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut global = Global::default();
    let mut spec: Option<&'static CommandSpec> = None;
    let mut flags = Flags::default();

    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Invocation::Help(help(spec))),
            Short('V') | Long("version") => return Ok(Invocation::Version),
            Long("env-file") => global.env_file = Some(PathBuf::from(parser.value()?)),
            Value(v) if spec.is_none() => spec = Some(command(&v.string()?)?),
            Value(v) => positional(spec.expect("checked above"), &mut flags, v)?,
            Long(name) => {
                let Some(cmd) = spec else {
                    return Err(Error::Usage(format!(
                        "unknown option '--{name}' (options go after the command)"
                    )));
                };
                given(option(cmd, name)?, &mut parser, &mut flags)?;
            }
            Short(c) if spec.is_some() => {
                let cmd = spec.expect("checked above");
                let opt = cmd
                    .flags
                    .iter()
                    .copied()
                    .find(|f| f.short == Some(c))
                    .ok_or_else(|| {
                        Error::Usage(format!("unknown option '-{c}' for 'ringhook {}'", cmd.name))
                    })?;
                given(opt, &mut parser, &mut flags)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }

    let Some(cmd) = spec else {
        return Ok(Invocation::Help(help(None)));
    };
    if !cmd.positional.is_empty() && flags.positional.is_empty() {
        return Err(Error::Usage(format!(
            "'ringhook {}' needs {}",
            cmd.name, cmd.positional
        )));
    }
    Ok(Invocation::Run(cmd.cmd, global, flags))
}

/// Records `opt` (and its value, when it takes one).
fn given(opt: &'static Opt, parser: &mut lexopt::Parser, flags: &mut Flags) -> Result<(), Error> {
    let value = match opt.value {
        Some(_) => parser
            .value()?
            .into_string()
            .map_err(|_| Error::Usage(format!("{} is not valid UTF-8", opt.name)))?,
        None => String::new(),
    };
    flags.given.push((opt.name, value));
    if !opt.repeat && flags.values(opt).len() > 1 {
        return Err(Error::Usage(format!("{} given more than once", opt.name)));
    }
    Ok(())
}

/// The subcommand called `name`.
fn command(name: &str) -> Result<&'static CommandSpec, Error> {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::Usage(format!("unknown command '{name}'")))
}

/// The setting `--name` of `cmd`.
fn option(cmd: &CommandSpec, name: &str) -> Result<&'static Opt, Error> {
    cmd.flags
        .iter()
        .copied()
        .find(|f| &f.name[2..] == name)
        .ok_or_else(|| {
            Error::Usage(format!(
                "unknown option '--{name}' for 'ringhook {}'",
                cmd.name
            ))
        })
}

/// Takes `v` as `cmd`'s positional argument, when it has one not yet given.
fn positional(cmd: &CommandSpec, flags: &mut Flags, v: OsString) -> Result<(), Error> {
    if cmd.positional.is_empty() || !flags.positional.is_empty() {
        return Err(Error::Usage(format!(
            "unexpected argument '{}' for 'ringhook {}'",
            v.to_string_lossy(),
            cmd.name
        )));
    }
    flags.positional.push(v.string()?);
    Ok(())
}

/// The help screen for `cmd`, or the overview when `None`.
pub(crate) fn help(cmd: Option<&CommandSpec>) -> String {
    let mut out = String::new();
    match cmd {
        None => {
            out.push_str(concat!(
                "ringhook ",
                env!("CARGO_PKG_VERSION"),
                ": receive RingCentral webhooks and keep their subscriptions alive\n\n",
                "Usage: ringhook [--env-file FILE] <COMMAND> [OPTIONS]\n\nCommands:\n"
            ));
            for c in COMMANDS {
                out.push_str(&format!("  {:<11} {}\n", c.name, c.about));
            }
            out.push('\n');
            out.push_str(GLOBAL_HELP);
            out.push_str(
                "\nSee 'ringhook <COMMAND> --help' for a command's options and variables.\n",
            );
        }
        Some(c) => {
            out.push_str(&format!(
                "{}\n\nUsage: ringhook {} [OPTIONS]",
                c.about, c.name
            ));
            if !c.positional.is_empty() {
                out.push_str(&format!(" {}", c.positional));
            }
            out.push_str("\n\nOptions:\n");
            for f in c.flags {
                let left = match f.value {
                    Some(v) => format!("{} {v}", f.name),
                    None => f.name.to_string(),
                };
                let line = f.help_line();
                let lead = match f.short {
                    Some(c) => format!("  -{c}, "),
                    None => "      ".to_string(),
                };
                if left.len() > 28 {
                    out.push_str(&format!("{lead}{left}\n      {:<28} {line}\n", ""));
                } else {
                    out.push_str(&format!("{lead}{left:<28} {line}\n"));
                }
            }
            out.push('\n');
            out.push_str(GLOBAL_HELP);
        }
    }
    out
}

/// Where the reference is committed, relative to the crate's root.
#[cfg(test)]
const REFERENCE_PATH: &str = "docs/reference.md";

/// The flag and variable reference in Markdown, generated from the declarations above (the
/// committed `docs/reference.md`; a test keeps them equal).
#[cfg(test)]
pub(crate) fn reference() -> String {
    let mut known: Vec<&str> = COMMANDS
        .iter()
        .flat_map(|c| c.flags.iter())
        .flat_map(|f| f.env.iter().copied())
        .collect();
    known.extend(UNFLAGGED.iter().flat_map(|v| v.names.iter().copied()));
    // A cell's text, table-safe, with the variable names in it in backticks.
    let text = |t: &str| -> String {
        t.replace('|', "\\|")
            .split(' ')
            .map(|w| {
                let name = w.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                if known.contains(&name) {
                    w.replacen(name, &format!("`{name}`"), 1)
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let row = |cells: &[&str]| format!("| {} |\n", cells.join(" | "));
    let head = "| flag | variables | default | description |\n|---|---|---|---|\n";

    let mut out = String::from(
        "# Flag and variable reference\n\n\
         <!-- Generated from src/cli.rs: do not edit. Regenerate with \
         `RINGHOOK_BLESS=1 cargo test --lib docs_reference`. -->\n\n\
         Every flag of every command, with the variables that set it when the flag is absent, and \
         every variable without a flag. Precedence: flag > environment variable > env file > \
         default. Durations are `10s`, `500ms`, `2m` or a number of seconds; sizes are bytes or \
         `KiB`/`MiB`. What each setting does, at length: the [guide](guide.md).\n\n\
         Commands:\n\n",
    );
    for c in COMMANDS {
        out.push_str(&format!("- [`{0}`](#ringhook-{0}): {1}\n", c.name, c.about));
    }
    out.push_str("\n## Global options\n\nAccepted before or after any command.\n\n");
    out.push_str(head);
    for line in GLOBAL_HELP.lines().skip(1) {
        let (flags, rest) = line.trim().split_once("  ").unwrap_or((line.trim(), ""));
        let (help, default) = match rest.trim().split_once(" [default: ") {
            Some((h, d)) => (h, d.trim_end_matches(']')),
            None => (rest.trim(), ""),
        };
        let flags: Vec<String> = flags.split(", ").map(|f| format!("`{f}`")).collect();
        out.push_str(&row(&[&flags.join(", "), "", &text(default), &text(help)]));
    }
    for c in COMMANDS {
        out.push_str(&format!(
            "\n## `ringhook {}`\n\n{}\n\n",
            c.name,
            text(c.about)
        ));
        out.push_str(&format!("Usage: `ringhook {} [OPTIONS]", c.name));
        if !c.positional.is_empty() {
            out.push_str(&format!(" {}", c.positional));
        }
        out.push_str("`\n\n");
        out.push_str(head);
        for f in c.flags {
            let mut flag = match f.short {
                Some(s) => format!("`-{s}`, `{}", f.name),
                None => format!("`{}", f.name),
            };
            if let Some(v) = f.value {
                flag.push_str(&format!(" {v}"));
            }
            flag.push('`');
            let mut vars: Vec<String> = f.env.iter().map(|v| format!("`{v}`")).collect();
            match (vars.last_mut(), f.env_note.strip_prefix('=')) {
                (Some(last), Some(value)) => last.insert_str(last.len() - 1, &format!("={value}")),
                _ if !f.env_note.is_empty() => vars.push(text(f.env_note.trim_start_matches(", "))),
                _ => {}
            }
            let default = match f.unset {
                Unset::Absent => String::new(),
                Unset::Value(d) => format!("`{d}`"),
                Unset::Means(d) => text(d),
            };
            out.push_str(&row(&[&flag, &vars.join(", "), &default, &text(f.help)]));
        }
    }
    out.push_str(
        "\n## Variables without a flag\n\n\
         Secrets are only ever variables (or files they name), never flags, and are never printed; \
         `--exec` children get none of them.\n\n\
         | variables | read by | default | description |\n|---|---|---|---|\n",
    );
    let secrets: Vec<&str> = crate::secret::variables().collect();
    for v in UNFLAGGED {
        let mut names = v
            .names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if v.names.iter().all(|n| secrets.contains(n)) {
            names.push_str(" (secret)");
        }
        out.push_str(&row(&[&names, v.read_by, v.unset, &text(v.help)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Invocation, Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn run(args: &[&str]) -> (Subcommand, Global, Flags) {
        match parse_strs(args).unwrap() {
            Invocation::Run(c, g, f) => (c, g, f),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn serve_flags_are_collected() {
        let (cmd, g, f) = run(&[
            "--env-file",
            "x.env",
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--path=/hook",
        ]);
        assert_eq!(cmd, Subcommand::Serve);
        assert_eq!(g.env_file.unwrap(), PathBuf::from("x.env"));
        assert_eq!(f.value(&LISTEN), Some("127.0.0.1:9"));
        assert_eq!(f.value(&PATH), Some("/hook"));
        assert!(!f.switch(&REGISTER));
    }

    #[test]
    fn unknown_flag_names_itself() {
        let err = parse_strs(&["serve", "--lisen", "x"]).unwrap_err();
        assert!(err.to_string().contains("--lisen"), "{err}");
        assert_eq!(err.exit_code(), 2);
        // A flag of another command is unknown here.
        let err = parse_strs(&["list", "--dry-run"]).unwrap_err();
        assert!(err.to_string().contains("'ringhook list'"), "{err}");
    }

    #[test]
    fn unknown_command_is_usage_error() {
        let err = parse_strs(&["serv"]).unwrap_err();
        assert!(err.to_string().contains("serv"));
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn repeated_single_flag_is_refused() {
        let err = parse_strs(&["serve", "--path", "/a", "--path", "/b"]).unwrap_err();
        assert_eq!(err.to_string(), "--path given more than once");
        let err = parse_strs(&["register", "--json", "--json"]).unwrap_err();
        assert_eq!(err.to_string(), "--json given more than once");
    }

    #[test]
    fn repeatable_flag_keeps_every_value() {
        let (cmd, _, f) = run(&["register", "--event", "/a", "--event", "/b"]);
        assert_eq!(cmd, Subcommand::Register);
        assert_eq!(f.values(&EVENT), vec!["/a", "/b"]);
    }

    #[test]
    fn check_needs_url() {
        assert!(parse_strs(&["check"]).is_err());
        let (cmd, _, f) = run(&["check", "http://x/"]);
        assert_eq!(cmd, Subcommand::Check);
        assert_eq!(f.positional, vec!["http://x/"]);
        assert!(parse_strs(&["check", "http://x/", "http://y/"]).is_err());
    }

    #[test]
    fn every_command_parses_to_its_own_cmd() {
        for c in COMMANDS {
            let args: &[&str] = if c.positional.is_empty() {
                &[c.name]
            } else {
                &[c.name, "x"]
            };
            assert_eq!(run(args).0, c.cmd, "{}", c.name);
        }
    }

    #[test]
    fn help_lists_every_flag_with_its_variables_and_default() {
        for c in COMMANDS {
            let h = help(Some(c));
            for f in c.flags {
                assert!(h.contains(f.name), "{} help lacks {}", c.name, f.name);
                for v in f.env {
                    assert!(h.contains(v), "{} help lacks {v} of {}", c.name, f.name);
                }
                if let Unset::Value(d) | Unset::Means(d) = f.unset {
                    assert!(h.contains(&format!("[default: {d}]")), "{}", f.name);
                }
                assert!(f.name.starts_with("--"), "{}", f.name);
                assert_eq!(f.repeat, f.help.contains("repeat"), "{}", f.name);
            }
            let mut names: Vec<_> = c.flags.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), c.flags.len(), "{} lists a flag twice", c.name);
        }
    }

    #[test]
    fn declared_defaults_are_what_the_help_shows() {
        assert_eq!(
            MAX_BODY.help_line(),
            "Largest request body accepted; larger gets 413 unread [env: RINGHOOK_MAX_BODY] [default: 1MiB]"
        );
        assert_eq!(
            TOKEN_FILE.help_line(),
            "Read the verification token from FILE (systemd credentials, Docker secrets) [env: WEBHOOK_VERIFICATION_TOKEN holds the token itself]"
        );
        assert_eq!(
            ID.help_line(),
            "Delete this subscription instead of the one this installation owns"
        );
    }

    /// Every variable ringhook reads (a flag's, one without a flag, a secret) is in the reference.
    #[test]
    fn every_variable_is_in_the_reference() {
        let reference = reference();
        let mut names: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|c| c.flags.iter())
            .flat_map(|f| f.env.iter().copied())
            .collect();
        names.extend(VARIABLES.iter().copied().flatten());
        names.extend(crate::secret::variables());
        let rows: Vec<&str> = reference.lines().filter(|l| l.starts_with('|')).collect();
        for name in names {
            let (plain, set) = (format!("`{name}`"), format!("`{name}="));
            assert!(
                rows.iter().any(|l| l.contains(&plain) || l.contains(&set)),
                "the reference's tables do not name `{name}`"
            );
        }
    }

    /// `docs/reference.md` is what `reference()` generates; `RINGHOOK_BLESS=1` rewrites it.
    #[test]
    fn docs_reference_is_current() {
        let generated = reference();
        if generated == include_str!("../docs/reference.md") {
            return;
        }
        if std::env::var_os("RINGHOOK_BLESS").is_some_and(|v| v == "1") {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE_PATH);
            std::fs::write(&path, generated).expect("write docs/reference.md");
            return;
        }
        panic!(
            "{REFERENCE_PATH} is not what src/cli.rs declares; regenerate it with \
             `RINGHOOK_BLESS=1 cargo test --lib docs_reference` and commit it"
        );
    }
}
