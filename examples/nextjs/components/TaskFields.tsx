// The fields of a task, shared by the add form and the edit form.

import type { Priority, Task } from "@/lib/api";

import { Field, SelectField } from "./Field";

export type TaskInput = {
  title: string;
  description: string | null;
  priority: Priority;
  due_date: string | null;
};

/** Reads the fields below from a submitted form, in the shape the API takes. */
export function readTaskInput(form: HTMLFormElement): TaskInput {
  const data = new FormData(form);
  const description = String(data.get("description") ?? "").trim();
  const dueDate = String(data.get("due_date") ?? "");
  return {
    title: String(data.get("title") ?? ""),
    description: description || null,
    priority: String(data.get("priority") ?? "medium") as Priority,
    // A date alone is midnight UTC to the API, which gives it back as a full timestamp.
    due_date: dueDate || null,
  };
}

export function TaskFields({ task }: { task?: Task }) {
  return (
    <>
      <Field label="Title">
        {(id) => <input id={id} name="title" defaultValue={task?.title} maxLength={200} required />}
      </Field>
      <Field label="Description">
        {(id) => (
          <textarea id={id} name="description" defaultValue={task?.description ?? ""} maxLength={1000} rows={2} />
        )}
      </Field>
      <div className="row">
        <SelectField
          label="Priority"
          name="priority"
          defaultValue={task?.priority ?? "medium"}
          options={[
            ["low", "Low"],
            ["medium", "Medium"],
            ["high", "High"],
          ]}
        />
        <Field label="Due date">
          {(id) => <input id={id} name="due_date" type="date" defaultValue={task?.due_date?.slice(0, 10) ?? ""} />}
        </Field>
      </div>
    </>
  );
}
