// Browser scenarios for tether's web UI, in headless Chromium through playwright-core.
// Started by tests/integration/ui_browser.rs with a live `tether serve`; reads:
//   PLAYWRIGHT   the playwright-core module to import
//   CHROMIUM     the Chromium executable
//   BASE         the server's address (http://127.0.0.1:PORT)
//   ALICE, BOB   approver tokens (alice may also run), VERA a viewer token
//   WORKFLOW     a refund workflow: amounts above 100 wait at gate `refund`, which
//                relaxes after 3 decisions with at most half overridden
//   SHOTS        where to save screenshots
// Prints one line per scenario passed; exits 1 with the failure otherwise.
const { chromium } = await import(process.env.PLAYWRIGHT);
const { BASE, ALICE, BOB, VERA, WORKFLOW, SHOTS } = process.env;

const fail = (what) => { throw new Error(what); };
const api = async (token, method, path, body) => {
  const r = await fetch(BASE + path, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
};
const start = async (amount, reason) => {
  const r = await api(ALICE, 'POST', '/v1/runs', { workflow: WORKFLOW, input: { order_id: 'A-1', amount, reason } });
  if (r.status !== 201) fail(`start: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.run_id;
};
const status = async (run) => (await api(VERA, 'GET', `/v1/runs/${run}`)).body.status;
const until = async (what, check, ms = 30000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await check()) return; await new Promise((r) => setTimeout(r, 100)); }
  fail(`timed out: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const shot = async (page, name) => {
  for (const [w, h, tag] of [[1280, 900, 'desktop'], [390, 844, 'phone']]) {
    await page.setViewportSize({ width: w, height: h });
    await page.screenshot({ path: `${SHOTS}/${name}-${tag}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
};
const login = async (token, { keyboard = false } = {}) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => fail(`a dialog opened: ${d.message()}`));
  await page.goto(BASE + '/ui/runs');
  if (!page.url().includes('/ui/login')) fail(`not sent to log in: ${page.url()}`);
  if (keyboard) {
    // The token field takes the focus by itself (once the page has loaded); Enter sends
    // the form.
    await page.waitForFunction(() => document.activeElement?.id === 'token', null, { timeout: 10000 });
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
  } else {
    await page.fill('#token', token);
    await page.click('button[type=submit]');
  }
  await page.waitForURL((url) => url.pathname === '/ui/runs');
  await page.waitForLoadState('load');
  return page;
};

try {
  // Log in; the runs page.
  const alice = await login(ALICE);
  if (!(await alice.isVisible('text=Log out'))) fail('no logout button after logging in');
  await shot(alice, 'login-runs');
  console.log('ok: logged in with a token');

  // A refund that waits; approved from the inbox by clicking; the run page follows it live.
  const approved = await start(500, 'arrived damaged');
  await until('the run waits', async () => (await status(approved)) === 'waiting');
  await alice.goto(`${BASE}/ui/runs/${approved}`);
  if (!(await alice.isVisible('.summary .status.waiting'))) fail('the run page does not show it waiting');
  const runPage = await alice.context().newPage();
  await runPage.goto(`${BASE}/ui/runs/${approved}`);
  await alice.goto(BASE + '/ui/inbox');
  await shot(alice, 'inbox');
  const card = alice.locator('article.request', { hasText: approved });
  await card.locator('input[name=comment]').fill('photos checked');
  await card.locator('button.approve').click();
  await alice.waitForURL('**/ui/inbox?notice=*');
  if (!(await alice.isVisible('.notice'))) fail('no notice after approving');
  // The page opened before the decision turns to completed by itself.
  await runPage.waitForSelector('.summary .status.completed', { timeout: 30000 });
  await shot(runPage, 'run');
  console.log('ok: approved from the inbox; the run page showed it complete');

  // A reject with a comment.
  const rejected = await start(700, 'not eligible');
  await until('the second run waits', async () => (await status(rejected)) === 'waiting');
  await alice.goto(BASE + '/ui/inbox');
  const second = alice.locator('article.request', { hasText: rejected });
  await second.locator('input[name=comment]').fill('outside the return window');
  await second.locator('button.reject').click();
  await alice.waitForURL('**/ui/inbox?notice=*');
  await until('the rejected run ends', async () => !['waiting', 'running'].includes(await status(rejected)));
  const events = (await api(VERA, 'GET', `/v1/runs/${rejected}/events?limit=1000`)).body.events;
  const decided = events.find((e) => e.type === 'approval_decided');
  if (decided.by !== 'alice' || decided.decision !== 'reject' || decided.comment !== 'outside the return window') {
    fail(`the reject was journaled as ${JSON.stringify(decided)}`);
  }
  console.log('ok: rejected with a comment');

  // A third decision (by Bob, over the API) meets the relax rule: the gates page says so.
  const third = await start(300, 'late');
  await until('the third run waits', async () => (await status(third)) === 'waiting');
  const id = encodeURIComponent(`${third}:assess@step_result`);
  const d = await api(BOB, 'POST', `/v1/approvals/${id}/decision`, { decision: 'approve' });
  if (d.status !== 200) fail(`bob's decision: ${d.status} ${JSON.stringify(d.body)}`);
  await alice.goto(BASE + '/ui/gates');
  const gate = alice.locator('article.gate', { hasText: 'refund' });
  await gate.locator('.status.completed', { hasText: 'relaxed' }).waitFor({ timeout: 10000 });
  if ((await gate.locator('svg.trend polyline').count()) !== 1) fail('no override-rate chart on the gates page');
  await shot(alice, 'gates');
  const auto = await start(400, 'same again');
  await until('the relaxed gate approves by itself', async () => (await status(auto)) === 'completed');
  console.log('ok: the gate relaxed after its record met the rule');

  // A reviewer finds the automatic approval wrong and overrides it from the gates page:
  // the gate is re-armed, and people decide again.
  await alice.goto(BASE + '/ui/gates');
  const item = alice.locator('ul.automatic li', { hasText: auto });
  await item.locator('input[name=comment]').fill('should have been checked');
  await item.locator('button.danger').click();
  await alice.waitForURL('**/ui/gates');
  await alice.locator('ul.automatic li', { hasText: auto }).locator('.status.failed', { hasText: 'overridden' }).waitFor();
  const regate = alice.locator('article.gate', { hasText: 'refund' }).first();
  if ((await regate.locator('.status.completed', { hasText: 'relaxed' }).count()) !== 0) fail('the gate is still relaxed after an override');
  const overrides = (await api(VERA, 'GET', `/v1/runs/${auto}/events?limit=1000`)).body.events.filter((e) => e.type === 'approval_overridden');
  if (overrides.length !== 1 || overrides[0].by !== 'alice') fail(`the override was journaled as ${JSON.stringify(overrides)}`);
  console.log('ok: an automatic approval overridden from the gates page re-armed the gate');

  // A guest's markup is shown as text, never run.
  const hostile = await start(50, '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">');
  await until('the hostile run completes', async () => (await status(hostile)) === 'completed');
  await alice.goto(`${BASE}/ui/runs/${hostile}`);
  if (await alice.evaluate(() => window.__pwned !== undefined)) fail('markup from the input ran');
  if (!(await alice.isVisible('text=<script>window.__pwned = 1</script>'))) fail('the markup is not shown as text');
  await shot(alice, 'run-with-markup');
  await alice.goto(BASE + '/ui/stats?period=all');
  if ((await alice.locator('svg.bars').count()) < 1) fail('no charts on the stats page');
  await shot(alice, 'stats');
  console.log('ok: markup shown as text');

  // A viewer sees no decide buttons, and a forged decision is refused.
  // (The refund gate has relaxed; a payment above 1000 still needs two people.)
  const waiting = await start(2000, 'pending');
  await until('a run waits for the viewer', async () => (await status(waiting)) === 'waiting');
  const vera = await login(VERA, { keyboard: true });
  // The navigation is reachable by keyboard: Tab from the top reaches the inbox link.
  let reached = false;
  for (let i = 0; i < 6 && !reached; i++) {
    await vera.keyboard.press('Tab');
    reached = await vera.evaluate(() => document.activeElement?.getAttribute('href') === '/ui/inbox');
  }
  if (!reached) fail(`the inbox link is not reachable with Tab (focus: ${await vera.evaluate(() => document.activeElement?.outerHTML.slice(0, 80))})`);
  await vera.keyboard.press('Enter');
  await vera.waitForURL('**/ui/inbox');
  await vera.goto(BASE + '/ui/inbox');
  if (!(await vera.isVisible(`text=${waiting}`))) fail('the viewer does not see the request');
  if ((await vera.locator('button.approve').count()) !== 0) fail('a viewer is offered an approve button');
  const csrf = await vera.getAttribute('form.logout input[name=csrf]', 'value');
  const pending = (await api(VERA, 'GET', '/v1/approvals')).body.approvals.find((a) => a.run_id === waiting);
  const forged = await vera.request.post(BASE + '/ui/decide', {
    form: { csrf, id: pending.id, decision: 'approve' }, maxRedirects: 0,
  });
  if (forged.status() !== 403) fail(`a viewer's forged decision answered ${forged.status()}`);
  if ((await status(waiting)) !== 'waiting') fail('the forged decision changed the run');
  await shot(vera, 'inbox-viewer');
  console.log('ok: a viewer cannot decide');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await browser.close();
  process.exit(1);
}
