//! `scripts/prometheus/alerts.yml`: valid for Prometheus, unit-tested with `promtool test rules`,
//! and built only on families the receiver really exposes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/prometheus"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 11 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_test_and_uses_only_real_families() {
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - exp_labels"
            )),
            "no test expects {a} to fire"
        );
    }

    // The families a receiver with every feature exposes (rendered by the receiver's own code).
    use ringhook::internals::*;
    let r = RegisterStatus {
        expiry: Some(SystemTime::now() + Duration::from_secs(60)),
        active: Some(true),
        ..RegisterStatus::default()
    };
    let mut out = Vec::new();
    render(
        &Scrape {
            counters: &Counters::default(),
            connections_open: 1,
            log_writable: true,
            log_sync: &Histogram::default(),
            log_sync_in_flight: None,
            exec: Some(ExecOutcomes::default()),
            register: Some(&r),
            ship: Some(&ShipFigures::default()),
            process: Process::read(),
        },
        &mut out,
    );
    let exposed = String::from_utf8(out).unwrap();
    let mut used = Vec::new();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if (word.starts_with("ringhook_") || word.starts_with("process_")) && !used.contains(&word)
        {
            used.push(word);
        }
    }
    assert!(used.len() >= 9, "{used:?}");
    for name in used {
        assert!(
            exposed.contains(&format!("# TYPE {name} ")),
            "alerts.yml uses {name}, which the receiver does not expose"
        );
    }
}
