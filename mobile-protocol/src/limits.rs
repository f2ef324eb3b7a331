//! The protocol version and every size limit.
//!
//! The server enforces these on input and the authenticator on output, so a phone that builds a
//! message with this crate never has it refused for size. Lengths are in bytes (UTF-8), not
//! characters, because that is what a server can bound cheaply before parsing anything else.

/// Version of this protocol. It appears in every domain-separation label
/// (`countersign/v1/...`), in the enrollment URI (`v=1`), in the endpoint paths (`/device/v1/...`)
/// and in the challenge response body.
pub const PROTOCOL_VERSION: u64 = 1;

/// Device and challenge identifiers (`[A-Za-z0-9_-]`, e.g. a UUID).
pub const MAX_ID_LEN: usize = 64;
/// Activation code from the enrollment URI (`[A-Za-z0-9_-]`).
pub const MAX_ACTIVATION_CODE_LEN: usize = 64;
/// The server identifier returned at enrollment (printable ASCII).
pub const MAX_SERVER_ID_LEN: usize = 256;
/// Server base URL (`https://...`).
pub const MAX_SERVER_URL_LEN: usize = 512;
/// Username shown to the user while enrolling (display only, never trusted).
pub const MAX_USERNAME_LEN: usize = 256;
/// Whole enrollment URI, percent-encoded, as held by the QR code.
pub const MAX_ENROLLMENT_URI_LEN: usize = 2048;

/// Device name chosen by the user ("Alice's iPhone").
pub const MAX_DEVICE_NAME_LEN: usize = 128;
/// Platform string ("iOS 17.4", "Android 14").
pub const MAX_PLATFORM_LEN: usize = 64;
/// APNs device token (hex) or FCM registration token.
pub const MAX_PUSH_TOKEN_LEN: usize = 1024;

/// Application name shown in a challenge.
pub const MAX_APP_NAME_LEN: usize = 128;
/// IP address shown in a challenge (textual IPv4 or IPv6).
pub const MAX_IP_LEN: usize = 64;
/// User agent shown in a challenge; the server truncates longer ones before signing.
pub const MAX_USER_AGENT_LEN: usize = 512;
/// Approximate location label shown in a challenge ("Berlin, DE").
pub const MAX_LOCATION_LEN: usize = 128;
/// Digits the user may type as the matching number.
pub const MAX_NUMBER_DIGITS: usize = 10;

/// Nonces (request nonce, server nonce) carry at least 128 bits.
pub const MIN_NONCE_LEN: usize = 16;
/// Upper bound on a nonce, so a header can be bounded before decoding it.
pub const MAX_NONCE_LEN: usize = 64;
/// Size of nonces this crate generates (256 bits).
pub const GENERATED_NONCE_LEN: usize = 32;

/// HTTP method in a signed request (`GET`, `PUT`, `DELETE`, ...).
pub const MAX_METHOD_LEN: usize = 16;
/// Path and query of a signed request.
pub const MAX_PATH_AND_QUERY_LEN: usize = 2048;
/// Body of any `/device/v1/...` request; larger bodies get `413 payload_too_large`.
pub const MAX_DEVICE_REQUEST_BODY_LEN: usize = 16 * 1024;

/// Recommended clock skew the server tolerates on signed requests (seconds, either direction).
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 300;
