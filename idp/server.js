// Local OpenID Provider for the wasm-oauth2-proxy demo and end-to-end tests.
//
// A real OP (panva/oidc-provider) with its own minimal login/consent
// interaction routes and a real password check (the library's
// devInteractions accept any password and are disabled here).
//
// Configuration (environment variables):
//   IDP_PORT            listen port                      (default 9000)
//   IDP_HOST            listen address                   (default 127.0.0.1)
//   IDP_ISSUER          issuer URL                       (default http://127.0.0.1:$IDP_PORT)
//   IDP_CLIENT_ID       confidential client id           (default demo-app)
//   IDP_CLIENT_SECRET   its secret                       (default demo-app-secret-change-me)
//   IDP_REDIRECT_URIS   comma-separated redirect URIs    (default http://127.0.0.1:4180/oauth2/callback)
//   IDP_ID_TOKEN_ALG    id_token signing alg, RS256|ES256 (default RS256)
//   IDP_TOKEN_TTL       ID token lifetime in seconds, and the access token
//                       lifetime unless IDP_ACCESS_TOKEN_TTL is set (default 3600)
//   IDP_ACCESS_TOKEN_TTL access token lifetime in seconds, also of token-exchange
//                       tokens; the token responses' expires_in (default $IDP_TOKEN_TTL)
//   IDP_ROTATE_REFRESH  1 = every refresh_token grant returns a new refresh token
//                       and consumes the old one (presenting a consumed one is
//                       invalid_grant and revokes the whole grant), 0 = never
//                       rotate, the same refresh token stays valid (default 1)
//   IDP_POST_LOGOUT_URIS comma-separated extra post_logout_redirect_uris for both
//                       clients (always registered: <origin>/ and
//                       <origin>/signed-out of every redirect URI)
//   IDP_EXCHANGE_AUDIENCES comma-separated audiences (and resource values) a token
//                       exchange may target (default demo-upstream)
//   IDP_STORE_SIZE      entries the in-memory store keeps (sessions, grants, codes,
//                       tokens; default 100000). oidc-provider's own default of
//                       1000 evicts live refresh tokens after a few hundred logins
//   IDP_AUTO_CONSENT    1 = grant consent without a page for the demo clients,
//                       0 = always show the consent form  (default 1)
//   IDP_TLS_CERT        PEM certificate chain file: serve HTTPS instead of HTTP
//   IDP_TLS_KEY         its PEM private key file (both or neither)
//
// Clients: $IDP_CLIENT_ID (client_secret_basic) and $IDP_CLIENT_ID-post
// (client_secret_post), same secret and redirect URIs, grant types
// authorization_code, refresh_token and token exchange. With
// IDP_CLIENT_JWKS (a JSON JWK Set of public keys), also $IDP_CLIENT_ID-jwt,
// which authenticates with private_key_jwt (RFC 7523) signed by one of them.
//
// Endpoints besides discovery (/.well-known/openid-configuration), /auth,
// /token, /jwks, /me (userinfo):
//   /token grant_type=refresh_token  refresh tokens are issued on the code grant
//       (without needing offline_access) and on refresh; the refresh answer has
//       a fresh id_token when the scope has openid.
//   /token grant_type=urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693)
//       subject_token (an unexpired access token of this OP issued to the same
//       client), subject_token_type=urn:ietf:params:oauth:token-type:access_token,
//       audience (one of $IDP_EXCHANGE_AUDIENCES), optional scope (a subset of
//       the subject token's), resource (also one of $IDP_EXCHANGE_AUDIENCES),
//       requested_token_type (access_token only). Answers an RS256 JWT access
//       token (typ at+jwt, kid of the /jwks RSA key) with iss, sub, aud,
//       client_id, scope, iat, exp, jti. Errors: invalid_grant (bad subject
//       token or type), invalid_target (audience/resource), invalid_scope.
//   /token/revocation (RFC 7009)  revoking a refresh or access token revokes
//       the tokens of its whole grant, so later refreshes are invalid_grant.
//   /session/end  RP-initiated logout (id_token_hint, client_id,
//       post_logout_redirect_uri, state). With an IdP session it shows a page
//       whose form (id op.logoutForm) POSTs to /session/end/confirm the hidden
//       xsrf value plus the button's logout=yes; that ends the IdP session,
//       revokes every grant of the session (also offline_access ones) and
//       redirects (303) to the post_logout_redirect_uri (with state) or to
//       /session/end/success, a page with id="signed-out".
//   /healthz  plain "ok".
//   /test/counters  for tests only: GET answers JSON counts since start (or the
//       last reset) of refresh (successful refresh_token grants),
//       refresh_failed (refresh_token grants that ended in an error), code
//       (successful authorization_code grants), exchange (successful token
//       exchanges), revocation (requests to /token/revocation), end_session
//       (successful logouts), refresh_reused (refresh_token grants that
//       presented an already-used rotated refresh token: the OP took it for
//       theft and revoked the whole grant), discovery and jwks (requests for
//       the discovery document and the signing keys); POST
//       /test/counters/reset zeroes them.
//
// Users (login / password, which is always the login):
//   john        john@example.com, groups developers
//   jane        jane@other.org, groups staff, realm role auditor
//   bigjohn     bigjohn@example.com, 150 groups (its session must be split into
//               several cookies)
//   groups50    groups50@example.com, exactly 50 groups (the benchmark's "cookie
//               size with 50 groups")
//   unverified  unverified@example.com with email_verified false, groups developers
//   alice       alice@example.com, groups staff, client role viewer
//   bob         bob@example.com, groups staff, no roles
//   mallory     mallory@evil.org, groups developers
//   twoat       evil@evil.org@example.com (two `@`), groups developers
// Roles are Keycloak-shaped claims in the ID token, present only for users that
// have some: realm_access: {roles: [...]} and resource_access: {$IDP_CLIENT_ID:
// {roles: [...]}}.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { URLSearchParams } from 'node:url';

