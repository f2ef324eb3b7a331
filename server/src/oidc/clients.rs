//! OIDC clients, the rules: what a client is, which redirect URIs, key sets and methods it may
//! register, and how a presented redirect URI is matched. No I/O.
//!
//! Redirect URIs are validated once, at registration, then stored exactly as given and compared
//! byte for byte (OAuth 2.0 Security BCP §4.1.3): no normalisation, no prefix or wildcard match.
//! A client's secret is made and hashed like an app API key (256 random bits, SHA-256, compared
//! in constant time: [`crate::api_keys::key_matches`]).

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use time::OffsetDateTime;

/// Random bytes in a client id (128 bits: unguessable, 22 URL-safe characters).
pub const CLIENT_ID_BYTES: usize = 16;
/// Random bytes in a client secret (256 bits, as for API keys).
pub const CLIENT_SECRET_BYTES: usize = 32;
/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest redirect URI or `jwks_uri` accepted.
pub const MAX_URI_LEN: usize = 2000;
/// Largest client key set accepted (inline or fetched), in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys in a client key set.
pub const MAX_JWKS_KEYS: usize = 10;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A client's public identifier: random, URL-safe, issued by us.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub String);

impl ClientId {
    /// Whether `s` has the shape of an id we issue (so an arbitrary presented string is never
    /// echoed into the audit trail as a client id).
    pub fn is_well_formed(s: &str) -> bool {
        s.len() == 22 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a client authenticates at the token endpoint (OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client: no credential, PKCE mandatory.
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];

    /// The registered name (`token_endpoint_auth_method`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn uses_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = ClientRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ClientRuleError::UnknownAuthMethod(s.to_owned()))
    }
}

/// The algorithm a client's ID tokens are signed with (`id_token_signed_response_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdTokenAlg {
    #[default]
    Es256,
    Rs256,
}

impl IdTokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenAlg::Es256 => "ES256",
            IdTokenAlg::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for IdTokenAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdTokenAlg {
    type Err = ClientRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(IdTokenAlg::Es256),
            "RS256" => Ok(IdTokenAlg::Rs256),
            other => Err(ClientRuleError::UnknownIdTokenAlg(other.to_owned())),
        }
    }
}

/// Where a `private_key_jwt` client's public keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientKeys {
    /// Secret-based and public clients have none.
    None,
    /// Registered inline (validated: public signing keys only).
    Inline(ClientJwks),
    /// Fetched from the client's `jwks_uri` (https, or http on loopback), cached.
    Uri(String),
}

/// A validated client key set, with the exact JSON it was registered as.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientJwks {
    json: String,
    keys: Vec<Jwk>,
}

impl ClientJwks {
    /// The key set as registered (stored as is).
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.common.key_id.as_deref() == Some(kid))
    }
}

/// How a CIBA client learns that the user answered (CIBA Core §5): it polls the token
/// endpoint, or it is pinged at its notification endpoint first. Push mode is not offered
/// (FAPI-CIBA forbids it too: tokens would go to a URL instead of being fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CibaDelivery {
    Poll,
    Ping { notification_endpoint: String },
}

impl CibaDelivery {
    /// The registered name (`backchannel_token_delivery_mode`).
    pub fn mode(&self) -> &'static str {
        match self {
            CibaDelivery::Poll => "poll",
            CibaDelivery::Ping { .. } => "ping",
        }
    }
}

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: ClientId,
    pub name: String,
    /// Exactly as registered; matched byte for byte.
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    /// SHA-256 of the secret, for `client_secret_basic` / `client_secret_post` only.
    pub secret_hash: Option<Vec<u8>>,
    pub keys: ClientKeys,
    pub id_token_alg: IdTokenAlg,
    /// Whether it may ask for decoupled sign-ins (CIBA), and how it learns of the answer.
    pub ciba: Option<CibaDelivery>,
    pub created_at: OffsetDateTime,
    /// Who registered it (the audit actor's spelling, e.g. `cli`).
    pub created_by: String,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Client {
    /// Exact, byte-for-byte comparison with a registered redirect URI: no case folding, no
    /// trailing-slash, port, percent-encoding or query tolerance.
    pub fn redirect_uri_matches(&self, presented: &str) -> bool {
        self.redirect_uris.iter().any(|registered| registered.as_bytes() == presented.as_bytes())
    }

    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// A public client: authenticates with its id alone, so PKCE is its only proof.
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }
}

