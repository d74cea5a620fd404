// A real OpenID provider (panva/oidc-provider) shaped like an Auth0 tenant, for tests and the demo.
// Everything is set through the environment:
//   OP_HOST, OP_PORT            where to listen (127.0.0.1:9000)
//   OP_ISSUER                   the issuer (http://OP_HOST:OP_PORT, plus "/" with OP_AUTH0_PATHS)
//   OP_AUTH0_PATHS=1            Auth0's endpoint paths (/authorize, /oauth/token, /.well-known/jwks.json, /v2/logout)
//   OP_AUDIENCE                 the API identifier; access tokens for it are JWTs (https://amundsen.example/api)
//   OP_JWKS_FILE                a private JWKS; its first key signs (default: a fresh RS256 key)
//   OP_REDIRECT_URIS            comma-separated callback URLs of the client `amundsen`
//   OP_POST_LOGOUT_URIS         comma-separated post-logout URLs
//   OP_ACCESS_TOKEN_TTL         access token lifetime in seconds (3600)
// Any user name logs in with any password; `alice` becomes alice@example.com.
import { readFileSync } from 'node:fs';
import { Provider } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const env = process.env;
const host = env.OP_HOST ?? '127.0.0.1';
const port = Number(env.OP_PORT ?? 9000);
const auth0Paths = Boolean(env.OP_AUTH0_PATHS);
const issuer = env.OP_ISSUER ?? `http://${host}:${port}${auth0Paths ? '/' : ''}`;
const audience = env.OP_AUDIENCE ?? 'https://amundsen.example/api';
const list = (value, fallback) => (value ? value.split(',').map((s) => s.trim()).filter(Boolean) : fallback);
const accessTokenTtl = Number(env.OP_ACCESS_TOKEN_TTL ?? 3600);

async function signingKeys() {
  if (env.OP_JWKS_FILE) return JSON.parse(readFileSync(env.OP_JWKS_FILE, 'utf8')).keys;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return [{ ...(await exportJWK(privateKey)), kid: 'op-rs256', alg: 'RS256', use: 'sig' }];
}

const emailOf = (id) => (id.includes('@') ? id : `${id}@example.com`);

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'amundsen',
    client_secret: 'amundsen-secret',
    redirect_uris: list(env.OP_REDIRECT_URIS, ['http://127.0.0.1:10000/authorization-code/callback']),
    post_logout_redirect_uris: list(env.OP_POST_LOGOUT_URIS, ['http://127.0.0.1:10000/']),
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: await signingKeys() },
  cookies: { keys: ['portcullis-test-op-cookies'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
  // Auth0 puts email and name into the ID token itself.
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: emailOf(id), email_verified: true, name: id, preferred_username: id };
      },
    };
  },
  // Auth0 Actions commonly add the email to access tokens; do the same for user tokens.
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'AccessToken' && token.accountId) {
      return { email: emailOf(token.accountId), email_verified: true };
    }
    return undefined;
  },
  pkce: { required: () => true },
  extraParams: ['audience'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // RFC 8707 `resource` wins; otherwise Auth0's `audience` from the authorization request.
      defaultResource: (ctx, client, oneOf) => oneOf ?? ctx.oidc.params?.audience ?? undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== audience) throw new Error(`unknown resource ${resource}`);
        return {
          scope: 'openid email profile read:metadata',
          audience,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ...(auth0Paths ? {
    routes: {
      authorization: '/authorize', token: '/oauth/token', jwks: '/.well-known/jwks.json',
      userinfo: '/userinfo', end_session: '/v2/logout',
    },
  } : {}),
  ttl: {
    AccessToken: accessTokenTtl, ClientCredentials: accessTokenTtl, IdToken: 3600, AuthorizationCode: 60,
    Session: 86400, Interaction: 3600, Grant: 86400, RefreshToken: 86400,
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, host, () => console.log(`OP listening on ${issuer}`));
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
