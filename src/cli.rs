//! Command-line parsing, stage one: arguments into typed-as-the-CLI flags, no syscalls.
//!
//! Every flag is declared once, in the tables below, with its help line; the help screens are
//! generated from the same tables. Values are validated in `config`, which knows the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::error::Error;

/// One flag a subcommand accepts.
#[derive(Debug)]
pub struct FlagSpec {
    /// Long name, with the dashes: `--listen`.
    pub name: &'static str,
    /// Placeholder for the value, or `None` for a switch.
    pub value: Option<&'static str>,
    /// One line for `--help`, including the env var and the default.
    pub help: &'static str,
    /// True when the flag may be given more than once.
    pub repeat: bool,
}

const fn flag(name: &'static str, value: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        value: Some(value),
        help,
        repeat: false,
    }
}

const fn switch(name: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        value: None,
        help,
        repeat: false,
    }
}

/// The subcommands, their one-line descriptions, positional arguments and flags.
pub struct CommandSpec {
    /// Subcommand name.
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Positional arguments, for the usage line (`URL`); empty when there are none.
    pub positional: &'static str,
    /// Flags accepted after the subcommand.
    pub flags: &'static [FlagSpec],
}

const SERVE_FLAGS: &[FlagSpec] = &[
    flag(
        "--listen",
        "ADDR:PORT",
        "Address to listen on [env: RINGHOOK_LISTEN, or PORT alone] [default: 0.0.0.0:3000]",
    ),
    flag(
        "--path",
        "PATH",
        "Path RingCentral posts to [env: WEBHOOK_PATH] [default: /webhook]",
    ),
    flag(
        "--log-file",
        "FILE",
        "Append events to FILE, fdatasync'd before each 200; '-' is stdout [env: RINGHOOK_LOG_FILE] [default: stdout]",
    ),
    flag(
        "--health-path",
        "PATH",
        "Answer GET PATH with 200 (503 while the log is unwritable) [env: RINGHOOK_HEALTH_PATH] [default: off]",
    ),
    flag(
        "--verification-token-file",
        "FILE",
        "Read the verification token from FILE (systemd credentials, Docker secrets) [env: WEBHOOK_VERIFICATION_TOKEN holds the token itself]",
    ),
    flag(
        "--max-body",
        "SIZE",
        "Largest request body accepted; larger gets 413 unread [env: RINGHOOK_MAX_BODY] [default: 1MiB]",
    ),
    flag(
        "--max-header",
        "SIZE",
        "Largest request head accepted; larger gets 431 [env: RINGHOOK_MAX_HEADER] [default: 16KiB]",
    ),
    flag(
        "--request-timeout",
        "DURATION",
        "A request must arrive whole within this; else 408 and close [env: RINGHOOK_REQUEST_TIMEOUT] [default: 10s]",
    ),
    flag(
        "--idle-timeout",
        "DURATION",
        "Close a keep-alive connection idle this long [env: RINGHOOK_IDLE_TIMEOUT] [default: 60s]",
    ),
    flag(
        "--max-connections",
        "N",
        "Open connections at most; when full, the longest idle or stalled one is closed [env: RINGHOOK_MAX_CONNECTIONS] [default: 256]",
    ),
    flag(
        "--dedupe-window",
        "N",
        "Remember this many recent notification uuids to drop redeliveries [env: RINGHOOK_DEDUPE_WINDOW] [default: 10000]",
    ),
    flag(
        "--shutdown-grace",
        "DURATION",
        "On SIGTERM, time given to requests in flight [env: RINGHOOK_SHUTDOWN_GRACE] [default: 5s]",
    ),
    switch(
        "--register",
        "Also keep the subscription alive: run 'register' beside the receiver (needs register's variables) [env: RINGHOOK_REGISTER=1]",
    ),
    flag(
        "--register-every",
        "DURATION",
        "With --register: run it again this often [env: RINGHOOK_REGISTER_EVERY] [default: 12h]",
    ),
    flag(
        "--register-quiet",
        "DURATION",
        "With --register: also run it when no notification came for this long [env: RINGHOOK_REGISTER_QUIET] [default: off]",
    ),
    flag(
        "--register-retry",
        "DURATION",
        "With --register: first retry after a failed run, doubling up to 1h [env: RINGHOOK_REGISTER_RETRY] [default: 30s]",
    ),
    switch(
        "--unregister-on-exit",
        "With --register: delete the subscription at a clean stop (quick tunnels) [env: RINGHOOK_UNREGISTER_ON_EXIT=1]",
    ),
    flag(
        "--exec",
        "COMMAND",
        "Run COMMAND for each logged notification, JSON on stdin; no shell unless you write sh -c [env: RINGHOOK_EXEC]",
    ),
    FlagSpec {
        name: "--exec-filter",
        value: Some("PATTERN"),
        help: "Only for events matching PATTERN (* wildcard, else prefix; ~ matches ids); repeatable [env: RINGHOOK_EXEC_FILTER, whitespace-separated]",
        repeat: true,
    },
    flag(
        "--exec-max",
        "N",
        "Commands running at once [env: RINGHOOK_EXEC_MAX] [default: 2]",
    ),
    flag(
        "--exec-queue",
        "N",
        "Events waiting for a free slot; beyond it the command is skipped and logged [env: RINGHOOK_EXEC_QUEUE] [default: 100]",
    ),
    flag(
        "--exec-timeout",
        "DURATION",
        "Kill a run (and its process group) after this [env: RINGHOOK_EXEC_TIMEOUT] [default: 30s]",
    ),
];

