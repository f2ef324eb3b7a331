//! Enrollment, device authentication and device management.
//!
//! Every check that needs no state runs before any state changes: signatures are verified
//! first, then the store decides with compare-and-set and unique constraints. Refused attempts
//! that say something about an attack (a factor already bound to someone else, a replayed or
//! forged request from a known device, a revoked device still calling) are audited.

use std::net::IpAddr;
use std::sync::Arc;

use countersign_mobile_protocol::{
    ActivationCode, EnrollmentRequest, EnrollmentResponse, EnrollmentUri, ErrorCode, HttpRequest,
    ProtocolError, PublicKey, PushRegistration, RequestHeaders, ServerId, ServerUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::model::{self, EnrollmentState};
use super::refusals::{DeviceRefusals, Refusal, RefusalLimits, RefusalReason};
use super::server_key::ServerSigningKey;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::ids::{ChallengeId, DeviceId, EnrollmentId, UserId};
use crate::secrets::MasterKey;
use crate::store::{
    ApprovalProof, Conflict, DeviceRecord, EnrollmentRecord, NoticeRecord, Store, StoreError, UserRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("no such user")]
    UserNotFound,
    #[error(
        "adding a device needs proof from the user: \"approval\": the id of a challenge of this user, \
         created by this app, approved within the last 5 minutes and not redeemed (the enrollment \
         consumes it); or an operator's recovery enrollment"
    )]
    SecondFactorProofRequired,
    #[error(
        "the approval is not an approved, unredeemed challenge of this user, created by this app and \
         decided within the last 5 minutes"
    )]
    ApprovalInvalid,
    #[error("no such enrollment for this user")]
    EnrollmentNotFound,
    #[error("the enrollment was used or has expired")]
    EnrollmentGone,
    #[error("no such device for this user")]
    DeviceNotFound,
    #[error("unknown activation code")]
    ActivationCodeInvalid,
    #[error("the activation code has expired")]
    ActivationCodeExpired,
    #[error("the activation code was already used")]
    ActivationCodeUsed,
    #[error("the public key or push token is already bound to another user's device")]
    FactorAlreadyBound,
    #[error("the user already has a device and this enrollment was not issued for a second one")]
    EnrollmentNotAllowed,
    #[error("signature does not verify")]
    SignatureInvalid,
    #[error("request nonce already used")]
    RequestReplayed,
    #[error("the device has been revoked")]
    DeviceRevoked,
    #[error("too many refused requests for this device or from this network; retry later")]
    Throttled { retry_after_secs: u64 },
    #[error("internal failure")]
    Internal(#[from] InternalError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for DeviceError {
    fn from(error: StoreError) -> Self {
        DeviceError::Store(error)
    }
}

/// What the device capability needs from configuration.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// The URL phones reach the server at; enrollment proofs are bound to it.
    pub public_url: ServerUrl,
    pub max_clock_skew_secs: u64,
    pub enrollment_ttl: Duration,
    /// How many refused device requests a device id and a source network get per minute.
    pub refusal_limits: RefusalLimits,
}

/// How long device notices are kept visible to a phone.
const NOTICE_WINDOW: Duration = Duration::days(30);

#[derive(Debug)]
pub struct DeviceService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    server_key: Arc<ServerSigningKey>,
    settings: DeviceSettings,
    refusals: Arc<DeviceRefusals>,
}

/// Why an enrollment may add a device.
#[derive(Debug)]
enum EnrollmentKind {
    /// For a user without an active device; refused at use if one exists by then.
    FirstDevice,
    /// Proven by the user's approval, which the enrollment consumes.
    Approved(ApprovalProof),
    /// Issued by the operator.
    Recovery,
}

