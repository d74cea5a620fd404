//! Prometheus metrics, all prefixed `portcullis_`. Labels come from enums, static strings and
//! route names only; this module imports nothing from the crate, so every layer may record here.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What a route in shadow mode would have answered a request it let through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ShadowLabels {
    route: Arc<str>,
    would: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CheckLabels {
    /// A route name from the config (or "none"): bounded by the config, never a raw path.
    route: Arc<str>,
    decision: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DurationLabels {
    decision: &'static str,
}

/// Why keys were fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FetchTrigger {
    startup,
    /// A reloaded config named an issuer not seen before.
    reload,
    refresh,
    unknown_kid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FetchResult {
    ok,
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    trigger: FetchTrigger,
    result: FetchResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CacheResult {
    hit,
    miss,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

/// Which IdP endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum IdpEndpoint {
    discovery,
    jwks,
    token,
    introspection,
    userinfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IdpLabels {
    endpoint: IdpEndpoint,
    result: FetchResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LoginStage {
    started,
    completed,
    failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabels {
    stage: LoginStage,
    reason: &'static str,
}

/// How a refresh ended: new tokens, the session ended by the IdP (invalid_grant), or a failure
/// that keeps the session until its access token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefreshResult {
    ok,
    ended,
    failed,
    /// Another replica refreshed it (through Redis): its tokens were taken.
    from_replica,
}

/// How a config reload went: swapped in, or refused (the running config stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    ok,
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackchannelLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefreshLabels {
    result: RefreshResult,
}

/// How a Redis command went: answered, failed (timeout, connection), or not sent because Redis is
/// known to be down (the breaker is open until a probe reaches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RedisResult {
    ok,
    error,
    short_circuit,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RedisLabels {
    result: RedisResult,
}

/// Every metric of the process, registered once at startup and shared behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    checks: Family<CheckLabels, Counter>,
    shadowed: Family<ShadowLabels, Counter>,
    check_duration: Family<DurationLabels, Histogram>,
    jwks_fetches: Family<FetchLabels, Counter>,
    token_cache: Family<CacheLabels, Counter>,
    idp_duration: Family<IdpLabels, Histogram>,
    ready: Gauge,
    logins: Family<LoginLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    logouts: Counter,
    sessions: Gauge,
    redis: Family<RedisLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    backchannel: Family<BackchannelLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "checks",
            "Authorization checks by route, decision and reason",
            checks.clone(),
        );
        let shadowed = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_checks",
            "Checks a route in shadow mode let through, by what it would have decided and why",
            shadowed.clone(),
        );
        // From 50 us to ~0.8 s: cached checks sit in the first buckets, IdP round trips in the last.
        let check_duration = Family::<DurationLabels, Histogram>::new_with_constructor(
            (|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.00005, 2.5, 12,
                ))
            }) as fn() -> Histogram,
        );
        registry.register(
            "check_duration_seconds",
            "Time to decide one authorization check",
            check_duration.clone(),
        );
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetches by trigger and result",
            jwks_fetches.clone(),
        );
        let token_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "token_cache_requests",
            "Validated-token cache lookups by result",
            token_cache.clone(),
        );
        let idp_duration = Family::<IdpLabels, Histogram>::new_with_constructor(
            (|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.005, 2.0, 11,
                ))
            }) as fn() -> Histogram,
        );
        registry.register(
            "idp_request_duration_seconds",
            "Calls to the identity provider by endpoint and result",
            idp_duration.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 once discovery and keys of every issuer are loaded",
            ready.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Browser logins by stage (started, completed, failed) and reason",
            logins.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "refreshes",
            "Access token refreshes by result",
            refreshes.clone(),
        );
        let logouts = Counter::default();
        registry.register("logouts", "Logouts", logouts.clone());
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Sessions held by the memory store",
            sessions.clone(),
        );
        let redis = Family::<RedisLabels, Counter>::default();
        registry.register(
            "redis_requests",
            "Redis commands by result (ok, error, short_circuit while Redis is known to be down)",
            redis.clone(),
        );
        let build = prometheus_client::metrics::info::Info::new(vec![(
            "version",
            env!("CARGO_PKG_VERSION"),
        )]);
        registry.register("build", "portcullis build information", build);
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP, a changed file) by result",
            reloads.clone(),
        );
        let backchannel = Family::<BackchannelLabels, Counter>::default();
        registry.register(
            "backchannel_logouts",
            "Back-channel logout tokens from the provider: ok, or why they changed nothing",
            backchannel.clone(),
        );
        Self {
            registry,
            checks,
            shadowed,
            check_duration,
            jwks_fetches,
            token_cache,
            idp_duration,
            ready,
            logins,
            refreshes,
            logouts,
            sessions,
            redis,
            reloads,
            backchannel,
        }
    }

    /// The gauge the memory session store keeps up to date.
    pub fn sessions_gauge(&self) -> Gauge {
        self.sessions.clone()
    }

    pub fn redis(&self, result: RedisResult) {
        self.redis.get_or_create(&RedisLabels { result }).inc();
    }

    /// A back-channel logout token: `ok`, or the bounded reason it was refused.
    pub fn backchannel_logout(&self, result: &'static str) {
        self.backchannel
            .get_or_create(&BackchannelLabels { result })
            .inc();
    }

    pub fn config_reload(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn refresh(&self, result: RefreshResult) {
        self.refreshes
            .get_or_create(&RefreshLabels { result })
            .inc();
    }

    /// One authorization check: its route, decision (`allow`, `deny`, `redirect`) and bounded reason.
    pub fn check(
        &self,
        route: Arc<str>,
        decision: &'static str,
        reason: &'static str,
        elapsed: Duration,
    ) {
        self.checks
            .get_or_create(&CheckLabels {
                route,
                decision,
                reason,
            })
            .inc();
        self.check_duration
            .get_or_create(&DurationLabels { decision })
            .observe(elapsed.as_secs_f64());
    }

    /// A check a route in shadow mode let through that it would have answered `would` (deny,
    /// redirect) for `reason`.
    pub fn shadowed(&self, route: Arc<str>, would: &'static str, reason: &'static str) {
        self.shadowed
            .get_or_create(&ShadowLabels {
                route,
                would,
                reason,
            })
            .inc();
    }

    /// A step of the browser login funnel.
    pub fn login(&self, stage: LoginStage, reason: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { stage, reason })
            .inc();
    }

    pub fn logout(&self) {
        self.logouts.inc();
    }

    pub fn jwks_fetch(&self, trigger: FetchTrigger, result: FetchResult) {
        self.jwks_fetches
            .get_or_create(&FetchLabels { trigger, result })
            .inc();
    }

    pub fn token_cache(&self, result: CacheResult) {
        self.token_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    pub fn idp_call(&self, endpoint: IdpEndpoint, result: FetchResult, elapsed: Duration) {
        self.idp_duration
            .get_or_create(&IdpLabels { endpoint, result })
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The Prometheus text exposition (format 0.0.4), what `/metrics` serves.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
