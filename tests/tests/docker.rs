//! The docker runtime on a real engine: `up --runtime docker` starts the stack as labelled
//! containers; `groups describe` shows 3 router containers, one owner and 2 standbys; `kill` of the
//! owner's container (exit 137, read back from the engine with the docker CLI) moves ownership;
//! `scale router=4` then `=2` adds and removes containers; `restart` runs a new process in the same
//! container; `logs -f` streams what the container writes; the default `drill kill-active`
//! passes; a `docker kill` from the engine's own CLI is seen by the stack's failover watcher,
//! which removes the member at once; `down` removes every container. A second test brings the
//! stack up with docker-compose and compose/docker-compose.local.yml: the ctl finds it, its
//! health is the containers' healthchecks, `scale router=3` clones Compose's router, the
//! dashboard (tmux) shows the containers, and the default drill passes on it.
//!
//! Needs a Docker engine (`scripts/bootstrap.sh --docker` starts one) and fails without one. The
//! stack has its own data directory, Compose project, database, Redis database and port offset,
//! so it runs beside the process stack of the other tests. One sequence: every step changes it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use chat4all_tests::{ctl_run, wait_for, Config, CtlRun};
use serde_json::Value;

#[path = "support/tmux.rs"]
mod tmux;

const PROJECT: &str = "chat4all-test-docker";
const OFFSET: &str = "900";
const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chat4all_test_docker";
const REDIS_URL: &str = "redis://127.0.0.1:6379/14";
/// The operator kill removes the member at once; the rest is slack for a loaded machine.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

struct DockerStack {
    cfg: Config,
}

impl DockerStack {
    fn new() -> Self {
        let mut cfg = Config::from_env();
        cfg.home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docker-stack");
        Self { cfg }
    }

    /// `chat4allctl ARGS` against the docker stack, whatever it exits with.
    async fn run(&self, args: &[&str]) -> Result<CtlRun> {
        let env = [
            ("CHAT4ALL_HOME", self.cfg.home.to_string_lossy().into_owned()),
            ("CHAT4ALL_RUNTIME", "docker".into()),
            ("CHAT4ALL_COMPOSE_PROJECT", PROJECT.into()),
            ("CHAT4ALL_PORT_OFFSET", OFFSET.into()),
            ("DATABASE_URL", DATABASE_URL.into()),
            ("REDIS_URL", REDIS_URL.into()),
        ];
        let mut cmd = tokio::process::Command::new(&self.cfg.ctl);
        cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
        // Whatever the process stack of the other tests exported: this stack is found by its own
        // data directory.
        for k in ["KAFKA_BOOTSTRAP", "CHAT4ALL_API_URL", "CHAT4ALL_GATEWAY_URL", "CHAT4ALL_ADMIN_TOKEN"] {
            cmd.env_remove(k);
        }
        cmd.envs(env);
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .with_context(|| format!("chat4allctl {} did not finish within 180 s", args.join(" ")))??;
        Ok(CtlRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `chat4allctl ARGS`, which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> Result<String> {
        let r = self.run(args).await?;
        ensure!(r.code == 0, "chat4allctl {} exited {}:\n{}\n{}", args.join(" "), r.code, r.stdout, r.stderr);
        Ok(r.stdout)
    }

    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a).await?;
        serde_json::from_str(&out).with_context(|| format!("{} -o json: {out}", args.join(" ")))
    }
}

/// `docker ARGS` (the engine's own CLI: an observer independent of the ctl).
fn docker(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("docker").args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The project's router containers by name, as the engine lists them (running or not).
fn router_containers() -> Result<Vec<String>> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--filter",
        "label=com.docker.compose.service=router-service",
        "--format",
        "{{.Names}}",
    ])?;
    let mut names: Vec<String> = out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    names.sort();
    Ok(names)
}

fn state_of(container: &str) -> Result<(String, i64, String)> {
    let out = docker(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.StartedAt}}", container])?;
    let mut it = out.split_whitespace();
    Ok((
        it.next().unwrap_or_default().to_string(),
        it.next().and_then(|c| c.parse().ok()).unwrap_or(-1),
        it.next().unwrap_or_default().to_string(),
    ))
}

