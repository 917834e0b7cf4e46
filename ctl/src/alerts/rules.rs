//! The alert definitions. Each rule names the labels that locate the problem in its description;
//! rules whose input series may vanish (exporter gone, group gone, no router scraped) have an
//! `absent()` twin so that silence is itself an alert.

use super::{prom_duration, Params, Rule, RuleGroup, EXPORTER_JOB, MESSAGE_JOB, ROUTER_JOB};

fn rule(alert: &str, expr: String, for_: Option<String>, severity: &str, summary: &str, description: String) -> Rule {
    Rule {
        alert: alert.into(),
        expr,
        for_,
        labels: vec![("severity".into(), severity.into())],
        annotations: vec![("summary".into(), summary.into()), ("description".into(), description)],
    }
}

/// `consumergroup=~"a|b"` with regex metacharacters of the names escaped for PromQL.
fn group_selector(p: &Params) -> String {
    let alternatives: Vec<String> = p.groups.iter().map(|g| g.replace('.', "\\\\.")).collect();
    format!("consumergroup=~\"{}\"", alternatives.join("|"))
}

pub(super) fn all(p: &Params) -> Vec<RuleGroup> {
    let interval = p.interval.map(prom_duration);
    vec![
        RuleGroup { name: "chat4all-consumer-groups".into(), interval: interval.clone(), rules: consumer_groups(p) },
        RuleGroup { name: "chat4all-instances".into(), interval: interval.clone(), rules: instances(p) },
        RuleGroup { name: "chat4all-pipeline".into(), interval: interval.clone(), rules: pipeline(p) },
        RuleGroup { name: "chat4all-outbox".into(), interval: interval.clone(), rules: outbox(p) },
        RuleGroup { name: "chat4all-kafka-cluster".into(), interval: interval.clone(), rules: kafka_cluster(p) },
        RuleGroup { name: "chat4all-exporter".into(), interval, rules: exporter(p) },
    ]
}

