//! Fatigue signals for dashboards and apps: who is under attack, a user's prompt timeline, and
//! lifting a freeze.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{self, Availability, PushState};
use crate::api_keys::Scope;
use crate::api_keys::service::AuthenticatedApp;
use crate::app::AppState;
use crate::audit::{Action, Subject};
use crate::challenges::model::ChallengeState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::store::UserRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users_under_attack))
        .routes(routes!(timeline))
        .routes(routes!(unfreeze))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushStanding {
    /// `available`, `frozen` or `locked`.
    pub push: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub frozen_until: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub consecutive_failures: i32,
    /// Push returns only after a stronger factor or an admin.
    pub needs_strong_factor: bool,
    pub needs_admin_review: bool,
    /// Prompts in a row that ended without an answer (from 2 on, new prompts are silent).
    pub unanswered_in_a_row: i32,
    /// An attack incident is going on: prompts for this user were refused (budget, spray).
    pub under_attack: bool,
    /// Prompts refused in the current incident.
    pub refused_prompts: i32,
}

pub fn standing(state: &PushState, now: OffsetDateTime, policy: &model::Policy) -> PushStanding {
    let (push, frozen_until) = match model::availability(state, now) {
        Availability::Available => ("available", None),
        Availability::Frozen { until, .. } => ("frozen", until),
        Availability::HardLocked => ("locked", None),
    };
    PushStanding {
        push: push.into(),
        frozen_until,
        reason: state.reason.clone(),
        consecutive_failures: state.consecutive_failures,
        needs_strong_factor: state.needs_strong_factor,
        needs_admin_review: state.needs_admin_review,
        unanswered_in_a_row: state.unanswered,
        under_attack: model::is_under_attack(state, now, policy),
        refused_prompts: state.refused_prompts,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserUnderAttack {
    pub username: String,
    /// Higher is worse: failures, unanswered and refused prompts, plus weight for an attack
    /// incident, freezes, reports and locks.
    pub score: i64,
    pub standing: PushStanding,
}

/// Auth: app API key, scope `fatigue:read`. Users whose push standing is not clean, worst first.
#[utoipa::path(
    get,
    path = "/v1/fatigue/users",
    tag = "fatigue",
    security(("api_key" = ["fatigue:read"])),
    responses((status = 200, description = "Users under attack", body = [UserUnderAttack]))
)]
async fn users_under_attack(
    State(state): State<AppState>,
    app: AuthenticatedApp,
) -> Result<Json<Vec<UserUnderAttack>>, ApiError> {
    app.require(Scope::FatigueRead)?;
    let now = state.clock.now();
    let policy = &state.challenges.settings().policy;
    let users = state.store.troubled_users(200).await?;
    let mut list: Vec<UserUnderAttack> = users
        .into_iter()
        .map(|(user, push)| {
            let score = model::attack_score(&push, now, policy);
            UserUnderAttack { username: user.username, score, standing: standing(&push, now, policy) }
        })
        .collect();
    list.sort_by_key(|user| std::cmp::Reverse(user.score));
    Ok(Json(list))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// Absent for prompts refused before a challenge existed (`throttled`).
    pub challenge_id: Option<String>,
    pub state: String,
    pub app_name: String,
    pub ip: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Seconds from prompt to answer, when answered.
    pub seconds_to_decide: Option<f64>,
    pub silent: bool,
    /// Warning signs: `approved_after_failures:N`, `fast_approval` (< 2 s); for throttled
    /// prompts, why (`budget_exhausted`, `frozen`, `hard_locked`, `source_throttled`).
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub username: String,
    pub standing: PushStanding,
    /// Newest first.
    pub prompts: Vec<TimelineEntry>,
}

async fn user(state: &AppState, username: &str) -> Result<UserRecord, ApiError> {
    Ok(crate::users::service::find_user(state.store.as_ref(), username).await?)
}

