//! Pure rendering of one observation as OpenMetrics text (prometheus-client), with
//! kafka_exporter's metric names and labels for lag and offsets, so that existing dashboards and
//! rules work unchanged, plus chat4all's own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::collect::Extras;
use crate::runtime::InstanceState;
use crate::sampler::Latest;

type Labels = Vec<(&'static str, String)>;
type IntFamily = Family<Labels, Gauge>;
type FloatFamily = Family<Labels, Gauge<f64, AtomicU64>>;

fn int_family(reg: &mut Registry, name: &str, help: &str) -> IntFamily {
    let f = IntFamily::default();
    reg.register(name, help, f.clone());
    f
}

fn float_family(reg: &mut Registry, name: &str, help: &str) -> FloatFamily {
    let f = FloatFamily::default();
    reg.register(name, help, f.clone());
    f
}

fn gpt(group: &str, topic: &str, partition: i32) -> Labels {
    vec![("consumergroup", group.to_string()), ("topic", topic.to_string()), ("partition", partition.to_string())]
}

/// The metrics text of `latest` and `extras` as of `now`.
pub fn render(latest: &Latest, extras: &Extras, now: DateTime<Utc>) -> String {
    let mut reg = Registry::default();
    let topic_partitions = int_family(&mut reg, "kafka_topic_partitions", "Number of partitions of a topic");
    let topic_offset = int_family(&mut reg, "kafka_topic_partition_current_offset", "Log-end offset of a partition");
    let group_offset = int_family(
        &mut reg,
        "kafka_consumergroup_current_offset",
        "Committed offset of a consumer group on a partition",
    );
    let group_lag = int_family(
        &mut reg,
        "kafka_consumergroup_lag",
        "Log-end offset minus committed offset, per partition (only where the group has committed)",
    );
    let group_lag_sum =
        int_family(&mut reg, "kafka_consumergroup_lag_sum", "Lag of a consumer group summed over a topic");
    let members = int_family(&mut reg, "kafka_consumergroup_members", "Members of a consumer group on the broker");
    let lag_seconds = float_family(
        &mut reg,
        "chat4all_consumergroup_lag_seconds",
        "How far behind in time the committed offset is, estimated from the log-end offset's history",
    );
    let owner = int_family(
        &mut reg,
        "chat4all_partition_owner_info",
        "1 for the live instance that owns a partition (reconciled from the broker and the instances' reports)",
    );
    let group_partitions =
        int_family(&mut reg, "chat4all_consumergroup_partitions", "Partitions of the topics a consumer group reads");
    let group_info = int_family(
        &mut reg,
        "chat4all_consumergroup_info",
        "1 per consumer group, with its protocol type (classic or consumer, KIP-848) and state",
    );
    let group_epoch = int_family(
        &mut reg,
        "chat4all_consumergroup_epoch",
        "Group epoch of a KIP-848 consumer group (absent for classic)",
    );
    let reconciling = int_family(
        &mut reg,
        "chat4all_consumergroup_reconciling_members",
        "Members whose current assignment is not yet their target assignment (KIP-848; 0 for classic groups)",
    );
    let disagreements = int_family(
        &mut reg,
        "chat4all_consumergroup_ownership_disagreements",
        "Partitions where a live member's own report differs from the broker's assignment",
    );
    let rebalances = Family::<Labels, Counter>::default();
    reg.register(
        "chat4all_consumergroup_rebalances",
        "Assignment changes (assigned, revoked, lost, left) reported by the group's instances",
        rebalances.clone(),
    );
    let instance_up =
        int_family(&mut reg, "chat4all_instance_up", "1 while an instance of the local stack runs, 0 otherwise");
    let instance_ready = int_family(
        &mut reg,
        "chat4all_instance_ready",
        "1 while a running instance answers its health check (dependencies reachable), 0 otherwise",
    );
    for (topic, n) in &latest.topics {
        topic_partitions.get_or_create(&vec![("topic", topic.clone())]).set(*n as i64);
    }
    let mut seen_log_end: BTreeSet<(&str, i32)> = BTreeSet::new();
    for g in &latest.groups {
        let glabel = vec![("consumergroup", g.group.clone())];
        members.get_or_create(&glabel).set(g.members as i64);
        group_partitions.get_or_create(&glabel).set(g.partitions.len() as i64);
        group_info
            .get_or_create(&vec![
                ("consumergroup", g.group.clone()),
                ("type", g.group_type.to_string()),
                ("state", g.state.clone()),
            ])
            .set(1);
        if let Some(epoch) = g.group_epoch {
            group_epoch.get_or_create(&glabel).set(epoch as i64);
        }
        reconciling.get_or_create(&glabel).set(g.reconciling as i64);
        disagreements.get_or_create(&glabel).set(g.disagreements.len() as i64);
        let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
        for p in &g.partitions {
            let o = &p.offsets;
            let labels = gpt(&g.group, &o.topic, o.partition);
            if seen_log_end.insert((o.topic.as_str(), o.partition)) {
                topic_offset
                    .get_or_create(&vec![("topic", o.topic.clone()), ("partition", o.partition.to_string())])
                    .set(o.log_end);
            }
            if let (Some(c), Some(lag)) = (o.committed, o.lag) {
                group_offset.get_or_create(&labels).set(c);
                group_lag.get_or_create(&labels).set(lag);
                *sums.entry(o.topic.as_str()).or_default() += lag;
            }
            if let Some(s) = p.lag_seconds {
                lag_seconds.get_or_create(&labels).set(s);
            }
            if let Some(ow) = &p.owner {
                let mut l = labels;
                l.push(("instance", ow.instance.clone()));
                owner.get_or_create(&l).set(1);
            }
        }
        for (topic, sum) in sums {
            group_lag_sum
                .get_or_create(&vec![("consumergroup", g.group.clone()), ("topic", topic.to_string())])
                .set(sum);
        }
    }
    // Partitions no group reads (the dead-letter topic): the collector's log-end offsets.
    for ((topic, partition), end) in &extras.log_ends {
        if !seen_log_end.contains(&(topic.as_str(), *partition)) {
            topic_offset.get_or_create(&vec![("topic", topic.clone()), ("partition", partition.to_string())]).set(*end);
        }
    }
    // Dead letters whose delivery is still FAILED, per channel (absent while unknown).
    if let Some(d) = &extras.dlq {
        let depth = int_family(
            &mut reg,
            "chat4all_dlq_depth",
            "Dead letters on chat-events-dlq whose delivery is still FAILED (not replayed, not delivered since), per channel",
        );
        for (channel, n) in &d.channels {
            depth.get_or_create(&vec![("channel", channel.clone())]).set(*n as i64);
        }
        let letters = Gauge::<i64>::default();
        letters.set(d.letters as i64);
        reg.register("chat4all_dlq_letters", "Records on chat-events-dlq (replayed or not)", letters);
    }
    // Before and after the topic: the outbox and the oldest delivery not final, per channel, as
    // the message-service computes them (its own /metrics has the same series under its job).
    if let Some(p) = &extras.pipeline {
        let backlog = Gauge::<i64>::default();
        backlog.set(p.relay.backlog);
        reg.register("chat4all_outbox_backlog", "Outbox records not yet published", backlog);
        let oldest = Gauge::<f64, AtomicU64>::default();
        oldest.set(p.relay.oldest_seconds);
        reg.register(
            "chat4all_outbox_oldest_seconds",
            "Age of the oldest unpublished outbox record (0 when empty)",
            oldest,
        );
        let paused = Gauge::<i64>::default();
        paused.set(i64::from(p.relay.paused.is_some()));
        reg.register("chat4all_outbox_paused", "1 while a pause lease holds the outbox relay", paused);
        let pending = float_family(
            &mut reg,
            "chat4all_delivery_oldest_pending_seconds",
            "Age of the oldest delivery not final yet (not delivered, failed or dead-lettered), per channel",
        );
        for c in &p.channels {
            pending.get_or_create(&vec![("channel", c.channel.label().to_string())]).set(c.oldest_pending_seconds);
        }
    }
    for (group, n) in &extras.rebalances {
        rebalances.get_or_create(&vec![("consumergroup", group.clone())]).inc_by(*n);
    }
    for i in &extras.instances {
        let labels = vec![("service", i.service.clone()), ("instance", i.name.clone())];
        instance_up.get_or_create(&labels).set(i64::from(i.state == InstanceState::Running));
        if let Some(ok) = extras.ready.get(&i.name) {
            instance_ready.get_or_create(&labels).set(i64::from(*ok));
        }
    }
    if let Some(at) = latest.at {
        let age = Gauge::<f64, AtomicU64>::default();
        age.set((now - at).num_milliseconds().max(0) as f64 / 1000.0);
        reg.register("chat4all_exporter_sample_age_seconds", "Age of the observation of the broker being served", age);
        let took = Gauge::<f64, AtomicU64>::default();
        took.set(latest.took.as_secs_f64());
        reg.register(
            "chat4all_exporter_sample_duration_seconds",
            "How long the last observation of the broker took",
            took,
        );
    }
    let error = Gauge::<i64>::default();
    error.set(i64::from(latest.error.is_some()));
    reg.register("chat4all_exporter_sample_error", "1 when the last observation of the broker failed", error);

    super::brokers::register(&mut reg, extras.cluster.as_ref());

    let mut out = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::bench::synthetic;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn kafka_exporter_names_and_labels() {
        let (latest, extras) = synthetic(1, 2, 3);
        let text = render(&latest, &extras, Utc::now());
        let l = lines(&text);
        for want in [
            r#"kafka_consumergroup_lag{consumergroup="group-0",topic="topic-0",partition="1"} 50"#,
            r#"kafka_consumergroup_current_offset{consumergroup="group-0",topic="topic-0",partition="1"} 1000001"#,
            r#"kafka_topic_partition_current_offset{topic="topic-0",partition="0"} 1000050"#,
            r#"kafka_topic_partitions{topic="topic-0"} 2"#,
            r#"kafka_consumergroup_members{consumergroup="group-0"} 3"#,
            r#"kafka_consumergroup_lag_sum{consumergroup="group-0",topic="topic-0"} 100"#,
            r#"chat4all_partition_owner_info{consumergroup="group-0",topic="topic-0",partition="1",instance="instance-1"} 1"#,
            r#"chat4all_consumergroup_rebalances_total{consumergroup="group-0"} 12"#,
            r#"chat4all_consumergroup_lag_seconds{consumergroup="group-0",topic="topic-0",partition="0"} 0.25"#,
            r#"chat4all_consumergroup_partitions{consumergroup="group-0"} 2"#,
            r#"chat4all_consumergroup_info{consumergroup="group-0",type="classic",state="Stable"} 1"#,
            r#"chat4all_consumergroup_reconciling_members{consumergroup="group-0"} 0"#,
            r#"chat4all_consumergroup_ownership_disagreements{consumergroup="group-0"} 0"#,
            r#"chat4all_instance_up{service="router-service",instance="instance-2"} 1"#,
            r#"chat4all_instance_ready{service="router-service",instance="instance-2"} 1"#,
            r#"chat4all_exporter_sample_error 0"#,
            r#"kafka_topic_partition_current_offset{topic="dead-letters",partition="0"} 7"#,
        ] {
            assert!(l.contains(&want), "missing {want} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_kip848_group_shows_its_type_epoch_and_reconciling_members() {
        let (mut latest, extras) = synthetic(1, 2, 0);
        let g = &mut latest.groups[0];
        g.group_type = crate::kafka::GroupType::Consumer;
        g.group_epoch = Some(7);
        g.reconciling = 2;
        let text = render(&latest, &extras, Utc::now());
        let l = lines(&text);
        for want in [
            r#"chat4all_consumergroup_info{consumergroup="group-0",type="consumer",state="Stable"} 1"#,
            r#"chat4all_consumergroup_epoch{consumergroup="group-0"} 7"#,
            r#"chat4all_consumergroup_reconciling_members{consumergroup="group-0"} 2"#,
        ] {
            assert!(l.contains(&want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn no_lag_without_a_commit_no_owner_line_without_an_owner() {
        let (mut latest, mut extras) = synthetic(1, 2, 0);
        let p = &mut latest.groups[0].partitions[0];
        p.offsets.committed = None;
        p.offsets.lag = None;
        p.owner = None;
        extras.instances[0].state = InstanceState::Killed;
        extras.ready.remove("instance-1");
        let text = render(&latest, &extras, Utc::now());
        assert!(!text.contains(r#"kafka_consumergroup_lag{consumergroup="group-0",topic="topic-0",partition="0"}"#));
        assert!(text.contains(r#"kafka_consumergroup_lag{consumergroup="group-0",topic="topic-0",partition="1"} 50"#));
        assert!(
            !text.contains(r#"chat4all_partition_owner_info{consumergroup="group-0",topic="topic-0",partition="0""#)
        );
        // The log-end offset is still known.
        assert!(text.contains(r#"kafka_topic_partition_current_offset{topic="topic-0",partition="0"} 1000050"#));
        assert!(text.contains(r#"chat4all_instance_up{service="router-service",instance="instance-1"} 0"#));
        assert!(!text.contains(r#"chat4all_instance_ready{service="router-service",instance="instance-1"}"#));
    }

    #[test]
    fn sample_age_and_error() {
        let (mut latest, extras) = synthetic(1, 1, 0);
        let at = Utc::now() - chrono::Duration::seconds(90);
        latest.at = Some(at);
        latest.error = Some("broker unreachable".into());
        let text = render(&latest, &extras, at + chrono::Duration::milliseconds(90_500));
        assert!(text.contains("chat4all_exporter_sample_age_seconds 90.5"), "{text}");
        assert!(text.contains("chat4all_exporter_sample_error 1"));
        latest.at = None;
        assert!(!render(&latest, &extras, Utc::now()).contains("chat4all_exporter_sample_age_seconds "));
    }
}
