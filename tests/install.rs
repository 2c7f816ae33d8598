//! One installation under test: the fake platform, a running receiver, a scratch directory and
//! the variables of one install; shared by the `register` and `register_faults` tests.
//!
//! Every run goes through [`Setup::run`], which checks that no secret (client secret, JWT,
//! password, verification token, any access token the fake issued, any extra secret a test
//! names) shows in stdout or stderr, that nothing panicked, and that the session was revoked.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

use crate::fake_platform::{self as fake, FakePlatform};
use crate::support::{self, Running, Serve};

pub const TOKEN: &str = "verif-Token-9f8e7d6c";
pub const SMS: &str = "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS";
pub const PRESENCE: &str = "/restapi/v1.0/account/~/extension/{extensionId}/presence?detailedTelephonyState=true&aggregated=true";

/// The fake, the receiver the platform's handshake and notifications reach, and the install.
pub struct Setup {
    pub fake: FakePlatform,
    pub serve: Running,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// More strings that must never show in any output.
    pub secrets: Vec<String>,
}

/// One finished run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// The one `error:` line, checked to be the only one and readable, with its hint.
    pub fn error(&self) -> (&str, &str) {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("ringhook: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line:\n{}", self.stderr);
        // Whatever the platform sent, the line stays readable.
        assert!(errors[0].len() < 400, "a long error line:\n{}", self.stderr);
        let hint = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("ringhook: hint: "))
            .unwrap_or_else(|| panic!("no hint:\n{}", self.stderr));
        (&errors[0]["ringhook: error: ".len()..], hint)
    }
}

/// A receiver checking [`TOKEN`], logging to a file.
pub fn receiver() -> Running {
    Serve::new()
        .env("WEBHOOK_VERIFICATION_TOKEN", TOKEN)
        .log_file()
        .start()
}

/// The URL the platform posts to for `r`.
pub fn address_of(r: &Running) -> String {
    format!("http://{}{}", r.addr, r.path)
}

impl Setup {
    /// Against a plain-HTTP fake.
    pub fn new() -> Setup {
        Self::with(FakePlatform::start())
    }

    /// Against `fake` (e.g. one serving TLS).
    pub fn with(fake: FakePlatform) -> Setup {
        let serve = receiver();
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("RC_SERVER_URL", fake.url.as_str()),
            ("RC_CLIENT_ID", fake::CLIENT_ID),
            ("RC_CLIENT_SECRET", fake::CLIENT_SECRET),
            ("RC_JWT", fake::JWT),
            ("WEBHOOK_ADDRESS", &address_of(&serve)),
            ("WEBHOOK_VERIFICATION_TOKEN", TOKEN),
            ("RINGHOOK_EVENT_FILTERS", SMS),
            (
                "RINGHOOK_STATE",
                &dir.path().join("state.json").to_string_lossy(),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Setup {
            fake,
            serve,
            dir,
            env,
            secrets: Vec::new(),
        }
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn unset(&mut self, k: &str) {
        self.env.retain(|(n, _)| n != k);
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// The id the state file names, if there is one.
    pub fn state_id(&self) -> Option<String> {
        let raw = std::fs::read_to_string(self.state_path()).ok()?;
        let v: Value = serde_json::from_str(&raw).unwrap();
        v["id"].as_str().map(str::to_string)
    }

    /// Runs the real binary with the install's variables and checks every run's invariants.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = support::ringhook(self.dir.path());
        cmd.args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run ringhook");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let mut secrets: Vec<String> = vec![
            fake::CLIENT_SECRET.into(),
            fake::JWT.into(),
            fake::PASSWORD.into(),
            TOKEN.into(),
        ];
        secrets.extend(self.secrets.iter().cloned());
        secrets.extend(self.fake.issued_tokens());
        for (k, v) in &self.env {
            if k.contains("SECRET") || k.contains("JWT") || k.contains("PASSWORD") {
                secrets.push(v.clone());
            }
        }
        for s in &secrets {
            assert!(
                !run.stdout.contains(s.as_str()) && !run.stderr.contains(s.as_str()),
                "a secret leaked into the output of {args:?}:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("panicked"),
            "{args:?} panicked:\n{}",
            run.stderr
        );
        assert!(
            self.fake.live_tokens().is_empty(),
            "the session was not revoked by {args:?}:\n{}",
            run.stderr
        );
        run
    }

    /// Runs `register --json` and expects success.
    pub fn register(&self) -> Value {
        let r = self.run(&["register", "--json"]);
        assert_eq!(r.code, 0, "register failed:\n{}", r.stderr);
        r.json()
    }

    /// Runs `register` and expects exit 1 with one error line containing every one of `says`;
    /// returns the hint.
    pub fn fails(&self, says: &[&str]) -> String {
        let r = self.run(&["register"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let (error, hint) = r.error();
        for s in says {
            assert!(error.contains(s), "{s:?} not in {error:?}:\n{}", r.stderr);
        }
        hint.to_string()
    }

    /// The journal as `METHOD path`, in order.
    pub fn calls(&self) -> Vec<String> {
        self.fake
            .journal()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// `register` once more succeeds with nothing to change.
    pub fn then_nothing_to_do(&self) {
        self.fake.clear_journal();
        let r = self.run(&["register", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["action"], "nothing", "{}", r.stderr);
        assert_eq!(self.fake.changing_calls(), Vec::<String>::new());
    }

    /// The one subscription the fake holds.
    pub fn only_subscription(&self) -> fake::Sub {
        let subs = self.fake.subscriptions();
        assert_eq!(subs.len(), 1, "{subs:#?}");
        subs.into_iter().next().unwrap()
    }
}