/// Owner of chat-events partition 0 and the standbys, once the group is Stable with `members`.
async fn settled(stack: &DockerStack, members: u64) -> Result<(String, Vec<String>)> {
    wait_for(&format!("router-service Stable with {members} members"), Duration::from_secs(60), || async {
        let d = stack.json(&["groups", "describe", "router-service"]).await?;
        let owner = d["partitions"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["topic"] == "chat-events"))
            .and_then(|p| p["owner"]["instance"].as_str())
            .map(str::to_string);
        let standby: Vec<String> = d["standby"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let ok = d["state"] == "Stable" && d["members"].as_u64() == Some(members) && owner.is_some();
        let ok = ok && standby.len() as u64 + 1 == members;
        Ok((ok.then(|| (owner.clone().unwrap_or_default(), standby.clone())), d.to_string()))
    })
    .await
}

async fn reset(stack: &DockerStack) -> Result<()> {
    let _ = stack.run(&["down"]).await?;
    let _ = std::fs::remove_dir_all(&stack.cfg.home);
    std::fs::create_dir_all(&stack.cfg.home)?;
    let admin = DATABASE_URL.rsplit_once('/').map(|(base, _)| format!("{base}/postgres")).unwrap_or_default();
    let pool = chat4all_tests::connect_db(&admin).await?;
    sqlx::query("DROP DATABASE IF EXISTS chat4all_test_docker WITH (FORCE)").execute(&pool).await?;
    let redis = std::process::Command::new("redis-cli").args(["-u", REDIS_URL, "FLUSHDB"]).output();
    ensure!(redis.is_ok_and(|o| o.status.success()), "redis-cli FLUSHDB on {REDIS_URL} failed");
    Ok(())
}

/// The two stacks of this file share the project, the ports and the database: one at a time.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn docker_runtime_up_kill_scale_restart_logs_down() -> Result<()> {
    let _one = ENGINE.lock().await;
    let stack = DockerStack::new();
    docker(&["version", "--format", "{{.Server.Version}}"])
        .context("no Docker engine answers: run scripts/bootstrap.sh --docker")?;
    reset(&stack).await?;

    let up = stack.json(&["up"]).await?;
    ensure!(up["containers"].as_array().map(Vec::len) == Some(15), "up: {up}");
    let result = scenario(&stack).await;
    let down = stack.json(&["down"]).await;
    result?;
    let down = down?;
    // 11 platform containers, 3 routers (the drill scaled back to 3) and the failover watcher.
    ensure!(down["removed"].as_array().map(Vec::len) == Some(15), "down: {down}");
    ensure!(router_containers()?.is_empty(), "containers left after down: {:?}", router_containers()?);
    Ok(())
}