fn consumer_groups(p: &Params) -> Vec<Rule> {
    let sel = group_selector(p);
    let lag = format!("kafka_consumergroup_lag{{{sel}}}");
    let growing = prom_duration(p.growing_window);
    let unobserved = p
        .groups
        .iter()
        .map(|g| format!("absent(kafka_consumergroup_members{{consumergroup=\"{g}\"}})"))
        .collect::<Vec<_>>()
        .join(" or ");
    vec![
        rule(
            "Chat4allConsumerLagHigh",
            format!("{lag} > {}", p.lag_threshold),
            Some(prom_duration(p.lag_for)),
            "warning",
            "Consumer group lag above threshold",
            format!(
                "Group {{{{ $labels.consumergroup }}}} is {{{{ $value }}}} messages behind on \
                 {{{{ $labels.topic }}}}/{{{{ $labels.partition }}}} (threshold {}) for {}.",
                p.lag_threshold,
                prom_duration(p.lag_for)
            ),
        ),
        rule(
            "Chat4allConsumerLagGrowing",
            format!("{lag} > 0 and delta({lag}[{growing}]) > 0"),
            Some(prom_duration(p.lag_for)),
            "warning",
            "Consumer group lag keeps growing",
            format!(
                "Lag of group {{{{ $labels.consumergroup }}}} on {{{{ $labels.topic }}}}/{{{{ $labels.partition }}}} \
                 is higher than {growing} ago and has been for {}: consumers are falling behind.",
                prom_duration(p.lag_for)
            ),
        ),
        rule(
            "Chat4allPartitionWithoutOwner",
            format!("{lag} unless on (consumergroup, topic, partition) chat4all_partition_owner_info"),
            Some(prom_duration(p.session_timeout)),
            "critical",
            "Partition has no owner",
            format!(
                "No live instance of group {{{{ $labels.consumergroup }}}} owns {{{{ $labels.topic }}}}/\
                 {{{{ $labels.partition }}}} (lag {{{{ $value }}}}) for longer than the session timeout {}: \
                 nothing consumes it.",
                prom_duration(p.session_timeout)
            ),
        ),
        rule(
            "Chat4allConsumerGroupRebalancing",
            format!(
                "increase(chat4all_consumergroup_rebalances_total{{{sel}}}[{}]) > {}",
                prom_duration(p.rebalance_window),
                p.rebalance_max
            ),
            None,
            "warning",
            "Consumer group keeps rebalancing",
            format!(
                "Group {{{{ $labels.consumergroup }}}} reported {{{{ $value | humanize }}}} assignment changes in \
                 the last {} (more than {}): instances are joining and leaving; see `chat4allctl events`.",
                prom_duration(p.rebalance_window),
                p.rebalance_max
            ),
        ),
        rule(
            "Chat4allConsumerGroupReconciling",
            format!("chat4all_consumergroup_reconciling_members{{{sel}}} > 0"),
            Some(prom_duration(p.reconciling_for)),
            "warning",
            "KIP-848 group members stuck reconciling",
            format!(
                "{{{{ $value }}}} members of group {{{{ $labels.consumergroup }}}} have not reached their target \
                 assignment for {}: the partitions they should take or give up wait (`chat4allctl groups describe \
                 {{{{ $labels.consumergroup }}}} --members` shows who).",
                prom_duration(p.reconciling_for)
            ),
        ),
        rule(
            "Chat4allStandbyInstancesIdle",
            format!("kafka_consumergroup_members{{{sel}}} > on (consumergroup) chat4all_consumergroup_partitions"),
            Some(prom_duration(p.standby_for)),
            "info",
            "More instances than partitions: standbys idle",
            "Group {{ $labels.consumergroup }} has {{ $value }} members but fewer partitions: the extra \
             instances own nothing and only stand by. Add partitions (`chat4allctl repartition`) or scale down."
                .into(),
        ),
        rule(
            "Chat4allConsumerGroupUnobserved",
            unobserved,
            Some(prom_duration(p.lag_for)),
            "warning",
            "Consumer group not reported by the exporter",
            "The exporter reports no group {{ $labels.consumergroup }}: its lag and ownership alerts cannot \
             fire. Is the group gone from the broker, or the exporter unable to read it?"
                .into(),
        ),
    ]
}

fn instances(p: &Params) -> Vec<Rule> {
    let down = prom_duration(p.down_for);
    vec![
        rule(
            "Chat4allInstanceDown",
            "chat4all_instance_up == 0".into(),
            Some(down.clone()),
            "critical",
            "Instance not running",
            format!(
                "Instance {{{{ $labels.instance }}}} of {{{{ $labels.service }}}} has not been running for {down} \
                 (see `chat4allctl instances`)."
            ),
        ),
        rule(
            "Chat4allInstanceUnhealthy",
            "chat4all_instance_ready == 0".into(),
            Some(down.clone()),
            "warning",
            "Instance health check failing",
            format!(
                "Instance {{{{ $labels.instance }}}} of {{{{ $labels.service }}}} runs but its /health check has \
                 failed for {down}: a dependency (PostgreSQL, Kafka, Redis) is unreachable from it."
            ),
        ),
        rule(
            "Chat4allScrapeTargetDown",
            format!("up{{job=~\"chat4all-.+\", job!=\"{EXPORTER_JOB}\"}} == 0"),
            Some(down.clone()),
            "warning",
            "Service metrics endpoint unreachable",
            format!(
                "Prometheus cannot scrape {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) for {down}: \
                 the instance is down or its /metrics fails."
            ),
        ),
        rule(
            "Chat4allRuntimeUnobserved",
            "absent(chat4all_instance_up)".into(),
            Some(down),
            "warning",
            "Instance states not exported",
            "The exporter reports no instance state (chat4all_instance_up): it runs without a supervisor to \
             ask, so instance-down alerts cannot fire."
                .into(),
        ),
    ]
}

