// Test-only OAuth 2.0 / OpenID Connect authorization server for mailtoken's
// integration tests. NOT for production use: it accepts any login name
// without a password, keeps all state in memory and has test-only
// instrumentation routes.
//
// Usage: node tests/authserver/server.mjs --port PORT   (PORT 0 = ephemeral)
//
// When listening it prints exactly one line on stdout:
//   READY http://127.0.0.1:PORT
// (that URL, without a trailing slash, is the issuer). Everything else is
// logged to stderr.
//
// Environment:
//   AUTHSERVER_TTL        access-token lifetime in seconds (default 3600)
//   AUTHSERVER_SHORT_TTL  access-token lifetime for the *-short clients (default 6)
//   AUTHSERVER_SECRETS    a file to which every secret this server issues or holds is
//                         appended (test-only; see recordSecret)
//
// Clients (all native, loopback redirect URIs on any port, RFC 8252 §7.3):
//   native-cli     public (none), PKCE S256, refresh tokens rotate on every use
//   native-short   same, short-lived access tokens
//   google-desktop client_secret_post with the non-secret secret 'not-so-secret',
//                  access_type=offline gives a refresh token, no rotation
//   google-short   same, short-lived access tokens
//   native-https   public (none), PKCE S256, rotating, registered with the single
//                  redirect URI https://localhost (like Thunderbird's public Microsoft
//                  registration) and matched the way Microsoft matches it: any port
//                  (see MICROSOFT_LOCALHOST_CLIENTS below)
//   (registered)   app-only clients that tests register at POST /reg (RFC 7591):
//                  client_credentials, with the one `mailbox` their tokens are for
//   mail-rs        resource server for introspection only (client_secret_basic,
//                  secret 'mail-rs-secret'); may introspect tokens of every client
//
// Non-OAuth routes:
//   GET  /interaction/:uid            login form or consent page (plain HTML)
//   POST /interaction/:uid/login      form field `login` = account id
//   POST /interaction/:uid/confirm    grant the requested scopes
//   POST /interaction/:uid/abort      access_denied
//   GET  /_test/health                200 (test-only instrumentation)
//   GET  /_test/service-account?email=E[&delegated=0]
//                                     a new Google-style service account key (JSON),
//                                     whose token_uri is /sa-token (test-only)
//   POST /sa-token                    the JWT bearer grant (RFC 7523 §2.1) for those
//                                     service accounts, checked and answered as Google
//                                     does (oidc-provider has no such grant)
//   GET  /_test/stats?account=ID      token-endpoint grant counters, the scope of
//                                     the last refresh request, when each refresh token
//                                     was rotated and how many reuses revoked the grant
//                                     (test-only)

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  let port = 0;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--port') {
      port = argv[i + 1];
      i += 1;
    } else if (arg.startsWith('--port=')) {
      port = arg.slice('--port='.length);
    } else if (arg === '--help' || arg === '-h') {
      process.stderr.write('usage: node server.mjs --port PORT   (0 = ephemeral)\n');
      process.exit(0);
    } else {
      process.stderr.write(`server.mjs: unknown argument ${arg}\n`);
      process.exit(2);
    }
  }
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`server.mjs: invalid --port ${port}\n`);
    process.exit(2);
  }
  return { port: n };
}

function envSeconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`server.mjs: ${name} must be a positive integer, got ${raw}\n`);
    process.exit(2);
  }
  return n;
}

const { port: requestedPort } = parseArgs(process.argv.slice(2));
const ACCESS_TOKEN_TTL = envSeconds('AUTHSERVER_TTL', 3600);
const SHORT_ACCESS_TOKEN_TTL = envSeconds('AUTHSERVER_SHORT_TTL', 6);

const log = (...parts) => process.stderr.write(`[authserver] ${parts.join(' ')}\n`);

// ---------------------------------------------------------------- secrets, for the scan

