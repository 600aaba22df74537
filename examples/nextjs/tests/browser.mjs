// The browser suite: the real task service (SQLite in a temporary directory), the real gateway
// (verifying this app's JWKS) and this app (`next start`, after `next build`), each on a free
// loopback port, driven by Debian's Chromium through playwright-core. One user's whole day, from
// sign-up to sign-out, then a second user who must see none of it.
//
// Run it with deploy/local/browser-test.sh, which builds everything first. Settings:
// GATEWAY_BIN, TASK_SERVICE_BIN (default ../../target/debug/…), CHROMIUM (/usr/bin/chromium),
// BROWSER_TEST_ARTIFACTS (where screenshots and logs go; a new temporary directory by default).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const appDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repoDir = resolve(appDir, "../..");
const gatewayBin = process.env.GATEWAY_BIN ?? join(repoDir, "target/debug/gateway");
const taskServiceBin = process.env.TASK_SERVICE_BIN ?? join(repoDir, "target/debug/task-service");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.BROWSER_TEST_ARTIFACTS ?? mkdtempSync(join(tmpdir(), "browser-test-"));
mkdirSync(artifacts, { recursive: true });

const SUITE_TIMEOUT_MS = 5 * 60_000;
const START_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// The system under test

const children = [];

/** A port nothing listens on now (the OS picks it; we release it for the service to bind). */
function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Starts a service with its output in `<artifacts>/<name>.log`. */
function start(name, command, args, { env, cwd }) {
  const logPath = join(artifacts, `${name}.log`);
  const log = openSync(logPath, "a");
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", log, log] });
  child.logPath = logPath;
  child.serviceName = name;
  children.push(child);
  return child;
}

function stopAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  }
}

/** Polls `url` until it answers 2xx; fails early when the service exited. */
async function waitUntilUp(child, url) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${child.serviceName} exited at start (code ${child.exitCode}); see ${child.logPath}`);
    try {
      const reply = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (reply.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${child.serviceName} did not answer ${url} within ${START_TIMEOUT_MS / 1000} s; see ${child.logPath}`);
}

function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

const secret = () => randomBytes(32).toString("hex");