/// The Kafka cluster (kafka_exporter's replica series and ours, `exporter/brokers.rs`). A single
/// broker has nothing to be under-replicated against; these matter for `up --brokers 3`.
fn kafka_cluster(p: &Params) -> Vec<Rule> {
    let down = prom_duration(p.down_for);
    vec![
        rule(
            "Chat4allKafkaUnderReplicatedPartitions",
            "sum by (topic) (kafka_topic_partition_under_replicated_partition) > 0".into(),
            Some(down.clone()),
            "warning",
            "Partitions under-replicated",
            format!(
                "{{{{ $value }}}} partitions of {{{{ $labels.topic }}}} have fewer in-sync replicas than replicas for {down}: one more broker lost may stop writes (min.insync.replicas). `chat4allctl topics describe --under-replicated` names them."
            ),
        ),
        rule(
            "Chat4allKafkaOfflinePartitions",
            "count by (topic) (kafka_topic_partition_leader < 0) > 0".into(),
            None,
            "critical",
            "Partitions without a leader",
            "{{ $value }} partitions of {{ $labels.topic }} have no leader: nothing can be written to or read from them until a replica's broker returns."
                .into(),
        ),
        rule(
            "Chat4allKafkaNoActiveController",
            "chat4all_kafka_active_controllers == 0".into(),
            Some(down.clone()),
            "critical",
            "No active Kafka controller",
            format!(
                "The KRaft quorum has had no active controller for {down}: no leader can be elected and no topic changed (a majority of the controllers is down; `chat4allctl brokers`)."
            ),
        ),
        rule(
            "Chat4allKafkaBrokerDown",
            "chat4all_kafka_broker_up == 0".into(),
            Some(down.clone()),
            "critical",
            "Kafka broker down",
            format!(
                "Broker {{{{ $labels.broker }}}} is a voter or holds replicas but has not been in the cluster's metadata for {down} (`chat4allctl brokers`)."
            ),
        ),
    ]
}

fn pipeline(p: &Params) -> Vec<Rule> {
    let window = prom_duration(p.dead_letter_window);
    let max_pending = prom_duration(p.max_pending_age);
    vec![
        rule(
            "Chat4allDeliveryStalled",
            format!(
                "max by (channel) (chat4all_delivery_oldest_pending_seconds{{job=\"{MESSAGE_JOB}\"}}) > {}",
                p.max_pending_age.as_secs_f64()
            ),
            None,
            "critical",
            "Deliveries of a channel stall",
            format!(
                "The oldest {{{{ $labels.channel }}}} delivery not final yet is {{{{ $value | humanizeDuration }}}} old \
                 (more than {max_pending}): something between the outbox and the provider holds it. \
                 `chat4allctl status` names the stage (stalls line)."
            ),
        ),
        rule(
            "Chat4allDeadLetters",
            // The router dead-letters recipients that resolve to nobody, the connectors what is
            // out of attempts.
            format!(
                "increase(chat4all_router_dead_lettered_total[{window}]) > 0 \
                 or increase(chat4all_connector_dead_lettered_total[{window}]) > 0"
            ),
            None,
            "warning",
            "Events sent to the dead-letter topic",
            format!(
                "{{{{ $labels.instance }}}} sent {{{{ $value | humanize }}}} events to chat-events-dlq in the last \
                 {window}: deliveries failed past their attempts, recipients resolve to nobody, or events are malformed."
            ),
        ),
        rule(
            "Chat4allDeadLettersWaiting",
            format!("max by (channel) (chat4all_dlq_depth{{job=\"{EXPORTER_JOB}\"}}) > 0"),
            Some(window.clone()),
            "warning",
            "Dead letters wait for an operator",
            format!(
                "{{{{ $value | humanize }}}} {{{{ $labels.channel }}}} dead letters have stood for {window} with their \
                 delivery still FAILED. `chat4allctl dlq list --channel {{{{ $labels.channel }}}}` shows why; \
                 `chat4allctl dlq replay --all --channel {{{{ $labels.channel }}}}` publishes them again once the \
                 cause is fixed (nothing already delivered is delivered twice)."
            ),
        ),
        rule(
            "Chat4allDeadLettersUnobserved",
            format!("absent(chat4all_router_dead_lettered_total{{job=\"{ROUTER_JOB}\"}})"),
            Some(prom_duration(p.down_for)),
            "warning",
            "No router metrics: dead letters would go unnoticed",
            format!(
                "No router-service instance is scraped (job {ROUTER_JOB}), so dead letters and routing failures \
                 cannot be seen."
            ),
        ),
    ]
}

