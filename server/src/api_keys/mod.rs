//! App API keys: who may call `/v1`, with which scopes. Keys are created and revoked from the
//! command line; only their hashes are stored.

pub mod http;
mod model;
pub mod service;

pub use model::{
    GeneratedKey, RandomFailure, Scope, Scopes, UnknownScope, generate, hash_key, is_valid_app_name,
    key_matches, parse_key_id, random_urlsafe,
};
