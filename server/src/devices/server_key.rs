//! The server's P-256 device-signing key: it signs challenge details so a phone can tell the
//! server's words from anyone else's. Created once (the first instance wins) and stored sealed
//! under the master key; every instance loads the same key.

use countersign_mobile_protocol::{PublicKey, generate_pkcs8, key_pair_from_pkcs8};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

use crate::clock::Clock;
use crate::secrets::MasterKey;
use crate::store::{DeviceStore, ServerKeyRecord, StoreError};

const SEAL_CONTEXT: &[u8] = b"countersign/v1/server-signing-key";

#[derive(Debug, thiserror::Error)]
pub enum ServerKeyError {
    #[error("cannot read or store the server signing key")]
    Store(#[from] StoreError),
    #[error(
        "the stored server signing key cannot be decrypted: this master key is not the one the database was set up with"
    )]
    WrongMasterKey,
    #[error("the stored server signing key is invalid: {0}")]
    Invalid(String),
}

pub struct ServerSigningKey {
    key_pair: EcdsaKeyPair,
    public_key: PublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServerSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSigningKey").field("public_key", &self.public_key.to_base64url()).finish()
    }
}

impl ServerSigningKey {
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub fn key_pair(&self) -> &EcdsaKeyPair {
        &self.key_pair
    }

    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    /// Loads the stored key, creating it on first start.
    pub async fn load_or_create(
        store: &dyn DeviceStore,
        master: &MasterKey,
        clock: &dyn Clock,
    ) -> Result<Self, ServerKeyError> {
        let rng = SystemRandom::new();
        let record = match store.server_key().await? {
            Some(record) => record,
            None => {
                let pkcs8 = generate_pkcs8(&rng).map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
                let key_pair =
                    key_pair_from_pkcs8(&pkcs8, &rng).map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
                let public_key = PublicKey::from_key_pair(&key_pair)
                    .map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
                let sealed = master
                    .encrypt(SEAL_CONTEXT, &pkcs8)
                    .map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
                let candidate = ServerKeyRecord {
                    public_key: public_key.as_bytes().to_vec(),
                    sealed_pkcs8: sealed,
                    created_at: clock.now(),
                };
                store.insert_server_key(candidate).await?
            }
        };
        let pkcs8 =
            master.decrypt(SEAL_CONTEXT, &record.sealed_pkcs8).map_err(|_| ServerKeyError::WrongMasterKey)?;
        let key_pair =
            key_pair_from_pkcs8(&pkcs8, &rng).map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
        let public_key =
            PublicKey::from_key_pair(&key_pair).map_err(|e| ServerKeyError::Invalid(e.to_string()))?;
        if public_key.as_bytes().as_slice() != record.public_key.as_slice() {
            return Err(ServerKeyError::Invalid("public key does not match the private key".into()));
        }
        Ok(Self { key_pair, public_key, rng })
    }
}
