// The test OpenID provider: panva/oidc-provider (OpenID certified), set up like an Auth0 tenant, for
// portcullis's end-to-end tests and the demo. Everything comes from the environment:
//   OP_HOST, OP_PORT       where to listen (127.0.0.1, 9000)
//   OP_AUTH0_PATHS=1       Auth0's paths: /authorize, /oauth/token, /.well-known/jwks.json, /userinfo, /v2/logout
//   OP_ISSUER              default http://OP_HOST:OP_PORT, with a trailing "/" under OP_AUTH0_PATHS (as Auth0)
//   OP_AUDIENCE            the API identifier (https://amundsen.example/api): access tokens asked for it
//                          (Auth0's `audience=` or RFC 8707 `resource=`) are JWTs with aud = it
//   OP_OPAQUE_AUDIENCE     a second API (https://opaque.example/api) whose access tokens are opaque,
//                          checked by introspection (RFC 7662); tokens asked for no API are opaque
//                          too and good at userinfo only (as Auth0's without an audience)
//   OP_NO_INTROSPECTION=1  no introspection endpoint (as Auth0)
//   OP_JWKS_FILE           private JWKS: all keys are published, the first one signs (default: a new RS256 key)
//   OP_REDIRECT_URIS       comma-separated callbacks of the client (http://127.0.0.1:10000/authorization-code/callback)
//   OP_POST_LOGOUT_URIS    comma-separated post-logout URLs (http://127.0.0.1:10000/)
//   OP_ACCESS_TOKEN_TTL    access token lifetime in seconds (3600)
//   OP_CLIENT_AUTH_METHOD  how the client authenticates at the token endpoint (client_secret_basic)
//   OP_OMIT_EXPIRES_IN=1   token responses say nothing of the access token's lifetime (no expires_in)
//   OP_ROTATE_REFRESH_TOKENS=1  every refresh gives a new refresh token; using an old one again
//                          revokes the whole grant (reuse detection, as Auth0's rotation does)
//   OP_BACKCHANNEL_LOGOUT_URI  the client's back-channel logout URL: when a sign-in ends at the
//                          provider, it POSTs a logout token there (with `sid`; ID tokens carry it)
// A request carrying `x-test-hold-callback: 1` that the provider would redirect to the client's
// redirect URI gets a page with that URL as a link (id=callback) instead: a test replays it as it likes.
// One confidential client, amundsen / amundsen-secret (client_secret_basic): authorization code with
// PKCE S256, refresh tokens (offline_access + prompt=consent), and client credentials:
//   curl -u amundsen:amundsen-secret -d grant_type=client_credentials -d audience=$OP_AUDIENCE $TOKEN_ENDPOINT
// Users: any login name with any password on the dev login page; `alice` is alice@example.com.
// A user named `groups-<N>` belongs to N groups with GUID-shaped ids (as Entra ID or an Auth0 Action
// puts them into tokens), in the ID token (profile scope) and the access token.
// User access tokens carry `email` and `email_verified` (as an Auth0 Action would add them);
// client-credentials tokens carry none: a machine has no mailbox (its sub is the client_id).
import { readFileSync } from 'node:fs';
import { Provider, errors } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const env = process.env;
const host = env.OP_HOST || '127.0.0.1';
const port = Number(env.OP_PORT || 9000);
const auth0 = Boolean(env.OP_AUTH0_PATHS);
const issuer = env.OP_ISSUER || `http://${host}:${port}${auth0 ? '/' : ''}`;
const audience = env.OP_AUDIENCE || 'https://amundsen.example/api';
const opaqueAudience = env.OP_OPAQUE_AUDIENCE || 'https://opaque.example/api';
const accessTokenTTL = Number(env.OP_ACCESS_TOKEN_TTL || 3600);
const csv = (value, fallback) => (value ? value.split(',').map((s) => s.trim()).filter(Boolean) : fallback);

async function loadKeys() {
  if (env.OP_JWKS_FILE) return JSON.parse(readFileSync(env.OP_JWKS_FILE, 'utf8')).keys;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return [{ ...(await exportJWK(privateKey)), kid: 'op-rs256', alg: 'RS256', use: 'sig' }];
}
const keys = await loadKeys();
// Every token is signed with the first key's algorithm, hence with the first key.
const signingAlg = keys[0].alg || 'RS256';

