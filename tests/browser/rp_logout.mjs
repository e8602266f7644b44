// Real-browser end-to-end scenarios for wasm-oauth2-proxy: Debian's Chromium (headless),
// driven by playwright-core, against Envoy + the filter + idp/server.js + demo/app.js.
// Run by tests/e2e/chromium.rs, which starts that stack; by hand:
//
//   node tests/browser/rp_logout.mjs --app http://127.0.0.1:APP_PORT \
//       --idp http://127.0.0.1:IDP_PORT [--scenario logout|two-tabs|all]
//
// Options (or environment): --app (WOP_APP_URL) the app's base URL through Envoy,
// --idp (WOP_IDP_URL) the IdP's origin, --scenario (WOP_SCENARIO, default all),
// --chromium (WOP_CHROMIUM, default /usr/bin/chromium), --user / --password (john / john).
//
// Scenarios:
//   logout    `/` -> IdP login form -> sign in -> the app greets john@example.com;
//             `/oauth2/sign_out?rd=/signed-out` -> the IdP's logout confirmation
//             (#logout-yes) -> click -> `/signed-out` on the app origin (the stack must
//             let `/signed-out` through without login); `/` again -> the IdP's login
//             form again (the IdP session really ended).
//   two-tabs  two tabs of one browser both start a login (both reach the IdP's login
//             form), then tab 2 signs in, then tab 1; both must end on the app logged in
//             (needs the filter's `cookie_csrf_per_request: true`).
//   pages     on a phone-sized screen (390 x 844): the sign-in page, an error page (a
//             callback without a code) and the 403 page after signing in as --user (one
//             the stack's rules refuse); screenshots into --shots DIR (WOP_SHOTS) and,
//             per page, its status, text, whether its logo loaded and whether it needs
//             sideways scrolling. Not part of `all`.
//
// Prints one JSON line: {"ok":true,...} and exits 0, or {"ok":false,"error":...,
// "screenshot":...,"url":...,"text":...} and exits 1 (2 on bad usage). Everything else
// goes to stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const STEP_TIMEOUT = 15_000;
// Playwright's `launch` starts Chromium with a fresh, empty --user-data-dir of its own
// (a temp dir it removes on close); it refuses one in `args`.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function usage(msg) {
  console.log(JSON.stringify({ ok: false, error: `usage: ${msg}` }));
  console.error(`rp_logout.mjs: ${msg}\n` +
    'usage: node rp_logout.mjs --app http://127.0.0.1:PORT --idp http://127.0.0.1:PORT ' +
    '[--scenario logout|two-tabs|all] [--chromium /usr/bin/chromium]');
  process.exit(2);
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      app: { type: 'string', default: process.env.WOP_APP_URL },
      idp: { type: 'string', default: process.env.WOP_IDP_URL },
      scenario: { type: 'string', default: process.env.WOP_SCENARIO || 'all' },
      chromium: { type: 'string', default: process.env.WOP_CHROMIUM || '/usr/bin/chromium' },
      user: { type: 'string', default: 'john' },
      password: { type: 'string', default: 'john' },
      shots: { type: 'string', default: process.env.WOP_SHOTS },
    },
  }));
} catch (e) {
  usage(e.message);
}
if (!opts.app) usage('--app (or WOP_APP_URL) is required');
if (!opts.idp) usage('--idp (or WOP_IDP_URL) is required');
const APP = new URL(opts.app).origin;
const IDP = new URL(opts.idp).origin;
if (APP === IDP) usage('--app and --idp must be different origins');
const SCENARIOS = opts.scenario === 'all' ? ['logout', 'two-tabs'] : [opts.scenario];
for (const s of SCENARIOS) {
  if (!['logout', 'two-tabs', 'pages'].includes(s)) usage(`unknown scenario ${s}`);
}
if (SCENARIOS.includes('pages') && !opts.shots) usage('--shots DIR is required for pages');
if (!fs.existsSync(opts.chromium)) {
  console.log(JSON.stringify({
    ok: false,
    error: `${opts.chromium} is missing: run \`just setup\` (installs Debian's chromium)`,
  }));
  process.exit(1);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.log(JSON.stringify({
    ok: false,
    error: `cannot load playwright-core (${e.message}): run \`just setup\` ` +
      '(npm ci in tests/browser)',
  }));
  process.exit(1);
}

