//! Authorization requests, the rules (OpenID Connect Core 1.0 §3.1.2, RFC 7636 PKCE, RFC 9126
//! PAR, RFC 9207 `iss`): which parameters a request may carry and what each may hold, which
//! errors may be sent back to the client and which only shown, how a PKCE verifier is checked,
//! and which factor a requested `acr` allows. No I/O.
//!
//! Two stages, because an error may only be redirected to a redirect URI the client registered
//! (RFC 6749 §4.1.2.1): [`Target`] establishes the client and redirect URI from the raw
//! parameters (a failure is shown on a page, never redirected), then [`AuthorizationRequest::
//! validate`] checks the rest (a failure goes back to the client with `state` and `iss`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use subtle::ConstantTimeEq;

use super::oauth_error::{OAuthError, OAuthErrorCode};

/// `acr` of a sign-in with a passkey or security key: phishing-resistant (OpenID EAP ACR Values).
pub const ACR_PHISHING_RESISTANT: &str = "phr";
/// `acr` of a phishing-resistant sign-in with a hardware-protected key. Countersign cannot tell
/// a hardware key from a synced passkey without attestation, so it never claims this one.
pub const ACR_PHISHING_RESISTANT_HARDWARE: &str = "phrh";
/// `acr` of a number-matched push approved with the phone's device key.
pub const ACR_NUMBER_MATCHED_PUSH: &str = "urn:countersign:acr:push:number-matching";
/// Microsoft Entra's `acr` values for an external method (by factor type), those a possession
/// factor meets: both a number-matched push (the phone's key) and a passkey are possession.
pub const ENTRA_POSSESSION_ACRS: [&str; 4] =
    ["possession", "possessionorinherence", "knowledgeorpossession", "knowledgeorpossessionorinherence"];

/// Longest `state`, `nonce` or hint accepted: enough for any real client, small enough to keep
/// stored requests and URLs bounded.
pub const MAX_STATE_LEN: usize = 1024;
pub const MAX_NONCE_LEN: usize = 256;
pub const MAX_HINT_LEN: usize = 4096;
/// Longest `scope` and `acr_values` strings.
pub const MAX_SCOPE_LEN: usize = 1024;
/// Longest `claims` request (JSON).
pub const MAX_CLAIMS_LEN: usize = 4096;
/// Most parameters in one request (a flood of junk parameters is refused, not parsed).
pub const MAX_PARAMS: usize = 64;

/// The request's parameters, each at most once (RFC 6749 §3.1: parameters must not repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

/// Why the raw parameters cannot even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("the parameter `{0}` is repeated")]
    Repeated(String),
    #[error("more than {MAX_PARAMS} parameters")]
    TooMany,
}

impl Params {
    /// From decoded query or form pairs. Empty values count as absent (RFC 6749 §3.1).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ParamsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            let (name, value) = (name.into(), value.into());
            if map.len() >= MAX_PARAMS {
                return Err(ParamsError::TooMany);
            }
            if map.contains_key(&name) {
                return Err(ParamsError::Repeated(name));
            }
            if !value.is_empty() {
                map.insert(name, value);
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The names present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Adds `name` unless present (a request object may leave `client_id` to its `iss`).
    pub fn insert_if_absent(&mut self, name: &str, value: &str) {
        self.0.entry(name.to_owned()).or_insert_with(|| value.to_owned());
    }

    pub fn into_pairs(self) -> impl Iterator<Item = (String, String)> {
        self.0.into_iter()
    }
}

/// Where errors may go: the client named and the redirect URI it presented. Only what this
/// holds after [`Target::check_redirect_uri`] may receive a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub client_id: String,
    pub redirect_uri: String,
}

/// Why a request cannot be sent back to its client: shown on a page (400), never redirected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the request has no client_id")]
    MissingClient,
    #[error("the client is unknown or revoked")]
    UnknownClient,
    #[error("the request has no redirect_uri")]
    MissingRedirectUri,
    #[error("the redirect_uri is not one this client registered")]
    RedirectUriMismatch,
    #[error("{0}")]
    Params(#[from] ParamsError),
}

