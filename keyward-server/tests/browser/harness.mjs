// Test harness for the browser tests: starts a real `keyward serve` process on a free
// loopback port with a fresh store (a SQLite file in a temp dir, or a new PostgreSQL
// database that is dropped afterwards), a tiny callback server that records what the
// authorization server redirects to it, and small HTTP helpers (admin token, management
// calls, token endpoint, JWT decoding and verification); for the claim test, the reference
// partner (`keyward partner serve`), the CLI (`keyward create-db`) and psql; for the
// external-application test, a second node on the same store (`startServer(store, {join})`)
// and the third-party OAuth 2.0 servers of `tests/interop/providers.py` (`startProvider`).
//
// Environment:
//   KEYWARD_BIN                 the server binary (default: <repo>/target/debug/keyward)
//   KEYWARD_TEST_POSTGRES_URL   maintenance URL for CREATE/DROP DATABASE
//                               (default postgres://postgres@127.0.0.1:5432/postgres)
//   KEYWARD_TEST_KEEP=1         keep temp dirs and logs after the run
//   KEYWARD_INTEROP_PYTHON      python with providers.py's requirements
//                               (default: <repo>/target/interop-venv/bin/python)

import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const KEYWARD_BIN = process.env.KEYWARD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'keyward');
export const PG_ADMIN_URL =
  process.env.KEYWARD_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

export const ADMIN_CLIENT_ID = 'browser-test-admin';

export function randomToken(bytes = 16) {
  return randomBytes(bytes).toString('base64url');
}

export function randomName(prefix) {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

/** A free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** PKCE (RFC 7636): a 43-character verifier and its S256 challenge. */
export function pkcePair() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/** The decoded header and payload of a JWT (no verification). */
export function decodeJwt(jwt) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) throw new Error(`not a JWS compact serialization: ${jwt}`);
  const [header, payload] = parts.slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString('utf8')));
  return { header, payload };
}

/** Verifies a JWT's signature against a JWKS (EdDSA/Ed25519, ES256, RS256). Returns the payload. */
export function verifyJwt(jwt, jwks) {
  const { header, payload } = decodeJwt(jwt);
  const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`no key ${header.kid} in the JWKS`);
  const [h, p, s] = jwt.split('.');
  const data = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(s, 'base64url');
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  let ok;
  switch (header.alg) {
    case 'EdDSA':
      ok = cryptoVerify(null, data, key, signature);
      break;
    case 'ES256':
      ok = cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      break;
    case 'RS256':
      ok = cryptoVerify('sha256', data, key, signature);
      break;
    default:
      throw new Error(`unexpected alg ${header.alg}`);
  }
  if (!ok) throw new Error(`bad signature on a ${header.alg} token (kid ${header.kid})`);
  return payload;
}

