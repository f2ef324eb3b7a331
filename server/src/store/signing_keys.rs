//! The OpenID Connect provider's signing keys (`oidc_signing_keys`).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::audit::AuditEvent;
use crate::oidc::keys::SigningAlg;

/// One signing key as stored: its public JWK in the clear, its private key sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: SigningAlg,
    /// One more than the last key of `alg` when it was created (unique per algorithm).
    pub generation: i64,
    /// The public key as a JWK (JSON text), with its certificate (`x5c`). Written once more
    /// after creation only to give a key made before certificates its certificate.
    pub public_jwk: String,
    /// The PKCS#8 private key sealed under the master key (`MasterKey::encrypt`).
    pub sealed_pkcs8: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub activates_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Every column of `oidc_signing_keys`, as [`signing_key_from_row`] reads them.
const KEY_COLUMNS: &str =
    "kid, alg, generation, public_jwk, sealed_pkcs8, created_at, activates_at, revoked_at";

pub(super) const INSERT_KEY: &str = "INSERT INTO oidc_signing_keys
    (kid, alg, generation, public_jwk, sealed_pkcs8, created_at, activates_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(super) static REVOKE_KEY: Sql = Sql::new(|| {
    format!(
        "UPDATE oidc_signing_keys SET revoked_at = $2 WHERE kid = $1 AND revoked_at IS NULL
         RETURNING {KEY_COLUMNS}"
    )
});
pub(super) const REPLACE_JWK: &str =
    "UPDATE oidc_signing_keys SET public_jwk = $3 WHERE kid = $1 AND public_jwk = $2";
pub(super) static ALL_KEYS: Sql =
    Sql::new(|| format!("SELECT {KEY_COLUMNS} FROM oidc_signing_keys ORDER BY alg, generation"));

pub(super) fn signing_key_from_row<R: Columns>(row: &R) -> Result<SigningKeyRecord, StoreError> {
    let alg: String = row.value("alg")?;
    Ok(SigningKeyRecord {
        kid: row.value("kid")?,
        alg: alg.parse().map_err(|_| StoreError::Corrupt(format!("signing key alg `{alg}`")))?,
        generation: row.value("generation")?,
        public_jwk: row.value("public_jwk")?,
        sealed_pkcs8: row.value("sealed_pkcs8")?,
        created_at: row.time("created_at")?,
        activates_at: row.time("activates_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

/// A key that replaces a revoked one, added in the revoking transaction, with its event.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub key: SigningKeyRecord,
    pub audit: AuditEvent,
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync + std::fmt::Debug {
    /// Every signing key, revoked and retired ones too, by algorithm and generation.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Adds a key with its audit event; `Conflict(SigningKeyGeneration)` when another key of
    /// its algorithm already took its generation (someone else added the next key first).
    async fn add_signing_key(&self, key: &SigningKeyRecord, audit: AuditEvent) -> Result<(), StoreError>;

    /// Replaces the public JWK of `kid` with `public_jwk` if it is still `expected`
    /// (compare-and-set); `false` if it is not (another instance replaced it first) or there is
    /// no such key. Gives a key made before certificates its certificate, once.
    async fn replace_signing_key_jwk(
        &self,
        kid: &str,
        expected: &str,
        public_jwk: &str,
    ) -> Result<bool, StoreError>;

    /// Revokes an unrevoked key (`NotFound` if there is none with this kid) and, in the same
    /// transaction, adds its replacement: the service is never left without its signing key.
    async fn revoke_signing_key(
        &self,
        kid: &str,
        at: OffsetDateTime,
        audit: AuditEvent,
        replacement: Option<Replacement>,
    ) -> Result<SigningKeyRecord, StoreError>;
}
