//! Prometheus alert rules for chat4all, generated from a few operator parameters
//! (`chat4allctl alerts emit`). Pure: parameters in, rule groups and their YAML out.
//!
//! The rules read the exporter's metrics (kafka_exporter's names plus ours, see
//! [`crate::exporter`]) and the services' own `/metrics`. Job names match `alerts/prometheus.yml`.

#[cfg(test)]
mod promtool;
mod rules;
mod yaml;

use std::time::Duration;

use crate::error::usage;

/// The scrape job of the control-plane exporter in `alerts/prometheus.yml`.
pub const EXPORTER_JOB: &str = "chat4all-exporter";
/// The scrape job of the router instances in `alerts/prometheus.yml`.
pub const ROUTER_JOB: &str = "chat4all-router-service";
/// The scrape job of the message-service (outbox relay metrics).
pub const MESSAGE_JOB: &str = "chat4all-message-service";
/// The consumer groups of the platform: the default scope of the lag and ownership alerts.
pub const DEFAULT_GROUPS: [&str; 5] =
    ["router-service", "message-service-status", "whatsapp-connector", "telegram-connector", "instagram-connector"];

/// What the operator tunes. [`Params::default`] is what `alerts emit` prints without flags and
/// what `alerts/chat4all-rules.yml` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Consumer groups the lag, ownership and membership alerts watch.
    pub groups: Vec<String>,
    /// Lag (messages) of one partition above which the lag alert fires.
    pub lag_threshold: u64,
    /// How long lag must stay above the threshold (or keep growing) before alerting.
    pub lag_for: Duration,
    /// Lag is "growing" when it is higher than it was this long ago.
    pub growing_window: Duration,
    /// The consumers' session timeout: a partition may be without owner this long during a
    /// normal failover, so the no-owner alert waits that long.
    pub session_timeout: Duration,
    /// Window over which rebalance reports are counted.
    pub rebalance_window: Duration,
    /// More rebalance reports than this in the window: the group is rebalancing.
    pub rebalance_max: u32,
    /// How long members of a KIP-848 group may keep reconciling (a rebalance takes seconds)
    /// before the stuck-reconciliation alert.
    pub reconciling_for: Duration,
    /// How long an instance may be down or unhealthy before alerting.
    pub down_for: Duration,
    /// How long members may exceed partitions before the idle-standby notice.
    pub standby_for: Duration,
    /// Window in which any dead letter fires the dead-letter alert.
    pub dead_letter_window: Duration,
    /// The exporter's last broker observation may be this old before it is called stale.
    pub stale_after: Duration,
    /// How long the outbox relay may stay paused (a repartition takes seconds) before alerting.
    pub relay_paused_for: Duration,
    /// Age of the oldest unpublished outbox row above which the outbox is not draining.
    pub outbox_max_age: Duration,
    /// Age of a channel's oldest delivery not final yet above which the channel stalls.
    pub max_pending_age: Duration,
    /// Evaluation interval of the rule groups; None leaves Prometheus' global one.
    pub interval: Option<Duration>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            groups: DEFAULT_GROUPS.iter().map(|g| g.to_string()).collect(),
            lag_threshold: 1000,
            lag_for: Duration::from_secs(120),
            growing_window: Duration::from_secs(600),
            session_timeout: Duration::from_secs(45),
            rebalance_window: Duration::from_secs(600),
            rebalance_max: 20,
            reconciling_for: Duration::from_secs(120),
            down_for: Duration::from_secs(60),
            standby_for: Duration::from_secs(600),
            dead_letter_window: Duration::from_secs(300),
            stale_after: Duration::from_secs(60),
            relay_paused_for: Duration::from_secs(300),
            outbox_max_age: Duration::from_secs(60),
            max_pending_age: Duration::from_secs(30),
            interval: None,
        }
    }
}

impl Params {
    /// Refuses what would make a rule Prometheus rejects or one that can never fire.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.groups.is_empty() {
            return Err(usage("at least one consumer group is needed (--group)"));
        }
        for g in &self.groups {
            if g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(usage(format!(
                    "consumer group {g:?}: only letters, digits, '-', '_' and '.' are accepted"
                )));
            }
        }
        let windows = [
            ("--growing-window", self.growing_window),
            ("--rebalance-window", self.rebalance_window),
            ("--dead-letter-window", self.dead_letter_window),
            ("--stale-after", self.stale_after),
            ("--outbox-max-age", self.outbox_max_age),
            ("--max-pending-age", self.max_pending_age),
        ];
        for (flag, d) in windows {
            if d.as_millis() == 0 {
                return Err(usage(format!("{flag} must be longer than 0")));
            }
        }
        if let Some(i) = self.interval {
            if i.as_millis() == 0 {
                return Err(usage("--interval must be longer than 0"));
            }
        }
        Ok(())
    }
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    pub for_: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

