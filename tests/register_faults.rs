//! `register` against a misbehaving platform: calls that time out, answers that are not the JSON
//! expected, a 401 after the token was granted, a `Retry-After` no one could wait for.
//!
//! Every run goes through `install::Setup::run`, which checks that no secret shows in the output, that
//! the error is one line (and a hint) without a panic, and that any session was revoked.

use crate::install::{PRESENCE, SMS, Setup};

const SUBSCRIPTION: &str = "/restapi/v1.0/subscription";
const TOKEN_PATH: &str = "/restapi/oauth/token";
/// An access token in a broken token answer: never issued by the fake, still never to be shown.
const HALF_TOKEN: &str = "U1BCMDFUMDRKV1MwMXxzLFSvXdw5PHMsVLEn-half";
/// An HTML page with 200, as a captive portal or a misrouted load balancer sends.
const HTML: &str = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\n<body><h1>It works!</h1></body></html>\n";

/// An install whose platform calls time out after one second, and which must never show the
/// half token of a broken answer.
fn setup() -> Setup {
    let mut s = Setup::new();
    s.set("RINGHOOK_HTTP_TIMEOUT", "1s");
    s.secrets.push(HALF_TOKEN.into());
    s
}

// ---- timeouts ---------------------------------------------------------------------------------

#[test]
fn a_silent_token_endpoint_times_out_once() {
    let s = setup();
    s.fake.script_stall("POST", TOKEN_PATH, false);
    let hint = s.fails(&["cannot sign in to", "no answer within 1s"]);
    assert!(hint.contains("RINGHOOK_HTTP_TIMEOUT"), "{hint}");
    // A timeout is not retried: the run ends within the one limit.
    assert_eq!(s.fake.count("POST", TOKEN_PATH), 1);
    assert!(s.fake.subscriptions().is_empty());
}

#[test]
fn a_silent_or_stalling_subscription_list_times_out_and_the_session_is_revoked() {
    let s = setup();
    s.fake.script_stall("GET", SUBSCRIPTION, false);
    s.fails(&["cannot list the subscriptions", "no answer within 1s"]);
    assert_eq!(s.fake.count("GET", SUBSCRIPTION), 1);
    assert_eq!(s.fake.count("POST", "/restapi/oauth/revoke"), 1);
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());

    // Headers and half the body, then silence: the same.
    s.fake.clear_journal();
    s.fake.script_stall_body("GET", SUBSCRIPTION);
    s.fails(&["cannot list the subscriptions", "no answer within 1s"]);
    assert_eq!(s.fake.count("GET", SUBSCRIPTION), 1);
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}