function psql(sql) {
  const r = spawnSync('psql', [PG_ADMIN_URL, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { encoding: 'utf8' });
  if (r.error) throw new Error(`psql: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`psql ${sql}: ${r.stderr}`);
  return r.stdout;
}

/** The PostgreSQL URL of a database named `name` on the same server as PG_ADMIN_URL. */
function databaseUrl(name) {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

async function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts `keyward serve` with a fresh store. `store` is 'sqlite' or 'postgres'.
 * Returns a handle with base/issuer, helpers and `stop()`.
 *
 * `join: server` starts another node of `server` instead: the same database, issuer,
 * master secret and bootstrap client on its own port and directory (its `base` is where
 * it listens; `issuer` stays the first node's). Stopping it leaves the database alone.
 */
export async function startServer(store, { env = {}, join = null } = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const scratch = path.join(REPO_ROOT, 'target', 'browser-tests');
  mkdirSync(scratch, { recursive: true });
  const dir = mkdtempSync(path.join(scratch, `${join ? `${store}-node` : store}-`));
  let dbName = null;
  let databaseURL;
  if (join) {
    databaseURL = join.databaseURL;
  } else if (store === 'sqlite') {
    databaseURL = `sqlite://${path.join(dir, 'keyward.db')}`;
  } else if (store === 'postgres') {
    dbName = randomName('kw_test_browser_');
    psql(`CREATE DATABASE ${dbName}`);
    databaseURL = databaseUrl(dbName);
  } else {
    throw new Error(`unknown store ${store}`);
  }
  const adminSecret = join ? join.adminSecret : `kws_${randomToken(32)}`;
  const issuer = join ? join.issuer : base;
  const masterSecret = join ? join.masterSecret : `browser-test-master-${randomToken(24)}`;
  const logPath = path.join(dir, 'server.log');
  const logFd = openSync(logPath, 'a');
  const child = spawn(KEYWARD_BIN, ['serve'], {
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || 'info',
      NO_COLOR: '1',
      KEYWARD_LISTEN: `127.0.0.1:${port}`,
      KEYWARD_ISSUER: issuer,
      KEYWARD_DATA_DIR: dir,
      KEYWARD_DATABASE_URL: databaseURL,
      KEYWARD_MASTER_SECRET: masterSecret,
      KEYWARD_BOOTSTRAP_CLIENT_ID: ADMIN_CLIENT_ID,
      KEYWARD_BOOTSTRAP_CLIENT_SECRET: adminSecret,
      ...(join ? join.env : {}),
      ...env,
    },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  const server = {
    store,
    base,
    issuer,
    dir,
    logPath,
    dbName,
    databaseURL,
    adminSecret,
    masterSecret,
    env: { ...(join ? join.env : {}), ...env },
    child,
    log() {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      if (exited === null) {
        child.kill('SIGTERM');
        for (let i = 0; i < 50 && exited === null; i++) await sleep(100);
        if (exited === null) child.kill('SIGKILL');
      }
      if (dbName) {
        try {
          psql(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        } catch (e) {
          console.error(`could not drop ${dbName}: ${e.message}`);
        }
      }
      if (process.env.KEYWARD_TEST_KEEP !== '1' && !server.failed) rmSync(dir, { recursive: true, force: true });
    },
    failed: false,
  };

  // Wait for /healthz.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) {
      await server.stop();
      throw new Error(`keyward exited during start-up (${JSON.stringify(exited)}):\n${server.log().slice(-4000)}`);
    }
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`no 200 from ${base}/healthz after 60 s:\n${server.log().slice(-4000)}`);
    }
    await sleep(100);
  }

  server.adminToken = async () => {
    const r = await tokenRequest(server, {
      grant_type: 'client_credentials',
      client_id: ADMIN_CLIENT_ID,
      client_secret: adminSecret,
      audience: `${issuer}/api`,
    });
    if (r.status !== 200) throw new Error(`admin token: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.access_token;
  };
  server.api = async (method, p, body, token) => {
    const headers = { authorization: `Bearer ${token || (await server.cachedAdminToken())}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(`${base}${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.status, body: json, headers: r.headers };
  };
  let cached = null;
  server.cachedAdminToken = async () => {
    if (!cached) cached = await server.adminToken();
    return cached;
  };
  return server;
}

/**
 * POST /oauth2/token with a form body. `basic` = [client_id, secret] sends HTTP Basic
 * client authentication (RFC 6749 §2.3.1, form-urlencoded id and secret).
 */
export async function tokenRequest(server, form, { basic } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (basic) {
    const [id, secret] = basic;
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
  }
  const r = await fetch(`${server.base}/oauth2/token`, {
    method: 'POST',
    headers,
    body: new URLSearchParams(form).toString(),
  });
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body, headers: r.headers };
}

/**
 * A local HTTP server standing in for the client application's redirect URI. Every request
 * to /callback is recorded (query and headers) and answered with a small HTML page.
 */
export async function startCallbackServer() {
  const port = await freePort();
  const hits = [];
  const waiters = [];
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    if (url.pathname.startsWith('/callback') || url.pathname.startsWith('/signed-out')) {
      const hit = {
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        at: Date.now(),
      };
      hits.push(hit);
      for (const w of waiters.splice(0)) w(hit);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>callback</title><p id="done">callback received</p>');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  await new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${port}`,
    url(p = '/callback') {
      return `http://127.0.0.1:${port}${p}`;
    },
    hits,
    last(p = '/callback') {
      return [...hits].reverse().find((h) => h.path === p);
    },
    close() {
      return new Promise((resolve) => srv.close(() => resolve()));
    },
  };
}

/** Launches Debian's Chromium headless through playwright-core (no downloaded browser). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * Runs psql against `url` (any PostgreSQL URL, not only PG_ADMIN_URL) with ON_ERROR_STOP,
 * unaligned tuples-only output. Returns {status, stdout, stderr}; never throws on SQL errors.
 */
export function runPsql(url, sql) {
  const r = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`psql: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `keyward <args…>` as a child process. Resolves {code, stdout, stderr}; never rejects on a non-zero exit. */
export function runKeyward(args, { env = {}, timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      KEYWARD_BIN,
      args,
      { env: { ...process.env, NO_COLOR: '1', ...env }, timeout: timeoutMs, maxBuffer: 4 << 20, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`keyward ${args.join(' ')}: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ code: error ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/**
 * Starts the reference partner (`keyward partner serve`) for `server` on `port` (default: a
 * free loopback port; pass one when the application's claim_uri and redirect URI must be
 * registered first), logging to `<server.dir>/partner.log`, and waits for its /healthz.
 * Returns {base, logPath, log(), stop()}.
 */
export async function startPartner(server, { clientId, clientSecret, port, args = [], env = {} }) {
  port = port || (await freePort());
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(server.dir, 'partner.log');
  const logFd = openSync(logPath, 'a');
  const child = spawn(
    KEYWARD_BIN,
    [
      'partner',
      'serve',
      '--listen',
      `127.0.0.1:${port}`,
      '--public-url',
      base,
      '--keyward-url',
      server.issuer,
      '--client-id',
      clientId,
      '--client-secret',
      clientSecret,
      ...args,
    ],
    {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1', ...env },
      stdio: ['ignore', logFd, logFd],
    },
  );
  closeSync(logFd);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const partner = {
    base,
    logPath,
    child,
    log() {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      if (exited !== null) return;
      child.kill('SIGINT'); // the partner shuts down gracefully on Ctrl-C
      for (let i = 0; i < 50 && exited === null; i++) await sleep(100);
      if (exited === null) child.kill('SIGKILL');
      for (let i = 0; i < 20 && exited === null; i++) await sleep(100);
    },
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited !== null) {
      throw new Error(`keyward partner serve exited during start-up (${JSON.stringify(exited)}):\n${partner.log().slice(-4000)}`);
    }
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await partner.stop();
      throw new Error(`no 200 from ${base}/healthz after 30 s:\n${partner.log().slice(-4000)}`);
    }
    await sleep(100);
  }
  return partner;
}