import { SignJWT } from 'jose';
import Provider, { errors } from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

// ---------------------------------------------------------------- settings

const env = process.env;
const PORT = Number.parseInt(env.IDP_PORT || '9000', 10);
const HOST = env.IDP_HOST || '127.0.0.1';
const ISSUER = (env.IDP_ISSUER || `http://127.0.0.1:${PORT}`).replace(/\/+$/, '');
const CLIENT_ID = env.IDP_CLIENT_ID || 'demo-app';
const CLIENT_SECRET = env.IDP_CLIENT_SECRET || 'demo-app-secret-change-me';
const STORE_SIZE = Number.parseInt(env.IDP_STORE_SIZE || '100000', 10);
if (!Number.isInteger(STORE_SIZE) || STORE_SIZE <= 0) {
  throw new Error(`invalid IDP_STORE_SIZE: ${env.IDP_STORE_SIZE}`);
}
// oidc-provider's in-memory adapter on a store with room for a benchmark's worth of logins.
const STORE = new LRU({ maxSize: STORE_SIZE });
const REDIRECT_URIS = (env.IDP_REDIRECT_URIS || 'http://127.0.0.1:4180/oauth2/callback')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const ID_TOKEN_ALG = env.IDP_ID_TOKEN_ALG || 'RS256';
const TOKEN_TTL = Number.parseInt(env.IDP_TOKEN_TTL || '3600', 10);
const ACCESS_TOKEN_TTL = env.IDP_ACCESS_TOKEN_TTL
  ? Number.parseInt(env.IDP_ACCESS_TOKEN_TTL, 10)
  : TOKEN_TTL;
