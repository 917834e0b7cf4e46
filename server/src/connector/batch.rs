//! The connector's decision after each delivery round, without Kafka or HTTP: which items are
//! delivered, which failed for good (dead-letter), and which go again, in their original order. A rejected item uses up one attempt; an item the connector held back (behind an earlier
//! failure of its conversation and recipient, in flight elsewhere, or the provider down) uses none.

use crate::connector::wire::DeliveryResult;

/// One item still to deliver.
#[derive(Debug)]
pub struct Pending<T> {
    pub item: T,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl<T> Pending<T> {
    pub fn new(item: T) -> Self {
        Self { item, attempts: 0, last_error: None }
    }
}

/// What one answer settled.
#[derive(Debug)]
pub struct Settled<T> {
    pub delivered: Vec<T>,
    /// Out of attempts, with the last error: dead-letter them.
    pub failed: Vec<(T, String)>,
    /// Rejected this time, still pending.
    pub rejected: usize,
    /// Held back this time, still pending.
    pub held: usize,
}

impl<T> Settled<T> {
    /// Whether anything left the pending list (the next call may go ahead without waiting).
    pub fn progressed(&self) -> bool {
        !self.delivered.is_empty() || !self.failed.is_empty()
    }
}

/// Applies `results` (one per pending item, in order) to `pending`, which keeps the items still
/// to deliver in their original order.
pub fn settle<T>(pending: &mut Vec<Pending<T>>, results: Vec<DeliveryResult>, max_attempts: u32) -> Settled<T> {
    let mut settled = Settled { delivered: Vec::new(), failed: Vec::new(), rejected: 0, held: 0 };
    let mut still = Vec::with_capacity(pending.len());
    for (mut p, r) in std::mem::take(pending).into_iter().zip(results) {
        if r.ok {
            settled.delivered.push(p.item);
            continue;
        }
        if r.held_back {
            settled.held += 1;
            if let Some(e) = r.error {
                p.last_error = Some(e);
            }
            still.push(p);
            continue;
        }
        p.attempts += 1;
        let error = r.error.unwrap_or_else(|| "provider rejected the message".into());
        if p.attempts >= max_attempts {
            settled.failed.push((p.item, error));
        } else {
            settled.rejected += 1;
            p.last_error = Some(error);
            still.push(p);
        }
    }
    *pending = still;
    settled
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct It(Uuid, &'static str);

    fn ok(i: &It) -> DeliveryResult {
        DeliveryResult {
            message_id: i.0,
            recipient_id: i.1.into(),
            ok: true,
            duplicate: false,
            error: None,
            held_back: false,
        }
    }
    fn rejected(i: &It) -> DeliveryResult {
        DeliveryResult { ok: false, error: Some("rejected".into()), ..ok(i) }
    }
    fn held(i: &It) -> DeliveryResult {
        DeliveryResult { ok: false, held_back: true, error: Some("held back".into()), ..ok(i) }
    }

    fn items(n: usize) -> Vec<It> {
        (0..n).map(|_| It(Uuid::new_v4(), "alice")).collect()
    }

    #[test]
    fn a_rejection_keeps_the_rest_pending_in_order_and_held_items_cost_nothing() {
        let its = items(4);
        let mut pending: Vec<_> = its.iter().cloned().map(Pending::new).collect();
        let s = settle(&mut pending, vec![ok(&its[0]), rejected(&its[1]), held(&its[2]), held(&its[3])], 3);
        assert_eq!(s.delivered, vec![its[0].clone()]);
        assert!(s.failed.is_empty());
        assert_eq!((s.rejected, s.held), (1, 2));
        assert!(s.progressed());
        let left: Vec<_> = pending.iter().map(|p| (p.item.clone(), p.attempts)).collect();
        assert_eq!(left, vec![(its[1].clone(), 1), (its[2].clone(), 0), (its[3].clone(), 0)]);
    }

    #[test]
    fn out_of_attempts_fails_for_good_and_releases_the_held_ones() {
        let its = items(2);
        let mut pending: Vec<_> = its.iter().cloned().map(Pending::new).collect();
        for round in 1..3 {
            let s = settle(&mut pending, vec![rejected(&its[0]), held(&its[1])], 3);
            assert!(s.failed.is_empty() && !s.progressed(), "round {round}");
        }
        assert_eq!(pending[1].attempts, 0, "held back items use up no attempts");
        let s = settle(&mut pending, vec![rejected(&its[0]), held(&its[1])], 3);
        assert_eq!(s.failed, vec![(its[0].clone(), "rejected".into())]);
        assert_eq!(pending.len(), 1);
        // The next round sends the held one, which now goes through.
        let s = settle(&mut pending, vec![ok(&its[1])], 3);
        assert_eq!(s.delivered, vec![its[1].clone()]);
        assert!(pending.is_empty());
    }

    #[test]
    fn held_back_forever_never_dead_letters() {
        let its = items(1);
        let mut pending: Vec<_> = its.iter().cloned().map(Pending::new).collect();
        for _ in 0..100 {
            let s = settle(&mut pending, vec![held(&its[0])], 2);
            assert!(s.failed.is_empty());
        }
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].last_error.as_deref(), Some("held back"));
    }
}