/// Auth: app API key, scope `fatigue:read`. The user's recent prompts with warning flags.
#[utoipa::path(
    get,
    path = "/v1/users/{username}/timeline",
    tag = "fatigue",
    security(("api_key" = ["fatigue:read"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Timeline", body = Timeline),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn timeline(
    State(state): State<AppState>,
    app: AuthenticatedApp,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<Timeline>, ApiError> {
    app.require(Scope::FatigueRead)?;
    let user = user(&state, &username).await?;
    let challenges = state.store.recent_challenges(user.id, 100).await?;
    let push = state.store.push_state(user.id).await?;
    // Walk oldest → newest to count the failures that preceded each approval.
    let mut failures_before = 0;
    let mut prompts: Vec<TimelineEntry> = challenges
        .iter()
        .rev()
        .map(|c| {
            let seconds = c
                .decided_at
                .filter(|_| c.state != ChallengeState::Pending)
                .map(|d| (d - c.created_at).as_seconds_f64());
            let mut flags = Vec::new();
            match c.state {
                ChallengeState::Approved | ChallengeState::Redeemed => {
                    if failures_before > 0 {
                        flags.push(format!("approved_after_failures:{failures_before}"));
                    }
                    if seconds.is_some_and(|s| s < 2.0) {
                        flags.push("fast_approval".to_owned());
                    }
                    failures_before = 0;
                }
                ChallengeState::Denied
                | ChallengeState::DeniedWrongNumber
                | ChallengeState::Expired
                | ChallengeState::Reported => failures_before += 1,
                ChallengeState::Pending | ChallengeState::Cancelled => {}
            }
            TimelineEntry {
                challenge_id: Some(c.id.to_string()),
                state: c.state.as_str().into(),
                app_name: c.app_name.clone(),
                ip: c.ip.clone(),
                created_at: c.created_at,
                seconds_to_decide: seconds,
                silent: c.is_silent,
                flags,
            }
        })
        .collect();
    // Prompts the defence refused never became challenges; the audit trail has them. Chain the
    // latest first; if chaining is stalled (it logs why), show what is chained.
    if let Err(error) = crate::audit::flush(state.store.as_ref()).await {
        tracing::warn!(%error, "audit chaining failed before reading the timeline");
    }
    let refused = state.store.audit_events_about(&Subject::User(user.id), Action::PromptRefused, 100).await?;
    for event in refused {
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
        let Some(at) = crate::clock::from_unix_micros(event.occurred_at_micros) else { continue };
        prompts.push(TimelineEntry {
            challenge_id: None,
            state: "throttled".into(),
            app_name: details["app_name"].as_str().unwrap_or_default().to_owned(),
            ip: details["ip"].as_str().unwrap_or_default().to_owned(),
            created_at: at,
            seconds_to_decide: None,
            silent: false,
            flags: details["reason"].as_str().map(|r| vec![r.to_owned()]).unwrap_or_default(),
        });
    }
    prompts.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    prompts.truncate(100);
    Ok(Json(Timeline {
        username: user.username,
        standing: standing(&push, state.clock.now(), &state.challenges.settings().policy),
        prompts,
    }))
}

/// Auth: app API key, scope `fatigue:write`. Lifts the user's push freeze or lock (audited).
#[utoipa::path(
    post,
    path = "/v1/users/{username}/unfreeze",
    tag = "fatigue",
    security(("api_key" = ["fatigue:write"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Push available again", body = PushStanding),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn unfreeze(
    State(state): State<AppState>,
    app: AuthenticatedApp,
    ApiPath(username): ApiPath<String>,
) -> Result<(StatusCode, Json<PushStanding>), ApiError> {
    app.require(Scope::FatigueWrite)?;
    let user = user(&state, &username).await?;
    let after =
        super::service::unfreeze(state.store.as_ref(), state.clock.as_ref(), app.actor(), &user).await?;
    Ok((StatusCode::OK, Json(standing(&after, state.clock.now(), &state.challenges.settings().policy))))
}
