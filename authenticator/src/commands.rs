//! One function per subcommand: the order of operations, what is persisted when, and what is
//! printed.
//!
//! Output contract (tests rely on it): results go to stdout as one line each (`enroll` prints the
//! device id; `approve`/`deny`/`report` print the outcome word; `pending --json` prints a JSON
//! array); warnings, prompts that need an answer outside `watch`, and advice go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use countersign_mobile_protocol::{ChallengeDetails, ChallengeId, ChallengeOutcome, Decision};

use crate::cli::{Cli, Command, EnrollArgs};
use crate::client::Client;
use crate::clock;
use crate::device::{self, Device, DeviceInfo, Pending};
use crate::error::Error;
use crate::state::{PrivateKey, State, StateFile};
use crate::terminal::{self, Answer};

/// Runs the parsed command line; times are shown in `zone` (see [`clock::local_zone`]).
pub async fn run(cli: Cli, zone: clock::Zone) -> Result<(), Error> {
    let file = StateFile::new(cli.state);
    match cli.command {
        Command::Enroll(args) => enroll(&file, args).await,
        Command::Pending { json } => pending(&file, json, zone).await,
        Command::Approve { id, number } => respond(&file, &id, Decision::Approve, &number).await,
        Command::Deny { id } => respond(&file, &id, Decision::Deny, "").await,
        Command::Report { id } => respond(&file, &id, Decision::Report, "").await,
        Command::Watch { interval, once } => watch(&file, Duration::from_secs(interval), once, zone).await,
        Command::PushToken { registration } => {
            open_device(&file)?.set_push(&registration).await?;
            println!("updated");
            Ok(())
        }
        Command::Notices { json } => notices(&file, json, zone).await,
        Command::Unenroll => unenroll(&file).await,
    }
}

/// `enroll`: confirm, save a fresh key, enroll it, save the account, print the device id.
pub async fn enroll(file: &StateFile, args: EnrollArgs) -> Result<(), Error> {
    // Refuse before asking anything: an enrolled state file holds the only copy of its key.
    if args.force {
        // Whatever is there (even an unreadable file) is about to be replaced; just say what.
        if let Ok(Some(State { enrollment: Some(existing), server, .. })) = file.load_if_exists() {
            eprintln!("warning: replacing device {} enrolled with {server}", existing.device_id);
        }
    } else if let Some(State { enrollment: Some(existing), server, .. }) = file.load_if_exists()? {
        return Err(Error::State {
            path: file.path().to_owned(),
            reason: format!(
                "already holds device {} enrolled with {server}; pass --force to replace it \
                 (its key is then lost) or use another --state file",
                existing.device_id
            ),
        });
    }
    let private_key = PrivateKey::generate(&ring::rand::SystemRandom::new())?;
    let info = DeviceInfo { name: args.name, platform: args.platform };
    // Signing checks every field, so a bad --name fails before the question and before any write.
    let request = device::sign_enrollment(&args.uri, &private_key, args.push, info)?;
    if !args.yes {
        eprint!("{}", terminal::enrollment_confirmation(&args.uri));
        let answer = terminal::read_line().await?.unwrap_or_default();
        if !terminal::is_yes(&answer) {
            return Err(Error::Cancelled("enrollment not confirmed; nothing was sent"));
        }
    }
    let mut state = State::new(private_key, args.uri.server.clone(), args.uri.user.clone());
    // Persist the key before spending the single-use activation code (see `state` docs).
    file.save(&state)?;
    let enrollment = device::enroll(&request).await?;
    let device_id = enrollment.device_id.clone();
    state.enrollment = Some(enrollment);
    file.save(&state)?;
    eprintln!(
        "enrolled as {} with {} (device id below)",
        args.uri.user,
        terminal::server_host(&args.uri.server)
    );
    println!("{device_id}");
    Ok(())
}

/// `pending`: list verified pending challenges; warn about discarded ones.
pub async fn pending(file: &StateFile, json: bool, zone: clock::Zone) -> Result<(), Error> {
    let Pending { challenges, discarded } = open_device(file)?.pending().await?;
    warn_discarded(&discarded);
    if json {
        let items: Vec<terminal::PendingItem<'_>> = challenges.iter().map(Into::into).collect();
        let text = serde_json::to_string_pretty(&items).map_err(|error| Error::Encode(error.to_string()))?;
        println!("{text}");
    } else if challenges.is_empty() {
        println!("no pending challenges");
    } else {
        let now = clock::now_unix();
        for details in &challenges {
            print!("{}", terminal::describe_challenge(details, now, zone));
        }
    }
    Ok(())
}

/// `approve` / `deny` / `report`: fetch and verify the details (for the server nonce, and so
/// nothing is answered that the server did not sign), answer, print the outcome.
pub async fn respond(
    file: &StateFile,
    id: &ChallengeId,
    decision: Decision,
    number: &str,
) -> Result<(), Error> {
    let device = open_device(file)?;
    let details = device.challenge(id).await?;
    let outcome = answer(file, &device, &details, decision, number).await?;
    print_outcome(outcome);
    Ok(())
}