async fn scenario(stack: &DockerStack) -> Result<()> {
    // Three router containers, the engine says; the ctl lists them with their container ids.
    let names = router_containers()?;
    ensure!(names == [1, 2, 3].map(|n| format!("{PROJECT}-router-service-{n}")), "router containers: {names:?}");
    let instances = stack.json(&["instances"]).await?;
    let routers: Vec<&Value> =
        instances.as_array().context("instances")?.iter().filter(|i| i["service"] == "router-service").collect();
    ensure!(
        routers.len() == 3 && routers.iter().all(|r| r["container"].is_string() && r["health"] == "up"),
        "{instances}"
    );
    let status = stack.ok(&["status"]).await?;
    ensure!(status.starts_with("runtime docker: docker "), "status names the runtime: {status}");

    // The standalone exporter asks the same runtime: the containers are its instances.
    let listen = format!("127.0.0.1:{}", 9308 + OFFSET.parse::<u16>()? + 1);
    let _exporter = tokio::process::Command::new(&stack.cfg.ctl)
        .args(["exporter", "--listen", &listen, "--sample-interval", "500ms"])
        .env("CHAT4ALL_HOME", &stack.cfg.home)
        .env("CHAT4ALL_RUNTIME", "docker")
        .env("CHAT4ALL_COMPOSE_PROJECT", PROJECT)
        .env("REDIS_URL", REDIS_URL)
        .env_remove("KAFKA_BOOTSTRAP")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let up = r#"chat4all_instance_up{service="router-service",instance="router-service-3"} 1"#;
    wait_for("the exporter's chat4all_instance_up of a router container", Duration::from_secs(20), || async {
        let page = match reqwest::get(format!("http://{listen}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        Ok((
            page.contains(up).then_some(()),
            page.lines().filter(|l| l.contains("instance_up")).collect::<Vec<_>>().join("\n"),
        ))
    })
    .await?;

    // One owner (chat-events has one partition), two standbys.
    let (owner, standby) = settled(stack, 3).await?;
    ensure!(standby.len() == 2 && !standby.contains(&owner), "owner {owner}, standby {standby:?}");

    // Kill the owner's container: exit 137 on the engine, ownership moves to a survivor.
    let killed = stack.ok(&["kill", &owner]).await?;
    ensure!(killed.contains("SIGKILL") && killed.contains("LeaveGroup router-service"), "kill: {killed}");
    let (status, code, _) = state_of(&format!("{PROJECT}-{owner}"))?;
    ensure!(status == "exited" && code == 137, "killed container: {status} {code}");
    let moved = wait_for("ownership moved after the kill", FAILOVER_WITHIN, || async {
        let (o, s) = settled(stack, 2).await?;
        Ok(((o != owner).then(|| o.clone()), format!("owner {o}, standby {s:?}")))
    })
    .await?;
    ensure!(standby.contains(&moved), "the new owner {moved} was a standby ({standby:?})");
    stack.ok(&["start", &owner]).await?;
    let (owner, _) = settled(stack, 3).await?;

    // A kill behind the ctl's back (the engine's own CLI): the stack's failover watcher sees the
    // container die and removes its member at once; its counter says so.
    let removed = || async {
        let list = stack.json(&["instances"]).await?;
        let port = list
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == "failover-1"))
            .and_then(|i| i["port"].as_u64())
            .context("no failover-1 instance")?;
        let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.text().await?;
        let n = page
            .lines()
            .find(|l| l.starts_with("chat4all_failover_leaves_total{outcome=\"removed\"}"))
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .unwrap_or(0.0);
        anyhow::Ok((n, page))
    };
    let (before, _) = removed().await?;
    docker(&["kill", &format!("{PROJECT}-{owner}")])?;
    wait_for("the watcher's LeaveGroup for the killed member", Duration::from_secs(10), || async {
        let (n, page) = removed().await?;
        Ok(((n > before).then_some(()), page))
    })
    .await?;
    let moved = wait_for("ownership moved after docker kill", FAILOVER_WITHIN, || async {
        let (o, s) = settled(stack, 2).await?;
        Ok(((o != owner).then(|| o.clone()), format!("owner {o}, standby {s:?}")))
    })
    .await?;
    eprintln!("docker kill {owner} from the CLI: the watcher removed its member; {moved} owns chat-events now");
    stack.ok(&["start", &owner]).await?;
    settled(stack, 3).await?;

    // Scale out to 4 and back to 2: containers are added with the next number and removed from
    // the top, as Compose does.
    let s = stack.json(&["scale", "router=4"]).await?;
    ensure!(s["started"] == serde_json::json!(["router-service-4"]), "scale 4: {s}");
    ensure!(router_containers()?.len() == 4, "{:?}", router_containers()?);
    let labels = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.container-number\"}} {{index .Config.Labels \"com.docker.compose.project\"}}",
        &format!("{PROJECT}-router-service-4"),
    ])?;
    ensure!(labels == format!("4 {PROJECT}"), "labels of the clone: {labels}");
    settled(stack, 4).await?;
    let s = stack.json(&["scale", "router=2"]).await?;
    ensure!(s["stopped"] == serde_json::json!(["router-service-4", "router-service-3"]), "scale 2: {s}");
    ensure!(
        router_containers()? == [1, 2].map(|n| format!("{PROJECT}-router-service-{n}")),
        "{:?}",
        router_containers()?
    );
    settled(stack, 2).await?;

    // `logs -f` streams the container's output while it restarts: the graceful stop's last line
    // and the new run's first ones arrive on the open stream.
    let container = format!("{PROJECT}-router-service-2");
    let (_, _, started_before) = state_of(&container)?;
    let mut follow = tokio::process::Command::new(&stack.cfg.ctl)
        .args(["logs", "router-service-2", "-n", "0", "-f"])
        .env("CHAT4ALL_HOME", &stack.cfg.home)
        .env("CHAT4ALL_RUNTIME", "docker")
        .env("CHAT4ALL_COMPOSE_PROJECT", PROJECT)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = stack.ok(&["restart", "router-service-2"]).await?;
    ensure!(restarted.contains("restarted router-service-2"), "restart: {restarted}");
    let (status, _, started_after) = state_of(&container)?;
    ensure!(status == "running" && started_after != started_before, "after restart: {status} {started_after}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    follow.start_kill()?;
    let out = follow.wait_with_output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("\"message\":\"stopped\""), "logs -f saw no graceful stop:\n{text}");
    ensure!(text.contains("\"message\":\"listening\""), "logs -f saw no new run:\n{text}");
    settled(stack, 2).await?;

    // The default drill on Docker: the owner's container killed under traffic, nothing lost,
    // duplicated or reordered (the drill scales back to 3 routers first).
    let drill = stack.json(&["drill", "kill-active"]).await?;
    ensure!(drill["passed"] == true, "drill kill-active on docker: {}", drill["criteria"]);
    let detail = drill["kills"][0]["kill"]["detail"].as_str().unwrap_or_default();
    ensure!(detail.contains("exit code 137"), "the drill's kill was a container kill: {detail}");

    // An unknown instance: exit 2, one line naming the project.
    let bad = stack.run(&["kill", "router-service-9"]).await?;
    ensure!(bad.code == 2 && bad.stderr.trim().lines().count() == 1, "{bad:?}");
    ensure!(bad.stderr.contains(PROJECT), "{bad:?}");
    Ok(())
}

