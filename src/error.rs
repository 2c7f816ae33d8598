//! The one error type every subcommand returns, and the one place that prints it.

use std::fmt;
use std::io::Write;

/// What went wrong, classified by the exit code it maps to.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is malformed (unknown flag, missing value). Exit 2.
    Usage(String),
    /// A flag, variable or file has a bad value; the message names it. Exit 2.
    Config(String),
    /// Something failed while running (socket, platform, disk). Exit 1.
    Runtime {
        /// What failed.
        message: String,
        /// What the user can do about it, when we know.
        hint: Option<String>,
    },
    /// Whoever read stdout went away (`| head`): the command stops quietly. Exit 0.
    StdoutClosed,
}

impl Error {
    /// A runtime failure without a hint.
    pub fn runtime(message: impl Into<String>) -> Error {
        Error::Runtime {
            message: message.into(),
            hint: None,
        }
    }

    /// A runtime failure with a hint for the user.
    pub fn runtime_hint(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Runtime {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::Runtime { .. } => 1,
            Error::StdoutClosed => 0,
        }
    }

    /// Prints the error (and hint) to stderr, once.
    pub fn report(&self) {
        if let Error::StdoutClosed = self {
            return;
        }
        // A closed stderr is ignored, as in `oplog`: there is no one left to tell.
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "ringhook: error: {self}");
        let _ = match self {
            Error::Runtime {
                hint: Some(hint), ..
            } => writeln!(err, "ringhook: hint: {hint}"),
            Error::Usage(_) => writeln!(err, "ringhook: try 'ringhook --help'"),
            _ => Ok(()),
        };
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Config(m) => f.write_str(m),
            Error::Runtime { message, .. } => f.write_str(message),
            Error::StdoutClosed => f.write_str("stdout closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(e.to_string())
    }
}