const flag = (value, dflt) => !['0', 'false', 'no'].includes(String(value ?? dflt).toLowerCase());
const AUTO_CONSENT = flag(env.IDP_AUTO_CONSENT, '1');
const ROTATE_REFRESH = flag(env.IDP_ROTATE_REFRESH, '1');
const list = (value) => String(value || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const POST_LOGOUT_URIS = list(env.IDP_POST_LOGOUT_URIS);
const EXCHANGE_AUDIENCES = new Set(list(env.IDP_EXCHANGE_AUDIENCES || 'demo-upstream'));

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  throw new Error(`invalid IDP_PORT: ${env.IDP_PORT}`);
}
if (!Number.isInteger(TOKEN_TTL) || TOKEN_TTL <= 0) {
  throw new Error(`invalid IDP_TOKEN_TTL: ${env.IDP_TOKEN_TTL}`);
}
if (!Number.isInteger(ACCESS_TOKEN_TTL) || ACCESS_TOKEN_TTL <= 0) {
  throw new Error(`invalid IDP_ACCESS_TOKEN_TTL: ${env.IDP_ACCESS_TOKEN_TTL}`);
}
for (const uri of POST_LOGOUT_URIS) {
  try {
    new URL(uri); // eslint-disable-line no-new
  } catch {
    throw new Error(`invalid IDP_POST_LOGOUT_URIS entry: ${uri}`);
  }
}
const TLS_CERT = env.IDP_TLS_CERT || '';
const TLS_KEY = env.IDP_TLS_KEY || '';
if (Boolean(TLS_CERT) !== Boolean(TLS_KEY)) {
  throw new Error('IDP_TLS_CERT and IDP_TLS_KEY go together');
}
if (!['RS256', 'ES256'].includes(ID_TOKEN_ALG)) {
  throw new Error(`invalid IDP_ID_TOKEN_ALG: ${ID_TOKEN_ALG} (RS256 or ES256)`);
}

// ------------------------------------------------------------------- users

const BIG_GROUPS = Array.from(
  { length: 150 },
  (_, i) => `group-with-a-fairly-long-name-${String(i).padStart(3, '0')}`,
);

const GROUPS_50 = BIG_GROUPS.slice(0, 50);

const USERS = new Map(
  [
    {
      sub: 'john',
      password: 'john',
      email: 'john@example.com',
      email_verified: true,
      name: 'John Doe',
      preferred_username: 'john',
      groups: ['developers'],
    },
    {
      sub: 'jane',
      password: 'jane',
      email: 'jane@other.org',
      email_verified: true,
      name: 'Jane Roe',
      preferred_username: 'jane',
      groups: ['staff'],
      realmRoles: ['auditor'],
    },
    {
      sub: 'bigjohn',
      password: 'bigjohn',
      email: 'bigjohn@example.com',
      email_verified: true,
      name: 'Big John',
      preferred_username: 'bigjohn',
      groups: BIG_GROUPS,
    },
    {
      sub: 'groups50',
      password: 'groups50',
      email: 'groups50@example.com',
      email_verified: true,
      name: 'Fifty Groups',
      preferred_username: 'groups50',
      groups: GROUPS_50,
    },
    {
      sub: 'unverified',
      password: 'unverified',
      email: 'unverified@example.com',
      email_verified: false,
      name: 'Una Verified',
      preferred_username: 'unverified',
      groups: ['developers'],
    },
    {
      sub: 'alice',
      password: 'alice',
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Liddell',
      preferred_username: 'alice',
      groups: ['staff'],
      clientRoles: ['viewer'],
    },
    {
      sub: 'bob',
      password: 'bob',
      email: 'bob@example.com',
      email_verified: true,
      name: 'Bob Builder',
      preferred_username: 'bob',
      groups: ['staff'],
    },
    {
      sub: 'mallory',
      password: 'mallory',
      email: 'mallory@evil.org',
      email_verified: true,
      name: 'Mallory Malice',
      preferred_username: 'mallory',
      groups: ['developers'],
    },
    {
      sub: 'twoat',
      password: 'twoat',
      email: 'evil@evil.org@example.com',
      email_verified: true,
      name: 'Two At',
      preferred_username: 'twoat',
      groups: ['developers'],
    },
  ].map((u) => [u.sub, u]),
);

