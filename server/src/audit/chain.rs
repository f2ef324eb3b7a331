//! The hash chain: canonical encoding of an event, its hash, the keyed seal on the chain head,
//! and the verifier that walks stored events. Pure: no I/O, no clock.
//!
//! Each event's hash covers its sequence number, time, actor, action, subject, details and the
//! previous event's hash, so changing, removing, inserting or reordering rows breaks the chain at
//! the first affected sequence number. The head (last sequence number and hash) is sealed with an
//! HMAC key that the database does not hold, so cutting events off the end, or rewriting the
//! chain and recomputing the hashes, is caught too. The head is sealed from genesis on: an
//! unsealed head (an emptied trail reset to "nothing happened yet") is a break, never "empty".
//! Every event carries an id that is unique forever, so a captured event chained a second time
//! is caught. What a database-only attacker can still do is roll the whole database back to an
//! older sealed state; a [`Checkpoint`] kept outside the database catches that.

use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// Hash of the (virtual) event before the first one.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const EVENT_LABEL: &[u8] = b"countersign/audit-event/v1";
/// Events that carry their unique event id (every event chained since the id was introduced).
const EVENT_LABEL_V2: &[u8] = b"countersign/audit-event/v2";
const HEAD_LABEL: &[u8] = b"countersign/audit-head/v1";
const PENDING_LABEL: &[u8] = b"countersign/audit-pending/v1";

/// The hashed content of one event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContent<'a> {
    /// The event's unique id; `None` only for events chained before ids existed (hashed as v1).
    pub event_id: Option<&'a [u8]>,
    pub seq: i64,
    pub occurred_at_micros: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    /// Canonical JSON text, hashed exactly as stored.
    pub details: &'a str,
}

/// SHA-256 over the canonical encoding: label, then each field as u32-BE length + bytes
/// (integers as 8 bytes big-endian), then the previous hash. Length prefixes make the encoding
/// injective, so two different events never share a preimage. The event id is hashed too (v2),
/// so it cannot be changed to hide a copy.
pub fn event_hash(content: &EventContent<'_>, prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u32).to_be_bytes());
        ctx.update(bytes);
    };
    match content.event_id {
        Some(id) => {
            field(EVENT_LABEL_V2);
            field(id);
        }
        None => field(EVENT_LABEL),
    }
    field(&content.seq.to_be_bytes());
    field(&content.occurred_at_micros.to_be_bytes());
    field(content.actor.as_bytes());
    field(content.action.as_bytes());
    field(content.subject.as_bytes());
    field(content.details.as_bytes());
    field(prev_hash);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Seals and checks, with a key kept outside the database, the chain head and each event
/// waiting to be chained (so a pending event is tamper-evident from the moment it is written).
#[derive(Clone)]
pub struct AuditSealer {
    key: hmac::Key,
}

impl std::fmt::Debug for AuditSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSealer(..)")
    }
}

impl AuditSealer {
    /// At least 32 bytes of key material.
    pub fn new(key: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn seal(&self, seq: i64, hash: &[u8; 32]) -> Vec<u8> {
        hmac::sign(&self.key, &head_message(seq, hash)).as_ref().to_vec()
    }

    pub fn is_valid(&self, seq: i64, hash: &[u8; 32], mac: &[u8]) -> bool {
        hmac::verify(&self.key, &head_message(seq, hash), mac).is_ok()
    }

    /// The seal of an event not chained yet; `event_id` is unique per event, so a copied row is
    /// refused by the database and a forged or altered one by [`Self::is_pending_valid`].
    pub fn seal_pending(&self, event_id: &[u8; 16], content: &EventContent<'_>) -> Vec<u8> {
        hmac::sign(&self.key, &pending_message(event_id, content)).as_ref().to_vec()
    }

    pub fn is_pending_valid(&self, event_id: &[u8; 16], content: &EventContent<'_>, mac: &[u8]) -> bool {
        hmac::verify(&self.key, &pending_message(event_id, content), mac).is_ok()
    }
}

/// The pending seal's message: the event's canonical fields (its `seq` is not known yet and is
/// left out) with the same length-prefixed encoding as [`event_hash`].
fn pending_message(event_id: &[u8; 16], content: &EventContent<'_>) -> Vec<u8> {
    let mut m = Vec::with_capacity(128 + content.details.len());
    let mut field = |bytes: &[u8]| {
        m.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        m.extend_from_slice(bytes);
    };
    field(PENDING_LABEL);
    field(event_id);
    field(&content.occurred_at_micros.to_be_bytes());
    field(content.actor.as_bytes());
    field(content.action.as_bytes());
    field(content.subject.as_bytes());
    field(content.details.as_bytes());
    m
}

fn head_message(seq: i64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_LABEL.len() + 8 + 32);
    m.extend_from_slice(HEAD_LABEL);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// One stored event as the verifier sees it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// Unique forever; `None` only for events chained before ids existed.
    pub event_id: Option<Vec<u8>>,
    pub occurred_at_micros: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl StoredEvent {
    /// The hashed content of this event.
    pub fn content(&self) -> EventContent<'_> {
        EventContent {
            event_id: self.event_id.as_deref(),
            seq: self.seq,
            occurred_at_micros: self.occurred_at_micros,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            details: &self.details,
        }
    }
}

