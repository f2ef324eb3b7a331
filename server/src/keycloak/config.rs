//! `[[keycloak.realms]]`: the Keycloak realms whose CIBA requests this server answers, checked
//! once at start. A realm is known by its issuer exactly as its tokens say it; its keys are
//! fetched from `jwks_uri`, its outcomes posted to `callback_url` (both default to Keycloak's
//! own paths under the issuer). Every URL is https, or http on loopback only.

use serde::Deserialize;

use crate::oidc::clients::{ClientRuleError, validate_jwks_uri};

/// Keycloak's realm key set, under the issuer.
const JWKS_PATH: &str = "/protocol/openid-connect/certs";
/// Keycloak's CIBA callback endpoint, under the issuer (`CibaRootEndpoint`, `/auth/callback`).
const CALLBACK_PATH: &str = "/protocol/openid-connect/ext/ciba/auth/callback";
/// Longest realm name: shown on the phone, and (spaces as `-`) after `keycloak.` the name of
/// the realm's app, which may be 64 characters.
const MAX_NAME_LEN: usize = 55;
/// Longest Keycloak client id in the allow-list.
pub const MAX_CLIENT_ID_LEN: usize = 255;

/// `[keycloak]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeycloakConfig {
    /// `[[keycloak.realms]]`: one entry per realm that may send CIBA requests.
    #[serde(default)]
    pub realms: Vec<RealmConfig>,
}

/// One realm as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// The realm's issuer, exactly (`https://kc.example.com/realms/acme`).
    pub issuer: String,
    /// Shown on the phone as the application asking.
    pub name: String,
    /// Default `{issuer}/protocol/openid-connect/certs`.
    pub jwks_uri: Option<String>,
    /// Default `{issuer}/protocol/openid-connect/ext/ciba/auth/callback`.
    pub callback_url: Option<String>,
    /// The Keycloak clients (`azp`) allowed to start a sign-in; absent: any client of the realm.
    pub clients: Option<Vec<String>>,
}

/// A realm that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    pub issuer: String,
    pub name: String,
    pub jwks_uri: String,
    pub callback_url: String,
    /// `None`: every client of the realm.
    pub clients: Option<Vec<String>>,
}

impl Realm {
    /// Whether Keycloak client `azp` may start a sign-in.
    pub fn allows_client(&self, azp: &str) -> bool {
        self.clients.as_ref().is_none_or(|clients| clients.iter().any(|c| c == azp))
    }

    /// The app the realm's prompts are charged to (challenges, fatigue, audit).
    pub fn app_name(&self) -> String {
        format!("keycloak.{}", self.name.replace(' ', "-"))
    }
}

fn url_problem(url: &str) -> Option<&'static str> {
    match validate_jwks_uri(url) {
        Ok(()) => None,
        Err(ClientRuleError::JwksUri { reason, .. }) => Some(reason),
        Err(_) => Some("it is not a usable URL"),
    }
}