/// The outbox relay: what consumer lag cannot see (messages accepted but not yet on the topic).
/// Only the relay's leader reports the outbox series (followers report 0), hence `max`.
fn outbox(p: &Params) -> Vec<Rule> {
    let job = format!("job=\"{MESSAGE_JOB}\"");
    let max_age = prom_duration(p.outbox_max_age);
    let down = prom_duration(p.down_for);
    vec![
        rule(
            "Chat4allOutboxRelayPaused",
            format!("max(chat4all_outbox_paused{{{job}}}) > 0"),
            Some(prom_duration(p.relay_paused_for)),
            "warning",
            "Outbox relay paused",
            format!(
                "A pause lease has held the outbox relay for {}: the API accepts messages but none reaches Kafka. \
                 `chat4allctl relay` names the holder; `chat4allctl relay resume --force` ends it.",
                prom_duration(p.relay_paused_for)
            ),
        ),
        rule(
            "Chat4allOutboxNotDraining",
            format!("max(chat4all_outbox_oldest_seconds{{{job}}}) > {}", p.outbox_max_age.as_secs_f64()),
            None,
            "critical",
            "Outbox not draining",
            format!(
                "The oldest unpublished outbox row is {{{{ $value | humanizeDuration }}}} old (more than {max_age}): \
                 accepted messages are not reaching Kafka (relay paused, broker unreachable, or no leader)."
            ),
        ),
        rule(
            "Chat4allOutboxNoRelayLeader",
            format!("max(chat4all_outbox_relay_leader{{{job}}}) == 0"),
            Some(down.clone()),
            "critical",
            "No message-service leads the outbox relay",
            format!(
                "Message-service instances run but none has led the outbox relay for {down}: nothing is \
                 published (PostgreSQL unreachable from them?)."
            ),
        ),
        rule(
            "Chat4allOutboxUnobserved",
            format!("absent(chat4all_outbox_relay_leader{{{job}}})"),
            Some(down),
            "warning",
            "No message-service metrics: the outbox is unwatched",
            format!("No message-service instance is scraped (job {MESSAGE_JOB}): a stalled outbox would go unnoticed."),
        ),
    ]
}

fn exporter(p: &Params) -> Vec<Rule> {
    let stale = prom_duration(p.stale_after);
    vec![
        rule(
            "Chat4allExporterDown",
            format!("absent(up{{job=\"{EXPORTER_JOB}\"}} == 1)"),
            Some(prom_duration(p.down_for)),
            "critical",
            "Lag exporter not scraped",
            format!(
                "The chat4allctl exporter (job {EXPORTER_JOB}) is down or not scraped: no lag, ownership or \
                 instance alert can fire."
            ),
        ),
        rule(
            "Chat4allExporterStale",
            format!("chat4all_exporter_sample_age_seconds > {}", p.stale_after.as_secs_f64()),
            None,
            "warning",
            "Exporter serves an old observation",
            format!(
                "The exporter {{{{ $labels.instance }}}} last observed the broker {{{{ $value | humanizeDuration }}}} \
                 ago (more than {stale}): the broker or Redis does not answer it; lag figures are stale."
            ),
        ),
    ]
}
