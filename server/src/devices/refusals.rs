//! Refused device requests: rate limits per claimed device id and per source network, and their
//! audit in aggregate.
//!
//! A device request that fails authentication costs a database read, a signature check and,
//! before this module, an audit row: anyone who knew a device id could write ~1,000 rows a
//! second. Now refusals are counted, never each written:
//!
//! * **per source network** (the TCP peer's /24 or /64): checked before any work. Once a network
//!   has had more refusals than its quota, every device request from it gets `429` with
//!   `Retry-After` until the quota has room again — without a database read.
//! * **per claimed device id** (known or not, so the limit itself reveals nothing): a refusal
//!   over the quota is answered `429` instead of `401`. A request whose signature verifies is
//!   never refused by this limit, so knowing a device id is not enough to lock its phone out.
//! * **audit**: one `device.request_refused` event per device and minute, plus one per minute for
//!   every refusal that names no known device (unknown ids, requests throttled before any
//!   work), with the count, the reasons and the busiest source networks, written by
//!   [`DeviceRefusals::flush`] once the minute is over. So the rows written per minute are
//!   bounded by the devices enrolled, not by what an attacker sends.
//!
//! Only refusals are counted: a phone that signs correctly uses up nothing. The limits live in
//! this process's memory (per instance, not shared across instances).
//!
//! The algorithm is `governor`'s keyed GCRA, driven by the injected [`Clock`] so tests move time.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota, RateLimiter};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::ids::{DeviceId, UserId};
use crate::store::{DeviceRecord, Store, StoreError};

/// Length of one aggregation window.
const WINDOW: Duration = Duration::minutes(1);

/// How many refusals are let through before `429`, each quota refilling over a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimits {
    /// Refusals per claimed device id per minute.
    pub per_device_per_minute: u32,
    /// Refusals per source network (/24, /64) per minute.
    pub per_network_per_minute: u32,
}

impl Default for RefusalLimits {
    fn default() -> Self {
        Self { per_device_per_minute: 10, per_network_per_minute: 120 }
    }
}

/// Why a device request was refused; the names are what the audit event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// The signature does not verify (or is not DER).
    BadSignature,
    /// The claimed device id does not exist (answered like a bad signature).
    UnknownDevice,
    /// Verified, but the timestamp is outside the clock-skew window.
    Expired,
    /// Verified, but the nonce was already used.
    Replayed,
    /// Verified, but the device was revoked.
    Revoked,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::UnknownDevice => "unknown_device",
            Self::Expired => "expired",
            Self::Replayed => "replayed",
            Self::Revoked => "revoked",
        }
    }

    /// Whether the caller proved it holds the device key (or replayed a request that did).
    fn is_signature_verified(self) -> bool {
        matches!(self, Self::Expired | Self::Replayed | Self::Revoked)
    }
}

/// Answer `429 rate_limited` with this `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

/// The source network of a TCP peer (see `fatigue::model::source_prefix`); peers the server
/// cannot see (an in-process caller) share one bucket.
pub fn source_network(peer: Option<IpAddr>) -> String {
    peer.and_then(|ip| crate::fatigue::model::source_prefix(&ip.to_canonical().to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One refused request, as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub network: &'a str,
    /// The device id the request named, if it named one (known or not).
    pub claimed_id: Option<&'a str>,
    /// The device, when the id is known.
    pub device: Option<&'a DeviceRecord>,
    pub reason: RefusalReason,
}

/// What one aggregated audit event is about: a known device, or all the refusals that name no
/// known device (one event a minute, however many networks or made-up ids an attacker uses).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Claimant {
    Device { id: DeviceId, user: UserId },
    NoKnownDevice,
}

/// At most this many networks are named in one event; the rest are counted as `other`.
const MAX_NETWORKS_NAMED: usize = 20;
/// At most this many networks are counted one by one in a minute (memory bound).
const MAX_NETWORKS_COUNTED: usize = 1_000;

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    throttled: u64,
    reasons: BTreeMap<&'static str, u64>,
    networks: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, reason: &'static str, is_throttled: bool, network: &str) {
        self.count += 1;
        self.throttled += u64::from(is_throttled);
        *self.reasons.entry(reason).or_default() += 1;
        self.count_network(network.to_owned(), 1);
    }

    fn count_network(&mut self, network: String, n: u64) {
        let key = if self.networks.len() < MAX_NETWORKS_COUNTED || self.networks.contains_key(&network) {
            network
        } else {
            "other".to_owned()
        };
        *self.networks.entry(key).or_default() += n;
    }

    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.throttled += other.throttled;
        for (reason, n) in other.reasons {
            *self.reasons.entry(reason).or_default() += n;
        }
        for (network, n) in other.networks {
            self.count_network(network, n);
        }
    }

    /// The busiest networks by count, then `other` for the rest.
    fn named_networks(&self) -> BTreeMap<String, u64> {
        let mut by_count: Vec<(&String, &u64)> = self.networks.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut named: BTreeMap<String, u64> =
            by_count.iter().take(MAX_NETWORKS_NAMED).map(|(k, v)| ((*k).clone(), **v)).collect();
        let rest: u64 = by_count.iter().skip(MAX_NETWORKS_NAMED).map(|(_, v)| **v).sum();
        if rest > 0 {
            *named.entry("other".to_owned()).or_default() += rest;
        }
        named
    }
}

