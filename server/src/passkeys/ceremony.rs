//! The WebAuthn ceremonies themselves, without storage, audit or clock: options for the browser
//! and the server state to keep; a registration verified into the credential to store; an
//! assertion verified against a stored credential into its new counter and flags. Users'
//! passkeys (`PasskeyService`) and the admin plane both run their ceremonies through here, so
//! the relying party's rules are written once.
//!
//! Everything here is plain input and output: settings, bytes as stored, the browser's JSON.
//! Who may begin a ceremony, how long it lives, and what a refusal costs are the callers' rules.

use std::num::NonZeroU32;

use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::{
    AllowedCredentials, AuthenticationVerificationOptions, DiscoverableCredentialRequestOptions,
    NonDiscoverableCredentialRequestOptions, SignatureCounterEnforcement,
};
use webauthn_rp::request::register::{
    CredProtect, Nickname, PublicKeyCredentialCreationOptions, PublicKeyCredentialUserEntity,
    RegistrationVerificationOptions, ResidentKeyRequirement, UserHandle64, Username,
};
use webauthn_rp::request::{
    BackupReq, Credentials, ExtensionInfo, PublicKeyCredentialDescriptor, UserVerificationRequirement,
};
use webauthn_rp::response::auth::Authentication;
use webauthn_rp::response::auth::error::AuthCeremonyErr;
use webauthn_rp::response::register::{CompressedPubKey, DynamicState, StaticState};
use webauthn_rp::response::{AuthTransports, CredentialId};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthenticationServerState, NonDiscoverableAuthenticationServerState,
    Registration, RegistrationServerState,
};

use super::model::{self, MAX_CLIENT_DATA_LEN, Rejection, WebauthnSettings};
use crate::fault::InternalError;

/// A stored public key as `webauthn_rp` decodes it.
type StoredKey = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;

/// A credential to leave out of a registration (`excludeCredentials`) or to offer in a sign-in
/// (`allowCredentials`); see [`descriptor`].
pub type Descriptor = PublicKeyCredentialDescriptor<Vec<u8>>;

/// The length of every WebAuthn user handle we make ([`new_user_handle`]); a discoverable
/// assertion whose `userHandle` is not this long does not parse.
pub const USER_HANDLE_LEN: usize = 64;

/// Whether the authenticator must keep the credential (a discoverable credential, needed to
/// sign in without a username) or only should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentKey {
    Required,
    Preferred,
}

/// The account a credential is created for.
#[derive(Debug, Clone, Copy)]
pub struct UserEntity<'a> {
    /// The WebAuthn user handle, [`USER_HANDLE_LEN`] bytes (never the name).
    pub handle: &'a [u8],
    /// What the authenticator lists; outside the RFC 8265 profile it is shown as "user".
    pub name: &'a str,
    pub display_name: Option<&'a str>,
}

/// A begun ceremony: the options for the browser (`parseCreationOptionsFromJSON()` or
/// `parseRequestOptionsFromJSON()`) and the encoded server state to keep until it is answered.
#[derive(Debug, Clone)]
pub struct Begun {
    pub options: serde_json::Value,
    pub server_state: Vec<u8>,
}

/// A verified registration: the credential as it is stored (the bytes are what
/// [`StoredCredential`] reads back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub credential_id: Vec<u8>,
    pub static_state: Vec<u8>,
    pub dynamic_state: Vec<u8>,
    pub transports: i16,
    pub aaguid: Vec<u8>,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub sign_count: i64,
}

/// A stored credential as an assertion is verified against it.
#[derive(Debug, Clone, Copy)]
pub struct StoredCredential<'a> {
    pub credential_id: &'a [u8],
    /// The handle of the account it is registered to.
    pub user_handle: &'a [u8],
    pub static_state: &'a [u8],
    pub dynamic_state: &'a [u8],
}

/// A verified assertion: what to store back for the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asserted {
    pub dynamic_state: Vec<u8>,
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub user_verified: bool,
}

