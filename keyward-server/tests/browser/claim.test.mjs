// The `npx create-db` experience end to end, through the real binary and a real browser
// (headless Chromium), on SQLite and on PostgreSQL:
//
//   node --test --test-concurrency=1 claim.test.mjs
//
// Per store: `keyward serve` with the local PostgreSQL as region `local`
// (KEYWARD_LOCAL_REGION_URL), a partner account and partner application made through the
// management API, and the reference partner `keyward partner serve` on a free port. Then:
// `keyward create-db` (JSON, --env file, human output, `regions`); psql writes to the new
// database with the printed connection string; a new user opens the claim URL in the
// browser, signs up, creates a workspace, allows the claim on the consent page and lands
// on the partner's success page; the audit log records the transfer into that workspace,
// the partner loses sight of the project, the claim link is spent; psql reads the row back
// with the same connection string. The databases and roles are dropped at the end.
//
// PostgreSQL is needed on both stores (it hosts the provisioned databases).

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  PG_ADMIN_URL,
  REPO_ROOT,
  freePort,
  launchBrowser,
  randomName,
  randomToken,
  runKeyward,
  runPsql,
  startPartner,
  startServer,
  tokenRequest,
} from './harness.mjs';

const PASSWORD = 'correct horse battery staple 42';
const PARTNER_NAME = 'Partner Inc';
const HOSTED_PAGES = ['/sign-in', '/sign-up', '/workspace', '/consent'];
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

async function clickAndWait(page, locator) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 30_000 }), locator.click()]);
  return response;
}

/** Database name and role of a connection string `postgres://user:pass@host:port/db?…`. */
function parseConnectionString(cs) {
  const u = new URL(cs);
  assert.match(u.protocol, /^postgres(ql)?:$/, `not a PostgreSQL URL: ${cs}`);
  return {
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')),
    host: u.hostname,
    port: u.port,
  };
}

