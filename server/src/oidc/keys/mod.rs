//! The provider's signing keys: what signs ID tokens and access tokens, and the JWKS that lets
//! relying parties check them.
//!
//! Keys live in the database (`oidc_signing_keys`), private halves sealed under the master key,
//! so every instance signs with the same keys. [`SigningKeys`] is the one way in:
//! [`SigningKeys::sign`] makes a compact JWS with the key its algorithm signs with now,
//! [`SigningKeys::jwks`] lists the published public keys, [`SigningKeys::verifying_key`] finds a
//! published key by kid (to check a token this service issued), and the operator's
//! [`SigningKeys::rotate`], [`SigningKeys::revoke`] and [`SigningKeys::list`] back
//! `countersign keys`. The timeline rules (pending → active → retiring → retired, or revoked)
//! are in [`model`]; key material in [`crypto`]; each key's self-signed certificate (the JWKS
//! `x5c`, which Microsoft Entra ID requires) in [`certificate`].
//!
//! - First start: with no ES256 key signing, [`SigningKeys::load`] creates one active at once
//!   (no relying party can have cached a JWKS yet). An RS256 key is created the same way when
//!   the first client wanting RS256 ID tokens is registered (before that client can fetch the
//!   JWKS), or else the first time an RS256 token is asked for (RSA keys are slow to make and
//!   most deployments never need one); `countersign keys rotate --alg RS256` makes one ahead of
//!   time.
//! - Several instances: each new key of an algorithm takes the next `generation`, unique per
//!   algorithm, so two instances creating the first key at once add exactly one (the loser reads
//!   the winner's). Each instance re-reads the key table when its view is older than
//!   [`KeyTimings::refresh`] or on a kid it does not know, so the CLI's rotations and
//!   revocations reach running servers without a restart.
//! - Certificates: a key gets its certificate when it is made. A key made before certificates
//!   gets one the first time an instance opens it (from its private key), stored by
//!   compare-and-set on its public JWK so every instance serves the same one; an instance that
//!   loses that race reads the winner's. No migration, and no audit event: the key and what
//!   verifies with it are unchanged.
//! - Every creation and revocation is audited (`signing_key.created` with its `activates_at`,
//!   `signing_key.revoked`); activation happens by time, as its creation event scheduled it.

pub mod certificate;
pub mod crypto;
pub mod model;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::secrets::MasterKey;
use crate::store::{Conflict, Replacement, SigningKeyRecord, SigningKeyStore, StoreError};
use crypto::{CryptoError, OpenedKey};
pub use model::{Jwk, JwkSet, KeyState, KeyTimings, RevocationRefused, RotationRefused, SigningAlg};

/// Where the JWKS is served (discovery's `jwks_uri` is the public URL plus this).
pub const JWKS_PATH: &str = "/oidc/jwks";