function timingSafeEqualStr(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

/** Returns the user for a correct login/password pair, otherwise undefined. */
function authenticate(login, password) {
  const user = USERS.get(String(login || '').trim());
  // Compare even when the user is unknown, so timing does not reveal logins.
  const ok = timingSafeEqualStr(password ?? '', user ? user.password : '\0no-such-user');
  return ok && user ? user : undefined;
}

async function findAccount(_ctx, id) {
  const user = USERS.get(id);
  if (!user) return undefined;
  return {
    accountId: id,
    // eslint-disable-next-line no-unused-vars
    async claims(_use, _scope, _claims, _rejected) {
      const {
        password, realmRoles = [], clientRoles = [], ...claims
      } = user;
      // Keycloak's shape; left out for users without roles, so their tokens stay as they were.
      const roles = {};
      if (realmRoles.length) roles.realm_access = { roles: [...realmRoles] };
      if (clientRoles.length) roles.resource_access = { [CLIENT_ID]: { roles: [...clientRoles] } };
      return { ...claims, groups: [...user.groups], ...roles };
    },
  };
}

// -------------------------------------------------------------------- keys

function jwkThumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsaJwk = { ...rsa, kid: jwkThumbprint(rsa), alg: 'RS256', use: 'sig' };
  const ecJwk = { ...ec, kid: jwkThumbprint(ec), alg: 'ES256', use: 'sig' };
  // The key for the configured id_token alg goes first.
  return ID_TOKEN_ALG === 'ES256' ? [ecJwk, rsaJwk] : [rsaJwk, ecJwk];
}

// ---------------------------------------------------------------- provider

const JWKS = signingKeys();
// Token exchange signs its JWT access tokens with the RS256 key of /jwks.
const EXCHANGE_JWK = JWKS.find((k) => k.kty === 'RSA');
const EXCHANGE_KEY = crypto.createPrivateKey({ key: EXCHANGE_JWK, format: 'jwk' });

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

const postLogoutRedirectUris = [...new Set([
  ...REDIRECT_URIS.flatMap((u) => {
    const { origin } = new URL(u);
    return [`${origin}/`, `${origin}/signed-out`];
  }),
  ...POST_LOGOUT_URIS,
])];

const clientDefaults = {
  client_secret: CLIENT_SECRET,
  redirect_uris: REDIRECT_URIS,
  post_logout_redirect_uris: postLogoutRedirectUris,
  grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
  response_types: ['code'],
  id_token_signed_response_alg: ID_TOKEN_ALG,
};

const CLIENT_JWKS = env.IDP_CLIENT_JWKS ? JSON.parse(env.IDP_CLIENT_JWKS) : undefined;
const CLIENTS = [
  { ...clientDefaults, client_id: CLIENT_ID, token_endpoint_auth_method: 'client_secret_basic' },
  { ...clientDefaults, client_id: `${CLIENT_ID}-post`, token_endpoint_auth_method: 'client_secret_post' },
  ...(CLIENT_JWKS ? [{
    ...clientDefaults,
    client_secret: undefined,
    client_id: `${CLIENT_ID}-jwt`,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: undefined,
    jwks: CLIENT_JWKS,
  }] : []),
];
const FIRST_PARTY = new Set(CLIENTS.map((c) => c.client_id));

