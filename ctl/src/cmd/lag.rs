//! `lag [GROUP...]`: lag per group / topic / partition, lag in seconds and Burrow-style status.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::output::{self, or_dash, parse_duration, Format, Table};
use chat4all_ctl::view::{GroupReader, GroupView};

#[derive(Debug, Args)]
pub struct LagArgs {
    /// Groups to show (default: every group on the broker).
    pub groups: Vec<String>,
    /// Without the supervisor's offset history (no local stack, an external Kafka), sample the
    /// broker this long first so status and lag seconds have a window (0s: one sample).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub sample_for: Duration,
}

pub async fn lag(cli: &Cli, args: &LagArgs) -> anyhow::Result<()> {
    let one = (args.groups.len() == 1).then(|| args.groups[0].as_str());
    let reader = super::groups::reader_of(cli, one).await?;
    let mut v = LagView { reader, groups: args.groups.clone() };
    if !cli.watch && !args.sample_for.is_zero() && v.reader.history.is_thin() {
        // Prime the history: samples a second apart over `sample_for`.
        let end = tokio::time::Instant::now() + args.sample_for;
        loop {
            v.collect().await?;
            if tokio::time::Instant::now() + Duration::from_secs(1) > end {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep_until(end).await;
    }
    watch::show(cli, &mut v).await
}

struct LagView {
    reader: GroupReader,
    groups: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LagReport {
    groups: Vec<GroupView>,
}

impl LagView {
    async fn collect(&mut self) -> anyhow::Result<Vec<GroupView>> {
        if self.groups.is_empty() {
            return self.reader.all().await;
        }
        let mut out = Vec::new();
        for g in &self.groups {
            out.push(self.reader.describe(g).await?);
        }
        Ok(out)
    }
}

impl Render for LagView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let groups = self.collect().await?;
        Ok(match format {
            Format::Json => output::json(&LagReport { groups }),
            Format::Table => table(&groups),
        })
    }
}

fn table(groups: &[GroupView]) -> String {
    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-SECONDS",
        "STATUS",
        "OWNER",
    ]);
    for g in groups {
        for p in &g.partitions {
            let mut row = vec![g.group.clone()];
            row.extend(p.offset_cells());
            row.extend([
                or_dash(p.lag_seconds.map(|s| format!("{s:.1}"))),
                p.status.to_string(),
                or_dash(g.owner_cell(p)),
            ]);
            t.row(row);
        }
    }
    let mut out = String::new();
    for g in groups {
        let notes = g.notes();
        out.push_str(&format!(
            "{} ({}): lag {} ({}), status {}{}\n",
            g.group,
            g.group_type,
            g.total_lag,
            g.max_lag_seconds.map(|s| format!("{s:.1}s behind")).unwrap_or_else(|| "-".into()),
            g.status,
            if notes.is_empty() { String::new() } else { format!(", {notes}") }
        ));
    }
    out.push_str(&t.render());
    // Owners marked `!` are disputed: by whom, below the table (as `groups describe` says it).
    for d in groups.iter().flat_map(|g| &g.disagreements) {
        out.push_str(&super::groups::disagreement_line(d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::exporter::bench::synthetic;
    use chat4all_ctl::kafka::GroupType;
    use chat4all_ctl::ownership::Disagreement;

    #[test]
    fn a_disputed_owner_is_marked_and_explained() {
        let mut g = synthetic(1, 2, 0).0.groups.remove(0);
        g.group_type = GroupType::Consumer;
        g.reconciling = 1;
        g.disagreements = vec![Disagreement {
            topic: "topic-0".into(),
            partition: 1,
            broker: Some("instance-1".into()),
            reported_by: vec!["instance-1".into(), "instance-2".into()],
        }];
        let text = table(&[g]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "group-0 (consumer): lag 100 (0.2s behind), status OK, 1 reconciling, 1 disputed by reports"
        );
        let owner = |line: &str| line.split_whitespace().last().map(str::to_string);
        assert_eq!(owner(lines[2]).as_deref(), Some("instance-0"));
        assert_eq!(owner(lines[3]).as_deref(), Some("instance-1!"));
        assert_eq!(
            lines[4],
            "DISAGREEMENT topic-0-1: broker assigns it to instance-1, reported by instance-1, instance-2"
        );
    }

    #[test]
    fn a_classic_group_without_notes_names_only_its_type() {
        let text = table(&synthetic(1, 1, 0).0.groups);
        assert_eq!(text.lines().next(), Some("group-0 (classic): lag 50 (0.2s behind), status OK"));
        assert!(!text.contains('!') && !text.contains("DISAGREEMENT"), "{text}");
    }
}
