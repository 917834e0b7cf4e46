//! The checked-in rules through Prometheus' own tool: `promtool check rules` accepts them and the
//! unit tests under `alerts/tests/` (every alert firing and not firing) pass. promtool comes from
//! Debian's `prometheus` package (scripts/bootstrap.sh installs it); without it these tests skip
//! with a message, except under CI where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

fn alerts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts")
}

/// promtool, or None (skip) when it is missing outside CI.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed (apt-get install prometheus; scripts/bootstrap.sh does it)"
        );
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus); set CI=1 to make this fail");
    }
    found
}

fn run(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).current_dir(alerts_dir()).output().expect("running promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_accepts_the_rules() {
    let Some(tool) = promtool() else { return };
    let text = run(&tool, &["check", "rules", "chat4all-rules.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_pass() {
    let Some(tool) = promtool() else { return };
    let mut files: Vec<String> = std::fs::read_dir(alerts_dir().join("tests"))
        .expect("alerts/tests exists")
        .filter_map(|e| e.ok())
        .map(|e| format!("tests/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promtool unit tests under alerts/tests");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let text = run(&tool, &args);
    assert!(text.contains("SUCCESS") && !text.contains("FAILED"), "{text}");
}

/// Every alert of the rule file is exercised by the unit tests, firing at least once.
#[test]
fn unit_tests_cover_every_alert() {
    let rules = std::fs::read_to_string(alerts_dir().join("chat4all-rules.yml")).expect("rule file");
    let mut tests = String::new();
    for e in std::fs::read_dir(alerts_dir().join("tests")).expect("alerts/tests exists").flatten() {
        tests.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    let names: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(|n| n.trim_matches('"')).collect();
    assert!(!names.is_empty());
    for name in names {
        let cases: Vec<&str> =
            tests.split("- eval_time:").filter(|c| c.contains(&format!("alertname: {name}\n"))).collect();
        assert!(cases.iter().any(|c| c.contains("exp_labels")), "alert {name} is never tested firing in alerts/tests");
    }
}

#[test]
fn promtool_accepts_the_scrape_config() {
    let Some(tool) = promtool() else { return };
    let text = run(&tool, &["check", "config", "prometheus.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// alerts/prometheus.yml scrapes the local stack's default ports and uses the job names the
/// rules select on.
#[test]
fn scrape_config_matches_the_stack_s_ports_and_the_rules_jobs() {
    use crate::spec::Ports;
    let config = std::fs::read_to_string(alerts_dir().join("prometheus.yml")).expect("prometheus.yml");
    let p = Ports::default();
    let mut want = vec![
        (crate::exporter::DEFAULT_PORT, "chat4all-exporter"),
        (p.message_service, "message-service-1"),
        (p.whatsapp, "whatsapp-connector-1"),
        (p.telegram, "telegram-connector-1"),
        (p.instagram, "instagram-connector-1"),
    ];
    for n in 1..=3u16 {
        want.push((p.router_base + n, ["router-service-1", "router-service-2", "router-service-3"][n as usize - 1]));
    }
    for (port, name) in want {
        assert!(config.contains(&format!("\"127.0.0.1:{port}\"")), "no target on port {port} ({name})");
        assert!(config.contains(name), "{name} not named in prometheus.yml");
    }
    for job in [super::EXPORTER_JOB, super::ROUTER_JOB] {
        assert!(config.contains(&format!("job_name: {job}\n")), "job {job} missing");
    }
}