impl Target {
    /// The client and redirect URI as presented (not yet trusted).
    pub fn presented(params: &Params) -> Result<Self, TargetError> {
        let client_id = params.get("client_id").ok_or(TargetError::MissingClient)?;
        let redirect_uri = params.get("redirect_uri").ok_or(TargetError::MissingRedirectUri)?;
        Ok(Self { client_id: client_id.to_owned(), redirect_uri: redirect_uri.to_owned() })
    }

    /// `registered` is true when the client has this exact redirect URI (byte for byte).
    pub fn check_redirect_uri(self, registered: bool) -> Result<Self, TargetError> {
        if registered { Ok(self) } else { Err(TargetError::RedirectUriMismatch) }
    }
}

/// What a client may ask for with `prompt` (OIDC Core §3.1.2.1). Every request is a fresh
/// interactive MFA step, so `none` can never be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    pub login: bool,
}

/// Which factors may answer, from the requested `acr` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorPolicy {
    /// A number-matched push or a passkey.
    Any,
    /// Only a passkey (`acr_values=phr`, or `phr` as the only essential `acr`).
    PasskeyOnly,
}

/// What the client gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseKind {
    /// `response_type=code`: a code in the redirect's query, PKCE `S256` required.
    Code,
    /// `response_type=id_token` with `response_mode=form_post` and an `id_token_hint`: the
    /// Microsoft Entra external method profile; the ID token is posted back by form.
    IdToken,
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub target: Target,
    pub response: ResponseKind,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// `BASE64URL(SHA256(code_verifier))`, 43 characters (the code flow only).
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<u32>,
    /// The requested `acr` values, in the client's order of preference.
    pub acr_values: Vec<String>,
    /// Whether the requested `acr` is essential (a `claims` request): then the ID token must
    /// carry one of them or the sign-in fails.
    pub acr_essential: bool,
    /// The `amr` values a `claims` request lists (Entra: the methods it accepts).
    pub amr_values: Vec<String>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
}

/// Parameters that only a pushed or signed request may use to name a user: on a bare
/// `/authorize` they are ignored for prompting (a public URL must not send pushes).
pub const USER_NAMING_PARAMS: [&str; 2] = ["login_hint", "id_token_hint"];

fn error(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description)
}

pub(super) fn bounded<'a>(params: &'a Params, name: &str, max: usize) -> Result<Option<&'a str>, OAuthError> {
    match params.get(name) {
        Some(value) if value.len() > max => {
            Err(OAuthError::invalid_request(format!("`{name}` is longer than {max} bytes")))
        }
        Some(value) if value.chars().any(char::is_control) => {
            Err(OAuthError::invalid_request(format!("`{name}` holds control characters")))
        }
        other => Ok(other),
    }
}

