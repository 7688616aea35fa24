// External applications (Keyward as an OAuth 2.0 client of other servers) end to end, in a
// real browser (headless Chromium) against real third-party servers, on SQLite and on
// PostgreSQL:
//
//   node --test --test-concurrency=1 external.test.mjs
//
// The third-party servers are `tests/interop/providers.py` (Authlib): `standard` (RFC 6749
// with PKCE, RFC 7009 revocation, RFC 9207 `iss`) and `quirky` (JSON-only token and
// refresh endpoints, `expires_in` as a string, comma-separated scopes, no refresh-token
// rotation). Each case starts its own provider(s) and external application and stops them
// in its `after`.
//
// Per store: one `keyward serve`, a workflow application (a Keyward `web` client allowed
// the management API with the connection scopes), an account "Acme" whose member the user
// is. The user (alice) signs up in Chromium through the workflow application and gets a
// user access token for `{issuer}/api`. Cases:
//   1. direct mode (standard, `iss`): prompt → provider approval → "Connected to …";
//      the token works at the provider, the proxy, who is connected, /api/me/connections;
//      not signed in → sign-in → back at the prompt; cancel.
//   2. refresh (ttl 30): each token request refreshes with the rotated refresh token;
//      without rotation the kept refresh token keeps working.
//   3. concurrency: 50 simultaneous token requests → one refresh, one token; on PostgreSQL
//      also 25 + 25 through two `keyward serve` processes on one database.
//   4. invalid_grant → 409 reauthorization_required, needs_reauthorization; reconnect.
//   5. lifecycle: disable / enable (same token) / reset (revoked at the provider,
//      not_connected) / delete; the audit log.
//   6. private mode against the quirky server: JSON templates for /token and
//      /refresh_token, the mapped and normalized response, refreshes keep the refresh token.
//   7. refusals: another member, a non-member, the egress policy (other hosts, a redirect
//      to the metadata address), credentials dropped on redirects, the caller's own
//      Authorization and cookies never forwarded, the manage permission, a mismatched
//      `iss`, a denial at the provider.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  ADMIN_CLIENT_ID,
  REPO_ROOT,
  launchBrowser,
  pkcePair,
  randomName,
  randomToken,
  startCallbackServer,
  startProvider,
  startServer,
  tokenRequest,
  verifyJwt,
} from './harness.mjs';

const PASSWORD = 'correct horse battery staple 42';
const USER_SCOPES = [
  'connections:read',
  'connections:write',
  'connections:use',
  'external_applications:read',
  'external_applications:write',
];
const PROVIDER_CLIENT_ID = 'keyward-test-client';
const PROVIDER_CLIENT_SECRET = 'keyward-test-secret';
const ARTIFACTS = path.join(REPO_ROOT, 'target', 'browser-tests', 'artifacts');

const STORES = (process.env.KEYWARD_BROWSER_STORES || 'sqlite,postgres').split(',').map((s) => s.trim()).filter(Boolean);

let browser;
let failures = 0;

/** `it`, counting failures so that the after hooks can print the logs and keep files. */
function step(name, fn) {
  it(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failures += 1;
      throw e;
    }
  });
}

