"use client";
// Better Auth in the browser: sign-up, sign-in, sign-out and `token()`, which fetches a fresh
// 15-minute JWT for the gateway from this app's `/api/auth/token`.

import { createAuthClient } from "better-auth/react";
import { jwtClient } from "better-auth/client/plugins";

export const authClient = createAuthClient({ plugins: [jwtClient()] });