impl AuthorizationRequest {
    /// Checks everything but the target (already established). `request` and `request_uri` are
    /// the caller's to resolve first: here they are refused (a request object inside a request
    /// object, or one the caller did not expand).
    pub fn validate(target: Target, params: &Params) -> Result<Self, OAuthError> {
        if params.get("request").is_some() {
            return Err(error(
                OAuthErrorCode::RequestNotSupported,
                "`request` must be resolved before validation",
            ));
        }
        if params.get("request_uri").is_some() {
            return Err(error(
                OAuthErrorCode::InvalidRequestUri,
                "`request_uri` must be resolved before validation",
            ));
        }
        let response = match (params.get("response_type"), params.get("response_mode")) {
            (Some("code"), None | Some("query")) => ResponseKind::Code,
            (Some("code"), Some(_)) => {
                return Err(OAuthError::invalid_request("`response_mode` must be `query` for the code flow"));
            }
            (Some("id_token"), Some("form_post")) => ResponseKind::IdToken,
            (Some("id_token"), _) => {
                return Err(OAuthError::invalid_request(
                    "`response_type=id_token` is served with `response_mode=form_post` only",
                ));
            }
            (Some(other), _) => {
                return Err(error(
                    OAuthErrorCode::UnsupportedResponseType,
                    format!(
                        "response_type `{}` is not supported: use `code`",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
            (None, _) => return Err(OAuthError::invalid_request("`response_type` is required")),
        };
        let scope = scope(params)?;
        let state = bounded(params, "state", MAX_STATE_LEN)?.map(str::to_owned);
        let nonce = bounded(params, "nonce", MAX_NONCE_LEN)?.map(str::to_owned);
        let code_challenge = match response {
            ResponseKind::Code => Some(code_challenge(params)?),
            // The ID token goes straight back by form: no code to bind a verifier to.
            ResponseKind::IdToken => None,
        };
        let prompt = prompt(params)?;
        let max_age = match params.get("max_age") {
            None => None,
            Some(value) => Some(value.parse::<u32>().map_err(|_| {
                OAuthError::invalid_request("`max_age` must be a non-negative integer of seconds")
            })?),
        };
        let (acr_values, acr_essential, amr_values) = acr(params)?;
        let login_hint = bounded(params, "login_hint", MAX_HINT_LEN)?.map(str::to_owned);
        let id_token_hint = bounded(params, "id_token_hint", MAX_HINT_LEN)?.map(str::to_owned);
        if response == ResponseKind::IdToken && (id_token_hint.is_none() || nonce.is_none()) {
            return Err(OAuthError::invalid_request(
                "`response_type=id_token` needs `id_token_hint` and `nonce`",
            ));
        }
        Ok(Self {
            target,
            response,
            scope,
            state,
            nonce,
            code_challenge,
            prompt,
            max_age,
            acr_values,
            acr_essential,
            amr_values,
            login_hint,
            id_token_hint,
        })
    }

    /// Which factors may answer this request.
    pub fn factor_policy(&self) -> FactorPolicy {
        let phishing_resistant =
            |acr: &str| acr == ACR_PHISHING_RESISTANT || acr == ACR_PHISHING_RESISTANT_HARDWARE;
        if !self.acr_values.is_empty() && self.acr_values.iter().all(|acr| phishing_resistant(acr)) {
            FactorPolicy::PasskeyOnly
        } else {
            FactorPolicy::Any
        }
    }
}

pub(super) fn scope(params: &Params) -> Result<Vec<String>, OAuthError> {
    let raw = bounded(params, "scope", MAX_SCOPE_LEN)?
        .ok_or_else(|| OAuthError::invalid_request("`scope` is required and must include `openid`"))?;
    let mut scope: Vec<String> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if !token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)) {
            return Err(error(OAuthErrorCode::InvalidScope, "a scope holds a character RFC 6749 forbids"));
        }
        if !scope.iter().any(|s| s == token) {
            scope.push(token.to_owned());
        }
    }
    if !scope.iter().any(|s| s == "openid") {
        return Err(error(OAuthErrorCode::InvalidScope, "`scope` must include `openid`"));
    }
    Ok(scope)
}

fn code_challenge(params: &Params) -> Result<String, OAuthError> {
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some("plain") => {
            return Err(OAuthError::invalid_request("PKCE method `plain` is refused: use `S256`"));
        }
        Some(_) => return Err(OAuthError::invalid_request("unknown `code_challenge_method`: use `S256`")),
        // RFC 7636 §4.3: absent means `plain`.
        None => {
            return Err(OAuthError::invalid_request(
                "PKCE is required: send `code_challenge` with `code_challenge_method=S256`",
            ));
        }
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        OAuthError::invalid_request(
            "PKCE is required: send `code_challenge` with `code_challenge_method=S256`",
        )
    })?;
    let decoded = URL_SAFE_NO_PAD.decode(challenge).ok();
    if challenge.len() != 43 || decoded.is_none_or(|d| d.len() != 32) {
        return Err(OAuthError::invalid_request(
            "`code_challenge` must be BASE64URL(SHA256(code_verifier)): 43 characters",
        ));
    }
    Ok(challenge.to_owned())
}

fn prompt(params: &Params) -> Result<Prompt, OAuthError> {
    let Some(raw) = params.get("prompt") else { return Ok(Prompt::default()) };
    let values: Vec<&str> = raw.split(' ').filter(|v| !v.is_empty()).collect();
    let mut prompt = Prompt::default();
    for value in &values {
        match *value {
            // Each sign-in here is a fresh, interactive second factor: never silent.
            "none" if values.len() == 1 => {
                return Err(error(OAuthErrorCode::LoginRequired, "every sign-in here needs the user"));
            }
            "none" => return Err(OAuthError::invalid_request("`prompt=none` cannot be combined")),
            "login" => prompt.login = true,
            // Nothing to consent to or select: the client already chose the user.
            "consent" | "select_account" => {}
            _ => return Err(OAuthError::invalid_request("unknown `prompt` value")),
        }
    }
    Ok(prompt)
}