const emailOf = (accountId) => (accountId.includes('@') ? accountId : `${accountId}@example.com`);
const groupsOf = (accountId) => {
  const n = Number(/^groups-(\d+)$/.exec(accountId)?.[1] ?? 0);
  return Array.from({ length: n }, (_, i) => `0c1e5a3b-7d2f-4e8a-9b6c-${String(i).padStart(12, '0')}`);
};

const redirectUris = csv(env.OP_REDIRECT_URIS, ['http://127.0.0.1:10000/authorization-code/callback']);

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'amundsen',
    client_secret: 'amundsen-secret',
    token_endpoint_auth_method: env.OP_CLIENT_AUTH_METHOD || 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    post_logout_redirect_uris: csv(env.OP_POST_LOGOUT_URIS, ['http://127.0.0.1:10000/']),
    id_token_signed_response_alg: signingAlg,
    ...(env.OP_BACKCHANNEL_LOGOUT_URI
      ? { backchannel_logout_uri: env.OP_BACKCHANNEL_LOGOUT_URI, backchannel_logout_session_required: true }
      : {}),
  }],
  jwks: { keys },
  cookies: { keys: ['portcullis-test-op'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username', 'groups'] },
  conformIdTokenClaims: false, // Auth0 puts the profile and email claims into the ID token itself
  findAccount: (ctx, accountId) => ({
    accountId,
    claims: () => ({
      sub: accountId,
      email: emailOf(accountId),
      email_verified: true,
      name: accountId,
      preferred_username: accountId,
      ...(groupsOf(accountId).length ? { groups: groupsOf(accountId) } : {}),
    }),
  }),
  extraTokenClaims: (ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    const groups = groupsOf(token.accountId);
    return { email: emailOf(token.accountId), email_verified: true, ...(groups.length ? { groups } : {}) };
  },
  pkce: { required: () => true },
  // The provider's own requests (back-channel logout) refuse loopback addresses, a guard against
  // SSRF; here every party is on loopback, so they go out without it.
  fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  rotateRefreshToken: Boolean(env.OP_ROTATE_REFRESH_TOKENS),
  extraParams: ['audience'], // Auth0's name for the resource, on the authorization request
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: !env.OP_NO_INTROSPECTION },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: Boolean(env.OP_BACKCHANNEL_LOGOUT_URI) },
    resourceIndicators: {
      enabled: true,
      // `resource` wins; else Auth0's `audience`: a parameter of the authorization request, or
      // (client credentials) a form field of the token request, which the provider does not keep
      // among its parameters but leaves in the parsed body.
      defaultResource: (ctx, client, oneOf) => oneOf ?? ctx.oidc.params?.audience ?? ctx.oidc.body?.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource === opaqueAudience) {
          return {
            audience: opaqueAudience, scope: 'openid email profile read:metadata', accessTokenFormat: 'opaque', accessTokenTTL,
          };
        }
        if (resource !== audience) throw new errors.InvalidTarget(`unknown audience (this provider's are ${audience}, ${opaqueAudience})`);
        return {
          audience,
          scope: 'openid email profile read:metadata',
          accessTokenFormat: 'jwt',
          accessTokenTTL,
          jwt: { sign: { alg: signingAlg } },
        };
      },
    },
  },
  routes: auth0
    ? {
      authorization: '/authorize', token: '/oauth/token', jwks: '/.well-known/jwks.json',
      userinfo: '/userinfo', end_session: '/v2/logout',
    }
    : undefined,
  ttl: {
    AccessToken: accessTokenTTL, ClientCredentials: accessTokenTTL, IdToken: 3600, AuthorizationCode: 60,
    Interaction: 3600, Session: 86400, Grant: 86400, RefreshToken: 86400,
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('backchannel.error', (ctx, err, client) => console.error('backchannel.error', client.clientId, err, err.cause));
provider.on('backchannel.success', (ctx, client) => console.log('backchannel.success', client.clientId));
const escapeHtml = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
provider.use(async (ctx, next) => {
  await next();
  const location = ctx.response.get('location');
  if (ctx.get('x-test-hold-callback') && location && redirectUris.some((u) => location.startsWith(u))) {
    ctx.remove('location');
    ctx.status = 200;
    ctx.type = 'html';
    ctx.body = `<a id="callback" href="${escapeHtml(location)}">back to the client</a>`;
  }
});
if (env.OP_OMIT_EXPIRES_IN) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'token' && ctx.body && typeof ctx.body === 'object') delete ctx.body.expires_in;
  });
}

const server = provider.listen(port, host, () => console.log(`OP listening on ${issuer}`));
function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive clients would otherwise hold the exit for seconds
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
