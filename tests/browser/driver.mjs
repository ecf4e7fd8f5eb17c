// A headless Chromium driven one command at a time, for the Rust browser
// tests (tests/common/browser.rs). Reads JSON commands, one per line, on
// stdin and answers each with one JSON line on stdout:
//   {"cmd":"open","url":…}                      → {"ok":true,"status":200}
//   {"cmd":"waitFor","selector":…,"text"?:…,"timeoutMs"?:…}
//                                               → {"ok":true,"ms":12}
//   {"cmd":"text","selector":…}                 → {"ok":true,"value":"…"}
//   {"cmd":"count","selector":…}                → {"ok":true,"value":2}
//   {"cmd":"visible","selector":…}              → {"ok":true,"value":true}
//   {"cmd":"fill"|"select","selector":…,"value":…}, {"cmd":"click","selector":…}
//   {"cmd":"check","selector":…,"value":true}
//   {"cmd":"url"}                               → {"ok":true,"value":"…"}
//   {"cmd":"screenshot","path":…}
//   {"cmd":"problems"}  → console errors, page errors and CSP violations so far
// A failed command answers {"ok":false,"error":"…"}. The browser is
// Debian's /usr/bin/chromium (scripts/setup.sh installs it); nothing is
// downloaded. Closing stdin closes the browser.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const profile = mkdtempSync(join(tmpdir(), 'mindcache-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1100, height: 640 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] || (await context.newPage());
const problems = [];
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

async function run(c) {
  const timeout = c.timeoutMs ?? 10000;
  switch (c.cmd) {
    case 'open': {
      // Chromium reports what a Content-Security-Policy refused as a
      // console error, which `problems` collects.
      const resp = await page.goto(c.url, { waitUntil: 'load', timeout });
      return { status: resp ? resp.status() : 0 };
    }
    case 'waitFor': {
      const started = Date.now();
      const locator = page.locator(c.selector).first();
      if (c.text === undefined) {
        await locator.waitFor({ state: 'attached', timeout });
      } else {
        await page.waitForFunction(
          ([selector, text]) => [...document.querySelectorAll(selector)].some((n) => n.textContent.includes(text)),
          [c.selector, c.text],
          { timeout, polling: 10 },
        );
      }
      return { ms: Date.now() - started };
    }
    case 'text':
      return { value: await page.locator(c.selector).first().textContent({ timeout }) };
    case 'count':
      return { value: await page.locator(c.selector).count() };
    case 'visible':
      return { value: await page.locator(c.selector).first().isVisible() };
    case 'fill':
      await page.locator(c.selector).first().fill(c.value, { timeout });
      return {};
    case 'select':
      await page.locator(c.selector).first().selectOption(c.value, { timeout });
      return {};
    case 'check':
      await page.locator(c.selector).first().setChecked(Boolean(c.value), { timeout });
      return {};
    case 'click':
      await page.locator(c.selector).first().click({ timeout });
      return {};
    case 'url':
      return { value: page.url() };
    case 'screenshot':
      await page.screenshot({ path: c.path, fullPage: true });
      return {};
    case 'problems':
      return { value: problems.slice() };
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, ...(await run(JSON.parse(line))) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await context.close();
rmSync(profile, { recursive: true, force: true });
