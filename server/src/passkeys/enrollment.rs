//! Enrollment links: an app hands a user a single-use link to the hosted registration page
//! (`/passkeys/enroll?code=…`) instead of running the ceremony in its own front end.
//!
//! Creating a link begins the registration ceremony at once, under the same trust rule as
//! `POST /v1/users/{u}/passkeys/registrations` (a user who has a factor needs an approval,
//! consumed then), so the page can do nothing the app could not. The code (128 random bits) is
//! stored only as its SHA-256; the link lives 10 minutes and completes once (the ceremony is
//! deleted by compare-and-set when the passkey is stored). The page acts as the app that
//! created the link: the audit trail names it.
//!
//! The operator makes links too (`countersign enrollments passkey-link`), for a user who cannot
//! prove an approval: a lost phone, or a passkey-only user whose only factor is a phone. With
//! `--recovery` such a link adds a passkey to a user who has a factor; it is audited with the
//! operator as actor and the user's phones are told when it is used (`passkey_added`, marked
//! `operator_issued`).

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::service::{Issuer, PasskeyError, PasskeyService, RegistrationRequest};
use crate::api_keys::service::AuthenticatedApp;
use crate::devices::model::{hash_activation_code, new_activation_code};
use crate::fault::InternalError;
use crate::store::{EnrollmentLink, PasskeyRecord, RegistrationCeremony, UserRecord};

/// The path of the hosted registration page, relative to an allowed origin.
pub const ENROLL_PAGE_PATH: &str = "/passkeys/enroll";

/// A link created for the app to hand to the user (shown once: only its hash is kept).
#[derive(Debug)]
pub struct CreatedLink {
    pub url: SecretString,
    pub expires_at: OffsetDateTime,
}

/// A link that can still be used: its ceremony open, its user the same.
#[derive(Debug)]
pub struct OpenEnrollment {
    pub link: EnrollmentLink,
    pub ceremony: RegistrationCeremony,
    pub user: UserRecord,
}

impl OpenEnrollment {
    /// `PublicKeyCredentialCreationOptionsJSON` for the page.
    pub fn options(&self) -> Result<serde_json::Value, PasskeyError> {
        Ok(serde_json::from_str(&self.link.options)
            .map_err(|e| InternalError::caused_by("reading stored creation options", e))?)
    }
}

impl PasskeyService {
    /// `POST /v1/users/{u}/passkeys/enrollment-links`: begins a registration for the user and
    /// returns the page's URL on the first allowed origin (where the browser must run it).
    pub async fn create_enrollment_link(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        request: RegistrationRequest,
    ) -> Result<CreatedLink, PasskeyError> {
        self.create_link(Issuer::App(app), username, request).await
    }

    /// A help-desk agent's link for a caller they verified (`request.approval`, redeemed here),
    /// through the help desk's keyless `app`; the agent is the actor of its events.
    pub async fn create_helpdesk_link(
        &self,
        app: &AuthenticatedApp,
        agent: crate::ids::AdminId,
        username: &str,
        request: RegistrationRequest,
    ) -> Result<CreatedLink, PasskeyError> {
        self.create_link(Issuer::HelpDesk { app, agent }, username, request).await
    }

    /// `countersign enrollments passkey-link`: a link the operator hands over. Without
    /// `recovery` it is refused for a user who has a factor, like an app's.
    pub async fn create_operator_link(
        &self,
        username: &str,
        recovery: bool,
        name: Option<String>,
    ) -> Result<CreatedLink, PasskeyError> {
        let request = RegistrationRequest { approval: None, name };
        self.create_link(Issuer::Operator { recovery }, username, request).await
    }

    async fn create_link(
        &self,
        issuer: Issuer<'_>,
        username: &str,
        request: RegistrationRequest,
    ) -> Result<CreatedLink, PasskeyError> {
        let origin = self
            .settings
            .origins
            .first()
            .ok_or_else(|| InternalError::new("the relying party has no allowed origin"))?
            .clone();
        let (code, hash) =
            new_activation_code().map_err(|e| InternalError::caused_by("drawing a link code", e))?;
        let begun = self.begin(issuer, username, request, Some(&hash)).await?;
        let url = format!("{origin}{ENROLL_PAGE_PATH}?code={}", code.expose_secret());
        Ok(CreatedLink { url: SecretString::from(url), expires_at: begun.ceremony.expires_at })
    }

    /// The link `code` names, if it can still be used: unknown (or its user deleted), expired
    /// and used are told apart, so the page can say which. Changes nothing.
    pub async fn open_enrollment(&self, code: &str) -> Result<OpenEnrollment, PasskeyError> {
        let link = self
            .store
            .enrollment_link(&hash_activation_code(code))
            .await?
            .ok_or(PasskeyError::EnrollmentLinkInvalid)?;
        if link.expires_at <= self.clock.now() {
            return Err(PasskeyError::EnrollmentLinkExpired);
        }
        let user = match self.user(&link.username).await {
            Ok(user) if user.id == link.user_id => user,
            Ok(_) | Err(PasskeyError::UserNotFound) => return Err(PasskeyError::EnrollmentLinkInvalid),
            Err(other) => return Err(other),
        };
        // The ceremony lives as long as the link and is deleted only when completed.
        let ceremony =
            self.store.registration(link.registration_id).await?.ok_or(PasskeyError::EnrollmentLinkUsed)?;
        Ok(OpenEnrollment { link, ceremony, user })
    }

    /// The page's `credential.toJSON()` for the link `code`: the passkey, stored once.
    pub async fn complete_enrollment(
        &self,
        code: &str,
        credential: &serde_json::Value,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let open = self.open_enrollment(code).await?;
        match self.finish_registration(&open.link.actor(), &open.user, &open.ceremony, credential).await {
            // Another request completed the ceremony meanwhile, or it has just expired.
            Err(PasskeyError::RegistrationNotFound) => Err(PasskeyError::EnrollmentLinkUsed),
            Err(PasskeyError::RegistrationExpired) => Err(PasskeyError::EnrollmentLinkExpired),
            other => other,
        }
    }
}