// Test-only: every secret this server hands out or holds (access and refresh tokens,
// client secrets, service-account private keys) is appended, as a JSON line
// {"kind", "value"}, to the file AUTHSERVER_SECRETS names, before the response carrying
// it is sent. tests/secretscan/secretscan.py looks for them in every process's argv and
// environment, and in the logs, of the whole suite.
const SECRETS_FILE = process.env.AUTHSERVER_SECRETS ?? '';

function recordSecret(kind, value) {
  if (!SECRETS_FILE || typeof value !== 'string' || value === '') return;
  fs.appendFileSync(SECRETS_FILE, `${JSON.stringify({ kind, value })}\n`, { mode: 0o600 });
}

// The responses that carry secrets (the token endpoint, for every grant; dynamic client
// registration; the service accounts' token endpoint), and the fields that are secrets.
const SECRET_ROUTES = new Set(['/token', '/reg', '/sa-token']);
const SECRET_FIELDS = {
  access_token: 'access token',
  refresh_token: 'refresh token',
  client_secret: 'client secret',
};

function recordSecretsOf(res) {
  const chunks = [];
  const { write, end } = res;
  const keep = (chunk, encoding) => {
    if (chunk && typeof chunk !== 'function') {
      chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? encoding : undefined));
    }
  };
  res.write = function recordingWrite(chunk, encoding, ...rest) {
    keep(chunk, encoding);
    return write.call(this, chunk, encoding, ...rest);
  };
  res.end = function recordingEnd(chunk, encoding, ...rest) {
    keep(chunk, encoding);
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = null;
    }
    for (const [field, kind] of Object.entries(SECRET_FIELDS)) recordSecret(kind, body?.[field]);
    return end.call(this, chunk, encoding, ...rest);
  };
}

// ---------------------------------------------------------------- clients

const LOOPBACK_REDIRECTS = ['http://127.0.0.1/', 'http://[::1]/', 'http://localhost/'];
const APP_GRANTS = [
  'authorization_code',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:device_code',
];

const nativeClient = (clientId) => ({
  client_id: clientId,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  redirect_uris: LOOPBACK_REDIRECTS,
  grant_types: APP_GRANTS,
  response_types: ['code'],
});

const googleClient = (clientId) => ({
  client_id: clientId,
  client_secret: 'not-so-secret',
  application_type: 'native',
  token_endpoint_auth_method: 'client_secret_post',
  redirect_uris: LOOPBACK_REDIRECTS,
  grant_types: APP_GRANTS,
  response_types: ['code'],
});

