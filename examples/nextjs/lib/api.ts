"use client";
// The API client: the README's `api()` helper. Every call gets a fresh JWT from Better Auth and
// sends it to the gateway as a bearer token; a reply that is not 2xx becomes an `ApiError`
// carrying the gateway's or the task service's `detail`, ready to show to the user.

import { authClient } from "./auth-client";

export type Priority = "low" | "medium" | "high";

export type Task = {
  id: number;
  user_id: string;
  title: string;
  description: string | null;
  completed: boolean;
  priority: Priority;
  due_date: string | null;
  created_at: string;
  updated_at: string;
};

/** A refused request: its status and the reply's `detail`, as one readable message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type ValidationIssue = { loc?: (string | number)[]; msg?: string };

/** `detail` is a string, or for a 422 a list of `{loc, msg, type}` (FastAPI's shape). */
function describe(detail: unknown, fallback: string): string {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    const lines = (detail as ValidationIssue[]).map((issue) => {
      const field = issue.loc?.filter((part) => part !== "body" && part !== "query").join(".");
      return field ? `${field}: ${issue.msg ?? "invalid"}` : (issue.msg ?? "invalid");
    });
    if (lines.length > 0) return lines.join("; ");
  }
  return fallback;
}

export type ApiReply<T> = { data: T; headers: Headers };

/** An `api(path, init)` function for the gateway at `baseUrl`. */
export function gatewayApi(baseUrl: string) {
  return async function api<T>(path: string, init: RequestInit = {}): Promise<ApiReply<T>> {
    const { data, error } = await authClient.token(); // a fresh 15-minute JWT
    if (error || !data) throw new ApiError(401, "Not signed in");
    const res = await fetch(`${baseUrl}${path}`, {
      ...init,
      headers: {
        ...init.headers,
        Authorization: `Bearer ${data.token}`,
        "Content-Type": "application/json",
      },
    });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new ApiError(res.status, describe(body?.detail, res.statusText || `HTTP ${res.status}`));
    }
    return { data: (res.status === 204 ? null : await res.json()) as T, headers: res.headers };
  };
}

export type Api = ReturnType<typeof gatewayApi>;
