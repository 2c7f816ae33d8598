//! `ringhook check URL`: the handshake probe against the real receiver and against receivers
//! that break one limit each (no echo, wrong content type, oversized, slow, refused).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, Serve};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::ringhook(dir.path());
    cmd.arg("check").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A receiver that reads one request per connection, waits `delay`, and answers what `answer`
/// makes of the request's Validation-Token. Bound before its thread starts.
fn receiver(delay: Duration, answer: impl Fn(&str) -> String + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let token = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("validation-token")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            std::thread::sleep(delay);
            let _ = s.write_all(answer(&token).as_bytes());
        }
    });
    url
}

fn ok_answer(token: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nValidation-Token: {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_real_receiver_passes() {
    let serve = Serve::new().start();
    let url = format!("http://{}{}", serve.addr, serve.path);
    let r = check(&[&url], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("ok: the platform would accept"),
        "{}",
        r.stdout
    );

    let r = check(&[&url, "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["status"], 200);
    assert_eq!(v["echo"], true);
    assert_eq!(v["contentType"], "application/json");
    assert!(v["size"].as_u64().unwrap() <= 1024);
}

#[test]
fn the_verification_token_rides_along() {
    let serve = Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", "right-token")
        .start();
    let url = format!("http://{}{}", serve.addr, serve.path);
    let r = check(&[&url], &[("WEBHOOK_VERIFICATION_TOKEN", "right-token")]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = check(&[&url], &[("WEBHOOK_VERIFICATION_TOKEN", "wrong-token")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("status 403"), "{}", r.stderr);
    assert!(!r.stdout.contains("wrong-token") && !r.stderr.contains("wrong-token"));
}

#[test]
fn wrong_path_fails() {
    let serve = Serve::new().start();
    let r = check(&[&format!("http://{}/nope", serve.addr)], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("status 403"), "{}", r.stderr);
}

#[test]
fn no_echo_fails() {
    let url = receiver(Duration::ZERO, |_| {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n".into()
    });
    let r = check(&[&url], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("Validation-Token not echoed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

#[test]
fn wrong_content_type_fails() {
    let url = receiver(Duration::ZERO, |t| ok_answer(t, "text/html", ""));
    let r = check(&[&url, "--json"], &[]);
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["echo"], true);
    assert!(r.stderr.contains("content type text/html"), "{}", r.stderr);
}

#[test]
fn oversized_answer_fails() {
    // Echoing the request back, as the Node tutorial does with notifications.
    let url = receiver(Duration::ZERO, |t| {
        ok_answer(t, "application/json", &format!("\"{}\"", "x".repeat(1000)))
    });
    let r = check(&[&url], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("(limit 1024"), "{}", r.stderr);
}

#[test]
fn slow_answer_fails() {
    let url = receiver(Duration::from_millis(1500), |t| {
        ok_answer(t, "application/json", "")
    });
    let r = check(&[&url, "--timeout", "200ms"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no answer within 200 ms"), "{}", r.stderr);
}

#[test]
fn refused_connection_fails() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = check(&[&format!("http://127.0.0.1:{port}/webhook")], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
    assert!(r.stderr.contains("ringhook serve"), "{}", r.stderr);
}

#[test]
fn a_bad_url_is_a_usage_error() {
    let r = check(&["localhost:3000"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("URL"), "{}", r.stderr);
}

#[test]
fn https_urls_are_probed_over_tls() {
    // The fake platform serves TLS from a throwaway CA and has no webhook: a 404 proves the
    // TLS session itself worked.
    let fake = crate::fake_platform::FakePlatform::start_tls();
    let url = format!("{}/webhook", fake.url);
    let r = check(&[&url], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("TLS failed"), "{}", r.stderr);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem.as_deref().unwrap()).unwrap();
    let r = check(&[&url], &[("RINGHOOK_CA_FILE", &ca.to_string_lossy())]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("status 404"), "{}", r.stderr);
}
