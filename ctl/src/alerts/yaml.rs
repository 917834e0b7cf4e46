//! A tiny writer for Prometheus rule files: just the shapes a rule file needs (a list of groups,
//! each a list of rules with string maps). Every scalar is written double-quoted with JSON
//! escaping, which YAML reads back unchanged, so no expression or template needs YAML quoting
//! rules of its own.

use std::fmt::Write;

use super::{Rule, RuleGroup};

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Renders `groups` as a rule file, `header` lines first as comments.
pub fn render(header: &[String], groups: &[RuleGroup]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    out.push_str("groups:\n");
    for g in groups {
        let _ = writeln!(out, "  - name: {}", quoted(&g.name));
        if let Some(interval) = &g.interval {
            let _ = writeln!(out, "    interval: {}", quoted(interval));
        }
        out.push_str("    rules:\n");
        for r in &g.rules {
            rule(&mut out, r);
        }
    }
    out
}

fn rule(out: &mut String, r: &Rule) {
    let _ = writeln!(out, "      - alert: {}", quoted(&r.alert));
    let _ = writeln!(out, "        expr: {}", quoted(&r.expr));
    if let Some(f) = &r.for_ {
        let _ = writeln!(out, "        for: {}", quoted(f));
    }
    map(out, "labels", &r.labels);
    map(out, "annotations", &r.annotations);
}

fn map(out: &mut String, name: &str, entries: &[(String, String)]) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "        {name}:");
    for (k, v) in entries {
        let _ = writeln!(out, "          {k}: {}", quoted(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_scalar_and_escapes_quotes() {
        let g = RuleGroup {
            name: "g".into(),
            interval: Some("5s".into()),
            rules: vec![Rule {
                alert: "A".into(),
                expr: r#"x{a="b"} > 1"#.into(),
                for_: None,
                labels: vec![("severity".into(), "info".into())],
                annotations: vec![],
            }],
        };
        let text = render(&["hello".into()], &[g]);
        assert_eq!(
            text,
            "# hello\ngroups:\n  - name: \"g\"\n    interval: \"5s\"\n    rules:\n      - alert: \"A\"\n        \
             expr: \"x{a=\\\"b\\\"} > 1\"\n        labels:\n          severity: \"info\"\n"
        );
    }
}
