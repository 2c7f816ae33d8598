//! One integration-test binary: every test drives the real `ringhook` binary over real sockets.

mod support;

mod serve;
