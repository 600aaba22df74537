// The Better Auth server: email and password accounts in this app's own SQLite file, and the JWT
// plugin, whose tokens (EdDSA, 15 minutes) the gateway verifies against `/api/auth/jwks`.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { createAuthMiddleware, getSessionFromCtx } from "better-auth/api";
import { nextCookies } from "better-auth/next-js";
import { jwt } from "better-auth/plugins";

import { serverConfig } from "./config";
import { revokeSession } from "./revocation";

// The session a `/sign-out` request is ending, noted before the handler deletes it.
const endingSessions = new WeakMap<Request, string>();

function createAuth() {
  const config = serverConfig();
  mkdirSync(dirname(config.databasePath), { recursive: true });
  return betterAuth({
    baseURL: config.authUrl,
    database: new Database(config.databasePath),
    emailAndPassword: { enabled: true, autoSignIn: true },
    telemetry: { enabled: false },
    plugins: [
      jwt({
        jwt: {
          // The session id lets the gateway refuse this session's tokens after sign-out. Never
          // put `session.token` here: it is a live credential.
          definePayload: ({ user, session }) => ({
            id: user.id,
            email: user.email,
            name: user.name,
            sid: session.id,
          }),
        },
      }),
      // Lets server actions set cookies; keep it last.
      nextCookies(),
    ],
    databaseHooks: {
      session: {
        delete: {
          // Sign-out, session revocation and password reset all end up here.
          after: async (session, ctx) => {
            await revokeSession(session.id);
            if (ctx?.request) endingSessions.delete(ctx.request);
          },
        },
      },
    },
    hooks: {
      // Sessions kept only in a secondary store are deleted without the database hook above, so
      // `/sign-out` revokes too: it notes the session before the handler deletes it and, unless
      // the database hook already revoked it, revokes it once the sign-out succeeded.
      before: createAuthMiddleware(async (ctx) => {
        if (ctx.path !== "/sign-out" || !ctx.request) return;
        const current = await getSessionFromCtx(ctx);
        if (current) endingSessions.set(ctx.request, current.session.id);
      }),
      after: createAuthMiddleware(async (ctx) => {
        if (ctx.path !== "/sign-out" || !ctx.request) return;
        const sid = endingSessions.get(ctx.request);
        endingSessions.delete(ctx.request);
        if (sid && !(ctx.context.returned instanceof Error)) await revokeSession(sid);
      }),
    },
  });
}

type Auth = ReturnType<typeof createAuth>;
let auth: Auth | undefined;

/** The Better Auth instance, built on first use (never while `next build` inspects the routes). */
export function getAuth(): Auth {
  auth ??= createAuth();
  return auth;
}
