//! The single-statement hot paths: a challenge transition, a device answer and a new prompt, each with its audit event, notification and ladder move in one round trip.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Subject;
use crate::challenges::model::ChallengeState;
use crate::fatigue::model::{LadderMove, PushState};
use crate::ids::UserId;
use crate::store::StoreError;
use crate::store::audit::PendingRow;
use crate::store::challenges::CHALLENGE_COLUMNS;
use crate::store::challenges::may_become;
use crate::store::codec::micros_to_time;

/// A device answer as one statement. `standing` locks the user's standing and checks it is the
/// version the ladder move was computed from; `dv` locks the device and checks it is active and
/// the counter increases; only then `c` moves the challenge by compare-and-set, and the counter,
/// audit event, notification, ladder move and alert follow from `c`'s row. Locks are taken
/// standing first, like every path that changes a user's prompts. The database clock decides
/// whether the challenge is still open (`now()`), whatever this instance's clock says.
pub(super) fn decide_statement(to: ChallengeState, step: Option<&LadderMove>) -> String {
    transition_statement(
        "standing AS (SELECT 1 FROM user_push_state WHERE user_id = $5 AND version = $6 FOR UPDATE),
         dv AS (SELECT 1 FROM devices WHERE id = $1 AND revoked_at IS NULL AND last_counter < $2 FOR UPDATE),",
        &format!(
            "UPDATE challenges SET state = $3, decided_at = now(), decided_by_device = $1
             WHERE id = $4 AND user_id = $5 AND {} AND expires_at > now()
               AND EXISTS (SELECT 1 FROM standing) AND EXISTS (SELECT 1 FROM dv)",
            may_become(to)
        ),
        7,
        step,
        ", d AS (UPDATE devices SET last_counter = $2 WHERE id = $1 AND last_counter < $2 AND EXISTS (SELECT 1 FROM c))",
        "SELECT EXISTS (SELECT 1 FROM standing) AS fresh, EXISTS (SELECT 1 FROM dv) AS device_ok,
                (SELECT COUNT(*) FROM n) AS notified, c.*
         FROM (SELECT 1) AS one LEFT JOIN c ON TRUE",
    )
}

/// A new prompt as one statement: `standing` locks the user's standing and checks its version
/// (see `create_challenge`), `bump` moves the version on and counts each prompt `old` really
/// cancelled as unanswered (the ladder's `PushEvent::Unanswered`), `old` cancels the prompts it supersedes
/// and `olda` writes their audit events for the rows actually cancelled; then the challenge, its
/// push jobs and its own audit event. Parameters: the 21 challenge columns, the version, the
/// superseded ids, the push devices, then the audit events (see [`EventArrays`]). The TTL runs
/// on the database clock: `expires_at` is the database's `now()` plus the TTL.
pub(super) fn create_statement() -> String {
    let may_cancel = may_become(ChallengeState::Cancelled);
    format!(
        "WITH standing AS (SELECT 1 FROM user_push_state WHERE user_id = $3 AND version = $22 FOR UPDATE),
              old AS (UPDATE challenges SET state = 'cancelled', decided_at = $13
                      WHERE id = ANY($23::uuid[]) AND {may_cancel} AND EXISTS (SELECT 1 FROM standing)
                      RETURNING id),
              bump AS (UPDATE user_push_state SET version = version + 1,
                              unanswered = unanswered + (SELECT COUNT(*) FROM old)
                       WHERE user_id = $3 AND EXISTS (SELECT 1 FROM standing)),
              events AS (SELECT * FROM UNNEST($25::uuid[], $26::bytea[], $27::timestamptz[], $28::text[], $29::text[],
                                              $30::text[], $31::text[], $32::bytea[])
                         AS e(challenge_id, event_id, occurred_at, actor, action, subject, details, mac)),
              olda AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
                       SELECT e.event_id, e.occurred_at, e.actor, e.action, e.subject, e.details, e.mac
                       FROM events e JOIN old ON old.id = e.challenge_id),
              n AS (SELECT pg_notify('countersign_challenges', id::text) FROM old),
              ch AS (INSERT INTO challenges ({CHALLENGE_COLUMNS})
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                            now() + ($14::timestamptz - $13::timestamptz), $15, $16, $17, $18, $19, $20, $21
                     WHERE EXISTS (SELECT 1 FROM standing)
                     RETURNING expires_at),
              jobs AS (INSERT INTO push_outbox (challenge_id, device_id, state, next_attempt_at, updated_at)
                       SELECT $1, device, 'queued', $13, $13 FROM UNNEST($24::uuid[]) AS device
                       WHERE EXISTS (SELECT 1 FROM standing)),
              a AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
                    SELECT e.event_id, e.occurred_at, e.actor, e.action, e.subject, e.details, e.mac
                    FROM events e WHERE e.challenge_id = $1 AND EXISTS (SELECT 1 FROM standing))
         SELECT EXISTS (SELECT 1 FROM standing) AS fresh, (SELECT COUNT(*) FROM n) AS notified,
                (SELECT expires_at FROM ch) AS expires_at"
    )
}