const REGISTER_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "--event",
        value: Some("FILTER"),
        help: "Event filter; repeat for more; {extensionId} expands per extension [env: RINGHOOK_EVENT_FILTERS, whitespace-separated]",
        repeat: true,
    },
    flag(
        "--address",
        "URL",
        "Public URL of the receiver [env: WEBHOOK_ADDRESS, DELIVERY_MODE_ADDRESS, WEBHOOK_DELIVERY_ADDRESS]",
    ),
    flag(
        "--state",
        "FILE",
        "State file naming the subscription this installation owns [env: RINGHOOK_STATE] [default: $XDG_STATE_HOME/ringhook/state.json, else ~/.local/state/ringhook/state.json]",
    ),
    flag(
        "--verification-token-file",
        "FILE",
        "Read the verification token from FILE [env: WEBHOOK_VERIFICATION_TOKEN holds the token itself]",
    ),
    switch(
        "--dry-run",
        "Show what would be done (the handshake probe included); change nothing",
    ),
    switch("--json", "Print the outcome as one JSON object on stdout"),
];

const LIST_FLAGS: &[FlagSpec] = &[
    flag(
        "--address",
        "URL",
        "Mark subscriptions at this address as ours [env: WEBHOOK_ADDRESS, DELIVERY_MODE_ADDRESS, WEBHOOK_DELIVERY_ADDRESS]",
    ),
    flag(
        "--state",
        "FILE",
        "State file naming the subscription this installation owns [env: RINGHOOK_STATE]",
    ),
    switch(
        "--json",
        "Print the subscriptions as a JSON array on stdout",
    ),
];

const UNREGISTER_FLAGS: &[FlagSpec] = &[
    flag(
        "--id",
        "ID",
        "Delete this subscription instead of the one this installation owns",
    ),
    flag(
        "--address",
        "URL",
        "Without a state file, delete the subscriptions at this address [env: WEBHOOK_ADDRESS, DELIVERY_MODE_ADDRESS, WEBHOOK_DELIVERY_ADDRESS]",
    ),
    flag(
        "--state",
        "FILE",
        "State file naming the subscription this installation owns [env: RINGHOOK_STATE]",
    ),
    switch("--json", "Print the outcome as one JSON object on stdout"),
];

const CHECK_FLAGS: &[FlagSpec] = &[
    flag(
        "--timeout",
        "DURATION",
        "Give up after this long [default: 3s, the platform's limit]",
    ),
    flag(
        "--verification-token-file",
        "FILE",
        "Send the verification token from FILE, as the platform does [env: WEBHOOK_VERIFICATION_TOKEN holds the token itself]",
    ),
    switch("--json", "Print the result as one JSON object on stdout"),
];

/// Every subcommand, in the order `--help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "serve",
        about: "Receive webhooks: answer the handshake, verify, log each event durably",
        positional: "",
        flags: SERVE_FLAGS,
    },
    CommandSpec {
        name: "register",
        about: "Make the subscription exist and stay alive (idempotent; run it from cron)",
        positional: "",
        flags: REGISTER_FLAGS,
    },
    CommandSpec {
        name: "list",
        about: "List this app's subscriptions",
        positional: "",
        flags: LIST_FLAGS,
    },
    CommandSpec {
        name: "unregister",
        about: "Delete the subscription this installation owns",
        positional: "",
        flags: UNREGISTER_FLAGS,
    },
    CommandSpec {
        name: "check",
        about: "Perform the validation handshake against URL and judge the answer",
        positional: "URL",
        flags: CHECK_FLAGS,
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
    pub given: Vec<(&'static str, String)>,
    /// Positional arguments.
    pub positional: Vec<String>,
}

impl Flags {
    /// The last value of `name`, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Flags from `(name, value)` pairs, as the parser would give them (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&'static str, &str)]) -> Flags {
        Flags {
            given: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            positional: vec![],
        }
    }

    /// True when the switch `name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| *n == name)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// `ringhook serve`.
    Serve(Global, Flags),
    /// `ringhook register`.
    Register(Global, Flags),
    /// `ringhook list`.
    List(Global, Flags),
    /// `ringhook unregister`.
    Unregister(Global, Flags),
    /// `ringhook check URL`.
    Check(Global, Flags),
}

