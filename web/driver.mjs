// A browser for the tests, driven over stdin/stdout: Debian's Chromium through playwright-core
// (never a browser download of its own). One JSON command per line in, one JSON answer per
// line out: {"id": 1, "cmd": "open", ...} -> {"id": 1, "ok": true, "value": ...}.
//
// Each user ("name") gets a browser of its own with a fresh --user-data-dir, so that two users
// share no storage. Every request a page makes is recorded ("requests"), as is every console
// message and page error ("log"), for the test to check and to keep.
//
// Usage: node driver.mjs <profiles dir>
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const CHROMIUM = process.env.HONGYAN_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const profiles = process.argv[2];
const users = new Map(); // name -> {context, page, requests, log}

function user(name) {
    const u = users.get(name);
    if (!u) throw new Error(`no browser for ${name}`);
    return u;
}

const commands = {
    async open({ name, url, ignoreHTTPSErrors = false, width = 1280, height = 800 }) {
        const dir = mkdtempSync(join(profiles, `${name}-`));
        const context = await chromium.launchPersistentContext(dir, {
            executablePath: CHROMIUM, headless: true, args: ARGS, ignoreDefaultArgs: false,
            ignoreHTTPSErrors, viewport: { width, height },
        });
        const page = context.pages()[0] || await context.newPage();
        const u = { context, page, requests: [], log: [] };
        context.on('request', (r) => u.requests.push(r.url()));
        page.on('console', (m) => u.log.push(`${m.type()}: ${m.text()}`));
        page.on('pageerror', (e) => u.log.push(`pageerror: ${e.message}`));
        users.set(name, u);
        const response = await page.goto(url, { waitUntil: 'load' });
        return { status: response ? response.status() : 0,
                 headers: response ? await response.allHeaders() : {} };
    },
    async fill({ name, selector, value, timeout = 15000 }) {
        await user(name).page.locator(selector).first().fill(value, { timeout });
    },
    async click({ name, selector, text = null, timeout = 15000 }) {
        let loc = user(name).page.locator(selector);
        if (text !== null) loc = loc.filter({ hasText: text });
        await loc.first().click({ timeout });
    },
    async press({ name, selector, key, timeout = 15000 }) {
        await user(name).page.locator(selector).first().press(key, { timeout });
    },
    async files({ name, selector, path, timeout = 15000 }) {
        await user(name).page.locator(selector).first().setInputFiles(path, { timeout });
    },
    async wait({ name, selector, text = null, state = 'visible', timeout = 20000 }) {
        let loc = user(name).page.locator(selector);
        if (text !== null) loc = loc.filter({ hasText: text });
        await loc.first().waitFor({ state, timeout });
    },
    async count({ name, selector }) {
        return await user(name).page.locator(selector).count();
    },
    async text({ name, selector }) {
        return await user(name).page.locator(selector).allInnerTexts();
    },
    async eval({ name, expression }) {
        return await user(name).page.evaluate(expression);
    },
    async screenshot({ name, path }) {
        await user(name).page.screenshot({ path, fullPage: false });
    },
    async requests({ name }) {
        return user(name).requests;
    },
    async log({ name }) {
        return user(name).log;
    },
    async close({ name }) {
        const u = users.get(name);
        users.delete(name);
        if (u) await u.context.close();
    },
};

async function quit() {
    for (const name of [...users.keys()]) await commands.close({ name });
    process.exit(0);
}

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
    queue = queue.then(async () => {
        let msg;
        try {
            msg = JSON.parse(line);
        } catch (e) {
            process.stdout.write(JSON.stringify({ id: null, ok: false, error: String(e) }) + '\n');
            return;
        }
        try {
            const fn = commands[msg.cmd];
            if (!fn) throw new Error(`unknown command ${msg.cmd}`);
            const value = await fn(msg);
            process.stdout.write(JSON.stringify({ id: msg.id, ok: true, value }) + '\n');
        } catch (e) {
            process.stdout.write(JSON.stringify({ id: msg.id, ok: false,
                                                  error: String(e && e.stack || e) }) + '\n');
        }
    });
});
lines.on('close', () => { queue.then(quit); });
process.on('SIGTERM', quit);
