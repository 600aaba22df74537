"use client";
// A labelled form control. The label points at the control by id rather than wrapping it, so a
// control's accessible name is exactly its label (a wrapped <select> would add its value).

import { type ReactNode, type SelectHTMLAttributes, useId } from "react";

export function Field({ label, children }: { label: string; children: (id: string) => ReactNode }) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(id)}
    </div>
  );
}

type SelectFieldProps = Omit<SelectHTMLAttributes<HTMLSelectElement>, "id"> & {
  label: string;
  /** Each choice as `[value, text]`. */
  options: readonly (readonly [string, string])[];
};

/** A labelled <select>; other props (`value`, `onChange`, `name`, …) go to the select. */
export function SelectField({ label, options, ...select }: SelectFieldProps) {
  return (
    <Field label={label}>
      {(id) => (
        <select id={id} {...select}>
          {options.map(([value, text]) => (
            <option key={value} value={value}>
              {text}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}
