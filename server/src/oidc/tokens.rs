//! What the tokens say, the rules: an ID token (OIDC Core §2) for the client, an access token
//! (RFC 9068 `at+jwt`) for `/userinfo` only, and what a code grants between the sign-in and
//! the token request. No I/O, no signing (that is [`super::keys`]).
//!
//! The two token kinds cannot be mistaken for each other: different `typ` headers (`JWT` and
//! `at+jwt`), different audiences (the client, and the userinfo endpoint), and `/userinfo`
//! pins the `typ`.

use serde::{Deserialize, Serialize};

use super::authorization::{ACR_NUMBER_MATCHED_PUSH, ACR_PHISHING_RESISTANT, ENTRA_POSSESSION_ACRS};
use time::OffsetDateTime;

/// The `typ` header of an ID token.
pub const ID_TOKEN_TYP: &str = "JWT";
/// The `typ` header of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// How the user proved it, as the ID token's `amr` (RFC 8176) and `acr` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// A number shown here, typed on the phone, signed with the phone's device key.
    NumberMatchedPush,
    /// A WebAuthn assertion with user verification.
    Passkey,
}

impl Proof {
    /// The `amr` (RFC 8176) when the client asked for none in particular: `mca` (the number
    /// travels over a second channel) and `swk` (a software-held device key) for the push;
    /// `mfa` and `user` (presence and verification) for a passkey, whose hardware or software
    /// key cannot be told apart without attestation.
    fn default_amr(self) -> &'static [&'static str] {
        match self {
            Proof::NumberMatchedPush => &["mca", "swk"],
            Proof::Passkey => &["mfa", "user"],
        }
    }

    /// The one `amr` to answer when the client lists the methods it accepts (Microsoft Entra
    /// wants exactly one), in order of how precisely it says what happened.
    fn listed_amr(self) -> &'static [&'static str] {
        match self {
            Proof::NumberMatchedPush => &["swk", "pop"],
            Proof::Passkey => &["fido", "hwk", "pop"],
        }
    }

    /// Whether this proof meets the `acr` value `acr`.
    pub fn satisfies(self, acr: &str) -> bool {
        let own = match self {
            Proof::NumberMatchedPush => ACR_NUMBER_MATCHED_PUSH,
            Proof::Passkey => ACR_PHISHING_RESISTANT,
        };
        acr == own || ENTRA_POSSESSION_ACRS.contains(&acr)
    }

    /// The `acr` to assert: the first requested value this proof meets, else its own.
    pub fn acr_for(self, requested: &[String]) -> String {
        requested.iter().find(|acr| self.satisfies(acr)).cloned().unwrap_or_else(|| {
            match self {
                Proof::NumberMatchedPush => ACR_NUMBER_MATCHED_PUSH,
                Proof::Passkey => ACR_PHISHING_RESISTANT,
            }
            .to_owned()
        })
    }

    /// The `amr` to assert given the methods the client listed (none: the default).
    pub fn amr_for(self, listed: &[String]) -> Vec<String> {
        let chosen = self.listed_amr().iter().find(|amr| listed.iter().any(|l| l == *amr));
        match chosen {
            Some(amr) if !listed.is_empty() => vec![(*amr).to_owned()],
            _ => self.default_amr().iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

/// What a code grants, bound to it until it is redeemed (stored as JSON with the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The user's name when they signed in (`preferred_username` with the `profile` scope).
    pub username: String,
    /// The `sub` to assert when an upstream issuer's hint named the user (its own `sub`);
    /// otherwise the user's id.
    pub subject: Option<String>,
    pub redirect_uri: String,
    /// The code flow's PKCE challenge.
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: Vec<String>,
    pub proof: Proof,
    pub acr: String,
    pub amr: Vec<String>,
    /// When the user answered (the challenge's decision), Unix seconds.
    pub auth_time: i64,
}

/// An ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// An access token's claims (RFC 9068 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
}

/// Everything both tokens are made from.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    pub issuer: &'a str,
    pub userinfo_endpoint: String,
    pub client_id: &'a str,
    /// The user's stable subject: their id, never their name (an upstream hint's `sub` in the
    /// grant takes its place in the ID token).
    pub subject: String,
    pub grant: &'a Grant,
    pub now: OffsetDateTime,
    pub id_token_lifetime: time::Duration,
    pub access_token_lifetime: time::Duration,
    pub jti: String,
}

