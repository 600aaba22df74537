"use client";
// The sign-up and sign-in forms: one component, since they differ only by the name field.

import Link from "next/link";
import { useRouter } from "next/navigation";
import { type FormEvent, useState } from "react";

import { authClient } from "@/lib/auth-client";

import { Field } from "./Field";

export function AuthForm({ mode }: { mode: "sign-up" | "sign-in" }) {
  const router = useRouter();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const signingUp = mode === "sign-up";

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email"));
    const password = String(form.get("password"));
    setBusy(true);
    setError("");
    const { error } = signingUp
      ? await authClient.signUp.email({ name: String(form.get("name")), email, password })
      : await authClient.signIn.email({ email, password });
    setBusy(false);
    if (error) {
      setError(error.message ?? error.statusText ?? "Something went wrong");
      return;
    }
    router.push("/tasks");
    router.refresh();
  }

  return (
    <section className="card narrow">
      <h1>{signingUp ? "Create an account" : "Sign in"}</h1>
      <form onSubmit={submit} className="stack">
        {signingUp && (
          <Field label="Name">{(id) => <input id={id} name="name" autoComplete="name" required />}</Field>
        )}
        <Field label="Email">
          {(id) => <input id={id} name="email" type="email" autoComplete="email" required />}
        </Field>
        <Field label="Password">
          {(id) => (
            <input
              id={id}
              name="password"
              type="password"
              autoComplete={signingUp ? "new-password" : "current-password"}
              minLength={8}
              required
            />
          )}
        </Field>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {signingUp ? "Sign up" : "Sign in"}
        </button>
      </form>
      <p>
        {signingUp ? (
          <>
            Have an account? <Link href="/sign-in">Sign in instead</Link>
          </>
        ) : (
          <>
            New here? <Link href="/sign-up">Create an account</Link>
          </>
        )}
      </p>
    </section>
  );
}
