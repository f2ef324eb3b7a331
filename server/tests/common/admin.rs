//! Admins for tests: an admin row and a live session minted through the store and the session
//! service (the passkey sign-in that normally precedes them has its own tests), and requests
//! that carry the session cookie, its CSRF token and our `Origin` as the admin pages do.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use countersign::admin::model::{AdminStatus, Role};
use countersign::admin::sessions::{CSRF_HEADER, SESSION_COOKIE, secret_hash};
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::AdminId;
use countersign::store::AdminRecord;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{Reply, TestApp};

/// The origin the admin pages are served from in tests (the WebAuthn origin).
pub const ADMIN_ORIGIN: &str = "http://localhost:8080";

/// A signed-in admin, as their browser holds them.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub id: AdminId,
    pub cookie: String,
    pub csrf: String,
}

/// An admin row, active, with a fresh WebAuthn user handle.
pub async fn create_admin(app: &TestApp, name: &str, role: Role) -> AdminRecord {
    let admin = AdminRecord {
        id: AdminId::random(),
        name: name.to_owned(),
        role,
        status: AdminStatus::Active,
        webauthn_handle: countersign::passkeys::ceremony::new_user_handle(),
        created_at: app.clock_now(),
        created_by: "cli".to_owned(),
        removal_due_at: None,
        removed_at: None,
    };
    let audit = AuditEvent::new(app.clock_now(), Actor::Cli, Action::AdminInvited, Subject::Admin(admin.id));
    app.store.create_admin(&admin, audit).await.unwrap();
    admin
}

impl TestApp {
    /// A new active admin with a live session.
    pub async fn signed_in_admin(&self, name: &str, role: Role) -> AdminClient {
        let admin = create_admin(self, name, role).await;
        self.sign_in_admin(&admin).await
    }

    /// A new session for an existing admin.
    pub async fn sign_in_admin(&self, admin: &AdminRecord) -> AdminClient {
        let started = self.state.admin.sessions.start(admin, "test").await.unwrap();
        AdminClient { id: admin.id, cookie: started.token.expose_secret().to_owned(), csrf: started.csrf }
    }

    /// Records a fresh step-up (a passkey assertion just now) for `action` on the admin's
    /// session, as the step-up ceremony does once the assertion verifies.
    pub async fn step_up_for(&self, admin: &AdminClient, action: &str) {
        let now = self.clock_now();
        let audit = AuditEvent::new(
            now,
            Actor::Admin { id: admin.id },
            Action::AdminSteppedUp,
            Subject::Admin(admin.id),
        );
        self.store.set_admin_step_up(&secret_hash(&admin.cookie), now, action, audit).await.unwrap();
    }

    /// A fresh step-up for approving (or rejecting) the request `id`.
    pub async fn step_up(&self, admin: &AdminClient, request_id: &str) {
        self.step_up_for(admin, &format!("approve_request:{request_id}")).await;
    }

    /// A request as the admin pages send it: the session cookie, and for a POST the CSRF token
    /// and our `Origin`.
    pub fn admin_request(
        &self,
        method: Method,
        path: &str,
        admin: &AdminClient,
        body: Option<Value>,
    ) -> Request<Body> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={}", admin.cookie));
        if method != Method::GET {
            request = request
                .header(CSRF_HEADER, &admin.csrf)
                .header(header::ORIGIN, ADMIN_ORIGIN)
                .header("sec-fetch-site", "same-origin");
        }
        match body {
            Some(json) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        }
    }

    pub async fn admin_get(&self, admin: &AdminClient, path: &str) -> Reply {
        self.send(self.admin_request(Method::GET, path, admin, None)).await
    }

    pub async fn admin_post(&self, admin: &AdminClient, path: &str, body: Value) -> Reply {
        self.send(self.admin_request(Method::POST, path, admin, Some(body))).await
    }

    /// The page at `path` as the admin's browser gets it: status, headers, HTML.
    pub async fn admin_page(&self, admin: &AdminClient, path: &str) -> (StatusCode, HeaderMap, String) {
        let reply = self.admin_get(admin, path).await;
        let html = match reply.body {
            Value::String(html) => html,
            json => json.to_string(),
        };
        (reply.status, reply.headers, html)
    }
}
