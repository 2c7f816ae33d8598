//! One integration-test binary: every test drives the real `ringhook` binary over real sockets.

mod support;

#[cfg(feature = "catchup")]
mod alerts;
mod attack_disk;
#[cfg(feature = "catchup")]
mod catchup;
mod check;
mod exec;
mod fake_platform;
mod faults;
mod fifo;
mod install;
mod metrics;
#[cfg(feature = "ship")]
mod nats;
mod output;
mod powercut;
mod register;
mod register_faults;
#[cfg(feature = "ship")]
mod rotation;
mod serve;
mod serve_register;
#[cfg(feature = "ship")]
mod ship;
mod static_binary;
mod tail;
mod tidy;
#[cfg(feature = "ship")]
mod topology;
