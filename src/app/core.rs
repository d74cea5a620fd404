//! The core built from a config, and built again from the next one on a reload: what a config
//! decides (routes, issuers, headers, session secrets, login settings) is made anew, what outlives
//! a config (the IdP client, every issuer's key cache, the session store, Redis, the login flow's
//! replay and refresh guards) is kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::authz::Authorizer;
use crate::authz::assertion::AssertionSigner;
use crate::authz::login::providers::Logins;
use crate::authz::login::{LoginFlow, LoginSettings};
use crate::authz::pass::PassIssuer;
use crate::config::{Config, Provider};
use crate::idp::{IdpClient, TokenEndpoint, TokenInfoClient};
use crate::metrics::Metrics;
use crate::session::store::MemoryStore;
use crate::session::{Backend, Codec, Cookies, RedisStore, Revocations, SessionStore, StoreKind};
use crate::token::pass::PassKeys;
use crate::token::{IdentityClaims, Issuer, JwksCache, Opaque, TimeRules, TokenCache, Verifier};

/// Validated tokens kept at most; ~1 KiB each with their claims.
const TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// A cached token is re-verified at least this often, so a withdrawn key stops working.
const TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);
/// Sessions the memory store keeps at most.
const MEMORY_SESSIONS: u64 = 100_000;
/// Every Redis command is bounded by this; a slower Redis is an unavailable one.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// The running core: the adapters read `authorizer` once per request, so a reload swaps it whole.
pub struct Core {
    pub authorizer: Arc<ArcSwap<Authorizer>>,
    /// Every issuer's key cache of the first config, the provider's first (readiness waits on them).
    pub caches: Vec<Arc<JwksCache>>,
    pub metrics: Arc<Metrics>,
    /// The JWKS of the pass and assertions (`pass.enabled`, `upstream.assertion`), published on
    /// the admin port.
    pub pass_jwks: Arc<ArcSwapOption<String>>,
    kept: Kept,
}

/// What a reload keeps.
struct Kept {
    client: IdpClient,
    /// Key caches by source (`discover <issuer>`, `fixed <jwks_uri>`), every one made so far.
    caches: Mutex<Vec<(String, Arc<JwksCache>)>>,
    backend: Backend,
    redis: Option<RedisStore>,
    /// Sessions the provider ended (back-channel logout).
    revocations: Arc<Revocations>,
}

impl Core {
    /// Builds everything; connects to Redis when it is the session store.
    pub async fn build(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let (backend, redis) = session_backend(config, &metrics).await?;
        let kept = Kept {
            client: IdpClient::new(metrics.clone()),
            caches: Mutex::new(Vec::new()),
            backend,
            revocations: Revocations::new(config.session.absolute_timeout, redis.clone()),
            redis,
        };
        for warning in config_warnings(config) {
            tracing::warn!("{warning}");
        }
        let (first, caches) = kept.assemble(config, &metrics, None);
        Ok(Self {
            authorizer: Arc::new(ArcSwap::from_pointee(first.authorizer)),
            caches,
            pass_jwks: Arc::new(ArcSwapOption::from_pointee(first.pass_jwks)),
            metrics,
            kept,
        })
    }

    /// Sessions the provider ended; shared with other replicas through Redis when configured.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.kept.revocations
    }

    /// Makes the core `config` describes, not yet in use, and the key caches it needs that are
    /// new (to be loaded before [`Core::commit`], and kept fresh). The session store stays the
    /// running one; the login flow keeps its replay and refresh guards.
    pub fn prepare(&self, config: &Config) -> (Prepared, Vec<Arc<JwksCache>>) {
        let old = self.authorizer.load_full();
        self.kept.assemble(config, &self.metrics, old.logins())
    }

    /// Swaps `next` in: requests from now on see it whole, requests in flight finish with the
    /// one they started with.
    pub fn commit(&self, next: Prepared) {
        self.pass_jwks.store(next.pass_jwks.map(Arc::new));
        self.authorizer.store(Arc::new(next.authorizer));
    }
}

/// A core made from one config, not yet in use (a reloaded config waits for its new keys).
pub struct Prepared {
    authorizer: Authorizer,
    pass_jwks: Option<String>,
}

