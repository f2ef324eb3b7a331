//! Registering, listing and revoking OIDC clients (the operator's CLI now, the admin REST API
//! later). Every change is audited in the same transaction; a secret exists in plaintext only
//! in the value returned by [`create_client`].

use ring::rand::SystemRandom;
use secrecy::SecretString;
use serde_json::json;

use super::clients::{
    self, AuthMethod, CLIENT_ID_BYTES, CLIENT_SECRET_BYTES, CibaDelivery, Client, ClientId, ClientKeys,
    ClientRuleError, IdTokenAlg,
};
use crate::api_keys::{hash_key, random_urlsafe};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::store::{ClientStore, StoreError};

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    pub keys: ClientKeys,
    pub id_token_alg: IdTokenAlg,
    pub ciba: Option<CibaDelivery>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientAdminError {
    #[error(transparent)]
    Invalid(#[from] ClientRuleError),
    #[error("no active OIDC client `{0}`")]
    NotFound(ClientId),
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Store(StoreError),
}

/// A registered client and, for secret-based methods, its secret (shown once).
#[derive(Debug)]
pub struct CreatedClient {
    pub client: Client,
    pub secret: Option<SecretString>,
}

/// Validates and registers a client.
pub async fn create_client(
    store: &dyn ClientStore,
    clock: &dyn Clock,
    actor: Actor,
    new: NewClient,
) -> Result<CreatedClient, ClientAdminError> {
    clients::validate_name(&new.name)?;
    clients::validate_flows(&new.redirect_uris, new.auth_method, new.ciba.as_ref())?;
    clients::validate_keys(new.auth_method, &new.keys)?;
    let rng = SystemRandom::new();
    let client_id = ClientId(random_urlsafe(&rng, CLIENT_ID_BYTES).map_err(|_| ClientAdminError::Random)?);
    let secret = if new.auth_method.uses_secret() {
        Some(random_urlsafe(&rng, CLIENT_SECRET_BYTES).map_err(|_| ClientAdminError::Random)?)
    } else {
        None
    };
    let now = clock.now();
    let client = Client {
        client_id,
        name: new.name,
        redirect_uris: new.redirect_uris,
        auth_method: new.auth_method,
        secret_hash: secret.as_deref().map(|s| hash_key(s).to_vec()),
        keys: new.keys,
        id_token_alg: new.id_token_alg,
        ciba: new.ciba,
        created_at: now,
        created_by: actor.to_string(),
        revoked_at: None,
    };
    let keys = match &client.keys {
        ClientKeys::None => json!(null),
        ClientKeys::Inline(jwks) => {
            json!({ "inline_kids": jwks.keys().iter().map(|k| k.common.key_id.clone()).collect::<Vec<_>>() })
        }
        ClientKeys::Uri(uri) => json!({ "jwks_uri": uri }),
    };
    let event =
        AuditEvent::new(now, actor, Action::OidcClientCreated, Subject::OidcClient(client.client_id.clone()))
            .with_details(json!({
                "name": client.name,
                "redirect_uris": client.redirect_uris,
                "auth_method": client.auth_method.as_str(),
                "keys": keys,
                "id_token_alg": client.id_token_alg.as_str(),
                "ciba": client.ciba.as_ref().map(CibaDelivery::mode),
                "notification_endpoint": match &client.ciba {
                    Some(CibaDelivery::Ping { notification_endpoint }) => Some(notification_endpoint),
                    _ => None,
                },
            }));
    let client = store.create_oidc_client(client, event).await.map_err(ClientAdminError::Store)?;
    Ok(CreatedClient { client, secret: secret.map(SecretString::from) })
}

/// Revokes a client at once: it can no longer authenticate or start a flow.
pub async fn revoke_client(
    store: &dyn ClientStore,
    clock: &dyn Clock,
    actor: Actor,
    client_id: &ClientId,
) -> Result<Client, ClientAdminError> {
    let now = clock.now();
    let event =
        AuditEvent::new(now, actor, Action::OidcClientRevoked, Subject::OidcClient(client_id.clone()));
    store.revoke_oidc_client(client_id, now, event).await.map_err(|e| match e {
        StoreError::NotFound => ClientAdminError::NotFound(client_id.clone()),
        other => ClientAdminError::Store(other),
    })
}

/// Every client, revoked ones included (never a secret: only hashes are stored).
pub async fn list_clients(store: &dyn ClientStore) -> Result<Vec<Client>, ClientAdminError> {
    store.list_oidc_clients().await.map_err(ClientAdminError::Store)
}
