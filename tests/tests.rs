//! One integration-test binary: every test drives the real `ringhook` binary over real sockets.

mod support;

#[cfg(feature = "catchup")]
mod alerts;
#[cfg(feature = "ship")]
mod attack;
#[cfg(feature = "connect")]
mod attack_connect;
mod attack_disk;
#[cfg(feature = "catchup")]
mod catchup;
mod check;
#[cfg(feature = "connect")]
mod connect;
mod deb;
mod exec;
mod fake_platform;
#[cfg(feature = "connect")]
mod fake_wsg;
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