impl Issue<'_> {
    pub fn id_token(&self) -> IdTokenClaims {
        let now = self.now.unix_timestamp();
        let profile = self.grant.scope.iter().any(|s| s == "profile");
        IdTokenClaims {
            iss: self.issuer.to_owned(),
            sub: self.grant.subject.clone().unwrap_or_else(|| self.subject.clone()),
            aud: self.client_id.to_owned(),
            exp: now + self.id_token_lifetime.whole_seconds(),
            iat: now,
            auth_time: self.grant.auth_time,
            nonce: self.grant.nonce.clone(),
            acr: self.grant.acr.clone(),
            amr: self.grant.amr.clone(),
            preferred_username: profile.then(|| self.grant.username.clone()),
        }
    }

    pub fn access_token(&self) -> AccessTokenClaims {
        let now = self.now.unix_timestamp();
        AccessTokenClaims {
            iss: self.issuer.to_owned(),
            // The same `sub` as the ID token (OIDC Core §5.3.2: userinfo must agree with it).
            sub: self.grant.subject.clone().unwrap_or_else(|| self.subject.clone()),
            aud: self.userinfo_endpoint.clone(),
            client_id: self.client_id.to_owned(),
            exp: now + self.access_token_lifetime.whole_seconds(),
            iat: now,
            jti: self.jti.clone(),
            scope: self.grant.scope.join(" "),
            auth_time: self.grant.auth_time,
            acr: self.grant.acr.clone(),
            amr: self.grant.amr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(proof: Proof, scope: &[&str]) -> Grant {
        Grant {
            username: "alice".into(),
            subject: None,
            redirect_uri: "https://rp.example/cb".into(),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            nonce: Some("n-0S6_WzA2Mj".into()),
            scope: scope.iter().map(|s| (*s).to_owned()).collect(),
            proof,
            acr: proof.acr_for(&[]),
            amr: proof.amr_for(&[]),
            auth_time: 1_700_000_000,
        }
    }

    fn issue(grant: &Grant) -> Issue<'_> {
        Issue {
            issuer: "https://mfa.example",
            userinfo_endpoint: "https://mfa.example/oidc/userinfo".into(),
            client_id: "client-1",
            subject: "7f0c…".into(),
            grant,
            now: OffsetDateTime::from_unix_timestamp(1_700_000_010).unwrap(),
            id_token_lifetime: time::Duration::minutes(5),
            access_token_lifetime: time::Duration::minutes(5),
            jti: "jti-1".into(),
        }
    }

    #[test]
    fn the_id_token_says_how_the_user_proved_it() {
        let push = grant(Proof::NumberMatchedPush, &["openid"]);
        let claims = issue(&push).id_token();
        assert_eq!(
            (claims.acr.as_str(), claims.amr.clone()),
            (super::super::authorization::ACR_NUMBER_MATCHED_PUSH, vec!["mca".to_owned(), "swk".to_owned()])
        );
        assert_eq!((claims.aud.as_str(), claims.exp - claims.iat), ("client-1", 300));
        assert_eq!(claims.auth_time, 1_700_000_000);
        assert_eq!(claims.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
        assert_eq!(claims.preferred_username, None, "no profile scope, no name");
        let passkey = grant(Proof::Passkey, &["openid", "profile"]);
        let claims = issue(&passkey).id_token();
        assert_eq!(claims.acr, "phr");
        assert_eq!(claims.preferred_username.as_deref(), Some("alice"));
    }

    #[test]
    fn an_access_token_is_not_addressed_to_the_client() {
        let push = grant(Proof::NumberMatchedPush, &["openid", "profile"]);
        let issue = issue(&push);
        let (id, access) = (issue.id_token(), issue.access_token());
        assert_ne!(id.aud, access.aud);
        assert_eq!(access.aud, "https://mfa.example/oidc/userinfo");
        assert_eq!((access.client_id.as_str(), access.scope.as_str()), ("client-1", "openid profile"));
    }

    /// Microsoft Entra asks for an `acr` by factor type and lists the `amr` it accepts; it
    /// wants one of its `acr` values back and exactly one method.
    #[test]
    fn entra_gets_one_of_its_own_acr_values_and_one_amr() {
        let requested = vec!["possessionorinherence".to_owned()];
        let listed: Vec<String> =
            ["face", "fido", "fpt", "hwk", "iris", "otp", "pop", "retina", "sc", "sms", "swk", "tel", "vbm"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        assert_eq!(Proof::NumberMatchedPush.acr_for(&requested), "possessionorinherence");
        assert_eq!(Proof::NumberMatchedPush.amr_for(&listed), ["swk"]);
        assert_eq!(Proof::Passkey.acr_for(&requested), "possessionorinherence");
        assert_eq!(Proof::Passkey.amr_for(&listed), ["fido"]);
        // A knowledge-only acr is not met by either: each asserts its own.
        assert_eq!(Proof::Passkey.acr_for(&["knowledge".to_owned()]), "phr");
        assert!(!Proof::NumberMatchedPush.satisfies("phr"), "a push is not phishing-resistant");
        assert_eq!(
            Proof::NumberMatchedPush.amr_for(&["otp".to_owned()]),
            ["mca", "swk"],
            "nothing listed fits"
        );
    }

    #[test]
    fn a_grant_round_trips_and_refuses_unknown_members() {
        let push = grant(Proof::Passkey, &["openid"]);
        let json = serde_json::to_string(&push).unwrap();
        assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), push);
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Grant>(value).is_err());
    }
}