/// `acr_values` (voluntary) or `claims.id_token.acr` (essential, with `value` or `values`), and
/// the `amr` values `claims.id_token.amr` lists.
pub(super) fn acr(params: &Params) -> Result<(Vec<String>, bool, Vec<String>), OAuthError> {
    let voluntary: Vec<String> = bounded(params, "acr_values", MAX_SCOPE_LEN)?
        .map(|raw| raw.split(' ').filter(|v| !v.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let Some(claims) = bounded(params, "claims", MAX_CLAIMS_LEN)? else {
        return Ok((voluntary, false, Vec::new()));
    };
    let claims: serde_json::Value = serde_json::from_str(claims)
        .map_err(|_| OAuthError::invalid_request("`claims` is not a JSON object"))?;
    let Some(object) = claims.as_object() else {
        return Err(OAuthError::invalid_request("`claims` is not a JSON object"));
    };
    let amr = requested_values(object.get("id_token").and_then(|id_token| id_token.get("amr")))?;
    let acr = object.get("id_token").and_then(|id_token| id_token.get("acr"));
    let Some(acr) = acr.filter(|a| !a.is_null()) else { return Ok((voluntary, false, amr)) };
    let essential = acr.get("essential").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let requested = requested_values(Some(acr))?;
    if requested.is_empty() {
        return Ok((voluntary, false, amr));
    }
    if essential && !requested.iter().any(|acr| is_supported_acr(acr)) {
        return Err(OAuthError::invalid_request("none of the essential `acr` values can be met here"));
    }
    Ok((requested, essential, amr))
}

/// The `value` and `values` of one claim's request (OIDC Core §5.5.1), as strings.
fn requested_values(claim: Option<&serde_json::Value>) -> Result<Vec<String>, OAuthError> {
    let Some(claim) = claim.filter(|c| !c.is_null()) else { return Ok(Vec::new()) };
    let not_a_string = || OAuthError::invalid_request("a `claims` value is not a string");
    let mut values = Vec::new();
    if let Some(value) = claim.get("value") {
        values.push(value.as_str().ok_or_else(not_a_string)?.to_owned());
    }
    if let Some(list) = claim.get("values") {
        let list =
            list.as_array().ok_or_else(|| OAuthError::invalid_request("`claims` values is not an array"))?;
        for value in list {
            values.push(value.as_str().ok_or_else(not_a_string)?.to_owned());
        }
    }
    Ok(values)
}

/// An `acr` value Countersign can assert.
pub fn is_supported_acr(acr: &str) -> bool {
    acr == ACR_PHISHING_RESISTANT || acr == ACR_NUMBER_MATCHED_PUSH || ENTRA_POSSESSION_ACRS.contains(&acr)
}

/// Whether `verifier` (RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`) hashes to
/// `challenge`. Compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 Appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &[(&str, &str)]) -> Params {
        let mut pairs = vec![
            ("client_id", "client-1"),
            ("redirect_uri", "https://rp.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in extra {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name, value));
        }
        Params::from_pairs(pairs).unwrap()
    }

    fn validate(extra: &[(&str, &str)]) -> Result<AuthorizationRequest, OAuthError> {
        let params = params(extra);
        AuthorizationRequest::validate(Target::presented(&params).unwrap(), &params)
    }

    fn code_of(result: Result<AuthorizationRequest, OAuthError>) -> &'static str {
        result.unwrap_err().code.as_str()
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example_only() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!pkce_matches(CHALLENGE, CHALLENGE), "the challenge is not its own verifier");
        assert!(!pkce_matches("short", CHALLENGE));
        assert!(!pkce_matches(&format!("{VERIFIER} "), CHALLENGE));
    }

    #[test]
    fn a_request_needs_pkce_s256() {
        assert!(validate(&[]).is_ok());
        for (extra, code) in [
            (&[("code_challenge_method", "plain")][..], "invalid_request"),
            (&[("code_challenge_method", "s256")][..], "invalid_request"),
            (&[("code_challenge", "abc")][..], "invalid_request"),
        ] {
            assert_eq!(code_of(validate(extra)), code, "{extra:?}");
        }
        let mut without = params(&[]);
        without.0.remove("code_challenge_method");
        assert_eq!(
            code_of(AuthorizationRequest::validate(Target::presented(&without).unwrap(), &without)),
            "invalid_request"
        );
        let mut without = params(&[]);
        without.0.remove("code_challenge");
        assert_eq!(
            code_of(AuthorizationRequest::validate(Target::presented(&without).unwrap(), &without)),
            "invalid_request"
        );
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let repeated = Params::from_pairs([("state", "a"), ("state", "b")]);
        assert_eq!(repeated, Err(ParamsError::Repeated("state".into())));
        let many: Vec<(String, String)> =
            (0..=MAX_PARAMS).map(|i| (format!("p{i}"), "x".to_owned())).collect();
        assert_eq!(Params::from_pairs(many), Err(ParamsError::TooMany));
    }

    #[test]
    fn scope_must_hold_openid() {
        assert_eq!(code_of(validate(&[("scope", "profile")])), "invalid_scope");
        assert_eq!(code_of(validate(&[("scope", "openid \"x")])), "invalid_scope");
        assert_eq!(validate(&[("scope", "openid  profile openid")]).unwrap().scope, ["openid", "profile"]);
    }

    #[test]
    fn only_the_code_flow_is_served_here() {
        assert_eq!(code_of(validate(&[("response_type", "token")])), "unsupported_response_type");
        assert_eq!(code_of(validate(&[("response_type", "code id_token")])), "unsupported_response_type");
        assert_eq!(code_of(validate(&[("response_mode", "fragment")])), "invalid_request");
        assert_eq!(code_of(validate(&[("request", "eyJ")])), "request_not_supported");
    }

    #[test]
    fn prompt_none_cannot_be_met() {
        assert_eq!(code_of(validate(&[("prompt", "none")])), "login_required");
        assert_eq!(code_of(validate(&[("prompt", "none login")])), "invalid_request");
        assert_eq!(code_of(validate(&[("prompt", "bogus")])), "invalid_request");
        assert!(validate(&[("prompt", "login consent")]).unwrap().prompt.login);
    }

    #[test]
    fn bounds_and_control_characters() {
        let long = "x".repeat(MAX_STATE_LEN + 1);
        assert_eq!(code_of(validate(&[("state", &long)])), "invalid_request");
        assert_eq!(code_of(validate(&[("nonce", "a\u{0}b")])), "invalid_request");
        assert_eq!(code_of(validate(&[("max_age", "-1")])), "invalid_request");
        assert_eq!(validate(&[("max_age", "0")]).unwrap().max_age, Some(0));
    }

    #[test]
    fn phr_alone_allows_only_a_passkey() {
        assert_eq!(validate(&[]).unwrap().factor_policy(), FactorPolicy::Any);
        assert_eq!(validate(&[("acr_values", "phr")]).unwrap().factor_policy(), FactorPolicy::PasskeyOnly);
        assert_eq!(
            validate(&[("acr_values", &format!("phr {ACR_NUMBER_MATCHED_PUSH}"))]).unwrap().factor_policy(),
            FactorPolicy::Any
        );
        let essential = r#"{"id_token":{"acr":{"essential":true,"values":["phr"]}}}"#;
        let request = validate(&[("claims", essential)]).unwrap();
        assert_eq!((request.factor_policy(), request.acr_essential), (FactorPolicy::PasskeyOnly, true));
        let impossible = r#"{"id_token":{"acr":{"essential":true,"value":"urn:other"}}}"#;
        assert_eq!(code_of(validate(&[("claims", impossible)])), "invalid_request");
        assert_eq!(code_of(validate(&[("claims", "[1]")])), "invalid_request");
    }

    #[test]
    fn the_target_needs_a_client_and_a_registered_redirect_uri() {
        let empty = Params::from_pairs([("client_id", "")]).unwrap();
        assert_eq!(Target::presented(&empty), Err(TargetError::MissingClient));
        let target = Target::presented(&params(&[])).unwrap();
        assert_eq!(target.clone().check_redirect_uri(false), Err(TargetError::RedirectUriMismatch));
        assert_eq!(target.clone().check_redirect_uri(true), Ok(target));
    }
}
