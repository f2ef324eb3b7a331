//! End-to-end: a relying party written with the `openidconnect` crate signs alice in through the
//! real `countersign` binary, on SQLite and PostgreSQL — discovery → PAR → authorize → the number
//! on the sign-in page → the reference authenticator approves with it → code → token → the ID
//! token validated by openidconnect (signature via the JWKS it fetched, issuer, audience, nonce)
//! → userinfo; once with `client_secret_basic`, once with `private_key_jwt`. And the push-bombing
//! attack from the outside: a bare `/authorize` with a `login_hint` prompts nobody.
//!
//! openidconnect speaks no PAR, so the pushed request is a hand-made form POST; the browser is a
//! reqwest client that follows no redirect and echoes the `__Host-` cookie by hand (a cookie store
//! would refuse a `Secure` cookie over loopback http).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use countersign_e2e::jose::{TestKey, jwks_json};
use countersign_e2e::{
    Engine, Server, authenticator, create_app, enroll_authenticator, get_json, stderr_of, stdout_of, unix_now,
};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreErrorResponseType,
    CoreGrantType, CoreIdTokenClaims, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RequestTokenError, StandardErrorResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where the RP wants the browser back. Nothing listens there: the test reads the `Location`.
const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACR_PUSH: &str = "urn:countersign:acr:push:number-matching";

/// openidconnect's async HTTP client over the workspace's reqwest 0.13 (the crate's own
/// `reqwest` feature would build a second reqwest, 0.12). Follows no redirect, as oauth2 asks.
#[derive(Debug, Clone)]
struct RpHttp(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for RpHttp {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(reqwest::Request::try_from(request)?).await?;
            let mut answer = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            Ok(answer.body(response.bytes().await?.to_vec()).unwrap())
        })
    }
}

/// A client that follows no redirect: the RP's, and the browser's (which reads `Location`).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What discovery says beyond OIDC Core: the PAR endpoint (RFC 9126 §5).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParMetadata {
    pushed_authorization_request_endpoint: String,
    require_pushed_authorization_requests: bool,
}

impl AdditionalProviderMetadata for ParMetadata {}

type Metadata = ProviderMetadata<
    ParMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type TokenError = RequestTokenError<reqwest::Error, StandardErrorResponse<CoreErrorResponseType>>;

/// What `from_provider_metadata` builds: the authorization endpoint is set; token and
/// userinfo endpoints are as discovery gave them.
type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The real server with alice enrolled on the reference authenticator.
struct Provider {
    server: Server,
    app_key: String,
    phone: PathBuf,
    dir: tempfile::TempDir,
}

impl Provider {
    async fn start(engine: Engine) -> Self {
        let server = Server::start(engine).await;
        let app_key = create_app(&server, "directory", "users:read users:write");
        let dir = tempfile::tempdir().unwrap();
        let phone = dir.path().join("alice.json");
        enroll_authenticator(&server, &app_key, "alice", &phone).await;
        Self { server, app_key, phone, dir }
    }

