//! The state every request shares: the store, the signing key, the caches that keep the agent's
//! hot path (an unchanged bundle: `304`) off the database, heartbeats, and the rate limiters.
//!
//! # Caches and replicas
//! Every cache entry carries the *generation* it was computed at: a counter that any replica
//! bumps (through the store's `notify_changed`, PostgreSQL `NOTIFY`) after a change that can
//! alter a bundle or a credential (an assignment, variables, a device's users, a retired device).
//! An entry of an older generation is recomputed from the database, so a replica never serves a
//! bundle or accepts a credential that another replica has changed, beyond the notification's
//! delivery time (sub-millisecond on a LAN; a 30 s re-check covers lost notifications).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use postwarden_server_domain::bundle::{fingerprint, payload, BundleContent};
use postwarden_server_store::{DeviceAuth, Store};
use postwarden_wire::{sign_bundle, Jwk, SigningKey};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::problem::{ApiError, ApiResult};

/// Tunables of a running server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A device silent longer than this is `stale`.
    pub stale_after: Duration,
    /// Largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// Enrollment attempts per source address and minute.
    pub enroll_per_minute: u32,
    /// Failed admin authentications per source address and minute before 429.
    pub admin_failures_per_minute: u32,
    /// The longest long-poll (`?wait=`) a device may ask for.
    pub max_wait: Duration,
    /// Raw reports and events older than this are deleted once their days are rolled up.
    pub retention: Duration,
    /// How often the history task rolls up completed days and applies the retention.
    pub rollup_every: Duration,
    /// A dashboard session ends after this long without a request.
    pub session_idle: Duration,
    /// A dashboard session ends this long after login, used or not.
    pub session_max: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            stale_after: Duration::from_secs(24 * 3600),
            body_limit: 4 * 1024 * 1024,
            enroll_per_minute: 60,
            admin_failures_per_minute: 10,
            max_wait: Duration::from_secs(300),
            retention: Duration::from_secs(400 * 24 * 3600),
            rollup_every: Duration::from_secs(10 * 60),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
        }
    }
}

/// A signed bundle as served: its serial (the ETag) and the compact JWS.
#[derive(Debug)]
pub struct SignedBundle {
    pub serial: u64,
    pub jws: String,
}

struct Cached<T> {
    generation: u64,
    value: T,
}

/// What was last heard from a device: when, and which bundle serial it said it has.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub at_ms: i64,
    pub serial: Option<i64>,
}

/// The shared state of the HTTP handlers.
pub struct App {
    pub store: Store,
    pub signing: SigningKey,
    pub jwk: Jwk,
    pub limits: Limits,
    /// This process's counters for `/metrics`.
    pub counters: crate::api::metrics::Counters,
    /// Who the server's reports are for (the audit report's title block; `--organisation`).
    pub organisation: String,
    changes: watch::Receiver<u64>,
    /// Bumped when this process stores reports, events or notices (live dashboards).
    data: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
    devices: Mutex<HashMap<String, Cached<DeviceAuth>>>,
    bundles: Mutex<HashMap<String, Cached<Arc<SignedBundle>>>>,
    heartbeats: Mutex<HashMap<String, Heartbeat>>,
    enroll_limiter: DefaultKeyedRateLimiter<IpAddr>,
    admin_fail_limiter: DefaultKeyedRateLimiter<IpAddr>,
    admin_blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("kid", &self.jwk.thumbprint())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Caches hold at most this many entries; beyond, they are emptied and refilled on demand.
const CACHE_CAP: usize = 1_000_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 of a unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `N` bytes from the operating system's random source (tokens, credentials, ids).
pub fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("the random source", e))?;
    Ok(bytes)
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"))
}

