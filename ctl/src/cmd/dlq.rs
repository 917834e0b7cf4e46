//! `dlq list` and `dlq replay`: the dead letters on `chat-events-dlq` (read from the topic) and
//! their replay through the message-service's admin endpoint, which resets only deliveries still
//! FAILED and publishes them again (nothing already delivered is delivered twice).

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Cli;
use chat4all_contract::admin::dlq::{LetterKey, ReplayRequest, ReplayResponse, Skipped};
use chat4all_contract::channel::Channel;
use chat4all_contract::events::DeliveryStatus;
use chat4all_ctl::dlq::{self, excerpt, Filter, Letter, EXCERPT_CHARS};
use chat4all_ctl::error::usage;
use chat4all_ctl::output::{self, parse_duration, Format, Table};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The dead letters: what (message, conversation, recipient, channel, text), why (reason),
    /// when, which instance gave up, and the delivery's status now.
    List(ListArgs),
    /// Publish dead letters again; only deliveries still FAILED are replayed, the others are
    /// reported as skipped. `--dry-run` shows what would be replayed.
    Replay(ReplayArgs),
}

fn parse_channel(s: &str) -> Result<Channel, String> {
    s.parse::<Channel>().map_err(|e| e.to_string())
}

#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Only this channel's letters (whatsapp, telegram, instagram).
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<Channel>,
    /// Only letters dead-lettered within this long (e.g. 30m, 1h).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter { channel: self.channel, since: self.since }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ids", "all"]))]
pub struct ReplayArgs {
    /// Letters to replay by id (`<partition>:<offset>`, as `dlq list` shows them).
    #[arg(long = "id", num_args = 1.., value_name = "P:O")]
    pub ids: Vec<String>,
    /// Every letter (narrowed by --channel / --since).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be replayed and what is skipped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who replays (in the message-service's log).
    #[arg(long, default_value = "chat4allctl")]
    pub by: String,
}

pub async fn dlq(cli: &Cli, command: &DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(a) => list(cli, a).await,
        DlqCommand::Replay(a) => replay(cli, a).await,
    }
}

