// Better Auth's endpoints: sign-up, sign-in, sign-out, the session, `/token` and `/jwks`.

import { toNextJsHandler } from "better-auth/next-js";

import { getAuth } from "@/lib/auth";

export async function GET(request: Request) {
  return toNextJsHandler(getAuth()).GET(request);
}

export async function POST(request: Request) {
  return toNextJsHandler(getAuth()).POST(request);
}