impl KeycloakConfig {
    /// Checks every realm: the key at fault and why.
    pub fn resolve(&self) -> Result<Vec<Realm>, (&'static str, String)> {
        let mut realms: Vec<Realm> = Vec::new();
        for (index, realm) in self.realms.iter().enumerate() {
            let problem =
                |what: String| ("keycloak.realms", format!("entry {index} ({}): {what}", realm.issuer));
            if let Some(why) = url_problem(&realm.issuer) {
                return Err(problem(format!("issuer is refused: {why}")));
            }
            if realm.issuer.ends_with('/') || realm.issuer.contains('?') {
                return Err(problem(
                    "issuer must be the realm URL exactly, without a trailing slash or query".into(),
                ));
            }
            let name_ok = (1..=MAX_NAME_LEN).contains(&realm.name.len())
                && realm
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b' '))
                && realm.name.trim() == realm.name;
            if !name_ok {
                return Err(problem(format!(
                    "name must be 1-{MAX_NAME_LEN} letters, digits, spaces, `-`, `_` or `.`"
                )));
            }
            let jwks_uri = realm.jwks_uri.clone().unwrap_or_else(|| format!("{}{JWKS_PATH}", realm.issuer));
            if let Some(why) = url_problem(&jwks_uri) {
                return Err(problem(format!("jwks_uri is refused: {why}")));
            }
            let callback_url =
                realm.callback_url.clone().unwrap_or_else(|| format!("{}{CALLBACK_PATH}", realm.issuer));
            if let Some(why) = url_problem(&callback_url) {
                return Err(problem(format!("callback_url is refused: {why}")));
            }
            if let Some(clients) = &realm.clients {
                if clients.is_empty() {
                    return Err(problem("clients must name at least one client (or be left out)".into()));
                }
                if clients.iter().any(|c| c.is_empty() || c.len() > MAX_CLIENT_ID_LEN) {
                    return Err(problem(format!("each client id must be 1-{MAX_CLIENT_ID_LEN} characters")));
                }
            }
            if realms.iter().any(|r| r.issuer == realm.issuer) {
                return Err(problem("this issuer is configured twice".into()));
            }
            let resolved = Realm {
                issuer: realm.issuer.clone(),
                name: realm.name.clone(),
                jwks_uri,
                callback_url,
                clients: realm.clients.clone(),
            };
            if realms.iter().any(|r| r.app_name() == resolved.app_name()) {
                return Err(problem(format!("the name `{}` is used by another realm", realm.name)));
            }
            realms.push(resolved);
        }
        Ok(realms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RealmConfig {
        RealmConfig {
            issuer: "https://kc.example.com/realms/acme".into(),
            name: "Acme".into(),
            jwks_uri: None,
            callback_url: None,
            clients: None,
        }
    }

    fn problem(realms: Vec<RealmConfig>) -> String {
        let (key, problem) = KeycloakConfig { realms }.resolve().unwrap_err();
        assert_eq!(key, "keycloak.realms");
        problem
    }

    #[test]
    fn a_realm_gets_keycloaks_own_paths_by_default() {
        let realms = KeycloakConfig { realms: vec![config()] }.resolve().unwrap();
        assert_eq!(realms[0].jwks_uri, "https://kc.example.com/realms/acme/protocol/openid-connect/certs");
        assert_eq!(
            realms[0].callback_url,
            "https://kc.example.com/realms/acme/protocol/openid-connect/ext/ciba/auth/callback"
        );
        assert!(realms[0].allows_client("anything"));
        assert_eq!(realms[0].app_name(), "keycloak.Acme");
        let long = RealmConfig { name: format!("Acme {}", "x".repeat(50)), ..config() };
        let realms = KeycloakConfig { realms: vec![long] }.resolve().unwrap();
        let app = realms[0].app_name();
        let app_name_ok =
            app.len() <= 64 && app.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        assert!(app_name_ok, "a valid app name: {app}");
        let listed = RealmConfig { clients: Some(vec!["kiosk".into()]), ..config() };
        let realms = KeycloakConfig { realms: vec![listed] }.resolve().unwrap();
        assert!(realms[0].allows_client("kiosk") && !realms[0].allows_client("kiosk2"));
    }

    #[test]
    fn a_bad_realm_entry_is_refused_with_its_reason() {
        let plain = RealmConfig { issuer: "http://kc.example.com/realms/acme".into(), ..config() };
        assert!(problem(vec![plain]).contains("issuer is refused: http is only allowed for loopback"));
        let loopback = RealmConfig { issuer: "http://127.0.0.1:8180/realms/acme".into(), ..config() };
        assert!(KeycloakConfig { realms: vec![loopback] }.resolve().is_ok());
        let slash = RealmConfig { issuer: "https://kc.example.com/realms/acme/".into(), ..config() };
        assert!(problem(vec![slash]).contains("trailing slash"));
        let callback = RealmConfig { callback_url: Some("http://kc.example.com/cb".into()), ..config() };
        assert!(problem(vec![callback]).contains("callback_url is refused"));
        let jwks = RealmConfig { jwks_uri: Some("ftp://kc.example.com/certs".into()), ..config() };
        assert!(problem(vec![jwks]).contains("jwks_uri is refused"));
        assert!(problem(vec![RealmConfig { name: "".into(), ..config() }]).contains("name must be"));
        assert!(
            problem(vec![RealmConfig { name: "a\u{202e}b".into(), ..config() }]).contains("name must be")
        );
        assert!(problem(vec![RealmConfig { clients: Some(vec![]), ..config() }]).contains("at least one"));
        assert!(problem(vec![config(), config()]).contains("twice"));
        let other = RealmConfig { issuer: "https://kc.example.com/realms/other".into(), ..config() };
        assert!(problem(vec![config(), other.clone()]).contains("used by another realm"));
        let spaced = RealmConfig { name: "Acme Portal".into(), ..config() };
        let dashed = RealmConfig { name: "Acme-Portal".into(), ..other };
        assert!(problem(vec![spaced, dashed]).contains("used by another realm"));
        let long = RealmConfig { name: "x".repeat(56), ..config() };
        assert!(problem(vec![long]).contains("name must be"));
    }
}