/// Audit events to write in one statement, as the parallel arrays it unnests: each keyed by the
/// challenge it is about (`create_statement` writes a superseded prompt's only if it was
/// cancelled).
#[derive(Default)]
pub(super) struct EventArrays {
    challenge_ids: Vec<Uuid>,
    event_ids: Vec<Vec<u8>>,
    times: Vec<OffsetDateTime>,
    actors: Vec<String>,
    actions: Vec<String>,
    subjects: Vec<String>,
    details: Vec<String>,
    macs: Vec<Vec<u8>>,
}

impl EventArrays {
    pub(super) fn push(&mut self, challenge: Uuid, p: &PendingRow) -> Result<(), StoreError> {
        self.challenge_ids.push(challenge);
        self.event_ids.push(p.event_id.to_vec());
        self.times.push(micros_to_time(p.row.occurred_at_micros, "occurred_at")?);
        self.actors.push(p.row.actor.clone());
        self.actions.push(p.row.action.clone());
        self.subjects.push(p.row.subject.clone());
        self.details.push(p.row.details.clone());
        self.macs.push(p.mac.clone());
        Ok(())
    }

    pub(super) fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        query
            .bind(self.challenge_ids)
            .bind(self.event_ids)
            .bind(self.times)
            .bind(self.actors)
            .bind(self.actions)
            .bind(self.subjects)
            .bind(self.details)
            .bind(self.macs)
    }
}

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// One statement for a challenge transition. `c` is the conditional UPDATE (`update`, without
/// RETURNING); the audit event (`a`), the notification for other instances (`n`) and, for a
/// ladder move, the user's new standing (`p`) and its alert (`al`) are written from `c`'s row,
/// so they happen with the transition or not at all. `prelude` adds CTEs before `c`, `extra`
/// (starting with a comma) after; `result` is the final SELECT (it must read `n`, e.g.
/// `(SELECT COUNT(*) FROM n)`, for the notification to be sent). Parameters after the update's
/// own start at `$first` and are bound by [`bind_audit`] then [`bind_ladder`].
pub(super) fn transition_statement(
    prelude: &str,
    update: &str,
    first: usize,
    step: Option<&LadderMove>,
    extra: &str,
    result: &str,
) -> String {
    let params = |from: usize, count: usize| {
        (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    };
    let mut sql = format!(
        "WITH {prelude} c AS ({update} RETURNING {CHALLENGE_COLUMNS}),
         a AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
               SELECT {} FROM c),
         n AS (SELECT pg_notify('countersign_challenges', id::text) FROM c)",
        params(first, 7)
    );
    if let Some(step) = step {
        sql.push_str(&format!(
            ", p AS (UPDATE user_push_state SET version = version + 1, (consecutive_failures, freezes, frozen_until,
                     needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, updated_at,
                     unanswered, refused_prompts, under_attack_since, last_refused_at) = ({})
                     WHERE user_id = (SELECT user_id FROM c))",
            params(first + 7, 13)
        ));
        if step.alert.is_some() {
            sql.push_str(&format!(
                ", al AS (INSERT INTO alerts (kind, subject, details, created_at) SELECT {} FROM c)",
                params(first + 20, 4)
            ));
        }
    }
    sql.push_str(extra);
    sql.push(' ');
    sql.push_str(result);
    sql
}

pub(super) fn bind_audit<'q>(query: PgQuery<'q>, p: &PendingRow) -> Result<PgQuery<'q>, StoreError> {
    Ok(query
        .bind(p.event_id.to_vec())
        .bind(micros_to_time(p.row.occurred_at_micros, "occurred_at")?)
        .bind(p.row.actor.clone())
        .bind(p.row.action.clone())
        .bind(p.row.subject.clone())
        .bind(p.row.details.clone())
        .bind(p.mac.clone()))
}

/// Binds a ladder move's parameters for [`transition_statement`]: the new standing, and the
/// alert when the move escalates.
pub(super) fn bind_ladder<'q>(
    query: PgQuery<'q>,
    user: UserId,
    step: Option<&LadderMove>,
    now: OffsetDateTime,
) -> PgQuery<'q> {
    let Some(step) = step else { return query };
    let query = bind_standing(query, &step.next, now);
    match step.alert {
        Some(kind) => query
            .bind(kind.as_str())
            .bind(Subject::User(user).to_string())
            .bind(step.alert_details(user))
            .bind(now),
        None => query,
    }
}

/// Binds a standing's columns and `updated_at` (`now`), in the order of the `p` CTE of
/// [`transition_statement`] and of `APPLY_STANDING`.
pub(super) fn bind_standing<'q>(query: PgQuery<'q>, state: &PushState, now: OffsetDateTime) -> PgQuery<'q> {
    query
        .bind(state.consecutive_failures)
        .bind(state.freezes)
        .bind(state.frozen_until)
        .bind(state.needs_strong_factor)
        .bind(state.needs_admin_review)
        .bind(state.hard_locked)
        .bind(state.last_wrong_number_at)
        .bind(state.reason.clone())
        .bind(now)
        .bind(state.unanswered)
        .bind(state.refused_prompts)
        .bind(state.under_attack_since)
        .bind(state.last_refused_at)
}

/// Counts an escalation once its transition is committed.
pub(super) fn count_escalation(step: Option<&LadderMove>) {
    if let Some(kind) = step.and_then(|s| s.alert) {
        metrics::counter!("countersign_push_escalations_total", "kind" => kind.as_str()).increment(1);
    }
}
