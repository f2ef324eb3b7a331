//! The fatigue policy at run time: its safe bounds, its JSON form, and the shared handle every
//! service reads it through (so a four-eyes change applies without a restart).

use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use serde_json::json;
use time::OffsetDateTime;

use super::model::Policy;
use crate::audit::AuditEvent;
use crate::ids::AdminRequestId;
use crate::store::{FatiguePolicyStore, Store, StoreError};

/// A policy value outside its safe bounds: `key` names it as the config file does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBoundError {
    pub key: &'static str,
    pub problem: String,
}

impl std::fmt::Display for PolicyBoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.key, self.problem)
    }
}

fn bounded(key: &'static str, value: i64, min: i64, max: i64) -> Result<(), PolicyBoundError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PolicyBoundError { key, problem: format!("must be between {min} and {max} (got {value})") })
    }
}

impl Policy {
    /// Refuses values that would switch the defence off or lock users out for good.
    pub fn validate(&self) -> Result<(), PolicyBoundError> {
        const DAY: i64 = 86_400;
        bounded("fatigue.push_budget", i64::from(self.push_budget), 1, 10)?;
        bounded("fatigue.budget_window_secs", self.budget_window.whole_seconds(), 60, DAY)?;
        bounded("fatigue.failures_before_freeze", i64::from(self.failures_before_freeze), 1, 10)?;
        bounded("fatigue.freeze_secs", self.freeze.whole_seconds(), 60, DAY)?;
        let freeze = self.freeze.whole_seconds();
        bounded("fatigue.max_freeze_secs", self.max_freeze.whole_seconds(), freeze, 7 * DAY)?;
        bounded("fatigue.hard_lock_after", i64::from(self.hard_lock_after), 10, 100)?;
        bounded("fatigue.audible_per_day", i64::from(self.audible_per_day), 1, 20)?;
        // Not in the config file (defaults only) but settable by a policy change.
        bounded(
            "fatigue.wrong_number_window_secs",
            self.wrong_number_window.whole_seconds(),
            3_600,
            7 * DAY,
        )?;
        bounded("fatigue.spray_users", i64::from(self.spray_users), 2, 10_000)?;
        bounded("fatigue.spray_window_secs", self.spray_window.whole_seconds(), 10, 3_600)?;
        bounded("fatigue.silent_after_failures", i64::from(self.silent_after_failures), 1, 10)?;
        bounded("fatigue.silent_after_unanswered", i64::from(self.silent_after_unanswered), 1, 10)?;
        bounded("fatigue.incident_window_secs", self.incident_window.whole_seconds(), 3_600, 7 * DAY)?;
        Ok(())
    }
}

/// Durations travel as whole seconds in the policy's JSON.
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}

/// Where the policy in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PolicyOrigin {
    /// The config file (no change was ever approved).
    Config,
    /// An approved four-eyes request; `version` counts the changes.
    Request { request_id: AdminRequestId, version: i64 },
}

impl PolicyOrigin {
    fn version(self) -> i64 {
        match self {
            PolicyOrigin::Config => 0,
            PolicyOrigin::Request { version, .. } => version,
        }
    }
}

#[derive(Debug)]
struct InForce {
    policy: Arc<Policy>,
    origin: PolicyOrigin,
}

/// How often each instance re-reads the stored policy, so a change approved on another
/// instance applies here within this long.
pub const REFRESH_INTERVAL: StdDuration = StdDuration::from_secs(5);

/// The policy in force, shared by every service that reads it. Reading costs one read lock
/// and one `Arc` clone, so the prompt path can ask for it on every prompt.
#[derive(Debug, Clone)]
pub struct PolicyHandle(Arc<RwLock<InForce>>);

