//! The WebAuthn credential JSON (`credential.toJSON()`, WebAuthn Level 3) as request bodies
//! document it: shared by every capability whose handlers take a passkey's answer (users'
//! passkeys, the admin plane), so none imports another's `http` module. The ceremonies verify
//! the raw JSON (`crate::passkeys::ceremony`); these types only check its shape and name it in
//! the OpenAPI documents.

use serde::{Deserialize, Serialize};

use super::codes::Code;
use crate::passkeys::model::Rejection;

/// The error code of a WebAuthn response that does not verify.
pub fn rejection_code(rejection: Rejection) -> Code {
    match rejection {
        Rejection::OriginMismatch => Code::WebauthnOriginMismatch,
        Rejection::RpIdMismatch => Code::WebauthnRpIdMismatch,
        Rejection::UserNotVerified => Code::WebauthnUserNotVerified,
        Rejection::ChallengeMismatch => Code::WebauthnChallengeMismatch,
        Rejection::SignatureInvalid => Code::WebauthnSignatureInvalid,
        Rejection::Invalid => Code::WebauthnResponseRejected,
    }
}

/// A `PublicKeyCredential` as `credential.toJSON()` writes it (WebAuthn Level 3): buffers in
/// base64url; unknown members are ignored. `R` is its response: an attestation
/// (`RegistrationResponseJSON`) or an assertion (`AuthenticationResponseJSON`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialJson<R> {
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub id: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub raw_id: String,
    #[serde(rename = "type")]
    pub credential_type: PublicKeyType,
    pub response: R,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_attachment: Option<AuthenticatorAttachment>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub client_extension_results: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PublicKeyType {
    #[serde(rename = "public-key")]
    PublicKey,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthenticatorAttachment {
    Platform,
    CrossPlatform,
}

/// `AuthenticatorAssertionResponseJSON`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssertionResponseJson {
    #[serde(rename = "clientDataJSON")]
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub client_data_json: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub authenticator_data: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_-]*$")]
    pub user_handle: Option<String>,
}

/// `AuthenticatorAttestationResponseJSON`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationResponseJson {
    #[serde(rename = "clientDataJSON")]
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub client_data_json: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub attestation_object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub authenticator_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_-]+$")]
    pub public_key: Option<String>,
    /// A COSE algorithm (`-7` ES256 …); JSON numbers like `-7.0` are accepted as integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub public_key_algorithm: Option<serde_json::Number>,
}
