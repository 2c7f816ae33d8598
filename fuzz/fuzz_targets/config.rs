//! The env-file parser and `serve`'s configuration validation: any bytes must give settings or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhook::cli::Flags;
use ringhook::config::{ServeConfig, Vars, parse_env};

const NAMES: &[&str] = &[
    "RINGHOOK_LISTEN",
    "PORT",
    "WEBHOOK_PATH",
    "RINGHOOK_HEALTH_PATH",
    "RINGHOOK_LOG_FILE",
    "WEBHOOK_VERIFICATION_TOKEN",
    "RINGHOOK_MAX_BODY",
    "RINGHOOK_MAX_HEADER",
    "RINGHOOK_REQUEST_TIMEOUT",
    "RINGHOOK_IDLE_TIMEOUT",
    "RINGHOOK_MAX_CONNECTIONS",
    "RINGHOOK_DEDUPE_WINDOW",
    "RINGHOOK_SHUTDOWN_GRACE",
];

fuzz_target!(|data: &[u8]| {
    let _ = parse_env(data);
    let text = String::from_utf8_lossy(data);
    let env: Vec<(&str, &str)> = NAMES.iter().copied().zip(text.split('\n')).collect();
    let _ = ServeConfig::resolve(&Flags::default(), &Vars::from_maps(&env, &[]));
});
