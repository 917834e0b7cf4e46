//! `brokers`: the cluster's brokers (id, address, rack, controller, alive, partitions led).

use std::sync::Arc;

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::cluster;
use chat4all_ctl::kafka::Observer;
use chat4all_ctl::output::{self, Format};

pub async fn brokers(cli: &Cli) -> anyhow::Result<()> {
    let mut v = BrokersView { observer: observer(cli)?, timeout: cli.timeout };
    watch::show(cli, &mut v).await
}

/// The stack's Kafka, every address of its bootstrap list tried in turn.
pub(crate) fn observer(cli: &Cli) -> anyhow::Result<Arc<Observer>> {
    Ok(Arc::new(Observer::new(&super::groups::bootstrap(cli), cli.timeout)?))
}

struct BrokersView {
    observer: Arc<Observer>,
    timeout: std::time::Duration,
}

impl Render for BrokersView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let view = cluster::observe(self.observer.clone(), self.timeout).await?;
        Ok(match format {
            Format::Json => output::json(&view.brokers),
            Format::Table => cluster::brokers_table(&view),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::cluster::ClusterView;
    use chat4all_ctl::wire::{Cluster, Quorum, Replicas, TopicMeta};

    #[test]
    fn a_dead_broker_says_so() {
        let reps = vec![Replicas { partition: 0, leader: 1, replicas: vec![2, 1], isr: vec![1], offline: vec![] }];
        let c = Cluster {
            brokers: vec![(1, "127.0.0.1:9092".into())],
            topics: vec![TopicMeta { name: "t".into(), internal: false, partitions: vec![(0, 1)], replicas: reps }],
            racks: Default::default(),
        };
        let q = Quorum { leader: 1, leader_epoch: 1, voters: vec![1, 2], observers: vec![] };
        let text = cluster::brokers_table(&ClusterView::build(&c, Some(&q)));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  ADDRESS         RACK  CONTROLLER  ALIVE  LEADS  REPLICAS");
        assert_eq!(lines[1], "1   127.0.0.1:9092  -     active      yes    1      1");
        assert_eq!(lines[2], "2   -               -     voter       NO     0      1");
        assert_eq!(lines[3], "1 partitions: 1 under-replicated, 0 offline");
    }
}