/// The stored head of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("event {seq} is missing (the next stored event is {found})")]
    Missing { seq: i64, found: i64 },
    #[error("event {seq} does not link to event {}: rows inserted, deleted or reordered", seq - 1)]
    LinkBroken { seq: i64 },
    #[error("event {seq} was modified: its content no longer matches its hash")]
    Modified { seq: i64 },
    #[error("the chain ends at event {last} but the sealed head says {head}: events from {} on were removed", last + 1)]
    Truncated { last: i64, head: i64 },
    #[error("event {seq} is beyond the sealed head: rows were appended outside the server")]
    BeyondHead { seq: i64 },
    #[error("the chain head seal is invalid: the head was rewritten (first event not covered: {seq})")]
    HeadSealInvalid { seq: i64 },
    #[error("event {seq} differs from the sealed head: the chain was rewritten")]
    HeadMismatch { seq: i64 },
    #[error("the audit head carries no seal: the trail was emptied and reset, or never set up by the server")]
    HeadUnsealed,
    #[error("event {seq} repeats event {first_seq} (same event id): a recorded event was chained twice")]
    DuplicateEvent { seq: i64, first_seq: i64 },
}

impl ChainBreak {
    /// The first sequence number that cannot be trusted.
    pub fn seq(&self) -> i64 {
        match *self {
            ChainBreak::Missing { seq, .. }
            | ChainBreak::LinkBroken { seq }
            | ChainBreak::Modified { seq }
            | ChainBreak::BeyondHead { seq }
            | ChainBreak::HeadSealInvalid { seq }
            | ChainBreak::HeadMismatch { seq }
            | ChainBreak::DuplicateEvent { seq, .. } => seq,
            ChainBreak::Truncated { last, .. } => last + 1,
            ChainBreak::HeadUnsealed => 1,
        }
    }
}

/// A sealed head exported outside the database (alert webhook, `countersign audit checkpoint`).
/// The chain must still contain it later: a database rolled back to an older sealed state is
/// shorter than, or diverges from, a checkpoint taken before the rollback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    /// Hex of the hash of event `seq` (the genesis hash for 0).
    pub hash: String,
    /// Hex of the head seal, so a checkpoint file can be checked for authenticity.
    pub mac: String,
    /// When the head was exported (Unix seconds).
    pub exported_at: i64,
}

/// Why a checkpoint does not hold against the stored chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointBreak {
    #[error("the checkpoint is not a head this server sealed (wrong key, or the file was altered)")]
    NotAuthentic,
    #[error(
        "the chain ends at event {last} but a checkpoint saw event {checkpoint}: the database was rolled back"
    )]
    Shorter { last: i64, checkpoint: i64 },
    #[error("event {seq} differs from the checkpoint: the database was rolled back and rewritten")]
    Diverged { seq: i64 },
}

impl Checkpoint {
    pub fn from_head(head: &StoredHead, exported_at: i64) -> Self {
        Self { seq: head.seq, hash: hex::encode(&head.hash), mac: hex::encode(&head.mac), exported_at }
    }