#[test]
fn a_create_that_times_out_after_creating_is_found_by_a_list_not_sent_again() {
    let s = setup();
    s.fake.script_stall("POST", SUBSCRIPTION, true);
    let r = s.run(&["register", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["action"], "created");
    assert!(r.stderr.contains("no answer within 1s"), "{}", r.stderr);
    let subs = s.fake.subscriptions();
    assert_eq!(subs.len(), 1, "{subs:#?}");
    assert_eq!(r.json()["id"], subs[0].id.as_str());
    assert_eq!(s.state_id().as_deref(), Some(subs[0].id.as_str()));
    let calls = s.calls();
    let post = calls
        .iter()
        .position(|c| c == "POST /restapi/v1.0/subscription");
    let post = post.expect("a create");
    assert_eq!(
        calls[post + 1],
        "GET /restapi/v1.0/subscription",
        "{calls:#?}"
    );
    assert_eq!(s.fake.count("POST", SUBSCRIPTION), 1);
    s.then_nothing_to_do();
}

#[test]
fn a_create_whose_answer_stalls_mid_body_is_found_by_a_list() {
    let s = setup();
    s.fake.script_stall_body("POST", SUBSCRIPTION);
    let r = s.run(&["register", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["action"], "created");
    assert_eq!(s.fake.count("POST", SUBSCRIPTION), 1);
    assert_eq!(s.fake.subscriptions().len(), 1);
    assert_eq!(
        s.state_id().as_deref(),
        Some(s.fake.subscriptions()[0].id.as_str())
    );
    s.then_nothing_to_do();
}

#[test]
fn a_create_that_times_out_without_creating_is_listed_then_given_up() {
    let s = setup();
    s.fake.script_stall("POST", SUBSCRIPTION, false);
    let hint = s.fails(&["cannot create the subscription", "no answer within 1s"]);
    assert!(hint.contains("RINGHOOK_HTTP_TIMEOUT"), "{hint}");
    // Looked for it after the timeout; did not send it again (it may still be under way).
    let calls = s.calls();
    let post = calls
        .iter()
        .position(|c| c == "POST /restapi/v1.0/subscription")
        .unwrap();
    assert_eq!(
        calls[post + 1],
        "GET /restapi/v1.0/subscription",
        "{calls:#?}"
    );
    assert_eq!(s.fake.count("POST", SUBSCRIPTION), 1);
    assert!(s.fake.subscriptions().is_empty());
    assert!(s.state_id().is_none());
}

// ---- answers that are not the JSON expected ---------------------------------------------------

/// Bodies answered with 200 where JSON of some shape is expected.
fn junk(valid_start: &str) -> Vec<(&'static str, String)> {
    vec![
        ("text/html", HTML.to_string()),
        ("application/json", String::new()),
        ("application/json", valid_start.to_string()),
        ("application/json", "[1, 2, 3]".into()),
        ("application/json", "null".into()),
        ("application/json", "{\"records\": \"none\"}".into()),
        // serde would quote a long wrong-typed string whole: the line must stay short.
        (
            "application/json",
            format!("{{\"records\": \"{}\"}}", "x".repeat(5000)),
        ),
    ]
}

#[test]
fn a_malformed_token_answer_fails_clearly() {
    let s = setup();
    let truncated = format!("{{\"access_token\":\"{HALF_TOKEN}\",\"token_type\":\"bearer\",\"expi");
    let mut bodies = junk(&truncated);
    bodies.push((
        "application/json",
        "{\"access_token\": 12345, \"token_type\": \"bearer\"}".into(),
    ));
    bodies.push(("application/json", "{\"access_token\": \"\"}".into()));
    for (content_type, body) in &bodies {
        s.fake
            .script_raw("POST", TOKEN_PATH, 200, content_type, body);
        let hint = s.fails(&["cannot sign in to", "unexpected answer: the token answer"]);
        assert!(hint.contains("RC_SERVER_URL"), "{hint}");
    }
    assert_eq!(s.fake.count("GET", "/restapi/v1.0/"), 0);
    assert!(s.fake.subscriptions().is_empty());
}

#[test]
fn a_malformed_subscription_list_fails_clearly_and_changes_nothing() {
    let s = setup();
    let mut bodies = junk("{\"uri\":\"x\",\"records\":[{\"id\":\"a1b2\",\"status\":\"Act");
    bodies.push((
        "application/json",
        "{\"records\": [{\"id\": 42, \"status\": \"Active\"}]}".into(),
    ));
    bodies.push((
        "application/json",
        "{\"records\": [{\"id\": \"a1\", \"eventFilters\": \"/restapi\"}]}".into(),
    ));
    for (content_type, body) in &bodies {
        s.fake
            .script_raw("GET", SUBSCRIPTION, 200, content_type, body);
        let hint = s.fails(&[
            "cannot list the subscriptions",
            "unexpected answer: the subscription list",
        ]);
        assert!(hint.contains("RC_SERVER_URL"), "{hint}");
    }
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
    assert_eq!(s.fake.count("POST", "/restapi/oauth/revoke"), bodies.len());
}

#[test]
fn a_malformed_extension_page_fails_before_any_change() {
    let mut s = setup();
    s.set("RINGHOOK_EVENT_FILTERS", &format!("{SMS} {PRESENCE}"));
    s.set("EXTENSIONS_PER_PAGE", "3");
    let mut bodies = junk("{\"records\":[{\"id\":62000,\"type\":\"User\"},{\"id\":");
    bodies.push(("application/json", "{\"records\": [{\"id\": true}]}".into()));
    bodies.push((
        "application/json",
        "{\"records\": [], \"navigation\": {\"nextPage\": \"page=2\"}}".into(),
    ));
    for (content_type, body) in &bodies {
        // The first page, then (`~` rewritten to the account id) a later one.
        for prefix in [
            "/restapi/v1.0/account/~/extension",
            "/restapi/v1.0/account/37439510/extension",
        ] {
            s.fake.script_raw("GET", prefix, 200, content_type, body);
            let hint = s.fails(&["cannot list the extensions", "unexpected answer"]);
            assert!(hint.contains("RC_SERVER_URL"), "{hint}");
        }
    }
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
    assert!(s.fake.subscriptions().is_empty());
    // Whole pages again: all eight users.
    let r = s.run(&["register", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["filters"], 9);
}

#[test]
fn an_unreadable_create_answer_is_adopted_through_a_list_not_sent_again() {
    let s = setup();
    s.fake
        .script_raw_after_processing("POST", SUBSCRIPTION, 200, "text/html", HTML);
    let r = s.run(&["register", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["action"], "created");
    assert!(r.stderr.contains("HTML page"), "{}", r.stderr);
    let subs = s.fake.subscriptions();
    assert_eq!(subs.len(), 1, "{subs:#?}");
    assert_eq!(s.state_id().as_deref(), Some(subs[0].id.as_str()));
    assert_eq!(s.fake.count("POST", SUBSCRIPTION), 1);
    s.then_nothing_to_do();

    // Wrong types, and a create that (despite its 200) made nothing: found in no list, so the
    // run fails, and the create is not sent twice.
    let other = setup();
    other.fake.script_raw(
        "POST",
        SUBSCRIPTION,
        200,
        "application/json",
        "{\"id\": 7, \"status\": \"Active\"}",
    );
    other.fails(&[
        "cannot create the subscription",
        "unexpected answer: the new subscription is not the JSON expected",
    ]);
    assert_eq!(other.fake.count("POST", SUBSCRIPTION), 1);
    assert!(other.fake.subscriptions().is_empty());
    assert!(other.state_id().is_none());
}

// ---- refused after the token was granted ------------------------------------------------------

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"errorCode": code, "message": message,
                       "errors": [{"errorCode": code, "message": message}]})
    .to_string()
}

#[test]
fn a_401_in_the_middle_of_a_run_fails_with_a_hint_and_still_revokes() {
    let mut s = setup();
    s.set("RINGHOOK_EVENT_FILTERS", &format!("{SMS} {PRESENCE}"));
    let cases = [
        (
            "GET",
            "/restapi/v1.0/account/",
            "cannot list the extensions",
        ),
        ("GET", SUBSCRIPTION, "cannot list the subscriptions"),
        ("POST", SUBSCRIPTION, "cannot create the subscription"),
    ];
    for (method, prefix, what) in cases {
        for (code, message) in [
            ("TokenInvalid", "Access token is invalid"),
            ("AGW-401", "Authorization header is not specified"),
        ] {
            s.fake.clear_journal();
            let body = error_body(code, message);
            s.fake
                .script_raw(method, prefix, 401, "application/json", &body);
            let hint = s.fails(&[what, &format!("{code} {message} (HTTP 401)")]);
            assert!(hint.contains("RC_JWT"), "{hint}");
            assert!(hint.contains("WebHook Subscriptions"), "{hint}");
            assert_eq!(s.fake.count(method, prefix), 1, "a 401 is not retried");
            assert_eq!(s.fake.count("POST", "/restapi/oauth/revoke"), 1);
        }
    }
    assert!(s.fake.subscriptions().is_empty());
    assert!(s.state_id().is_none());
}

#[test]
fn a_missing_permission_is_named() {
    let s = setup();
    let body = error_body(
        "CMN-401",
        "In order to call this API endpoint, application needs to have [WebhookSubscriptions] permission",
    );
    s.fake
        .script_raw("POST", SUBSCRIPTION, 403, "application/json", &body);
    let hint = s.fails(&["cannot create the subscription", "CMN-401", "(HTTP 403)"]);
    assert!(hint.contains("WebHook Subscriptions"), "{hint}");
    assert_eq!(s.fake.count("POST", SUBSCRIPTION), 1);
    assert!(s.fake.subscriptions().is_empty());
}

// ---- rate limits no one could wait for ---------------------------------------------------------

#[test]
fn a_huge_retry_after_fails_the_run_instead_of_overflowing() {
    let s = setup();
    // Waiting a second first makes the sum of waits overflow a Duration.
    s.fake.script("GET", SUBSCRIPTION, 429, Some(1));
    s.fake.script("GET", SUBSCRIPTION, 429, Some(u64::MAX));
    let hint = s.fails(&["cannot list the subscriptions", "rate limited (HTTP 429)"]);
    assert!(hint.contains("RINGHOOK_MAX_WAIT"), "{hint}");
    assert_eq!(s.fake.count("GET", SUBSCRIPTION), 2);
    assert_eq!(s.fake.changing_calls(), Vec::<String>::new());
}