impl Kept {
    /// The core `config` makes over what is kept, and the key caches it needed that did not
    /// exist before (to be loaded and kept fresh).
    fn assemble(
        &self,
        config: &Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Logins>,
    ) -> (Prepared, Vec<Arc<JwksCache>>) {
        let mut new_caches = Vec::new();
        let mut provider_keys = Vec::new();
        for p in &config.providers {
            provider_keys.push(self.cache(
                discovered(&p.issuer),
                config,
                &mut new_caches,
                |client, min| JwksCache::discover(&p.issuer, client, metrics.clone(), min),
            ));
        }
        let mut issuers = Vec::new();
        for b in &config.bearer {
            let cache = match &b.jwks_uri {
                Some(uri) => self.cache(
                    format!("fixed {uri}"),
                    config,
                    &mut new_caches,
                    |client, min| JwksCache::fixed(uri.clone(), client, metrics.clone(), min),
                ),
                // The provider's own cache when it is the same issuer (however spelled).
                None => self.cache(
                    discovered(&b.issuer),
                    config,
                    &mut new_caches,
                    |client, min| JwksCache::discover(&b.issuer, client, metrics.clone(), min),
                ),
            };
            let mut issuer = Issuer::new(&b.issuer, &b.audiences, cache);
            if let Some((ask, limits)) = &b.opaque {
                let info = TokenInfoClient::new(self.client.clone(), ask.clone());
                issuer = issuer.with_opaque(Opaque::new(info, *limits, TOKEN_CACHE_ENTRIES));
            }
            issuers.push(issuer);
        }
        // A new verifier, new token caches (opaque answers too): a token validated under the old
        // issuers and audiences is validated again under the new ones.
        let verifier = Arc::new(Verifier::new(
            issuers,
            IdentityClaims {
                user_id_claim: config.provider().user_id_claim.clone(),
                groups_claim: config.provider().groups_claim.clone(),
            },
            time_rules(config),
            TokenCache::new(TOKEN_CACHE_ENTRIES, TOKEN_CACHE_MAX_TTL),
            metrics.clone(),
        ));
        let mut authorizer = Authorizer::new(
            config.policy.clone(),
            verifier,
            config.identity_headers.clone(),
        );
        // One key set signs the pass and assertions; its JWKS is published when either is on.
        let keys = (config.pass.is_some() || config.assertion.is_some())
            .then(|| Arc::new(PassKeys::derive(&config.session.keys)))
            .filter(|k| !k.is_empty());
        let pass_jwks = keys.as_ref().map(|k| k.jwks());
        if let (Some(settings), Some(keys)) = (&config.assertion, &keys) {
            authorizer =
                authorizer.with_assertion(AssertionSigner::new(settings.clone(), keys.clone()));
        }
        if !config.session.keys.is_empty() {
            // The first provider's cookies and cookie keys are a single-provider config's, so
            // its sessions outlive adding another; the others' are their own.
            let names: Vec<Option<&str>> = config
                .providers
                .iter()
                .enumerate()
                .map(|(i, p)| p.name.as_deref().filter(|_| i > 0))
                .collect();
            let cookies =
                Cookies::for_providers(&config.session.cookie_name, config.session.secure, &names);
            let mut flows = Vec::new();
            for (((p, keys_of), cookies), name) in config
                .providers
                .iter()
                .zip(provider_keys)
                .zip(cookies)
                .zip(&names)
            {
                let sessions = self.sessions(config, cookies, *name, &p.issuer);
                let mut login = login_flow(
                    config,
                    p,
                    keys_of,
                    self.client.clone(),
                    metrics.clone(),
                    sessions,
                );
                // The same provider's guards; the first's stay the first's when it gains a name
                // (one provider becoming several), as its cookies do.
                let before = previous.and_then(|l| {
                    l.all()
                        .find(|f| f.provider_name() == p.name.as_deref())
                        .or_else(|| flows.is_empty().then(|| l.first()))
                });
                if let Some(before) = before {
                    login = login.sharing_guards_with(before);
                }
                if let (Some(name), true) = (&p.name, config.providers.len() > 1) {
                    login = login.labelled(name);
                }
                // With several providers the config refuses the pass.
                if let (Some(settings), Some(keys), true) = (&config.pass, &keys, flows.is_empty())
                {
                    login = login.with_pass(PassIssuer::new(settings.clone(), keys.clone()));
                }
                flows.push(login);
            }
            let first = flows.remove(0);
            authorizer =
                authorizer.with_logins(Logins::new(first, flows), config.upstream_authorization);
        }
        (
            Prepared {
                authorizer,
                pass_jwks,
            },
            new_caches,
        )
    }

    /// The key cache for `key`, made by `make` the first time it is asked for.
    fn cache(
        &self,
        key: String,
        config: &Config,
        new: &mut Vec<Arc<JwksCache>>,
        make: impl FnOnce(IdpClient, Duration) -> JwksCache,
    ) -> Arc<JwksCache> {
        let mut caches = self
            .caches
            .lock()
            .expect("never poisoned: no panics while held");
        if let Some((_, c)) = caches.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let cache = Arc::new(make(
            self.client.clone(),
            config.provider().jwks_min_refetch_interval,
        ));
        caches.push((key, cache.clone()));
        new.push(cache.clone());
        cache
    }

