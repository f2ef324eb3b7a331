//! A software authenticator (1Password's `passkey` crate) used as a browser page would use it:
//! real WebAuthn crypto for the passkey tests.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passkey::authenticator::{Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use serde_json::{Value, json};

/// The origin the test RP accepts (derived from the test public URL `http://127.0.0.1:8080`).
pub const ORIGIN: &str = "http://localhost:8080";

/// A user who is present and verified (PIN or biometrics) whenever asked.
pub struct VerifiedUser;

#[async_trait::async_trait]
impl UserValidationMethod for VerifiedUser {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        _presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence: true, verification: true })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

pub type SoftAuthenticator = Authenticator<MemoryStore, VerifiedUser, RustCryptoBackend>;

pub fn soft_authenticator() -> SoftAuthenticator {
    let mut authenticator =
        Authenticator::new(Aaguid::new_empty(), MemoryStore::new(), VerifiedUser, RustCryptoBackend);
    authenticator.set_make_credentials_with_signature_counter(true);
    authenticator
}

/// A software authenticator (with a signature counter), used through a WebAuthn client as a
/// browser page would use it (on `http://localhost`, which browsers treat as secure). The
/// client is made per ceremony around the kept authenticator.
pub struct SoftKey {
    authenticator: SoftAuthenticator,
}

impl SoftKey {
    pub fn new() -> Self {
        Self { authenticator: soft_authenticator() }
    }

    /// `navigator.credentials.create({ publicKey })` then `credential.toJSON()`.
    pub async fn create(&mut self, public_key: &Value) -> Value {
        let options: CredentialCreationOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let authenticator = std::mem::replace(&mut self.authenticator, soft_authenticator());
        let mut client = Client::new(authenticator).allows_insecure_localhost(true);
        let origin = url::Url::parse(ORIGIN).unwrap();
        let credential = client.register(&origin, options, DefaultClientData).await.unwrap();
        self.authenticator = std::mem::replace(client.authenticator_mut(), soft_authenticator());
        to_json(serde_json::to_value(&credential).unwrap())
    }

    /// `navigator.credentials.get({ publicKey })` then `credential.toJSON()`.
    pub async fn get(&mut self, public_key: &Value) -> Value {
        let options: CredentialRequestOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let authenticator = std::mem::replace(&mut self.authenticator, soft_authenticator());
        let mut client = Client::new(authenticator).allows_insecure_localhost(true);
        let origin = url::Url::parse(ORIGIN).unwrap();
        let credential = client.authenticate(&origin, options, DefaultClientData).await.unwrap();
        self.authenticator = std::mem::replace(client.authenticator_mut(), soft_authenticator());
        to_json(serde_json::to_value(&credential).unwrap())
    }

    /// Signs an assertion again over `auth_data` and `client_data` with the passkey's private
    /// key: what a compromised client or authenticator holding the key can produce. The
    /// relying party must refuse it on its merits, not because the signature fails.
    pub fn resign(&self, assertion: &Value, auth_data: &[u8], client_data: &Value) -> Value {
        use passkey::crypto::SecretKeyT;
        use passkey::crypto::rust_crypto::RustCryptoSecretKey;
        let passkey = self.authenticator.store().values().next().unwrap();
        let mut key = RustCryptoSecretKey::from_cose_key(&passkey.key).unwrap();
        let client_data = client_data.to_string();
        let hash = ring::digest::digest(&ring::digest::SHA256, client_data.as_bytes());
        let signature = key.sign(&[auth_data, hash.as_ref()].concat());
        let mut forged = assertion.clone();
        forged["response"]["authenticatorData"] = json!(URL_SAFE_NO_PAD.encode(auth_data));
        forged["response"]["clientDataJSON"] = json!(URL_SAFE_NO_PAD.encode(client_data));
        forged["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
        forged
    }

    /// The keys as they are now (a backup an attacker could restore to clone the key).
    pub fn snapshot(&self) -> MemoryStore {
        self.authenticator.store().clone()
    }

    pub fn restore(&mut self, keys: MemoryStore) {
        *self.authenticator.store_mut() = keys;
    }
}

/// What a browser's `credential.toJSON()` gives: the crate writes buffers as byte arrays, a
/// browser as base64url.
pub fn to_json(mut credential: Value) -> Value {
    let base64url = |value: &mut Value| {
        if let Some(bytes) = value.as_array() {
            let bytes: Vec<u8> = bytes.iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect();
            *value = json!(URL_SAFE_NO_PAD.encode(bytes));
        }
    };
    base64url(&mut credential["rawId"]);
    let response = &mut credential["response"];
    for field in
        ["clientDataJSON", "authenticatorData", "publicKey", "attestationObject", "signature", "userHandle"]
    {
        if let Some(value) = response.get_mut(field) {
            base64url(value);
        }
    }
    credential
}
