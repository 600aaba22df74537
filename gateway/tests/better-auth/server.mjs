// A real Better Auth server for the gateway's revocation test, configured the way the README
// tells a frontend to: the JWT plugin with `sid` in the payload, and hooks that post every ended
// session (and every "revoke all sessions") to the gateway's admin API, server side.
//
// Environment: GATEWAY_ADMIN_URL (e.g. http://127.0.0.1:9090), GATEWAY_ADMIN_TOKEN.
// Listens on 127.0.0.1 on a free port and prints `listening <port>` once it serves.

import { createServer } from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { createAuthMiddleware, getSessionFromCtx } from "better-auth/api";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const adminUrl = process.env.GATEWAY_ADMIN_URL;
const adminToken = process.env.GATEWAY_ADMIN_TOKEN;
if (!adminUrl || !adminToken) {
  console.error("GATEWAY_ADMIN_URL and GATEWAY_ADMIN_TOKEN are required");
  process.exit(2);
}

// Tells the gateway; a failure is logged, never fails the user's sign-out.
async function revoke(body) {
  try {
    const res = await fetch(`${adminUrl}/revocations`, {
      method: "POST",
      headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) console.error(`gateway refused revocation: ${res.status} ${await res.text()}`);
  } catch (err) {
    console.error(`gateway unreachable for revocation: ${err}`);
  }
}

const server = createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const auth = betterAuth({
  baseURL,
  secret: "better-auth-harness-secret-0123456789abcdef",
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  plugins: [
    // The session id, never session.token (a live credential).
    jwt({ jwt: { definePayload: ({ user, session }) => ({ ...user, sid: session.id }) } }),
  ],
  databaseHooks: {
    session: {
      // Sign-out, session revocation, password reset: every session deleted from the database.
      delete: { after: async (session) => revoke({ sid: session.id }) },
    },
  },
  hooks: {
    // Sessions kept only in secondaryStorage are deleted without the database hook: remember the
    // session before /sign-out runs and post it afterwards.
    before: createAuthMiddleware(async (ctx) => {
      if (ctx.path === "/sign-out") await getSessionFromCtx(ctx);
    }),
    after: createAuthMiddleware(async (ctx) => {
      const session = ctx.context.session;
      if (ctx.path === "/sign-out" && session) await revoke({ sid: session.session.id });
      // "Sign out everywhere" (and a ban): every token of the user issued before now.
      if (ctx.path === "/revoke-sessions" && session) {
        await revoke({ sub: session.user.id });
      }
    }),
  },
});

server.on("request", toNodeHandler(auth));
console.log(`listening ${server.address().port}`);