/// How often a creation that lost the generation race is retried (re-reading what won).
const CREATE_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key could not be made, opened (wrong master key, tampered row) or used.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("cannot read or store the signing keys")]
    Store(#[from] StoreError),
    #[error(transparent)]
    RotationRefused(#[from] RotationRefused),
    #[error(transparent)]
    RevocationRefused(#[from] RevocationRefused),
    /// Another instance or operator changed the keys at the same moment; try again.
    #[error("another signing-key change happened at the same moment; try again")]
    Contended,
}

/// A published key found by kid: what a token it signed is checked with.
#[derive(Clone)]
pub struct VerifyingKey {
    pub alg: SigningAlg,
    pub key: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A key as `countersign keys list` shows it: dates and state, never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListing {
    pub kid: String,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub created_at: OffsetDateTime,
    pub activates_at: OffsetDateTime,
    /// When it stops (stopped) signing: its successor's activation.
    pub signs_until: Option<OffsetDateTime>,
    /// When it leaves (left) the JWKS.
    pub published_until: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The outcome of a revocation: the revoked key and, if it was signing, the key that now does.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub key: SigningKeyRecord,
    pub replacement: Option<SigningKeyRecord>,
}

/// What this instance last read of the key table, with the published keys opened.
#[derive(Debug)]
struct View {
    read_at: OffsetDateTime,
    records: Vec<SigningKeyRecord>,
    opened: HashMap<String, Arc<OpenedKey>>,
}

/// The signing-key service (see the module doc). Cheap to share behind an `Arc`.
pub struct SigningKeys {
    store: Arc<dyn SigningKeyStore>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    timings: KeyTimings,
    view: RwLock<Option<Arc<View>>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("timings", &self.timings).finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// The service without touching the database (the CLI's view).
    pub fn new(
        store: Arc<dyn SigningKeyStore>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        timings: KeyTimings,
    ) -> Self {
        Self { store, clock, master, timings, view: RwLock::new(None) }
    }

    /// What the server starts with: an ES256 key signing (created, audited as `system`, if
    /// there is none) and every published key opened — so a wrong master key stops the start.
    pub async fn load(
        store: Arc<dyn SigningKeyStore>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        timings: KeyTimings,
    ) -> Result<Self, KeyError> {
        let keys = Self::new(store, clock, master, timings);
        keys.ensure_signing_key(SigningAlg::Es256, Actor::System).await?;
        keys.view(true).await?;
        Ok(keys)
    }

    pub fn timings(&self) -> &KeyTimings {
        &self.timings
    }

    /// A compact JWS of `claims` signed by the key `alg` signs with now; its header carries
    /// `alg`, `kid` and `typ` (e.g. `JWT` for an ID token, `at+jwt` for an access token). The
    /// claims are the caller's: this adds none.
    pub async fn sign(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        let key = match self.active(alg, false).await? {
            Some(key) => key,
            None => {
                self.ensure_signing_key(alg, Actor::System).await?;
                self.active(alg, true).await?.ok_or(KeyError::Contended)?
            }
        };
        Ok(key.sign(typ, claims)?)
    }

    /// The published public keys (pending, active and retiring ones), by algorithm and age.
    pub async fn jwks(&self) -> Result<JwkSet, KeyError> {
        let view = self.view(false).await?;
        let keys = self.published(&view).map(|key| key.jwk.clone()).collect();
        Ok(JwkSet { keys })
    }

    /// The published key `kid`, to check a token this service signed; `None` for a kid that
    /// is unknown, revoked or retired. Re-reads the key table once on a miss (another instance
    /// may have just created the key).
    pub async fn verifying_key(&self, kid: &str) -> Result<Option<VerifyingKey>, KeyError> {
        for refresh in [false, true] {
            let view = self.view(refresh).await?;
            if let Some(key) = self.published(&view).find(|key| key.kid == kid) {
                return Ok(Some(VerifyingKey { alg: key.alg, key: key.decoding_key()? }));
            }
        }
        Ok(None)
    }

    /// Every key, with its state now (no key material is read or opened).
    pub async fn list(&self) -> Result<Vec<KeyListing>, KeyError> {
        let records = self.store.signing_keys().await?;
        let now = self.clock.now();
        Ok(records
            .iter()
            .map(|key| KeyListing {
                kid: key.kid.clone(),
                alg: key.alg,
                state: model::state(&records, key, now, &self.timings),
                created_at: key.created_at,
                activates_at: key.activates_at,
                signs_until: model::superseded_at(&records, key),
                published_until: model::published_until(&records, key, &self.timings),
                revoked_at: key.revoked_at,
            })
            .collect())
    }

    /// Publishes the next key of `alg`: in the JWKS at once, signing after the publish overlap
    /// (at once if no key of `alg` signs yet). The key it supersedes stays published until its
    /// tokens have expired.
    pub async fn rotate(&self, alg: SigningAlg, actor: Actor) -> Result<SigningKeyRecord, KeyError> {
        let records = self.store.signing_keys().await?;
        let now = self.clock.now();
        let activates_at = model::rotation_activates_at(&records, alg, now, &self.timings)?;
        let key = self.new_key(alg, model::next_generation(&records, alg), activates_at).await?;
        let audit = created_event(&key, actor, "rotation", None);
        let added = self.store.add_signing_key(&key, audit).await;
        self.forget_view();
        match added {
            Err(StoreError::Conflict(Conflict::SigningKeyGeneration)) => Err(KeyError::Contended),
            other => Ok(other.map(|()| key)?),
        }
    }

    /// Emergency revocation: `kid` leaves the JWKS at once and never signs again. If it was the
    /// key its algorithm signs with, a fresh key replaces it in the same transaction, active at
    /// once — an emergency beats cache overlap (relying parties refetch the JWKS on an unknown
    /// kid), and the service is never left without a signing key.
    pub async fn revoke(&self, kid: &str, actor: Actor) -> Result<Revoked, KeyError> {
        let records = self.store.signing_keys().await?;
        let now = self.clock.now();
        let (key, is_active) = model::revocation(&records, kid, now)?;
        let alg = key.alg;
        let replacement = if is_active {
            let fresh = self.new_key(alg, model::next_generation(&records, alg), now).await?;
            let audit = created_event(&fresh, actor.clone(), "replaces_revoked", Some(kid));
            Some(Replacement { key: fresh, audit })
        } else {
            None
        };
        let audit =
            AuditEvent::new(now, actor, Action::SigningKeyRevoked, Subject::SigningKey(kid.to_owned()))
                .with_details(json!({ "alg": alg.as_str(), "was_signing": is_active }));
        let fresh = replacement.as_ref().map(|r| r.key.clone());
        let revoked = self.store.revoke_signing_key(kid, now, audit, replacement).await;
        self.forget_view();
        match revoked {
            Ok(key) => Ok(Revoked { key, replacement: fresh }),
            Err(StoreError::NotFound) => Err(RevocationRefused::AlreadyRevoked(kid.to_owned()).into()),
            Err(StoreError::Conflict(Conflict::SigningKeyGeneration)) => Err(KeyError::Contended),
            Err(other) => Err(other.into()),
        }
    }

    /// Makes sure `alg` has a key signing now: if none does, creates one active at once (audited
    /// as `actor`). Two instances doing this at once add one key: the loser reads the winner's.
    /// Registering a client that wants `alg` calls it too, so the key is in the JWKS before the
    /// client first fetches it (a key made with the first token comes after the client cached a
    /// JWKS without it).
    pub async fn ensure_signing_key(&self, alg: SigningAlg, actor: Actor) -> Result<(), KeyError> {
        for _ in 0..CREATE_ATTEMPTS {
            let records = self.store.signing_keys().await?;
            let now = self.clock.now();
            if model::active_key(&records, alg, now).is_some() {
                return Ok(());
            }
            let key = self.new_key(alg, model::next_generation(&records, alg), now).await?;
            let audit = created_event(&key, actor.clone(), "no_signing_key", None);
            let added = self.store.add_signing_key(&key, audit).await;
            self.forget_view();
            match added {
                Ok(()) => {
                    tracing::info!(kid = %key.kid, %alg, "created a signing key");
                    return Ok(());
                }
                Err(StoreError::Conflict(Conflict::SigningKeyGeneration)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(KeyError::Contended)
    }

    /// A new key of `alg` (not stored). RSA generation takes a while: off the async threads.
    async fn new_key(
        &self,
        alg: SigningAlg,
        generation: i64,
        activates_at: OffsetDateTime,
    ) -> Result<SigningKeyRecord, KeyError> {
        let kid = crypto::new_kid()?;
        let master = Arc::clone(&self.master);
        let for_task = kid.clone();
        let created_at = self.clock.now();
        let (sealed_pkcs8, jwk) =
            tokio::task::spawn_blocking(move || crypto::generate(alg, &for_task, &master, created_at))
                .await
                .map_err(|_| CryptoError::Generate)??;
        let public_jwk = serde_json::to_string(&jwk).map_err(CryptoError::Claims)?;
        Ok(SigningKeyRecord {
            kid,
            alg,
            generation,
            public_jwk,
            sealed_pkcs8,
            created_at,
            activates_at,
            revoked_at: None,
        })
    }

    /// The opened key `alg` signs with now, per this instance's view (`None` if there is none).
    async fn active(&self, alg: SigningAlg, refresh: bool) -> Result<Option<Arc<OpenedKey>>, KeyError> {
        let view = self.view(refresh).await?;
        let now = self.clock.now();
        Ok(model::active_key(&view.records, alg, now).and_then(|key| view.opened.get(&key.kid).cloned()))
    }

    /// The opened keys published now.
    fn published<'v>(&self, view: &'v View) -> impl Iterator<Item = &'v Arc<OpenedKey>> {
        let now = self.clock.now();
        let timings = self.timings;
        view.records
            .iter()
            .filter(move |key| model::state(&view.records, key, now, &timings).is_published())
            .filter_map(|key| view.opened.get(&key.kid))
    }

    /// This instance's view of the key table: the cached one while younger than
    /// `timings.refresh` (unless `refresh`), else read anew, opening keys not opened before.
    /// A published key that does not open fails the read: nothing signs with a key in doubt.
    async fn view(&self, refresh: bool) -> Result<Arc<View>, KeyError> {
        let now = self.clock.now();
        let cached = self.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(view) = &cached
            && !refresh
            && view.read_at <= now
            && now - view.read_at < self.timings.refresh
        {
            return Ok(Arc::clone(view));
        }
        for _ in 0..CREATE_ATTEMPTS {
            let records = self.store.signing_keys().await?;
            let Some(opened) = self.open_published(&records, cached.as_deref(), now).await? else {
                continue;
            };
            let view = Arc::new(View { read_at: now, records, opened });
            *self.view.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&view));
            return Ok(view);
        }
        Err(KeyError::Contended)
    }

    /// The keys of `records` published at `now`, opened (reusing those `cached` opened). A key
    /// stored without a certificate has one stored now; `None` if another instance stored one
    /// first (read the table again and serve theirs).
    async fn open_published(
        &self,
        records: &[SigningKeyRecord],
        cached: Option<&View>,
        now: OffsetDateTime,
    ) -> Result<Option<HashMap<String, Arc<OpenedKey>>>, KeyError> {
        let mut opened = HashMap::new();
        for key in records {
            if !model::state(records, key, now, &self.timings).is_published() {
                continue;
            }
            if let Some(known) = cached.and_then(|view| view.opened.get(&key.kid)) {
                opened.insert(key.kid.clone(), Arc::clone(known));
                continue;
            }
            let (key_pair, to_store) = OpenedKey::open(
                key.alg,
                &key.kid,
                &key.sealed_pkcs8,
                &key.public_jwk,
                key.created_at,
                &self.master,
            )?;
            if let Some(public_jwk) = to_store {
                if !self.store.replace_signing_key_jwk(&key.kid, &key.public_jwk, &public_jwk).await? {
                    return Ok(None);
                }
                tracing::info!(kid = %key.kid, "stored a certificate for a signing key made before certificates");
            }
            opened.insert(key.kid.clone(), Arc::new(key_pair));
        }
        Ok(Some(opened))
    }

    /// Drops the cached view after a change made here, so this instance sees it at once.
    fn forget_view(&self) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The audit event of a key's creation, naming when it starts signing and why it was made.
fn created_event(key: &SigningKeyRecord, actor: Actor, reason: &str, replaces: Option<&str>) -> AuditEvent {
    let mut details = json!({
        "alg": key.alg.as_str(),
        "activates_at": key.activates_at.format(&Rfc3339).unwrap_or_default(),
        "reason": reason,
    });
    if let (Some(replaces), Some(map)) = (replaces, details.as_object_mut()) {
        map.insert("replaces".into(), json!(replaces));
    }
    AuditEvent::new(key.created_at, actor, Action::SigningKeyCreated, Subject::SigningKey(key.kid.clone()))
        .with_details(details)
}