/// What registration refuses, each naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRuleError {
    #[error("client names are 1-100 printable characters")]
    InvalidName,
    #[error("a client needs at least one --redirect-uri (or --ciba, for a decoupled-only client)")]
    NoRedirectUri,
    #[error("a public client cannot use CIBA: it cannot prove who asks to prompt the user")]
    CibaPublicClient,
    #[error("unknown CIBA delivery mode `{0}` (known: poll ping)")]
    UnknownCibaMode(String),
    #[error("CIBA ping mode needs --notification-endpoint, and only ping mode has one")]
    CibaEndpoint,
    #[error("notification endpoint `{uri}` is refused: {reason}")]
    NotificationEndpoint { uri: String, reason: &'static str },
    #[error("at most {MAX_REDIRECT_URIS} redirect URIs per client")]
    TooManyRedirectUris,
    #[error("redirect URI `{uri}` is refused: {reason}")]
    RedirectUri { uri: String, reason: &'static str },
    #[error(
        "unknown token endpoint auth method `{0}` (known: client_secret_basic client_secret_post private_key_jwt none)"
    )]
    UnknownAuthMethod(String),
    #[error("unknown ID token algorithm `{0}` (known: ES256 RS256)")]
    UnknownIdTokenAlg(String),
    #[error("private_key_jwt needs the client's public keys: exactly one of --jwks-file or --jwks-uri")]
    KeysRequired,
    #[error("only private_key_jwt clients have keys: drop --jwks-file / --jwks-uri for {0}")]
    KeysNotAllowed(AuthMethod),
    #[error("jwks_uri `{uri}` is refused: {reason}")]
    JwksUri { uri: String, reason: &'static str },
    #[error("the client key set is refused: {0}")]
    Jwks(String),
}

fn redirect_error(uri: &str, reason: &'static str) -> ClientRuleError {
    ClientRuleError::RedirectUri { uri: uri.to_owned(), reason }
}

/// Client names: 1–100 characters, no control characters.
pub fn validate_name(name: &str) -> Result<(), ClientRuleError> {
    let length = name.chars().count();
    if (1..=100).contains(&length) && !name.chars().any(char::is_control) && name.trim() == name {
        Ok(())
    } else {
        Err(ClientRuleError::InvalidName)
    }
}

/// Whether a URL names this machine's loopback interface (RFC 8252 §7.3).
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// Checks the characters and shape every registered URI must have before it is parsed.
fn raw_uri_problem(uri: &str) -> Option<&'static str> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return Some("it must be 1-2000 characters");
    }
    if uri.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii()) {
        return Some("it contains whitespace, control or non-ASCII characters");
    }
    if uri.contains('#') {
        return Some("it has a fragment");
    }
    if uri.contains('*') {
        return Some("wildcards are not allowed");
    }
    // Browsers and URL parsers read `\` as `/`: a host hidden behind one is a parser confusion.
    if uri.contains('\\') {
        return Some("it contains a backslash");
    }
    None
}

/// Parses an absolute http(s) URI and applies the rules shared by redirect URIs and
/// `jwks_uri`: no userinfo, https unless the host is loopback.
fn web_uri_problem(uri: &str) -> Result<url::Url, &'static str> {
    if let Some(problem) = raw_uri_problem(uri) {
        return Err(problem);
    }
    let url = url::Url::parse(uri).map_err(|_| "it is not an absolute URI")?;
    // The raw text must spell `scheme://authority` itself: `url` would accept `https:host/x`.
    let (_, rest) = uri.split_once("://").ok_or("it is not an absolute URI with `//` and a host")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err("it has userinfo (user:password@)");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err("http is only allowed for loopback (127.0.0.1, [::1], localhost); use https"),
        _ => Err("only https (or http on loopback) URIs are allowed"),
    }
}

