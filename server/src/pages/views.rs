//! The pages' templates (`server/templates/`), filled in; HTML-escaped by askama.

use askama::Template;

/// The registration page of an enrollment link that can still be used.
#[derive(Debug, Template)]
#[template(path = "enroll.html")]
pub struct EnrollPage {
    pub username: String,
    /// Who created the link: an app's name, or `None` for the operator (a help-desk recovery,
    /// said plainly so a user who asked for nothing can tell).
    pub requested_by: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
    /// What a person reads: `14:05 UTC`.
    pub expires_at_text: String,
}

/// The sign-in page of a passkey challenge that can still be answered.
#[derive(Debug, Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    /// The app asking (as its challenge context names it).
    pub app_name: String,
    /// Where the sign-in came from, as the app saw it (what the phone shows for a push): a
    /// user sent someone else's sign-in link sees a place and device that are not theirs.
    pub ip: Option<String>,
    pub location: Option<String>,
    pub user_agent: Option<String>,
    /// When it was asked for, as a person reads it.
    pub requested_at_text: String,
    /// RFC 3339.
    pub expires_at: String,
    /// What a person reads: `14:05 UTC`.
    pub expires_at_text: String,
}

/// A page that cannot be used, and why (a stable code, as in the API's errors).
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub code: &'static str,
    pub title: &'static str,
    pub message: String,
}

/// The OIDC sign-in page: the number to type on the phone (or the passkey button), who asks,
/// and the time left; its script follows the challenge and sends the browser back.
#[derive(Debug, Template)]
#[template(path = "oidc_sign_in.html")]
pub struct OidcSignInPage {
    /// Where the page's script asks for the state and posts the finish.
    pub sign_in_path: String,
    /// The client asking.
    pub client_name: String,
    pub username: String,
    /// A push's number (none for a passkey sign-in).
    pub number: Option<String>,
    /// A passkey sign-in's page token, for the page's WebAuthn ceremony.
    pub passkey_token: Option<String>,
    /// A push the user may trade for a passkey sign-in ("Use a passkey instead").
    pub passkey_instead: bool,
    /// RFC 3339.
    pub expires_at: String,
    /// What a person reads: `14:05 UTC`.
    pub expires_at_text: String,
}

/// The user cannot sign in here now: why, and the way back to the client.
#[derive(Debug, Template)]
#[template(path = "oidc_refused.html")]
pub struct OidcRefusedPage {
    pub message: String,
    /// The client's redirect URI carrying `error=access_denied`.
    pub back: String,
}

/// An answer posted back to the client (`response_mode=form_post`): sent by the page's script
/// at once, or by the user's click after `message` (a refusal).
#[derive(Debug, Template)]
#[template(path = "oidc_form_post.html")]
pub struct OidcFormPostPage {
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub message: Option<String>,
}
