// A relying party built on panva's openid-client (v6), a certified OpenID Connect client we did
// not write, run by tests/e2e/test_oidc_clients.py against a running API: discovery, the
// authorization code flow with PKCE S256, state and nonce (the "browser" part, the sign-in form,
// is plain fetch with manual redirects and a cookie jar), the ID token checked by the library
// against our JWKS (signature, alg ES256, iss, aud, nonce, state, at_hash, RFC 9207 iss),
// userinfo, refresh, introspection, revocation and RP-initiated logout.
//
// Input: one JSON object on stdin, {node_modules, issuer, client_id, client_secret, redirect_uri,
// post_logout_redirect_uri, username, password}. Output: a JSON transcript of every step on stdout
// (tokens truncated, no secret in full); exit 1 with the transcript so far and the error when a
// step fails.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const input = JSON.parse(readFileSync(0, 'utf8'));
const SCOPE = 'openid profile email offline_access';

async function importPackage(modules, name) {
  // The package lives in a per-machine cache, not beside this script: import it by its entry.
  const root = join(modules, name);
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const entry = manifest.exports?.['.']?.default ?? manifest.exports?.['.']?.import ?? manifest.main;
  return { mod: await import(pathToFileURL(join(root, entry)).href), version: manifest.version };
}

const { mod: client, version } = await importPackage(input.node_modules, 'openid-client');
const transcript = { library: `openid-client@${version}`, node: process.version, steps: [] };
const step = (name, fields) => transcript.steps.push({ step: name, ...fields });

// Never a token in full: its first characters and its length.
const short = (token) => (typeof token === 'string' ? `${token.slice(0, 10)}…(${token.length})` : token);
const path = (url) => {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
};
const joseHeader = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));

// ---- the browser: fetch with manual redirects and a cookie jar (one host) ------------------------