/// A redirect URI must be absolute, https (http only on loopback), without fragment, userinfo
/// or wildcard.
pub fn validate_redirect_uri(uri: &str) -> Result<(), ClientRuleError> {
    web_uri_problem(uri).map(|_| ()).map_err(|reason| redirect_error(uri, reason))
}

pub fn validate_redirect_uris(uris: &[String]) -> Result<(), ClientRuleError> {
    if uris.is_empty() {
        return Err(ClientRuleError::NoRedirectUri);
    }
    validate_redirect_uri_list(uris)
}

/// A client's redirect URIs and CIBA registration together: a CIBA client may have no
/// redirect URI (a kiosk, a call centre); a CIBA client is confidential; a ping client's
/// notification endpoint is https (http only on loopback), CIBA Core §4.
pub fn validate_flows(
    uris: &[String],
    method: AuthMethod,
    ciba: Option<&CibaDelivery>,
) -> Result<(), ClientRuleError> {
    let Some(ciba) = ciba else { return validate_redirect_uris(uris) };
    if method == AuthMethod::None {
        return Err(ClientRuleError::CibaPublicClient);
    }
    if let CibaDelivery::Ping { notification_endpoint: uri } = ciba {
        if uri.len() > MAX_URI_LEN {
            return Err(ClientRuleError::NotificationEndpoint { uri: uri.clone(), reason: "too long" });
        }
        web_uri_problem(uri)
            .map_err(|reason| ClientRuleError::NotificationEndpoint { uri: uri.clone(), reason })?;
    }
    validate_redirect_uri_list(uris)
}

/// `--ciba MODE` with `--notification-endpoint URI`: the registration they make.
pub fn ciba_delivery(
    mode: Option<&str>,
    endpoint: Option<String>,
) -> Result<Option<CibaDelivery>, ClientRuleError> {
    match (mode, endpoint) {
        (None, None) => Ok(None),
        (Some("poll"), None) => Ok(Some(CibaDelivery::Poll)),
        (Some("ping"), Some(notification_endpoint)) => Ok(Some(CibaDelivery::Ping { notification_endpoint })),
        (Some("poll" | "ping") | None, _) => Err(ClientRuleError::CibaEndpoint),
        (Some(other), _) => Err(ClientRuleError::UnknownCibaMode(other.to_owned())),
    }
}

fn validate_redirect_uri_list(uris: &[String]) -> Result<(), ClientRuleError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(ClientRuleError::TooManyRedirectUris);
    }
    uris.iter().try_for_each(|uri| validate_redirect_uri(uri))
}

/// A `jwks_uri`: https, or http only on loopback; no fragment, no userinfo.
pub fn validate_jwks_uri(uri: &str) -> Result<(), ClientRuleError> {
    web_uri_problem(uri)
        .map(|_| ())
        .map_err(|reason| ClientRuleError::JwksUri { uri: uri.to_owned(), reason })
}

/// Members that only a private or symmetric key has: a set carrying any is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Signing algorithms a client key may name, with the key type each needs.
const KEY_ALGORITHMS: [(&str, &str); 9] = [
    ("ES256", "EC"),
    ("ES384", "EC"),
    ("RS256", "RSA"),
    ("RS384", "RSA"),
    ("RS512", "RSA"),
    ("PS256", "RSA"),
    ("PS384", "RSA"),
    ("PS512", "RSA"),
    ("EdDSA", "OKP"),
];

