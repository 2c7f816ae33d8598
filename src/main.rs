//! The `ringhook` binary: parse, run, report the error once, exit.

fn main() {
    let code = ringhook::run(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
