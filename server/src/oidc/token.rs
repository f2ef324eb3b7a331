//! The token endpoint and userinfo: a code becomes an ID token and an access token once, for
//! the client it was issued to, with the PKCE verifier and redirect URI it was bound to; a code
//! presented again revokes what it issued (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.5).
//! The access token (`at+jwt`, RFC 9068) is good for `/oidc/userinfo` only.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use time::Duration;

use super::authorization::{Params, pkce_matches};
use super::client_auth::ClientCredentials;
use super::clients::Client;
use super::flow::{CIBA_GRANT_TYPE, OidcFlow, USERINFO_PATH, client_actor, secret, signing_alg};
use super::jose::{self, JwtPolicy};
use super::keys::SigningAlg;
use super::oauth_error::{OAuthError, OAuthErrorCode};
use super::tokens::{ACCESS_TOKEN_TYP, Grant, ID_TOKEN_TYP, Issue};
use crate::api_keys::hash_key;
use crate::audit::{Action, AuditEvent, Subject};
use crate::store::{AccessTokenRecord, CodeRecord, StoreError};

/// What `/oidc/token` answers (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: i64,
    pub id_token: String,
    pub scope: String,
}

/// The challenge a bad access token gets (RFC 6750 §3).
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

pub(super) fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

fn invalid_token(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidToken, description).with_challenge(INVALID_TOKEN_CHALLENGE)
}