/// Checks one key of a client set: a public signing key of an allowed type and size.
fn check_key(key: &Value, index: usize) -> Result<Jwk, String> {
    let object = key.as_object().ok_or_else(|| format!("key {index} is not a JSON object"))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(format!("key {index} has private member `{member}`: register public keys only"));
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let kty = text("kty").ok_or_else(|| format!("key {index} has no `kty`"))?;
    match (kty, text("crv")) {
        ("EC", Some("P-256" | "P-384")) | ("RSA", None) | ("OKP", Some("Ed25519")) => {}
        ("EC" | "OKP", crv) => return Err(format!("key {index}: curve {crv:?} is not allowed")),
        _ => return Err(format!("key {index}: key type `{kty}` is not allowed (EC, RSA or OKP)")),
    }
    if let Some(alg) = object.get("alg") {
        let alg = alg.as_str().unwrap_or_default();
        if !KEY_ALGORITHMS.iter().any(|(name, needs)| *name == alg && *needs == kty) {
            return Err(format!("key {index}: algorithm `{alg}` is not allowed for a {kty} key"));
        }
    }
    if object.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err(format!("key {index}: `use` must be `sig`"));
    }
    if object.get("kid").is_some_and(|kid| !kid.is_string()) {
        return Err(format!("key {index}: `kid` must be a string"));
    }
    let jwk: Jwk = serde_json::from_value(key.clone()).map_err(|e| format!("key {index}: {e}"))?;
    if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
        let modulus =
            base64_url_decode(&rsa.n).ok_or_else(|| format!("key {index}: `n` is not base64url"))?;
        let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!("key {index}: RSA keys need at least {MIN_RSA_BITS} bits"));
        }
    }
    jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {index}: {e}"))?;
    Ok(jwk)
}

fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// Validates a client key set (registered inline or fetched from its `jwks_uri`): a JSON
/// `{"keys": [...]}` of 1–10 public signing keys (EC P-256/P-384, RSA ≥ 2048 bits, Ed25519),
/// with distinct `kid`s, a `kid` on every key when there are several.
/// A published key set (fetched from a `jwks_uri`) as a set of the signing keys it holds: a
/// server publishes its encryption keys beside them (every Keycloak realm has an `RSA-OAEP`
/// key with `use: enc`) and keys of algorithms we do not take (ES512); those are left out
/// rather than sinking the set. What is left is then validated as strictly as an inline set.
pub fn published_signing_keys(json: &str) -> Result<ClientJwks, ClientRuleError> {
    let refuse = |reason: String| ClientRuleError::Jwks(reason);
    if json.len() > MAX_JWKS_BYTES {
        return Err(refuse(format!("it is larger than {MAX_JWKS_BYTES} bytes")));
    }
    let mut value: Value = serde_json::from_str(json).map_err(|e| refuse(format!("it is not JSON: {e}")))?;
    if let Some(keys) = value.get_mut("keys").and_then(Value::as_array_mut) {
        keys.retain(|key| {
            let text = |name: &str| key.get(name).and_then(Value::as_str);
            let for_signing = text("use").is_none_or(|usage| usage == "sig");
            let known_alg = text("alg").is_none_or(|alg| KEY_ALGORITHMS.iter().any(|(name, _)| *name == alg));
            for_signing && known_alg
        });
    }
    validate_jwks(&value.to_string())
}

pub fn validate_jwks(json: &str) -> Result<ClientJwks, ClientRuleError> {
    let refuse = |reason: String| ClientRuleError::Jwks(reason);
    if json.len() > MAX_JWKS_BYTES {
        return Err(refuse(format!("it is larger than {MAX_JWKS_BYTES} bytes")));
    }
    let value: Value = serde_json::from_str(json).map_err(|e| refuse(format!("it is not JSON: {e}")))?;
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| refuse("it is not a JWK set (`{\"keys\": [...]}`)".to_owned()))?;
    if keys.is_empty() || keys.len() > MAX_JWKS_KEYS {
        return Err(refuse(format!("it must hold 1-{MAX_JWKS_KEYS} keys")));
    }
    let keys: Vec<Jwk> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| check_key(key, i))
        .collect::<Result<_, _>>()
        .map_err(refuse)?;
    let kids: Vec<Option<&str>> = keys.iter().map(|k| k.common.key_id.as_deref()).collect();
    if keys.len() > 1 && kids.iter().any(Option::is_none) {
        return Err(refuse("with several keys, every key needs a `kid`".to_owned()));
    }
    let mut distinct = kids.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != kids.len() {
        return Err(refuse("two keys share a `kid`".to_owned()));
    }
    Ok(ClientJwks { json: json.to_owned(), keys })
}

