//! ringhook: receive RingCentral events, keep them in one durable log, carry them onward.
//!
//! `ARCHITECTURE.md` has the bird's-eye view and the codemap. In short: `input/` puts events
//! into the log (`serve`, `catchup`), `log/` alone knows the log's lines, `output/` carries them
//! on (`ship`, `tail`); `register/` keeps the subscription alive; `cli` declares every setting
//! once, `config` parses them, `platform` and `https` talk to RingCentral.
#![forbid(unsafe_code)]
// Every module is private and its items `pub(crate)`, so the compiler reports dead code; the only
// public surface is `run` and the few items `internals` re-exports for the tests and fuzz targets.
#![warn(unreachable_pub)]

#[macro_use]
mod oplog;
mod cli;
mod config;
mod error;
mod https;
mod input;
mod log;
mod output;
mod platform;
mod register;
mod secret;
mod state;
mod stdout;
mod webhook;

/// What `tests/` and `fuzz/` drive without the binary: the metrics renderer (checked by
/// promtool), the NATS client (against a real nats-server), the request policy and the
/// configuration parsers (fuzzed). Not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::cli::Flags;
    pub use crate::config::{Vars, parse_env};
    pub use crate::https::TrustRoots;
    pub use crate::input::serve::config::{ServeConfig, serve_variables};
    pub use crate::input::serve::metrics::{
        Counters, ExecOutcomes, Histogram, Process, RegisterStatus, Scrape, ShipFigures, render,
    };
    #[cfg(any(test, fuzzing))]
    pub use crate::input::serve::oracle::check_invariants;
    pub use crate::input::serve::policy::Policy;
    pub use crate::oplog::set_quiet;
    #[cfg(any(feature = "ship", test))]
    pub use crate::output::ship::nats::client::{Auth, NatsConn, ServerOp, status_of};
    #[cfg(feature = "ship")]
    pub use crate::output::ship::nats::nkey::Creds;
    pub use crate::secret::{Secret, VerificationToken};
}

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
        cli::Invocation::Help(text) => stdout::print(&text),
        cli::Invocation::Version => {
            stdout::print(concat!("ringhook ", env!("CARGO_PKG_VERSION"), "\n"))
        }
        cli::Invocation::Run(cmd, global, flags) => {
            let vars = config::Vars::load(&global)?;
            match cmd {
                cli::Subcommand::Serve => {
                    input::serve::serve(input::serve::ServeConfig::resolve(&flags, &vars)?)
                }
                cli::Subcommand::Register => register::run_register(&flags, &vars),
                cli::Subcommand::List => register::run_list(&flags, &vars),
                cli::Subcommand::Unregister => register::run_unregister(&flags, &vars),
                cli::Subcommand::Check => register::check::run(&flags, &vars),
                cli::Subcommand::Tail => output::tail::run_command(&flags, &vars),
                #[cfg(feature = "catchup")]
                cli::Subcommand::Catchup => input::catchup::run(&flags, &vars),
                #[cfg(not(feature = "catchup"))]
                cli::Subcommand::Catchup => Err(error::Error::Usage(
                    "this build has no catchup: build with --features catchup".into(),
                )),
                #[cfg(feature = "connect")]
                cli::Subcommand::Connect => input::connect::run(&flags, &vars),
                #[cfg(not(feature = "connect"))]
                cli::Subcommand::Connect => Err(error::Error::Usage(
                    "this build has no connect: build with --features connect".into(),
                )),
                #[cfg(feature = "ship")]
                cli::Subcommand::Ship => {
                    output::ship::run(output::ship::ShipConfig::resolve(&flags, &vars)?)
                }
                #[cfg(not(feature = "ship"))]
                cli::Subcommand::Ship => Err(error::Error::Usage(
                    "this build has no ship: build with --features ship".into(),
                )),
            }
        }
    }
}
