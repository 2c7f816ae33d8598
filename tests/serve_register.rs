//! `serve --register`: the real receiver registers itself against the fake platform, answering
//! the handshake its own child's create triggers.

use std::net::TcpListener;

use crate::fake_platform::{self as fake, FakePlatform};
use crate::support::{Running, Serve, ringhook};

const TOKEN: &str = "one-command-token-3c2b";
const PRESENCE: &str = "/restapi/v1.0/account/~/extension/~/presence";

/// An address nobody listens on yet: the subscription's address must be known before `serve`
/// starts, so it cannot be port 0.
fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

fn start(fake: &FakePlatform, extra: &[&str]) -> Running {
    let addr = free_addr();
    let state = tempfile::tempdir().unwrap().keep().join("state.json");
    Serve::at(&addr)
        .env("RC_SERVER_URL", &fake.url)
        .env("RC_CLIENT_ID", fake::CLIENT_ID)
        .env("RC_CLIENT_SECRET", fake::CLIENT_SECRET)
        .env("RC_JWT", fake::JWT)
        .env("WEBHOOK_ADDRESS", &format!("http://{addr}/webhook"))
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .env("RINGHOOK_EVENT_FILTERS", PRESENCE)
        .env("RINGHOOK_STATE", &state.to_string_lossy())
        .log_file()
        .args(["--register"])
        .args(extra)
        .start()
}

fn assert_no_secrets(s: &Running, fake: &FakePlatform) {
    let err = s.stderr();
    let mut secrets = vec![
        fake::CLIENT_SECRET.to_string(),
        fake::JWT.to_string(),
        fake::PASSWORD.to_string(),
        TOKEN.to_string(),
    ];
    secrets.extend(fake.issued_tokens());
    for secret in secrets {
        assert!(!err.contains(&secret), "a secret leaked:\n{err}");
    }
}

#[test]
fn one_command_creates_receives_renews_on_reminder_and_unregisters() {
    let fake = FakePlatform::start();
    let mut s = start(&fake, &["--unregister-on-exit"]);
    let line = s.wait_for("subscription created");
    assert!(
        line.contains("1 filters") && line.contains("(start)"),
        "{line}"
    );
    let subs = fake.subscriptions();
    assert_eq!(subs.len(), 1);
    let id = subs[0].id.clone();
    assert_eq!(subs[0].address, format!("http://{}/webhook", s.addr));

    // The platform delivers; the event is logged.
    assert_eq!(
        fake.deliver(&id, "/restapi/v1.0/account/~/extension/2253168021/presence"),
        200
    );
    assert!(s.log_lines()[0].contains("\"telephonyStatus\":\"Ringing\""));

    // A renewal reminder triggers a reconcile at once (nothing to change: still far from expiry).
    fake.clear_journal();
    assert_eq!(
        fake.deliver(
            &id,
            "/restapi/v1.0/subscription/~?threshold=86400&interval=3600"
        ),
        200
    );
    s.wait_for("renewal reminder received");
    let line = s.wait_for("subscription unchanged");
    assert!(
        line.contains(&id) && line.contains("(renewal reminder)"),
        "{line}"
    );
    assert!(
        fake.changing_calls().is_empty(),
        "{:?}",
        fake.changing_calls()
    );

    // A clean stop deletes the subscription (a quick tunnel's URL dies with us).
    assert_eq!(s.stop().code(), Some(0));
    assert!(
        s.stderr()
            .contains("--unregister-on-exit: subscription deleted"),
        "{}",
        s.stderr()
    );
    assert!(fake.subscriptions().is_empty());
    assert!(fake.live_tokens().is_empty(), "every session revoked");
    assert_no_secrets(&s, &fake);
}

#[test]
fn a_failed_run_is_retried_and_never_stops_the_receiver() {
    let fake = FakePlatform::start();
    // The first child's create fails four times (its own three retries included) and it gives up.
    for _ in 0..4 {
        fake.script("POST", "/restapi/v1.0/subscription", 503, None);
    }
    let mut s = start(&fake, &["--register-retry", "1s"]);
    s.wait_for("registration failed (1 in a row");
    // Meanwhile the receiver serves.
    assert_eq!(s.exchange(&s.handshake_request("still")).status, 200);
    s.wait_for("subscription created");
    assert_eq!(fake.subscriptions().len(), 1, "no duplicate");
    assert!(s.stop().success());
}

#[test]
fn the_tutorials_env_file_alone_brings_the_webhook_up() {
    let fake = FakePlatform::start();
    let addr = free_addr();
    let serve = Serve::at(&addr).log_file().args(["--register"]);
    // The tutorial's variable names, no filters and no state path (no HOME either, as in a
    // scratch container): the tutorial's filters and a state file beside the log are used.
    let env = format!(
        "PORT=3000\nRC_ENV=sandbox\nRC_APP_NAME=demo\nRC_SERVER={}\nRC_APP_KEY={}\nRC_APP_SECRET={}\nRC_USERNAME={}\nRC_PASSWORD=\"{}\"\nRC_EXTENSION=101\nRC_CACHE_PREFIX=\nDELIVERY_MODE_ADDRESS=http://{addr}/webhook\nDELIVERY_MODE_TRANSPORT_TYPE=WebHook\nWEBHOOK_TOKEN={TOKEN}\nEXTENSIONS_PER_PAGE=3\n",
        fake.url,
        fake::CLIENT_ID,
        fake::CLIENT_SECRET,
        fake::USERNAME,
        fake::PASSWORD
    );
    std::fs::write(serve.dir.path().join(".env"), env).unwrap();
    let mut s = serve.start();
    let line = s.wait_for("subscription created");
    let subs = fake.subscriptions();
    assert_eq!(subs.len(), 1);
    // Presence and SMS for every enabled user extension, over several pages.
    assert!(subs[0].filters.len() >= 4, "{:?}", subs[0].filters);
    assert!(
        subs[0]
            .filters
            .iter()
            .any(|f| f.contains("/presence?detailedTelephonyState=true"))
    );
    assert!(
        subs[0]
            .filters
            .iter()
            .any(|f| f.contains("/message-store/instant?type=SMS"))
    );
    assert!(
        line.contains(&format!("{} filters", subs[0].filters.len())),
        "{line}"
    );
    assert!(s.dir.path().join("ringhook-state.json").is_file());
    assert!(
        s.stderr().contains("password grant"),
        "the legacy grant is warned about"
    );
    assert_eq!(fake.deliver(&subs[0].id, PRESENCE), 200);
    assert_eq!(s.log_lines().len(), 1);
    assert!(s.stop().success());
    assert_no_secrets(&s, &fake);
}

#[test]
fn every_missing_variable_is_named_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = ringhook(dir.path())
        .args(["serve", "--register"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    for name in [
        "RC_CLIENT_ID",
        "RC_CLIENT_SECRET",
        "RC_JWT",
        "WEBHOOK_ADDRESS",
    ] {
        assert!(first.contains(name), "{name} missing from: {err}");
    }
    let out = ringhook(dir.path())
        .args(["serve", "--register-every", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--register-every needs --register"));
}