type Limiter = RateLimiter<String, DashMapStateStore<String>, InjectedClock, NoOpMiddleware<Nanos>>;
type Tallies = BTreeMap<(OffsetDateTime, Claimant), Tally>;

/// Counts refusals, decides `429`s and keeps the aggregated audit until it is flushed.
#[derive(Debug)]
pub struct DeviceRefusals {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by_device: Limiter,
    by_network: Limiter,
    /// Networks over their quota, until when: checked before any work is done for a request.
    blocked: Mutex<HashMap<String, OffsetDateTime>>,
    tallies: Mutex<Tallies>,
}

impl DeviceRefusals {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, limits: RefusalLimits) -> Self {
        let quota =
            |per_minute: u32| Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        let limiter_clock = InjectedClock(Arc::clone(&clock));
        Self {
            by_device: RateLimiter::dashmap_with_clock(
                quota(limits.per_device_per_minute),
                limiter_clock.clone(),
            ),
            by_network: RateLimiter::dashmap_with_clock(quota(limits.per_network_per_minute), limiter_clock),
            store,
            clock,
            blocked: Mutex::new(HashMap::new()),
            tallies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Before any work: is this network over its refusal quota? Counted (in aggregate) if so.
    pub fn check_network(&self, network: &str) -> Result<(), Throttled> {
        let now = self.clock.now();
        let until = lock(&self.blocked).get(network).copied().filter(|until| *until > now);
        match until {
            None => Ok(()),
            Some(until) => {
                self.tally(now, Claimant::NoKnownDevice, "network_throttled", true, network);
                Err(Throttled { retry_after_secs: ceil_secs(until - now) })
            }
        }
    }

    /// Counts a refusal against its network and its claimed device id. Returns `Some` when the
    /// request is to be answered `429` instead of its own error: never for a request whose
    /// signature verified.
    pub fn refused(&self, refusal: Refusal<'_>) -> Option<Throttled> {
        let now = self.clock.now();
        let network_over = self.by_network.check_key(&refusal.network.to_owned()).err().map(|not_until| {
            let wait = self.wait(&not_until);
            lock(&self.blocked).insert(refusal.network.to_owned(), now + wait);
            Throttled { retry_after_secs: ceil_secs(wait) }
        });
        let device_over = refusal
            .claimed_id
            .and_then(|id| self.by_device.check_key(&id.to_owned()).err())
            .map(|not_until| Throttled { retry_after_secs: ceil_secs(self.wait(&not_until)) });
        let throttled =
            if refusal.reason.is_signature_verified() { None } else { network_over.or(device_over) };
        let subject = match refusal.device {
            Some(device) => Claimant::Device { id: device.id, user: device.user_id },
            None => Claimant::NoKnownDevice,
        };
        self.tally(now, subject, refusal.reason.as_str(), throttled.is_some(), refusal.network);
        throttled
    }

    fn wait(&self, not_until: &NotUntil<Nanos>) -> Duration {
        let waited = not_until.wait_time_from(InjectedClock(Arc::clone(&self.clock)).now());
        Duration::try_from(waited).unwrap_or(WINDOW)
    }

    fn tally(
        &self,
        now: OffsetDateTime,
        subject: Claimant,
        reason: &'static str,
        is_throttled: bool,
        network: &str,
    ) {
        let window = window_start(now);
        lock(&self.tallies).entry((window, subject)).or_default().add(reason, is_throttled, network);
        let answer = if is_throttled { "throttled" } else { "refused" };
        metrics::counter!("countersign_device_refusals_total", "reason" => reason, "answer" => answer)
            .increment(1);
    }

    /// Writes one audit event per device (and one for unknown ones) for every minute that is over; returns
    /// how many. What could not be written stays for the next flush.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let open = window_start(self.clock.now());
        let closed: Tallies = {
            let mut tallies = lock(&self.tallies);
            let (closed, still_open) =
                std::mem::take(&mut *tallies).into_iter().partition(|((window, _), _)| *window < open);
            *tallies = still_open;
            closed
        };
        self.write(closed).await
    }

