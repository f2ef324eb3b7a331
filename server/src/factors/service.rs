//! Reads what the factors model needs: the user, their devices, their push standing.

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
        let with_device = target.filter(|t| t.devices.iter().any(DeviceRecord::is_active));
        let push = match with_device {
            Some(target) => Some(self.store.push_state(target.user.id).await?),
            None => None,
        };
        // Passkeys cannot be registered yet: there are none to count.
        let enrolled = Enrolled { push: push.as_ref(), passkeys: 0 };
        let username = normalized.unwrap_or_else(|| username.to_owned());
        Ok(model::factors(username, enrolled, self.clock.now()))
    }
}
