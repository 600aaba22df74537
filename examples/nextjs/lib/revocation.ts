// Sign-out reaches the gateway: Better Auth's JWTs stay valid until they expire (15 minutes), so
// when a session ends the app tells the gateway's admin listener to refuse every token carrying
// that session's id (the `sid` claim, see lib/auth.ts). Server-side only: the admin token never
// reaches the browser.

import { serverConfig } from "./config";

const ADMIN_TIMEOUT_MS = 3000;
const ATTEMPTS = 3;

/**
 * Asks the gateway to refuse the tokens of session `sid`. Retries a few times, then logs: the
 * session itself is already gone, so the worst case is that its tokens live out their 15 minutes.
 */
export async function revokeSession(sid: string): Promise<void> {
  const admin = serverConfig().gatewayAdmin;
  if (!admin) return;
  let problem = "";
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      const reply = await fetch(`${admin.url}/revocations`, {
        method: "POST",
        headers: { Authorization: `Bearer ${admin.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ sid }),
        signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
      });
      if (reply.status === 204) return;
      problem = `the gateway answered ${reply.status}`;
      // A 4xx will not change on a retry (401: wrong admin token; 404: a gateway without revocation).
      if (reply.status < 500) break;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
  }
  console.error(`revocation: session ${sid} could not be revoked at the gateway (${problem}); its tokens stay valid until they expire`);
}