/// Why a ceremony's answer is refused.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// Not a `credential.toJSON()` of the expected kind.
    #[error("{0}")]
    ResponseInvalid(String),
    #[error("clientDataJSON is longer than {MAX_CLIENT_DATA_LEN} bytes")]
    ClientDataTooLarge,
    /// The response does not verify.
    #[error("the credential does not verify ({}): {message}", rejection.as_str())]
    Rejected { rejection: Rejection, message: String },
    /// A correctly signed assertion whose signature counter did not rise: a cloned key, or an
    /// assertion older than one already accepted.
    #[error("the signature counter did not rise")]
    CounterNotIncreasing,
    /// The registration verifies, but `[webauthn] allowed_aaguids` does not allow its model.
    #[error("this authenticator model (AAGUID) is not allowed to register")]
    AuthenticatorNotAllowed { aaguid: Vec<u8> },
    /// Stored state that does not decode, or a library failure.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// A fresh random user handle of [`USER_HANDLE_LEN`] bytes.
pub fn new_user_handle() -> Vec<u8> {
    infallible(UserHandle64::new().encode()).to_vec()
}

/// A stored credential as a descriptor; `None` when the stored bytes do not decode.
pub fn descriptor(credential_id: &[u8], transports: i16) -> Option<Descriptor> {
    let id = CredentialId::decode(credential_id.to_vec()).ok()?;
    let transports = AuthTransports::decode(u8::try_from(transports).ok()?).ok()?;
    Some(PublicKeyCredentialDescriptor { id, transports })
}

/// Creation options (user verification required; `exclude` left out) and the state to keep.
pub fn creation_options(
    settings: &WebauthnSettings,
    user: UserEntity<'_>,
    exclude: Vec<Descriptor>,
    resident_key: ResidentKey,
) -> Result<Begun, InternalError> {
    let handle = user_handle(user.handle)?;
    let name = Username::try_from(user.name)
        .or_else(|_| Username::try_from("user"))
        .map_err(|e| InternalError::caused_by("naming the user for the authenticator", e))?;
    let entity = PublicKeyCredentialUserEntity {
        name,
        id: &handle,
        display_name: user.display_name.and_then(|d| Nickname::try_from(d).ok()),
    };
    let mut options = PublicKeyCredentialCreationOptions::passkey(&settings.rp_id, entity, exclude);
    options.authenticator_selection.resident_key = match resident_key {
        ResidentKey::Required => ResidentKeyRequirement::Required,
        ResidentKey::Preferred => ResidentKeyRequirement::Preferred,
    };
    // Ask for credProtect (user verification required) without enforcing it: browsers refuse
    // to create a credential on an authenticator without the extension when it is enforced
    // (Chromium's platform authenticator among them), and every sign-in requires user
    // verification anyway.
    options.extensions.cred_protect =
        CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) =
        options.start_ceremony().map_err(|e| InternalError::caused_by("starting a registration", e))?;
    let options =
        serde_json::to_value(&client).map_err(|e| InternalError::caused_by("writing creation options", e))?;
    let server_state = server.encode().map_err(|e| InternalError::caused_by("encoding a registration", e))?;
    Ok(Begun { options, server_state })
}

/// Verifies `credential.toJSON()` of a registration against the kept state: the credential to
/// store, or why not.
pub fn verify_registration(
    settings: &WebauthnSettings,
    server_state: &[u8],
    credential: &serde_json::Value,
) -> Result<NewCredential, CeremonyError> {
    let bytes = serde_json::to_vec(credential).map_err(|e| CeremonyError::ResponseInvalid(e.to_string()))?;
    let registration =
        Registration::from_json_relaxed(&bytes).map_err(|e| CeremonyError::ResponseInvalid(e.to_string()))?;
    if registration.response().client_data_json().len() > MAX_CLIENT_DATA_LEN {
        return Err(CeremonyError::ClientDataTooLarge);
    }
    let server = RegistrationServerState::<64>::decode(server_state)
        .map_err(|e| InternalError::caused_by("decoding a stored registration", e))?;
    let verification = RegistrationVerificationOptions::<'_, '_, String, String> {
        allowed_origins: &settings.origins,
        ..RegistrationVerificationOptions::default()
    };
    let registered = server.verify(&settings.rp_id, &registration, &verification).map_err(|error| {
        CeremonyError::Rejected { rejection: Rejection::of_registration(&error), message: error.to_string() }
    })?;
    let (credential_id, transports, _, static_state, dynamic_state, metadata) = registered.into_parts();
    let aaguid = metadata.aaguid.data().to_vec();
    if !settings.allows_aaguid(&aaguid) {
        return Err(CeremonyError::AuthenticatorNotAllowed { aaguid });
    }
    let (backup_eligible, backed_up) = model::backup_flags(dynamic_state.backup);
    Ok(NewCredential {
        credential_id: credential_id.as_ref().to_vec(),
        static_state: infallible(static_state.encode()),
        dynamic_state: infallible(dynamic_state.encode()).to_vec(),
        transports: i16::from(infallible(transports.encode())),
        aaguid,
        backup_eligible,
        backed_up,
        sign_count: i64::from(dynamic_state.sign_count),
    })
}