    /// Registers a client with the real CLI; returns its `name=value` lines.
    fn register(&self, auth: &str, extra: &[&str]) -> Vec<(String, String)> {
        let mut args = vec!["clients", "create", "--name", "Acme SSO", "--auth", auth];
        args.extend(["--redirect-uri", REDIRECT_URI]);
        args.extend_from_slice(extra);
        let output = self.server.cli(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
        stdout_of(&output)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// The challenges waiting on alice's phone (what the authenticator lists).
    fn pending(&self) -> Vec<Value> {
        let pending = authenticator(&self.phone, &["pending", "--json"]);
        assert!(pending.status.success(), "{}", stderr_of(&pending));
        serde_json::from_str(&stdout_of(&pending)).unwrap()
    }

    /// Whether `/oidc/jwks` lists a key of `alg` within 3 s (the server re-reads its keys after
    /// at most 1 s).
    async fn jwks_lists(&self, alg: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let jwks: Value =
                no_redirects().get(self.server.url("/oidc/jwks")).send().await.unwrap().json().await.unwrap();
            if jwks["keys"].as_array().unwrap().iter().any(|key| key["alg"] == alg) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn alice_id(&self) -> String {
        let user = get_json(&self.server, &self.app_key, "/v1/users/alice").await;
        user["id"].as_str().unwrap().to_owned()
    }
}

fn printed(lines: &[(String, String)], name: &str) -> Option<String> {
    lines.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// How the RP authenticates at PAR and token.
enum ClientAuth {
    Basic { secret: String },
    PrivateKeyJwt { key: Box<TestKey> },
}

/// The relying party: its registration and what discovery told it.
struct Rp {
    client_id: String,
    auth: ClientAuth,
    metadata: Metadata,
    client: RpClient,
    http: RpHttp,
}

impl Rp {
    async fn discover(provider: &Provider, client_id: String, auth: ClientAuth) -> Self {
        let http = RpHttp(no_redirects());
        let issuer = IssuerUrl::new(provider.server.base_url.clone()).unwrap();
        let metadata = Metadata::discover_async(issuer, &http).await.unwrap();
        assert!(metadata.additional_metadata().require_pushed_authorization_requests);
        let secret = match &auth {
            ClientAuth::Basic { secret } => Some(ClientSecret::new(secret.clone())),
            ClientAuth::PrivateKeyJwt { .. } => None,
        };
        let client =
            CoreClient::from_provider_metadata(metadata.clone(), ClientId::new(client_id.clone()), secret)
                .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).unwrap());
        Self { client_id, auth, metadata, client, http }
    }

    fn issuer(&self) -> &str {
        self.metadata.issuer().as_str()
    }

    /// A `private_key_jwt` assertion for `audience` (RFC 7523 §3), with a fresh `jti`.
    fn assertion(&self, key: &TestKey, audience: &str) -> String {
        let now = unix_now();
        key.sign(&json!({
            "iss": self.client_id, "sub": self.client_id, "aud": audience,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
        }))
    }

    /// The pushed authorization request (RFC 9126), authenticated as registered.
    async fn push(&self, challenge: &PkceCodeChallenge, state: &CsrfToken, nonce: &Nonce) -> String {
        let endpoint = &self.metadata.additional_metadata().pushed_authorization_request_endpoint;
        let mut form = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("scope", "openid profile".to_owned()),
            ("state", state.secret().clone()),
            ("nonce", nonce.secret().clone()),
            ("code_challenge", challenge.as_str().to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("login_hint", "alice".to_owned()),
        ];
        let mut request = self.http.0.post(endpoint);
        match &self.auth {
            ClientAuth::Basic { secret } => request = request.basic_auth(&self.client_id, Some(secret)),
            ClientAuth::PrivateKeyJwt { key } => {
                // RFC 9126 §2: the issuer is a valid audience for the PAR endpoint.
                form.push(("client_assertion_type", JWT_BEARER.to_owned()));
                form.push(("client_assertion", self.assertion(key, self.issuer())));
            }
        }
        let body =
            openidconnect::url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
        let reply = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201, "PAR");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["expires_in"], 90);
        body["request_uri"].as_str().unwrap().to_owned()
    }

    /// openidconnect's token request for `code`, authenticated as registered.
    async fn exchange(
        &self,
        code: &str,
        verifier: &PkceCodeVerifier,
    ) -> Result<CoreTokenResponse, TokenError> {
        let mut exchange = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .unwrap()
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()));
        if let ClientAuth::PrivateKeyJwt { key } = &self.auth {
            // openidconnect authenticates only with a secret; the assertion goes in the form,
            // aimed at the token endpoint this time.
            let token_endpoint = self.metadata.token_endpoint().unwrap().as_str().to_owned();
            exchange = exchange
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", self.assertion(key, &token_endpoint));
        }
        exchange.request_async(&self.http).await
    }

    /// Redeems `code` with openidconnect, and validates the ID token with its verifier.
    async fn redeem(
        &self,
        code: &str,
        verifier: &PkceCodeVerifier,
        nonce: &Nonce,
        alg: CoreJwsSigningAlgorithm,
    ) -> (CoreTokenResponse, CoreIdTokenClaims) {
        let tokens = self.exchange(code, verifier).await.unwrap();
        let id_token = tokens.id_token().expect("an ID token");
        assert_eq!(id_token.signing_alg().unwrap(), &alg);
        let verifier = self.client.id_token_verifier().set_allowed_algs([alg]);
        let claims = id_token.claims(&verifier, nonce).unwrap().clone();
        (tokens, claims)
    }
}

