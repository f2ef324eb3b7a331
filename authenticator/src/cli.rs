//! Command-line syntax. Values are parsed into protocol types here (enrollment URI, challenge
//! id, number, push registration), so a malformed argument is a usage error (exit 2) before any
//! key is touched or any request is sent.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use countersign_mobile_protocol::{
    ApnsEnvironment, ChallengeId, EnrollmentUri, ProtocolError, PushRegistration, PushToken,
};

use crate::terminal;

/// Environment variable naming the state file.
pub const STATE_ENV: &str = "COUNTERSIGN_AUTHENTICATOR_STATE";

/// Default device name sent at enrollment.
pub const DEFAULT_DEVICE_NAME: &str = "countersign-authenticator";

/// Default platform sent at enrollment.
pub const DEFAULT_PLATFORM: &str = concat!("countersign-authenticator ", env!("CARGO_PKG_VERSION"));

/// Countersign reference authenticator: acts as an enrolled phone from the terminal.
#[derive(Debug, Parser)]
#[command(name = "countersign-authenticator", version)]
pub struct Cli {
    /// State file holding this authenticator's private key and account (created with mode 0600).
    #[arg(long, global = true, env = STATE_ENV, value_name = "FILE", default_value = "countersign-authenticator.json")]
    pub state: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a key and enroll it with the activation URI (QR code contents); prints the device id.
    Enroll(EnrollArgs),
    /// List pending sign-in requests with their verified context.
    Pending {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a challenge with the number shown on the sign-in screen; prints the outcome.
    Approve {
        /// Challenge id.
        #[arg(value_parser = parse_challenge_id)]
        id: ChallengeId,
        /// The digits shown on the sign-in screen (leading zeros matter).
        #[arg(long, value_parser = terminal::parse_number)]
        number: String,
    },
    /// Deny a challenge ("not now"); prints the outcome.
    Deny {
        /// Challenge id.
        #[arg(value_parser = parse_challenge_id)]
        id: ChallengeId,
    },
    /// Report a challenge as "this was not me" (freezes push, alerts an admin); prints the outcome.
    Report {
        /// Challenge id.
        #[arg(value_parser = parse_challenge_id)]
        id: ChallengeId,
    },
    /// Poll for challenges and answer each one from standard input.
    Watch {
        /// Seconds between polls.
        #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
        /// Handle what is pending now, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Replace the push registration: none, apns:TOKEN, apns:TOKEN:sandbox or fcm:TOKEN.
    PushToken {
        /// New registration.
        #[arg(value_name = "REGISTRATION", value_parser = parse_push)]
        registration: PushRegistration,
    },
    /// Show security notices (e.g. another device enrolled on this account).
    Notices {
        /// Print the JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke this device on the server, then delete the state file.
    Unenroll,
}

/// Arguments of `enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// `countersign://enroll?v=1&server=...&code=...&user=...`
    #[arg(value_name = "ACTIVATION_URI", value_parser = parse_enrollment_uri)]
    pub uri: EnrollmentUri,
    /// Device name shown to the user and administrators.
    #[arg(long, default_value = DEFAULT_DEVICE_NAME)]
    pub name: String,
    /// Platform description.
    #[arg(long, default_value = DEFAULT_PLATFORM)]
    pub platform: String,
    /// Push registration: none, apns:TOKEN, apns:TOKEN:sandbox or fcm:TOKEN.
    #[arg(long, value_name = "REGISTRATION", default_value = "none", value_parser = parse_push)]
    pub push: PushRegistration,
    /// Do not ask for confirmation (tests and scripts; a phone always asks).
    #[arg(long)]
    pub yes: bool,
    /// Replace an existing enrolled state file (its key is lost; the old device stays enrolled
    /// on its server until revoked there).
    #[arg(long)]
    pub force: bool,
}

fn parse_challenge_id(text: &str) -> Result<ChallengeId, ProtocolError> {
    ChallengeId::new(text)
}

fn parse_enrollment_uri(text: &str) -> Result<EnrollmentUri, ProtocolError> {
    EnrollmentUri::parse(text)
}

/// Parses a push registration: `none`, `apns:<hex token>` (production), `apns:<hex
/// token>:sandbox`, `apns:<hex token>:production`, or `fcm:<token>` (FCM tokens contain `:`, so
/// everything after `fcm:` is the token).
pub fn parse_push(spec: &str) -> Result<PushRegistration, String> {
    const SYNTAX: &str = "expected none, apns:<token>[:sandbox|:production] or fcm:<token>";
    let token = |text: &str| PushToken::new(text).map_err(|error| format!("{error} ({SYNTAX})"));
    match spec.split_once(':') {
        None if spec == "none" => Ok(PushRegistration::None),
        Some(("fcm", rest)) => Ok(PushRegistration::Fcm { token: token(rest)? }),
        Some(("apns", rest)) => {
            let (raw_token, environment) = match rest.split_once(':') {
                None => (rest, ApnsEnvironment::Production),
                Some((raw_token, "production")) => (raw_token, ApnsEnvironment::Production),
                Some((raw_token, "sandbox")) => (raw_token, ApnsEnvironment::Sandbox),
                Some(_) => return Err(format!("unknown APNs environment in {spec:?} ({SYNTAX})")),
            };
            PushRegistration::apns(token(raw_token)?, environment)
                .map_err(|error| format!("{error} ({SYNTAX})"))
        }
        _ => Err(SYNTAX.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn apns(token: &str, environment: ApnsEnvironment) -> PushRegistration {
        PushRegistration::Apns { token: PushToken::new(token).unwrap(), environment }
    }

    #[test]
    fn push_syntax() {
        assert_eq!(parse_push("none"), Ok(PushRegistration::None));
        let hex = "a1b2".repeat(16);
        assert_eq!(parse_push(&format!("apns:{hex}")), Ok(apns(&hex, ApnsEnvironment::Production)));
        assert_eq!(
            parse_push(&format!("apns:{hex}:production")),
            Ok(apns(&hex, ApnsEnvironment::Production))
        );
        assert_eq!(parse_push(&format!("apns:{hex}:sandbox")), Ok(apns(&hex, ApnsEnvironment::Sandbox)));
        assert_eq!(
            parse_push("fcm:dXk1:APA91b-x_y"),
            Ok(PushRegistration::Fcm { token: PushToken::new("dXk1:APA91b-x_y").unwrap() })
        );
        for bad in [
            "",
            "None",
            "none:",
            "apns",
            "apns:",
            "apns::sandbox",
            "apns:a1b2:staging",
            "apns:a1b2",
            "apns:not-a-hex-token-but-long-enough-to-pass-any-length-check-at-all",
            "fcm:",
            "fcm:a b",
            "webpush:x",
            "apns:a\u{e9}",
        ] {
            assert!(parse_push(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        assert!(DEFAULT_PLATFORM.len() <= countersign_mobile_protocol::limits::MAX_PLATFORM_LEN);
    }

    #[test]
    fn arguments_are_validated_before_anything_runs() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["countersign-authenticator"], args].concat());
        assert!(parse(&["approve", "ch-1", "--number", "042"]).is_ok());
        assert!(parse(&["approve", "ch-1", "--number", "04a"]).is_err());
        assert!(parse(&["approve", "ch 1", "--number", "042"]).is_err());
        assert!(parse(&["approve", "ch-1"]).is_err(), "--number is required");
        assert!(
            parse(&["enroll", "countersign://enroll?v=2&server=https%3A%2F%2Fa.example&code=c&user=u"])
                .is_err()
        );
        assert!(
            parse(&["enroll", "countersign://enroll?v=1&server=http%3A%2F%2Fa.example&code=c&user=u"])
                .is_err(),
            "plain http only for loopback"
        );
        let cli = parse(&[
            "--state",
            "/tmp/s.json",
            "enroll",
            "countersign://enroll?v=1&server=http%3A%2F%2F127.0.0.1%3A8080&code=c&user=u",
            "--push",
            "fcm:t",
            "--yes",
        ])
        .unwrap();
        assert_eq!(cli.state, PathBuf::from("/tmp/s.json"));
        let Command::Enroll(args) = cli.command else { panic!("not enroll") };
        assert_eq!(args.uri.server.as_str(), "http://127.0.0.1:8080");
        assert!(args.yes && !args.force);
        assert_eq!(args.name, DEFAULT_DEVICE_NAME);
        let Command::Watch { interval, once } = parse(&["watch"]).unwrap().command else {
            panic!("not watch")
        };
        assert_eq!((interval, once), (2, false));
        assert!(parse(&["watch", "--interval", "0"]).is_err());
    }
}
