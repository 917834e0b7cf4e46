//! The operator action log: what was done to the stack, by whom, newest last, bounded.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::Utc;

use crate::runtime::Action;

const MAX_ACTIONS: usize = 500;

#[derive(Default)]
pub struct ActionLog(Mutex<VecDeque<Action>>);

impl ActionLog {
    /// Appends one action (and logs it), dropping the oldest past the bound.
    pub fn record(&self, action: &str, target: &str, detail: impl Into<String>) {
        let a = Action { at: Utc::now(), action: action.into(), target: target.into(), detail: detail.into() };
        tracing::info!(action = %a.action, target = %a.target, detail = %a.detail, "operator action");
        let mut actions = self.0.lock().expect("actions lock");
        actions.push_back(a);
        while actions.len() > MAX_ACTIONS {
            actions.pop_front();
        }
    }

    pub fn list(&self) -> Vec<Action> {
        self.0.lock().expect("actions lock").iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_the_bound() {
        let log = ActionLog::default();
        for i in 0..MAX_ACTIONS + 3 {
            log.record("kill", &format!("router-service-{i}"), "");
        }
        let all = log.list();
        assert_eq!(all.len(), MAX_ACTIONS);
        assert_eq!(all[0].target, "router-service-3");
        assert_eq!(all.last().map(|a| a.target.as_str()), Some(format!("router-service-{}", MAX_ACTIONS + 2).as_str()));
    }
}