/// `watch`: poll, show each new challenge, read the user's answer, respond.
///
/// A failed answer (say, `challenge_expired`) is reported and watching goes on; the exit status
/// is then that of the first failure. A failed poll ends `--once`; otherwise network trouble is
/// reported and retried, while a refusal (e.g. `device_revoked`) ends the watch. End of input ends
/// the watch too: nobody is left to answer.
pub async fn watch(file: &StateFile, interval: Duration, once: bool, zone: clock::Zone) -> Result<(), Error> {
    let device = open_device(file)?;
    let mut seen: HashSet<ChallengeId> = HashSet::new();
    let mut first_failure: Option<Error> = None;
    loop {
        let pending = match device.pending().await {
            Ok(pending) => pending,
            Err(error @ Error::Network { .. }) if !once => {
                eprintln!("warning: {}; retrying", error.report());
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        warn_discarded(&pending.discarded);
        // Forget challenges that are no longer pending so `seen` stays small.
        seen.retain(|id| pending.challenges.iter().any(|details| &details.challenge_id == id));
        for details in pending.challenges {
            if !seen.insert(details.challenge_id.clone()) {
                continue;
            }
            print!("{}", terminal::describe_challenge(&details, clock::now_unix(), zone));
            let Some(user_answer) = ask(&details).await? else {
                return first_failure.map_or(Ok(()), Err);
            };
            let (decision, number) = match user_answer {
                Answer::Skip => {
                    println!("skipped");
                    continue;
                }
                Answer::Approve(number) => (Decision::Approve, number),
                Answer::Deny => (Decision::Deny, String::new()),
                Answer::Report => (Decision::Report, String::new()),
            };
            match answer(file, &device, &details, decision, &number).await {
                Ok(outcome) => print_outcome(outcome),
                Err(error) => {
                    print_error(&error);
                    first_failure.get_or_insert(error);
                }
            }
        }
        if once {
            return first_failure.map_or(Ok(()), Err);
        }
        tokio::time::sleep(interval).await;
    }
}

/// `notices`: print the account's security notices. A `device_enrolled` notice the user does
/// not recognise means someone else added a device: tell the help desk.
pub async fn notices(file: &StateFile, json: bool, zone: clock::Zone) -> Result<(), Error> {
    let notices = open_device(file)?.notices().await?;
    if json {
        println!("{notices}");
        return Ok(());
    }
    let list = notices.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no notices");
    }
    let now = clock::now_unix();
    for notice in list {
        let kind = notice["kind"].as_str().unwrap_or("unknown");
        let when = terminal::format_time(notice["created_at"].as_u64().unwrap_or(0), now, zone);
        let name = notice["details"]["device_name"].as_str().unwrap_or("");
        println!("notice {}: {kind} at {when} {name}", notice["id"]);
    }
    Ok(())
}

/// `unenroll`: revoke on the server, then delete the key, as PROTOCOL.md 6.6 asks.
pub async fn unenroll(file: &StateFile) -> Result<(), Error> {
    let device = open_device(file)?;
    device.unenroll().await?;
    file.remove()?;
    println!("unenrolled");
    Ok(())
}

/// Prints an error the way `main` does: `error: <code>: <message>` for a server refusal (plus
/// the request id to quote, if any), `error: <description>` otherwise.
pub fn print_error(error: &Error) {
    eprintln!("error: {}", error.report());
    if let Error::Refused { body, .. } = error
        && let Some(request_id) = &body.request_id
    {
        eprintln!("request id: {request_id}");
    }
}

/// The enrolled device of the state file.
fn open_device(file: &StateFile) -> Result<Device, Error> {
    let account = file.load_account()?;
    let client = Client::new(account.state.server.clone())?;
    Device::new(client, &account.state.private_key, account.enrollment)
}

/// Reserves (persists) the next counter, then signs and sends the answer. The order is the
/// point: a counter is on disk before it can be on the wire.
async fn answer(
    file: &StateFile,
    device: &Device,
    details: &ChallengeDetails,
    decision: Decision,
    number: &str,
) -> Result<ChallengeOutcome, Error> {
    let counter = file.next_counter()?;
    device.answer(details, decision, number, counter).await
}

/// Prompts until the line typed is a valid answer; `None` at end of input.
async fn ask(details: &ChallengeDetails) -> Result<Option<Answer>, Error> {
    loop {
        println!("{}", terminal::ANSWER_PROMPT);
        std::io::stdout().flush().map_err(Error::Terminal)?;
        let Some(line) = terminal::read_line().await? else {
            return Ok(None);
        };
        match terminal::parse_answer(&line) {
            Ok(answer) => return Ok(Some(answer)),
            Err(hint) => eprintln!("{hint} (challenge {})", details.challenge_id),
        }
    }
}

fn print_outcome(outcome: ChallengeOutcome) {
    println!("{}", terminal::outcome_word(outcome));
    if let Some(advice) = terminal::outcome_advice(outcome) {
        eprintln!("{advice}");
    }
}

fn warn_discarded(discarded: &[device::Discarded]) {
    for item in discarded {
        eprintln!(
            "warning: discarded challenge {}: {} (possibly forged; not shown)",
            item.challenge_id.as_deref().unwrap_or("(no id)"),
            item.reason
        );
    }
}