// ------------------------------------------------------------------ helpers

/** A failed expectation: carries the page to screenshot and to quote. */
class Failure extends Error {
  constructor(message, page) {
    super(message);
    this.page = page;
  }
}

const steps = [];
function step(msg) {
  steps.push(msg);
  console.error(`rp_logout: ${msg}`);
}

/** Main-frame navigations of a page (`status url`), for the failure report. */
const navigations = new Map();
function track(page, name) {
  const list = [];
  navigations.set(name, list);
  page.on('response', (r) => {
    const req = r.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      list.push(`${req.method()} ${r.status()} ${r.url()}`);
    }
  });
  page.on('requestfailed', (req) => {
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      list.push(`${req.method()} FAILED ${req.url()} (${req.failure()?.errorText})`);
    }
  });
  page.wop_name = name;
  return page;
}

/** `url` with query values over 60 characters cut (ID tokens, for the step log). */
function short(url) {
  return url.replace(/=([^&]{60})[^&]+/g, '=$1…');
}

async function pageText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 3000 })).trim();
  } catch {
    try {
      return (await page.content()).slice(0, 4000);
    } catch (e) {
      return `<no text: ${e.message}>`;
    }
  }
}

/** Waits until the page is on `origin` (and `pathname`, when given) and loaded. */
async function waitForPage(page, what, origin, pathname) {
  try {
    await page.waitForURL((u) => u.origin === origin && (!pathname || u.pathname === pathname),
      { timeout: STEP_TIMEOUT, waitUntil: 'load' });
  } catch {
    throw new Failure(`${what}: expected ${origin}${pathname || ''}, ` +
      `the page is at ${page.url()}`, page);
  }
}

/** The IdP's login form is shown: input#login and input#password visible. */
async function expectLoginForm(page, what) {
  await waitForPage(page, what, IDP, null);
  try {
    await page.locator('input#login').waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    await page.locator('input#password').waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  } catch {
    throw new Failure(`${what}: no IdP login form (input#login, input#password) ` +
      `at ${page.url()}`, page);
  }
}

/** The app's greeting (demo/app.js `/`) for the signed-in user. */
async function expectAppHome(page, what) {
  await waitForPage(page, what, APP, '/');
  const text = await pageText(page);
  if (!text.includes(`Hello, ${opts.user}@example.com`)) {
    throw new Failure(`${what}: the app page does not greet ${opts.user}@example.com`, page);
  }
}

/** Goes to `url`; the first response of the chain must not be an error. */
async function visit(page, url, what) {
  let resp;
  try {
    resp = await page.goto(url, { timeout: STEP_TIMEOUT, waitUntil: 'load' });
  } catch (e) {
    throw new Failure(`${what}: GET ${url} failed: ${e.message.split('\n')[0]}`, page);
  }
  step(`${page.wop_name}: GET ${url} -> ${resp?.status()} ${short(page.url())}`);
  return resp;
}

/** Fills and submits the IdP's login form, then waits for the browser to leave the IdP. */
async function signIn(page, what) {
  await page.locator('input#login').fill(opts.user);
  await page.locator('input#password').fill(opts.password);
  const [resp] = await Promise.all([
    page.waitForNavigation({ timeout: STEP_TIMEOUT, waitUntil: 'load' })
      .catch((e) => { throw new Failure(`${what}: no navigation after submitting the ` +
        `login form: ${e.message.split('\n')[0]}`, page); }),
    page.locator('input#password').press('Enter'),
  ]);
  // The POST answers a redirect chain that ends on the app (or an error page anywhere).
  await waitForPage(page, `${what} (after submitting the IdP login form)`, APP, null);
  step(`${page.wop_name}: signed in -> ${resp?.status()} ${page.url()}`);
  return resp;
}

