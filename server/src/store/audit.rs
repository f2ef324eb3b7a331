//! The audit trail: events waiting to be chained, the chain and its sealed head.

use async_trait::async_trait;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::audit::chain::{AuditSealer, StoredEvent, StoredHead};
use crate::audit::{AuditEvent, Subject};

/// The first chained event (seq <= $1) repeating an earlier event's id, with that earlier seq.
/// Portable: the same text on both engines.
pub(super) const DUPLICATE_EVENT_SQL: &str =
    "SELECT e.seq AS seq, MIN(f.seq) AS first_seq FROM audit_events e
     JOIN audit_events f ON f.event_id = e.event_id AND f.seq < e.seq
     WHERE e.seq <= $1 AND e.event_id IS NOT NULL
     GROUP BY e.seq ORDER BY e.seq LIMIT 1";

/// An audit event as the changing transaction writes it: sealed, not chained yet.
pub(super) struct PendingRow {
    pub(super) event_id: [u8; 16],
    pub(super) row: crate::audit::EventRow,
    pub(super) mac: Vec<u8>,
}

pub(super) fn pending_row(sealer: &AuditSealer, event: &AuditEvent) -> PendingRow {
    let event_id = *uuid::Uuid::new_v4().as_bytes();
    let row = event.to_row();
    let mac = sealer.seal_pending(&event_id, &row.content(0));
    PendingRow { event_id, row, mac }
}

/// A pending audit event read back by the chainer.
pub(super) struct PendingEvent {
    pub(super) id: i64,
    pub(super) event_id: Vec<u8>,
    pub(super) row: crate::audit::EventRow,
    pub(super) mac: Vec<u8>,
}

/// Pending events linked onto the chain head: the rows to append and the new sealed head.
pub(super) struct LinkedBatch {
    pub(super) events: Vec<StoredEvent>,
    pub(super) head: StoredHead,
}

/// Links pending events, oldest first, onto the head the chaining transaction holds locked.
/// Every pending seal is checked first: a forged or altered event stops the chain (fail closed)
/// instead of being sealed into it, and so does a copy of an event already chained (`chained`:
/// the pending ids found on the chain, with their seq) or of one earlier in the batch. Shared by
/// both engines so the chain is computed one way only.
pub(super) fn link_pending(
    sealer: &AuditSealer,
    head_seq: i64,
    head_hash: &[u8],
    pending: &[PendingEvent],
    chained: &[(Vec<u8>, i64)],
) -> Result<LinkedBatch, StoreError> {
    let mut prev_hash = hash32(head_hash, "audit head hash")?;
    let mut seq = head_seq;
    let mut events = Vec::with_capacity(pending.len());
    let mut seen: std::collections::HashMap<&[u8], i64> =
        chained.iter().map(|(id, seq)| (id.as_slice(), *seq)).collect();
    for p in pending {
        let valid = <[u8; 16]>::try_from(p.event_id.as_slice())
            .is_ok_and(|id| sealer.is_pending_valid(&id, &p.row.content(0), &p.mac));
        if !valid {
            return Err(StoreError::PendingAuditInvalid(p.id));
        }
        seq += 1;
        if let Some(first) = seen.insert(&p.event_id, seq) {
            return Err(StoreError::PendingAuditReplayed { pending: p.id, seq: first });
        }
        let content = crate::audit::chain::EventContent { event_id: Some(&p.event_id), ..p.row.content(seq) };
        let hash = crate::audit::chain::event_hash(&content, &prev_hash);
        events.push(StoredEvent {
            seq,
            event_id: Some(p.event_id.clone()),
            occurred_at_micros: p.row.occurred_at_micros,
            actor: p.row.actor.clone(),
            action: p.row.action.clone(),
            subject: p.row.subject.clone(),
            details: p.row.details.clone(),
            prev_hash: prev_hash.to_vec(),
            hash: hash.to_vec(),
        });
        prev_hash = hash;
    }
    let head = StoredHead { seq, hash: prev_hash.to_vec(), mac: sealer.seal(seq, &prev_hash) };
    Ok(LinkedBatch { events, head })
}

pub(super) fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("{what} is {} bytes, expected 32", bytes.len())))
}

/// Every column of `audit_events`, as [`stored_event_from_row`] reads them.
pub(super) const EVENT_COLUMNS: &str =
    "seq, event_id, occurred_at, actor, action, subject, details, prev_hash, hash";

pub(super) fn stored_event_from_row<R: Columns>(row: &R) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.value("seq")?,
        event_id: row.value("event_id")?,
        occurred_at_micros: row.micros("occurred_at")?,
        actor: row.value("actor")?,
        action: row.value("action")?,
        subject: row.value("subject")?,
        details: row.value("details")?,
        prev_hash: row.value("prev_hash")?,
        hash: row.value("hash")?,
    })
}

pub(super) fn pending_event_from_row<R: Columns>(row: &R) -> Result<PendingEvent, StoreError> {
    Ok(PendingEvent {
        id: row.value("id")?,
        event_id: row.value("event_id")?,
        row: crate::audit::EventRow {
            occurred_at_micros: row.micros("occurred_at")?,
            actor: row.value("actor")?,
            action: row.value("action")?,
            subject: row.value("subject")?,
            details: row.value("details")?,
        },
        mac: row.value("mac")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) const OLDEST_PENDING_EVENTS: &str =
    "SELECT id, event_id, occurred_at, actor, action, subject, details, mac FROM audit_pending
     ORDER BY id LIMIT $1";

pub(super) const MOVE_AUDIT_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2, mac = $3 WHERE id = 1";

pub(super) const COUNT_PENDING_EVENTS: &str = "SELECT COUNT(*) FROM audit_pending";

pub(super) const AUDIT_HEAD: &str = "SELECT seq, hash, mac FROM audit_head WHERE id = 1";

pub(super) static AUDIT_EVENTS_IN_RANGE: Sql = Sql::new(|| {
    format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3")
});

pub(super) static AUDIT_EVENTS_ABOUT: Sql = Sql::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE subject = $1 AND action = $2 ORDER BY seq DESC LIMIT $3"
    )
});

/// Writes a sealed event for the chainer (`append_audit` on both engines).
pub(super) const INSERT_PENDING_EVENT: &str =
    "INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Appends an audit event that records no state change (a refused attempt).
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError>;

    /// Signalled after every commit that may have left audit events waiting to be chained.
    fn audit_pending_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;

    /// Moves up to `limit` pending audit events, oldest first, onto the chain under the head
    /// lock; returns how many. `PendingAuditInvalid` if one fails its seal (nothing is chained).
    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError>;

    /// How many audit events wait to be chained.
    async fn audit_pending_count(&self) -> Result<i64, StoreError>;

    /// The sealed head of the audit chain.
    async fn audit_head(&self) -> Result<StoredHead, StoreError>;

    /// Audit events with `after < seq <= up_to`, in sequence order, at most `limit`.
    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest audit events about `subject` with `action`, newest first.
    async fn audit_events_about(
        &self,
        subject: &Subject,
        action: crate::audit::Action,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The highest stored sequence number (0 when empty).
    async fn audit_max_seq(&self) -> Result<i64, StoreError>;

    /// The first chained event (up to `up_to`) whose id an earlier event already has, as
    /// (its seq, the earlier seq).
    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError>;
}