    /// One provider's sessions (`provider`: its name, `None` for the first) over the store
    /// that was connected at startup.
    fn sessions(
        &self,
        config: &Config,
        cookies: Cookies,
        provider: Option<&str>,
        issuer: &str,
    ) -> SessionStore {
        let sessions = SessionStore::new(
            Codec::for_provider(&config.session.keys, provider),
            cookies,
            config.session.absolute_timeout,
            config.session.idle_timeout,
            self.backend.clone(),
        )
        .with_revocations(self.revocations.clone())
        .scoped_to(issuer);
        match &self.redis {
            Some(redis) => sessions.shared_with(redis.clone()),
            None => sessions,
        }
    }
}

/// The cache key of an issuer's discovered keys: one per issuer, with or without its trailing `/`
/// (as [`crate::idp::same_issuer`] compares them).
fn discovered(issuer: &str) -> String {
    format!("discover {}", issuer.trim_end_matches('/'))
}

pub(super) fn time_rules(config: &Config) -> TimeRules {
    TimeRules {
        leeway: config.provider().leeway.as_secs(),
        max_lifetime: config.provider().max_token_lifetime.as_secs(),
    }
}

/// The session store's backend. Redis, when configured, is connected now so that a wrong URL
/// fails at startup; it holds the sessions of the `redis` store, and with any store it is what
/// replicas share (one code exchange per login, one refresh per access token).
async fn session_backend(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Backend, Option<RedisStore>)> {
    let redis = match &config.session.redis_url {
        Some(url) => Some(
            RedisStore::connect(url.expose(), REDIS_TIMEOUT, metrics.clone())
                .await
                .map_err(|e| anyhow::anyhow!("session.redis.url: cannot connect: {e}"))?,
        ),
        None => None,
    };
    let backend = match (config.session.store, &redis) {
        (StoreKind::Cookie, _) => Backend::Cookie,
        (StoreKind::Memory, _) => {
            Backend::Memory(MemoryStore::new(MEMORY_SESSIONS, metrics.sessions_gauge()))
        }
        (StoreKind::Redis, Some(redis)) => Backend::Redis(redis.clone()),
        (StoreKind::Redis, None) => anyhow::bail!("session.redis.url: missing"),
    };
    Ok((backend, redis))
}

fn login_flow(
    config: &Config,
    p: &Provider,
    keys: Arc<JwksCache>,
    client: IdpClient,
    metrics: Arc<Metrics>,
    sessions: SessionStore,
) -> LoginFlow {
    let l = &config.login;
    let token_endpoint = TokenEndpoint::new(client, p.credentials());
    LoginFlow::new(
        LoginSettings {
            provider: p.name.as_deref().map(Arc::from),
            issuer: p.issuer.clone(),
            hosts: p.hosts.clone(),
            scopes: p.scopes.clone(),
            audience: p.audience.clone(),
            extra_auth_params: p
                .extra_auth_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            redirect_uri: l.redirect_uri.clone(),
            callback_path: l.callback_path.clone(),
            logout_path: l.logout_path.clone(),
            post_logout_redirect: l.post_logout_redirect.clone(),
            allowed_redirect_hosts: l.allowed_redirect_hosts.clone(),
            backchannel_logout_path: l.backchannel_logout_path.clone(),
            after_login: l.after_login.clone(),
            scheme: l.scheme,
            user_id_claim: p.user_id_claim.clone(),
            groups_claim: p.groups_claim.clone(),
            time_rules: time_rules(config),
            refresh_before: config.session.refresh_before,
        },
        keys,
        token_endpoint,
        sessions,
        metrics,
    )
}

/// What is allowed but worth knowing, said by `check-config` (and logged by `serve`).
pub fn config_warnings(config: &Config) -> Vec<String> {
    let mut out = config.warnings.clone();
    if config.session.keys.is_empty() {
        out.push(
            "no session.secret: browser login is off, login routes answer 401 like api routes"
                .to_owned(),
        );
    } else if config.session.store == StoreKind::Cookie {
        out.push(format!(
            "session.store cookie keeps each session in the browser, at most {} KB sealed: a user \
             whose tokens carry hundreds of groups ({}) cannot sign in there and is told so; \
             session.store redis or memory keeps any size",
            Cookies::MAX_VALUE / 1000,
            config.provider().groups_claim
        ));
    }
    if config.login.backchannel_logout_path.is_some() && config.listen.http_authz.is_none() {
        out.push(
            "login.backchannel_logout_path is served on listen.http_authz, which is not set: the \
             provider's logout tokens have nowhere to go"
                .to_owned(),
        );
    }
    out
}

/// What to register at the provider as `backchannel_logout_uri`, when back-channel logout is on:
/// on the site of `login.redirect_uri` when it is set.
pub fn backchannel_logout_uri(config: &Config) -> Option<String> {
    let path = config.login.backchannel_logout_path.as_deref()?;
    Some(match &config.login.redirect_uri {
        Some(uri) => format!("{}{path}", uri.origin().ascii_serialization()),
        None => format!("https://<your site>{path}"),
    })
}
