//! Reads what the factors model needs: the user, their devices, their push standing, their
//! passkeys.

use std::sync::Arc;

use super::model::{self, Enrolled, Factors};
use crate::clock::Clock;
use crate::store::{DeviceRecord, Store, StoreError};

#[derive(Debug)]
pub struct FactorService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl FactorService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The factors `username` may use now. Unknown and device-less users take the same path (one
    /// read) and get the same answer, as challenge creation does.
    pub async fn for_user(&self, username: &str) -> Result<Factors, StoreError> {
        let normalized = crate::users::model::normalize_username(username).ok();
        let target = match &normalized {
            Some(name) => self.store.prompt_target(name, 0).await?,
            None => None,
        };
        let passkeys = match &target {
            Some(target) => self.store.passkeys_for_user(target.user.id).await?,
            None => Vec::new(),
        };
        let passkeys = u32::try_from(passkeys.iter().filter(|p| p.is_active()).count()).unwrap_or(u32::MAX);
        let passkey_required =
            target.as_ref().is_some_and(|t| crate::users::model::passkey_required(&t.user));
        let with_device = target.filter(|t| t.devices.iter().any(DeviceRecord::is_active));
        let push = match with_device {
            Some(target) => Some(self.store.push_state(target.user.id).await?),
            None => None,
        };
        let enrolled = Enrolled { push: push.as_ref(), passkeys, passkey_required };
        let username = normalized.unwrap_or_else(|| username.to_owned());
        Ok(model::factors(username, enrolled, self.clock.now()))
    }
}
