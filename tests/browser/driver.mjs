// A real browser (Debian's Chromium, driven by playwright-core) that takes one JSON command per
// line on stdin and answers one JSON line on stdout, so the Rust end-to-end tests keep the
// assertions. Commands:
//   {"op":"goto","url":U}            navigate; answers the final url, status and page text
//   {"op":"login","user":N,"until":P} fill the provider's login form (and consent), wait for a URL starting with P
//   {"op":"fetch","url":U}           fetch() from the page (a script, not a navigation)
//   {"op":"login_held","user":N,"hold":P}  log in, but stop before the provider sends the browser back
//                                    to the client (a URL starting with P): answers that URL and the
//                                    cookies the browser would have sent with it
//   {"op":"click","selector":S,"until":P}  click and wait for a URL starting with P
//   {"op":"fetch_spoofed","url":U,"headers":H}  fetch() with headers of the page's choosing
//   {"op":"fetch_many","url":U,"count":N}  N parallel fetch() calls; answers their statuses
//   {"op":"cookies"}                 the cookies of this browser
//   {"op":"set_cookie","cookie":C}   add a cookie (name, value, url)
//   {"op":"clear_cookie","name":N}   forget the cookie named N
//   {"op":"navigations"}             the URLs of every top-level request since the last call
//   {"op":"new_context"}             forget everything (another browser)
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/lib/chromium/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let context;
let page;
let navigations = [];
async function fresh() {
  context = await browser.newContext();
  page = await context.newPage();
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navigations.push(r.url());
  });
}
await fresh();

const text = async () => (await page.textContent('body').catch(() => '')) ?? '';
const where = async (extra = {}) => ({ url: page.url(), text: (await text()).slice(0, 4000), ...extra });

async function run(cmd) {
  switch (cmd.op) {
    case 'goto': {
      const response = await page.goto(cmd.url);
      return where({ status: response?.status() });
    }
    case 'login': {
      await page.fill('input[name=login]', cmd.user);
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await page.waitForLoadState();
      // oidc-provider asks for consent when offline_access (a refresh token) is requested.
      if (await page.$('input[name=prompt][value=consent]')) {
        await Promise.all([page.waitForURL((u) => u.href.startsWith(cmd.until)), page.click('button[type=submit]')]);
      } else {
        await page.waitForURL((u) => u.href.startsWith(cmd.until));
      }
      await page.waitForLoadState();
      return where();
    }
    case 'login_held': {
      // The test provider shows the redirect to the client as a link instead of following it
      // when asked to by this header (a redirect is not something a page can stop).
      await context.setExtraHTTPHeaders({ 'x-test-hold-callback': '1' });
      await page.fill('input[name=login]', cmd.user);
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await page.waitForLoadState();
      if (await page.$('input[name=prompt][value=consent]')) {
        await page.click('button[type=submit]');
        await page.waitForLoadState();
      }
      const link = await page.waitForSelector('#callback', { timeout: 20000 });
      const url = await link.getAttribute('href');
      await context.setExtraHTTPHeaders({});
      if (!url.startsWith(cmd.hold)) throw new Error(`held ${url}, not under ${cmd.hold}`);
      return { held: url, cookies: await context.cookies(url) };
    }
    case 'click': {
      await Promise.all([page.waitForURL((u) => u.href.startsWith(cmd.until)), page.click(cmd.selector)]);
      await page.waitForLoadState();
      return where();
    }
    case 'fetch':
      return page.evaluate(async (url) => {
        const r = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
        return { status: r.status, type: r.type, text: await r.text() };
      }, cmd.url);
    case 'fetch_spoofed':
      return page.evaluate(async ({ url, headers }) => {
        const r = await fetch(url, { redirect: 'manual', headers });
        return { status: r.status, text: await r.text() };
      }, { url: cmd.url, headers: cmd.headers });
    case 'fetch_many':
      return page.evaluate(async ({ url, count }) => {
        const all = await Promise.all(Array.from({ length: count }, () => fetch(url, { redirect: 'manual' })));
        return { statuses: all.map((r) => r.status) };
      }, { url: cmd.url, count: cmd.count });
    case 'cookies':
      return { cookies: await context.cookies() };
    case 'clear_cookie':
      await context.clearCookies({ name: cmd.name });
      return {};
    case 'set_cookie':
      await context.addCookies([cmd.cookie]);
      return {};
    case 'navigations': {
      const seen = navigations;
      navigations = [];
      return { urls: seen };
    }
    case 'new_context':
      await context.close();
      navigations = [];
      await fresh();
      return {};
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    answer = { ok: true, ...(await run(JSON.parse(line))) };
  } catch (e) {
    answer = { ok: false, error: String(e), url: page.url() };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await browser.close();
