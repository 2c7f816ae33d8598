//! ringhook: receive RingCentral webhooks and keep their subscriptions alive.
//!
//! See `README.md` ("Architecture") for the bird's-eye view. In short: `cli` turns arguments into
//! typed flags, `config` validates them against the environment and the env file, and each
//! subcommand lives in its own module. `http` and `register::plan` are pure; `receiver` owns the
//! sockets, `event_log` owns the file, `platform` owns the RingCentral JSON.
#![forbid(unsafe_code)]

#[macro_use]
pub mod oplog;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod event_log;
pub mod exchange;
pub mod exec;
pub mod http;
pub mod platform;
pub mod receiver;
pub mod register;
pub mod registrar;
pub mod secret;

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
        cli::Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        cli::Command::Version => {
            println!("ringhook {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        cli::Command::Serve(global, flags) => {
            let vars = config::Vars::load(&global)?;
            let cfg = config::ServeConfig::resolve(&flags, &vars)?;
            receiver::serve(cfg)
        }
        cli::Command::Register(global, flags) => {
            register::run_register(&flags, &config::Vars::load(&global)?)
        }
        cli::Command::List(global, flags) => {
            register::run_list(&flags, &config::Vars::load(&global)?)
        }
        cli::Command::Unregister(global, flags) => {
            register::run_unregister(&flags, &config::Vars::load(&global)?)
        }
        cli::Command::Check(global, flags) => check::run(&flags, &config::Vars::load(&global)?),
    }
}
