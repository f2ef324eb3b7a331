//! Identifier newtypes, so a user id can never be passed where an app id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An application registered to call the REST API.
    AppId
);
uuid_id!(
    /// A user who can be asked for a second factor.
    UserId
);
uuid_id!(
    /// An enrolled phone (or the reference authenticator).
    DeviceId
);
uuid_id!(
    /// A pending or used enrollment (activation code).
    EnrollmentId
);
uuid_id!(
    /// A number-matching challenge.
    ChallengeId
);
uuid_id!(
    /// A registered passkey or security key (not its WebAuthn credential id).
    PasskeyId
);
uuid_id!(
    /// A passkey registration ceremony in flight.
    RegistrationId
);
uuid_id!(
    /// An OpenID Connect sign-in in progress (an authorization request being answered).
    AuthorizationId
);
uuid_id!(
    /// An administrator of the admin plane (not a user: admins are a table of their own).
    AdminId
);
uuid_id!(
    /// A four-eyes request an admin made for another admin to approve.
    AdminRequestId
);
uuid_id!(
    /// A WebAuthn ceremony of the admin plane (registration, sign-in, step-up) in flight.
    AdminCeremonyId
);
uuid_id!(
    /// A passkey of an admin (not its WebAuthn credential id).
    AdminPasskeyId
);