impl App {
    pub fn new(
        store: Store,
        signing: SigningKey,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
    ) -> App {
        let jwk = signing.public_jwk();
        let changes = store.changes();
        App {
            store,
            signing,
            jwk,
            enroll_limiter: RateLimiter::keyed(per_minute(limits.enroll_per_minute)),
            admin_fail_limiter: RateLimiter::keyed(per_minute(limits.admin_failures_per_minute)),
            limits,
            counters: Default::default(),
            organisation: crate::report::default_organisation(),
            changes,
            data: watch::Sender::new(0),
            shutdown,
            devices: Mutex::default(),
            bundles: Mutex::default(),
            heartbeats: Mutex::default(),
            admin_blocked: Mutex::default(),
        }
    }

    /// The organisation the reports name (default: this machine's host name).
    pub fn with_organisation(mut self, organisation: String) -> App {
        self.organisation = organisation;
        self
    }

    /// Says that this process stored new findings or events (wakes live dashboards; other
    /// replicas' dashboards see it at their next periodic refresh).
    pub fn data_changed(&self) {
        self.data.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Follows [`App::data_changed`].
    pub fn data_changes(&self) -> watch::Receiver<u64> {
        self.data.subscribe()
    }

    /// What a live page compares: the configuration generation and this process's data
    /// generation.
    pub fn live_generation(&self) -> String {
        format!("{}.{}", self.generation(), *self.data.borrow())
    }

    pub fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.limits.stale_after.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// A receiver of generation changes, for long-polls.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Tells every replica that bundles or credentials may have changed.
    pub async fn changed(&self) -> ApiResult<()> {
        self.store.notify_changed().await?;
        Ok(())
    }

    // --- rate limits -----------------------------------------------------------------------

    /// One enrollment attempt from `ip`; `Err` (429) when over the limit.
    pub fn check_enroll_rate(&self, ip: IpAddr) -> ApiResult<()> {
        self.enroll_limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::too_many(
                "too many enrollment attempts from this address",
                wait.as_secs() + 1,
            )
        })
    }

    /// Refuses an address that failed admin authentication too often (429 until it may retry).
    pub fn check_admin_blocked(&self, ip: IpAddr) -> ApiResult<()> {
        let mut blocked = self.admin_blocked.lock().expect("lock");
        if let Some(until) = blocked.get(&ip).copied() {
            let now = Instant::now();
            if until > now {
                return Err(ApiError::too_many(
                    "too many failed authentications from this address",
                    (until - now).as_secs() + 1,
                ));
            }
            blocked.remove(&ip);
        }
        Ok(())
    }

    /// Counts a failed admin authentication from `ip`.
    pub fn admin_auth_failed(&self, ip: IpAddr) {
        tracing::warn!(%ip, "failed admin authentication");
        if let Err(not_until) = self.admin_fail_limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let mut blocked = self.admin_blocked.lock().expect("lock");
            if blocked.len() >= CACHE_CAP {
                blocked.clear();
            }
            blocked.insert(ip, Instant::now() + wait.max(Duration::from_secs(1)));
        }
    }

    // --- devices ---------------------------------------------------------------------------

    /// The device a credential hash belongs to (cached per generation), or `None`.
    pub async fn device(&self, credential_hash: &str) -> ApiResult<Option<DeviceAuth>> {
        let generation = self.generation();
        if let Some(hit) = self.devices.lock().expect("lock").get(credential_hash) {
            if hit.generation == generation {
                return Ok(Some(hit.value.clone()));
            }
        }
        let found = self.store.device_by_credential(credential_hash).await?;
        if let Some(device) = &found {
            let mut cache = self.devices.lock().expect("lock");
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(
                credential_hash.to_owned(),
                Cached {
                    generation,
                    value: device.clone(),
                },
            );
        }
        Ok(found)
    }

    /// Records that a device was heard from (written to the database in batches).
    pub fn heartbeat(&self, device: &str, serial: Option<u64>) {
        let beat = Heartbeat {
            at_ms: now_ms(),
            serial: serial.and_then(|s| i64::try_from(s).ok()),
        };
        let mut beats = self.heartbeats.lock().expect("lock");
        match beats.get_mut(device) {
            Some(old) => {
                old.at_ms = old.at_ms.max(beat.at_ms);
                if beat.serial.is_some() {
                    old.serial = beat.serial;
                }
            }
            None => {
                beats.insert(device.to_owned(), beat);
            }
        }
    }

    /// Writes the pending heartbeats; on error they are kept for the next flush.
    pub async fn flush_heartbeats(&self) {
        let pending: Vec<(String, Heartbeat)> =
            self.heartbeats.lock().expect("lock").drain().collect();
        if pending.is_empty() {
            return;
        }
        let rows: Vec<(String, i64, Option<i64>)> = pending
            .iter()
            .map(|(id, b)| (id.clone(), b.at_ms, b.serial))
            .collect();
        if let Err(e) = self.store.touch_devices(&rows).await {
            tracing::warn!(error = %e, devices = rows.len(), "writing heartbeats failed; retrying later");
            let mut beats = self.heartbeats.lock().expect("lock");
            for (id, b) in pending {
                beats.entry(id).or_insert(b);
            }
        }
    }

    /// The last heartbeat of a device not yet written to the database.
    pub fn pending_heartbeat(&self, device: &str) -> Option<Heartbeat> {
        self.heartbeats.lock().expect("lock").get(device).copied()
    }

    // --- bundles ---------------------------------------------------------------------------

    /// The device's current signed bundle. Computed from the database when the cache is of an
    /// older generation; the serial advances (compare-and-set, safe across replicas) exactly
    /// when the content changed. `reads_preview`: the agent reads a staged rollout's preview
    /// (`postwarden-features: preview`); which version a device gets during a rollout, and
    /// whether a preview goes with it, is `crate::rollout::bundle_profile`'s decision.
    pub async fn bundle(&self, device: &str, reads_preview: bool) -> ApiResult<Arc<SignedBundle>> {
        let generation = self.generation();
        // Agents that read previews and agents that do not get different content.
        let key = if reads_preview {
            format!("{device}\npreview")
        } else {
            device.to_owned()
        };
        if let Some(hit) = self.bundles.lock().expect("lock").get(&key) {
            if hit.generation == generation {
                return Ok(hit.value.clone());
            }
        }
        // Another replica may move the serial to other content between our read and our
        // compare-and-set; then read again (a handful of rounds at most, each after a change).
        for _ in 0..8 {
            let Some(src) = self.store.bundle_source(device).await? else {
                return Err(ApiError::not_found("the device has no bundle (retired?)"));
            };
            let (version, toml, preview) =
                crate::rollout::bundle_profile(device, &src, reads_preview)?;
            let content = BundleContent {
                device,
                profile_id: &src.profile_id,
                profile_version: version,
                profile_toml: toml,
                users: &src.users,
                variables: &src.variables,
                preview,
            };
            let fp = fingerprint(&content);
            let (serial, stored_fp, issued_ms) = if src.fingerprint.as_deref() == Some(&fp) {
                (src.serial, fp.clone(), src.issued_ms)
            } else {
                self.store
                    .advance_serial(device, src.fingerprint.as_deref(), &fp, now_ms())
                    .await?
            };
            if stored_fp != fp {
                continue;
            }
            let issued_at =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(issued_ms) * 1_000_000)
                    .map_err(|e| ApiError::internal("reading the bundle time", e))?;
            let serial = u64::try_from(serial)
                .map_err(|_| ApiError::internal("reading the serial", "negative"))?;
            let signed = Arc::new(SignedBundle {
                serial,
                jws: sign_bundle(&payload(&content, serial, issued_at), &self.signing),
            });
            let mut cache = self.bundles.lock().expect("lock");
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    generation,
                    value: signed.clone(),
                },
            );
            return Ok(signed);
        }
        Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the device's bundle kept changing while it was being signed; retry",
        ))
    }
}

/// Runs until shutdown: writes heartbeats every `every`, and once more at the end.
pub async fn heartbeat_writer(app: Arc<App>, every: Duration) {
    let mut shutdown = app.shutdown();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => app.flush_heartbeats().await,
            _ = shutdown.changed() => break,
        }
    }
    app.flush_heartbeats().await;
}