const clients = [
  nativeClient('native-cli'),
  nativeClient('native-short'),
  // Device codes that expire in seconds, for the expired_token test.
  nativeClient('native-device-short'),
  // oidc-provider forbids https://localhost for native clients (claimed https URIs
  // must not be loopback), so this one registers as a public web client.
  {
    ...nativeClient('native-https'),
    application_type: 'web',
    redirect_uris: ['https://localhost'],
  },
  googleClient('google-desktop'),
  googleClient('google-short'),
  // The client that service accounts' tokens are issued to (see /sa-token).
  {
    client_id: 'service-accounts',
    client_secret: crypto.randomBytes(24).toString('hex'),
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  },
  {
    client_id: 'mail-rs',
    client_secret: 'mail-rs-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
];
for (const client of clients) recordSecret('client secret', client.client_secret);

const ROTATING_CLIENTS = new Set(['native-cli', 'native-short', 'native-https']); // Microsoft-like
// Microsoft matches a registered https://localhost (or http://localhost) redirect URI
// with any port: https://learn.microsoft.com/en-us/entra/identity-platform/reply-url#localhost-exceptions
// (../shared/docs/provider-facts.md, "Microsoft"). oidc-provider ignores the port for
// native http loopback redirects only, so for these clients the harness drops the port
// of an https://localhost redirect before the exact comparison.
const MICROSOFT_LOCALHOST_CLIENTS = new Set(['native-https']);
const GOOGLE_CLIENTS = new Set(['google-desktop', 'google-short']); // Google-like
const SHORT_TTL_CLIENTS = new Set(['native-short', 'google-short']);
// Seconds the device codes of native-device-short live.
const DEVICE_SHORT_TTL = 8;
const INTROSPECTING_RESOURCE_SERVERS = new Set(['mail-rs']);

// Authorization codes issued with access_type=offline (Google clients only),
// keyed by the code value (= its jti for opaque codes).
const offlineCodes = new Set();

// ---------------------------------------------------------------- test-only instrumentation

// Test-only: successful token-endpoint grants per account and grant type.
const grantStats = new Map();

const newStats = () => ({
  refresh_grants: 0, code_grants: 0, device_grants: 0, app_grants: 0, sa_grants: 0,
  last_refresh_scope: null,
  // When each refresh token of the account was consumed, i.e. rotated (ms since the
  // epoch, this machine's clock, to 0.01 ms): from then on only its successor works.
  rotated_at_ms: [],
  // Refreshes refused because the refresh token had been used already: each one has
  // revoked the whole grant (oidc-provider's reuse detection).
  reuse_revocations: 0,
});

function statsOf(account) {
  let entry = grantStats.get(account);
  if (!entry) {
    entry = newStats();
    grantStats.set(account, entry);
  }
  return entry;
}

const preciseNow = () => Math.round((performance.timeOrigin + performance.now()) * 100) / 100;

function countGrant(account, grantType, scope) {
  if (!account) return;
  const entry = statsOf(account);
  if (grantType === 'refresh_token') {
    entry.refresh_grants += 1;
    // The `scope` parameter of the last refresh request as sent (null: none sent).
    entry.last_refresh_scope = scope ?? null;
  }
  else if (grantType === 'authorization_code') entry.code_grants += 1;
  else if (grantType === 'client_credentials') entry.app_grants += 1;
  else if (grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer') entry.sa_grants += 1;
  else if (grantType === 'urn:ietf:params:oauth:grant-type:device_code') entry.device_grants += 1;
}

// ---------------------------------------------------------------- HTML

const esc = (value) => String(value)
  .replaceAll('&', '&amp;')
  .replaceAll('<', '&lt;')
  .replaceAll('>', '&gt;')
  .replaceAll('"', '&quot;')
  .replaceAll("'", '&#39;');

// Kept trivially parseable for the tests: one <form ...> per line, attributes
// in double quotes, one id per form.
const page = (title, body) => `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;

function attr(html, name) {
  const m = html.match(new RegExp(`name="${name}"[^>]*?value="([^"]*)"`));
  return m ? m[1] : '';
}

function formAction(html) {
  const m = html.match(/<form[^>]*action="([^"]*)"/);
  return m ? m[1] : '';
}

// ---------------------------------------------------------------- provider configuration