/** A `before` hook whose failure counts as a failure (logs are printed and kept). */
function setUp(fn) {
  before(async () => {
    try {
      await fn();
    } catch (e) {
      failures += 1;
      throw e;
    }
  });
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

async function pageText(page) {
  try {
    return `${page.url()}\n${(await page.locator('body').innerText()).slice(0, 1500)}`;
  } catch (e) {
    return `${page.url()} (${e.message})`;
  }
}

async function screenshot(page, name) {
  try {
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  } catch {
    return null;
  }
}

/**
 * Clicks and waits for the navigation: to a URL matching `urlPredicate` when given (it must
 * not match the current URL), else for the next navigation.
 */
async function clickAndWait(page, locator, urlPredicate) {
  const waiting = urlPredicate
    ? page.waitForURL((u) => urlPredicate(new URL(u)), { waitUntil: 'load', timeout: 30_000 })
    : page.waitForNavigation({ waitUntil: 'load', timeout: 30_000 });
  await Promise.all([waiting, locator.click()]);
}

/** Any call to a Keyward node with a bearer token, extra headers and a JSON body. */
async function call(node, method, p, { token, headers = {}, body } = {}) {
  const h = { accept: 'application/json', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const r = await fetch(`${node.base}${p}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: r.status, body: json, text, headers: r.headers };
}

/** `POST /api/external-applications/{id}/token` (empty body) with a user's token. */
function externalToken(node, token, appId) {
  return call(node, 'POST', `/api/external-applications/${appId}/token`, { token });
}

function proxy(node, token, appId, url, opts = {}) {
  return call(node, opts.method || 'GET', `/api/external-applications/${appId}/proxy?url=${encodeURIComponent(url)}`, { token, ...opts });
}

/** GET {provider}/api/me with an access token: {status, body}. */
async function providerMe(provider, accessToken) {
  const r = await fetch(`${provider.base}/api/me`, { headers: { authorization: `Bearer ${accessToken}` } });
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body };
}

function describeError(r) {
  return `${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`;
}

/** A good token answer: shape, Bearer, numeric expires_in consistent with expires_at. */
function assertTokenAnswer(r, { maxExpiresIn } = {}) {
  assert.equal(r.status, 200, `token: ${describeError(r)}`);
  const b = r.body;
  assert.equal(typeof b.access_token, 'string');
  assert.ok(b.access_token.length > 10, `access_token ${b.access_token}`);
  assert.equal(b.token_type, 'Bearer');
  assert.equal(typeof b.expires_in, 'number', `expires_in is ${typeof b.expires_in}: ${JSON.stringify(b)}`);
  assert.ok(b.expires_in > 0, `expires_in ${b.expires_in}`);
  if (maxExpiresIn !== undefined) assert.ok(b.expires_in <= maxExpiresIn, `expires_in ${b.expires_in} > ${maxExpiresIn}`);
  const at = Date.parse(b.expires_at);
  assert.ok(Number.isFinite(at), `expires_at ${b.expires_at}`);
  assert.ok(Math.abs(at / 1000 - (Date.now() / 1000 + b.expires_in)) < 10, `expires_at ${b.expires_at} vs expires_in ${b.expires_in}`);
  assert.match(b.connection_id, /^con_/, `connection_id ${b.connection_id}`);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  return b;
}

function assertProblem(r, status, code) {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${describeError(r)}`);
  assert.match(r.headers.get('content-type') || '', /application\/problem\+json/);
  if (code) assert.equal(r.body.code, code, `problem: ${JSON.stringify(r.body)}`);
}

/** Waits until `pred(stats)` holds (the provider answers after its counters change). */
async function statsUntil(provider, pred, ms = 5000) {
  const deadline = Date.now() + ms;
  let stats;
  for (;;) {
    stats = await provider.stats();
    if (pred(stats) || Date.now() > deadline) return stats;
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const store of STORES) {
  describe(`external applications on ${store}`, () => {
    let server;
    let callback;
    let workflowApp; // {client_id, client_secret}
    let accountId;
    const contexts = [];
    const providers = [];
    const nodes = [];
    let failuresBefore = 0;

    // alice: signed up in the first browser context, member of Acme.
    const alice = { username: randomName('alice'), password: PASSWORD };
    alice.email = `${alice.username}@example.test`;
    let alicePage;

    async function newPage() {
      const context = await browser.newContext();
      contexts.push(context);
      return context.newPage();
    }

    async function provider(kind, opts = {}) {
      const p = await startProvider(kind, { logDir: server.dir, ...opts });
      providers.push(p);
      return p;
    }

    /**
     * Signs a new user up in `page` through the workflow application and exchanges the
     * code: {id, token} (a user access token for `{issuer}/api`).
     */
    async function signUpForToken(page, user) {
      const { verifier, challenge } = pkcePair();
      const state = randomToken(12);
      const params = new URLSearchParams({
        response_type: 'code',
        client_id: workflowApp.client_id,
        redirect_uri: callback.url('/callback'),
        scope: USER_SCOPES.join(' '),
        resource: `${server.issuer}/api`,
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      });
      await page.goto(`${server.base}/oauth2/authorize?${params}`, { waitUntil: 'load' });
      const visited = [];
      for (let i = 0; i < 8; i++) {
        const url = new URL(page.url());
        if (url.origin === callback.origin) break;
        visited.push(url.pathname);
        if (url.pathname === '/sign-in') {
          await clickAndWait(page, page.getByRole('link', { name: /create an account/i }));
        } else if (url.pathname === '/sign-up') {
          const form = page.locator('form:has(input[name=password])');
          await form.locator('input[name=username]').fill(user.username);
          await form.locator('input[name=email]').fill(user.email);
          await form.locator('input[name=password]').fill(user.password);
          await clickAndWait(page, form.locator('button[type=submit]'));
        } else if (url.pathname === '/consent') {
          await clickAndWait(page, page.locator('button[name=decision][value=allow]'));
        } else {
          const shot = await screenshot(page, `${store}-signup-${user.username}`);
          throw new Error(`unexpected page during sign-up (after ${visited}): ${await pageText(page)} (screenshot ${shot})`);
        }
      }
      const hit = callback.last('/callback');
      assert.ok(hit && hit.query.state === state, `no callback for the sign-up (pages ${visited}): ${await pageText(page)}`);
      assert.equal(hit.query.error, undefined, `authorization error: ${JSON.stringify(hit.query)}`);
      const r = await tokenRequest(
        server,
        { grant_type: 'authorization_code', code: hit.query.code, redirect_uri: callback.url('/callback'), code_verifier: verifier },
        { basic: [workflowApp.client_id, workflowApp.client_secret] },
      );
      assert.equal(r.status, 200, `code exchange: ${JSON.stringify(r.body)}`);
      const jwks = await (await fetch(`${server.base}/.well-known/jwks.json`)).json();
      const claims = verifyJwt(r.body.access_token, jwks);
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      assert.ok(aud.includes(`${server.issuer}/api`), `user token audience ${JSON.stringify(claims.aud)}`);
      const scopes = new Set(String(claims.scope).split(' '));
      for (const s of USER_SCOPES) assert.ok(scopes.has(s), `user token scope ${claims.scope} lacks ${s}`);
      assert.ok(claims.uid, `user token without uid: ${JSON.stringify(claims)}`);
      return { id: claims.uid, token: r.body.access_token };
    }

    async function addMember(userId, role = 'member') {
      const r = await server.api('POST', `/api/accounts/${accountId}/members`, { user_id: userId, role });
      assert.equal(r.status, 201, `add member: ${describeError(r)}`);
    }

    /** Creates a direct-mode external application for `p` in Acme. */
    async function directApp(p, extra = {}) {
      const name = `CRM ${randomToken(4)}`;
      const body = {
        name,
        description: 'The CRM of the browser test',
        approval_prompt: `Keyward will read your ${name} contacts for the weekly report.`,
        client_id: PROVIDER_CLIENT_ID,
        client_secret: PROVIDER_CLIENT_SECRET,
        scopes: ['read', 'write'],
        issuer: p.issuer,
        mode: 'direct',
        authorization_url: `${p.base}/authorize`,
        token_url: `${p.base}/token`,
        revocation_url: `${p.base}/revoke`,
        egress_hosts: [p.hostPort],
        ...extra,
      };
      const r = await server.api('POST', `/api/accounts/${accountId}/external-applications`, body);
      assert.equal(r.status, 201, `create external application: ${describeError(r)}`);
      assert.match(r.body.id, /^xap_/);
      assert.equal(r.body.enabled, true);
      assert.equal(r.body.client_secret, undefined, 'the client secret came back');
      assert.ok(!JSON.stringify(r.body).includes(PROVIDER_CLIENT_SECRET), 'the client secret came back');
      assert.equal(r.body.callback_url, `${server.issuer}/external-applications/${r.body.id}/callback`);
      assert.equal(r.body.authorize_url, `${server.issuer}/external-applications/${r.body.id}/authorize`);
      return r.body;
    }

    /**
     * In `page` (signed in to Keyward): the approval prompt, Continue, the provider's
     * approval as `username`, back at the callback. Returns the final page's h1.
     */
    async function connect(page, app, p, { username = 'alice', expectConnected = false } = {}) {
      const response = await page.goto(app.authorize_url, { waitUntil: 'load' });
      assert.equal(response.status(), 200, `prompt: ${await pageText(page)}`);
      assert.equal(new URL(page.url()).pathname, `/external-applications/${app.id}/authorize`, `prompt: ${await pageText(page)}`);
      assert.equal((await page.locator('#approval-prompt').innerText()).trim(), app.approval_prompt);
      const text = await page.locator('body').innerText();
      assert.equal(/already connected/i.test(text), expectConnected, `"already connected" on the prompt: ${text}`);
      await clickAndWait(page, page.locator('#continue'), (u) => u.origin === p.base && u.pathname === '/authorize');
      const authz = new URL(page.url());
      assert.equal(authz.searchParams.get('client_id'), app.client_id);
      assert.equal(authz.searchParams.get('redirect_uri'), app.callback_url);
      assert.equal(authz.searchParams.get('response_type'), 'code');
      assert.ok(authz.searchParams.get('state'), 'no state');
      if (app.use_pkce !== false) {
        assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
        assert.match(authz.searchParams.get('code_challenge') || '', /^[A-Za-z0-9_-]{43}$/);
      }
      await page.locator('input#username').fill(username);
      await clickAndWait(page, page.locator('button#approve'), (u) => u.origin === server.base);
      assert.equal(new URL(page.url()).pathname, `/external-applications/${app.id}/callback`, await pageText(page));
      return (await page.locator('h1').innerText()).trim();
    }

    async function connectOk(page, app, p, opts) {
      let h1;
      try {
        h1 = await connect(page, app, p, opts);
      } catch (e) {
        const shot = await screenshot(page, `${store}-connect-${app.id}`);
        e.message += `\n(page: ${await pageText(page)}; screenshot: ${shot})`;
        throw e;
      }
      assert.equal(h1, `Connected to ${app.name}`, await pageText(page));
      assert.equal(await page.title(), `Connected to ${app.name} · Keyward`);
    }

    async function myConnection(token, appId) {
      const r = await call(server, 'GET', '/api/me/connections', { token });
      assert.equal(r.status, 200, `GET /api/me/connections: ${describeError(r)}`);
      assert.ok(Array.isArray(r.body), `/api/me/connections is not an array: ${r.text}`);
      return r.body.find((c) => c.external_application_id === appId);
    }

    setUp(async () => {
      failuresBefore = failures;
      server = await startServer(store);
      callback = await startCallbackServer();
      const app = await server.api('POST', '/api/applications', {
        name: 'Workflow runner',
        kind: 'web',
        redirect_uris: [callback.url('/callback')],
        grant_types: ['authorization_code', 'refresh_token'],
        grants: [{ resource: `${server.issuer}/api`, scopes: USER_SCOPES }],
        first_party: false,
      });
      assert.equal(app.status, 201, `create the workflow application: ${describeError(app)}`);
      workflowApp = { client_id: app.body.application.client_id, client_secret: app.body.client_secret };
      const account = await server.api('POST', '/api/accounts', { name: 'Acme' });
      assert.equal(account.status, 201, `create account: ${describeError(account)}`);
      accountId = account.body.id;
      alicePage = await newPage();
      const signed = await signUpForToken(alicePage, alice);
      alice.id = signed.id;
      alice.token = signed.token;
      await addMember(alice.id);
    });

    after(async () => {
      const failed = failures > failuresBefore;
      if (failed && alicePage) await screenshot(alicePage, `${store}-alice-last`);
      for (const c of contexts) await c.close().catch(() => {});
      if (failed) {
        for (const p of providers) console.error(`--- provider log (${p.kind}, ${p.logPath}) ---\n${p.log().slice(-3000)}`);
        for (const n of [server, ...nodes].filter(Boolean)) {
          console.error(`--- server log (${store}, ${n.logPath}) ---\n${n.log().slice(-8000)}`);
        }
      }
      for (const p of providers) await p.stop();
      for (const n of nodes) {
        n.failed = failed;
        await n.stop();
      }
      await callback?.close();
      if (server) {
        server.failed = failed;
        await server.stop();
      }
    });

    // ---- 1. direct mode ----------------------------------------------------------------
    describe('direct mode against the standard server', () => {
      let p;
      let app;
      let token;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true });
        app = await directApp(p);
      });

      step('the prompt, Continue, approval at the provider: "Connected to …"', async () => {
        await connectOk(alicePage, app, p);
        const stats = await p.stats();
        assert.equal(stats.authorization_code_grants, 1, JSON.stringify(stats));
        assert.equal(stats.token_errors, 0, JSON.stringify(stats));
        assert.equal(stats.last_token_request.path, '/token');
        assert.equal(stats.last_token_request.auth_scheme, 'basic', 'client_secret_basic is the default');
        assert.ok(stats.last_token_request.body_keys.includes('code_verifier'), `PKCE: ${stats.last_token_request.body_keys}`);
      });

      step('the token endpoint answers a token that works at the provider (alice)', async () => {
        const b = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 3600 });
        assert.ok(b.expires_in > 3500, `expires_in ${b.expires_in}`);
        assert.equal(b.scope, 'read write');
        token = b.access_token;
        const me = await providerMe(p, token);
        assert.equal(me.status, 200, JSON.stringify(me.body));
        assert.equal(me.body.user, 'alice');
        // A valid token is handed out again without a refresh.
        const again = assertTokenAnswer(await externalToken(server, alice.token, app.id));
        assert.equal(again.access_token, token);
        assert.equal((await p.stats()).refresh_grants, 0);
      });

      step('the proxy calls /api/me with the token injected', async () => {
        assert.ok(token, 'previous step failed');
        const r = await proxy(server, alice.token, app.id, `${p.base}/api/me`);
        assert.equal(r.status, 200, describeError(r));
        assert.equal(r.body.user, 'alice');
        assert.equal(r.body.token_suffix, token.slice(-6));
        const echo = await proxy(server, alice.token, app.id, `${p.base}/api/echo/things?x=1`, { method: 'POST', body: { hello: 'world' } });
        assert.equal(echo.status, 200, describeError(echo));
        assert.equal(echo.body.method, 'POST');
        assert.equal(echo.body.path, '/api/echo/things');
        assert.equal(echo.body.query, 'x=1');
        assert.deepEqual(JSON.parse(echo.body.body), { hello: 'world' });
        assert.equal(echo.body.headers.authorization, `Bearer ${token}`);
      });

      step('who is connected (admin) and /api/me/connections (the user) show the connection', async () => {
        const r = await server.api('GET', `/api/external-applications/${app.id}/connections`);
        assert.equal(r.status, 200, describeError(r));
        assert.equal(r.body.data.length, 1, JSON.stringify(r.body));
        const c = r.body.data[0];
        assert.equal(c.user_id, alice.id);
        assert.equal(c.state, 'active');
        assert.equal(c.scope, 'read write');
        assert.match(c.id, /^con_/);
        const mine = await myConnection(alice.token, app.id);
        assert.ok(mine, 'not in /api/me/connections');
        assert.equal(mine.id, c.id);
        assert.equal(mine.state, 'active');
        assert.equal(mine.authorize_url, app.authorize_url);
        assert.ok(!JSON.stringify(mine).includes(token), 'the access token is in the connection view');
      });

      step('not signed in: the prompt sends to /sign-in?return_to=… and back; Cancel connects nothing', async () => {
        const page = await newPage();
        await page.goto(app.authorize_url, { waitUntil: 'load' });
        const url = new URL(page.url());
        assert.equal(url.pathname, '/sign-in', await pageText(page));
        assert.equal(url.searchParams.get('return_to'), `/external-applications/${app.id}/authorize`);
        const form = page.locator('form:has(input[name=password])');
        await form.locator('input[name=login]').fill(alice.username);
        await form.locator('input[name=password]').fill(alice.password);
        await clickAndWait(page, form.locator('button[type=submit]'), (u) => u.pathname !== '/sign-in');
        assert.equal(new URL(page.url()).pathname, `/external-applications/${app.id}/authorize`, await pageText(page));
        assert.equal((await page.locator('#approval-prompt').innerText()).trim(), app.approval_prompt);
        await clickAndWait(page, page.locator('#cancel'));
        assert.equal((await page.locator('h1').innerText()).trim(), 'Not connected', await pageText(page));
        assert.equal((await p.stats()).authorization_code_grants, 1);
        // An open redirect is not a return_to.
        await page.goto(`${server.base}/sign-in?return_to=${encodeURIComponent('//evil.example/x')}`, { waitUntil: 'load' });
        assert.equal(await page.locator('input[name=return_to]').count(), 0);
        await page.context().close();
      });

      step('with return_to the callback answers 303 to that local path', async () => {
        await alicePage.goto(`${app.authorize_url}?return_to=${encodeURIComponent('/healthz?from=external')}`, { waitUntil: 'load' });
        await clickAndWait(alicePage, alicePage.locator('#continue'), (u) => u.origin === p.base);
        await alicePage.locator('input#username').fill('alice');
        const callbackResponse = alicePage.waitForResponse((r) => new URL(r.url()).pathname === `/external-applications/${app.id}/callback`);
        await clickAndWait(alicePage, alicePage.locator('button#approve'), (u) => u.origin === server.base && u.pathname === '/healthz');
        assert.equal((await callbackResponse).status(), 303);
        assert.equal(new URL(alicePage.url()).search, '?from=external');
        assertTokenAnswer(await externalToken(server, alice.token, app.id));
      });
    });

    // ---- 2. refresh --------------------------------------------------------------------
    describe('refresh (access tokens of 30 s)', () => {
      let p;
      let app;
      let previous;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true, accessTokenTtl: 30 });
        app = await directApp(p);
      });

      step('connect', async () => {
        await connectOk(alicePage, app, p);
      });

      step('every token request refreshes with the rotated refresh token', async () => {
        const before = await p.stats();
        assert.equal(before.refresh_grants, 0);
        const tokens = [];
        for (let i = 1; i <= 2; i++) {
          const b = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 30 });
          const stats = await p.stats();
          assert.equal(stats.refresh_grants, i, JSON.stringify(stats));
          assert.equal(stats.token_errors, 0, JSON.stringify(stats));
          assert.equal(stats.last_token_request.path, '/token');
          assert.ok(stats.last_token_request.body_keys.includes('refresh_token'), JSON.stringify(stats.last_token_request));
          assert.ok(!tokens.includes(b.access_token), 'a refresh answered an old access token');
          tokens.push(b.access_token);
          const me = await providerMe(p, b.access_token);
          assert.equal(me.status, 200, JSON.stringify(me.body));
          assert.equal(me.body.user, 'alice');
        }
        // The second refresh succeeded although the provider revoked the first refresh
        // token when it rotated it: Keyward stored the new one.
        previous = tokens.at(-1);
        const c = await server.api('GET', `/api/external-applications/${app.id}/connections`);
        assert.ok(c.body.data[0].last_refreshed_at, JSON.stringify(c.body));
      });

      step('without rotation the old refresh token is kept and a second refresh still works', async () => {
        assert.ok(previous, 'previous step failed');
        await p.control({ rotate_refresh_tokens: false });
        await p.resetStats();
        const first = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 30 });
        const second = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 30 });
        const stats = await p.stats();
        assert.equal(stats.refresh_grants, 2, JSON.stringify(stats));
        assert.equal(stats.token_errors, 0, JSON.stringify(stats));
        assert.notEqual(first.access_token, previous);
        assert.notEqual(second.access_token, first.access_token);
        assert.equal((await providerMe(p, second.access_token)).status, 200);
        assert.equal((await myConnection(alice.token, app.id)).state, 'active');
      });
    });

    // ---- 3. concurrency ----------------------------------------------------------------
    describe('concurrency: one refresh for many requests', () => {
      let p;
      let app;
      let node2;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true, accessTokenTtl: 30 });
        app = await directApp(p);
        if (store === 'postgres') {
          node2 = await startServer(store, { join: server });
          nodes.push(node2);
        }
      });

      async function burst(targets) {
        // Connected with a 30 s token (due for a refresh); the refresh answers a 1 h token,
        // so after it nobody needs another one.
        await p.control({ access_token_ttl: 3600, refresh_delay_ms: 300 });
        await p.resetStats();
        const started = Date.now();
        const answers = await Promise.all(targets.map((node) => externalToken(node, alice.token, app.id)));
        const elapsed = Date.now() - started;
        const stats = await p.stats();
        assert.equal(stats.refresh_grants, 1, `refreshes at the provider for ${targets.length} requests: ${JSON.stringify(stats)}`);
        const tokens = new Set();
        for (const r of answers) tokens.add(assertTokenAnswer(r).access_token);
        assert.equal(tokens.size, 1, `${tokens.size} different access tokens`);
        const [only] = tokens;
        assert.equal((await providerMe(p, only)).status, 200);
        const again = assertTokenAnswer(await externalToken(server, alice.token, app.id));
        assert.equal(again.access_token, only);
        assert.equal((await p.stats()).refresh_grants, 1);
        return elapsed;
      }

      step('50 simultaneous token requests: one refresh, one access token', async (t) => {
        await connectOk(alicePage, app, p);
        const elapsed = await burst(Array.from({ length: 50 }, () => server));
        t.diagnostic(`50 requests with a 300 ms refresh: ${elapsed} ms`);
      });

      if (store === 'postgres') {
        step('two keyward processes on one database, 25 requests each: one refresh', async (t) => {
          assert.ok(node2, 'no second node');
          assert.equal((await fetch(`${node2.base}/healthz`)).status, 200);
          // Due for a refresh again: reconnect while the provider hands out 30 s tokens.
          await p.control({ access_token_ttl: 30, refresh_delay_ms: 0 });
          await connectOk(alicePage, app, p, { expectConnected: true });
          const elapsed = await burst(Array.from({ length: 50 }, (_, i) => (i % 2 ? node2 : server)));
          t.diagnostic(`25 + 25 requests on two nodes with a 300 ms refresh: ${elapsed} ms`);
        });
      }
    });

    // ---- 4. invalid_grant --------------------------------------------------------------
    describe('a refused refresh token: re-authorization', () => {
      let p;
      let app;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true, accessTokenTtl: 30 });
        app = await directApp(p);
      });

      step('invalid_grant → 409 reauthorization_required with authorize_url; needs_reauthorization', async () => {
        await connectOk(alicePage, app, p);
        await p.control({ invalidate_refresh_tokens: true });
        const r = await externalToken(server, alice.token, app.id);
        assertProblem(r, 409, 'reauthorization_required');
        assert.equal(r.body.authorize_url, app.authorize_url);
        assert.equal((await p.stats()).refresh_grants, 1);
        const mine = await myConnection(alice.token, app.id);
        assert.equal(mine?.state, 'needs_reauthorization', JSON.stringify(mine));
        const list = await server.api('GET', `/api/external-applications/${app.id}/connections`);
        assert.equal(list.body.data[0].state, 'needs_reauthorization');
        // Stays refused without asking the provider again.
        assertProblem(await externalToken(server, alice.token, app.id), 409, 'reauthorization_required');
        assertProblem(await proxy(server, alice.token, app.id, `${p.base}/api/me`), 409, 'reauthorization_required');
        assert.equal((await p.stats()).refresh_grants, 1);
      });

      step('reconnecting through the browser makes it work again', async () => {
        await connectOk(alicePage, app, p, { expectConnected: true });
        const b = assertTokenAnswer(await externalToken(server, alice.token, app.id));
        assert.equal((await providerMe(p, b.access_token)).status, 200);
        assert.equal((await myConnection(alice.token, app.id)).state, 'active');
      });
    });

    // ---- 5. lifecycle ------------------------------------------------------------------
    describe('lifecycle: disable, enable, reset, delete', () => {
      let p;
      let app;
      let token;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true });
        app = await directApp(p);
      });

      step('disable: 403 external_application_disabled, and the prompt says disabled', async () => {
        await connectOk(alicePage, app, p);
        token = assertTokenAnswer(await externalToken(server, alice.token, app.id)).access_token;
        const d = await server.api('POST', `/api/external-applications/${app.id}/disable`);
        assert.equal(d.status, 200, describeError(d));
        assert.equal(d.body.enabled, false);
        assertProblem(await externalToken(server, alice.token, app.id), 403, 'external_application_disabled');
        assertProblem(await proxy(server, alice.token, app.id, `${p.base}/api/me`), 403, 'external_application_disabled');
        const response = await alicePage.goto(app.authorize_url, { waitUntil: 'load' });
        assert.equal(response.status(), 403);
        assert.equal((await alicePage.locator('h1').innerText()).trim(), 'Application disabled');
        assert.equal(await alicePage.locator('#continue').count(), 0);
      });

      step('enable: the same token comes back without re-authorizing', async () => {
        assert.ok(token, 'previous step failed');
        const e = await server.api('POST', `/api/external-applications/${app.id}/enable`);
        assert.equal(e.status, 200, describeError(e));
        assert.equal(e.body.enabled, true);
        const b = assertTokenAnswer(await externalToken(server, alice.token, app.id));
        assert.equal(b.access_token, token);
        const stats = await p.stats();
        assert.equal(stats.authorization_code_grants, 1);
        assert.equal(stats.refresh_grants, 0);
      });

      step('reset: tokens revoked at the provider, then 409 not_connected', async () => {
        assert.ok(token, 'previous step failed');
        const before = await p.stats();
        const r = await server.api('POST', `/api/external-applications/${app.id}/reset`);
        assert.equal(r.status, 200, describeError(r));
        assert.equal(r.body.enabled, true);
        const stats = await statsUntil(p, (s) => s.revoked_tokens.includes(token));
        assert.ok(stats.revocations > before.revocations, `revocations ${before.revocations} → ${stats.revocations}`);
        assert.ok(stats.revoked_tokens.includes(token), 'the access token was not revoked');
        assert.equal((await providerMe(p, token)).status, 401, 'the revoked token still works at the provider');
        const t = await externalToken(server, alice.token, app.id);
        assertProblem(t, 409, 'not_connected');
        assert.equal(t.body.authorize_url, app.authorize_url);
        assert.equal(await myConnection(alice.token, app.id), undefined);
        const list = await server.api('GET', `/api/external-applications/${app.id}/connections`);
        assert.deepEqual(list.body.data, []);
        // The configuration is kept.
        const g = await server.api('GET', `/api/external-applications/${app.id}`);
        assert.equal(g.status, 200);
        assert.equal(g.body.name, app.name);
      });

      step('delete: 404 afterwards; the audit log has every external_application.* event', async () => {
        const r = await server.api('DELETE', `/api/external-applications/${app.id}`);
        assert.equal(r.status, 204, describeError(r));
        assert.equal((await server.api('GET', `/api/external-applications/${app.id}`)).status, 404);
        assertProblem(await externalToken(server, alice.token, app.id), 404);
        const audit = await server.api('GET', `/api/audit-logs?target_id=${app.id}&limit=100`);
        assert.equal(audit.status, 200, describeError(audit));
        const events = audit.body.data;
        const actions = events.map((e) => e.action);
        for (const a of ['create', 'disable', 'enable', 'reset', 'delete']) {
          const e = events.find((x) => x.action === `external_application.${a}`);
          assert.ok(e, `no external_application.${a} in ${actions}`);
          assert.equal(e.outcome, 'success', JSON.stringify(e));
          assert.equal(e.actor_id, ADMIN_CLIENT_ID, JSON.stringify(e));
        }
        const connected = await server.api('GET', `/api/audit-logs?action=connection.create&actor_id=${alice.id}&limit=100`);
        assert.equal(connected.status, 200);
        assert.ok(
          connected.body.data.some((e) => e.details?.external_application_id === app.id && e.outcome === 'success'),
          `no connection.create for ${app.id}: ${JSON.stringify(connected.body.data)}`,
        );
      });
    });

    // ---- 6. private mode ---------------------------------------------------------------
    describe('private mode against the quirky server', () => {
      let q;
      let app;

      setUp(async () => {
        q = await provider('quirky');
        const name = `Ledger ${randomToken(4)}`;
        const credentials = { client_id: '{{client_id}}', client_secret: '{{client_secret}}' };
        const r = await server.api('POST', `/api/accounts/${accountId}/external-applications`, {
          name,
          approval_prompt: `Keyward will read your ${name} ledger.`,
          client_id: PROVIDER_CLIENT_ID,
          client_secret: PROVIDER_CLIENT_SECRET,
          scopes: ['read', 'write'],
          mode: 'private',
          authorization_url: `${q.base}/authorize`,
          egress_hosts: [q.hostPort],
          token_request: {
            method: 'POST',
            url: `${q.base}/token`,
            headers: { accept: 'application/json' },
            body_format: 'json',
            body: {
              grant_type: 'authorization_code',
              code: '{{authorization_code}}',
              redirect_uri: '{{redirect_uri}}',
              code_verifier: '{{code_verifier}}',
              ...credentials,
            },
          },
          refresh_request: {
            method: 'POST',
            url: `${q.base}/refresh_token`,
            body_format: 'json',
            body: { grant_type: 'refresh_token', refresh_token: '{{refresh_token}}', ...credentials },
          },
          response_mapping: { access_token: 'access_token', scope: 'scope', refresh_token: 'refresh_token', expires_in: 'expires_in' },
        });
        assert.equal(r.status, 201, `create the private application: ${describeError(r)}`);
        assert.equal(r.body.mode, 'private');
        assert.ok(!JSON.stringify(r.body).includes(PROVIDER_CLIENT_SECRET), 'the client secret came back');
        app = r.body;
      });

      step('connect: the JSON token request at /token', async () => {
        await connectOk(alicePage, app, q);
        const stats = await q.stats();
        assert.equal(stats.authorization_code_grants, 1, JSON.stringify(stats));
        assert.equal(stats.token_errors, 0, JSON.stringify(stats));
        const last = stats.last_token_request;
        assert.equal(last.path, '/token');
        assert.match(last.content_type, /^application\/json/);
        for (const k of ['client_id', 'client_secret', 'code', 'code_verifier', 'grant_type', 'redirect_uri']) {
          assert.ok(last.body_keys.includes(k), `${k} not in ${last.body_keys}`);
        }
      });

      step('the token: scope "read write", a numeric expires_in from the string', async () => {
        const b = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 3600 });
        assert.equal(b.scope, 'read write');
        assert.ok(b.expires_in > 3500, `expires_in ${b.expires_in}`);
        const me = await providerMe(q, b.access_token);
        assert.equal(me.status, 200, JSON.stringify(me.body));
        assert.equal(me.body.user, 'alice');
        assert.equal(me.body.scope, 'read,write');
        assert.equal((await q.stats()).refresh_grants, 0);
        const proxied = await proxy(server, alice.token, app.id, `${q.base}/api/me`);
        assert.equal(proxied.status, 200, describeError(proxied));
        assert.equal(proxied.body.user, 'alice');
      });

      step('forced refreshes: JSON at /refresh_token, the refresh token kept, a second refresh works', async () => {
        await q.control({ access_token_ttl: 30 });
        await connectOk(alicePage, app, q, { expectConnected: true });
        await q.resetStats();
        const seen = [];
        for (let i = 1; i <= 2; i++) {
          const b = assertTokenAnswer(await externalToken(server, alice.token, app.id), { maxExpiresIn: 30 });
          assert.equal(b.scope, 'read write');
          const stats = await q.stats();
          assert.equal(stats.refresh_grants, i, JSON.stringify(stats));
          assert.equal(stats.token_errors, 0, JSON.stringify(stats));
          const last = stats.last_token_request;
          assert.equal(last.path, '/refresh_token');
          assert.match(last.content_type, /^application\/json/);
          assert.deepEqual(last.body_keys, ['client_id', 'client_secret', 'grant_type', 'refresh_token']);
          assert.ok(!seen.includes(b.access_token));
          seen.push(b.access_token);
          assert.equal((await providerMe(q, b.access_token)).status, 200);
        }
      });
    });

    // ---- 7. refusals -------------------------------------------------------------------
    describe('refusals', () => {
      let p;
      let app;
      let aliceToken; // alice's external access token
      let aliceConnection;
      const bob = { username: randomName('bob'), password: PASSWORD };
      bob.email = `${bob.username}@example.test`;
      const carol = { username: randomName('carol'), password: PASSWORD };
      carol.email = `${carol.username}@example.test`;

      setUp(async () => {
        p = await provider('standard', { issuerInResponse: true });
        app = await directApp(p);
        await connectOk(alicePage, app, p);
        const b = assertTokenAnswer(await externalToken(server, alice.token, app.id));
        aliceToken = b.access_token;
        aliceConnection = b.connection_id;
      });

      step("another member cannot delete alice's connection (404) and is not_connected, never given her token", async () => {
        const page = await newPage();
        Object.assign(bob, await signUpForToken(page, bob));
        await addMember(bob.id);
        const del = await call(server, 'DELETE', `/api/me/connections/${aliceConnection}`, { token: bob.token });
        assertProblem(del, 404);
        const t = await externalToken(server, bob.token, app.id);
        assertProblem(t, 409, 'not_connected');
        assert.equal(t.body.authorize_url, app.authorize_url);
        assert.ok(!t.text.includes(aliceToken), "alice's token in bob's answer");
        const px = await proxy(server, bob.token, app.id, `${p.base}/api/me`);
        assertProblem(px, 409, 'not_connected');
        const mine = await call(server, 'GET', '/api/me/connections', { token: bob.token });
        assert.equal(mine.status, 200);
        assert.deepEqual(mine.body, []);
        // Alice's connection is untouched.
        assert.equal(assertTokenAnswer(await externalToken(server, alice.token, app.id)).access_token, aliceToken);
        // And alice can delete it herself (and connect again).
        const own = await call(server, 'DELETE', `/api/me/connections/${aliceConnection}`, { token: alice.token });
        assert.equal(own.status, 204, describeError(own));
        assertProblem(await externalToken(server, alice.token, app.id), 409, 'not_connected');
        assert.ok((await statsUntil(p, (s) => s.revoked_tokens.includes(aliceToken))).revoked_tokens.includes(aliceToken), 'deleting did not revoke');
        await connectOk(alicePage, app, p);
        aliceToken = assertTokenAnswer(await externalToken(server, alice.token, app.id)).access_token;
      });

      step('a user who is not a member of the account gets 404', async () => {
        const page = await newPage();
        Object.assign(carol, await signUpForToken(page, carol));
        assertProblem(await externalToken(server, carol.token, app.id), 404);
        assertProblem(await proxy(server, carol.token, app.id, `${p.base}/api/me`), 404);
        assertProblem(await call(server, 'GET', `/api/external-applications/${app.id}`, { token: carol.token }), 404);
        // The hosted prompt does not exist for her either.
        const response = await page.goto(app.authorize_url, { waitUntil: 'load' });
        assert.equal(response.status(), 404, await pageText(page));
        assert.equal(await page.locator('#continue').count(), 0);
      });

      step('the proxy refuses hosts off the policy, and a redirect to the metadata address', async () => {
        for (const url of [`${server.base}/healthz`, 'http://example.com/', 'http://169.254.169.254/latest/meta-data', `http://localhost:${p.port}/api/me`]) {
          const r = await proxy(server, alice.token, app.id, url);
          assertProblem(r, 403, 'egress_refused');
        }
        const before = await p.stats();
        const r = await proxy(server, alice.token, app.id, `${p.base}/redirect?to=${encodeURIComponent('http://169.254.169.254/latest/meta-data')}`);
        assertProblem(r, 403, 'egress_refused');
        assert.ok(!r.text.includes(aliceToken));
        assert.equal((await p.stats()).refresh_grants, before.refresh_grants);
      });

      step('redirects drop Authorization; the caller\'s own Authorization and cookies never go out', async () => {
        const direct = await proxy(server, alice.token, app.id, `${p.base}/api/headers`, { headers: { cookie: 'kw_session=secret-session', 'x-custom': 'y' } });
        assert.equal(direct.status, 200, describeError(direct));
        assert.equal(direct.body.headers.authorization, `Bearer ${aliceToken}`);
        assert.equal(direct.body.headers.cookie, undefined, `cookie forwarded: ${direct.body.headers.cookie}`);
        assert.ok(!JSON.stringify(direct.body.headers).includes(alice.token), "the caller's Keyward token went out");
        for (const code of [302, 307]) {
          const r = await proxy(server, alice.token, app.id, `${p.base}/redirect?code=${code}&to=${encodeURIComponent(`${p.base}/api/headers`)}`, { headers: { cookie: 'a=b' } });
          assert.equal(r.status, 200, `${code}: ${describeError(r)}`);
          assert.equal(r.body.path, '/api/headers', JSON.stringify(r.body));
          assert.equal(r.body.headers.authorization, undefined, `${code}: authorization after the redirect: ${r.body.headers.authorization}`);
          assert.equal(r.body.headers.cookie, undefined);
        }
      });

      step('managing needs owner/admin or manage_external_applications (granted and revoked)', async () => {
        const body = {
          name: 'Alice CRM',
          approval_prompt: 'Connect',
          client_id: PROVIDER_CLIENT_ID,
          client_secret: PROVIDER_CLIENT_SECRET,
          mode: 'direct',
          authorization_url: `${p.base}/authorize`,
          token_url: `${p.base}/token`,
          egress_hosts: [p.hostPort],
        };
        const createPath = `/api/accounts/${accountId}/external-applications`;
        assertProblem(await call(server, 'POST', createPath, { token: alice.token, body }), 403, 'not_allowed');
        const permission = `/api/accounts/${accountId}/members/${alice.id}/permissions/manage_external_applications`;
        const grant = await server.api('PUT', permission);
        assert.equal(grant.status, 200, describeError(grant));
        assert.ok(grant.body.permissions.includes('manage_external_applications'), JSON.stringify(grant.body));
        const created = await call(server, 'POST', createPath, { token: alice.token, body });
        assert.equal(created.status, 201, describeError(created));
        const conns = await call(server, 'GET', `/api/external-applications/${app.id}/connections`, { token: alice.token });
        assert.equal(conns.status, 200, describeError(conns));
        const revoke = await server.api('DELETE', permission);
        assert.equal(revoke.status, 200, describeError(revoke));
        assert.ok(!revoke.body.permissions.includes('manage_external_applications'));
        assertProblem(await call(server, 'POST', createPath, { token: alice.token, body }), 403, 'not_allowed');
        assertProblem(await call(server, 'DELETE', `/api/external-applications/${created.body.id}`, { token: alice.token }), 403, 'not_allowed');
        // A member does not hand out permissions.
        assertProblem(await call(server, 'PUT', permission, { token: alice.token }), 403);
      });

      step("a user's token for the management API never carries server-wide scopes (invalid_scope)", async () => {
        const created = await server.api('POST', '/api/applications', {
          name: 'Overreaching workflow runner',
          kind: 'web',
          redirect_uris: [callback.url('/callback')],
          grant_types: ['authorization_code', 'refresh_token'],
          grants: [{ resource: `${server.issuer}/api`, scopes: ['users:write', 'connections:use'] }],
          first_party: false,
        });
        assert.equal(created.status, 201, describeError(created));
        const { challenge } = pkcePair();
        const state = randomToken(8);
        const params = new URLSearchParams({
          response_type: 'code',
          client_id: created.body.application.client_id,
          redirect_uri: callback.url('/callback'),
          scope: 'connections:use users:write',
          resource: `${server.issuer}/api`,
          state,
          code_challenge: challenge,
          code_challenge_method: 'S256',
        });
        const r = await fetch(`${server.base}/oauth2/authorize?${params}`, { redirect: 'manual' });
        assert.ok([302, 303].includes(r.status), `authorize: ${r.status} ${await r.text()}`);
        const location = new URL(r.headers.get('location'));
        assert.equal(location.origin + location.pathname, callback.url('/callback'));
        assert.equal(location.searchParams.get('error'), 'invalid_scope', location.toString());
        assert.equal(location.searchParams.get('state'), state);
      });

      step('an authorization response naming another issuer (RFC 9207) is refused', async () => {
        const wrong = await directApp(p, { issuer: 'http://127.0.0.1:1' });
        const before = await p.stats();
        let h1;
        try {
          h1 = await connect(alicePage, wrong, p);
        } catch (e) {
          e.message += `\n(page: ${await pageText(alicePage)})`;
          throw e;
        }
        assert.equal(h1, 'Connection failed', await pageText(alicePage));
        assert.match(await alicePage.locator('body').innerText(), /another authorization server/i);
        assert.equal((await p.stats()).authorization_code_grants, before.authorization_code_grants, 'the code was exchanged');
        assertProblem(await externalToken(server, alice.token, wrong.id), 409, 'not_connected');
      });

      step('denying at the provider connects nothing', async () => {
        const fresh = await directApp(p);
        await alicePage.goto(fresh.authorize_url, { waitUntil: 'load' });
        await clickAndWait(alicePage, alicePage.locator('#continue'), (u) => u.origin === p.base);
        await clickAndWait(alicePage, alicePage.locator('button#deny'), (u) => u.origin === server.base);
        assert.equal((await alicePage.locator('h1').innerText()).trim(), 'Connection failed', await pageText(alicePage));
        assert.match(await alicePage.locator('body').innerText(), /declined/i);
        assertProblem(await externalToken(server, alice.token, fresh.id), 409, 'not_connected');
        // The state was spent: replaying the callback URL is refused too.
        const replay = await alicePage.goto(alicePage.url(), { waitUntil: 'load' });
        assert.equal(replay.status(), 400);
      });
    });
  });
}
