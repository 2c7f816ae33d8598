//! Bytes in → ureq-proto → the request policy → answer bytes, through the receiver's own
//! `Exchange`. The first byte picks the policy (token or not) and the next four the read sizes;
//! `check_invariants` panics on a hang, a malformed answer, an answer over 1024 bytes or a log
//! record that is not one JSON line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhook::internals::Policy;
use ringhook::internals::{Secret, VerificationToken};

fuzz_target!(|data: &[u8]| {
    ringhook::internals::set_quiet(true);
    if data.len() < 5 {
        return;
    }
    let policy = Policy {
        path: "/webhook".into(),
        health_path: Some("/health".into()),
        metrics_path: Some("/metrics".into()),
        token: (data[0] & 1 == 1).then(|| VerificationToken::new(Secret::new("tok"))),
        max_body: 4096,
    };
    let cuts: Vec<usize> = data[1..5].iter().map(|&b| b as usize).collect();
    ringhook::internals::check_invariants(&data[5..], &cuts, &policy);
});