/// The browser: goes to `/authorize`, keeps the `__Host-` cookie, reads the page.
struct Browser {
    http: reqwest::Client,
    base_url: String,
    page: String,
    cookie: String,
}

impl Browser {
    /// Follows the RP's redirect to `/authorize` with only `client_id` and `request_uri`.
    async fn authorize(rp: &Rp, request_uri: &str) -> Self {
        let http = no_redirects();
        let mut url = openidconnect::url::Url::parse(rp.metadata.authorization_endpoint().as_str()).unwrap();
        url.query_pairs_mut().append_pair("client_id", &rp.client_id).append_pair("request_uri", request_uri);
        let reply = http.get(url).send().await.unwrap();
        assert_eq!(reply.status(), 303, "authorize");
        let page = reply.headers()["location"].to_str().unwrap().to_owned();
        let set_cookie = reply.headers()["set-cookie"].to_str().unwrap();
        assert!(set_cookie.starts_with("__Host-"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        Self { http, base_url: rp.issuer().to_owned(), page, cookie }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn page_html(&self) -> String {
        let reply = self.http.get(self.url(&self.page)).header("cookie", &self.cookie).send().await.unwrap();
        assert_eq!(reply.status(), 200, "sign-in page");
        reply.text().await.unwrap()
    }

    /// Posts the page's own `finish` form, as its script does once the phone answered.
    async fn finish(&self, html: &str) -> reqwest::Response {
        let action = attribute_after(html, r#"id="finish""#, "action");
        self.http
            .post(self.url(&action))
            .header("cookie", &self.cookie)
            .header("origin", &self.base_url)
            .send()
            .await
            .unwrap()
    }
}

/// The value of `name` in the first tag after `marker`.
fn attribute_after(html: &str, marker: &str, name: &str) -> String {
    let tag = &html[html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"))..];
    let tag = &tag[..tag.find('>').unwrap()];
    let value = &tag[tag.find(&format!(r#"{name}=""#)).unwrap() + name.len() + 2..];
    value[..value.find('"').unwrap()].to_owned()
}

/// The number the page shows (`id="number"`).
fn shown_number(html: &str) -> String {
    let element = &html[html.find(r#"id="number""#).unwrap()..];
    element[element.find('>').unwrap() + 1..element.find("</p>").unwrap()].trim().to_owned()
}

fn query_param(url: &openidconnect::url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// The whole flow for one registered client; alice approves on her phone.
async fn sign_alice_in(provider: &Provider, rp: &Rp, alg: CoreJwsSigningAlgorithm) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (state, nonce) = (CsrfToken::new_random(), Nonce::new_random());
    let request_uri = rp.push(&challenge, &state, &nonce).await;
    let browser = Browser::authorize(rp, &request_uri).await;
    let html = browser.page_html().await;
    let number = shown_number(&html);
    assert!(number.len() >= 2 && number.chars().all(|c| c.is_ascii_digit()), "{number:?}");

    // The phone has exactly this sign-in waiting, and alice types the number she sees.
    let pending = provider.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap();
    let approved = authenticator(&provider.phone, &["approve", id, "--number", &number]);
    assert_eq!(stdout_of(&approved), "approved", "{}", stderr_of(&approved));

    let back = browser.finish(&html).await;
    assert_eq!(back.status(), 303, "finish");
    let location = openidconnect::url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&format!("{REDIRECT_URI}?")), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(rp.issuer()), "RFC 9207, byte for byte");
    let code = query_param(&location, "code").expect("a code");

    let (tokens, claims) = rp.redeem(&code, &verifier, &nonce, alg).await;
    let alice = provider.alice_id().await;
    assert_eq!(claims.subject().as_str(), alice, "sub is alice's id");
    assert_eq!(claims.issuer().as_str(), rp.issuer());
    assert_eq!(claims.audiences().iter().map(|a| a.as_str()).collect::<Vec<_>>(), [rp.client_id.as_str()]);
    assert_eq!(claims.auth_context_ref().map(|acr| acr.as_str()), Some(ACR_PUSH));
    let amr: Vec<&str> = claims.auth_method_refs().unwrap().iter().map(|amr| amr.as_str()).collect();
    assert_eq!(amr, ["mca", "swk"]);
    let auth_time = claims.auth_time().unwrap().timestamp();
    assert!(auth_time.abs_diff(unix_now() as i64) < 60, "auth_time {auth_time}");
    assert_eq!(claims.preferred_username().map(|name| name.as_str()), Some("alice"));

    let info: CoreUserInfoClaims = rp
        .client
        .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&rp.http)
        .await
        .unwrap();
    assert_eq!(info.preferred_username().map(|name| name.as_str()), Some("alice"));

    // The code was spent: the same request again gets invalid_grant.
    match rp.exchange(&code, &verifier).await {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(error.error().as_ref(), "invalid_grant");
        }
        other => panic!("a spent code was redeemed: {other:?}"),
    }
    assert!(provider.pending().is_empty());
}

async fn an_openidconnect_rp_signs_alice_in_with_client_secret_basic(engine: Engine) {
    let provider = Provider::start(engine).await;
    let registered = provider.register("client_secret_basic", &[]);
    let client_id = printed(&registered, "client_id").unwrap();
    let secret = printed(&registered, "client_secret").unwrap();
    let rp = Rp::discover(&provider, client_id, ClientAuth::Basic { secret: secret.clone() }).await;
    sign_alice_in(&provider, &rp, CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
    assert!(!provider.server.logs().contains(&secret), "no secret in the server's logs");
}

async fn an_openidconnect_rp_signs_alice_in_with_private_key_jwt(engine: Engine) {
    let provider = Provider::start(engine).await;
    let key = TestKey::es256("acme-sso-1");
    let jwks = provider.dir.path().join("acme-jwks.json");
    std::fs::write(&jwks, jwks_json(&[&key])).unwrap();
    // RS256 ID tokens this time: openidconnect checks the other algorithm we sign with.
    let registered = provider
        .register("private_key_jwt", &["--jwks-file", jwks.to_str().unwrap(), "--id-token-alg", "RS256"]);
    assert!(printed(&registered, "client_secret").is_none());
    let client_id = printed(&registered, "client_id").unwrap();
    // Registering the client published the RS256 key its ID tokens will carry, so the JWKS the
    // RP fetches at discovery has it (a key made with the first token would come too late).
    // The running server re-reads the key table at most 1 s after the CLI's change.
    assert!(provider.jwks_lists("RS256").await, "no RS256 key published on registration");
    let rp = Rp::discover(&provider, client_id, ClientAuth::PrivateKeyJwt { key: Box::new(key) }).await;
    sign_alice_in(&provider, &rp, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}

/// `/authorize` is public: a bare request naming alice in `login_hint` (no pushed request)
/// goes back to the client with `invalid_request`, and her phone gets nothing.
async fn a_bare_authorize_with_a_login_hint_prompts_nobody(engine: Engine) {
    let provider = Provider::start(engine).await;
    let registered = provider.register("client_secret_basic", &[]);
    let client_id = printed(&registered, "client_id").unwrap();
    let secret = printed(&registered, "client_secret").unwrap();
    let rp = Rp::discover(&provider, client_id.clone(), ClientAuth::Basic { secret }).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let mut url = openidconnect::url::Url::parse(rp.metadata.authorization_endpoint().as_str()).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid")
        .append_pair("state", "bomb-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", "alice");
    let reply = no_redirects().get(url).send().await.unwrap();
    assert_eq!(reply.status(), 303);
    assert!(reply.headers().get("set-cookie").is_none(), "no sign-in begun");
    let location = openidconnect::url::Url::parse(reply.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&format!("{REDIRECT_URI}?")), "{location}");
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("bomb-1"));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(rp.issuer()));
    assert!(query_param(&location, "code").is_none());
    assert_eq!(provider.pending(), Vec::<Value>::new(), "no challenge reached alice's phone");
}

countersign_e2e::on_both_engines!(
    an_openidconnect_rp_signs_alice_in_with_client_secret_basic,
    an_openidconnect_rp_signs_alice_in_with_private_key_jwt,
    a_bare_authorize_with_a_login_hint_prompts_nobody,
);
