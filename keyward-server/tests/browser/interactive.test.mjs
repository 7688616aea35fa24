// The interactive sign-in / authorization-code flow in a real browser (headless Chromium)
// against a real `keyward serve`, on SQLite and on PostgreSQL, for a confidential `web`
// application and a public `spa` application.
//
//   node --test --test-concurrency=1 interactive.test.mjs
//
// Per store: one server, one API resource, a local callback server standing in for the
// client application. Per application kind: a new user signs up through the hosted pages,
// creates a workspace, consents, and the test then checks the code exchange (PKCE), the
// id_token and access-token claims, userinfo, refresh-token rotation and reuse detection,
// and single use of the code. The web run also covers a returning user (sign-in, workspace
// selection, remembered consent), consent denial, and RP-initiated sign-out.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  REPO_ROOT,
  decodeJwt,
  launchBrowser,
  pkcePair,
  randomName,
  randomToken,
  startCallbackServer,
  startServer,
  tokenRequest,
  verifyJwt,
} from './harness.mjs';

const RESOURCE = 'https://api.example.test';
const SCOPE = 'openid profile email offline_access workspace:admin read:things';
const PASSWORD = 'correct horse battery staple 42';
const HOSTED_PAGES = ['/sign-in', '/sign-up', '/workspace', '/consent'];
const ARTIFACTS = path.join(REPO_ROOT, 'target', 'browser-tests', 'artifacts');

const STORES = (process.env.KEYWARD_BROWSER_STORES || 'sqlite,postgres').split(',').map((s) => s.trim()).filter(Boolean);

let browser;
let failures = 0;

/** `it`, counting failures so that the after hooks can print the server log and keep files. */
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

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

function hasAll(scopeString, names) {
  const got = new Set(String(scopeString || '').split(/\s+/));
  return names.every((n) => got.has(n));
}

function audiences(aud) {
  return Array.isArray(aud) ? aud : [aud];
}

/**
 * Drives the hosted pages from the current page until the browser lands on the callback
 * server. `plan`:
 *   signUp: {username, email, password, name}   (clicks "Create an account" on /sign-in)
 *   signIn: {login, password}
 *   workspace: {create: name} | {select: accountId}
 *   consent: 'allow' | 'deny'
 * Returns the hosted pages visited in order (paths) and the HTML responses seen.
 */
async function drive(page, callback, plan) {
  const visited = [];
  for (let step = 0; step < 12; step++) {
    const url = new URL(page.url());
    if (url.origin === callback.origin) return visited;
    const where = url.pathname;
    visited.push(where);
    if (visited.filter((p) => p === where).length > 2) {
      throw new Error(`stuck on ${where}: ${await pageText(page)}`);
    }
    const interaction = url.searchParams.get('interaction');
    if (HOSTED_PAGES.includes(where)) {
      assert.ok(interaction, `${where} has no interaction parameter: ${url}`);
      // Every hosted-page form carries the CSRF token.
      const forms = await page.locator('form').count();
      assert.ok(forms > 0, `${where} has no form`);
      const tokens = await page.locator('form input[type=hidden][name=csrf_token]').count();
      assert.equal(tokens, forms, `${where}: every form must have a hidden csrf_token`);
    }
    if (where === '/sign-in') {
      if (plan.signUp) {
        const link = page.getByRole('link', { name: /create an account/i });
        const href = await link.getAttribute('href');
        assert.match(href, /\/sign-up\?.*interaction=/, 'the "Create an account" link keeps the interaction');
        await clickAndWait(page, link);
      } else if (plan.signIn) {
        const form = page.locator('form:has(input[name=password])');
        await form.locator('input[name=login]').fill(plan.signIn.login);
        await form.locator('input[name=password]').fill(plan.signIn.password);
        await clickAndWait(page, form.locator('button[type=submit]'));
      } else {
        throw new Error(`unexpected sign-in page: ${await pageText(page)}`);
      }
    } else if (where === '/sign-up') {
      assert.ok(plan.signUp, 'unexpected sign-up page');
      const form = page.locator('form:has(input[name=password])');
      await form.locator('input[name=username]').fill(plan.signUp.username);
      await form.locator('input[name=email]').fill(plan.signUp.email);
      await form.locator('input[name=password]').fill(plan.signUp.password);
      if (plan.signUp.name) await form.locator('input[name=name]').fill(plan.signUp.name);
      await clickAndWait(page, form.locator('button[type=submit]'));
    } else if (where === '/workspace') {
      assert.ok(plan.workspace, 'unexpected workspace page');
      if (plan.workspace.create) {
        await page.locator('input[name=workspace_name]').fill(plan.workspace.create);
        await clickAndWait(page, page.locator('button[name=action][value=create]'));
      } else {
        const radio = page.locator(`input[type=radio][name=account_id][value="${plan.workspace.select}"]`);
        assert.equal(await radio.count(), 1, `workspace ${plan.workspace.select} is not offered: ${await pageText(page)}`);
        await radio.check();
        await clickAndWait(page, page.locator('button[name=action][value=select]'));
      }
    } else if (where === '/consent') {
      assert.ok(plan.consent, 'unexpected consent page');
      await clickAndWait(page, page.locator(`button[name=decision][value=${plan.consent}]`));
    } else {
      throw new Error(`unexpected page ${url}: ${await pageText(page)}`);
    }
  }
  throw new Error(`did not reach the callback; last page ${page.url()}`);
}