const configuration = {
  adapter: (model) => new MemoryAdapter(model, STORE),
  clients: CLIENTS,
  jwks: { keys: JWKS },
  findAccount,
  claims: {
    openid: ['sub', 'groups', 'realm_access', 'resource_access'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Put the scope claims into the ID token itself (like Dex / Keycloak do).
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: {
    // Only S256 exists in oidc-provider 9. Required for public clients only;
    // the confidential demo clients may use it and the OP then enforces it.
    required: () => false,
  },
  // Refresh tokens for every client allowed the refresh_token grant, without
  // needing the offline_access scope (oauth2-proxy-style sessions keep one).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  // IDP_ROTATE_REFRESH: always or never (the library's default rotates only
  // late in the refresh token's life).
  rotateRefreshToken: ROTATE_REFRESH,
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The confirmation page: oidc-provider's form (id op.logoutForm, action
      // /session/end/confirm, hidden xsrf) with our sign-out button inside.
      async logoutSource(ctx, form) {
        const button = '<button type="submit" name="logout" value="yes" id="logout-yes" autofocus>Sign out</button>';
        if (!form.includes('</form>')) throw new Error('unexpected logout form');
        const clientId = ctx.oidc.client?.clientId;
        ctx.type = 'html';
        ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Signed in as <strong>${esc(ctx.oidc.session?.accountId || '')}</strong> at ${esc(ISSUER)}${
  clientId ? ` (from <strong>${esc(clientId)}</strong>)` : ''}.</p>
<p>Do you want to sign out?</p>
${form.replace('</form>', `${button}</form>`)}`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('Signed out', `<h1 id="signed-out">Signed out</h1>
<p>You have been signed out of ${esc(ISSUER)}.</p>`);
      },
    },
    revocation: {
      enabled: true,
      // The library's default policy (a client may revoke only its own tokens),
      // restated so that it does not warn about it.
      async allowedPolicy(_ctx, client, token) {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
  },
  interactions: {
    url(_ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  // First-party demo clients: grant what they ask for, no consent page.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    if (grantId) {
      const grant = await oidc.provider.Grant.find(grantId);
      if (grant) return grant;
    }
    if (AUTO_CONSENT && FIRST_PARTY.has(oidc.client.clientId) && oidc.session.accountId) {
      const grant = new oidc.provider.Grant({
        clientId: oidc.client.clientId,
        accountId: oidc.session.accountId,
      });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      const claims = [...oidc.requestParamClaims];
      if (claims.length) grant.addOIDCClaims(claims);
      await grant.save();
      return grant;
    }
    return undefined;
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    IdToken: TOKEN_TTL,
    AuthorizationCode: 60,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  renderError(ctx, out, _error) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1>${Object.entries(out)
      .map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`)
      .join('')}`);
  },
};

const provider = new Provider(ISSUER, configuration);
// oidc-provider builds endpoint URLs (discovery, redirects) from the request's
// host and protocol. Pin them to the issuer so the metadata is the same
// whether the OP is reached directly by a browser or through an Envoy cluster
// with another :authority: every request is treated as if forwarded for the
// issuer's origin.
provider.proxy = true;
const ISSUER_URL = new URL(ISSUER);
if (ISSUER_URL.pathname !== '/' && ISSUER_URL.pathname !== '') {
  throw new Error('IDP_ISSUER with a path is not supported');
}
function pinToIssuer(req) {
  req.headers['x-forwarded-host'] = ISSUER_URL.host;
  req.headers['x-forwarded-proto'] = ISSUER_URL.protocol.replace(':', '');
}

// ------------------------------------------------------------ test counters

const COUNTER_NAMES = [
  'refresh', 'refresh_failed', 'code', 'exchange', 'revocation', 'end_session',
  'refresh_reused', 'discovery', 'jwks',
];
const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0]));
function resetCounters() {
  for (const n of COUNTER_NAMES) counters[n] = 0;
}

const grantTypeOf = (ctx) => ctx.oidc?.params?.grant_type;

provider.on('grant.success', (ctx) => {
  switch (grantTypeOf(ctx)) {
    case 'refresh_token': counters.refresh += 1; break;
    case 'authorization_code': counters.code += 1; break;
    case TOKEN_EXCHANGE: counters.exchange += 1; break;
    default: break;
  }
});
// oidc-provider's refresh_token grant refuses a consumed (rotated) refresh token with this
// detail (its InvalidGrant's error_detail; the description sent is generic) after revoking
// the grant: reuse detection.
const REFRESH_REUSED = 'refresh token already used';
provider.on('grant.error', (ctx, err) => {
  if (grantTypeOf(ctx) !== 'refresh_token') return;
  counters.refresh_failed += 1;
  if (err?.error_detail === REFRESH_REUSED) counters.refresh_reused += 1;
});
provider.on('end_session.success', () => {
  counters.end_session += 1;
});

provider.on('server_error', (ctx, err) => {
  if (ctx?.oidc?.route === 'token' && grantTypeOf(ctx) === 'refresh_token') {
    counters.refresh_failed += 1;
  }
  console.error('idp server_error:', err);
});

// ---------------------------------------------------------- logout: grants

// At /session/end/confirm with logout=yes oidc-provider revokes the session's
// grants except those of clients whose tokens outlive the session (requested
// offline_access). Sign-out in this demo ends them all, so that every refresh
// token of the signed-out user stops working. Runs before the response goes out.
async function revokeGrant(grantId) {
  await Promise.all([
    provider.AccessToken.revokeByGrantId(grantId),
    provider.RefreshToken.revokeByGrantId(grantId),
    provider.AuthorizationCode.revokeByGrantId(grantId),
    provider.Grant.adapter.destroy(grantId),
  ]);
}

provider.use(async (ctx, next) => {
  await next();
  const oidc = ctx.oidc; // only set for the provider's own routes
  if (oidc?.route !== 'end_session_confirm' || ctx.status !== 303 || !oidc.params?.logout) return;
  const session = oidc.entities?.Session;
  if (!session?.destroyed || !session.authorizations) return;
  await Promise.all(Object.values(session.authorizations)
    .map(({ grantId }) => (grantId ? revokeGrant(grantId) : undefined)));
});

// --------------------------------------------------- token exchange (8693)

function requireParam(params, name) {
  if (!params[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  return params[name];
}

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;

  const subjectToken = requireParam(params, 'subject_token');
  const subjectTokenType = requireParam(params, 'subject_token_type');
  if (subjectTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new errors.InvalidGrant(`unsupported subject_token_type, only ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }
  if (params.requested_token_type && params.requested_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new errors.InvalidRequest(`unsupported requested_token_type, only ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }

  const subject = await provider.AccessToken.find(subjectToken);
  if (!subject || subject.isExpired) {
    throw new errors.InvalidGrant('subject_token invalid, expired or revoked');
  }
  if (subject.clientId !== client.clientId) {
    throw new errors.InvalidGrant('subject_token was issued to another client');
  }
  const account = await findAccount(ctx, subject.accountId);
  if (!account) {
    throw new errors.InvalidGrant('subject_token account not found');
  }

  if (!params.audience) {
    throw new errors.InvalidTarget('audience is required');
  }
  if (!EXCHANGE_AUDIENCES.has(params.audience)) {
    throw new errors.InvalidTarget(`unknown audience ${params.audience}`);
  }
  if (params.resource !== undefined && !EXCHANGE_AUDIENCES.has(params.resource)) {
    throw new errors.InvalidTarget(`unknown resource ${params.resource}`);
  }
  const aud = [...new Set([params.audience, params.resource].filter(Boolean))];

  const granted = [...subject.scopes];
  let scope = granted;
  if (params.scope) {
    const requested = [...new Set(params.scope.split(' ').filter(Boolean))];
    const missing = requested.filter((x) => !subject.scopes.has(x));
    if (missing.length) {
      throw new errors.InvalidScope('subject_token missing requested scope', missing.join(' '));
    }
    scope = requested;
  }

  const now = Math.floor(Date.now() / 1000);
  const accessToken = await new SignJWT({ client_id: client.clientId, scope: scope.join(' ') })
    .setProtectedHeader({ alg: 'RS256', kid: EXCHANGE_JWK.kid, typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setSubject(subject.accountId)
    .setAudience(aud.length === 1 ? aud[0] : aud)
    .setIssuedAt(now)
    .setExpirationTime(now + ACCESS_TOKEN_TTL)
    .setJti(crypto.randomBytes(16).toString('base64url'))
    .sign(EXCHANGE_KEY);

  // Cache-Control: no-store comes from the token endpoint's own middleware.
  ctx.body = {
    access_token: accessToken,
    issued_token_type: TOKEN_TYPE_ACCESS_TOKEN,
    token_type: 'Bearer',
    expires_in: ACCESS_TOKEN_TTL,
    scope: scope.join(' '),
  };
}

provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
  'subject_token',
  'subject_token_type',
  'audience',
  'scope',
  'resource',
  'requested_token_type',
]);

// ------------------------------------------------------------ interactions

function esc(s) {
  return String(s)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#222}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#b00020}.muted{color:#666;font-size:.9em}
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(uid, { clientId, loginHint = '', error = '' }) {
  return page('Sign in', `<h1>Sign in</h1>
<p class="muted">to <strong>${esc(clientId)}</strong> via ${esc(ISSUER)}</p>
${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="login">Username</label>
<input id="login" name="login" type="text" value="${esc(loginHint)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
<button type="submit">Cancel</button>
</form>
<p class="muted">Demo users: john / john, jane / jane, bigjohn / bigjohn, alice / alice, bob / bob</p>`);
}

function consentPage(uid, { clientId, accountId, scopes, claims }) {
  const items = [...scopes.map((s) => `scope <code>${esc(s)}</code>`), ...claims.map((c) => `claim <code>${esc(c)}</code>`)];
  return page('Authorize', `<h1>Authorize ${esc(clientId)}</h1>
<p>Signed in as <strong>${esc(accountId)}</strong>. <strong>${esc(clientId)}</strong> asks for:</p>
<ul>${items.map((i) => `<li>${i}</li>`).join('')}</ul>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<button type="submit">Allow</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
<button type="submit">Deny</button>
</form>`);
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Frame-Options', 'DENY');
  res.end(html);
}

async function readForm(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    // Unknown / expired interaction or missing cookie.
    send(res, 400, page('Error', `<h1>Error</h1><p class="error">${esc(err.message || err)}</p>
<p>Start the sign-in again from the application.</p>`));
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<h1>Error</h1><p class="error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params, session } = details;
  const clientId = params.client_id;

  if (req.method === 'GET' && action === '') {
    if (prompt.name === 'login') {
      send(res, 200, loginPage(uid, { clientId, loginHint: params.login_hint || '' }));
      return;
    }
    if (prompt.name === 'consent') {
      send(res, 200, consentPage(uid, {
        clientId,
        accountId: session?.accountId,
        scopes: prompt.details.missingOIDCScope || [],
        claims: prompt.details.missingOIDCClaims || [],
      }));
      return;
    }
    send(res, 400, page('Error', `<h1>Error</h1><p>unsupported prompt ${esc(prompt.name)}</p>`));
    return;
  }

  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.setHeader('Allow', action === '' ? 'GET' : 'POST');
    res.end();
    return;
  }

  const form = await readForm(req);

  if (action === 'login') {
    if (prompt.name !== 'login') {
      send(res, 400, page('Error', '<h1>Error</h1><p class="error">no login pending</p>'));
      return;
    }
    const user = authenticate(form.get('login'), form.get('password'));
    if (!user) {
      send(res, 401, loginPage(uid, {
        clientId,
        loginHint: form.get('login') || '',
        error: 'Invalid username or password.',
      }));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub, amr: ['pwd'] },
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      send(res, 400, page('Error', '<h1>Error</h1><p class="error">no consent pending</p>'));
      return;
    }
    let grant;
    if (details.grantId) {
      grant = await provider.Grant.find(details.grantId);
    }
    grant ||= new provider.Grant({ accountId: session.accountId, clientId });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }

  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  send(res, 404, page('Not found', '<h1>Not found</h1>'));
}

// ------------------------------------------- strict client authentication

// oidc-provider accepts client_secret_basic and client_secret_post
// interchangeably for a client registered with either. Enforce the registered
// method so that tests of a relying party's token_endpoint_auth_method mean
// something: the -post client must send the secret in the body, the other one
// in an Authorization: Basic header.
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation']);
const AUTH_METHOD = new Map(CLIENTS.map((c) => [c.client_id, c.token_endpoint_auth_method]));

function basicClientId(header) {
  const m = /^basic\s+(\S+)$/i.exec(header || '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, i).replaceAll('+', '%20'));
  } catch {
    return decoded.slice(0, i);
  }
}

/**
 * Reads a client-authenticated request's body (leaving it on req.body for
 * oidc-provider) and rejects a registered client using the other secret
 * method. Returns false when it has answered the request.
 */
async function enforceClientAuthMethod(req, res) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 56 * 1024) {
      res.statusCode = 413;
      res.end();
      return false;
    }
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  req.body = raw;
  const form = new URLSearchParams(raw);
  const viaHeader = basicClientId(req.headers.authorization);
  const viaBody = form.has('client_secret');
  const clientId = viaHeader ?? form.get('client_id');
  const registered = AUTH_METHOD.get(clientId);
  const used = viaHeader !== undefined ? 'client_secret_basic' : viaBody ? 'client_secret_post' : undefined;
  if (registered && used && used !== registered) {
    if (form.get('grant_type') === 'refresh_token') counters.refresh_failed += 1;
    res.statusCode = 401;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(JSON.stringify({
      error: 'invalid_client',
      error_description: `client ${clientId} must authenticate with ${registered}, not ${used}`,
    }));
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ server

const INTERACTION_RE = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?\/?$/;
const oidcCallback = provider.callback();

function handle(req, res) {
  pinToIssuer(req);
  const path = (req.url || '/').split('?')[0];
  const m = INTERACTION_RE.exec(path);
  if (m) {
    handleInteraction(req, res, m[1], m[2] || '').catch((err) => {
      console.error('idp interaction error:', err);
      if (!res.headersSent) {
        const status = err instanceof errors.OIDCProviderError ? err.statusCode || 400 : 500;
        send(res, status, page('Error', `<h1>Error</h1><p class="error">${esc(err.message || err)}</p>`));
      } else {
        res.destroy();
      }
    });
    return;
  }
  if (path === '/healthz') {
    res.setHeader('Content-Type', 'text/plain');
    res.end('ok\n');
    return;
  }
  if (path === '/test/counters' || path === '/test/counters/reset') {
    const reset = path.endsWith('/reset');
    const method = reset ? 'POST' : 'GET';
    if (req.method !== method) {
      res.statusCode = 405;
      res.setHeader('Allow', method);
      res.end();
      return;
    }
    if (reset) resetCounters();
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Cache-Control', 'no-store');
    res.end(`${JSON.stringify(counters)}\n`);
    return;
  }
  if (req.method === 'POST' && path === '/token/revocation') counters.revocation += 1;
  if (path === '/.well-known/openid-configuration') counters.discovery += 1;
  if (path === '/jwks') counters.jwks += 1;
  if (req.method === 'POST' && CLIENT_AUTH_PATHS.has(path)
      && /^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] || '')) {
    enforceClientAuthMethod(req, res).then((ok) => {
      if (ok) oidcCallback(req, res);
    }).catch((err) => {
      console.error('idp client auth error:', err);
      if (!res.headersSent) {
        res.statusCode = 400;
        res.end();
      }
    });
    return;
  }
  oidcCallback(req, res);
}

const server = TLS_CERT
  ? https.createServer({ cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) }, handle)
  : http.createServer(handle);

server.keepAliveTimeout = 65_000;

server.on('error', (err) => {
  console.error(`idp: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  console.log(`idp listening on ${ISSUER}`);
});

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  // Exit promptly; there is no state worth flushing.
  process.exit(0);
}
process.on('SIGTERM', () => shutdown());
process.on('SIGINT', () => shutdown());