async fn read(cli: &Cli) -> anyhow::Result<Vec<Letter>> {
    let stack = cli.stack();
    dlq::read_all_async(&stack.bootstrap, cli.timeout)
        .await
        .map_err(|e| usage(format!("reading chat-events-dlq at {}: {e:#}", stack.bootstrap)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListRow {
    id: String,
    at: Option<chrono::DateTime<chrono::Utc>>,
    message_id: Option<uuid::Uuid>,
    conversation_id: Option<String>,
    recipient_id: Option<String>,
    channel: Option<Channel>,
    text: Option<String>,
    reason: String,
    instance: Option<String>,
    /// The delivery's status now (`None`: unknown, or not a dead-letter record).
    status: Option<DeliveryStatus>,
}

fn list_row(l: &Letter, status: Option<DeliveryStatus>) -> ListRow {
    match &l.letter {
        Some(d) => ListRow {
            id: l.id.clone(),
            at: l.at,
            message_id: Some(d.event.message_id),
            conversation_id: Some(d.event.conversation_id.clone()),
            recipient_id: Some(d.recipient.user_id.clone()),
            channel: Some(d.recipient.channel),
            text: Some(excerpt(&d.event.content.text, EXCERPT_CHARS)),
            reason: d.reason.clone(),
            instance: Some(d.instance.clone()),
            status,
        },
        None => ListRow {
            id: l.id.clone(),
            at: l.at,
            message_id: None,
            conversation_id: None,
            recipient_id: None,
            channel: None,
            text: l.raw.clone(),
            reason: "not a dead-letter record (a malformed chat event, kept as it was)".into(),
            instance: None,
            status: None,
        },
    }
}

async fn list(cli: &Cli, args: &ListArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let f = args.filter.filter();
    let letters: Vec<Letter> = read(cli).await?.into_iter().filter(|l| f.keeps(l, now)).collect();
    let statuses = match cli.admin() {
        Ok(admin) => match dlq::statuses(&admin, &letters).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("chat4allctl: the deliveries' status is unknown: {e}");
                None
            }
        },
        Err(e) => {
            eprintln!("chat4allctl: the deliveries' status is unknown: {e:#}");
            None
        }
    };
    let rows: Vec<ListRow> = letters
        .iter()
        .enumerate()
        .map(|(i, l)| list_row(l, statuses.as_ref().and_then(|s| s.get(i).copied().flatten())))
        .collect();
    match cli.output {
        Format::Json => println!("{}", output::json(&rows)),
        Format::Table => print!("{}", list_table(&rows)),
    }
    Ok(())
}

fn list_table(rows: &[ListRow]) -> String {
    let mut t = Table::new(&[
        "ID",
        "AT",
        "CHANNEL",
        "MESSAGE",
        "CONVERSATION",
        "RECIPIENT",
        "STATUS",
        "INSTANCE",
        "REASON",
        "TEXT",
    ]);
    for r in rows {
        t.row(vec![
            r.id.clone(),
            output::or_dash(r.at.map(|a| a.format("%Y-%m-%d %H:%M:%S").to_string())),
            output::or_dash(r.channel.map(|c| c.label())),
            output::or_dash(r.message_id),
            output::or_dash(r.conversation_id.as_deref()),
            output::or_dash(r.recipient_id.as_deref()),
            output::or_dash(r.status.map(|s| s.as_str())),
            output::or_dash(r.instance.as_deref()),
            excerpt(&r.reason, 60),
            output::or_dash(r.text.as_deref()),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!("{} dead letters\n", rows.len()));
    out
}

/// `P:O`, checked.
fn parse_id(s: &str) -> anyhow::Result<(i32, i64)> {
    let bad = || usage(format!("invalid dead-letter id {s:?} (expected <partition>:<offset>, as `dlq list` shows)"));
    let (p, o) = s.trim().split_once(':').ok_or_else(bad)?;
    let p: i32 = p.parse().map_err(|_| bad())?;
    let o: i64 = o.parse().map_err(|_| bad())?;
    if p < 0 || o < 0 {
        return Err(bad());
    }
    Ok((p, o))
}

async fn replay(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<()> {
    // Bad ids end the command before anything is read or changed.
    let mut wanted: BTreeSet<(i32, i64)> = BTreeSet::new();
    for id in &args.ids {
        wanted.insert(parse_id(id)?);
    }
    if args.by.trim().is_empty() {
        return Err(usage("--by must not be empty"));
    }
    let admin = cli.admin()?;
    let letters = read(cli).await?;
    let now = chrono::Utc::now();
    let f = args.filter.filter();
    let mut chosen: Vec<&Letter> = Vec::new();
    if args.all {
        chosen.extend(letters.iter().filter(|l| f.keeps(l, now)));
    } else {
        for (p, o) in &wanted {
            let id = format!("{p}:{o}");
            let letter = letters
                .iter()
                .find(|l| l.partition == *p && l.offset == *o)
                .ok_or_else(|| usage(format!("unknown dead letter {id}: no such record on chat-events-dlq")))?;
            if letter.letter.is_none() {
                return Err(usage(format!(
                    "{id} is not a dead-letter record (a malformed chat event): nothing to replay"
                )));
            }
            if !f.keeps(letter, now) {
                return Err(usage(format!("{id} is outside --channel / --since")));
            }
            chosen.push(letter);
        }
    }
    // Records that are not dead letters cannot be replayed: reported, never sent.
    let mut local_skips: Vec<(String, String)> = Vec::new();
    let keys: Vec<LetterKey> = chosen
        .iter()
        .filter_map(|l| match l.key() {
            Some(k) => Some(k),
            None => {
                local_skips.push((l.id.clone(), "not a dead-letter record (a malformed chat event)".into()));
                None
            }
        })
        .collect();
    let mut resp = ReplayResponse { dry_run: args.dry_run, replayed: Vec::new(), skipped: Vec::new(), outbox_rows: 0 };
    for chunk in keys.chunks(chat4all_contract::admin::dlq::MAX_LETTERS) {
        let r = admin
            .dlq_replay(&ReplayRequest { letters: chunk.to_vec(), dry_run: args.dry_run, by: args.by.clone() })
            .await?;
        resp.replayed.extend(r.replayed);
        resp.skipped.extend(r.skipped);
        resp.outbox_rows += r.outbox_rows;
    }
    match cli.output {
        Format::Json => {
            let doc = serde_json::json!({
                "dryRun": resp.dry_run,
                "replayed": resp.replayed,
                "skipped": resp.skipped,
                "outboxRows": resp.outbox_rows,
                "notLetters": local_skips.iter().map(|(id, why)| serde_json::json!({"id": id, "reason": why})).collect::<Vec<_>>(),
            });
            println!("{}", output::json(&doc));
        }
        Format::Table => print!("{}", replay_report(&resp, &local_skips)),
    }
    Ok(())
}

fn replay_report(r: &ReplayResponse, local_skips: &[(String, String)]) -> String {
    let verb = if r.dry_run { "would replay" } else { "replayed" };
    let mut out = format!(
        "{verb} {} dead letters ({} outbox rows), skipped {}\n",
        r.replayed.len(),
        r.outbox_rows,
        r.skipped.len() + local_skips.len()
    );
    if !r.replayed.is_empty() {
        let mut t = Table::new(&["REPLAY", "CHANNEL", "MESSAGE", "RECIPIENT"]);
        for l in &r.replayed {
            t.row(vec![l.id.clone(), l.channel.label().into(), l.message_id.to_string(), l.recipient_id.clone()]);
        }
        out.push_str(&t.render());
    }
    if !r.skipped.is_empty() || !local_skips.is_empty() {
        let mut t = Table::new(&["SKIP", "CHANNEL", "MESSAGE", "RECIPIENT", "STATUS", "WHY"]);
        for Skipped { letter: l, status, reason } in &r.skipped {
            t.row(vec![
                l.id.clone(),
                l.channel.label().into(),
                l.message_id.to_string(),
                l.recipient_id.clone(),
                output::or_dash(status.map(|s| s.as_str())),
                reason.clone(),
            ]);
        }
        for (id, why) in local_skips {
            t.row(vec![id.clone(), "-".into(), "-".into(), "-".into(), "-".into(), why.clone()]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_partition_and_offset() {
        assert_eq!(parse_id("0:17").unwrap(), (0, 17));
        for bad in ["", "0", "a:1", "0:x", "-1:3", "0:-2", "1:2:3"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_report_names_replayed_and_skipped() {
        let key = LetterKey {
            id: "0:3".into(),
            message_id: uuid::Uuid::nil(),
            recipient_id: "bob".into(),
            channel: Channel::Telegram,
        };
        let r = ReplayResponse {
            dry_run: true,
            replayed: vec![key.clone()],
            skipped: vec![Skipped {
                letter: LetterKey { id: "0:4".into(), ..key },
                status: Some(DeliveryStatus::Delivered),
                reason: "the delivery is DELIVERED now, not FAILED".into(),
            }],
            outbox_rows: 0,
        };
        let text = replay_report(&r, &[]);
        assert!(text.starts_with("would replay 1 dead letters (0 outbox rows), skipped 1\n"), "{text}");
        assert!(text.contains("0:4") && text.contains("DELIVERED"), "{text}");
    }
}
