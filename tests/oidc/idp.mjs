// A real OpenID Provider for Rampart's gateway tests: panva's oidc-provider, with an
// interaction route that logs in the user named by `login_hint` without a browser and
// records the authentication methods given in `amr_hint` (e.g. "pwd,otp,mfa"), the way
// Zitadel reports them. ID tokens carry Zitadel's project-roles claim.
//
// Environment: ISSUER (https://127.0.0.1:PORT), PORT, TLS_CERT, TLS_KEY (PEM files),
// KEYS_FILE (signing keys as a private JWKS; made on first start). Prints "ready" on
// standard output once it listens. SIGUSR2 rotates the signing keys without a restart
// (new keys, new key ids; the old ones are gone) and prints "rotated".
import { createServer } from 'node:https';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const v = process.env[name];
  if (!v) { console.error(`${name} is required`); process.exit(2); }
  return v;
};
const issuer = env('ISSUER');
const port = Number(env('PORT'));
const keysFile = env('KEYS_FILE');

function makeKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rsa-${randomUUID()}`, use: 'sig', alg: 'RS256' },
      { ...ec, kid: `ec-${randomUUID()}`, use: 'sig', alg: 'ES256' },
    ],
  };
}
if (!existsSync(keysFile)) writeFileSync(keysFile, JSON.stringify(makeKeys()));
const initialJwks = JSON.parse(readFileSync(keysFile, 'utf8'));

// Zitadel's roles claim is an object keyed by role name, valued by org id -> domain.
const ROLES = {
  alice: { dev: { 1001: 'acme.test' } },
  admin: { 'cluster-admin': { 1001: 'acme.test' } },
  bob: {},
};

const nativeClient = (client_id, extra = {}) => ({
  client_id,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  ...extra,
});

const makeProvider = (jwks) => new Provider(issuer, {
  clients: [
    nativeClient('kube'),
    nativeClient('kube-es256', { id_token_signed_response_alg: 'ES256' }),
    nativeClient('kube-short'),
    nativeClient('other-app'),
  ],
  jwks,
  extraParams: ['amr_hint'],
  scopes: ['openid', 'email', 'urn:zitadel:iam:org:projects:roles'],
  claims: {
    openid: ['sub', 'amr', 'acr', 'auth_time'],
    email: ['email', 'email_verified'],
    'urn:zitadel:iam:org:projects:roles': ['urn:zitadel:iam:org:project:roles'],
  },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['rampart-test-cookie-key'] },
  ttl: { IdToken: (ctx, token, client) => (client.clientId === 'kube-short' ? 2 : 600) },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: `${sub}@acme.test`,
          email_verified: true,
          'urn:zitadel:iam:org:project:roles': ROLES[sub] ?? {},
        };
      },
    };
  },
});
let provider = makeProvider(initialJwks);

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    const amr = String(params.amr_hint ?? 'pwd').split(',').filter(Boolean);
    result = { login: { accountId: String(params.login_hint), amr, acr: amr.includes('mfa') ? 'mfa' : 'pwd' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const watch = (p) => {
  p.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_detail ?? ''));
  p.on('server_error', (ctx, err) => console.error('server_error', err));
  return p.callback();
};
let callback = watch(provider);
process.on('SIGUSR2', () => {
  provider = makeProvider(makeKeys());
  callback = watch(provider);
  console.log('rotated');
});
const server = createServer(
  { cert: readFileSync(env('TLS_CERT')), key: readFileSync(env('TLS_KEY')) },
  (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((err) => {
        console.error(err);
        res.statusCode = 500;
        res.end('interaction failed');
      });
      return;
    }
    // One line per key-set fetch, so tests can see how often the gateway asks.
    if (req.url.startsWith('/jwks')) console.log('jwks');
    callback(req, res);
  },
);
server.listen(port, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