const configuration = {
  clients,
  // Fixed test value; state is in memory anyway.
  cookies: {
    keys: ['mt-test-cookie-key-7f3c9a1e5b2d48f6a0c4e8b1d9f2a6c3'],
  },
  routes: {
    authorization: '/auth',
    token: '/token',
    revocation: '/token/revocation',
    introspection: '/token/introspection',
    device_authorization: '/device/auth',
    registration: '/reg',
    code_verification: '/device',
    userinfo: '/me',
    jwks: '/jwks',
  },
  responseTypes: ['code'],
  scopes: ['openid', 'offline_access', 'email', 'mail'],
  claims: {
    openid: ['sub'],
    email: ['email'],
  },
  extraParams: ['access_type'],
  // The mailbox an app-only client's tokens belong to, as Exchange grants an app's
  // service principal one mailbox (Add-MailboxPermission).
  extraClientMetadata: {
    // `lifetime`: seconds its app-only tokens live (default AUTHSERVER_TTL).
    properties: ['mailbox', 'lifetime'],
    validator(ctx, key, value) {
      if (key === 'mailbox' && value !== undefined && typeof value !== 'string') {
        throw new Error('mailbox must be a string');
      }
      if (key === 'lifetime' && value !== undefined && !Number.isInteger(value)) {
        throw new Error('lifetime must be an integer');
      }
    },
  },
  pkce: {
    // PKCE (S256, the only method allowed by default) for every client
    // using the authorization code flow.
    required: () => true,
  },
  features: {
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // The resource server may introspect tokens of every client; every
      // other client only its own tokens.
      allowedPolicy: async (ctx, client, token) => (
        INTROSPECTING_RESOURCE_SERVERS.has(client.clientId)
        || token.clientId === client.clientId
      ),
    },
    revocation: { enabled: true },
    // App-only tokens (RFC 6749 §4.4) for the server accounts' tests.
    clientCredentials: { enabled: true },
    // Test-only: each test registers its own app-only client (RFC 7591), with the one
    // mailbox its tokens are for (`mailbox`, see extraClientMetadata), so that tests
    // share the server and nothing else.
    registration: { enabled: true },
    deviceFlow: {
      enabled: true,
      charset: 'base-20',
      async userCodeInputSource(ctx, form, out, err) {
        let msg = 'Enter the code displayed on your device';
        if (err && (err.userCode || err.name === 'NoCodeError')) msg = 'The code you entered is incorrect';
        else if (err && err.name === 'AbortedError') msg = 'The sign-in request was interrupted';
        else if (err) msg = 'There was an error processing your request';
        ctx.type = 'html';
        ctx.body = page('Device sign-in', `<p id="message">${esc(msg)}</p>
<form id="device-input" method="post" action="${esc(formAction(form))}">
<input type="hidden" name="xsrf" value="${attr(form, 'xsrf')}">
<input type="text" name="user_code" value="">
<button type="submit">Continue</button>
</form>`);
      },
      async userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
        const action = esc(formAction(form));
        const xsrf = attr(form, 'xsrf');
        const code = attr(form, 'user_code');
        ctx.type = 'html';
        ctx.body = page('Confirm device', `<p>Client <strong id="client">${esc(client.clientId)}</strong> shows code <code id="user_code">${esc(userCode)}</code></p>
<form id="device-confirm" method="post" action="${action}"><input type="hidden" name="xsrf" value="${xsrf}"><input type="hidden" name="user_code" value="${code}"><input type="hidden" name="confirm" value="yes"><button type="submit">Continue</button></form>
<form id="device-abort" method="post" action="${action}"><input type="hidden" name="xsrf" value="${xsrf}"><input type="hidden" name="user_code" value="${code}"><input type="hidden" name="abort" value="yes"><button type="submit">Abort</button></form>`);
      },
      async successSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('Sign-in Success', '<p id="device-success">Your sign-in was successful, you can now close this page.</p>');
      },
    },
  },
  // Opaque access tokens: no resource indicators, so the default format.
  ttl: {
    AccessToken: (ctx, token, client) => (
      SHORT_TTL_CLIENTS.has(client?.clientId ?? token?.clientId)
        ? SHORT_ACCESS_TOKEN_TTL
        : ACCESS_TOKEN_TTL
    ),
    AuthorizationCode: 60,
    ClientCredentials: (ctx, token, client) => client?.lifetime ?? ACCESS_TOKEN_TTL,
    DeviceCode: (ctx, token, client) => (
      (client?.clientId ?? token?.clientId) === 'native-device-short' ? DEVICE_SHORT_TTL : 600
    ),
    Grant: 14 * 24 * 60 * 60,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
  },
  // Tokens do not die with the browser session (as with real providers).
  expiresWithSession: async () => false,
  async issueRefreshToken(ctx, client, code) {
    if (!client.grantTypeAllowed('refresh_token')) return false;
    if (GOOGLE_CLIENTS.has(client.clientId)) {
      // Google: access_type=offline at the authorization endpoint; the device
      // flow always yields a refresh token.
      if (code.kind === 'DeviceCode') return true;
      if (code.kind === 'AuthorizationCode' && offlineCodes.has(code.jti)) return true;
    }
    // oidc-provider default: offline_access scope (which the provider only
    // keeps when consent is prompted).
    return code.scopes.has('offline_access');
  },
  rotateRefreshToken(ctx) {
    const { clientId } = ctx.oidc.client;
    return ROTATING_CLIENTS.has(clientId);
  },
  async extraTokenClaims(ctx, token) {
    // Appears in introspection responses of access tokens (Dovecot's
    // username_attribute = email).
    if (token.accountId) return { email: token.accountId };
    // An app-only token is for the client's one mailbox, and no other.
    if (token.kind === 'ClientCredentials' && ctx.oidc.client?.mailbox) {
      return { email: ctx.oidc.client.mailbox };
    }
    return undefined;
  },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: sub };
      },
    };
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async renderError(ctx, out, error) {
    ctx.type = 'html';
    const lines = Object.entries(out)
      .map(([k, v]) => `<p id="${esc(k)}">${esc(k)}: ${esc(v)}</p>`)
      .join('\n');
    ctx.body = page('Error', lines);
    log('renderError', JSON.stringify(out), error?.stack?.split('\n')[0] ?? '');
  },
};

