//! Every stable error code of the `/v1` API and the status that goes with it, spelled once.
//!
//! Codes are a contract: clients, tests and the schemathesis run match on them. A capability's
//! error mapping picks a [`Code`]; the status comes from this table, never from the call site.
//! The device API (`/device/v1`) uses the protocol's own table,
//! [`countersign_mobile_protocol::ErrorCode`] (PROTOCOL.md §9), which the phones share.

use axum::http::StatusCode;

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal => $status:ident; )*) => {
        /// A stable `/v1` error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$( Code::$variant, )*];

            /// The code as clients see it in `{"error": …}`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => $code, )*
                }
            }

            /// The status that always accompanies the code.
            pub const fn status(self) -> StatusCode {
                match self {
                    $( Code::$variant => StatusCode::$status, )*
                }
            }
        }
    };
}

codes! {
    // The request's shape: the extractors and the router.
    /// The body is not JSON.
    InvalidJson = "invalid_json" => BAD_REQUEST;
    /// The body could not be read.
    InvalidBody = "invalid_body" => BAD_REQUEST;
    /// A path parameter does not parse.
    InvalidPath = "invalid_path" => BAD_REQUEST;
    /// A field is missing, unknown or out of its range.
    InvalidRequest = "invalid_request" => UNPROCESSABLE_ENTITY;
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE;
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE;
    /// No such endpoint.
    NotFound = "not_found" => NOT_FOUND;
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED;

    // The app's API key (every 401 here carries `WWW-Authenticate: Bearer`).
    MissingApiKey = "missing_api_key" => UNAUTHORIZED;
    MalformedApiKey = "malformed_api_key" => UNAUTHORIZED;
    InvalidApiKey = "invalid_api_key" => UNAUTHORIZED;
    ApiKeyRevoked = "api_key_revoked" => UNAUTHORIZED;
    InsufficientScope = "insufficient_scope" => FORBIDDEN;

    // Users.
    UserExists = "user_exists" => CONFLICT;
    UserNotFound = "user_not_found" => NOT_FOUND;

    // Devices and enrollments.
    SecondFactorProofRequired = "second_factor_proof_required" => FORBIDDEN;
    ApprovalInvalid = "approval_invalid" => FORBIDDEN;
    EnrollmentNotFound = "enrollment_not_found" => NOT_FOUND;
    EnrollmentGone = "enrollment_gone" => GONE;
    DeviceNotFound = "device_not_found" => NOT_FOUND;
    /// A key, push token or passkey credential is bound to another user (or, for a
    /// credential, was registered once already): factor sharing.
    FactorAlreadyBound = "factor_already_bound" => CONFLICT;

    // Passkeys (WebAuthn). A credential that does not verify is refused (403) whatever the
    // reason; a body of the wrong shape is `invalid_request` (422) like any other.
    RegistrationNotFound = "registration_not_found" => NOT_FOUND;
    RegistrationExpired = "registration_expired" => GONE;
    PasskeyNotFound = "passkey_not_found" => NOT_FOUND;
    /// No enrollment link has that code (or its user is gone).
    EnrollmentLinkInvalid = "enrollment_link_invalid" => NOT_FOUND;
    EnrollmentLinkExpired = "enrollment_link_expired" => GONE;
    /// The link's passkey is registered: a link completes once.
    EnrollmentLinkUsed = "enrollment_link_used" => GONE;
    /// An OIDC sign-in that has ended (a code was issued or the client was told no).
    SignInFinished = "sign_in_finished" => GONE;
    /// No passkey sign-in has that page token.
    SignInPageInvalid = "sign_in_page_invalid" => NOT_FOUND;
    /// The credential's contents do not decode (base64url, CBOR, client data JSON).
    WebauthnResponseInvalid = "webauthn_response_invalid" => FORBIDDEN;
    ClientDataTooLarge = "client_data_too_large" => PAYLOAD_TOO_LARGE;
    /// The browser reports an origin this server does not accept.
    WebauthnOriginMismatch = "webauthn_origin_mismatch" => FORBIDDEN;
    /// The authenticator data names another relying party (RP ID hash).
    WebauthnRpIdMismatch = "webauthn_rp_id_mismatch" => FORBIDDEN;
    /// The authenticator did not verify the user (UV flag missing).
    WebauthnUserNotVerified = "webauthn_user_not_verified" => FORBIDDEN;
    /// The response answers another ceremony's challenge.
    WebauthnChallengeMismatch = "webauthn_challenge_mismatch" => FORBIDDEN;
    WebauthnSignatureInvalid = "webauthn_signature_invalid" => FORBIDDEN;
    /// The response breaks another rule of the ceremony.
    WebauthnResponseRejected = "webauthn_response_rejected" => FORBIDDEN;
    /// The credential is not an active passkey of the challenge's user.
    WebauthnUnknownCredential = "webauthn_unknown_credential" => FORBIDDEN;
    /// The signature counter did not rise: a cloned authenticator (audited, alerted).
    WebauthnCounterNotIncreasing = "webauthn_counter_not_increasing" => FORBIDDEN;
    /// A passkey sign-in for a user without an active passkey (or an unknown user).
    NoPasskey = "no_passkey" => CONFLICT;
    /// `[webauthn] allowed_aaguids` does not list this authenticator model.
    AuthenticatorNotAllowed = "authenticator_not_allowed" => FORBIDDEN;

    // Challenges and the fatigue defence.
    IdempotencyKeyReused = "idempotency_key_reused" => UNPROCESSABLE_ENTITY;
    NoEnrolledDevice = "no_enrolled_device" => CONFLICT;
    /// The user's policy (or privilege) allows passkeys only: no push is sent.
    PasskeyRequired = "passkey_required" => CONFLICT;
    PushFrozen = "push_frozen" => LOCKED;
    PushLocked = "push_locked" => LOCKED;
    SourceRateLimited = "source_rate_limited" => TOO_MANY_REQUESTS;
    PushRateLimited = "push_rate_limited" => TOO_MANY_REQUESTS;
    ChallengeNotFound = "challenge_not_found" => NOT_FOUND;
    InvalidWait = "invalid_wait" => BAD_REQUEST;
    AlreadyRedeemed = "already_redeemed" => CONFLICT;
    ChallengeNotApproved = "challenge_not_approved" => CONFLICT;
    ApprovalStale = "approval_stale" => CONFLICT;
    ChallengeNotPending = "challenge_not_pending" => CONFLICT;
    ChallengeExpired = "challenge_expired" => GONE;

    // Keycloak's CIBA HTTP authentication channel (`POST /keycloak/ciba`). Keycloak turns any
    // answer but 201 into a 503 for its client; these say why in Countersign's logs and tests.
    /// The bearer token is missing, forged, expired, for another audience, from an unknown
    /// realm or client.
    KeycloakTokenInvalid = "keycloak_token_invalid" => UNAUTHORIZED;
    /// The realm's key set could not be fetched.
    KeycloakKeysUnavailable = "keycloak_keys_unavailable" => SERVICE_UNAVAILABLE;
    /// The token's `jti` was used before.
    KeycloakTokenReplayed = "keycloak_token_replayed" => CONFLICT;
    /// The realm's user (`sub`) is bound to another Countersign user than `login_hint` names.
    KeycloakSubjectMismatch = "keycloak_subject_mismatch" => FORBIDDEN;
    /// The body is not the channel request Keycloak sends.
    KeycloakRequestInvalid = "keycloak_request_invalid" => BAD_REQUEST;
    /// The binding message is not the number (or breaks Keycloak's rule, or was used lately).
    InvalidBindingMessage = "invalid_binding_message" => BAD_REQUEST;

    // The admin plane (`/admin`): its session cookie, CSRF token and four-eyes rules.
    /// No admin session cookie, or one naming no session.
    AdminSessionRequired = "admin_session_required" => UNAUTHORIZED;
    /// The session timed out (idle or absolute), was signed out or revoked.
    AdminSessionExpired = "admin_session_expired" => UNAUTHORIZED;
    /// A state change without this session's CSRF token.
    CsrfFailed = "csrf_failed" => FORBIDDEN;
    /// A state change from another site (`Origin`, `Sec-Fetch-Site`).
    CrossOrigin = "cross_origin" => FORBIDDEN;
    /// The admin's role does not allow this.
    AdminRoleRequired = "admin_role_required" => FORBIDDEN;
    /// A sensitive action needs a fresh passkey assertion (step-up), used once.
    StepUpRequired = "step_up_required" => FORBIDDEN;
    /// The admin who asked for a change cannot approve it.
    SelfApprovalForbidden = "self_approval_forbidden" => FORBIDDEN;
    /// The change would leave fewer than two active admins.
    LastAdmins = "last_admins" => CONFLICT;
    /// Four-eyes changes need a second active admin to approve them.
    SecondAdminRequired = "second_admin_required" => CONFLICT;
    RequestNotPending = "request_not_pending" => CONFLICT;
    /// Nobody decided the four-eyes request within its 24 hours (not the device protocol's
    /// `request_expired`, a stale signed request).
    AdminRequestExpired = "admin_request_expired" => GONE;
    RequestNotFound = "request_not_found" => NOT_FOUND;
    AdminNotFound = "admin_not_found" => NOT_FOUND;
    AdminExists = "admin_exists" => CONFLICT;
    /// Only the admin who asked for a change may withdraw it.
    NotRequester = "not_requester" => FORBIDDEN;
    /// The admin has no removal pending that could still be cancelled.
    RemovalNotPending = "removal_not_pending" => CONFLICT;
    /// The server cannot make this kind of four-eyes change yet.
    RequestKindUnsupported = "request_kind_unsupported" => UNPROCESSABLE_ENTITY;
    /// No bootstrap token or invitation has that value.
    BootstrapTokenInvalid = "bootstrap_token_invalid" => NOT_FOUND;
    BootstrapTokenUsed = "bootstrap_token_used" => GONE;
    BootstrapTokenExpired = "bootstrap_token_expired" => GONE;
    /// The plane has its two admins: further admins come through four-eyes invitations.
    BootstrapClosed = "bootstrap_closed" => CONFLICT;
    /// This session has as many live streams open as it may (close a tab).
    TooManyStreams = "too_many_streams" => TOO_MANY_REQUESTS;
    /// No invitation has that value.
    InvitationInvalid = "invitation_invalid" => NOT_FOUND;
    InvitationUsed = "invitation_used" => GONE;
    InvitationExpired = "invitation_expired" => GONE;
    /// An admin's last active passkey cannot be revoked: they could never sign in again.
    LastAdminPasskey = "last_admin_passkey" => CONFLICT;
    /// The admin ceremony is unknown, expired, or was begun by another browser or session.
    CeremonyInvalid = "ceremony_invalid" => FORBIDDEN;
    /// An app asked to lift a freeze only an admin may lift (a "not me" quarantine, a hard lock).
    AdminReviewRequired = "admin_review_required" => FORBIDDEN;
    /// The help-desk agent has not verified this caller (or the verification is stale or used).
    CallerNotVerified = "caller_not_verified" => FORBIDDEN;
    /// A privileged user's factors change only through a four-eyes request.
    PrivilegedUser = "privileged_user" => FORBIDDEN;
    /// An app of that name exists (active or revoked: names are never reused).
    AppExists = "app_exists" => CONFLICT;
    /// No active app has that name.
    AppNotFound = "app_not_found" => NOT_FOUND;
    /// The app holds no key (an OIDC client's, a Keycloak realm's, the help desk's): it lives and
    /// ends with what it stands for, not here.
    KeylessApp = "keyless_app" => CONFLICT;
    /// No active OIDC client has that id.
    ClientNotFound = "client_not_found" => NOT_FOUND;

    // The server.
    /// A fault: opaque to the client, logged with its cause.
    InternalError = "internal_error" => INTERNAL_SERVER_ERROR;
    /// Too many concurrent changes for one user; retry.
    Busy = "busy" => SERVICE_UNAVAILABLE;
    Timeout = "timeout" => SERVICE_UNAVAILABLE;
    NotReady = "not_ready" => SERVICE_UNAVAILABLE;
    MetricsUnavailable = "metrics_unavailable" => SERVICE_UNAVAILABLE;
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_mobile_protocol::ErrorCode;

    #[test]
    fn codes_are_distinct_snake_case_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} is spelled twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{name}");
        }
    }

    /// A code both APIs use means the same thing on both, with one exception that predates
    /// this table: a `/v1` body with a bad field is 422, a device body that does not parse 400.
    #[test]
    fn codes_shared_with_the_device_protocol_keep_its_status() {
        for code in Code::ALL {
            let Some(device) = ErrorCode::parse(code.as_str()) else { continue };
            if *code != Code::InvalidRequest {
                assert_eq!(code.status().as_u16(), device.http_status(), "{code}");
            }
        }
    }
}
