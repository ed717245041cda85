// A real OpenID Connect provider on localhost for tests/test_login.py: panva's oidc-provider with its
// development login form (any login name) and consent page, one confidential code-flow client.
//
//   node tests/oidc/provider.mjs --port=9000 --client-id=pneumo --client-secret=s3cret \
//        --redirect-uri=http://localhost:8501/oauth2callback [--issuer=http://localhost:9000]
//
// Every option can also come from the environment: OIDC_PORT, OIDC_ISSUER, OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI (use --opt=value for a value that starts with "-").
// Prints "oidc provider listening on <issuer>" on stdout once it accepts connections, so a test
// waits for that line rather than for a while; oidc-provider's warnings go to stderr.

import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: cli } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string' },
  },
});

function option(name, envName) {
  const value = cli[name] ?? process.env[envName];
  if (!value) {
    console.error(`provider.mjs: --${name} (or ${envName}) is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(option('port', 'OIDC_PORT'));
const issuer = cli.issuer ?? process.env.OIDC_ISSUER ?? `http://localhost:${port}`;
const redirectUri = option('redirect-uri', 'OIDC_REDIRECT_URI');

const provider = new Provider(issuer, {
  clients: [{
    client_id: option('client-id', 'OIDC_CLIENT_ID'),
    client_secret: option('client-secret', 'OIDC_CLIENT_SECRET'),
    redirect_uris: [redirectUri],
    // Streamlit's st.logout sends the user back to its redirect URI (/oauth2callback).
    post_logout_redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Any login name is an account: <login>@school.example, verified.
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@school.example`, email_verified: true, name: id };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Streamlit (Authlib) builds st.user from the ID token alone and never calls the userinfo
  // endpoint, so the scope's claims must be in the ID token, not only behind the access token.
  conformIdTokenClaims: false,
  // Fixed keys: the cookies of the login form must be signed; a test provider needs no secret.
  cookies: { keys: ['pneumo-test-oidc-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});

// Streamlit asks for prompt=select_account (Google's account chooser), a prompt oidc-provider
// does not know and would refuse; the closest it has is the login form, so ask for that.
provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && ctx.query.prompt) {
    const prompts = String(ctx.query.prompt).split(' ')
      .map((p) => (p === 'select_account' ? 'login' : p));
    ctx.query = { ...ctx.query, prompt: [...new Set(prompts)].join(' ') };
  }
  await next();
});

// Loopback only; "localhost" may resolve to either address, so listen on both where both exist.
const handler = provider.callback();
const listen = (host) => new Promise((resolve, reject) => {
  const server = http.createServer(handler);
  server.once('error', reject);
  server.listen(port, host, () => resolve(server));
});

await listen('127.0.0.1');
try {
  await listen('::1');
} catch (err) {
  if (!['EADDRNOTAVAIL', 'EAFNOSUPPORT'].includes(err.code)) throw err;
}
console.log(`oidc provider listening on ${issuer}`);

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
