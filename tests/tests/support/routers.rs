//! Stopping and starting the router instances of the stack under test, all at once (as an
//! operator would), then waiting until the broker reports the group settled.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chat4all_tests::Stack;
use serde_json::Value;

pub const GROUP: &str = "router-service";

/// Router instances of the stack: (name, port, state).
pub async fn routers(stack: &Stack) -> Result<Vec<(String, u16, String)>> {
    let out = stack.ctl(&["instances", "-o", "json"]).await?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("instances -o json: {out}"))?;
    let list = v.as_array().ok_or_else(|| anyhow!("instances -o json is not a list: {out}"))?;
    let routers: Vec<(String, u16, String)> = list
        .iter()
        .filter(|i| i["service"] == GROUP)
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["port"].as_u64().unwrap_or_default() as u16,
                i["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if routers.is_empty() {
        bail!("the stack runs no router-service instance: {out}");
    }
    Ok(routers)
}

/// Names of the running routers.
pub async fn running(stack: &Stack) -> Result<Vec<String>> {
    Ok(routers(stack).await?.into_iter().filter(|(_, _, s)| s == "running").map(|(n, _, _)| n).collect())
}

/// Waits until the broker reports the group settled with `members` members (Stable, or Empty for
/// none) on two polls in a row.
pub async fn wait_group(stack: &Stack, members: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled = 0;
    loop {
        let out = stack.ctl(&["groups", "list", "-o", "json"]).await?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("groups list -o json: {out}"))?;
        let group = v.as_array().and_then(|l| l.iter().find(|g| g["group"] == GROUP)).cloned().unwrap_or_default();
        let n = group["members"].as_array().map(Vec::len).unwrap_or(0);
        let state = group["state"].as_str().unwrap_or("absent");
        let ok = if members == 0 { n == 0 && state == "Empty" } else { n == members && state == "Stable" };
        settled = if ok { settled + 1 } else { 0 };
        if settled >= 2 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("group {GROUP} did not settle with {members} members within 60 s (state {state}, {n} members)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `stop`s or `start`s `names` together, then waits until the group has settled.
pub async fn set_routers(stack: &Stack, action: &str, names: &[String]) -> Result<()> {
    let before = running(stack).await?.len();
    let acts = names
        .iter()
        .map(|name| async move { stack.ctl(&[action, name]).await.with_context(|| format!("`{action} {name}`")) });
    for r in futures::future::join_all(acts).await {
        r?;
    }
    let members = if action == "stop" { before.saturating_sub(names.len()) } else { before + names.len() };
    wait_group(stack, members).await.with_context(|| format!("after `{action}` of {names:?}"))
}

/// Starts those of `names` that are not running.
pub async fn restore_routers(stack: &Stack, names: &[String]) -> Result<()> {
    let stopped: Vec<String> = routers(stack)
        .await?
        .into_iter()
        .filter(|(n, _, s)| names.contains(n) && s != "running")
        .map(|(n, _, _)| n)
        .collect();
    set_routers(stack, "start", &stopped).await
}
