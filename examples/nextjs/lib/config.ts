// The app's server-side settings, read from the environment once. `instrumentation.ts` reads
// them at start, so a missing or bad value stops the server with one line naming the variable.
// None of them reaches the browser except `gatewayUrl`, which the task page hands to its client
// component.

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
  }
}

export type ServerConfig = {
  /** This app's own origin; Better Auth's base URL and the tokens' `iss` and `aud`. */
  authUrl: string;
  /** The gateway's public URL, which the browser calls with a bearer token. */
  gatewayUrl: string;
  /** The SQLite file holding users, sessions and the signing keys. */
  databasePath: string;
  /** The gateway's admin listener and its token, to revoke sessions on sign-out. */
  gatewayAdmin: { url: string; token: string } | null;
};

function required(name: string): string {
  const value = process.env[name]?.trim();
  if (!value) throw new ConfigError(name, "required but not set");
  return value;
}

function origin(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(name, "must be an http:// or https:// URL");
  }
  if (url.pathname !== "/" || url.search || url.hash) {
    throw new ConfigError(name, "must be an origin (scheme, host and port only)");
  }
  return url.origin;
}

function readConfig(): ServerConfig {
  const secret = required("BETTER_AUTH_SECRET");
  if (secret.length < 32) throw new ConfigError("BETTER_AUTH_SECRET", "must be at least 32 characters");
  const authUrl = origin("BETTER_AUTH_URL", required("BETTER_AUTH_URL"));
  const gatewayUrl = origin("GATEWAY_URL", required("GATEWAY_URL"));
  const databasePath = process.env.AUTH_DATABASE_PATH?.trim() || "data/auth.db";

  const adminUrl = process.env.GATEWAY_ADMIN_URL?.trim();
  const adminToken = process.env.GATEWAY_ADMIN_TOKEN?.trim();
  if (adminUrl && !adminToken) throw new ConfigError("GATEWAY_ADMIN_TOKEN", "required when GATEWAY_ADMIN_URL is set");
  if (adminToken && !adminUrl) throw new ConfigError("GATEWAY_ADMIN_URL", "required when GATEWAY_ADMIN_TOKEN is set");
  const gatewayAdmin =
    adminUrl && adminToken ? { url: origin("GATEWAY_ADMIN_URL", adminUrl), token: adminToken } : null;

  return { authUrl, gatewayUrl, databasePath, gatewayAdmin };
}

let config: ServerConfig | undefined;

/** The settings, read on first use (never at build time, when the environment may be empty). */
export function serverConfig(): ServerConfig {
  config ??= readConfig();
  return config;
}
