// Browser test of the Deployments page in headless Chromium (playwright-core,
// the system's /usr/bin/chromium). Driven by tests/page.rs, which starts the
// sandbox with its demo environment; this script gets API_URL, PAGE_URL (as
// `make sandbox` prints it), ENV and OUT_DIR (screenshots) and exits
// non-zero on the first failed check.
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(new URL("../../tools/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const { API_URL, PAGE_URL, ENV, OUT_DIR } = process.env;
if (!API_URL || !PAGE_URL || !ENV || !OUT_DIR) throw new Error("API_URL, PAGE_URL, ENV and OUT_DIR are required");
mkdirSync(OUT_DIR, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), "autosky-chromium-"));
// A fresh profile each run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
  viewport: { width: 1280, height: 900 },
  timezoneId: "UTC",
});
try {
  const page = await browser.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
  await page.goto(PAGE_URL);
  await page.waitForFunction((env) => document.getElementById("env").value === env, ENV);
  check(await page.isChecked("input[name=mode][value=optimized]"), "Optimized is the default mode");
  check((await page.textContent(".notice")).includes("Optimized"), "the Optimized notice is shown");
  // Every form control has a label (or an aria-label).
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select")]
    .filter((e) => !e.labels?.length && !e.getAttribute("aria-label")).map((e) => e.id || e.name));
  check(unlabelled.length === 0, `every control is labelled (${unlabelled.join(", ") || "all"})`);

  // --- bad e-mail: inline error next to the field, nothing started
  const rowsBefore = await page.locator("#history tbody tr[data-id]").count();
  await page.fill("#emails", "not-an-address");
  await page.click("#submit");
  await page.click("#confirm-yes");
  await page.waitForFunction(() => document.getElementById("notificationEmails-error").textContent !== "");
  check((await page.textContent("#notificationEmails-error")).includes("not a valid e-mail"), "the API's e-mail error is shown next to the field");
  check(await page.getAttribute("#emails", "aria-invalid") === "true", "the e-mail field is marked invalid");
  check(await page.evaluate(() => document.activeElement.id) === "emails", "focus moves to the field at fault");
  await page.screenshot({ path: join(OUT_DIR, "bad-email.png"), fullPage: true });
  await page.waitForTimeout(300);
  check(await page.locator("#history tbody tr[data-id]").count() === rowsBefore, "nothing was started");

  // --- publish, watch the steps progress, open the details
  await page.fill("#emails", "page@example.com");
  await page.check("#lockInstances");
  await page.click("#submit");
  check(await page.isVisible("#confirm"), "Publish asks for confirmation");
  check((await page.textContent("#confirm-text")).includes(ENV), "the confirmation names the environment");
  await page.click("#confirm-yes");
  await page.waitForSelector("#history tbody tr[data-id]");
  const id = await page.getAttribute("#history tbody tr[data-id]", "data-id");
  const seen = new Set();
  const deadline = Date.now() + 90_000;
  for (;;) {
    const row = page.locator(`#history tbody tr[data-id="${id}"]`);
    const status = await row.getAttribute("data-status");
    seen.add(`${status}:${await row.locator(".steps").innerText()}`);
    if (status !== "Running") break;
    if (Date.now() > deadline) throw new Error("the deployment did not end within 90 s");
    await page.waitForTimeout(150);
  }
  const row = page.locator(`#history tbody tr[data-id="${id}"]`);
  check(await row.getAttribute("data-status") === "Succeeded", "the deployment ends Succeeded without a reload");
  check(seen.size >= 2, `the history refreshed itself while it ran (${seen.size} states seen)`);
  check((await row.locator(".status").innerText()).includes("Succeeded"), "status shown as text (with colour and icon)");
  check(/^v\d+/.test(await row.locator("td").nth(3).innerText()), "the generated version is shown");
  await page.screenshot({ path: join(OUT_DIR, "published.png"), fullPage: true });

  await row.getByRole("button", { name: /Details of deployment/ }).click();
  await page.waitForSelector("#details[open]");
  check(await page.evaluate(() => document.activeElement.id) === "details-close", "focus moves into the details modal");
  const details = await page.innerText("#details");
  for (const want of ["Owner", "local:developer", "Model version", "Start", "End", "Duration", "Create image"]) {
    check(details.includes(want), `details show ${want}`);
  }
  await page.click("#details details[data-step='Create image'] summary");
  check((await page.innerText("#details details[data-step='Create image']")).includes("is available"), "a step expands to its actions");
  await page.screenshot({ path: join(OUT_DIR, "details.png"), fullPage: true });
  await page.keyboard.press("Escape");
  check(!(await page.isVisible("#details")), "Escape closes the modal");

  // --- roll back to the first version once a second one is in service
  const version = (await row.locator("td").nth(3).innerText()).match(/^v(\d+)/)[1];
  const second = await (await fetch(`${API_URL}/environments/${ENV}/deployments`, {
    method: "POST", headers: { "content-type": "application/json" }, body: "{}",
  })).json();
  await page.click("#refresh");
  await page.waitForSelector(`#history tbody tr[data-id="${second.deploymentId}"][data-status=Succeeded]`, { timeout: 90_000 });
  const target = page.locator(`#history tbody tr[data-id="${id}"]`);
  const restore = target.getByRole("button", { name: `Roll back to version ${version} of deployment ${id}` });
  check(await restore.isVisible(), "an earlier Succeeded deployment offers Roll back to this version");
  check((await page.locator(`#history tbody tr[data-id="${second.deploymentId}"]`).innerText()).includes("In service"), "the newest Succeeded deployment is marked In service");
  await restore.click();
  check((await page.textContent("#confirm-text")).includes(`back to version ${version}`), "the rollback confirmation names the version");
  await page.click("#confirm-yes");
  await page.waitForFunction(() => /Rollback \S+ to version/.test(document.getElementById("history-status").textContent));
  const rollbackId = (await page.textContent("#history-status")).split(" ")[1];
  await page.waitForSelector(`#history tbody tr[data-id="${rollbackId}"][data-status=Succeeded]`, { timeout: 90_000 });
  const restored = await page.locator(`#history tbody tr[data-id="${rollbackId}"]`).innerText();
  check(restored.includes(`Rollback to version ${version} — deployment ${id}`) && restored.includes("In service"),
    "the history shows the rollback, in service");
  await page.screenshot({ path: join(OUT_DIR, "rolled-back.png"), fullPage: true });

  // --- schedule, see it in history, cancel it
  await page.check("input[name=mode][value=schedule]");
  check(await page.textContent("#submit") === "Schedule", "the button becomes Schedule");
  const at = new Date(Date.now() + 3 * 3600_000);
  await page.fill("#date", at.toISOString().slice(0, 10));
  await page.fill("#time", at.toISOString().slice(11, 19));
  await page.selectOption("#timezone", "UTC");
  await page.click("#submit");
  await page.click("#confirm-yes");
  await page.waitForSelector("#history tbody tr[data-status=Scheduled]");
  const sched = page.locator("#history tbody tr[data-status=Scheduled]").first();
  check((await sched.innerText()).includes("Scheduled for"), "the scheduled entry shows its time");
  await page.screenshot({ path: join(OUT_DIR, "scheduled.png"), fullPage: true });
  const schedId = await sched.getAttribute("data-id");
  await sched.getByRole("button", { name: /Cancel scheduled deployment/ }).click();
  await page.click("#confirm-yes");
  await page.waitForSelector(`#history tbody tr[data-id="${schedId}"][data-status=Cancelled]`);
  check(true, "cancel turns the scheduled entry Cancelled");
  await page.screenshot({ path: join(OUT_DIR, "cancelled.png"), fullPage: true });

  // --- a viewer: follows the deployments, is offered no action
  const env = await (await fetch(`${API_URL}/environments/${ENV}`)).json();
  const { environmentId, role, ...registration } = env;
  registration.access = { viewers: ["page-viewers"] };
  const put = await fetch(`${API_URL}/environments/${ENV}`, {
    method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(registration),
  });
  check(put.ok, `the environment gets an access map (HTTP ${put.status})`);
  const viewer = await browser.newPage();
  await viewer.setExtraHTTPHeaders({ "x-sandbox-caller": "viewer@example.com", "x-sandbox-groups": "page-viewers" });
  await viewer.goto(PAGE_URL);
  await viewer.waitForSelector(`#history tbody tr[data-id="${id}"]`);
  check(!(await viewer.isVisible("#deploy")), "a viewer sees no deploy form (no Publish button)");
  check((await viewer.textContent("#role-note")).includes("needs the deployer role"), "a viewer is told which role deploying needs");
  check(await viewer.locator("#history button.danger").count() === 0, "a viewer is offered no Cancel");
  check(await viewer.getByRole("button", { name: /Roll back/ }).count() === 0, "a viewer is offered no rollback");
  check(await viewer.locator("#env option").count() === 1, "a viewer lists only the environments it holds a role on");
  await viewer.screenshot({ path: join(OUT_DIR, "viewer.png"), fullPage: true });
  await viewer.close();

  // --- small and offline
  const bytes = await page.evaluate(async () => {
    let n = 0;
    for (const u of ["./", "./app.js", "./app.css"]) n += (await (await fetch(u)).arrayBuffer()).byteLength;
    return n;
  });
  check(bytes > 0 && bytes <= 150 * 1024, `the page weighs ${bytes} bytes (≤ 150 KB)`);
  const foreign = requests.filter((u) => !u.startsWith(API_URL));
  check(foreign.length === 0, `no request leaves the API's origin (${foreign.join(", ") || "none"})`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`screenshots in ${OUT_DIR}`);
