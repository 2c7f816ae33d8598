//! The env-file parser and `serve`'s configuration validation: any bytes must give settings or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhook::internals::Flags;
use ringhook::internals::{Vars, parse_env};
use ringhook::internals::{ServeConfig, serve_variables};

fuzz_target!(|data: &[u8]| {
    let _ = parse_env(data);
    let text = String::from_utf8_lossy(data);
    let env: Vec<(&str, &str)> = serve_variables()
        .into_iter()
        .zip(text.split('\n'))
        .collect();
    let _ = ServeConfig::resolve(&Flags::default(), &Vars::from_maps(&env, &[]));
});