/// Request options for one account's credentials (`allowCredentials`, user verification
/// required) valid for `ttl`; `None` when `allowed` is empty.
pub fn request_options(
    settings: &WebauthnSettings,
    allowed: Vec<Descriptor>,
    ttl: time::Duration,
) -> Result<Option<Begun>, InternalError> {
    let mut credentials = AllowedCredentials::with_capacity(allowed.len());
    for descriptor in allowed {
        credentials.push(descriptor.into());
    }
    let Ok(mut options) =
        NonDiscoverableCredentialRequestOptions::second_factor(&settings.rp_id, credentials)
    else {
        return Ok(None);
    };
    options.options().user_verification = UserVerificationRequirement::Required;
    options.options().timeout = timeout(ttl)?;
    let (server, client) =
        options.start_ceremony().map_err(|e| InternalError::caused_by("starting a sign-in", e))?;
    let options =
        serde_json::to_value(&client).map_err(|e| InternalError::caused_by("writing request options", e))?;
    let server_state = server.encode().map_err(|e| InternalError::caused_by("encoding a sign-in", e))?;
    Ok(Some(Begun { options, server_state }))
}

/// Request options for a sign-in without a username: no `allowCredentials` (the authenticator
/// offers its discoverable credentials), user verification required, valid for `ttl`.
pub fn discoverable_request_options(
    settings: &WebauthnSettings,
    ttl: time::Duration,
) -> Result<Begun, InternalError> {
    let mut options = DiscoverableCredentialRequestOptions::passkey(&settings.rp_id);
    options.0.user_verification = UserVerificationRequirement::Required;
    options.0.timeout = timeout(ttl)?;
    let (server, client) = options
        .start_ceremony()
        .map_err(|e| InternalError::caused_by("starting a discoverable sign-in", e))?;
    let options =
        serde_json::to_value(&client).map_err(|e| InternalError::caused_by("writing request options", e))?;
    let server_state =
        server.encode().map_err(|e| InternalError::caused_by("encoding a discoverable sign-in", e))?;
    Ok(Begun { options, server_state })
}

/// A browser's assertion, parsed but not verified: [`Assertion`] answers [`request_options`],
/// [`DiscoverableAssertion`] answers [`discoverable_request_options`]. Look the credential up
/// by what it reports, then verify against it.
#[derive(Debug)]
pub struct ParsedAssertion<const DISCOVERABLE: bool>(Authentication<USER_HANDLE_LEN, DISCOVERABLE>);

/// An assertion for [`request_options`]: look its credential up by
/// [`ParsedAssertion::credential_id`], then verify.
pub type Assertion = ParsedAssertion<false>;

/// An assertion for [`discoverable_request_options`]: look its credential up by
/// [`ParsedAssertion::credential_id`] and [`DiscoverableAssertion::user_handle`] (both must
/// match the stored credential), then verify.
pub type DiscoverableAssertion = ParsedAssertion<true>;

impl<const DISCOVERABLE: bool> ParsedAssertion<DISCOVERABLE> {
    /// Parses `credential.toJSON()` (for a discoverable one, a `userHandle` of
    /// [`USER_HANDLE_LEN`] bytes is required); bounds its `clientDataJSON`.
    pub fn parse(credential: &serde_json::Value) -> Result<Self, CeremonyError> {
        let bytes =
            serde_json::to_vec(credential).map_err(|e| CeremonyError::ResponseInvalid(e.to_string()))?;
        let assertion = Authentication::from_json_relaxed(&bytes)
            .map_err(|e| CeremonyError::ResponseInvalid(e.to_string()))?;
        if assertion.response().client_data_json().len() > MAX_CLIENT_DATA_LEN {
            return Err(CeremonyError::ClientDataTooLarge);
        }
        Ok(Self(assertion))
    }

    /// The credential id the browser reports (unverified until verified).
    pub fn credential_id(&self) -> &[u8] {
        self.0.raw_id().into_inner()
    }
}