    /// The checkpoint's hash, if the file carries a head this key sealed.
    fn authentic_hash(&self, sealer: &AuditSealer) -> Result<[u8; 32], CheckpointBreak> {
        let hash: [u8; 32] = hex::decode(&self.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(CheckpointBreak::NotAuthentic)?;
        let mac = hex::decode(&self.mac).map_err(|_| CheckpointBreak::NotAuthentic)?;
        if self.seq < 0 || !sealer.is_valid(self.seq, &hash, &mac) {
            return Err(CheckpointBreak::NotAuthentic);
        }
        Ok(hash)
    }
}

/// Walks events in sequence order, one at a time, so a chain of millions never sits in memory.
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: [u8; 32],
    /// (seq, hash) the chain must pass through.
    checkpoint: Option<(i64, [u8; 32])>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { next_seq: 1, prev_hash: GENESIS_HASH, checkpoint: None }
    }
}

impl ChainVerifier {
    /// A verifier that also requires the chain to pass through `checkpoint`.
    pub fn with_checkpoint(checkpoint: &Checkpoint, sealer: &AuditSealer) -> Result<Self, CheckpointBreak> {
        let hash = checkpoint.authentic_hash(sealer)?;
        if checkpoint.seq == 0 && hash != GENESIS_HASH {
            return Err(CheckpointBreak::NotAuthentic);
        }
        Ok(Self { checkpoint: Some((checkpoint.seq, hash)), ..Self::default() })
    }

    /// After the walk: the chain reached the checkpoint (its event was compared on the way).
    pub fn check_checkpoint(&self) -> Result<(), CheckpointBreak> {
        match self.checkpoint {
            Some((seq, _)) if self.next_seq - 1 < seq => {
                Err(CheckpointBreak::Shorter { last: self.next_seq - 1, checkpoint: seq })
            }
            _ => Ok(()),
        }
    }

    /// Whether event `seq` with `hash` contradicts the checkpoint.
    pub fn diverges(&self, seq: i64, hash: &[u8]) -> Option<CheckpointBreak> {
        match self.checkpoint {
            Some((at, expected)) if at == seq && !bool::from(hash.ct_eq(&expected)) => {
                Some(CheckpointBreak::Diverged { seq })
            }
            _ => None,
        }
    }

    /// Checks the next stored event: contiguous sequence, link to the previous hash, own hash.
    pub fn check(&mut self, event: &StoredEvent) -> Result<(), ChainBreak> {
        let seq = self.next_seq;
        if event.seq != seq {
            return Err(if event.seq > seq {
                ChainBreak::Missing { seq, found: event.seq }
            } else {
                ChainBreak::LinkBroken { seq }
            });
        }
        if !bool::from(event.prev_hash.as_slice().ct_eq(&self.prev_hash)) {
            return Err(ChainBreak::LinkBroken { seq });
        }
        let computed = event_hash(&event.content(), &self.prev_hash);
        if !bool::from(event.hash.as_slice().ct_eq(&computed)) {
            return Err(ChainBreak::Modified { seq });
        }
        self.prev_hash = computed;
        self.next_seq += 1;
        Ok(())
    }

