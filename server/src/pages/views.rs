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
