//! kafka_exporter's broker and replica series, from the cluster view (`cluster::ClusterView`):
//! `kafka_brokers`, `kafka_topic_partition_leader`, `_replicas`, `_in_sync_replica`,
//! `_under_replicated_partition`, `_leader_is_preferred` (same names and labels as
//! danielqsj/kafka_exporter), and ours: `chat4all_kafka_broker_up{broker}` (a broker of the quorum
//! or of a replica list that Metadata no longer lists is down) and
//! `chat4all_kafka_active_controllers`.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cluster::ClusterView;

type Labels = Vec<(&'static str, String)>;

fn family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

/// Registers the series of `view` (nothing when the cluster could not be read).
pub fn register(reg: &mut Registry, view: Option<&ClusterView>) {
    let Some(v) = view else { return };
    let brokers = Gauge::<i64>::default();
    brokers.set(v.brokers.iter().filter(|b| b.alive).count() as i64);
    reg.register("kafka_brokers", "Number of Brokers in the Kafka Cluster.", brokers);
    let controllers = Gauge::<i64>::default();
    controllers.set(i64::from(v.controller.is_some()));
    reg.register(
        "chat4all_kafka_active_controllers",
        "1 while the KRaft quorum has an active controller (DescribeQuorum), 0 otherwise",
        controllers,
    );
    let up =
        family(reg, "chat4all_kafka_broker_up", "1 while a broker is in Metadata, 0 for a voter or replica it left");
    for b in &v.brokers {
        up.get_or_create(&vec![("broker", b.id.to_string())]).set(i64::from(b.alive));
    }
    let leader = family(reg, "kafka_topic_partition_leader", "Leader Broker ID of this Topic/Partition");
    let replicas = family(reg, "kafka_topic_partition_replicas", "Number of Replicas for this Topic/Partition");
    let isr =
        family(reg, "kafka_topic_partition_in_sync_replica", "Number of In-Sync Replicas for this Topic/Partition");
    let under =
        family(reg, "kafka_topic_partition_under_replicated_partition", "1 if Topic/Partition is under Replicated");
    let preferred =
        family(reg, "kafka_topic_partition_leader_is_preferred", "1 if Topic/Partition is using the Preferred Broker");
    for p in &v.partitions {
        let l: Labels = vec![("topic", p.topic.clone()), ("partition", p.replicas.partition.to_string())];
        leader.get_or_create(&l).set(i64::from(p.replicas.leader));
        replicas.get_or_create(&l).set(p.replicas.replicas.len() as i64);
        isr.get_or_create(&l).set(p.replicas.isr.len() as i64);
        under.get_or_create(&l).set(i64::from(p.under_replicated));
        preferred.get_or_create(&l).set(i64::from(p.preferred_leader));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Cluster, Quorum, Replicas, TopicMeta};

    #[test]
    fn kafka_exporter_names_labels_and_a_dead_broker() {
        let reps =
            vec![Replicas { partition: 0, leader: 2, replicas: vec![1, 2, 3], isr: vec![2, 3], offline: vec![1] }];
        let c = Cluster {
            brokers: vec![(2, "h:2".into()), (3, "h:3".into())],
            topics: vec![TopicMeta {
                name: "chat-events".into(),
                internal: false,
                partitions: vec![(0, 2)],
                replicas: reps,
            }],
            racks: Default::default(),
        };
        let q = Quorum { leader: 3, leader_epoch: 1, voters: vec![1, 2, 3], observers: vec![] };
        let mut reg = Registry::default();
        register(&mut reg, Some(&ClusterView::build(&c, Some(&q))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for line in [
            "kafka_brokers 2",
            "chat4all_kafka_active_controllers 1",
            r#"chat4all_kafka_broker_up{broker="1"} 0"#,
            r#"chat4all_kafka_broker_up{broker="3"} 1"#,
            r#"kafka_topic_partition_leader{topic="chat-events",partition="0"} 2"#,
            r#"kafka_topic_partition_replicas{topic="chat-events",partition="0"} 3"#,
            r#"kafka_topic_partition_in_sync_replica{topic="chat-events",partition="0"} 2"#,
            r#"kafka_topic_partition_under_replicated_partition{topic="chat-events",partition="0"} 1"#,
            r#"kafka_topic_partition_leader_is_preferred{topic="chat-events",partition="0"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        let mut empty = Registry::default();
        register(&mut empty, None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &empty).unwrap();
        assert!(!text.contains("kafka_brokers"));
    }
}
