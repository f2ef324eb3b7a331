//! The error responses every route shares, added to the OpenAPI document in one place.
//!
//! Each comes from a piece of the edge that a whole class of routes goes through, so it is
//! declared by that class rather than route by route: the API-key extractor (401, and 403 for a
//! missing scope), the path extractor (400 `invalid_path`), the JSON body extractor (400
//! `invalid_json`, 413, 415, 422) and the middleware every request passes (500 for a fault,
//! 503 for a timeout or a contended write). What only one route returns (404, 409, 410, 423,
//! 429 …) stays in that route's own annotation.

use std::collections::BTreeMap;

use utoipa::Modify;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

/// Adds the shared error responses to every operation that passes the piece returning them.
#[derive(Debug)]
pub struct SharedErrorResponses;

impl Modify for SharedErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                add_shared_responses(operation);
            }
        }
    }
}

fn add_shared_responses(operation: &mut Operation) {
    let mut shared: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    let (needs_key, needs_scope) = key_requirements(operation);
    if needs_key {
        shared.entry(401).or_default().push("missing, malformed, unknown or revoked API key");
    }
    if needs_scope {
        shared.entry(403).or_default().push("`insufficient_scope`: the key lacks the scope this route needs");
    }
    let has_path_params = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
    if has_path_params {
        shared.entry(400).or_default().push("`invalid_path`: a path parameter does not parse");
    }
    if operation.request_body.is_some() {
        shared.entry(400).or_default().push("`invalid_json`: the body is not JSON");
        shared
            .entry(413)
            .or_default()
            .push("`payload_too_large`: the body is larger than this server accepts");
        shared
            .entry(415)
            .or_default()
            .push("`unsupported_media_type`: send `Content-Type: application/json`");
        shared
            .entry(422)
            .or_default()
            .push("`invalid_request`: a field is missing, unknown or out of its range");
    }
    shared
        .entry(500)
        .or_default()
        .push("`internal_error`: a server fault; quote `request_id` when reporting it");
    shared.entry(503).or_default().push("`timeout`, or `busy` (too many concurrent changes): retry later");
    for (status, reasons) in shared {
        add(operation, status, &reasons.join("; "));
    }
}

/// Whether the operation takes an API key, and whether that key needs a scope.
fn key_requirements(operation: &Operation) -> (bool, bool) {
    let Ok(security) = serde_json::to_value(&operation.security) else { return (false, false) };
    let schemes: Vec<&serde_json::Value> =
        security.as_array().into_iter().flatten().filter_map(|r| r.get("api_key")).collect();
    let needs_scope = schemes.iter().any(|scopes| scopes.as_array().is_some_and(|s| !s.is_empty()));
    (!schemes.is_empty(), needs_scope)
}

/// Adds an error response unless the route already describes that status more precisely.
fn add(operation: &mut Operation, status: u16, description: &str) {
    operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build(),
        )
    });
}

/// A username as `users::model::normalize_username` accepts it: 1-128 characters of letters,
/// digits and `. _ @ + -`, not starting or ending with `.` and without `..` (so no URL
/// normaliser rewrites it as a path segment); compared case-insensitively. Documentation only:
/// routes take a `String` and validate it in the model.
#[derive(Debug, utoipa::ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^[A-Za-z0-9_@+-]+(\.[A-Za-z0-9_@+-]+)*$",
    min_length = 1,
    max_length = 128,
    example = "alice"
)]
pub struct Username(#[expect(dead_code, reason = "documents the OpenAPI schema only")] String);