export const INTEROP_DIR = path.join(REPO_ROOT, 'keyward-server', 'tests', 'interop');
export const INTEROP_PYTHON =
  process.env.KEYWARD_INTEROP_PYTHON || path.join(REPO_ROOT, 'target', 'interop-venv', 'bin', 'python');

/**
 * Starts a third-party OAuth 2.0 server from `tests/interop/providers.py` (Authlib) on a
 * free loopback port: `kind` 'standard' or 'quirky'; `issuerInResponse` (RFC 9207 `iss`),
 * `accessTokenTtl` (seconds), `refreshDelayMs`, `args` (more command-line arguments). Its
 * request log goes to `<logDir>/provider-<kind>-<port>.log`. Resolves once it printed
 * `READY <port>`, with {kind, port, base, issuer, hostPort, logPath, log(), stats(),
 * control(body), resetStats(), stop()}.
 */
export async function startProvider(kind, { logDir, issuerInResponse = false, accessTokenTtl, refreshDelayMs, args = [] } = {}) {
  const argv = [path.join(INTEROP_DIR, 'providers.py'), '--kind', kind, '--port', '0'];
  if (issuerInResponse) argv.push('--issuer-in-response');
  if (accessTokenTtl !== undefined) argv.push('--access-token-ttl', String(accessTokenTtl));
  if (refreshDelayMs !== undefined) argv.push('--refresh-delay-ms', String(refreshDelayMs));
  argv.push(...args);
  const dir = logDir || path.join(REPO_ROOT, 'target', 'browser-tests');
  mkdirSync(dir, { recursive: true });
  const logPath = path.join(dir, `provider-${kind}-${randomBytes(3).toString('hex')}.log`);
  const logFd = openSync(logPath, 'a');
  const child = spawn(INTEROP_PYTHON, argv, {
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  let exited = null;
  const exitWaiters = [];
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    for (const w of exitWaiters.splice(0)) w();
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`providers.py --kind ${kind}: no READY line after 30 s:\n${out}\n${readLog()}`));
    }, 30_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /^READY (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${INTEROP_PYTHON} providers.py: ${e.message} (create the venv: scripts/interactive_tests.sh)`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`providers.py --kind ${kind} exited (${code ?? signal}) before READY:\n${out}\n${readLog()}`));
    });
  });
  function readLog() {
    try {
      return readFileSync(logPath, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }
  const base = `http://127.0.0.1:${port}`;
  const json = async (method, p, body) => {
    const r = await fetch(`${base}${p}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const parsed = await r.json();
    if (r.status !== 200) throw new Error(`provider ${method} ${p}: ${r.status} ${JSON.stringify(parsed)}`);
    return parsed;
  };
  return {
    kind,
    port,
    base,
    issuer: base,
    hostPort: `127.0.0.1:${port}`,
    logPath,
    child,
    log: readLog,
    stats: () => json('GET', '/stats'),
    control: (body) => json('POST', '/control', body),
    resetStats: () => json('POST', '/reset-stats', {}),
    async stop() {
      if (exited !== null) return;
      const done = new Promise((r) => exitWaiters.push(r));
      child.kill('SIGTERM');
      await Promise.race([done, sleep(3000)]);
      if (exited === null) {
        child.kill('SIGKILL');
        await Promise.race([done, sleep(2000)]);
      }
    },
  };
}