/// Checks that the method and the keys given fit together.
pub fn validate_keys(method: AuthMethod, keys: &ClientKeys) -> Result<(), ClientRuleError> {
    match (method, keys) {
        (AuthMethod::PrivateKeyJwt, ClientKeys::None) => Err(ClientRuleError::KeysRequired),
        (AuthMethod::PrivateKeyJwt, ClientKeys::Uri(uri)) => validate_jwks_uri(uri),
        (AuthMethod::PrivateKeyJwt, ClientKeys::Inline(_)) | (_, ClientKeys::None) => Ok(()),
        (other, _) => Err(ClientRuleError::KeysNotAllowed(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keycloak publishes its realm's encryption key beside the signing key: the set is taken,
    /// with the signing key only. A set with no signing key left is still refused.
    #[test]
    fn a_published_set_keeps_its_signing_keys_and_leaves_the_rest_out() {
        let signing = serde_json::json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "s",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" });
        let encryption = serde_json::json!({ "kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "kid": "e", "n": "AQAB", "e": "AQAB" });
        let p521 = serde_json::json!({ "kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "big", "x": "AA", "y": "AA" });
        let set = serde_json::json!({ "keys": [encryption, signing, p521] }).to_string();
        assert!(validate_jwks(&set).is_err(), "an inline set must hold signing keys only");
        let published = published_signing_keys(&set).unwrap();
        assert_eq!(published.keys().len(), 1);
        assert!(published.has_kid("s"));
        let only_encryption = serde_json::json!({ "keys": [encryption] }).to_string();
        assert!(published_signing_keys(&only_encryption).is_err());
    }

    fn client(uris: &[&str]) -> Client {
        Client {
            client_id: ClientId("abcdefghijklmnopqrstuv".into()),
            name: "RP".into(),
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            auth_method: AuthMethod::None,
            secret_hash: None,
            keys: ClientKeys::None,
            id_token_alg: IdTokenAlg::Es256,
            ciba: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: "cli".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn good_redirect_uris_are_accepted() {
        for uri in [
            "https://rp.example.com/callback",
            "https://rp.example.com:8443/cb?tenant=a",
            "http://127.0.0.1:9000/cb",
            "http://[::1]/cb",
            "http://localhost:8080/cb",
        ] {
            assert_eq!(validate_redirect_uri(uri), Ok(()), "{uri}");
        }
    }

    /// Attack: a redirect URI that lets a code or token reach someone else (fragment, userinfo
    /// confusion, plain http to a remote host, wildcard, relative, other schemes).
    #[test]
    fn dangerous_redirect_uris_are_refused_at_registration() {
        for uri in [
            "",
            "/callback",
            "rp.example.com/cb",
            "https://rp.example.com/cb#frag",
            "https://rp.example.com/cb#",
            "https://user:pass@rp.example.com/cb",
            "https://user@rp.example.com/cb",
            "https://evil.example@rp.example.com/cb",
            "http://rp.example.com/cb",
            "http://127.0.0.2/cb",
            "http://localhost.evil.example/cb",
            "https://*.example.com/cb",
            "https://rp.example.com/*",
            "javascript:alert(1)",
            "data:text/html,hi",
            "custom.app:/cb",
            "https://rp.example.com/c b",
            " https://rp.example.com/cb",
            "https://rp.example.com/cb\n",
            "https://rp.exämple.com/cb",
            "file:///etc/passwd",
            "https:rp.example.com/cb",
            "https:/rp.example.com/cb",
            "https://evil.example\\@rp.example.com/cb",
            "https://rp.example.com\\cb",
        ] {
            assert!(validate_redirect_uri(uri).is_err(), "accepted {uri:?}");
        }
        assert_eq!(validate_redirect_uris(&[]), Err(ClientRuleError::NoRedirectUri));
    }

    /// Attack: near-miss redirect URIs (case, slash, query, port, encoding, dot segments) must
    /// not match the registered one.
    #[test]
    fn redirect_uris_match_byte_for_byte_only() {
        let c = client(&["https://rp.example.com/cb"]);
        assert!(c.redirect_uri_matches("https://rp.example.com/cb"));
        for near in [
            "https://rp.example.com/cb/",
            "https://RP.example.com/cb",
            "HTTPS://rp.example.com/cb",
            "https://rp.example.com/CB",
            "https://rp.example.com/cb?x=1",
            "https://rp.example.com:443/cb",
            "https://rp.example.com/%63b",
            "https://rp.example.com/./cb",
            "https://rp.example.com/a/../cb",
            "https://rp.example.com/cb#",
            "https://rp.example.com/cb ",
            "http://rp.example.com/cb",
            "https://rp.example.com.evil.example/cb",
            "",
        ] {
            assert!(!c.redirect_uri_matches(near), "{near} matched");
        }
    }

    proptest::proptest! {
        /// Any one-byte change to a registered redirect URI (replaced, inserted or removed)
        /// no longer matches it.
        #[test]
        fn no_one_byte_variant_of_a_redirect_uri_matches(at in 0usize..64, byte in 0u8..=255, edit in 0u8..3) {
            let registered = "https://rp.example.com:8443/cb/path?tenant=a&x=%2F";
            let c = client(&[registered]);
            let mut bytes = registered.as_bytes().to_vec();
            let i = at % bytes.len();
            match edit {
                0 if bytes[i] != byte => bytes[i] = byte,
                0 => bytes[i] = byte.wrapping_add(1),
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            let variant = String::from_utf8_lossy(&bytes).into_owned();
            proptest::prop_assert!(variant == registered || !c.redirect_uri_matches(&variant));
        }
    }

    #[test]
    fn jwks_uri_follows_the_same_transport_rules() {
        assert_eq!(validate_jwks_uri("https://rp.example.com/jwks.json"), Ok(()));
        assert_eq!(validate_jwks_uri("http://127.0.0.1:8000/jwks"), Ok(()));
        assert!(validate_jwks_uri("http://rp.example.com/jwks").is_err());
        assert!(validate_jwks_uri("https://u:p@rp.example.com/jwks").is_err());
    }

    #[test]
    fn methods_and_keys_must_fit_together() {
        assert_eq!(
            validate_keys(AuthMethod::PrivateKeyJwt, &ClientKeys::None),
            Err(ClientRuleError::KeysRequired)
        );
        assert!(
            validate_keys(AuthMethod::ClientSecretBasic, &ClientKeys::Uri("https://x.example/j".into()))
                .is_err()
        );
        assert_eq!(validate_keys(AuthMethod::None, &ClientKeys::None), Ok(()));
        assert_eq!("private_key_jwt".parse(), Ok(AuthMethod::PrivateKeyJwt));
        assert!("client_secret_jwt".parse::<AuthMethod>().is_err(), "HMAC assertions are not offered");
        assert_eq!("RS256".parse(), Ok(IdTokenAlg::Rs256));
        assert!("HS256".parse::<IdTokenAlg>().is_err());
    }

    const EC_PUBLIC: &str = r#"{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn a_public_ec_key_set_is_accepted() {
        let jwks = validate_jwks(&format!(r#"{{"keys":[{EC_PUBLIC}]}}"#)).unwrap();
        assert!(jwks.has_kid("k1"));
        assert_eq!(jwks.keys().len(), 1);
    }

    /// Attack: registering a private key (which we would then hold), a symmetric key (HMAC
    /// confusion), a weak or unknown key type, or an ambiguous set.
    #[test]
    fn private_symmetric_and_odd_key_sets_are_refused() {
        let with = |extra: &str| format!(r#"{{"keys":[{}{extra}}}]}}"#, EC_PUBLIC.trim_end_matches('}'));
        for (bad, why) in [
            (with(r#","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI""#), "private EC key"),
            (r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_owned(), "symmetric key"),
            (r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#.to_owned(), "P-521"),
            (r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#.to_owned(), "tiny RSA"),
            (with(r#","x5c":[]"#).replace("ES256", "HS256"), "HS256 alg"),
            (format!(r#"{{"keys":[{}]}}"#, EC_PUBLIC.replace("\"sig\"", "\"enc\"")), "enc use"),
            (format!(r#"{{"keys":[{EC_PUBLIC},{EC_PUBLIC}]}}"#), "duplicate kid"),
            (r#"{"keys":[]}"#.to_owned(), "empty"),
            ("[]".to_owned(), "not a set"),
            ("not json".to_owned(), "not JSON"),
        ] {
            assert!(validate_jwks(&bad).is_err(), "accepted {why}: {bad}");
        }
    }
}