impl OidcFlow {
    /// `POST /oidc/token` with `grant_type=authorization_code`, or the CIBA grant
    /// (`urn:openid:params:grant-type:ciba`, see `flow::ciba`).
    pub async fn token(
        &self,
        credentials: &ClientCredentials<'_>,
        form: &Params,
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.clients.authenticate(credentials).await.map_err(OAuthError::from)?.client;
        match form.get("grant_type") {
            Some("authorization_code") => {}
            Some(CIBA_GRANT_TYPE) => {
                return self.ciba_token(&client, form).await.map_err(OAuthError::from_token_endpoint);
            }
            Some(_) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    format!("only `authorization_code` and `{CIBA_GRANT_TYPE}` are served here"),
                ));
            }
            None => return Err(OAuthError::invalid_request("`grant_type` is required")),
        }
        let code = form.get("code").ok_or_else(|| OAuthError::invalid_request("`code` is required"))?;
        let code_hash = hash_key(code);
        let now = self.clock.now();
        let Some(record) = self.store.oidc_code(&code_hash).await.map_err(OAuthError::internal)? else {
            return Err(invalid_grant("the code is unknown or expired"));
        };
        if record.client_id != client.client_id {
            // Not burnt: the client it belongs to may still redeem it.
            self.refuse_code(&client, &record, "another_client").await?;
            return Err(invalid_grant("the code was not issued to this client"));
        }
        if record.redeemed_at.is_some() {
            return Err(self.replayed(&client, &record).await);
        }
        if record.expires_at <= now {
            self.refuse_code(&client, &record, "expired").await?;
            return Err(invalid_grant("the code has expired"));
        }
        let grant: Grant = serde_json::from_str(&record.grant_details).map_err(OAuthError::internal)?;
        if form.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            self.refuse_code(&client, &record, "redirect_uri_mismatch").await?;
            return Err(invalid_grant("`redirect_uri` is not the one the code was issued for"));
        }
        let verified = match (form.get("code_verifier"), &grant.code_challenge) {
            (Some(verifier), Some(challenge)) => pkce_matches(verifier, challenge),
            _ => false,
        };
        if !verified {
            let reason = if form.get("code_verifier").is_some() { "pkce_mismatch" } else { "pkce_missing" };
            self.refuse_code(&client, &record, reason).await?;
            return Err(invalid_grant(
                "the PKCE code_verifier is missing or does not match the code_challenge",
            ));
        }
        let (response, token) = self.mint(&client, record.user_id, &grant, code_hash.to_vec(), now).await?;
        let event = AuditEvent::new(
            now,
            client_actor(&client),
            Action::OidcTokensIssued,
            Subject::User(record.user_id),
        )
        .with_details(json!({
            "client_id": client.client_id.0,
            "authorization_id": record.authorization_id,
            "acr": grant.acr,
            "amr": grant.amr,
            "scope": grant.scope,
        }));
        match self.store.redeem_oidc_code(&code_hash, &client.client_id, now, &token, event).await {
            Ok(_) => Ok(response),
            // Redeemed by a concurrent request with the same code: a replay like any other.
            Err(StoreError::NotFound) => Err(self.replayed(&client, &record).await),
            Err(other) => Err(OAuthError::internal(other)),
        }
    }

    /// This provider's published keys, as the strict verifier takes them (to check a token it
    /// issued: an access token at userinfo, an `id_token_hint` at CIBA).
    pub(super) async fn own_keys(&self) -> Result<Vec<jsonwebtoken::jwk::Jwk>, OAuthError> {
        let jwks = self.keys.jwks().await.map_err(OAuthError::internal)?;
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(serde_json::to_value(&jwks).map_err(OAuthError::internal)?)
                .map_err(OAuthError::internal)?;
        Ok(jwks.keys)
    }

    /// What both tokens for `grant` are made from (`jti` names the access token).
    pub(super) fn issue<'a>(
        &'a self,
        client: &'a Client,
        user: crate::ids::UserId,
        grant: &'a Grant,
        now: time::OffsetDateTime,
        jti: String,
    ) -> Issue<'a> {
        let timings = self.keys.timings();
        Issue {
            issuer: &self.settings.issuer,
            userinfo_endpoint: self.settings.endpoint(USERINFO_PATH),
            client_id: &client.client_id.0,
            subject: user.to_string(),
            grant,
            now,
            id_token_lifetime: timings.id_token_lifetime,
            access_token_lifetime: timings.access_token_lifetime,
            jti,
        }
    }

    /// The ID token and access token for `grant`, and the access token's record (bound to the
    /// code that holds the grant, which a replay revokes and userinfo reads).
    pub(super) async fn mint(
        &self,
        client: &Client,
        user: crate::ids::UserId,
        grant: &Grant,
        code_hash: Vec<u8>,
        now: time::OffsetDateTime,
    ) -> Result<(TokenResponse, AccessTokenRecord), OAuthError> {
        let (jti, _) = secret().map_err(OAuthError::internal)?;
        let timings = self.keys.timings();
        let issue = self.issue(client, user, grant, now, jti.clone());
        let id_token = self
            .keys
            .sign(signing_alg(client), ID_TOKEN_TYP, &issue.id_token())
            .await
            .map_err(OAuthError::internal)?;
        let access_token = self
            .keys
            .sign(SigningAlg::Es256, ACCESS_TOKEN_TYP, &issue.access_token())
            .await
            .map_err(OAuthError::internal)?;
        let record = AccessTokenRecord {
            jti,
            code_hash,
            client_id: client.client_id.clone(),
            user_id: user,
            expires_at: now + timings.access_token_lifetime,
            revoked_at: None,
        };
        let response = TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: timings.access_token_lifetime.whole_seconds(),
            id_token,
            scope: grant.scope.join(" "),
        };
        Ok((response, record))
    }

    /// A redeemed code presented again: it leaked, so what it issued is revoked (audited).
    async fn replayed(&self, client: &Client, record: &CodeRecord) -> OAuthError {
        let now = self.clock.now();
        let event = refusal_event(client, record, "replayed", now);
        match self.store.revoke_code_tokens(&record.code_hash, now, event).await {
            Ok(_) => invalid_grant("the code was already used; the tokens it issued are revoked"),
            Err(error) => OAuthError::internal(error),
        }
    }

    async fn refuse_code(
        &self,
        client: &Client,
        record: &CodeRecord,
        reason: &str,
    ) -> Result<(), OAuthError> {
        let event = refusal_event(client, record, reason, self.clock.now());
        self.store.record_audit(event).await.map_err(OAuthError::internal)
    }

    /// `GET|POST /oidc/userinfo` with `Authorization: Bearer <access token>`.
    pub async fn userinfo(&self, authorization: Option<&str>) -> Result<Value, OAuthError> {
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    "send the access token as `Authorization: Bearer …`",
                )
                .with_challenge("Bearer")
            })?;
        let jwks = self.own_keys().await?;
        let userinfo_endpoint = self.settings.endpoint(USERINFO_PATH);
        let timings = self.keys.timings();
        let policy = JwtPolicy {
            algorithms: &[Algorithm::ES256, Algorithm::RS256],
            issuer: &self.settings.issuer,
            audiences: &[userinfo_endpoint.as_str()],
            subject: None,
            typ: Some(ACCESS_TOKEN_TYP),
            max_lifetime: timings.access_token_lifetime,
            leeway: Duration::seconds(30),
            require_jti: true,
            expired_grace: Duration::ZERO,
        };
        let verified = jose::verify(token, &jwks, &policy, self.clock.now())
            .map_err(|_| invalid_token("the access token is not valid here"))?;
        let jti =
            verified.jti.as_deref().ok_or_else(|| invalid_token("the access token is not valid here"))?;
        let record = self.store.access_token(jti).await.map_err(OAuthError::internal)?;
        let Some(record) = record.filter(|r| r.revoked_at.is_none()) else {
            return Err(invalid_token("the access token was revoked"));
        };
        let subject =
            verified.claims.get("sub").cloned().unwrap_or_else(|| json!(record.user_id.to_string()));
        let mut claims = json!({ "sub": subject });
        let code = self.store.oidc_code(&record.code_hash).await.map_err(OAuthError::internal)?;
        if let Some(code) = code {
            let grant: Grant = serde_json::from_str(&code.grant_details).map_err(OAuthError::internal)?;
            if grant.scope.iter().any(|s| s == "profile") {
                claims["preferred_username"] = json!(grant.username);
            }
        }
        Ok(claims)
    }
}

fn refusal_event(
    client: &Client,
    record: &CodeRecord,
    reason: &str,
    now: time::OffsetDateTime,
) -> AuditEvent {
    AuditEvent::new(now, client_actor(client), Action::OidcCodeRefused, Subject::User(record.user_id))
        .with_details(json!({
            "client_id": client.client_id.0,
            "code_client_id": record.client_id.0,
            "authorization_id": record.authorization_id,
            "reason": reason,
        }))
}
