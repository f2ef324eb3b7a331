//! OIDC clients and the single-use ids (`jti`) of their client assertions.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::audit::AuditEvent;
use crate::oidc::clients::{CibaDelivery, Client, ClientId, ClientKeys, validate_jwks};

/// Every column of `oidc_clients`, as [`client_from_row`] reads them.
const CLIENT_COLUMNS: &str = "client_id, name, redirect_uris, auth_method, secret_hash, jwks, jwks_uri, \
     id_token_alg, created_at, created_by, revoked_at, ciba_mode, ciba_notification_endpoint";

pub(super) static INSERT_CLIENT: Sql = Sql::new(|| {
    format!(
        "INSERT INTO oidc_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)"
    )
});
pub(super) static REVOKE_CLIENT: Sql = Sql::new(|| {
    format!(
        "UPDATE oidc_clients SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL
         RETURNING {CLIENT_COLUMNS}"
    )
});
pub(super) static CLIENT_BY_ID: Sql =
    Sql::new(|| format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE client_id = $1"));
pub(super) static ALL_CLIENTS: Sql =
    Sql::new(|| format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients ORDER BY created_at, client_id"));

/// Forgets assertion ids whose assertions have expired (they are refused by `exp` anyway).
pub(super) const PURGE_EXPIRED_JTIS: &str = "DELETE FROM oidc_client_assertion_jtis WHERE expires_at < $1";
pub(super) const REMEMBER_JTI: &str = "INSERT INTO oidc_client_assertion_jtis (client_id, jti, expires_at)
     VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING";

/// The text columns of a client, alike on both engines.
pub(super) struct ClientText {
    pub redirect_uris: String,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub ciba_mode: Option<&'static str>,
    pub ciba_notification_endpoint: Option<String>,
}

impl ClientText {
    pub(super) fn of(client: &Client) -> Result<Self, StoreError> {
        let redirect_uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|e| StoreError::Corrupt(format!("redirect URIs: {e}")))?;
        let (jwks, jwks_uri) = match &client.keys {
            ClientKeys::None => (None, None),
            ClientKeys::Inline(jwks) => (Some(jwks.json().to_owned()), None),
            ClientKeys::Uri(uri) => (None, Some(uri.clone())),
        };
        let ciba_notification_endpoint = match &client.ciba {
            Some(CibaDelivery::Ping { notification_endpoint }) => Some(notification_endpoint.clone()),
            _ => None,
        };
        let ciba_mode = client.ciba.as_ref().map(CibaDelivery::mode);
        Ok(Self { redirect_uris, jwks, jwks_uri, ciba_mode, ciba_notification_endpoint })
    }
}

pub(super) fn client_from_row<R: Columns>(row: &R) -> Result<Client, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("oidc client {what}: {e}"));
    let redirect_uris: String = row.value("redirect_uris")?;
    let auth_method: String = row.value("auth_method")?;
    let id_token_alg: String = row.value("id_token_alg")?;
    let jwks: Option<String> = row.value("jwks")?;
    let jwks_uri: Option<String> = row.value("jwks_uri")?;
    let keys = match (jwks, jwks_uri) {
        (Some(json), None) => ClientKeys::Inline(validate_jwks(&json).map_err(|e| corrupt("key set", &e))?),
        (None, Some(uri)) => ClientKeys::Uri(uri),
        (None, None) => ClientKeys::None,
        (Some(_), Some(_)) => return Err(corrupt("keys", &"both an inline key set and a jwks_uri")),
    };
    let ciba_mode: Option<String> = row.value("ciba_mode")?;
    let ciba = match (ciba_mode.as_deref(), row.value::<Option<String>>("ciba_notification_endpoint")?) {
        (None, None) => None,
        (Some("poll"), None) => Some(CibaDelivery::Poll),
        (Some("ping"), Some(notification_endpoint)) => Some(CibaDelivery::Ping { notification_endpoint }),
        (mode, _) => return Err(corrupt("CIBA registration", &format!("{mode:?}"))),
    };
    Ok(Client {
        ciba,
        client_id: ClientId(row.value("client_id")?),
        name: row.value("name")?,
        redirect_uris: serde_json::from_str(&redirect_uris).map_err(|e| corrupt("redirect URIs", &e))?,
        auth_method: auth_method.parse().map_err(|e| corrupt("auth method", &e))?,
        secret_hash: row.value("secret_hash")?,
        keys,
        id_token_alg: id_token_alg.parse().map_err(|e| corrupt("ID token algorithm", &e))?,
        created_at: row.time("created_at")?,
        created_by: row.value("created_by")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

#[async_trait]
pub trait ClientStore: Send + Sync + std::fmt::Debug {
    /// Registers a client together with its audit event.
    async fn create_oidc_client(&self, client: Client, audit: AuditEvent) -> Result<Client, StoreError>;

    /// Marks an active client revoked; `NotFound` if there is no such client or it is already
    /// revoked.
    async fn revoke_oidc_client(
        &self,
        client_id: &ClientId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<Client, StoreError>;

    async fn oidc_client(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError>;

    async fn list_oidc_clients(&self) -> Result<Vec<Client>, StoreError>;

    /// Records a client assertion's `jti` as used until `expires_at`; `false` if it was already
    /// used (a replay), in which case `replay_audit` is written. Ids that expired before `now`
    /// are forgotten first.
    async fn use_client_assertion_jti(
        &self,
        client_id: &ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
        replay_audit: AuditEvent,
    ) -> Result<bool, StoreError>;
}
