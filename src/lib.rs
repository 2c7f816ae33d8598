//! ringhook: receive RingCentral webhooks and keep their subscriptions alive.
//!
//! See `README.md` ("Architecture") for the bird's-eye view. In short: `cli` turns arguments into
//! typed flags, `config` holds the shared parsers (environment, env file, values), and each
//! subcommand lives in its own module or folder (`serve/`, `register/`, `check`). `webhook` is
//! the wire contract both sides share; `serve::policy` and `register::plan` are pure;
//! `serve::server` owns the sockets, `serve::event_log` owns the file, `platform` owns the
//! RingCentral REST JSON.
#![forbid(unsafe_code)]

#[macro_use]
pub mod oplog;
#[cfg(any(feature = "catchup", test))]
pub mod catchup;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
/// Public: `tests/nats.rs` drives a real nats-server through this client.
#[cfg(any(feature = "ship", test))]
pub mod nats;
mod output;
pub mod platform;
pub mod register;
pub mod secret;
pub mod serve;
#[cfg(any(feature = "ship", test))]
pub mod ship;
pub mod tail;
pub mod webhook;

use error::Error;

/// Runs ringhook with `args` (without the program name) and returns the process exit code.
///
/// Exit codes are a contract: 0 success, 1 runtime failure, 2 usage or configuration error.
pub fn run(args: Vec<std::ffi::OsString>) -> i32 {
    match try_run(args) {
        Ok(()) => 0,
        Err(err) => {
            err.report();
            err.exit_code()
        }
    }
}

fn try_run(args: Vec<std::ffi::OsString>) -> Result<(), Error> {
    let command = cli::parse(args)?;
    match command {
        cli::Command::Help(text) => output::print(&text),
        cli::Command::Version => {
            output::print(concat!("ringhook ", env!("CARGO_PKG_VERSION"), "\n"))
        }
        cli::Command::Run(cmd, global, flags) => {
            let vars = config::Vars::load(&global)?;
            match cmd {
                cli::Cmd::Serve => serve::serve(serve::ServeConfig::resolve(&flags, &vars)?),
                cli::Cmd::Register => register::run_register(&flags, &vars),
                cli::Cmd::List => register::run_list(&flags, &vars),
                cli::Cmd::Unregister => register::run_unregister(&flags, &vars),
                cli::Cmd::Check => check::run(&flags, &vars),
                cli::Cmd::Tail => tail::run_command(&flags, &vars),
                #[cfg(feature = "catchup")]
                cli::Cmd::Catchup => catchup::run(&flags, &vars),
                #[cfg(not(feature = "catchup"))]
                cli::Cmd::Catchup => Err(error::Error::Usage(
                    "this build has no catchup: build with --features catchup".into(),
                )),
                #[cfg(feature = "ship")]
                cli::Cmd::Ship => ship::run(ship::ShipConfig::resolve(&flags, &vars)?),
                #[cfg(not(feature = "ship"))]
                cli::Cmd::Ship => Err(error::Error::Usage(
                    "this build has no ship: build with --features ship".into(),
                )),
            }
        }
    }
}
