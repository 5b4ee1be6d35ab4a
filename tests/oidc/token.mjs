// Logs a user in at the test OpenID Provider with the authorization-code flow and PKCE,
// without a browser, and prints the ID token (or, with --exec, a kubectl
// ExecCredential holding it).
//
// Usage: node token.mjs ISSUER CLIENT_ID USER AMR [--exec]
// The provider's CA must be trusted through NODE_EXTRA_CA_CERTS.
import { createHash, randomBytes } from 'node:crypto';

const [issuer, clientId, user, amr, mode] = process.argv.slice(2);
if (!issuer || !clientId || !user) {
  console.error('usage: node token.mjs ISSUER CLIENT_ID USER AMR [--exec]');
  process.exit(2);
}
const redirectUri = 'http://127.0.0.1/callback';
const b64url = (buf) => buf.toString('base64url');
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const cookies = new Map();

async function request(url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  if (cookies.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    cookies.set(pair.slice(0, i), pair.slice(i + 1));
  }
  return res;
}

const discovery = await (await request(`${issuer}/.well-known/openid-configuration`)).json();
const auth = new URL(discovery.authorization_endpoint);
for (const [k, v] of Object.entries({
  client_id: clientId,
  response_type: 'code',
  scope: 'openid email urn:zitadel:iam:org:projects:roles',
  redirect_uri: redirectUri,
  code_challenge: challenge,
  code_challenge_method: 'S256',
  login_hint: user,
  amr_hint: amr ?? 'pwd',
  nonce: b64url(randomBytes(16)),
  state: b64url(randomBytes(16)),
})) auth.searchParams.set(k, v);

let url = auth.toString();
let code;
for (let i = 0; i < 10 && !code; i++) {
  const res = await request(url);
  const location = res.headers.get('location');
  if (!location) {
    console.error(`login stopped at ${url}: HTTP ${res.status} ${await res.text()}`);
    process.exit(1);
  }
  const next = new URL(location, url);
  if (process.env.TOKEN_DEBUG) console.error(res.status, next.toString());
  if (next.toString().startsWith(redirectUri)) {
    code = next.searchParams.get('code');
    if (!code) { console.error(`no code: ${next}`); process.exit(1); }
  }
  url = next.toString();
}
if (!code) { console.error('login did not finish'); process.exit(1); }
const tokenRes = await request(discovery.token_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    client_id: clientId,
    code_verifier: verifier,
  }).toString(),
});
const tokens = await tokenRes.json();
if (!tokens.id_token) { console.error(JSON.stringify(tokens)); process.exit(1); }
if (mode === '--exec') {
  console.log(JSON.stringify({
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    status: { token: tokens.id_token },
  }));
} else {
  console.log(tokens.id_token);
}