/** The `KEY="value"` line create-db writes (backslash and double quote escaped). */
function envLine(key, value) {
  return `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function quoteIdent(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

for (const store of STORES) {
  describe(`create-db and claim on ${store}`, () => {
    let server;
    let partner;
    let partnerAccount; // {id, name}
    let app; // {client_id, client_secret}
    let created; // the JSON create-db printed
    let envFile;
    const dropLater = []; // connection strings of the databases this run created
    const user = (() => {
      const username = randomName('claimer');
      return { username, email: `${username}@example.test`, password: PASSWORD, name: 'Claim Tester' };
    })();
    const workspaceName = `Claimer's workspace ${randomToken(4)}`;
    const tableName = `claim_check_${randomToken(4).replace(/[^A-Za-z0-9]/g, 'x').toLowerCase()}`;
    const rowText = `written before the claim ${randomToken(6)}`;
    let context;
    let page;
    let successText; // the partner's success page
    let failuresBefore = 0;

    const integrationToken = async () => {
      const r = await tokenRequest(
        server,
        { grant_type: 'client_credentials', audience: `${server.issuer}/v1` },
        { basic: [app.client_id, app.client_secret] },
      );
      assert.equal(r.status, 200, `integration token: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.access_token;
    };
    const v1 = async (method, p, token) => {
      const r = await fetch(`${server.base}${p}`, { method, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
      const text = await r.text();
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      return { status: r.status, body };
    };
    const createDb = (...args) => runKeyward(['create-db', '--partner-url', partner.base, ...args]);

    before(async () => {
      failuresBefore = failures;
      try {
        server = await startServer(store, { env: { KEYWARD_LOCAL_REGION_URL: PG_ADMIN_URL } });
        const account = await server.api('POST', '/api/accounts', { name: `${PARTNER_NAME} ${randomToken(4)}` });
        assert.equal(account.status, 201, `create the partner account: ${account.status} ${JSON.stringify(account.body)}`);
        partnerAccount = account.body;
        // The application needs the partner's URLs (claim_uri, redirect URI) and the partner
        // needs the application's credentials: pick the partner's port first.
        const port = await freePort();
        const partnerBase = `http://127.0.0.1:${port}`;
        const r = await server.api('POST', '/api/applications', {
          name: PARTNER_NAME,
          kind: 'web',
          partner: true,
          account_id: partnerAccount.id,
          claim_uri: `${partnerBase}/claim`,
          redirect_uris: [`${partnerBase}/claim/callback`],
          grants: [{ resource: `${server.issuer}/v1`, scopes: ['projects:read', 'projects:write'] }],
        });
        assert.equal(r.status, 201, `create the partner application: ${r.status} ${JSON.stringify(r.body)}`);
        app = { client_id: r.body.application.client_id, client_secret: r.body.client_secret };
        assert.ok(app.client_secret, `no client_secret: ${JSON.stringify(r.body)}`);
        partner = await startPartner(server, { clientId: app.client_id, clientSecret: app.client_secret, port });
        assert.equal(partner.base, partnerBase);
        envFile = path.join(server.dir, 'app.env');
        // An existing file without a final newline: create-db appends on a new line.
        writeFileSync(envFile, 'EXISTING=1');
        context = await browser.newContext();
        page = await context.newPage();
      } catch (e) {
        failures += 1;
        throw e;
      }
    });

    after(async () => {
      const failed = failures > failuresBefore;
      if (page && failed) {
        const shot = await screenshot(page, `claim-${store}-last`);
        if (shot) console.error(`screenshot: ${shot}`);
      }
      await context?.close();
      if (partner) await partner.stop();
      if (server && failed) {
        server.failed = true;
        console.error(`--- server log (${store}, ${server.logPath}) ---\n${server.log().slice(-8000)}`);
        if (partner) console.error(`--- partner log (${store}, ${partner.logPath}) ---\n${partner.log().slice(-6000)}`);
      }
      // The provisioned databases live on PG_ADMIN_URL's server, outside the store.
      for (const cs of dropLater) {
        const { database, user: role } = parseConnectionString(cs);
        for (const sql of [`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`, `DROP ROLE IF EXISTS ${quoteIdent(role)}`]) {
          const r = runPsql(PG_ADMIN_URL, sql);
          if (r.status !== 0) console.error(`cleanup: ${sql}: ${r.stderr}`);
        }
      }
      await server?.stop();
    });

    step('keyward create-db --json --ttl 1h --env prints the new database and appends DATABASE_URL and CLAIM_URL', async () => {
      const started = Date.now();
      const r = await createDb('--json', '--ttl', '1h', '--env', envFile);
      assert.equal(r.code, 0, `create-db exited ${r.code}: ${r.stderr}\n${r.stdout}`);
      created = JSON.parse(r.stdout);
      for (const field of ['projectId', 'projectName', 'databaseId', 'region', 'regionName', 'connectionString', 'claimUrl', 'expiresAt', 'workspace', 'workspaceId']) {
        assert.equal(typeof created[field], 'string', `${field} in ${r.stdout}`);
        assert.ok(created[field].length > 0, `${field} is empty`);
      }
      dropLater.push(created.connectionString);
      assert.equal(created.region, 'local');
      assert.equal(created.workspaceId, partnerAccount.id, 'the project starts in the partner account');
      assert.equal(created.workspace, partnerAccount.name);
      const expires = Date.parse(created.expiresAt);
      assert.ok(Math.abs(expires - (started + 3600_000)) < 120_000, `expiresAt ${created.expiresAt} is not about 1 h from now`);
      const claim = new URL(created.claimUrl);
      assert.equal(claim.origin, partner.base);
      assert.equal(claim.pathname, '/claim');
      assert.ok(claim.searchParams.get('token'), `claim URL without token: ${created.claimUrl}`);
      const db = parseConnectionString(created.connectionString);
      assert.ok(db.user && db.password && db.database, `connection string parts: ${JSON.stringify({ ...db, password: '…' })}`);

      const env = readFileSync(envFile, 'utf8');
      assert.equal(env, `EXISTING=1\n${envLine('DATABASE_URL', created.connectionString)}\n${envLine('CLAIM_URL', created.claimUrl)}\n`);
    });

    step('keyward create-db regions lists local; the human output shows connection string, claim URL and deletion time', async () => {
      const regions = await createDb('regions');
      assert.equal(regions.code, 0, `create-db regions exited ${regions.code}: ${regions.stderr}`);
      assert.match(regions.stdout, /^local\s+\S+\s+Local PostgreSQL$/m, `regions:\n${regions.stdout}`);
      const regionsJson = await createDb('regions', '--json');
      assert.equal(regionsJson.code, 0, regionsJson.stderr);
      assert.ok(JSON.parse(regionsJson.stdout).some((r) => r.id === 'local'), regionsJson.stdout);

      const human = await createDb('--ttl', '30m');
      assert.equal(human.code, 0, `create-db exited ${human.code}: ${human.stderr}\n${human.stdout}`);
      const cs = human.stdout.match(/^\s+(postgres(?:ql)?:\/\/\S+)\s*$/m)?.[1];
      assert.ok(cs, `no connection string in:\n${human.stdout}`);
      dropLater.push(cs);
      const claimUrl = human.stdout.match(/^\s+(http:\/\/\S+\/claim\?token=\S+)\s*$/m)?.[1];
      assert.ok(claimUrl?.startsWith(`${partner.base}/claim?token=`), `no claim URL in:\n${human.stdout}`);
      assert.match(human.stdout, /Connection string:/);
      assert.match(human.stdout, /Unless claimed, it is deleted at \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (30|29) minutes\)/, human.stdout);
      assert.notEqual(cs, created.connectionString);
      assert.notEqual(claimUrl, created.claimUrl);
    });

    step('psql connects with the printed connection string, creates a table and inserts a row', async () => {
      assert.ok(created, 'previous step failed');
      const r = runPsql(
        created.connectionString,
        `CREATE TABLE ${tableName} (id int PRIMARY KEY, note text NOT NULL); INSERT INTO ${tableName} VALUES (1, '${rowText}'); SELECT current_user, current_database();`,
      );
      assert.equal(r.status, 0, `psql: ${r.stderr}`);
      const db = parseConnectionString(created.connectionString);
      assert.equal(r.stdout.trim(), `${db.user}|${db.database}`);
    });

    step('before the claim the partner sees the project in its workspace', async () => {
      assert.ok(created, 'previous step failed');
      const r = await v1('GET', `/v1/projects/${encodeURIComponent(created.projectId)}`, await integrationToken());
      assert.equal(r.status, 200, `GET /v1/projects/{id}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.data.id, created.projectId);
      assert.equal(r.body.data.workspace?.id, partnerAccount.id, JSON.stringify(r.body.data));
    });

    step('in the browser: claim page, Claim, sign-up, new workspace, consent, the partner says the project is in the workspace', async () => {
      assert.ok(created, 'previous step failed');
      const visited = [];
      try {
        const first = await page.goto(created.claimUrl, { waitUntil: 'load' });
        assert.equal(first.status(), 200, await pageText(page));
        const claimText = await page.locator('body').innerText();
        assert.ok(claimText.includes(created.projectName), `the claim page does not name ${created.projectName}:\n${claimText}`);
        assert.ok(claimText.includes(PARTNER_NAME), `the claim page does not name ${PARTNER_NAME}:\n${claimText}`);
        await clickAndWait(page, page.getByRole('button', { name: 'Claim' }));

        for (let n = 0; n < 10; n++) {
          const url = new URL(page.url());
          if (url.origin === partner.base) break;
          assert.equal(url.origin, server.base, `left both servers: ${url}`);
          const where = url.pathname;
          visited.push(where);
          assert.ok(HOSTED_PAGES.includes(where), `unexpected page ${await pageText(page)}`);
          assert.ok(visited.filter((p) => p === where).length < 2, `stuck on ${await pageText(page)}`);
          if (where === '/sign-in') {
            const link = page.getByRole('link', { name: /create an account/i });
            await clickAndWait(page, link);
          } else if (where === '/sign-up') {
            const form = page.locator('form:has(input[name=password])');
            await form.locator('input[name=username]').fill(user.username);
            await form.locator('input[name=email]').fill(user.email);
            await form.locator('input[name=password]').fill(user.password);
            if ((await form.locator('input[name=name]').count()) > 0) await form.locator('input[name=name]').fill(user.name);
            await clickAndWait(page, form.locator('button[type=submit]'));
          } else if (where === '/workspace') {
            await page.locator('input[name=workspace_name]').fill(workspaceName);
            await clickAndWait(page, page.locator('button[name=action][value=create]'));
          } else if (where === '/consent') {
            const consentText = await page.locator('body').innerText();
            assert.ok(consentText.includes(created.projectName), `the consent page does not mention ${created.projectName}:\n${consentText}`);
            assert.ok(consentText.includes(workspaceName), `the consent page does not name the workspace ${workspaceName}:\n${consentText}`);
            const response = await clickAndWait(page, page.locator('button[name=decision][value=allow]'));
            assert.equal(response?.status(), 200, `after consent: ${await pageText(page)}`);
          }
        }
        assert.deepEqual(visited, ['/sign-in', '/sign-up', '/workspace', '/consent']);
        const end = new URL(page.url());
        assert.equal(end.origin, partner.base, `did not come back to the partner: ${await pageText(page)}`);
        assert.equal(end.pathname, '/claim/callback');
        successText = await page.locator('body').innerText();
        assert.match(successText, /Project claimed/, successText);
        assert.ok(
          successText.includes(`${created.projectName} is now in your workspace ${workspaceName}.`),
          `the success page does not name the project and the workspace:\n${successText}`,
        );
      } catch (e) {
        const shot = await screenshot(page, `claim-${store}-flow`);
        e.message += `\n(pages: ${visited.join(' → ')}; page: ${await pageText(page)}; screenshot: ${shot})`;
        throw e;
      }
    });

    step("the audit log records the transfer into the browser user's new workspace", async () => {
      assert.ok(successText, 'previous step failed');
      const r = await server.api('GET', `/api/audit-logs?action=project.transfer&target_id=${encodeURIComponent(created.projectId)}`);
      assert.equal(r.status, 200, `audit logs: ${r.status} ${JSON.stringify(r.body)}`);
      const events = (r.body.data || []).filter((e) => e.action === 'project.transfer' && e.target_id === created.projectId);
      const ok = events.filter((e) => e.outcome === 'success');
      assert.equal(ok.length, 1, `successful project.transfer events for ${created.projectId}: ${JSON.stringify(r.body.data, null, 1)}`);
      const event = ok[0];
      const to = event.details?.to_account_id;
      assert.ok(to, `no details.to_account_id: ${JSON.stringify(event)}`);
      assert.notEqual(to, partnerAccount.id);
      const account = await server.api('GET', `/api/accounts/${encodeURIComponent(to)}`);
      assert.equal(account.status, 200, `GET /api/accounts/${to}: ${JSON.stringify(account.body)}`);
      assert.equal(account.body.name, workspaceName);
      assert.ok(event.details?.recipient_user_id, `no details.recipient_user_id: ${JSON.stringify(event)}`);
      const member = await server.api('GET', `/api/accounts/${encodeURIComponent(to)}/members`);
      assert.equal(member.status, 200, JSON.stringify(member.body));
      assert.ok(
        member.body.data.some((m) => m.user_id === event.details.recipient_user_id && m.role === 'owner'),
        `the recipient is not the owner of ${to}: ${JSON.stringify(member.body.data)}`,
      );
    });

    step('the partner no longer sees the project (404) and the claim link is spent', async () => {
      assert.ok(successText, 'previous step failed');
      const r = await v1('GET', `/v1/projects/${encodeURIComponent(created.projectId)}`, await integrationToken());
      assert.equal(r.status, 404, `GET /v1/projects/{id} after the claim: ${r.status} ${JSON.stringify(r.body)}`);
      // The unclaimed project of the human-output run is still the partner's.
      const list = await v1('GET', '/v1/projects', await integrationToken());
      assert.equal(list.status, 200, `GET /v1/projects: ${list.status} ${JSON.stringify(list.body)}`);
      const ids = (list.body.data || []).map((p) => p.id);
      assert.ok(!ids.includes(created.projectId), `the claimed project is still listed: ${ids}`);
      assert.equal(ids.length, 1, `the partner's projects: ${ids}`);

      const again = await page.goto(created.claimUrl, { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.equal(again.status(), 404, `opening the claim URL again: ${again.status()}\n${text}`);
      assert.match(text, /Claim link not found/, text);
      assert.equal(await page.getByRole('button', { name: 'Claim' }).count(), 0, 'a spent claim link still offers the Claim button');
    });

    step('the same connection string still works after the transfer and reads the row back', async () => {
      assert.ok(successText, 'previous step failed');
      const r = runPsql(created.connectionString, `SELECT id, note FROM ${tableName} ORDER BY id`);
      assert.equal(r.status, 0, `psql: ${r.stderr}`);
      assert.equal(r.stdout.trim(), `1|${rowText}`);
    });
  });
}
