//! Hosted pages: server-rendered HTML (askama, `server/templates/`) with one small vanilla
//! script (`server/assets/`, no build step), under a strict Content-Security-Policy: no inline
//! script or style, same-origin fetches only, never framed. The passkey registration page
//! (enrollment links) and sign-in page (passkey challenges) come first; the OIDC sign-in page
//! and the admin login reuse the layout, script and headers.
//!
//! Pages decide nothing: they render what a capability's service answers.

pub mod http;
pub mod views;
