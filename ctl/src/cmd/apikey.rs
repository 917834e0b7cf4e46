//! `apikey create | list | revoke`: API keys of the api-gateway, through its admin endpoints
//! (the gateway owns `api_keys` and stores only each key's SHA-256).

use clap::{Args, Subcommand};

use chat4all_contract::admin::api_keys::CreateKey;
use chat4all_ctl::error::usage;
use chat4all_ctl::output::{self, Format, Table};

use super::Cli;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (only its SHA-256 is stored).
    Create(CreateArgs),
    /// The keys: name, prefix, rate limit, created, revoked.
    List,
    /// Revoke a key by name: the gateway refuses it within its key cache time (2 s by default).
    Revoke(NameArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A unique name for the key (who or what uses it).
    pub name: String,
    /// Sustained requests per second for this key (default: the gateway's, 100).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Burst size for this key (default: the gateway's, 200).
    #[arg(long)]
    pub burst: Option<u32>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

pub async fn apikey(cli: &Cli, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create(a) => create(cli, a).await,
        ApiKeyCommand::List => list(cli).await,
        ApiKeyCommand::Revoke(a) => revoke(cli, &a.name).await,
    }
}

async fn create(cli: &Cli, a: &CreateArgs) -> anyhow::Result<()> {
    let req = CreateKey { name: a.name.clone(), rate_per_second: a.rate, burst: a.burst };
    // Checked here too, so bad input is refused without a stack.
    if let Some(problem) = req.problem() {
        return Err(usage(problem));
    }
    let created = cli.admin()?.create_api_key(&req).await?;
    if cli.output == Format::Json {
        println!("{}", output::json(&serde_json::json!({"name": created.summary.name, "key": created.key})));
    } else {
        println!("{}", created.key);
        eprintln!("chat4allctl: key {:?} created; it is shown only this once", a.name);
    }
    Ok(())
}

async fn list(cli: &Cli) -> anyhow::Result<()> {
    let keys = cli.admin()?.api_keys().await?.keys;
    if cli.output == Format::Json {
        println!("{}", output::json(&keys));
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "PREFIX", "RATE/S", "BURST", "CREATED", "STATE"]);
    for k in &keys {
        t.row(vec![
            k.name.clone(),
            format!("{}...", k.prefix),
            k.rate_per_second.map(|r| r.to_string()).unwrap_or_else(|| "default".into()),
            k.burst.map(|b| b.to_string()).unwrap_or_else(|| "default".into()),
            k.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            match k.revoked_at {
                Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M:%S")),
                None => "active".into(),
            },
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

async fn revoke(cli: &Cli, name: &str) -> anyhow::Result<()> {
    match cli.admin()?.revoke_api_key(name).await {
        Ok(_) => {
            println!("revoked {name}");
            Ok(())
        }
        Err(chat4all_ctl::admin::AdminError::Refused { status: 404, .. }) => {
            Err(usage(format!("no active key named {name:?} (see `chat4allctl apikey list`)")))
        }
        Err(e) => Err(e.into()),
    }
}
