// What the server does once at start: check the configuration (one line naming a bad variable,
// then exit) and bring Better Auth's tables up to date in the SQLite file.

import { getMigrations } from "better-auth/db/migration";

import { getAuth } from "./auth";
import { ConfigError, serverConfig } from "./config";

export async function startUp() {
  let config;
  try {
    config = serverConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`error: ${error.message}`);
    process.exit(1);
  }
  const { runMigrations } = await getMigrations(getAuth().options);
  await runMigrations();
  if (!config.gatewayAdmin) {
    console.warn(
      "GATEWAY_ADMIN_URL is not set: sign-out will not revoke tokens at the gateway (they expire within 15 minutes)",
    );
  }
}
