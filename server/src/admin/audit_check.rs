//! "Verify now" on the audit page: walks the whole hash chain (as `countersign audit verify`
//! does) in the background, one walk at a time per instance, since it reads every event and an
//! auditor pressing the button repeatedly must not turn it into a load lever. The outcome is
//! kept for the page and audited (`audit.verified`).

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::sessions::AdminPrincipal;
use crate::audit::chain::AuditSealer;
use crate::audit::{Action, AuditEvent, Subject, VerifyError};
use crate::clock::Clock;
use crate::store::Store;

/// Where a verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Running,
    /// Every event links to the one before and the head's seal holds.
    Intact,
    /// The chain is broken, or a pending event was forged or replayed.
    Broken,
    /// The walk could not finish (the database failed); nothing is known.
    Failed,
}

/// The latest verification on this instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    /// Counts up per instance.
    pub number: u64,
    pub state: CheckState,
    /// Who asked for it.
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Events checked, when intact.
    pub events: Option<i64>,
    /// The first broken sequence number, when broken in the chain.
    pub broken_at: Option<i64>,
    /// What was found, in words.
    pub message: Option<String>,
}

#[derive(Debug)]
pub struct AuditCheck {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: Arc<AuditSealer>,
    latest: Arc<Mutex<Option<Verification>>>,
}

impl AuditCheck {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, sealer: AuditSealer) -> Self {
        Self { store, clock, sealer: Arc::new(sealer), latest: Arc::new(Mutex::new(None)) }
    }

    /// The latest verification, if one ran on this instance.
    pub fn latest(&self) -> Option<Verification> {
        self.latest.lock().ok().and_then(|latest| latest.clone())
    }

    /// Starts a verification unless one is running (then that one is answered): the walk goes
    /// on in the background; follow it with [`Self::latest`].
    pub fn start(&self, principal: &AdminPrincipal) -> Verification {
        let Ok(mut latest) = self.latest.lock() else {
            return self.failed_now(principal, "the verification state is unavailable");
        };
        if let Some(running) = latest.as_ref().filter(|v| v.state == CheckState::Running) {
            return running.clone();
        }
        let started = Verification {
            number: latest.as_ref().map_or(1, |v| v.number + 1),
            state: CheckState::Running,
            requested_by: principal.actor().to_string(),
            started_at: self.clock.now(),
            finished_at: None,
            events: None,
            broken_at: None,
            message: None,
        };
        *latest = Some(started.clone());
        drop(latest);
        let (store, clock, sealer, slot) = (
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            Arc::clone(&self.sealer),
            Arc::clone(&self.latest),
        );
        let (actor, admin, number) = (principal.actor(), principal.id, started.number);
        tokio::spawn(async move {
            let outcome = crate::audit::verify(store.as_ref(), &sealer).await;
            let mut done = started;
            done.finished_at = Some(clock.now());
            match outcome {
                Ok(events) => {
                    done.state = CheckState::Intact;
                    done.events = Some(events);
                }
                Err(VerifyError::Store(error)) => {
                    tracing::error!(%error, "audit verification could not read the trail");
                    done.state = CheckState::Failed;
                    done.message = Some("the audit trail could not be read".into());
                }
                Err(broken) => {
                    done.state = CheckState::Broken;
                    if let VerifyError::Broken(chain) = &broken {
                        done.broken_at = Some(chain.seq());
                    }
                    done.message = Some(broken.to_string());
                }
            }
            let details = json!({
                "number": number,
                "outcome": done.state,
                "events": done.events,
                "broken_at": done.broken_at,
                "message": done.message,
            });
            let event = AuditEvent::new(clock.now(), actor, Action::AuditVerified, Subject::Admin(admin))
                .with_details(details);
            if let Err(error) = store.record_audit(event).await {
                tracing::error!(%error, "could not audit an audit verification");
            }
            if let Ok(mut latest) = slot.lock() {
                *latest = Some(done);
            }
        });
        self.latest().unwrap_or_else(|| self.failed_now(principal, "the verification state is unavailable"))
    }

    fn failed_now(&self, principal: &AdminPrincipal, message: &str) -> Verification {
        Verification {
            number: 0,
            state: CheckState::Failed,
            requested_by: principal.actor().to_string(),
            started_at: self.clock.now(),
            finished_at: Some(self.clock.now()),
            events: None,
            broken_at: None,
            message: Some(message.to_owned()),
        }
    }
}