// ---------------------------------------------------------------- server

const server = http.createServer();

server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  const exactOrLoopback = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
    if (MICROSOFT_LOCALHOST_CLIENTS.has(this.clientId)) {
      const portless = value.replace(/^https:\/\/localhost:\d+(?=[/?]|$)/u, 'https://localhost');
      return this.redirectUris.includes(portless);
    }
    return exactOrLoopback.call(this, value);
  };

  provider.on('authorization.success', (ctx, out) => {
    if (
      GOOGLE_CLIENTS.has(ctx.oidc.client?.clientId)
      && ctx.oidc.params?.access_type === 'offline'
      && out?.code
    ) {
      offlineCodes.add(out.code);
    }
  });
  provider.on('grant.success', (ctx) => {
    const grantType = ctx.oidc.params?.grant_type;
    // App-only grants are counted under `client:CLIENT_ID`.
    const account = ctx.oidc.entities?.Account?.accountId
      ?? ctx.oidc.entities?.AccessToken?.accountId
      ?? (grantType === 'client_credentials' ? `client:${ctx.oidc.client?.clientId}` : undefined);
    countGrant(account, grantType, ctx.oidc.params?.scope);
    log('grant.success', grantType, account, ctx.oidc.client?.clientId);
  });
  provider.on('refresh_token.consumed', (token) => {
    if (token.accountId) statsOf(token.accountId).rotated_at_ms.push(preciseNow());
  });
  provider.on('grant.error', (ctx, err) => {
    const account = ctx.oidc?.entities?.Account?.accountId;
    if (account && err.error_detail === 'refresh token already used') {
      statsOf(account).reuse_revocations += 1;
    }
    log('grant.error', ctx.oidc?.params?.grant_type, err.error, err.error_description ?? '', err.error_detail ?? '');
  });
  provider.on('authorization.error', (ctx, err) => {
    log('authorization.error', err.error, err.error_description ?? '', err.error_detail ?? '');
  });
  provider.on('server_error', (ctx, err) => {
    log('server_error', err.stack);
  });

  const providerCallback = provider.callback();

  server.on('request', (req, res) => {
    const started = Date.now();
    res.on('finish', () => {
      log(req.method, req.url.replace(/([?&](?:code|refresh_token|token|code_verifier|client_secret)=)[^&]*/g, '$1…'), res.statusCode, `${Date.now() - started}ms`);
    });
    const url = new URL(req.url, issuer);
    if (SECRET_ROUTES.has(url.pathname)) recordSecretsOf(res);
    if (url.pathname.startsWith('/interaction/') || url.pathname.startsWith('/_test/')
      || url.pathname === '/sa-token') {
      handleCustom(provider, req, res, url).catch((err) => {
        log('custom route error', err.stack);
        if (!res.headersSent) {
          sendHtml(res, 500, page('Error', `<p id="error">${esc(err.message)}</p>`));
        } else {
          res.end();
        }
      });
      return;
    }
    providerCallback(req, res);
  });

  process.stdout.write(`READY ${issuer}\n`);
  log(`listening, issuer ${issuer}, access-token TTL ${ACCESS_TOKEN_TTL}s (short ${SHORT_ACCESS_TOKEN_TTL}s)`);
});