    /// After the last event up to the head: the walked chain must end exactly at the sealed head.
    /// (Rows beyond the head are the caller's check: it knows whether appends are concurrent.)
    pub fn finish(self, head: &StoredHead, sealer: &AuditSealer) -> Result<i64, ChainBreak> {
        let last = self.next_seq - 1;
        let head_hash: [u8; 32] = head.hash.as_slice().try_into().unwrap_or([0xff; 32]);
        // Sealed from genesis on: "no events and no seal" is what an emptied trail looks like.
        if head.mac.is_empty() {
            return Err(ChainBreak::HeadUnsealed);
        }
        if !sealer.is_valid(head.seq, &head_hash, &head.mac) {
            return Err(ChainBreak::HeadSealInvalid { seq: 1 });
        }
        if last < head.seq {
            return Err(ChainBreak::Truncated { last, head: head.seq });
        }
        if !bool::from(self.prev_hash.ct_eq(&head_hash)) {
            return Err(ChainBreak::HeadMismatch { seq: head.seq });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(n: i64, sealer: &AuditSealer) -> (Vec<StoredEvent>, StoredHead) {
        let mut prev = GENESIS_HASH;
        let mut events = Vec::new();
        for seq in 1..=n {
            let details = format!("{{\"n\":{seq}}}");
            let id = [seq as u8; 16];
            let content = EventContent {
                event_id: Some(&id),
                seq,
                occurred_at_micros: 1_000 * seq,
                actor: "cli",
                action: "app.created",
                subject: "app:x",
                details: &details,
            };
            let hash = event_hash(&content, &prev);
            events.push(StoredEvent {
                seq,
                event_id: Some(id.to_vec()),
                occurred_at_micros: 1_000 * seq,
                actor: "cli".into(),
                action: "app.created".into(),
                subject: "app:x".into(),
                details,
                prev_hash: prev.to_vec(),
                hash: hash.to_vec(),
            });
            prev = hash;
        }
        (events, StoredHead { seq: n, hash: prev.to_vec(), mac: sealer.seal(n, &prev) })
    }

    /// Recomputes every link and hash from `events[from]` on, as an attacker without the key
    /// would; returns the last hash.
    fn rehash_from(events: &mut [StoredEvent], from: usize) -> [u8; 32] {
        let mut prev: [u8; 32] = events[from - 1].hash.as_slice().try_into().unwrap();
        for e in events.iter_mut().skip(from) {
            e.prev_hash = prev.to_vec();
            prev = event_hash(&e.content(), &prev);
            e.hash = prev.to_vec();
        }
        prev
    }

    fn verify(events: &[StoredEvent], head: &StoredHead, sealer: &AuditSealer) -> Result<i64, ChainBreak> {
        let mut v = ChainVerifier::default();
        for e in events {
            v.check(e)?;
        }
        v.finish(head, sealer)
    }

    fn sealer() -> AuditSealer {
        AuditSealer::new(&[7u8; 32])
    }

    #[test]
    fn intact_chain_verifies() {
        let s = sealer();
        let (events, head) = chain(10, &s);
        assert_eq!(verify(&events, &head, &s), Ok(10));
        let (events, head) = chain(0, &s);
        assert_eq!(verify(&events, &head, &s), Ok(0));
    }

    #[test]
    fn each_tampering_names_the_first_broken_seq() {
        let s = sealer();
        let (events, head) = chain(10, &s);

        let mut modified = events.clone();
        modified[3].details = "{\"n\":999}".into();
        assert_eq!(verify(&modified, &head, &s), Err(ChainBreak::Modified { seq: 4 }));

        let mut deleted = events.clone();
        deleted.remove(4);
        assert_eq!(verify(&deleted, &head, &s), Err(ChainBreak::Missing { seq: 5, found: 6 }));

        let mut reordered = events.clone();
        reordered.swap(5, 6);
        reordered[5].seq = 6;
        reordered[6].seq = 7;
        assert_eq!(verify(&reordered, &head, &s).unwrap_err().seq(), 6);

        let mut truncated = events.clone();
        truncated.truncate(7);
        assert_eq!(verify(&truncated, &head, &s), Err(ChainBreak::Truncated { last: 7, head: 10 }));

        let wrong_key = AuditSealer::new(&[8u8; 32]);
        assert_eq!(verify(&events, &head, &wrong_key), Err(ChainBreak::HeadSealInvalid { seq: 1 }));
    }

    /// Attack: delete every event and reset the head to "nothing happened yet". An unsealed
    /// head is a break, never an empty trail.
    #[test]
    fn an_unsealed_genesis_head_is_a_break() {
        let s = sealer();
        let (events, head) = chain(0, &s);
        assert!(events.is_empty());
        assert_eq!(verify(&[], &head, &s), Ok(0), "the sealed genesis of a new trail verifies");
        let reset = StoredHead { seq: 0, hash: GENESIS_HASH.to_vec(), mac: Vec::new() };
        assert_eq!(verify(&[], &reset, &s), Err(ChainBreak::HeadUnsealed));
    }

    /// The event id is hashed: it cannot be changed (or dropped) to hide a copied event.
    #[test]
    fn changing_an_event_id_breaks_the_chain() {
        let s = sealer();
        let (mut events, head) = chain(3, &s);
        events[1].event_id = Some(vec![9; 16]);
        assert_eq!(verify(&events, &head, &s), Err(ChainBreak::Modified { seq: 2 }));
        events[1].event_id = None;
        assert_eq!(verify(&events, &head, &s), Err(ChainBreak::Modified { seq: 2 }));
    }

    /// A rollback to an older sealed state verifies on its own; a checkpoint taken before the
    /// rollback catches it, whether the chain is shorter or was continued differently.
    #[test]
    fn checkpoints_catch_a_rolled_back_chain() {
        let s = sealer();
        let (events, head) = chain(6, &s);
        let checkpoint = Checkpoint::from_head(&head, 1);
        let walk = |events: &[StoredEvent], head: &StoredHead| -> Result<(), String> {
            let mut v = ChainVerifier::with_checkpoint(&checkpoint, &s).map_err(|e| e.to_string())?;
            for e in events {
                v.check(e).map_err(|e| e.to_string())?;
                if let Some(b) = v.diverges(e.seq, &e.hash) {
                    return Err(b.to_string());
                }
            }
            v.check_checkpoint().map_err(|e| e.to_string())?;
            v.finish(head, &s).map(drop).map_err(|e| e.to_string())
        };
        assert_eq!(walk(&events, &head), Ok(()));
        let (older, older_head) = chain(4, &s);
        assert_eq!(verify(&older, &older_head, &s), Ok(4), "the rolled-back chain is intact by itself");
        assert!(walk(&older, &older_head).unwrap_err().contains("rolled back"));
        // Rolled back, then continued with other events past the checkpoint's length.
        let mut other = chain(8, &s).0;
        other[5].details = "{\"other\":1}".into();
        let prev = rehash_from(&mut other, 5);
        let other_head = StoredHead { seq: 8, hash: prev.to_vec(), mac: s.seal(8, &prev) };
        assert_eq!(walk(&other, &other_head), Err(CheckpointBreak::Diverged { seq: 6 }.to_string()));
        let forged = Checkpoint { seq: 7, ..checkpoint.clone() };
        assert!(ChainVerifier::with_checkpoint(&forged, &s).is_err(), "a checkpoint must carry a valid seal");
    }

    #[test]
    fn rewritten_chain_with_recomputed_hashes_is_caught_by_the_seal() {
        let s = sealer();
        let (mut events, head) = chain(5, &s);
        // An attacker with database access rewrites event 2 and recomputes every hash after it.
        events[1].details = "{\"forged\":true}".into();
        rehash_from(&mut events, 1);
        assert_eq!(verify(&events, &head, &s), Err(ChainBreak::HeadMismatch { seq: 5 }));
    }

    #[test]
    fn pending_seal_binds_id_and_content() {
        let s = sealer();
        let content = EventContent {
            event_id: None,
            seq: 0,
            occurred_at_micros: 5,
            actor: "cli",
            action: "app.created",
            subject: "app:x",
            details: "{}",
        };
        let mac = s.seal_pending(&[1; 16], &content);
        assert!(s.is_pending_valid(&[1; 16], &content, &mac));
        assert!(!s.is_pending_valid(&[2; 16], &content, &mac), "another event id");
        let altered = EventContent { details: "{\"forged\":1}", ..content.clone() };
        assert!(!s.is_pending_valid(&[1; 16], &altered, &mac), "altered details");
        assert!(!AuditSealer::new(&[8u8; 32]).is_pending_valid(&[1; 16], &content, &mac), "another key");
    }

    proptest! {
        /// Any change to any hashed field changes the hash (length prefixes keep fields apart).
        #[test]
        fn hash_binds_every_field(a in ".{0,12}", b in ".{0,12}", split in 0usize..12) {
            let joined = format!("{a}{b}");
            let cut = joined.char_indices().nth(split).map_or(joined.len(), |(i, _)| i);
            let (left, right) = joined.split_at(cut);
            let base = EventContent { event_id: None, seq: 1, occurred_at_micros: 0, actor: &a, action: &b, subject: "", details: "" };
            let moved = EventContent { event_id: None, seq: 1, occurred_at_micros: 0, actor: left, action: right, subject: "", details: "" };
            prop_assert_eq!(a == left, event_hash(&base, &GENESIS_HASH) == event_hash(&moved, &GENESIS_HASH));
        }
    }
}