const jar = new Map();
function keepCookies(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(';');
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
    if (expired || value === '' || value === '""') jar.delete(name);
    else jar.set(name, value);
  }
}
async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  keepCookies(response);
  return response;
}
function redirectOf(response, from, expected = [302, 303]) {
  if (!expected.includes(response.status)) {
    throw new Error(`${from}: expected a redirect (${expected}), got ${response.status}`);
  }
  return new URL(response.headers.get('location'), from);
}
const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
function hiddenField(html, name) {
  const found = html.match(new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`));
  if (!found) throw new Error(`the page has no hidden ${name} field`);
  return found[1].replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, ref) => {
    if (ref[0] !== '#') return ENTITIES[ref.toLowerCase()] ?? all;
    return String.fromCodePoint(ref[1].toLowerCase() === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10));
  });
}

// ---- the flow -------------------------------------------------------------------------------

async function run() {
  const config = await client.discovery(
    new URL(input.issuer),
    input.client_id,
    { id_token_signed_response_alg: 'ES256' },
    client.ClientSecretBasic(input.client_secret),
    // http://127.0.0.1 in tests; and check ID token signatures against the JWKS (the library
    // skips that by default for tokens from the token endpoint, trusting TLS).
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const meta = config.serverMetadata();
  step('discovery', {
    endpoint: '/.well-known/openid-configuration',
    issuer: meta.issuer,
    jwks_uri: meta.jwks_uri,
    code_challenge_methods_supported: meta.code_challenge_methods_supported,
    id_token_signing_alg_values_supported: meta.id_token_signing_alg_values_supported,
    authorization_response_iss_parameter_supported: meta.authorization_response_iss_parameter_supported,
  });

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  let response = await browse(authorizationUrl);
  const loginUrl = redirectOf(response, authorizationUrl);
  step('authorize', {
    endpoint: '/oauth2/authorize',
    status: response.status,
    location: loginUrl.pathname,
    return_to: loginUrl.searchParams.get('return_to')?.split('?')[0],
  });

  response = await browse(loginUrl);
  const form = await response.text();
  step('login form', { endpoint: '/login', status: response.status, csrf_cookie: jar.has('auth_csrf') });
  const posted = new URL('/login', loginUrl);
  response = await browse(posted, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      username: input.username,
      password: input.password,
      csrf: hiddenField(form, 'csrf'),
      return_to: hiddenField(form, 'return_to'),
    }),
  });
  const back = redirectOf(response, posted, [303]);
  step('login', {
    endpoint: 'POST /login',
    status: response.status,
    location: back.pathname,
    session_cookie: jar.has('auth_session'),
  });

  response = await browse(back);
  const callback = redirectOf(response, back);
  step('authorize (signed in)', {
    endpoint: '/oauth2/authorize',
    status: response.status,
    redirect: path(callback),
    code: short(callback.searchParams.get('code')),
    state_matches: callback.searchParams.get('state') === state,
    iss: callback.searchParams.get('iss'),
  });

  // The library checks state and iss of the callback, PKCE, and the ID token: signature
  // against the JWKS, alg, iss, aud, azp, exp/iat, nonce, at_hash.
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const header = joseHeader(tokens.id_token);
  transcript.id_token_kid = header.kid;
  // The keys the library fetched from jwks_uri to check the ID token's signature.
  const jwksKids = client.getJwksCache(config)?.jwks?.keys?.map((key) => key.kid) ?? [];
  step('token (authorization_code)', {
    endpoint: '/oauth2/token',
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expiresIn(),
    access_token: short(tokens.access_token),
    refresh_token: short(tokens.refresh_token),
    jwks_kids: jwksKids,
    id_token: {
      header: { alg: header.alg, kid: header.kid, typ: header.typ },
      iss: claims.iss,
      aud: claims.aud,
      sub: claims.sub,
      nonce_matches: claims.nonce === nonce,
      at_hash: typeof claims.at_hash === 'string',
      amr: claims.amr,
      auth_time: typeof claims.auth_time === 'number',
      preferred_username: claims.preferred_username,
      email: claims.email,
    },
  });

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  step('userinfo', {
    endpoint: '/oauth2/userinfo',
    sub_matches: userinfo.sub === claims.sub,
    preferred_username: userinfo.preferred_username,
    email: userinfo.email,
    email_verified: userinfo.email_verified,
  });

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  step('token (refresh_token)', {
    endpoint: '/oauth2/token',
    token_type: refreshed.token_type,
    scope: refreshed.scope,
    access_token: short(refreshed.access_token),
    refresh_token: short(refreshed.refresh_token),
    rotated: refreshed.refresh_token !== tokens.refresh_token,
    new_access_token: refreshed.access_token !== tokens.access_token,
  });

  const introspect = async (name, token) => {
    const answer = await client.tokenIntrospection(config, token);
    const { active, token_type, client_id, sub, scope } = answer;
    step(`introspection (${name})`, {
      endpoint: '/oauth2/introspect',
      active,
      token_type,
      client_id_matches: client_id === undefined ? undefined : client_id === input.client_id,
      sub_matches: sub === undefined ? undefined : sub === claims.sub,
      scope,
    });
  };
  await introspect('access token', refreshed.access_token);
  await introspect('refresh token', refreshed.refresh_token);

  await client.tokenRevocation(config, refreshed.refresh_token);
  step('revocation', { endpoint: '/oauth2/revoke', token: 'refresh token' });
  await introspect('refresh token, revoked', refreshed.refresh_token);
  await introspect('access token of the revoked session', refreshed.access_token);

  const logoutState = client.randomState();
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: input.post_logout_redirect_uri,
    state: logoutState,
  });
  response = await browse(endSession);
  const signedOut = redirectOf(response, endSession, [302]);
  step('end session', {
    endpoint: '/oauth2/logout',
    status: response.status,
    redirect: path(signedOut),
    state_matches: signedOut.searchParams.get('state') === logoutState,
    session_cookie: jar.has('auth_session'),
  });

  // Signed out for real: a silent authorization now needs a sign-in.
  const silentState = client.randomState();
  const silent = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state: silentState,
    prompt: 'none',
  });
  response = await browse(silent);
  const refused = redirectOf(response, silent, [302]);
  // The library reads the error redirect itself, after checking its state and iss (RFC 9207).
  let answer;
  try {
    await client.authorizationCodeGrant(config, refused, { pkceCodeVerifier: codeVerifier, expectedState: silentState });
    answer = { error: null };
  } catch (error) {
    if (!(error instanceof client.AuthorizationResponseError)) throw error;
    answer = { error: error.error, library_error: error.name };
  }
  step('authorize (prompt=none, after logout)', {
    endpoint: '/oauth2/authorize',
    status: response.status,
    redirect: path(refused),
    ...answer,
  });
}

try {
  await run();
  transcript.ok = true;
  process.stdout.write(`${JSON.stringify(transcript, null, 2)}\n`);
} catch (error) {
  transcript.ok = false;
  transcript.error = {
    name: error?.name,
    message: error?.message,
    code: error?.code,
    error: error?.error,
    error_description: error?.error_description,
    status: error?.status,
    cause: error?.cause?.message,
  };
  process.stdout.write(`${JSON.stringify(transcript, null, 2)}\n`);
  process.exitCode = 1;
}