server.on('error', (err) => {
  log('listen error', err.message);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log(`${signal}, exiting`);
    process.exit(0);
  });
}

// ---------------------------------------------------------------- custom routes

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

function sendJson(res, status, body) {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(JSON.stringify(body));
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------- service accounts

// Test-only: Google-style service accounts, by client_email: the public half of the
// key the test got, and whether domain-wide delegation was granted.
const serviceAccounts = new Map();
const SA_SCOPE = 'mail';
const SA_DOMAIN = '@example.test';

function newServiceAccount(issuer, email, delegated) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyId = crypto.randomBytes(20).toString('hex');
  serviceAccounts.set(email, { publicKey, keyId, delegated });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  recordSecret('private key', pem);
  // The fields of the JSON key Google's console downloads.
  return {
    type: 'service_account',
    project_id: 'mailtoken-test',
    private_key_id: keyId,
    private_key: pem,
    client_email: email,
    client_id: String(BigInt(`0x${crypto.randomBytes(8).toString('hex')}`)),
    auth_uri: `${issuer}/auth`,
    token_uri: `${issuer}/sa-token`,
  };
}

// Google's token endpoint for the JWT bearer grant, with Google's error texts
// (https://developers.google.com/identity/protocols/oauth2/service-account#error-codes).
async function jwtBearerGrant(provider, issuer, req, res) {
  const form = await readForm(req);
  const refuse = (error, description) => {
    log('sa-token refused', error, description);
    sendJson(res, 400, { error, error_description: description });
  };
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    refuse('unsupported_grant_type', `Invalid grant_type: ${form.get('grant_type') ?? ''}`);
    return;
  }
  const parts = (form.get('assertion') ?? '').split('.');
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    refuse('invalid_request', 'Invalid JWT: the assertion is not a JWT.');
    return;
  }
  const account = serviceAccounts.get(claims.iss);
  const signed = account && header.alg === 'RS256' && parts.length === 3
    && crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), account.publicKey, Buffer.from(parts[2], 'base64url'));
  if (!signed || (header.kid !== undefined && header.kid !== account.keyId)) {
    refuse('invalid_grant', 'Invalid JWT Signature.');
    return;
  }
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number'
    || claims.exp - claims.iat > 3600 || claims.exp <= now || claims.iat > now + 60) {
    refuse('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
    return;
  }
  if (claims.aud !== `${issuer}/sa-token`) {
    refuse('invalid_grant', `Invalid JWT: Failed audience check. The right audience is ${issuer}/sa-token`);
    return;
  }
  if (typeof claims.sub !== 'string' || !claims.sub.endsWith(SA_DOMAIN)) {
    refuse('invalid_grant', 'Invalid email or User ID');
    return;
  }
  if (!String(claims.scope ?? '').split(' ').includes(SA_SCOPE)) {
    refuse('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    return;
  }
  if (!account.delegated) {
    refuse('unauthorized_client', 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
    return;
  }
  // An access token for the mailbox `sub`, as oidc-provider's own (so that Dovecot's
  // introspection finds it), issued to the static client `service-accounts`.
  const client = await provider.Client.find('service-accounts');
  const grant = new provider.Grant({ accountId: claims.sub, clientId: client.clientId });
  grant.addOIDCScope(SA_SCOPE);
  const grantId = await grant.save();
  const token = new provider.AccessToken({
    accountId: claims.sub, client, grantId, scope: SA_SCOPE, gty: 'jwt_bearer',
  });
  const value = await token.save();
  countGrant(`sa:${claims.iss}`, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  sendJson(res, 200, {
    access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: SA_SCOPE,
  });
}

async function handleCustom(provider, req, res, url) {
  const path = url.pathname;
  const issuer = url.origin;

  if (path === '/_test/service-account' && req.method === 'GET') {
    const email = url.searchParams.get('email') ?? '';
    sendJson(res, 200, newServiceAccount(issuer, email, url.searchParams.get('delegated') !== '0'));
    return;
  }
  if (path === '/sa-token' && req.method === 'POST') {
    await jwtBearerGrant(provider, issuer, req, res);
    return;
  }

  // Test-only instrumentation.
  if (path === '/_test/health' && req.method === 'GET') {
    sendJson(res, 200, { ok: true });
    return;
  }
  if (path === '/_test/stats' && req.method === 'GET') {
    const account = url.searchParams.get('account') ?? '';
    const entry = grantStats.get(account) ?? newStats();
    sendJson(res, 200, { account, ...entry });
    return;
  }

  const m = path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!m) {
    sendHtml(res, 404, page('Not found', '<p id="error">not found</p>'));
    return;
  }
  const [, uid, action] = m;

  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    // Missing/expired interaction cookie or session.
    sendHtml(res, 400, page('Error', `<p id="error">${esc(err.name)}: ${esc(err.message)}</p>`));
    return;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Error', '<p id="error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;

  if (!action) {
    if (req.method !== 'GET') {
      sendHtml(res, 405, page('Error', '<p id="error">method not allowed</p>'));
      return;
    }
    if (prompt.name === 'login') {
      sendHtml(res, 200, page('Sign in', `<p>Client <strong id="client">${esc(params.client_id)}</strong> asks you to sign in.</p>
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
<input type="text" name="login" value="">
<button type="submit">Sign in</button>
</form>`));
      return;
    }
    if (prompt.name === 'consent') {
      const scopes = String(params.scope ?? '');
      sendHtml(res, 200, page('Authorize', `<p>Client <strong id="client">${esc(params.client_id)}</strong> asks for scopes <code id="scope">${esc(scopes)}</code>.</p>
<form id="approve" method="post" action="/interaction/${esc(uid)}/confirm"><button type="submit">Allow</button></form>
<form id="deny" method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Deny</button></form>`));
      return;
    }
    sendHtml(res, 500, page('Error', `<p id="error">unsupported prompt ${esc(prompt.name)}</p>`));
    return;
  }

  if (req.method !== 'POST') {
    sendHtml(res, 405, page('Error', '<p id="error">method not allowed</p>'));
    return;
  }
  const form = await readForm(req);

  if (action === 'login') {
    if (prompt.name !== 'login') {
      sendHtml(res, 400, page('Error', `<p id="error">expected prompt login, got ${esc(prompt.name)}</p>`));
      return;
    }
    const login = (form.get('login') ?? '').trim();
    if (!login) {
      sendHtml(res, 400, page('Sign in', `<p id="error">login name required</p>
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
<input type="text" name="login" value="">
<button type="submit">Sign in</button>
</form>`));
      return;
    }
    log('login', login, 'for', params.client_id);
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }

  if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      sendHtml(res, 400, page('Error', `<p id="error">expected prompt consent, got ${esc(prompt.name)}</p>`));
      return;
    }
    const { details: missing } = prompt;
    const { accountId } = details.session;
    let grant;
    if (details.grantId) {
      grant = await provider.Grant.find(details.grantId);
    }
    if (!grant) {
      grant = new provider.Grant({ accountId, clientId: params.client_id });
    }
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const consent = {};
    if (!details.grantId) consent.grantId = grantId;
    log('consent', accountId, 'for', params.client_id, 'scope', params.scope ?? '');
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }

  // abort
  log('abort', 'for', params.client_id);
  await provider.interactionFinished(req, res, {
    error: 'access_denied',
    error_description: 'End-User aborted interaction',
  }, { mergeWithLastSubmission: false });
}