async function clickAndWait(page, locator) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 30_000 }), locator.click()]);
}

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

function authorizeUrl(server, app, callback, extra = {}) {
  const { verifier, challenge } = pkcePair();
  const state = randomToken(12);
  const nonce = randomToken(12);
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: app.client_id,
    redirect_uri: callback.url('/callback'),
    scope: SCOPE,
    resource: RESOURCE,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  });
  return { url: `${server.base}/oauth2/authorize?${params}`, state, nonce, verifier };
}

/** Token-endpoint client authentication for the app: Basic for confidential, client_id for public. */
function clientAuth(app) {
  return app.client_secret ? { form: {}, opts: { basic: [app.client_id, app.client_secret] } } : { form: { client_id: app.client_id }, opts: {} };
}

async function exchange(server, app, callback, code, verifier) {
  const auth = clientAuth(app);
  return tokenRequest(
    server,
    { grant_type: 'authorization_code', code, redirect_uri: callback.url('/callback'), code_verifier: verifier, ...auth.form },
    auth.opts,
  );
}

async function refresh(server, app, refreshToken) {
  const auth = clientAuth(app);
  return tokenRequest(server, { grant_type: 'refresh_token', refresh_token: refreshToken, ...auth.form }, auth.opts);
}

for (const store of STORES) {
  describe(`interactive flow on ${store}`, () => {
    let server;
    let callback;
    let jwks;

    let failuresBefore = 0;

    before(async () => {
      failuresBefore = failures;
      server = await startServer(store);
      callback = await startCallbackServer();
      const resource = await server.api('POST', '/api/resources', {
        identifier: RESOURCE,
        name: 'Example API',
        scopes: [{ name: 'read:things' }],
      });
      if (resource.status !== 201) failures += 1;
      jwks = await (await fetch(`${server.base}/.well-known/jwks.json`)).json();
      assert.equal(resource.status, 201, `create resource: ${JSON.stringify(resource.body)}`);
    });

    after(async () => {
      await callback?.close();
      if (server) {
        if (failures > failuresBefore) {
          server.failed = true;
          console.error(`--- server log (${store}, ${server.logPath}) ---\n${server.log().slice(-8000)}`);
        }
        await server.stop();
      }
    });

    step('discovery advertises the authorization-code flow', async () => {
      const r = await fetch(`${server.base}/.well-known/openid-configuration`);
      assert.equal(r.status, 200);
      const d = await r.json();
      assert.equal(d.issuer, server.issuer);
      assert.equal(d.authorization_endpoint, `${server.issuer}/oauth2/authorize`);
      assert.equal(d.token_endpoint, `${server.issuer}/oauth2/token`);
      assert.equal(d.userinfo_endpoint, `${server.issuer}/oauth2/userinfo`);
      assert.ok(d.response_types_supported?.includes('code'), `response_types_supported: ${JSON.stringify(d.response_types_supported)}`);
      assert.ok(d.grant_types_supported?.includes('authorization_code'));
      assert.ok(d.grant_types_supported?.includes('refresh_token'));
      assert.ok(d.code_challenge_methods_supported?.includes('S256'));
      const k = await fetch(d.jwks_uri);
      assert.equal(k.status, 200);
      assert.ok((await k.json()).keys.length > 0);
    });

    step('an unregistered redirect_uri gets an HTML 400 and no redirect', async () => {
      const app = await createApp(server, callback, 'web', 'bad-redirect');
      const { url } = authorizeUrl(server, app, callback, { redirect_uri: 'http://127.0.0.1:9/evil' });
      const r = await fetch(url, { redirect: 'manual' });
      assert.equal(r.status, 400);
      assert.equal(r.headers.get('location'), null);
      assert.match(r.headers.get('content-type') || '', /text\/html/);
      const unknown = await fetch(`${server.base}/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'no-such-client', redirect_uri: callback.url('/callback'), scope: 'openid', state: 's' })}`, { redirect: 'manual' });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.headers.get('location'), null);
    });

    for (const kind of ['web', 'spa']) {
      describe(`${kind} application`, () => {
        let app;
        let context;
        let page;
        const username = randomName(`${kind}user`);
        const user = { username, email: `${username}@example.test`, password: PASSWORD, name: `Test ${kind} User` };
        const workspaceName = `${kind} workspace ${randomToken(4)}`;
        const seen = []; // {url, status, headers} of every response from the server in the browser
        let flow; // {state, nonce, verifier}
        let hit; // the callback request
        let tokens; // the token response
        let idClaims;
        let accessClaims;
        let refreshed;

        before(async () => {
          app = await createApp(server, callback, kind, `${kind}-app`);
          assert.equal(Boolean(app.client_secret), kind === 'web', `${kind} app: client_secret presence`);
          context = await browser.newContext();
          page = await context.newPage();
          page.on('response', async (response) => {
            if (!response.url().startsWith(server.base)) return;
            try {
              seen.push({ url: response.url(), status: response.status(), headers: await response.allHeaders() });
            } catch {
              // the page navigated away
            }
          });
        });

        after(async () => {
          if (page && failures > 0) await screenshot(page, `${store}-${kind}-last`);
          await context?.close();
        });

        step('sign-up, new workspace and consent end on the callback with code, state and iss', async () => {
          flow = authorizeUrl(server, app, callback);
          await page.goto(flow.url, { waitUntil: 'load' });
          let visited;
          try {
            visited = await drive(page, callback, {
              signUp: user,
              workspace: { create: workspaceName },
              consent: 'allow',
            });
          } catch (e) {
            const shot = await screenshot(page, `${store}-${kind}-signup`);
            e.message += `\n(page: ${await pageText(page)}; screenshot: ${shot})`;
            throw e;
          }
          assert.deepEqual(visited, ['/sign-in', '/sign-up', '/workspace', '/consent']);
          hit = callback.last('/callback');
          assert.ok(hit, 'the callback was not called');
          assert.equal(new URL(page.url()).pathname, '/callback');
          assert.equal(hit.query.error, undefined, `error on the callback: ${JSON.stringify(hit.query)}`);
          assert.ok(hit.query.code, 'no code');
          assert.equal(hit.query.state, flow.state);
          assert.equal(hit.query.iss, server.issuer);
          // Referrer-Policy: no-referrer means the client never sees the hosted pages' URLs.
          assert.equal(hit.headers.referer, undefined, `the callback got a Referer: ${hit.headers.referer}`);
        });

        step("hosted pages send CSP frame-ancestors 'none', X-Frame-Options DENY, Referrer-Policy no-referrer; kw_session is HttpOnly, SameSite=Lax", async () => {
          assert.ok(hit, 'previous step failed');
          const pages = seen.filter((r) => r.status === 200 && /text\/html/.test(r.headers['content-type'] || ''));
          const paths = new Set(pages.map((r) => new URL(r.url).pathname));
          for (const p of HOSTED_PAGES) assert.ok(paths.has(p), `no HTML response seen for ${p} (saw ${[...paths]})`);
          for (const r of pages) {
            const where = new URL(r.url).pathname;
            const csp = r.headers['content-security-policy'] || '';
            assert.match(csp, /frame-ancestors 'none'/, `${where}: CSP is "${csp}"`);
            assert.equal((r.headers['x-frame-options'] || '').toUpperCase(), 'DENY', `${where}: X-Frame-Options`);
            assert.equal((r.headers['referrer-policy'] || '').toLowerCase(), 'no-referrer', `${where}: Referrer-Policy`);
          }
          const setCookies = seen
            .flatMap((r) => (r.headers['set-cookie'] || '').split('\n'))
            .filter((c) => /^\s*kw_session=/.test(c));
          assert.ok(setCookies.length > 0, 'no Set-Cookie: kw_session seen');
          for (const c of setCookies) {
            assert.match(c, /;\s*HttpOnly/i, `kw_session cookie without HttpOnly: ${c}`);
            assert.match(c, /;\s*SameSite=Lax/i, `kw_session cookie without SameSite=Lax: ${c}`);
          }
          const cookies = await context.cookies(server.base);
          const session = cookies.find((c) => c.name === 'kw_session');
          assert.ok(session, `no kw_session cookie in the browser (have ${cookies.map((c) => c.name)})`);
          assert.equal(session.httpOnly, true);
          assert.equal(session.sameSite, 'Lax');
          assert.equal(session.secure, false, 'http issuer: the cookie cannot be Secure');
          assert.equal(await page.evaluate(() => document.cookie.includes('kw_session')), false);
        });

        step('the code and the PKCE verifier are exchanged for tokens; id_token nonce, access token acc and role=owner', async () => {
          assert.ok(hit?.query.code, 'previous step failed');
          const r = await exchange(server, app, callback, hit.query.code, flow.verifier);
          assert.equal(r.status, 200, `code exchange: ${JSON.stringify(r.body)}`);
          tokens = r.body;
          assert.equal(String(tokens.token_type).toLowerCase(), 'bearer');
          assert.ok(tokens.expires_in > 0);
          assert.ok(tokens.access_token && tokens.id_token && tokens.refresh_token, `missing tokens: ${Object.keys(tokens)}`);
          assert.ok(hasAll(tokens.scope, ['openid', 'read:things', 'workspace:admin']), `scope ${tokens.scope}`);
          assert.equal(r.headers.get('cache-control'), 'no-store');

          idClaims = verifyJwt(tokens.id_token, jwks);
          assert.equal(idClaims.iss, server.issuer);
          assert.ok(audiences(idClaims.aud).includes(app.client_id), `id_token aud ${JSON.stringify(idClaims.aud)}`);
          assert.equal(idClaims.nonce, flow.nonce);
          assert.ok(idClaims.sub);
          assert.ok(idClaims.exp > Date.now() / 1000);

          accessClaims = verifyJwt(tokens.access_token, jwks);
          assert.equal(decodeJwt(tokens.access_token).header.typ?.toLowerCase(), 'at+jwt');
          assert.equal(accessClaims.iss, server.issuer);
          assert.equal(accessClaims.sub, idClaims.sub);
          assert.equal(accessClaims.client_id, app.client_id);
          assert.ok(audiences(accessClaims.aud).includes(RESOURCE), `access token aud ${JSON.stringify(accessClaims.aud)}`);
          assert.ok(hasAll(accessClaims.scope, ['read:things', 'workspace:admin']), `access token scope ${accessClaims.scope}`);
          assert.equal(typeof accessClaims.acc, 'string', `acc claim: ${JSON.stringify(accessClaims)}`);
          assert.equal(accessClaims.role, 'owner');

          // The workspace exists, has the chosen name, and the user is its owner.
          const account = await server.api('GET', `/api/accounts/${accessClaims.acc}`);
          assert.equal(account.status, 200);
          assert.equal(account.body.name, workspaceName);
          const members = await server.api('GET', `/api/accounts/${accessClaims.acc}/members`);
          assert.equal(members.status, 200);
          assert.ok(
            members.body.data.some((m) => m.user_id === idClaims.sub && m.role === 'owner'),
            `members: ${JSON.stringify(members.body.data)}`,
          );
        });

        step('userinfo answers the signed-up profile (GET and POST)', async () => {
          assert.ok(tokens, 'previous step failed');
          for (const method of ['GET', 'POST']) {
            const r = await fetch(`${server.base}/oauth2/userinfo`, {
              method,
              headers: { authorization: `Bearer ${tokens.access_token}` },
            });
            assert.equal(r.status, 200, `${method} userinfo: ${await r.clone().text()}`);
            const info = await r.json();
            assert.equal(info.sub, idClaims.sub);
            assert.equal(info.preferred_username, user.username);
            assert.equal(info.email, user.email);
            assert.equal(typeof info.email_verified, 'boolean');
            assert.equal(info.name, user.name);
          }
          const anonymous = await fetch(`${server.base}/oauth2/userinfo`);
          assert.equal(anonymous.status, 401);
        });

        step('refresh rotates the refresh token; reusing the old one is invalid_grant and revokes the family', async () => {
          assert.ok(tokens, 'previous step failed');
          const r = await refresh(server, app, tokens.refresh_token);
          assert.equal(r.status, 200, `refresh: ${JSON.stringify(r.body)}`);
          refreshed = r.body;
          assert.ok(refreshed.access_token);
          assert.ok(refreshed.refresh_token, 'no new refresh token');
          assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
          const claims = verifyJwt(refreshed.access_token, jwks);
          assert.equal(claims.sub, idClaims.sub);
          assert.equal(claims.acc, accessClaims.acc);
          assert.equal(claims.role, 'owner');

          const reuse = await refresh(server, app, tokens.refresh_token);
          assert.equal(reuse.status, 400, `reusing the old refresh token: ${reuse.status} ${JSON.stringify(reuse.body)}`);
          assert.equal(reuse.body.error, 'invalid_grant');

          const newest = await refresh(server, app, refreshed.refresh_token);
          assert.equal(newest.status, 400, `the newest refresh token after reuse: ${newest.status} ${JSON.stringify(newest.body)}`);
          assert.equal(newest.body.error, 'invalid_grant');
        });

        step('the authorization code is single-use', async () => {
          assert.ok(tokens, 'previous step failed');
          const again = await exchange(server, app, callback, hit.query.code, flow.verifier);
          assert.equal(again.status, 400, `second exchange of the code: ${again.status} ${JSON.stringify(again.body)}`);
          assert.equal(again.body.error, 'invalid_grant');
        });

        if (kind === 'web') {
          step('a returning user signs in, selects the workspace; consent is remembered', async () => {
            assert.ok(accessClaims?.acc, 'previous step failed');
            const fresh = await browser.newContext();
            try {
              const p = await fresh.newPage();
              const f = authorizeUrl(server, app, callback);
              await p.goto(f.url, { waitUntil: 'load' });
              const visited = await drive(p, callback, {
                signIn: { login: user.username, password: user.password },
                workspace: { select: accessClaims.acc },
              });
              assert.deepEqual(visited, ['/sign-in', '/workspace']);
              const h = callback.last('/callback');
              assert.equal(h.query.state, f.state);
              assert.equal(h.query.iss, server.issuer);
              assert.ok(h.query.code, `callback: ${JSON.stringify(h.query)}`);
              const r = await exchange(server, app, callback, h.query.code, f.verifier);
              assert.equal(r.status, 200, JSON.stringify(r.body));
              const claims = verifyJwt(r.body.access_token, jwks);
              assert.equal(claims.sub, idClaims.sub);
              assert.equal(claims.acc, accessClaims.acc);
              assert.equal(claims.role, 'owner');
              assert.equal(verifyJwt(r.body.id_token, jwks).nonce, f.nonce);
            } finally {
              await fresh.close();
            }
          });

          step('denying consent (prompt=consent) redirects with error=access_denied, state and iss', async () => {
            assert.ok(accessClaims?.acc, 'previous step failed');
            const f = authorizeUrl(server, app, callback, { prompt: 'consent' });
            await page.goto(f.url, { waitUntil: 'load' });
            const visited = await drive(page, callback, { workspace: { select: accessClaims.acc }, consent: 'deny' });
            assert.equal(visited.at(-1), '/consent', `pages: ${visited}`);
            assert.ok(!visited.includes('/sign-in'), `the session was not used: ${visited}`);
            const h = callback.last('/callback');
            assert.equal(h.query.error, 'access_denied', JSON.stringify(h.query));
            assert.equal(h.query.code, undefined);
            assert.equal(h.query.state, f.state);
            assert.equal(h.query.iss, server.issuer);
          });

          step('end-session signs out and returns to the registered post-logout URI; prompt=none then says login_required', async () => {
            assert.ok(tokens?.id_token, 'previous step failed');
            const state = randomToken(8);
            const params = new URLSearchParams({
              id_token_hint: tokens.id_token,
              post_logout_redirect_uri: callback.url('/signed-out'),
              state,
              client_id: app.client_id,
            });
            await page.goto(`${server.base}/oauth2/end-session?${params}`, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/signed-out', `ended on ${await pageText(page)}`);
            assert.equal(callback.last('/signed-out').query.state, state);

            const f = authorizeUrl(server, app, callback, { prompt: 'none' });
            await page.goto(f.url, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/callback', `prompt=none ended on ${await pageText(page)}`);
            const h = callback.last('/callback');
            assert.equal(h.query.error, 'login_required', JSON.stringify(h.query));
            assert.equal(h.query.state, f.state);
            assert.equal(h.query.iss, server.issuer);
          });
        }
      });
    }
  });
}

async function createApp(server, callback, kind, name) {
  const r = await server.api('POST', '/api/applications', {
    name,
    kind,
    redirect_uris: [callback.url('/callback')],
    post_logout_redirect_uris: [callback.url('/signed-out')],
    grant_types: ['authorization_code', 'refresh_token'],
    grants: [{ resource: RESOURCE, scopes: ['read:things'] }],
    first_party: false,
  });
  assert.equal(r.status, 201, `create ${kind} application: ${JSON.stringify(r.body)}`);
  return { id: r.body.application.id, client_id: r.body.application.client_id, client_secret: r.body.client_secret || null };
}
