//! `register`, `list` and `unregister` end to end: the real binary against the fake platform,
//! with the real `serve` as the receiver the platform's handshake and notifications reach.
//!
//! Every run goes through `install::Setup::run`, which checks that no secret shows in stdout or
//! stderr and that the session was revoked.

use crate::fake_platform::{self as fake, FakePlatform};
use crate::install::{PRESENCE, SMS, Setup, TOKEN, address_of, receiver};
use crate::support;

const POSTS: &str = "/restapi/v1.0/glip/posts";

#[test]
fn creates_then_a_second_run_changes_nothing() {
    let s = Setup::new();
    let out = s.register();
    assert_eq!(out["action"], "created");
    assert_eq!(out["status"], "Active");
    assert_eq!(out["filters"], 1);
    let sub = s.only_subscription();
    assert_eq!(out["id"], sub.id.as_str());
    assert_eq!(sub.address, address_of(&s.serve));
    assert_eq!(sub.verification_token.as_deref(), Some(TOKEN));
    assert_eq!(s.fake.changing_calls(), ["POST /restapi/v1.0/subscription"]);
    assert!(s.state_path().is_file());
    // The token request used Basic client auth and the JWT grant.
    let token_req = s
        .fake
        .journal()
        .into_iter()
        .find(|r| r.path == "/restapi/oauth/token")
        .unwrap();
    assert!(
        token_req
            .header("Authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert!(token_req.body.contains("jwt-bearer"));

    // The fake rewrote `~` to ids and granted 90 days instead of 10 years: still nothing to do.
    s.fake.clear_journal();
    let again = s.run(&["register"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert!(again.stdout.is_empty());
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
    assert_eq!(s.fake.count("POST", "/restapi/oauth/revoke"), 1);

    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn extension_id_expands_over_every_page() {
    let mut s = Setup::new();
    s.set("RINGHOOK_EVENT_FILTERS", &format!("{SMS} {PRESENCE}"));
    s.set("EXTENSIONS_PER_PAGE", "3");
    let out = s.register();
    assert_eq!(out["filters"], 9, "{out}");
    let pages = s.fake.count("GET", "/restapi/v1.0/account/");
    assert_eq!(pages, 3, "eight users at three per page");
    let sub = s.only_subscription();
    for id in 62_000..62_008 {
        assert!(
            sub.filters
                .iter()
                .any(|f| f.contains(&format!("/extension/{id}/presence"))),
            "{id} missing: {:?}",
            sub.filters
        );
    }
    // Disabled users and other extension types are not expanded.
    assert!(!sub.filters.iter().any(|f| f.contains("/extension/6300")));
    let first = s
        .fake
        .journal()
        .into_iter()
        .find(|r| r.path.contains("/extension"))
        .unwrap();
    assert!(first.query.contains("type=User") && first.query.contains("status=Enabled"));

    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn changed_filters_update_the_same_subscription() {
    let mut s = Setup::new();
    let id = s.register()["id"].as_str().unwrap().to_string();
    s.fake.clear_journal();
    s.set("RINGHOOK_EVENT_FILTERS", &format!("{SMS}\n{POSTS}"));
    let out = s.register();
    assert_eq!(out["action"], "updated");
    assert_eq!(out["id"], id.as_str());
    assert_eq!(
        s.fake.changing_calls(),
        [format!("PUT /restapi/v1.0/subscription/{id}")]
    );
    assert_eq!(s.only_subscription().filters, [SMS, POSTS]);

    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn blacklisted_is_replaced() {
    let s = Setup::new();
    let old = s.register()["id"].as_str().unwrap().to_string();
    s.fake.blacklist(&old);
    s.fake.clear_journal();
    let out = s.register();
    assert_eq!(out["action"], "replaced");
    assert_eq!(out["deleted"][0], old.as_str());
    assert_eq!(
        s.fake.changing_calls(),
        [
            format!("DELETE /restapi/v1.0/subscription/{old}"),
            "POST /restapi/v1.0/subscription".to_string()
        ]
    );
    let sub = s.only_subscription();
    assert_ne!(sub.id, old);
    assert_eq!(sub.status, "Active");
}

#[test]
fn a_new_address_moves_the_subscription_and_leaves_others_alone() {
    let mut s = Setup::new();
    let foreign = s.fake.add_foreign("https://someone-else.example/hook");
    let old = s.register()["id"].as_str().unwrap().to_string();
    let second = receiver();
    s.set("WEBHOOK_ADDRESS", &address_of(&second));
    s.fake.clear_journal();
    let out = s.register();
    assert_eq!(out["action"], "moved");
    assert_eq!(
        s.fake.changing_calls(),
        [
            format!("DELETE /restapi/v1.0/subscription/{old}"),
            "POST /restapi/v1.0/subscription".to_string()
        ]
    );
    let subs = s.fake.subscriptions();
    assert_eq!(subs.len(), 2);
    assert!(subs.iter().any(|x| x.id == foreign));
    assert!(subs.iter().any(|x| x.address == address_of(&second)));

    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn duplicates_at_our_address_are_deleted() {
    let s = Setup::new();
    let ours = s.register()["id"].as_str().unwrap().to_string();
    let dup = s.fake.add_foreign(&address_of(&s.serve));
    s.fake.clear_journal();
    let out = s.register();
    assert_eq!(out["action"], "nothing");
    assert_eq!(out["id"], ours.as_str());
    assert_eq!(
        s.fake.changing_calls(),
        [format!("DELETE /restapi/v1.0/subscription/{dup}")]
    );
}

#[test]
fn close_to_expiry_is_renewed() {
    let s = Setup::new();
    let id = s.register()["id"].as_str().unwrap().to_string();
    s.fake.expire_in(&id, 86_400);
    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "renewed");
    assert_eq!(
        s.fake.changing_calls(),
        [format!("POST /restapi/v1.0/subscription/{id}/renew")]
    );
    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn rate_limited_waits_retry_after_then_succeeds() {
    let s = Setup::new();
    s.fake
        .script("GET", "/restapi/v1.0/subscription", 429, Some(1));
    let r = s.run(&["register"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
    assert!(r.stderr.contains("waiting 1 s"), "{}", r.stderr);
    assert_eq!(s.fake.count("GET", "/restapi/v1.0/subscription"), 2);
    s.only_subscription();
}

#[test]
fn rate_limited_beyond_the_wait_limit_fails() {
    let mut s = Setup::new();
    s.set("RINGHOOK_MAX_WAIT", "0s");
    s.fake.script("POST", "/restapi/oauth/token", 429, Some(1));
    let r = s.run(&["register"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("rate limited (HTTP 429)"), "{}", r.stderr);
    assert!(r.stderr.contains("RINGHOOK_MAX_WAIT"), "{}", r.stderr);
    assert!(s.fake.subscriptions().is_empty());
}

#[test]
fn server_error_on_create_is_retried_without_a_duplicate() {
    let s = Setup::new();
    s.fake
        .script("POST", "/restapi/v1.0/subscription", 500, None);
    let r = s.run(&["register"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("none was created"), "{}", r.stderr);
    assert_eq!(s.fake.count("POST", "/restapi/v1.0/subscription"), 2);
    s.only_subscription();
}

#[test]
fn a_lost_create_answer_is_not_sent_again() {
    let s = Setup::new();
    s.fake
        .script_lost_answer("POST", "/restapi/v1.0/subscription", 503);
    let out = s.register();
    assert_eq!(out["action"], "created");
    assert_eq!(s.fake.count("POST", "/restapi/v1.0/subscription"), 1);
    assert_eq!(out["id"], s.only_subscription().id.as_str());
}

#[test]
fn bad_credentials_fail_clearly() {
    let mut s = Setup::new();
    s.set("RC_JWT", "eyJ.wrong.jwt-Qq1");
    let r = s.run(&["register"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("OAU-140 Invalid resource owner credentials"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: check RC_JWT"), "{}", r.stderr);
    assert_eq!(s.fake.count("GET", "/restapi/v1.0/"), 0);

    s.set("RC_JWT", fake::JWT);
    s.set("RC_CLIENT_SECRET", "wrong-secret-Ww2");
    let r = s.run(&["register"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("OAU-123"), "{}", r.stderr);
    assert!(r.stderr.contains("RC_CLIENT_SECRET"), "{}", r.stderr);
}

#[test]
fn missing_variables_are_all_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::ringhook(dir.path())
        .arg("register")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "RC_CLIENT_ID",
        "RC_CLIENT_SECRET",
        "RC_JWT",
        "WEBHOOK_ADDRESS",
        "RINGHOOK_EVENT_FILTERS",
        "RINGHOOK_STATE",
    ] {
        assert!(err.contains(name), "{name} not named: {err}");
    }

    let mut s = Setup::new();
    s.set("RC_SERVER_URL", "http://platform.example.com");
    let r = s.run(&["register"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("RC_SERVER_URL"), "{}", r.stderr);
    s.unset("RC_SERVER_URL");
    s.set("EXTENSIONS_PER_PAGE", "0");
    let r = s.run(&["register"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("EXTENSIONS_PER_PAGE"), "{}", r.stderr);
}

#[test]
fn a_failing_handshake_stops_before_create() {
    let mut s = Setup::new();
    s.set(
        "WEBHOOK_ADDRESS",
        &format!("http://{}/wrong-path", s.serve.addr),
    );
    let r = s.run(&["register"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("fails the handshake"), "{}", r.stderr);
    assert!(r.stderr.contains("status 403"), "{}", r.stderr);
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn dry_run_changes_nothing() {
    let s = Setup::new();
    let r = s.run(&["register", "--dry-run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["action"], "create");
    assert_eq!(r.json()["dryRun"], true);
    assert!(s.fake.subscriptions().is_empty());
    assert!(!s.state_path().exists());
}

#[test]
fn notifications_reach_the_event_log() {
    let s = Setup::new();
    let id = s.register()["id"].as_str().unwrap().to_string();
    let event = "/restapi/v1.0/account/37439510/extension/2253168021/presence";
    assert_eq!(s.fake.deliver(&id, event), 200);
    let lines = s.serve.log_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&id), "{}", lines[0]);
}

#[test]
fn list_shows_every_subscription_and_marks_ours() {
    let s = Setup::new();
    let ours = s.register()["id"].as_str().unwrap().to_string();
    let theirs = s.fake.add_foreign("https://someone-else.example/hook");
    let r = s.run(&["list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let find = |id: &str| list.iter().find(|x| x["id"] == id).unwrap().clone();
    assert_eq!(find(&ours)["ours"], true);
    assert_eq!(find(&ours)["status"], "Active");
    assert_eq!(find(&theirs)["ours"], false);
    assert!(find(&ours)["expirationTime"].is_string());

    let r = s.run(&["list"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(&ours) && r.stdout.contains("(this installation)"));
    assert_eq!(s.fake.changing_calls(), ["POST /restapi/v1.0/subscription"]);
}

#[test]
fn unregister_deletes_ours_only() {
    let s = Setup::new();
    let ours = s.register()["id"].as_str().unwrap().to_string();
    let theirs = s.fake.add_foreign("https://someone-else.example/hook");
    s.fake.clear_journal();
    let r = s.run(&["unregister"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.fake.changing_calls(),
        [format!("DELETE /restapi/v1.0/subscription/{ours}")]
    );
    assert!(!s.state_path().exists());
    let r = s.run(&["unregister", "--id", &theirs, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["deleted"][0], theirs.as_str());
    assert!(s.fake.subscriptions().is_empty());
    let r = s.run(&["unregister", "--id", "no-such-id"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no subscription no-such-id"),
        "{}",
        r.stderr
    );
}

#[test]
fn legacy_password_grant_works_with_a_warning() {
    let mut s = Setup::new();
    s.unset("RC_JWT");
    s.set("RC_USERNAME", fake::USERNAME);
    s.set("RC_PASSWORD", fake::PASSWORD);
    let r = s.run(&["register"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2024-03-31"), "{}", r.stderr);
    s.only_subscription();
}

#[test]
fn https_platform_trusted_only_through_the_ca_file() {
    let mut s = Setup::with(FakePlatform::start_tls());
    assert!(s.fake.url.starts_with("https://"));
    let r = s.run(&["register"]);
    assert_eq!(r.code, 1, "the test CA is not trusted by default");
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    assert!(r.stderr.contains("RINGHOOK_CA_FILE"), "{}", r.stderr);
    assert!(s.fake.subscriptions().is_empty());

    let ca = s.dir.path().join("ca.pem");
    std::fs::write(&ca, s.fake.ca_pem.as_deref().unwrap()).unwrap();
    s.set("RINGHOOK_CA_FILE", &ca.to_string_lossy());
    assert_eq!(s.register()["action"], "created");
    s.fake.clear_journal();
    assert_eq!(s.register()["action"], "nothing");
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());

    std::fs::write(&ca, "not a certificate").unwrap();
    let r = s.run(&["register"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("RINGHOOK_CA_FILE"), "{}", r.stderr);
}

/// `connect`'s state file beside register's: it names a WebSocket subscription and holds the
/// OAuth session connect keeps.
#[test]
fn connects_websocket_subscription_is_listed_and_left_alone() {
    let s = Setup::new();
    let ws = s.fake.add_websocket();
    let state = serde_json::json!({"server": s.fake.url, "id": ws, "address": "",
        "connect": {"refreshToken": "kept-refresh", "refreshUntil": "2099-01-01T00:00:00Z"}});
    std::fs::write(s.state_path(), state.to_string()).unwrap();
    let r = s.run(&["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = r.stdout.lines().find(|l| l.contains(&ws)).unwrap();
    assert!(row.contains("WebSocket"), "{}", r.stdout);
    let r = s.run(&["list", "--json"]);
    assert_eq!(r.json()[0]["transport"], "WebSocket");
    s.fake.clear_journal();
    let r = s.run(&["unregister"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
    let kept = std::fs::read_to_string(s.state_path()).unwrap();
    assert!(
        kept.contains("kept-refresh"),
        "connect's session is kept: {kept}"
    );
    // register beside it creates its webhook and leaves the WebSocket one alone.
    assert_eq!(s.register()["action"], "created");
    assert_eq!(
        s.fake.changing_calls(),
        ["POST /restapi/v1.0/subscription"],
        "nothing deleted"
    );
    assert!(s.fake.subscriptions().iter().any(|x| x.id == ws));
    let kept = std::fs::read_to_string(s.state_path()).unwrap();
    assert!(kept.contains("kept-refresh"), "{kept}");
}