// ------------------------------------------------------------------ scenarios

async function logout(context) {
  const page = track(await context.newPage(), 'tab');

  await visit(page, `${APP}/`, 'logout: first visit');
  await expectLoginForm(page, 'logout: first visit to / must show the IdP login form');
  const resp = await signIn(page, 'logout: sign in');
  await expectAppHome(page, 'logout: after signing in');
  if (resp && resp.status() !== 200) {
    throw new Failure(`logout: the app answered ${resp.status()} after signing in`, page);
  }

  await visit(page, `${APP}/oauth2/sign_out?rd=/signed-out`, 'logout: sign out');
  await waitForPage(page, 'logout: /oauth2/sign_out must lead to the IdP logout page', IDP, null);
  const yes = page.locator('#logout-yes');
  try {
    await yes.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  } catch {
    throw new Failure('logout: the IdP did not show its logout confirmation (#logout-yes) ' +
      `at ${page.url()}`, page);
  }
  step(`tab: IdP logout confirmation at ${page.url().split('?')[0]}`);
  await Promise.all([
    page.waitForURL((u) => u.origin === APP, { timeout: STEP_TIMEOUT, waitUntil: 'load' })
      .catch(() => { throw new Failure('logout: after confirming at the IdP, expected ' +
        `${APP}/signed-out, the page is at ${page.url()}`, page); }),
    yes.click(),
  ]);
  await waitForPage(page, 'logout: after confirming at the IdP', APP, '/signed-out');
  step(`tab: confirmed sign-out -> ${page.url()}`);

  await visit(page, `${APP}/`, 'logout: visit after signing out');
  await expectLoginForm(page, 'logout: / after signing out must show the IdP login form again ' +
    '(the IdP session must have ended)');
  step('tab: / shows the IdP login form again');
  return { final_url: page.url() };
}

async function twoTabs(context) {
  const tab1 = track(await context.newPage(), 'tab1');
  const tab2 = track(await context.newPage(), 'tab2');

  // Both logins start before either is answered.
  await Promise.all([
    visit(tab1, `${APP}/`, 'two-tabs: tab 1 first visit'),
    visit(tab2, `${APP}/`, 'two-tabs: tab 2 first visit'),
  ]);
  await expectLoginForm(tab1, 'two-tabs: tab 1 / must show the IdP login form');
  await expectLoginForm(tab2, 'two-tabs: tab 2 / must show the IdP login form');
  if (tab1.url() === tab2.url()) {
    throw new Failure(`two-tabs: both tabs show the same login interaction ${tab1.url()}`, tab2);
  }

  await tab2.bringToFront();
  await signIn(tab2, 'two-tabs: tab 2 signs in first');
  await expectAppHome(tab2, 'two-tabs: tab 2 after signing in');

  await tab1.bringToFront();
  await signIn(tab1, 'two-tabs: tab 1 signs in second');
  await expectAppHome(tab1, 'two-tabs: tab 1 after signing in');

  // Both tabs share the session: reloading either still shows the app.
  for (const tab of [tab2, tab1]) {
    await visit(tab, `${APP}/`, `two-tabs: ${tab.wop_name} reload`);
    await expectAppHome(tab, `two-tabs: ${tab.wop_name} reload after both logins`);
  }
  // Cookies are per host, not per port: the IdP's are there too.
  const cookies = (await context.cookies(APP)).map((c) => c.name).sort();
  step(`cookies for ${new URL(APP).hostname}: ${cookies.join(', ')}`);
  return { final_urls: [tab1.url(), tab2.url()], host_cookies: cookies };
}