async function startSystem() {
  const work = mkdtempSync(join(tmpdir(), "browser-test-data-"));
  const [taskPort, appPort, gatewayPort, adminPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const system = {
    appUrl: `http://localhost:${appPort}`,
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    adminToken: secret(),
  };
  const signingSecret = secret();
  const quiet = { LOG_FORMAT: "plain", RUST_LOG: process.env.RUST_LOG ?? "info" };

  const taskService = start("task-service", taskServiceBin, [], {
    cwd: work,
    env: {
      ...quiet,
      TASK_SERVICE_LISTEN: `127.0.0.1:${taskPort}`,
      DATABASE_URL: `sqlite://${join(work, "tasks.db")}`,
      GATEWAY_SIGNING_SECRET: signingSecret,
    },
  });
  const app = start("app", process.execPath, [join(appDir, "node_modules/next/dist/bin/next"), "start", "-H", "127.0.0.1", "-p", String(appPort)], {
    cwd: appDir,
    env: {
      NODE_ENV: "production",
      NEXT_TELEMETRY_DISABLED: "1",
      BETTER_AUTH_URL: system.appUrl,
      BETTER_AUTH_SECRET: secret(),
      AUTH_DATABASE_PATH: join(work, "auth.db"),
      GATEWAY_URL: system.gatewayUrl,
      GATEWAY_ADMIN_URL: system.adminUrl,
      GATEWAY_ADMIN_TOKEN: system.adminToken,
    },
  });
  await waitUntilUp(taskService, `http://127.0.0.1:${taskPort}/healthz`);
  // The gateway loads the app's keys before it reports ready, so the app comes first.
  await waitUntilUp(app, `http://127.0.0.1:${appPort}/api/auth/jwks`);
  const gateway = start("gateway", gatewayBin, [], {
    cwd: work,
    env: {
      ...quiet,
      BETTER_AUTH_URL: system.appUrl,
      CORS_ALLOWED_ORIGINS: system.appUrl,
      GATEWAY_SIGNING_SECRET: signingSecret,
      GATEWAY_ADMIN_TOKEN: system.adminToken,
      GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
      GATEWAY_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GATEWAY_UPGRADE_SOCK: join(work, "upgrade.sock"),
      TASK_SERVICE_URL: `http://127.0.0.1:${taskPort}`,
    },
  });
  await waitUntilUp(gateway, `${system.adminUrl}/readyz`);
  return system;
}

// ---------------------------------------------------------------------------------------------
// Steps and checks

let currentPage = null;

/** Runs one step; a step that cannot run here returns `{ skipped: why }` and says so. */
async function step(name, body) {
  const started = Date.now();
  const outcome = await body();
  if (outcome?.skipped) console.log(`  SKIPPED ${name}: ${outcome.skipped}`);
  else console.log(`  ok   ${name} (${Date.now() - started} ms)`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Retries `probe` until it returns `expected` (compared as JSON), for up to a step's timeout. */
async function until(description, probe, expected) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let last;
  for (;;) {
    last = await probe();
    if (JSON.stringify(last) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) {
      throw new Error(`${description}: expected ${JSON.stringify(expected)}, still ${JSON.stringify(last)}`);
    }
    await sleep(100);
  }
}

/** The page of one signed-in (or signing-in) user. */
class TaskPage {
  constructor(page, system) {
    this.page = page;
    this.system = system;
    this.list = page.getByRole("list", { name: "Tasks" });
  }

  label(name) {
    return this.page.getByLabel(name, { exact: true });
  }

  button(name) {
    return this.page.getByRole("button", { name, exact: true });
  }

  async signUp(name, email, password) {
    await this.page.goto(`${this.system.appUrl}/sign-up`);
    await this.label("Name").fill(name);
    await this.label("Email").fill(email);
    await this.label("Password").fill(password);
    await this.button("Sign up").click();
    await this.page.getByRole("heading", { name: "Tasks", exact: true }).waitFor();
  }

  async signIn(email, password) {
    await this.page.goto(`${this.system.appUrl}/sign-in`);
    await this.label("Email").fill(email);
    await this.label("Password").fill(password);
    await this.button("Sign in").click();
    await this.page.getByRole("heading", { name: "Tasks", exact: true }).waitFor();
  }

  /** The titles in the list, top to bottom (each task's checkbox is named by its title). */
  titles() {
    return this.list.getByRole("checkbox").evaluateAll((boxes) => boxes.map((box) => box.getAttribute("aria-label")));
  }

  async count() {
    return (await this.page.locator(".count").textContent())?.trim();
  }

  async expectTitles(description, titles) {
    await until(description, () => this.titles(), titles);
    await until(`${description} (count)`, () => this.count(), `${titles.length} tasks`);
  }

  async addTask({ title, description = "", priority, due }) {
    const form = this.page.getByRole("region", { name: "New task" });
    await form.getByLabel("Title", { exact: true }).fill(title);
    await form.getByLabel("Description", { exact: true }).fill(description);
    await form.getByLabel("Priority", { exact: true }).selectOption({ label: priority });
    await form.getByLabel("Due date", { exact: true }).fill(due);
    await form.getByRole("button", { name: "Add task", exact: true }).click();
  }

  item(title) {
    return this.list.getByRole("listitem").filter({ has: this.page.getByRole("checkbox", { name: title, exact: true }) });
  }

  /** Asks Better Auth for a token, as `api()` does, from inside the page. */
  token() {
    return this.page.evaluate(async () => {
      const reply = await fetch("/api/auth/token");
      return (await reply.json()).token;
    });
  }

  /** A cross-origin request to the gateway from the app's page: what the app's JS can read. */
  fetchFromPage(path, { method = "GET", token, body } = {}) {
    return this.page.evaluate(
      async ({ url, method, token, body }) => {
        const headers = { "Content-Type": "application/json" };
        if (token) headers.Authorization = `Bearer ${token}`;
        const reply = await fetch(url, { method, headers, body });
        const text = await reply.text();
        return {
          status: reply.status,
          location: reply.headers.get("Location"),
          total: reply.headers.get("X-Total-Count"),
          body: text ? JSON.parse(text) : null,
        };
      },
      { url: `${this.system.gatewayUrl}${path}`, method, token, body },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The scenario

async function firstUsersDay(browser, system) {
  const context = await browser.newContext();
  const page = await context.newPage();
  currentPage = page;
  const alice = new TaskPage(page, system);
  const email = `alice-${Date.now()}@example.com`;
  let userId;

  await step("sign up", async () => {
    await alice.signUp("Alice", email, "correct horse battery");
    await alice.expectTitles("a new user has no tasks", []);
    userId = await page.evaluate(async () => (await (await fetch("/api/auth/get-session")).json()).user.id);
  });

  await step("add three tasks with different priorities and due dates", async () => {
    await alice.addTask({ title: "Buy milk", description: "Two litres", priority: "High", due: "2027-03-03" });
    await alice.expectTitles("after the first task", ["Buy milk"]);
    await alice.addTask({ title: "Write report", priority: "Medium", due: "2027-03-10" });
    await alice.expectTitles("after the second task", ["Write report", "Buy milk"]);
    await alice.addTask({ title: "Call plumber", priority: "Low", due: "2027-03-05" });
    await alice.expectTitles("newest first by default", ["Call plumber", "Write report", "Buy milk"]);
    const milk = alice.item("Buy milk");
    await until("the description and due date are shown", async () => (await milk.textContent())?.includes("Two litres") && (await milk.textContent())?.includes("2027-03-03"), true);
  });

  await step("an API error is shown from its detail", async () => {
    // Blank after trimming: the browser's `required` lets it through, the task service refuses it.
    await alice.addTask({ title: "   ", priority: "Low", due: "" });
    // Next.js has an (empty) alert of its own, the route announcer: look for ours by its text.
    await page.getByRole("alert").filter({ hasText: /title/i }).waitFor();
    await alice.expectTitles("nothing was added", ["Call plumber", "Write report", "Buy milk"]);
  });

  await step("sort", async () => {
    await alice.label("Sort by").selectOption({ label: "Priority" });
    await alice.expectTitles("by priority, highest first", ["Buy milk", "Write report", "Call plumber"]);
    await alice.label("Sort by").selectOption({ label: "Due date" });
    await alice.label("Order").selectOption({ label: "Ascending" });
    await alice.expectTitles("by due date, soonest first", ["Buy milk", "Call plumber", "Write report"]);
    await alice.label("Sort by").selectOption({ label: "Title" });
    await alice.expectTitles("by title", ["Buy milk", "Call plumber", "Write report"]);
  });

  await step("toggle complete and filter by status", async () => {
    await page.getByRole("checkbox", { name: "Buy milk", exact: true }).click();
    await until("Buy milk is checked", () => page.getByRole("checkbox", { name: "Buy milk", exact: true }).isChecked(), true);
    await alice.label("Status").selectOption({ label: "Completed" });
    await alice.expectTitles("completed only", ["Buy milk"]);
    await alice.label("Status").selectOption({ label: "Pending" });
    await alice.expectTitles("pending only", ["Call plumber", "Write report"]);
    await alice.label("Status").selectOption({ label: "All" });
    await alice.expectTitles("all again", ["Buy milk", "Call plumber", "Write report"]);
  });

  await step("search", async () => {
    await alice.label("Search").fill("report");
    await alice.expectTitles("searching for 'report'", ["Write report"]);
    await alice.label("Search").fill("litres");
    await alice.expectTitles("the search covers descriptions", ["Buy milk"]);
    await alice.label("Search").fill("");
    await alice.expectTitles("search cleared", ["Buy milk", "Call plumber", "Write report"]);
  });

  await step("edit", async () => {
    const item = alice.item("Call plumber");
    await item.getByRole("button", { name: "Edit", exact: true }).click();
    const form = alice.list.getByRole("listitem").filter({ has: page.getByRole("button", { name: "Save", exact: true }) });
    await form.getByLabel("Title", { exact: true }).fill("Call the plumber");
    await form.getByLabel("Priority", { exact: true }).selectOption({ label: "High" });
    await form.getByRole("button", { name: "Save", exact: true }).click();
    await alice.expectTitles("the new title, in title order", ["Buy milk", "Call the plumber", "Write report"]);
    await until("the new priority is shown", async () => (await alice.item("Call the plumber").textContent())?.includes("high"), true);
  });

  await step("delete", async () => {
    await alice.item("Write report").getByRole("button", { name: "Delete", exact: true }).click();
    await alice.expectTitles("Write report is gone", ["Buy milk", "Call the plumber"]);
  });

  await step("reload: the tasks are still there", async () => {
    await page.reload();
    await alice.expectTitles("after a reload (default order: newest first)", ["Call the plumber", "Buy milk"]);
    check(await page.getByRole("checkbox", { name: "Buy milk", exact: true }).isChecked(), "Buy milk is still completed");
    await page.screenshot({ path: join(artifacts, "task-page.png"), fullPage: true });
  });

  let token;
  await step("every gateway reply is readable by the app's JavaScript (CORS)", async () => {
    token = await alice.token();
    const tasks = `/api/${userId}/tasks`;
    const created = await alice.fetchFromPage(tasks, { method: "POST", token, body: JSON.stringify({ title: "Via fetch" }) });
    check(created.status === 201, `create: ${JSON.stringify(created)}`);
    check(created.location === `${tasks}/${created.body.id}`, `Location readable: ${created.location}`);
    const listed = await alice.fetchFromPage(`${tasks}?limit=1`, { token });
    check(listed.status === 200 && listed.total === "3" && listed.body.length === 1, `X-Total-Count readable: ${JSON.stringify(listed)}`);
    const deleted = await alice.fetchFromPage(`${tasks}/${created.body.id}`, { method: "DELETE", token });
    check(deleted.status === 204, `delete: ${deleted.status}`);
    const anonymous = await alice.fetchFromPage(tasks);
    check(anonymous.status === 401 && anonymous.body.detail === "Not authenticated", `401 detail readable: ${JSON.stringify(anonymous)}`);
    const someoneElse = await alice.fetchFromPage("/api/someone-else/tasks", { token });
    check(someoneElse.status === 403 && typeof someoneElse.body.detail === "string", `403 detail readable: ${JSON.stringify(someoneElse)}`);
    const invalid = await alice.fetchFromPage(tasks, { method: "POST", token, body: JSON.stringify({ title: "" }) });
    check(invalid.status === 422 && Array.isArray(invalid.body.detail) && invalid.body.detail[0].loc.includes("title"), `422 detail readable: ${JSON.stringify(invalid)}`);
  });

  await step("sign out", async () => {
    await alice.button("Sign out").click();
    await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
    await page.goto(`${system.appUrl}/tasks`);
    await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
  });

  await step("the token taken before sign-out is refused by the gateway within a second", async () => {
    const deadline = Date.now() + 1000;
    let reply;
    for (;;) {
      reply = await fetch(`${system.gatewayUrl}/api/${userId}/tasks`, { headers: { Authorization: `Bearer ${token}` } });
      if (reply.status === 401 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    check(reply.status === 401, `the old token still works after sign-out: ${reply.status}`);
    const challenge = reply.headers.get("WWW-Authenticate") ?? "";
    check(challenge.includes("revoked"), `the refusal says the token was revoked: ${challenge}`);
  });

  await context.close();
  return { email, userId };
}

async function secondUserSeesNothing(browser, system, alice) {
  const context = await browser.newContext();
  const page = await context.newPage();
  currentPage = page;
  const bob = new TaskPage(page, system);

  await step("a second user sees none of the first user's tasks", async () => {
    await bob.signUp("Bob", `bob-${Date.now()}@example.com`, "another long password");
    await bob.expectTitles("Bob's list is empty", []);
    await bob.addTask({ title: "Bob's own task", priority: "Medium", due: "" });
    await bob.expectTitles("Bob sees only his task", ["Bob's own task"]);
    const token = await bob.token();
    const peek = await bob.fetchFromPage(`/api/${alice.userId}/tasks`, { token });
    check(peek.status === 403, `Bob reading Alice's tasks: ${JSON.stringify(peek)}`);
  });

  await step("the first user signs in again and finds her tasks, and only hers", async () => {
    await context.clearCookies();
    await bob.signIn(alice.email, "correct horse battery");
    await bob.expectTitles("Alice's tasks", ["Call the plumber", "Buy milk"]);
  });

  await context.close();
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const watchdog = setTimeout(() => {
    console.error(`browser suite: timed out after ${SUITE_TIMEOUT_MS / 1000} s`);
    stopAll();
    process.exit(1);
  }, SUITE_TIMEOUT_MS);

  let browser;
  try {
    const system = await startSystem();
    console.log(`browser suite: app ${system.appUrl}, gateway ${system.gatewayUrl}, logs and screenshots in ${artifacts}`);
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
    const alice = await firstUsersDay(browser, system);
    await secondUserSeesNothing(browser, system, alice);
    console.log(`browser suite: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    console.error(`  FAIL ${error.message}`);
    if (currentPage) {
      const shot = join(artifacts, "failure.png");
      await currentPage.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.error(`screenshot of the failing page: ${shot}`);
    }
    for (const child of children) {
      const lines = readFileSync(child.logPath, "utf8").trimEnd().split("\n").slice(-15).join("\n    ");
      console.error(`last lines of ${child.logPath}:\n    ${lines}`);
    }
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    await browser?.close().catch(() => {});
    stopAll();
  }
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopAll();
    process.exit(1);
  });
}
process.on("exit", stopAll);

await main();