impl PolicyHandle {
    /// The config file's policy, until [`PolicyHandle::refresh`] finds a stored one.
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(InForce { policy: Arc::new(policy), origin: PolicyOrigin::Config })))
    }

    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&self.read().policy)
    }

    /// The policy in force and where it comes from.
    pub fn describe(&self) -> (Arc<Policy>, PolicyOrigin) {
        let in_force = self.read();
        (Arc::clone(&in_force.policy), in_force.origin)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, InForce> {
        // A poisoned lock still holds a whole policy (writers only swap whole values).
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `policy` in force unless a newer version already is (refreshes and local changes
    /// may race).
    fn set(&self, policy: Policy, origin: PolicyOrigin) {
        let mut in_force = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if origin.version() >= in_force.origin.version() {
            *in_force = InForce { policy: Arc::new(policy), origin };
        }
    }

    /// Re-reads the stored policy; the stored row, once there, wins over the config file. A
    /// row that does not parse or is out of bounds is an error (the caller keeps what it has).
    pub async fn refresh(&self, store: &dyn FatiguePolicyStore) -> Result<PolicyOrigin, StoreError> {
        let stored = store.fatigue_policy().await?;
        if let Some(stored) = stored.filter(|s| s.version > self.describe().1.version()) {
            let policy: Policy = serde_json::from_str(&stored.settings)
                .map_err(|e| StoreError::Corrupt(format!("stored fatigue policy: {e}")))?;
            policy.validate().map_err(|e| StoreError::Corrupt(format!("stored fatigue policy: {e}")))?;
            let origin =
                PolicyOrigin::Request { request_id: stored.changed_by_request, version: stored.version };
            self.set(policy, origin);
        }
        Ok(self.describe().1)
    }

    /// Stores `policy` as changed by `request` (with its audit event, old and new, and the
    /// `fatigue_policy_changed` alert) and puts it in force here at once.
    pub async fn change(
        &self,
        store: &dyn FatiguePolicyStore,
        policy: Policy,
        request: AdminRequestId,
        event: AuditEvent,
        now: OffsetDateTime,
    ) -> Result<PolicyOrigin, StoreError> {
        let old = self.current();
        let settings = serde_json::to_string(&policy)
            .map_err(|e| StoreError::Corrupt(format!("fatigue policy as JSON: {e}")))?;
        let event = event.with_details(json!({ "old": *old, "new": policy, "request_id": request }));
        let alert = json!({ "request_id": request, "old": *old, "new": policy }).to_string();
        let version = store.set_fatigue_policy(&settings, request, now, event, &alert).await?;
        let origin = PolicyOrigin::Request { request_id: request, version };
        self.set(policy, origin);
        Ok(origin)
    }

    /// Re-reads the stored policy every `interval`, so a change approved on another instance
    /// applies here too.
    pub fn spawn_refresh(&self, store: Arc<dyn Store>, interval: StdDuration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = handle.refresh(store.as_ref()).await {
                    tracing::warn!(%error, "fatigue policy not refreshed; the one in force stays");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_within_bounds_and_round_trips_as_json() {
        let policy = Policy::default();
        assert_eq!(policy.validate(), Ok(()));
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["budget_window_secs"], 900);
        assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), policy);
    }

    #[test]
    fn a_policy_out_of_bounds_names_the_bound() {
        let policy = Policy { push_budget: 0, ..Policy::default() };
        assert_eq!(policy.validate().unwrap_err().key, "fatigue.push_budget");
        let json = serde_json::json!({ "push_budget": 2, "surprise": 1 });
        assert!(serde_json::from_value::<Policy>(json).is_err());
    }

    #[test]
    fn a_set_policy_is_what_current_returns() {
        let handle = PolicyHandle::new(Policy::default());
        let request = AdminRequestId::random();
        handle.set(
            Policy { push_budget: 2, ..Policy::default() },
            PolicyOrigin::Request { request_id: request, version: 2 },
        );
        assert_eq!(handle.current().push_budget, 2);
        // An older version (a refresh racing a local change) does not win.
        handle.set(Policy::default(), PolicyOrigin::Request { request_id: request, version: 1 });
        assert_eq!(
            handle.describe(),
            (
                Arc::new(Policy { push_budget: 2, ..Policy::default() }),
                PolicyOrigin::Request { request_id: request, version: 2 }
            )
        );
    }
}
