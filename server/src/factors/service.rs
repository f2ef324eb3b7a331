//! Reads what the factors model needs: the user, their devices, their push standing.

use super::model::{self, Factors};
use crate::clock::Clock;
use crate::store::{DeviceRecord, Store, StoreError};

/// The factors `username` may use now. Unknown and device-less users take the same path (one
/// read) and get the same answer, as challenge creation does.
pub async fn for_user(store: &dyn Store, clock: &dyn Clock, username: &str) -> Result<Factors, StoreError> {
    let normalized = crate::users::model::normalize_username(username).ok();
    let target = match &normalized {
        Some(name) => store.prompt_target(name, 0).await?,
        None => None,
    };
    let with_device = target.filter(|t| t.devices.iter().any(DeviceRecord::is_active));
    let enrollment_required = with_device.is_none();
    let push = match with_device {
        None => model::push_without_device(),
        Some(target) => model::push(&store.push_state(target.user.id).await?, clock.now()),
    };
    Ok(Factors {
        username: normalized.unwrap_or_else(|| username.to_owned()),
        factors: vec![push, model::passkey()],
        enrollment_required,
    })
}