    /// Writes everything, the current minute included (at shutdown).
    pub async fn flush_all(&self) -> Result<usize, StoreError> {
        let all = std::mem::take(&mut *lock(&self.tallies));
        self.write(all).await
    }

    async fn write(&self, tallies: Tallies) -> Result<usize, StoreError> {
        let mut written = 0;
        let mut tallies = tallies.into_iter();
        while let Some(((window, subject), tally)) = tallies.next() {
            let event = self.event(window, &subject, &tally);
            if let Err(error) = self.store.record_audit(event).await {
                // Keep the counts: they are merged into whatever arrived meanwhile.
                let mut kept = lock(&self.tallies);
                kept.entry((window, subject)).or_default().merge(tally);
                for (key, tally) in tallies {
                    kept.entry(key).or_default().merge(tally);
                }
                return Err(error);
            }
            written += 1;
        }
        Ok(written)
    }

    fn event(&self, window: OffsetDateTime, subject: &Claimant, tally: &Tally) -> AuditEvent {
        let (actor, subject_text, who) = match subject {
            Claimant::Device { id, user } => {
                (Actor::Device { id: *id }, Subject::User(*user), json!({ "device_id": id }))
            }
            Claimant::NoKnownDevice => (Actor::System, Subject::UnknownDevices, json!({})),
        };
        let mut details = json!({
            "window_start": window.unix_timestamp(),
            "window_secs": WINDOW.whole_seconds(),
            "count": tally.count,
            "throttled": tally.throttled,
            "reasons": tally.reasons,
            "networks": tally.named_networks(),
        });
        if let (Some(details), Some(who)) = (details.as_object_mut(), who.as_object()) {
            details.extend(who.clone());
        }
        AuditEvent::new(self.clock.now(), actor, Action::DeviceRequestRefused, subject_text)
            .with_details(details)
    }

    /// Drops limiter state and blocks that no longer limit anything, so memory stays bounded by
    /// the last minute's refusals.
    pub fn forget_idle(&self) {
        self.by_device.retain_recent();
        self.by_network.retain_recent();
        let now = self.clock.now();
        lock(&self.blocked).retain(|_, until| *until > now);
    }

    /// Flushes closed minutes every `every` until the process ends (`serve` also calls
    /// [`Self::flush_all`] at shutdown).
    pub fn spawn(self: Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = self.flush().await {
                    tracing::warn!(%error, "aggregated device refusals not audited yet; retrying");
                }
                self.forget_idle();
            }
        })
    }
}

fn window_start(t: OffsetDateTime) -> OffsetDateTime {
    let secs = t.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(WINDOW.whole_seconds())).unwrap_or(t)
}

fn ceil_secs(d: Duration) -> u64 {
    let whole = d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0);
    u64::try_from(whole).unwrap_or(0).max(1)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The injected clock as `governor` wants it: nanoseconds since the Unix epoch.
#[derive(Debug, Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl GovernorClock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(u64::try_from(self.0.now().unix_timestamp_nanos()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_grouped_by_network() {
        let network = |ip: &str| source_network(Some(ip.parse().unwrap()));
        assert_eq!(network("203.0.113.77"), "203.0.113.0/24");
        // An IPv4 client of a dual-stack listener arrives IPv4-mapped: still its /24.
        assert_eq!(network("::ffff:203.0.113.77"), "203.0.113.0/24");
        assert_eq!(network("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(source_network(None), "unknown");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::milliseconds(500)), 1);
        assert_eq!(ceil_secs(Duration::seconds(6)), 6);
        assert_eq!(ceil_secs(Duration::milliseconds(6_001)), 7);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }

    #[test]
    fn the_busiest_networks_are_named_and_the_rest_counted() {
        let mut tally = Tally::default();
        for i in 0..MAX_NETWORKS_COUNTED + 10 {
            for _ in 0..=(i % 3) {
                tally.add("unknown_device", false, &format!("net-{i:04}"));
            }
        }
        assert_eq!(tally.networks.len(), MAX_NETWORKS_COUNTED + 1, "memory is bounded");
        let named = tally.named_networks();
        assert!(named.len() <= MAX_NETWORKS_NAMED + 1 && named.contains_key("other"), "{named:?}");
        assert_eq!(named.values().sum::<u64>(), tally.count, "nothing is lost");
        assert_eq!(named["net-0002"], 3);
    }

    #[test]
    fn windows_start_on_the_minute() {
        let t = time::macros::datetime!(2026-11-28 09:00:59.9 UTC);
        assert_eq!(window_start(t), time::macros::datetime!(2026-11-28 09:00 UTC));
    }
}