/// A new enrollment: the record plus the code and URI, which exist in the clear only here.
#[derive(Debug)]
pub struct CreatedEnrollment {
    pub record: EnrollmentRecord,
    pub activation_code: SecretString,
    pub activation_uri: SecretString,
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        server_key: Arc<ServerSigningKey>,
        settings: DeviceSettings,
    ) -> Self {
        let refusals =
            Arc::new(DeviceRefusals::new(Arc::clone(&store), Arc::clone(&clock), settings.refusal_limits));
        Self { store, clock, master, server_key, settings, refusals }
    }

    /// Refused device requests: their limits and their aggregated audit.
    pub fn refusals(&self) -> &Arc<DeviceRefusals> {
        &self.refusals
    }

    pub fn server_id(&self) -> Result<ServerId, DeviceError> {
        Ok(ServerId::new(self.settings.public_url.as_str())?)
    }

    pub fn server_key(&self) -> &ServerSigningKey {
        &self.server_key
    }

    async fn user(&self, username: &str) -> Result<UserRecord, DeviceError> {
        let username =
            crate::users::model::normalize_username(username).map_err(|_| DeviceError::UserNotFound)?;
        self.store.user_by_username(&username).await?.ok_or(DeviceError::UserNotFound)
    }

    fn seal_context(id: EnrollmentId) -> Vec<u8> {
        format!("countersign/v1/activation-code/{id}").into_bytes()
    }

    fn activation_uri(&self, code: &str, username: &str) -> Result<SecretString, DeviceError> {
        let uri = EnrollmentUri::new(self.settings.public_url.clone(), ActivationCode::new(code)?, username)?;
        Ok(SecretString::from(uri.to_uri_string()))
    }

    /// Issues a single-use activation code for `username`. A user who already has a device gets
    /// another only with proof from that user: `approval`, an approved challenge this app created
    /// for them, which the enrollment consumes. `wants_second_device` without proof is refused
    /// too, so a code issued before the first device cannot add a second one later.
    pub async fn create_enrollment(
        &self,
        actor: Actor,
        username: &str,
        wants_second_device: bool,
        approval: Option<ChallengeId>,
    ) -> Result<CreatedEnrollment, DeviceError> {
        let user = self.user(username).await?;
        let Some(challenge) = approval else {
            // Any active factor, a passkey too: only a first factor comes on the app's word alone.
            if wants_second_device || self.store.has_any_factor(user.id).await? {
                self.audit_enrollment_refused(&actor, &user, "second_factor_proof_required", None).await?;
                return Err(DeviceError::SecondFactorProofRequired);
            }
            return self.issue_enrollment(actor, &user, EnrollmentKind::FirstDevice).await;
        };
        let Actor::App { id: app_id, .. } = &actor else {
            return Err(DeviceError::ApprovalInvalid);
        };
        let proof = ApprovalProof {
            challenge,
            app_id: *app_id,
            user: user.id,
            window: model::SECOND_DEVICE_APPROVAL_WINDOW,
        };
        match self.issue_enrollment(actor.clone(), &user, EnrollmentKind::Approved(proof)).await {
            Err(DeviceError::Store(StoreError::NotFound)) => {
                self.audit_enrollment_refused(&actor, &user, "approval_invalid", Some(challenge)).await?;
                Err(DeviceError::ApprovalInvalid)
            }
            other => other,
        }
    }

    /// Operator-issued (`countersign enrollments create --recovery`): an enrollment that may add
    /// a device even when the user has one, for a user who lost theirs or needs a second one
    /// without an approval. Audited with the operator as actor; existing devices are told when
    /// it is used, like for any added device.
    pub async fn create_recovery_enrollment(&self, username: &str) -> Result<CreatedEnrollment, DeviceError> {
        let user = self.user(username).await?;
        self.issue_enrollment(Actor::Cli, &user, EnrollmentKind::Recovery).await
    }

    async fn issue_enrollment(
        &self,
        actor: Actor,
        user: &UserRecord,
        kind: EnrollmentKind,
    ) -> Result<CreatedEnrollment, DeviceError> {
        let (code, code_hash) = model::new_activation_code()
            .map_err(|e| InternalError::caused_by("drawing an activation code", e))?;
        let id = EnrollmentId::random();
        let sealed = self
            .master
            .encrypt(&Self::seal_context(id), code.expose_secret().as_bytes())
            .map_err(|e| InternalError::caused_by("sealing the activation code", e))?;
        let now = self.clock.now();
        let is_second_device = !matches!(kind, EnrollmentKind::FirstDevice);
        let record = EnrollmentRecord {
            id,
            user_id: user.id,
            code_hash: code_hash.to_vec(),
            code_sealed: Some(sealed),
            is_second_device,
            created_by: actor.to_string(),
            created_at: now,
            expires_at: now + self.settings.enrollment_ttl,
            used_at: None,
            device_id: None,
        };
        let approval = match &kind {
            EnrollmentKind::Approved(proof) => Some(proof.challenge),
            _ => None,
        };
        let event = AuditEvent::new(now, actor.clone(), Action::EnrollmentCreated, Subject::User(user.id))
            .with_details(json!({
                "enrollment_id": id,
                "username": user.username,
                "second_device": is_second_device,
                "recovery": matches!(kind, EnrollmentKind::Recovery),
                "approval": approval,
            }));
        let record = match kind {
            EnrollmentKind::Approved(proof) => {
                let redeemed = AuditEvent::new(
                    now,
                    actor,
                    Action::Challenge(ChallengeState::Redeemed),
                    Subject::Challenge(proof.challenge),
                )
                .with_details(json!({
                    "challenge_id": proof.challenge,
                    "purpose": "second_device_enrollment",
                    "enrollment_id": id,
                }));
                self.store.create_enrollment_consuming_approval(record, proof, redeemed, event).await?
            }
            EnrollmentKind::FirstDevice | EnrollmentKind::Recovery => {
                self.store.create_enrollment(record, event).await?
            }
        };
        let activation_uri = self.activation_uri(code.expose_secret(), &user.username)?;
        Ok(CreatedEnrollment { record, activation_code: code, activation_uri })
    }

    /// Records a refused attempt to add a device: an app adding phones to users who already
    /// have one is how an account gets a second, attacker-held factor.
    async fn audit_enrollment_refused(
        &self,
        actor: &Actor,
        user: &UserRecord,
        reason: &str,
        approval: Option<ChallengeId>,
    ) -> Result<(), DeviceError> {
        let event = AuditEvent::new(
            self.clock.now(),
            actor.clone(),
            Action::EnrollmentRefused,
            Subject::User(user.id),
        )
        .with_details(json!({ "username": user.username, "reason": reason, "approval": approval }));
        self.store.record_audit(event).await?;
        Ok(())
    }

    /// The activation URI of a still-usable enrollment, for showing its QR code again.
    pub async fn enrollment_uri(
        &self,
        username: &str,
        id: EnrollmentId,
    ) -> Result<SecretString, DeviceError> {
        let user = self.user(username).await?;
        let enrollment = self
            .store
            .enrollment_by_id(id)
            .await?
            .filter(|e| e.user_id == user.id)
            .ok_or(DeviceError::EnrollmentNotFound)?;
        let sealed = match (model::enrollment_state(&enrollment, self.clock.now()), &enrollment.code_sealed) {
            (EnrollmentState::Usable, Some(sealed)) => sealed.clone(),
            _ => return Err(DeviceError::EnrollmentGone),
        };
        let code = self
            .master
            .decrypt(&Self::seal_context(id), &sealed)
            .map_err(|e| InternalError::caused_by("opening the sealed activation code", e))?;
        let code = String::from_utf8(code)
            .map_err(|e| InternalError::caused_by("reading the sealed activation code", e))?;
        self.activation_uri(&code, &user.username)
    }

    /// `POST /device/v1/enroll`: verifies the proof of possession, then uses the code.
    pub async fn enroll(&self, request: EnrollmentRequest) -> Result<EnrollmentResponse, DeviceError> {
        request.verify(&self.settings.public_url)?;
        let enrollment_data = request.enrollment;
        let code_hash = model::hash_activation_code(enrollment_data.activation_code.as_str());
        let enrollment = self
            .store
            .enrollment_by_code_hash(&code_hash)
            .await?
            .ok_or(DeviceError::ActivationCodeInvalid)?;
        let now = self.clock.now();
        match model::enrollment_state(&enrollment, now) {
            EnrollmentState::Usable => {}
            EnrollmentState::Used => return Err(DeviceError::ActivationCodeUsed),
            EnrollmentState::Expired => return Err(DeviceError::ActivationCodeExpired),
        }
        let device = DeviceRecord {
            id: DeviceId::random(),
            user_id: enrollment.user_id,
            public_key: enrollment_data.public_key.as_bytes().to_vec(),
            push: model::to_stored(&enrollment_data.push),
            name: enrollment_data.device_name.clone(),
            platform: enrollment_data.platform.clone(),
            created_at: now,
            revoked_at: None,
            last_counter: 0,
        };
        let notice =
            json!({ "device_id": device.id, "device_name": device.name, "platform": device.platform });
        let event = AuditEvent::new(
            now,
            Actor::Device { id: device.id },
            Action::DeviceEnrolled,
            Subject::User(enrollment.user_id),
        )
        .with_details(json!({
            "enrollment_id": enrollment.id,
            "device_name": device.name,
            "platform": device.platform,
            "push_provider": device.push.provider,
            "second_device": enrollment.is_second_device,
        }));
        let result = self
            .store
            .enroll_device(&enrollment, device, ("device_enrolled", notice.to_string()), event)
            .await;
        match result {
            Ok(device) => Ok(EnrollmentResponse {
                device_id: countersign_mobile_protocol::DeviceId::new(device.id.to_string())?,
                server_id: self.server_id()?,
                server_public_key: self.server_key.public_key().clone(),
            }),
            Err(StoreError::NotFound) => Err(self.why_unusable(enrollment.id).await),
            Err(StoreError::Conflict(conflict @ (Conflict::DeviceKey | Conflict::PushToken))) => {
                let owner = match conflict {
                    Conflict::DeviceKey => {
                        self.store.public_key_owner(enrollment_data.public_key.as_bytes()).await?
                    }
                    _ => match enrollment_data.push.token() {
                        Some(token) => {
                            self.store
                                .push_token_owner(enrollment_data.push.provider().as_str(), token.as_str())
                                .await?
                        }
                        None => None,
                    },
                };
                let factor = if conflict == Conflict::DeviceKey { "public_key" } else { "push_token" };
                self.audit_factor_refused(enrollment.user_id, owner, factor, "enroll").await?;
                Err(DeviceError::FactorAlreadyBound)
            }
            Err(StoreError::Conflict(Conflict::SecondDevice)) => Err(DeviceError::EnrollmentNotAllowed),
            Err(other) => Err(other.into()),
        }
    }

    /// After losing the compare-and-set: say why the enrollment cannot be used.
    async fn why_unusable(&self, id: EnrollmentId) -> DeviceError {
        match self.store.enrollment_by_id(id).await {
            Ok(Some(e)) => match model::enrollment_state(&e, self.clock.now()) {
                EnrollmentState::Used => DeviceError::ActivationCodeUsed,
                EnrollmentState::Expired => DeviceError::ActivationCodeExpired,
                // Usable yet refused: its user was deleted meanwhile.
                EnrollmentState::Usable => DeviceError::ActivationCodeInvalid,
            },
            Ok(None) => DeviceError::ActivationCodeInvalid,
            Err(e) => e.into(),
        }
    }

    /// Records a refused attempt to bind a factor that belongs to someone else: the classic sign
    /// of shared or stolen factors, so both users are named.
    async fn audit_factor_refused(
        &self,
        user: UserId,
        owner: Option<UserId>,
        factor: &str,
        operation: &str,
    ) -> Result<(), DeviceError> {
        let event = AuditEvent::new(
            self.clock.now(),
            Actor::System,
            Action::FactorBindingRefused,
            Subject::User(user),
        )
        .with_details(
            json!({ "user_id": user, "bound_to_user_id": owner, "factor": factor, "operation": operation }),
        );
        self.store.record_audit(event).await?;
        Ok(())
    }

    /// Checks a signed device request (PROTOCOL.md §5) and returns its device. `peer` is the
    /// TCP peer's address: refusals are limited per source network and per claimed device id.
    pub async fn authenticate(
        &self,
        method: &str,
        path_and_query: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<DeviceRecord, DeviceError> {
        let network = super::refusals::source_network(peer);
        self.refusals.check_network(&network).map_err(throttled)?;
        use countersign_mobile_protocol::request::{
            HEADER_DEVICE_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
        };
        let (id, timestamp, nonce, signature) = (
            header(HEADER_DEVICE_ID),
            header(HEADER_TIMESTAMP),
            header(HEADER_NONCE),
            header(HEADER_SIGNATURE),
        );
        let headers = RequestHeaders::parse(
            id.as_deref(),
            timestamp.as_deref(),
            nonce.as_deref(),
            signature.as_deref(),
        )?;
        let device = self.claimed_device(headers.device_id.as_str()).await?;
        let key = self.verification_key(device.as_ref())?;
        let now = self.clock.now();
        let request = HttpRequest { method, path_and_query, body };
        let verified =
            match headers.verify(&key, &request, unix_seconds(now), self.settings.max_clock_skew_secs) {
                Err(error) if error.error_code() == ErrorCode::SignatureInvalid => {
                    let reason = bad_signature(device.as_ref());
                    return Err(self.refuse(
                        &network,
                        &headers,
                        device.as_ref(),
                        reason,
                        DeviceError::SignatureInvalid,
                    ));
                }
                Err(error @ ProtocolError::TimestampOutOfWindow { .. }) => {
                    // Only reached once the signature verified (under a known device's key).
                    return Err(self.refuse(
                        &network,
                        &headers,
                        device.as_ref(),
                        RefusalReason::Expired,
                        error.into(),
                    ));
                }
                // A request malformed whatever its device id.
                Err(error) => return Err(error.into()),
                Ok(verified) => verified,
            };
        // Verified under the unknown-device key, which nobody can sign for: still unknown.
        let Some(device) = device else {
            let reason = RefusalReason::UnknownDevice;
            return Err(self.refuse(&network, &headers, None, reason, DeviceError::SignatureInvalid));
        };
        if !device.is_active() {
            let reason = RefusalReason::Revoked;
            return Err(self.refuse(&network, &headers, Some(&device), reason, DeviceError::DeviceRevoked));
        }
        let window_end = OffsetDateTime::from_unix_timestamp(verified.replay_window_ends_at as i64)
            .map_err(|e| InternalError::caused_by("computing the replay window", e))?;
        if !self.store.remember_request_nonce(device.id, verified.nonce.as_bytes(), window_end, now).await? {
            let reason = RefusalReason::Replayed;
            return Err(self.refuse(&network, &headers, Some(&device), reason, DeviceError::RequestReplayed));
        }
        Ok(device)
    }

    /// Counts a refused request (audited in aggregate by [`DeviceRefusals::flush`]) and returns
    /// the answer: its own error, or `429` once its network or its device id is over the limit.
    fn refuse(
        &self,
        network: &str,
        headers: &RequestHeaders,
        device: Option<&DeviceRecord>,
        reason: RefusalReason,
        error: DeviceError,
    ) -> DeviceError {
        let refusal = Refusal { network, claimed_id: Some(headers.device_id.as_str()), device, reason };
        self.refusals.refused(refusal).map_or(error, throttled)
    }

    /// The device a request claims to come from; `None` for an unknown or malformed id, which
    /// must then be refused exactly like a bad signature (see [`Self::verification_key`]).
    async fn claimed_device(&self, id: &str) -> Result<Option<DeviceRecord>, DeviceError> {
        match uuid::Uuid::parse_str(id) {
            Ok(id) => Ok(self.store.device_by_id(DeviceId(id)).await?),
            Err(_) => Ok(None),
        }
    }

    /// The key to check a claimed device's signature with: its own, or for an unknown id the
    /// unknown-device key, so that every id costs one signature verification and gets the same
    /// answer until a signature verifies (PROTOCOL.md §12).
    pub fn verification_key(&self, device: Option<&DeviceRecord>) -> Result<PublicKey, DeviceError> {
        let sec1 = device.map_or(model::UNKNOWN_DEVICE_KEY.as_slice(), |d| d.public_key.as_slice());
        Ok(PublicKey::from_sec1(sec1)
            .map_err(|e| InternalError::caused_by("parsing a stored device key", e))?)
    }

    /// `PUT /device/v1/push-token`.
    pub async fn update_push(
        &self,
        device: &DeviceRecord,
        push: PushRegistration,
    ) -> Result<(), DeviceError> {
        let stored = model::to_stored(&push);
        let event = AuditEvent::new(
            self.clock.now(),
            Actor::Device { id: device.id },
            Action::PushTokenUpdated,
            Subject::User(device.user_id),
        )
        .with_details(json!({ "device_id": device.id, "push_provider": stored.provider }));
        match self.store.update_push(device.id, stored, event).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(Conflict::PushToken)) => {
                let owner = match push.token() {
                    Some(token) => {
                        self.store.push_token_owner(push.provider().as_str(), token.as_str()).await?
                    }
                    None => None,
                };
                self.audit_factor_refused(device.user_id, owner, "push_token", "update_push").await?;
                Err(DeviceError::FactorAlreadyBound)
            }
            Err(StoreError::NotFound) => Err(DeviceError::DeviceRevoked),
            Err(other) => Err(other.into()),
        }
    }

    /// `DELETE /device/v1`: the phone removes itself.
    pub async fn unenroll(&self, device: &DeviceRecord) -> Result<(), DeviceError> {
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            Actor::Device { id: device.id },
            Action::DeviceUnenrolled,
            Subject::User(device.user_id),
        )
        .with_details(json!({ "device_id": device.id, "device_name": device.name }));
        match self.store.revoke_device(device.id, now, event).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => Err(DeviceError::DeviceRevoked),
            Err(other) => Err(other.into()),
        }
    }

    /// Recent security notices for this device.
    pub async fn notices(&self, device: &DeviceRecord) -> Result<Vec<NoticeRecord>, DeviceError> {
        Ok(self.store.device_notices(device.id, self.clock.now() - NOTICE_WINDOW).await?)
    }

    pub async fn list_devices(&self, username: &str) -> Result<Vec<DeviceRecord>, DeviceError> {
        let user = self.user(username).await?;
        Ok(self.store.devices_for_user(user.id).await?)
    }

    /// Revokes one of the user's devices; effective for its next request.
    pub async fn revoke_device(
        &self,
        actor: Actor,
        username: &str,
        id: DeviceId,
    ) -> Result<DeviceRecord, DeviceError> {
        let user = self.user(username).await?;
        let device = self
            .store
            .device_by_id(id)
            .await?
            .filter(|d| d.user_id == user.id && d.is_active())
            .ok_or(DeviceError::DeviceNotFound)?;
        let now = self.clock.now();
        let event = AuditEvent::new(now, actor, Action::DeviceRevoked, Subject::User(user.id)).with_details(
            json!({ "device_id": device.id, "device_name": device.name, "username": user.username }),
        );
        self.store.revoke_device(device.id, now, event).await.map_err(|e| match e {
            StoreError::NotFound => DeviceError::DeviceNotFound,
            other => other.into(),
        })
    }
}

/// A bad signature from a known device, or any signature under an unknown device id.
pub fn bad_signature(device: Option<&DeviceRecord>) -> RefusalReason {
    if device.is_some() { RefusalReason::BadSignature } else { RefusalReason::UnknownDevice }
}

pub fn throttled(t: super::refusals::Throttled) -> DeviceError {
    DeviceError::Throttled { retry_after_secs: t.retry_after_secs }
}

pub fn unix_seconds(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}
