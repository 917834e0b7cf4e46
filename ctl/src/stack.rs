//! Where a stack is: its Kafka, PostgreSQL, Redis, message-service, api-gateway and control
//! token. One order of precedence for every client (the CLI, the dashboard, the tests): the
//! environment variable first, then what the running supervisor wrote in `supervisor.json` (so a
//! stack started with `--port-offset` is found), then the local-stack default.

use crate::control::SupervisorFile;
use crate::paths::DataDir;

#[derive(Debug, Clone)]
pub struct Stack {
    /// `KAFKA_BOOTSTRAP`
    pub bootstrap: String,
    /// `REDIS_URL`
    pub redis_url: String,
    /// `DATABASE_URL`
    pub database_url: String,
    /// `CHAT4ALL_API_URL`: the message-service.
    pub api_url: String,
    /// `CHAT4ALL_GATEWAY_URL`: the api-gateway.
    pub gateway_url: String,
    /// `CHAT4ALL_ADMIN_TOKEN`, else the data directory's `control.token`: opens the services'
    /// admin endpoints.
    pub admin_token: Option<String>,
    /// The running supervisor's file, when one runs for this data directory.
    pub supervisor: Option<SupervisorFile>,
}

impl Stack {
    pub fn find(data: &DataDir) -> Self {
        // A docker stack (`up --runtime docker`) describes itself the same way, in its own file.
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str(&t).ok());
        let supervisor: Option<SupervisorFile> =
            read(data.supervisor_file()).or_else(|| read(data.docker_stack_file()));
        let token = std::fs::read_to_string(data.token_file()).ok().map(|t| t.trim().to_string());
        Self::with_supervisor(supervisor, token)
    }

    /// The stack a supervisor file (already read) describes, under the environment's overrides.
    pub fn with_supervisor(supervisor: Option<SupervisorFile>, token: Option<String>) -> Self {
        Self::resolve(|k| std::env::var(k).ok(), supervisor, token)
    }

    fn resolve(
        env: impl Fn(&str) -> Option<String>,
        supervisor: Option<SupervisorFile>,
        token: Option<String>,
    ) -> Self {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let sup = supervisor.as_ref();
        let pick =
            |var: &str, from: Option<String>, default: &str| env(var).or(from).unwrap_or_else(|| default.to_string());
        Self {
            bootstrap: pick("KAFKA_BOOTSTRAP", sup.map(|s| s.kafka_bootstrap.clone()), "127.0.0.1:9092"),
            redis_url: pick("REDIS_URL", sup.and_then(|s| s.redis_url.clone()), "redis://127.0.0.1:6379"),
            database_url: pick(
                "DATABASE_URL",
                sup.and_then(|s| s.database_url.clone()),
                "postgres://postgres@127.0.0.1:5432/chat4all",
            ),
            api_url: pick("CHAT4ALL_API_URL", sup.map(|s| s.api_url.clone()), "http://127.0.0.1:8081"),
            gateway_url: pick("CHAT4ALL_GATEWAY_URL", sup.and_then(|s| s.gateway_url.clone()), "http://127.0.0.1:8080"),
            admin_token: env(chat4all_contract::admin::ADMIN_TOKEN_ENV).or(token.filter(|t| !t.is_empty())),
            supervisor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup() -> SupervisorFile {
        serde_json::from_value(serde_json::json!({
            "pid": 1, "controlUrl": "http://127.0.0.1:7170", "startedAt": "2026-12-03T00:00:00Z",
            "kafkaBootstrap": "127.0.0.1:9192", "apiUrl": "http://127.0.0.1:8181",
            "databaseUrl": "postgres://x/y", "gatewayUrl": "http://127.0.0.1:8180"
        }))
        .unwrap()
    }

    #[test]
    fn environment_then_supervisor_then_defaults() {
        let none = Stack::resolve(|_| None, None, None);
        assert_eq!(none.bootstrap, "127.0.0.1:9092");
        assert_eq!(none.admin_token, None);
        let found = Stack::resolve(|_| None, Some(sup()), Some("tok".into()));
        assert_eq!(found.bootstrap, "127.0.0.1:9192");
        assert_eq!(found.api_url, "http://127.0.0.1:8181");
        assert_eq!(found.redis_url, "redis://127.0.0.1:6379", "the supervisor did not say: default");
        assert_eq!(found.admin_token.as_deref(), Some("tok"));
        let env = Stack::resolve(
            |k| match k {
                "KAFKA_BOOTSTRAP" => Some("b:1".into()),
                "DATABASE_URL" => Some(" ".into()),
                _ => None,
            },
            Some(sup()),
            None,
        );
        assert_eq!(env.bootstrap, "b:1", "the environment wins");
        assert_eq!(env.database_url, "postgres://x/y", "a blank variable is no setting");
    }
}
