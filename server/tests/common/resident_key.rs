//! A software authenticator that keeps one discoverable credential (resident key, user
//! verification): it answers a request without `allowCredentials` and returns the user handle,
//! as an admin's passkey does. Used as a browser page would use it, on `http://localhost`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passkey::authenticator::Authenticator;
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::Aaguid;
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use serde_json::{Value, json};

use super::soft_key::{ORIGIN, VerifiedUser, to_json};

/// An authenticator holding one discoverable credential (it answers a request without
/// `allowCredentials`, and returns the user handle).
type Discoverable = Authenticator<Option<Passkey>, VerifiedUser, RustCryptoBackend>;

pub struct ResidentKeyAuthenticator {
    authenticator: Option<Discoverable>,
}

fn fresh() -> Discoverable {
    let mut authenticator = Authenticator::new(Aaguid::new_empty(), None, VerifiedUser, RustCryptoBackend);
    authenticator.set_make_credentials_with_signature_counter(true);
    authenticator
}

impl ResidentKeyAuthenticator {
    pub fn new() -> Self {
        Self { authenticator: Some(fresh()) }
    }

    pub async fn create(&mut self, public_key: &Value) -> Value {
        let options: CredentialCreationOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let mut client = Client::new(self.authenticator.take().unwrap()).allows_insecure_localhost(true);
        let origin = url::Url::parse(ORIGIN).unwrap();
        let credential = client.register(&origin, options, DefaultClientData).await.unwrap();
        self.authenticator = Some(std::mem::replace(client.authenticator_mut(), fresh()));
        to_json(serde_json::to_value(&credential).unwrap())
    }

    pub async fn get(&mut self, public_key: &Value) -> Value {
        let options: CredentialRequestOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let mut client = Client::new(self.authenticator.take().unwrap()).allows_insecure_localhost(true);
        let origin = url::Url::parse(ORIGIN).unwrap();
        let credential = client.authenticate(&origin, options, DefaultClientData).await.unwrap();
        self.authenticator = Some(std::mem::replace(client.authenticator_mut(), fresh()));
        to_json(serde_json::to_value(&credential).unwrap())
    }

    pub fn key(&self) -> Passkey {
        self.authenticator.as_ref().unwrap().store().clone().unwrap()
    }

    /// Puts the key back as it was (a backup restored: a clone of the key).
    pub fn restore(&mut self, key: Passkey) {
        *self.authenticator.as_mut().unwrap().store_mut() = Some(key);
    }

    /// Signs `auth_data` with `client_data_json` again with the credential's private key: what
    /// a client holding the key can produce.
    pub fn resign(&self, assertion: &Value, auth_data: &[u8]) -> Value {
        use passkey::crypto::SecretKeyT;
        use passkey::crypto::rust_crypto::RustCryptoSecretKey;
        let mut key = RustCryptoSecretKey::from_cose_key(&self.key().key).unwrap();
        let client_data = b64(&assertion["response"]["clientDataJSON"]);
        let hash = ring::digest::digest(&ring::digest::SHA256, &client_data);
        let signature = key.sign(&[auth_data, hash.as_ref()].concat());
        let mut forged = assertion.clone();
        forged["response"]["authenticatorData"] = json!(URL_SAFE_NO_PAD.encode(auth_data));
        forged["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
        forged
    }
}

pub fn b64(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap()
}