impl Assertion {
    /// Verifies against the kept request state and the stored credential.
    pub fn verify(
        &self,
        settings: &WebauthnSettings,
        server_state: &[u8],
        stored: StoredCredential<'_>,
    ) -> Result<Asserted, CeremonyError> {
        let server = NonDiscoverableAuthenticationServerState::decode(server_state)
            .map_err(|e| InternalError::caused_by("decoding a stored sign-in", e))?;
        verify_with(stored, |credential| {
            server.verify(&settings.rp_id, &self.0, credential, &verification(settings))
        })
    }
}

impl DiscoverableAssertion {
    /// The user handle the authenticator reports (unverified until [`Self::verify`]).
    pub fn user_handle(&self) -> &[u8] {
        self.0.response().user_handle().as_ref()
    }

    /// Verifies against the kept request state and the stored credential; a stored credential
    /// of another id or user handle is refused.
    pub fn verify(
        &self,
        settings: &WebauthnSettings,
        server_state: &[u8],
        stored: StoredCredential<'_>,
    ) -> Result<Asserted, CeremonyError> {
        let server = DiscoverableAuthenticationServerState::decode(server_state)
            .map_err(|e| InternalError::caused_by("decoding a stored discoverable sign-in", e))?;
        verify_with(stored, |credential| {
            server.verify(&settings.rp_id, &self.0, credential, &verification(settings))
        })
    }
}

/// How every assertion is verified: counters must rise, user verification is as the request
/// asked (and kept as seen), backup flags may change.
fn verification(settings: &WebauthnSettings) -> AuthenticationVerificationOptions<'_, '_, String, String> {
    AuthenticationVerificationOptions {
        allowed_origins: &settings.origins,
        // Synced passkeys may start or stop being backed up; the flags are stored as seen.
        backup_requirement: Some(BackupReq::None),
        update_uv: true,
        sig_counter_enforcement: SignatureCounterEnforcement::Fail,
        ..AuthenticationVerificationOptions::default()
    }
}

type Loaded<'a> = AuthenticatedCredential<'a, 'a, 64, StoredKey>;

fn load<'a>(stored: &StoredCredential<'a>, handle: &'a UserHandle64) -> Result<Loaded<'a>, InternalError> {
    let corrupt = || InternalError::new("stored passkey data does not decode");
    let static_state = StaticState::<StoredKey>::decode(stored.static_state).map_err(|_| corrupt())?;
    let dynamic: [u8; 7] = stored.dynamic_state.try_into().map_err(|_| corrupt())?;
    let dynamic = DynamicState::decode(dynamic).map_err(|_| corrupt())?;
    let credential_id = CredentialId::<&[u8]>::decode(stored.credential_id).map_err(|_| corrupt())?;
    AuthenticatedCredential::new(credential_id, handle, static_state, dynamic)
        .map_err(|e| InternalError::caused_by("loading a passkey", e))
}

/// Loads the stored credential and runs `verify` on it: what to store back, or why not.
fn verify_with(
    stored: StoredCredential<'_>,
    verify: impl for<'c> FnOnce(&mut Loaded<'c>) -> Result<bool, AuthCeremonyErr>,
) -> Result<Asserted, CeremonyError> {
    let handle = user_handle(stored.user_handle)?;
    let mut credential = load(&stored, &handle)?;
    match verify(&mut credential) {
        Ok(_) => {
            let dynamic = credential.dynamic_state();
            let (backup_eligible, backed_up) = model::backup_flags(dynamic.backup);
            Ok(Asserted {
                dynamic_state: infallible(dynamic.encode()).to_vec(),
                sign_count: dynamic.sign_count,
                backup_eligible,
                backed_up,
                user_verified: dynamic.user_verified,
            })
        }
        Err(AuthCeremonyErr::SignatureCounter) => Err(CeremonyError::CounterNotIncreasing),
        Err(error) => Err(CeremonyError::Rejected {
            rejection: Rejection::of_authentication(&error),
            message: error.to_string(),
        }),
    }
}

fn timeout(ttl: time::Duration) -> Result<NonZeroU32, InternalError> {
    u32::try_from(ttl.whole_milliseconds())
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| InternalError::new("the ceremony TTL is out of range"))
}

fn user_handle(bytes: &[u8]) -> Result<UserHandle64, InternalError> {
    let bytes: [u8; USER_HANDLE_LEN] =
        bytes.try_into().map_err(|_| InternalError::new("a stored WebAuthn user handle is not 64 bytes"))?;
    Ok(infallible(UserHandle64::decode(bytes)))
}

/// The value of an encoding that cannot fail.
pub(crate) fn infallible<T>(result: Result<T, std::convert::Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}