/// `docker-compose ARGS` on compose/docker-compose.local.yml with the stack's variables.
fn compose(env_file: &std::path::Path, args: &[&str]) -> Result<String> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/docker-compose.local.yml");
    let env_file = env_file.to_string_lossy();
    let mut all = vec!["--env-file", &env_file, "-f"];
    let file = file.to_string_lossy();
    all.extend([file.as_ref(), "-p", PROJECT]);
    all.extend(args);
    let out = std::process::Command::new("docker-compose")
        .args(&all)
        .output()
        .context("running docker-compose (scripts/bootstrap.sh --docker installs it)")?;
    if !out.status.success() {
        bail!("docker-compose {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A stack that docker-compose brings up from the local file is the ctl's to drive: it finds the
/// containers by their Compose labels, health comes from their healthchecks, `scale` clones
/// Compose's router container, and the default drill passes on it.
#[tokio::test]
async fn docker_runtime_drives_a_docker_compose_stack() -> Result<()> {
    let _one = ENGINE.lock().await;
    let stack = DockerStack::new();
    docker(&["version", "--format", "{{.Server.Version}}"])
        .context("no Docker engine answers: run scripts/bootstrap.sh --docker")?;
    reset(&stack).await?;
    let env_file = stack.cfg.home.join("compose.env");
    let prepared = stack.json(&["up", "--compose-env", &env_file.to_string_lossy()]).await?;
    ensure!(prepared["command"].as_str().is_some_and(|c| c.contains("docker-compose")), "{prepared}");
    let t0 = std::time::Instant::now();
    compose(&env_file, &["up", "-d"])?;
    eprintln!("docker-compose up -d: {:.1} s", t0.elapsed().as_secs_f64());
    let result = compose_scenario(&stack).await;
    let down = compose(&env_file, &["down", "--timeout", "20"]);
    result?;
    down?;
    ensure!(router_containers()?.is_empty(), "containers left after docker-compose down: {:?}", router_containers()?);
    Ok(())
}

async fn compose_scenario(stack: &DockerStack) -> Result<()> {
    // Compose's names (v1: project_service_N), the ctl's instances, every one healthy.
    ensure!(router_containers()? == [format!("{PROJECT}_router-service_1")], "{:?}", router_containers()?);
    let healthy = wait_for("every compose container healthy", Duration::from_secs(120), || async {
        let list = stack.json(&["instances"]).await?;
        let all = list.as_array().cloned().unwrap_or_default();
        let ok = all.len() == 13 && all.iter().all(|i| i["health"] == "up" && i["container"].is_string());
        Ok((ok.then_some(()), list.to_string()))
    })
    .await;
    healthy?;
    let (status, _, _) = state_of(&format!("{PROJECT}_message-service_1"))?;
    ensure!(status == "running", "message-service: {status}");
    let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &format!("{PROJECT}_message-service_1")])?;
    ensure!(health == "healthy", "the container's own healthcheck: {health}");

    // Scale as Compose would, with a port per replica: the clones carry Compose's labels.
    let s = stack.json(&["scale", "router=3"]).await?;
    ensure!(s["started"] == serde_json::json!(["router-service-2", "router-service-3"]), "scale 3: {s}");
    ensure!(
        router_containers()? == [1, 2, 3].map(|n| format!("{PROJECT}_router-service_{n}")),
        "{:?}",
        router_containers()?
    );
    let clone = format!("{PROJECT}_router-service_3");
    let probe = docker(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", &clone])?;
    let port = 8090 + OFFSET.parse::<u16>()? + 3;
    ensure!(probe.contains(&format!(":{port}/health/live")), "the clone probes its own port: {probe}");
    let (owner, standby) = settled(stack, 3).await?;
    ensure!(standby.len() == 2 && !standby.contains(&owner), "owner {owner}, standby {standby:?}");
    dashboard_shows(stack, "router-service-3", &docker(&["inspect", "-f", "{{.Id}}", &clone])?[..12])?;

    // The default drill: the owner's container killed under traffic, nothing lost or repeated.
    let drill = stack.json(&["drill", "kill-active"]).await?;
    ensure!(drill["passed"] == true, "drill kill-active on the compose stack: {}", drill["criteria"]);
    let detail = drill["kills"][0]["kill"]["detail"].as_str().unwrap_or_default();
    ensure!(detail.contains("exit code 137"), "the drill's kill was a container kill: {detail}");
    Ok(())
}

/// The dashboard in a real terminal on the docker stack: the status bar names the runtime and
/// the engine, and `instance`'s row carries its container id.
fn dashboard_shows(stack: &DockerStack, instance: &str, container: &str) -> Result<()> {
    let tui = stack.cfg.ctl.with_file_name("chat4all-tui");
    let tmux = tmux::Tmux { socket: format!("chat4all-docker-tui-{}", std::process::id()), target: "dash".into() };
    let script = format!(
        "env CHAT4ALL_HOME='{home}' CHAT4ALL_RUNTIME=docker CHAT4ALL_COMPOSE_PROJECT={PROJECT} '{tui}' --interval 1s; sleep 60",
        home = stack.cfg.home.display(),
        tui = tui.display()
    );
    tmux.run(&["new-session", "-d", "-s", "dash", "-x", "180", "-y", "50", "sh", "-c", &script])?;
    let row = tmux::wait_screen(&tmux, "the clone's row with its container id", Duration::from_secs(30), |s| {
        s.lines().find(|l| l.contains(instance) && l.contains(container)).map(str::to_string)
    })?;
    let engine = tmux::wait_screen(&tmux, "the docker runtime in the status bar", Duration::from_secs(5), |s| {
        s.lines().find(|l| l.contains("docker") && l.contains("unix://")).map(str::to_string)
    })?;
    eprintln!("dashboard on docker: {}\n  {}", row.trim(), engine.trim());
    tmux.keys(&["q"])?;
    Ok(())
}

#[tokio::test]
async fn docker_runtime_without_an_engine_is_a_one_line_error() -> Result<()> {
    let stack = DockerStack::new();
    let socket = "unix:///nonexistent/docker.sock";
    let cfg = &stack.cfg;
    let r = ctl_run(cfg, &["instances", "--runtime", "docker"], &[("DOCKER_HOST", socket)]).await?;
    ensure!(r.code == 2, "exit {}: {r:?}", r.code);
    ensure!(r.stderr.trim().lines().count() == 1 && r.stderr.contains(socket), "{r:?}");
    Ok(())
}