/// Parses the arguments (without the program name).
pub fn parse(args: Vec<OsString>) -> Result<Command, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut global = Global::default();
    let mut spec: Option<&'static CommandSpec> = None;
    let mut flags = Flags::default();

    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(help(spec))),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("env-file") => global.env_file = Some(PathBuf::from(parser.value()?)),
            Value(v) if spec.is_none() => {
                let name = v.string()?;
                spec = Some(
                    COMMANDS
                        .iter()
                        .find(|c| c.name == name)
                        .ok_or_else(|| Error::Usage(format!("unknown command '{name}'")))?,
                );
            }
            Value(v) => {
                let cmd = spec.expect("checked above");
                if cmd.positional.is_empty() || !flags.positional.is_empty() {
                    return Err(Error::Usage(format!(
                        "unexpected argument '{}' for 'ringhook {}'",
                        v.to_string_lossy(),
                        cmd.name
                    )));
                }
                flags.positional.push(v.string()?);
            }
            Long(name) => {
                let Some(cmd) = spec else {
                    return Err(Error::Usage(format!(
                        "unknown option '--{name}' (options go after the command)"
                    )));
                };
                let Some(f) = cmd.flags.iter().find(|f| &f.name[2..] == name) else {
                    return Err(Error::Usage(format!(
                        "unknown option '--{name}' for 'ringhook {}'",
                        cmd.name
                    )));
                };
                if !f.repeat && flags.switch(f.name) {
                    return Err(Error::Usage(format!("{} given more than once", f.name)));
                }
                let value = match f.value {
                    Some(_) => parser
                        .value()?
                        .into_string()
                        .map_err(|_| Error::Usage(format!("{} is not valid UTF-8", f.name)))?,
                    None => String::new(),
                };
                flags.given.push((f.name, value));
            }
            other => return Err(other.unexpected().into()),
        }
    }

    let Some(cmd) = spec else {
        return Ok(Command::Help(help(None)));
    };
    if !cmd.positional.is_empty() && flags.positional.is_empty() {
        return Err(Error::Usage(format!(
            "'ringhook {}' needs {}",
            cmd.name, cmd.positional
        )));
    }
    Ok(match cmd.name {
        "serve" => Command::Serve(global, flags),
        "register" => Command::Register(global, flags),
        "list" => Command::List(global, flags),
        "unregister" => Command::Unregister(global, flags),
        "check" => Command::Check(global, flags),
        _ => unreachable!("every CommandSpec is matched"),
    })
}

/// The help screen for `cmd`, or the overview when `None`.
pub fn help(cmd: Option<&CommandSpec>) -> String {
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
                if left.len() > 28 {
                    out.push_str(&format!("      {left}\n      {:<28} {}\n", "", f.help));
                } else {
                    out.push_str(&format!("      {left:<28} {}\n", f.help));
                }
            }
            out.push('\n');
            out.push_str(GLOBAL_HELP);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn serve_flags_are_collected() {
        let Command::Serve(g, f) = parse_strs(&[
            "--env-file",
            "x.env",
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--path=/hook",
        ])
        .unwrap() else {
            panic!("not serve")
        };
        assert_eq!(g.env_file.unwrap(), PathBuf::from("x.env"));
        assert_eq!(f.value("--listen"), Some("127.0.0.1:9"));
        assert_eq!(f.value("--path"), Some("/hook"));
    }

    #[test]
    fn unknown_flag_names_itself() {
        let err = parse_strs(&["serve", "--lisen", "x"]).unwrap_err();
        assert!(err.to_string().contains("--lisen"), "{err}");
        assert_eq!(err.exit_code(), 2);
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
        assert!(err.to_string().contains("--path"));
    }

    #[test]
    fn repeatable_flag_keeps_every_value() {
        let Command::Register(_, f) =
            parse_strs(&["register", "--event", "/a", "--event", "/b"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(f.values("--event"), vec!["/a", "/b"]);
    }

    #[test]
    fn check_needs_url() {
        assert!(parse_strs(&["check"]).is_err());
        let Command::Check(_, f) = parse_strs(&["check", "http://x/"]).unwrap() else {
            panic!()
        };
        assert_eq!(f.positional, vec!["http://x/"]);
    }

    #[test]
    fn help_lists_every_flag() {
        for c in COMMANDS {
            let h = help(Some(c));
            for f in c.flags {
                assert!(h.contains(f.name), "{} help lacks {}", c.name, f.name);
            }
        }
    }
}
