//! The discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414): what this provider
//! serves, said exactly — no endpoint or feature it does not have. Refresh tokens and hybrid
//! flows are absent on purpose (an MFA step needs none of them); the implicit `id_token` answer
//! is served only to a request carrying an upstream issuer's hint (the Entra profile).

use serde_json::{Value, json};

use super::authorization::{ACR_NUMBER_MATCHED_PUSH, ACR_PHISHING_RESISTANT, ENTRA_POSSESSION_ACRS};
use super::client_auth::ASSERTION_ALGORITHMS;
use super::clients::AuthMethod;
use super::flow::{
    AUTHORIZE_PATH, CIBA_GRANT_TYPE, CIBA_PATH, OidcSettings, PAR_PATH, TOKEN_PATH, USERINFO_PATH,
};
use super::keys::{JWKS_PATH, SigningAlg};

pub fn document(settings: &OidcSettings) -> Value {
    let algorithms: Vec<&str> = SigningAlg::ALL.iter().map(|alg| alg.as_str()).collect();
    let assertion_algorithms: Vec<String> =
        ASSERTION_ALGORITHMS.iter().map(|alg| format!("{alg:?}")).collect();
    let auth_methods: Vec<&str> = AuthMethod::ALL.iter().map(|method| method.as_str()).collect();
    let mut acr_values = vec![ACR_PHISHING_RESISTANT, ACR_NUMBER_MATCHED_PUSH];
    acr_values.extend(ENTRA_POSSESSION_ACRS);
    json!({
        "issuer": settings.issuer,
        "authorization_endpoint": settings.endpoint(AUTHORIZE_PATH),
        "pushed_authorization_request_endpoint": settings.endpoint(PAR_PATH),
        // A bare /authorize names nobody to prompt: the user comes from a pushed request.
        "require_pushed_authorization_requests": true,
        "token_endpoint": settings.endpoint(TOKEN_PATH),
        "userinfo_endpoint": settings.endpoint(USERINFO_PATH),
        "jwks_uri": settings.endpoint(JWKS_PATH),
        "scopes_supported": ["openid", "profile"],
        // `id_token` by form post only with an upstream issuer's hint (the Entra profile).
        "response_types_supported": ["code", "id_token"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "implicit", CIBA_GRANT_TYPE],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algorithms.clone(),
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": acr_values,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "preferred_username"],
        "claims_parameter_supported": true,
        "claim_types_supported": ["normal"],
        // Signed request objects (RFC 9101) by value, from clients that registered keys.
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": assertion_algorithms.clone(),
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["login", "consent", "select_account"],
        // CIBA Core §4: decoupled sign-in, number-matched (push mode is not offered).
        "backchannel_authentication_endpoint": settings.endpoint(CIBA_PATH),
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_authentication_request_signing_alg_values_supported": assertion_algorithms,
        "backchannel_user_code_parameter_supported": false,
    })
}
