"use client";
// A labelled form control. The label points at the control by id rather than wrapping it, so a
// control's accessible name is exactly its label (a wrapped <select> would add its value).

import { type ReactNode, useId } from "react";

export function Field({ label, children }: { label: string; children: (id: string) => ReactNode }) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(id)}
    </div>
  );
}