/** What a filter page shows on a phone: status, text, logo, sideways scrolling, screenshot. */
async function capture(page, resp, name) {
  const shot = path.join(opts.shots, `${name}.png`);
  await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
  const facts = await page.evaluate(() => {
    const img = document.querySelector('.logo img');
    return {
      logo_loaded: img ? img.complete && img.naturalWidth > 0 : null,
      overflows: document.documentElement.scrollWidth > window.innerWidth,
      width: window.innerWidth,
    };
  });
  step(`${name}: ${resp?.status()} ${page.url()} -> ${shot}`);
  return { status: resp?.status(), url: page.url(), text: await pageText(page), shot, ...facts };
}

async function pages(context) {
  const page = track(await context.newPage(), 'phone');
  fs.mkdirSync(opts.shots, { recursive: true });
  const out = {};
  let resp = await visit(page, `${APP}/oauth2/sign_in?rd=/`, 'pages: sign-in page');
  out.sign_in = await capture(page, resp, 'sign-in');
  resp = await visit(page, `${APP}/oauth2/callback?state=only`, 'pages: an error page');
  out.error = await capture(page, resp, 'error');

  await visit(page, `${APP}/oauth2/sign_in?rd=/`, 'pages: sign in again');
  const button = page.locator('a.button');
  await Promise.all([
    page.waitForURL((u) => u.origin === IDP, { timeout: STEP_TIMEOUT, waitUntil: 'load' })
      .catch(() => { throw new Failure('pages: the sign-in button must lead to the IdP, ' +
        `the page is at ${page.url()}`, page); }),
    button.click(),
  ]);
  await expectLoginForm(page, 'pages: the sign-in button');
  resp = await signIn(page, 'pages: sign in as a user the rules refuse');
  out.forbidden = await capture(page, resp, 'forbidden');
  return out;
}

// ------------------------------------------------------------------ main

const started = Date.now();
const artifacts = fs.mkdtempSync(path.join(os.tmpdir(), 'wop-browser-'));
let browser;
let current = null;
const results = {};
let exitCode = 0;
try {
  browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  step(`chromium ${browser.version()}`);
  for (const scenario of SCENARIOS) {
    current = scenario;
    // A fresh context per scenario: no cookies from the one before.
    const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
    const context = await browser.newContext(scenario === 'pages' ? phone : {});
    const t0 = Date.now();
    step(`scenario ${scenario}`);
    const run = { logout, 'two-tabs': twoTabs, pages }[scenario];
    results[scenario] = await run(context);
    results[scenario].ms = Date.now() - t0;
    await context.close();
  }
  console.log(JSON.stringify({
    ok: true, scenarios: results, chromium: browser.version(), app: APP, idp: IDP,
    ms: Date.now() - started, steps,
  }));
} catch (e) {
  exitCode = 1;
  const report = {
    ok: false, scenario: current, error: e.message, app: APP, idp: IDP, steps,
  };
  const page = e.page;
  if (page) {
    report.url = page.url();
    report.tab = page.wop_name;
    const shot = path.join(artifacts, `${current}-${page.wop_name}.png`);
    try {
      await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
      report.screenshot = shot;
    } catch (se) {
      report.screenshot_error = se.message;
    }
    report.text = await pageText(page);
  } else {
    report.stack = e.stack;
  }
  report.navigations = Object.fromEntries(navigations);
  console.log(JSON.stringify(report));
  console.error(`rp_logout: FAILED (${current}): ${e.message}` +
    (report.url ? `\n  page: ${report.url}` : '') +
    (report.screenshot ? `\n  screenshot: ${report.screenshot}` : '') +
    (report.text !== undefined ? `\n  page text:\n${report.text.replace(/^/gm, '    ')}` : ''));
} finally {
  if (browser) await browser.close().catch(() => {});
  // Kept only when it holds a failure's screenshot.
  if (fs.readdirSync(artifacts).length === 0) fs.rmSync(artifacts, { recursive: true, force: true });
}
process.exit(exitCode);
