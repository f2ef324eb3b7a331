//! A simulated phone built on `countersign-mobile-protocol`, so tests never hand-craft what a
//! phone would sign.

use countersign_mobile_protocol::{
    ActivationCode, ChallengeAnswer, ChallengeResponse, Decision, DeviceId, Enrollment, EnrollmentRequest,
    EnrollmentResponse, EnrollmentUri, HttpRequest, PublicKey, PushRegistration, RequestHeaders,
    SignedChallengeDetails, generate_pkcs8, key_pair_from_pkcs8,
};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

/// One phone with its own hardware key.
#[derive(Debug)]
pub struct TestDevice {
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    pub enrolled: Option<EnrollmentResponse>,
    counter: u64,
}

impl Default for TestDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDevice {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = generate_pkcs8(&rng).unwrap();
        let key_pair = key_pair_from_pkcs8(&pkcs8, &rng).unwrap();
        Self { key_pair, rng, enrolled: None, counter: 0 }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_key_pair(&self.key_pair).unwrap()
    }

    /// The signed enrollment body for an activation URI, as a phone would send it.
    pub fn enrollment(&self, activation_uri: &str, push: PushRegistration) -> EnrollmentRequest {
        let uri = EnrollmentUri::parse(activation_uri).unwrap();
        self.enrollment_with(uri.server, uri.code, self.public_key(), push)
    }

    /// Like [`TestDevice::enrollment`], with every signed field chosen by the test.
    pub fn enrollment_with(
        &self,
        server: countersign_mobile_protocol::ServerUrl,
        code: ActivationCode,
        public_key: PublicKey,
        push: PushRegistration,
    ) -> EnrollmentRequest {
        Enrollment {
            server,
            activation_code: code,
            public_key,
            push,
            device_name: "Test Phone".into(),
            platform: "TestOS 1".into(),
        }
        .sign(&self.key_pair, &self.rng)
        .unwrap()
    }

    pub fn device_id(&self) -> DeviceId {
        self.enrolled.as_ref().expect("device not enrolled").device_id.clone()
    }

    /// Signed-request headers for `method path` with `body`, timestamped `unix_seconds`.
    pub fn sign_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        unix_seconds: u64,
    ) -> Vec<(&'static str, String)> {
        let request = HttpRequest { method, path_and_query, body };
        RequestHeaders::sign(&self.key_pair, &self.rng, self.device_id(), &request, unix_seconds)
            .unwrap()
            .to_pairs()
            .to_vec()
    }

    /// Verifies server-signed challenge details as a phone must before showing them.
    pub fn verify_details<'a>(
        &self,
        details: &'a SignedChallengeDetails,
    ) -> &'a countersign_mobile_protocol::ChallengeDetails {
        let enrolled = self.enrolled.as_ref().expect("device not enrolled");
        details.verify(&enrolled.server_public_key, &enrolled.server_id, &enrolled.device_id).unwrap()
    }

    /// A signed answer with a chosen counter (to replay an old one).
    pub fn answer_with_counter(
        &self,
        details: &countersign_mobile_protocol::ChallengeDetails,
        decision: Decision,
        number: &str,
        counter: u64,
    ) -> ChallengeResponse {
        ChallengeAnswer::new(details, decision, number, self.device_id(), counter)
            .sign(&self.key_pair, &self.rng)
            .unwrap()
    }

    /// A signed answer to a challenge, with the next counter.
    pub fn answer(
        &mut self,
        details: &countersign_mobile_protocol::ChallengeDetails,
        decision: Decision,
        number: &str,
    ) -> ChallengeResponse {
        self.counter += 1;
        ChallengeAnswer::new(details, decision, number, self.device_id(), self.counter)
            .sign(&self.key_pair, &self.rng)
            .unwrap()
    }
}