/// A duration the way Prometheus writes it (`2m`, `45s`, `500ms`).
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// The rule groups for `p`.
pub fn groups(p: &Params) -> anyhow::Result<Vec<RuleGroup>> {
    p.validate()?;
    Ok(rules::all(p))
}

/// The rule file for `p`, as `alerts emit` prints it.
pub fn render(p: &Params) -> anyhow::Result<String> {
    let groups = groups(p)?;
    let header = vec![
        "chat4all alert rules, generated by `chat4allctl alerts emit`: regenerate, do not edit.".to_string(),
        format!(
            "groups {}; lag > {} for {}; growing over {}; session timeout {}; rebalances > {} in {}; \
             reconciling for {}; down for {}; standby for {}; dead letters in {}; stale after {}; relay paused for {}; \
             outbox max age {}; max pending age {}; interval {}",
            p.groups.join(","),
            p.lag_threshold,
            prom_duration(p.lag_for),
            prom_duration(p.growing_window),
            prom_duration(p.session_timeout),
            p.rebalance_max,
            prom_duration(p.rebalance_window),
            prom_duration(p.reconciling_for),
            prom_duration(p.down_for),
            prom_duration(p.standby_for),
            prom_duration(p.dead_letter_window),
            prom_duration(p.stale_after),
            prom_duration(p.relay_paused_for),
            prom_duration(p.outbox_max_age),
            prom_duration(p.max_pending_age),
            p.interval.map(prom_duration).unwrap_or_else(|| "global".into()),
        ),
    ];
    Ok(yaml::render(&header, &groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_prometheus_form() {
        assert_eq!(prom_duration(Duration::from_secs(120)), "2m");
        assert_eq!(prom_duration(Duration::from_secs(45)), "45s");
        assert_eq!(prom_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn refuses_groups_that_would_break_the_selector() {
        let p = Params { groups: vec!["a\"b".into()], ..Params::default() };
        assert!(p.validate().is_err());
        let p = Params { groups: vec![], ..Params::default() };
        assert!(p.validate().is_err());
        let p = Params { rebalance_window: Duration::ZERO, ..Params::default() };
        assert!(p.validate().is_err());
        assert!(Params::default().validate().is_ok());
    }

    #[test]
    fn every_alert_has_severity_summary_and_description() {
        let groups = groups(&Params::default()).unwrap();
        let rules: Vec<&Rule> = groups.iter().flat_map(|g| &g.rules).collect();
        assert!(rules.len() >= 10, "{} rules", rules.len());
        for r in rules {
            let has = |k: &str, list: &[(String, String)]| list.iter().any(|(n, v)| n == k && !v.is_empty());
            assert!(has("severity", &r.labels), "{} has no severity", r.alert);
            assert!(has("summary", &r.annotations), "{} has no summary", r.alert);
            assert!(has("description", &r.annotations), "{} has no description", r.alert);
        }
    }

    #[test]
    fn the_issue_s_alerts_are_all_there() {
        let groups = groups(&Params::default()).unwrap();
        let names: Vec<&str> = groups.iter().flat_map(|g| &g.rules).map(|r| r.alert.as_str()).collect();
        for want in [
            "Chat4allConsumerLagHigh",
            "Chat4allConsumerLagGrowing",
            "Chat4allConsumerGroupRebalancing",
            "Chat4allPartitionWithoutOwner",
            "Chat4allInstanceDown",
            "Chat4allInstanceUnhealthy",
            "Chat4allStandbyInstancesIdle",
            "Chat4allDeadLetters",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(groups.iter().flat_map(|g| &g.rules).any(|r| r.expr.contains("absent(")));
    }

    #[test]
    fn parameters_reach_the_expressions() {
        let p = Params {
            lag_threshold: 7,
            lag_for: Duration::from_secs(5),
            session_timeout: Duration::from_secs(3),
            reconciling_for: Duration::from_secs(90),
            interval: Some(Duration::from_secs(1)),
            groups: vec!["g.one".into()],
            ..Params::default()
        };
        let text = render(&p).unwrap();
        assert!(text.contains(r#"kafka_consumergroup_lag{consumergroup=~\"g\\\\.one\"} > 7"#), "{text}");
        assert!(text.contains("interval: \"1s\""));
        assert!(text.contains("for: \"3s\""));
        assert!(text.contains("for: \"5s\""));
        assert!(text.contains("for: \"90s\"") && text.contains("target assignment for 90s"), "{text}");
        assert!(text.contains(r#"absent(kafka_consumergroup_members{consumergroup=\"g.one\"})"#), "{text}");
    }
}
