// The bench's comparison OP: panva's oidc-provider (the certified Node implementation), set up
// like our provider for the rows that compare them (bench/oidc.py): one confidential client
// (client_secret_basic, authorization_code + refresh_token, PKCE S256), refresh tokens rotated on
// every use, introspection on, ID tokens signed ES256 with a P-256 key made at start, opaque
// access tokens, accounts from findAccount (any id), the stock in-memory adapter, the
// development interactions (login and consent pages) for the code flow that makes the sessions.
//
// Environment: OIDC_PROVIDER_MODULES (the node_modules it was installed into), PORT,
// BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, BENCH_REDIRECT_URI.
import { generateKeyPairSync } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const modules = process.env.OIDC_PROVIDER_MODULES;
const { default: Provider } = await import(pathToFileURL(`${modules}/oidc-provider/lib/index.js`).href);

const port = Number(process.env.PORT);
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: process.env.BENCH_CLIENT_ID,
      client_secret: process.env.BENCH_CLIENT_SECRET,
      redirect_uris: [process.env.BENCH_REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'offline_access'],
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true, // every use, as ours (the default rotates a confidential client's only past 70 % of its life)
  cookies: { keys: ['bench-cookie-signing-key-0123456789abcdef'] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider listening on ${port}\n`);
});
