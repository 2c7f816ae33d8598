//! The reference topology of docs/deploying.md, for real: two `ringhook serve` behind HAProxy (health-checked
//! on `--health-path`), each with its own `ringhook ship` into one JetStream stream. Thousands of
//! notifications, some uuids posted to both receivers; shippers SIGKILLed and restarted, the
//! nats-server restarted once. At the end the stream holds exactly the acknowledged uuids, each
//! once, each payload byte-identical to the logged notification.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::nats::{Client, NatsServer, free_port, kill, nats_server_bin};
use crate::ship::ship;
use crate::support::{PATIENCE, Running, Serve, read_response};

const TOKEN: &str = "topology-token-42";
const STREAM: &str = "RC";

fn receiver() -> Running {
    Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .log_file()
        .args(["--health-path", "/health"])
        .start()
}

/// HAProxy in front of `backends`, health-checking `/health`; killed on drop.
struct Haproxy(Child, SocketAddr);

impl Haproxy {
    fn start(dir: &Path, backends: &[SocketAddr]) -> Haproxy {
        let port = free_port();
        let mut cfg = format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 20s\n  timeout server 20s\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  balance roundrobin\n  option httpchk GET /health\n  http-check expect status 200\n"
        );
        for (i, b) in backends.iter().enumerate() {
            cfg.push_str(&format!("  server r{i} {b} check inter 200ms\n"));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let bin = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/setup.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Owned at once, so a failed wait below still kills it.
        let lb = Haproxy(child, addr);
        // Ready when a health check answers through it.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = TcpStream::connect(addr).is_ok_and(|mut s| {
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .is_ok()
                    && read_response(&mut s).status == 200
            });
            if ok {
                return lb;
            }
            assert!(Instant::now() < deadline, "haproxy never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn body(uuid: &str, i: usize) -> String {
    // Whitespace as a sender may have it; the log (and so the stream) holds it minified.
    format!(
        "{{ \"uuid\": \"{uuid}\", \"event\": \"/restapi/v1.0/account/~/extension/{}/presence?detailedTelephonyState=true\",\n  \"timestamp\": \"2026-12-02T00:00:00.000Z\", \"subscriptionId\": \"sub-1\", \"body\": {{ \"n\": {i}, \"telephonyStatus\": \"Ringing\" }} }}",
        100 + i % 7
    )
}

/// POSTs each `(uuid, body)` on one keep-alive connection to `addr`; returns the uuids answered 200.
fn post_all(addr: SocketAddr, items: Vec<(String, String)>) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut ok = Vec::new();
    for (uuid, b) in items {
        let req = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nVerification-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        if read_response(&mut s).status == 200 {
            ok.push(uuid);
        }
    }
    ok
}

/// uuid → notification bytes, as logged by either receiver.
fn logged(paths: &[&Path]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for p in paths {
        for l in std::fs::read_to_string(p).unwrap().lines() {
            #[derive(serde::Deserialize)]
            struct L<'a> {
                #[serde(borrow)]
                notification: &'a RawValue,
            }
            let l: L = serde_json::from_str(l).unwrap();
            let v: serde_json::Value = serde_json::from_str(l.notification.get()).unwrap();
            let uuid = v["uuid"].as_str().unwrap().to_string();
            let prev = out.insert(uuid, l.notification.get().to_string());
            if let Some(prev) = prev {
                assert_eq!(prev, l.notification.get(), "one uuid, two texts");
            }
        }
    }
    out
}

#[test]
fn two_receivers_behind_haproxy_ship_each_uuid_once_into_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    // sync_interval: always where the server knows it (>= 2.10), as docs/deploying.md asks.
    let version = Command::new(nats_server_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let conf = dir.path().join("nats.conf");
    let modern = !version.contains("v2.9.") && !version.contains("v2.8.");
    std::fs::write(
        &conf,
        if modern {
            "jetstream { sync_interval: always }\n"
        } else {
            "jetstream {}\n"
        },
    )
    .unwrap();
    let mut server = NatsServer::start(&dir.path().join("js"), &["-c", conf.to_str().unwrap()]);
    Client::connect(&server.addr()).create_stream(STREAM, "rc.>");

    let receivers = [receiver(), receiver()];
    let lb = Haproxy::start(dir.path(), &[receivers[0].addr, receivers[1].addr]);
    let to = format!("nats://{}/rc.{{event}}", server.addr());
    let start = |r: &Running| -> Child {
        ship(
            r.dir.path(),
            &["--log-file", "events.log", "--to", &to, "--window", "128"],
            &[("RINGHOOK_SHIP_TIMEOUT", "2s")],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut shippers: Vec<Child> = receivers.iter().map(start).collect();

    // 2400 notifications through the balancer on 4 connections, and 200 more posted to both
    // receivers directly (one event reaching two receivers).
    let n = 2400;
    let items: Vec<(String, String)> = (0..n)
        .map(|i| {
            let u = format!("t-{i}");
            let b = body(&u, i);
            (u, b)
        })
        .collect();
    let both: Vec<(String, String)> = (n..n + 200)
        .map(|i| {
            let u = format!("t-{i}");
            let b = body(&u, i);
            (u, b)
        })
        .collect();
    let mut posters = Vec::new();
    for chunk in items.chunks(n / 4) {
        let chunk = chunk.to_vec();
        let addr = lb.1;
        posters.push(std::thread::spawn(move || post_all(addr, chunk)));
    }
    for r in &receivers {
        let (addr, b) = (r.addr, both.clone());
        posters.push(std::thread::spawn(move || post_all(addr, b)));
    }

    // Meanwhile: kill each shipper at a point that varies, restart the server once.
    let r = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 1);
    let mut c = Client::connect(&server.addr());
    c.wait_count(STREAM, 200 + r % 300);
    kill(&shippers[0], "KILL");
    shippers[0].wait().unwrap();
    shippers[0] = start(&receivers[0]);
    c.wait_count(STREAM, 900 + (r >> 16) % 300);
    server.restart();
    let mut c = Client::connect(&server.addr());
    c.wait_count(STREAM, 1500 + (r >> 32) % 300);
    kill(&shippers[1], "KILL");
    shippers[1].wait().unwrap();
    shippers[1] = start(&receivers[1]);

    let mut acked = HashSet::new();
    for p in posters {
        acked.extend(p.join().unwrap());
    }
    assert_eq!(acked.len(), n + 200, "every notification acknowledged");
    c.wait_count(STREAM, acked.len() as u64);
    for s in &mut shippers {
        kill(s, "TERM");
        s.wait().unwrap();
    }

    let logs = logged(&[&receivers[0].log_path(), &receivers[1].log_path()]);
    let got = c.messages(STREAM);
    assert_eq!(got.len(), acked.len(), "exactly the acknowledged uuids");
    let mut seen = HashSet::new();
    for (subject, id, data) in &got {
        assert!(seen.insert(id.clone()), "{id} twice in the stream");
        assert!(acked.contains(id), "{id} was never acknowledged");
        assert_eq!(subject, "rc.presence");
        assert_eq!(
            std::str::from_utf8(data).unwrap(),
            logs[id],
            "{id} byte-identical"
        );
    }
    // Both receivers served: the balancer spread the load.
    for r in &receivers {
        assert!(
            r.log_lines().len() > 200 + n / 4,
            "{} lines",
            r.log_lines().len()
        );
    }
}
