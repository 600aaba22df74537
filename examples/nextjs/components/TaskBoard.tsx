"use client";
// The task page: the list with its filters, the add form, and each task's toggle, edit and
// delete. Every change goes to the gateway through `api()` and then reloads the list, so the
// order, the filters and the total always come from the server.

import { useRouter } from "next/navigation";
import { type FormEvent, useCallback, useEffect, useMemo, useRef, useState } from "react";

import { ApiError, type Task, gatewayApi } from "@/lib/api";
import { authClient } from "@/lib/auth-client";

import { Field, SelectField } from "./Field";
import { TaskFields, readTaskInput } from "./TaskFields";

const STATUSES = [
  ["all", "All"],
  ["pending", "Pending"],
  ["completed", "Completed"],
] as const;
const SORTS = [
  ["created", "Created"],
  ["updated", "Updated"],
  ["title", "Title"],
  ["due_date", "Due date"],
  ["priority", "Priority"],
] as const;
const ORDERS = [
  ["desc", "Descending"],
  ["asc", "Ascending"],
] as const;

type Status = (typeof STATUSES)[number][0];
type Sort = (typeof SORTS)[number][0];
type Order = (typeof ORDERS)[number][0];

const SEARCH_DELAY_MS = 250;

type Props = { userId: string; userName: string; gatewayUrl: string };

export function TaskBoard({ userId, userName, gatewayUrl }: Props) {
  const router = useRouter();
  const api = useMemo(() => gatewayApi(gatewayUrl), [gatewayUrl]);
  const tasksPath = `/api/${encodeURIComponent(userId)}/tasks`;

  const [tasks, setTasks] = useState<Task[]>([]);
  const [total, setTotal] = useState<number | null>(null);
  const [status, setStatus] = useState<Status>("all");
  const [sort, setSort] = useState<Sort>("created");
  const [order, setOrder] = useState<Order>("desc");
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [editing, setEditing] = useState<number | null>(null);
  const [error, setError] = useState("");
  // Only the newest list request may update the page, whatever order the replies arrive in.
  const latestLoad = useRef(0);

  const report = useCallback((problem: unknown) => {
    setError(problem instanceof ApiError || problem instanceof Error ? problem.message : String(problem));
  }, []);

  const load = useCallback(async () => {
    const ticket = ++latestLoad.current;
    const params = new URLSearchParams({ status, sort, order });
    if (query) params.set("q", query);
    try {
      const { data, headers } = await api<Task[]>(`${tasksPath}?${params}`);
      if (ticket !== latestLoad.current) return;
      setTasks(data);
      setTotal(Number(headers.get("X-Total-Count") ?? data.length));
      setError("");
    } catch (problem) {
      if (ticket === latestLoad.current) report(problem);
    }
  }, [api, tasksPath, status, sort, order, query, report]);

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    const timer = setTimeout(() => setQuery(search.trim()), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [search]);

  /** Runs one change against the API, then reloads the list; shows the `detail` if refused. */
  async function change(request: () => Promise<unknown>): Promise<boolean> {
    try {
      await request();
    } catch (problem) {
      report(problem);
      return false;
    }
    await load();
    return true;
  }

  async function addTask(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const input = readTaskInput(form);
    const added = await change(() => api(tasksPath, { method: "POST", body: JSON.stringify(input) }));
    if (added) form.reset();
  }

  async function saveTask(event: FormEvent<HTMLFormElement>, task: Task) {
    event.preventDefault();
    const input = readTaskInput(event.currentTarget);
    const saved = await change(() => api(`${tasksPath}/${task.id}`, { method: "PUT", body: JSON.stringify(input) }));
    if (saved) setEditing(null);
  }

  async function signOut() {
    await authClient.signOut();
    router.push("/sign-in");
    router.refresh();
  }

  return (
    <>
      <header className="top">
        <h1>Tasks</h1>
        <span>
          Signed in as {userName}{" "}
          <button type="button" className="secondary" onClick={signOut}>
            Sign out
          </button>
        </span>
      </header>

      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}

      <section className="card" aria-labelledby="add-heading">
        <h2 id="add-heading">New task</h2>
        <form onSubmit={addTask} className="stack">
          <TaskFields />
          <button type="submit">Add task</button>
        </form>
      </section>

      <section className="card" aria-labelledby="list-heading">
        <h2 id="list-heading">Your tasks</h2>
        <div className="row filters">
          <Field label="Search">
            {(id) => <input id={id} type="search" value={search} onChange={(e) => setSearch(e.target.value)} />}
          </Field>
          <SelectField
            label="Status"
            value={status}
            onChange={(e) => setStatus(e.target.value as Status)}
            options={STATUSES}
          />
          <SelectField
            label="Sort by"
            value={sort}
            onChange={(e) => setSort(e.target.value as Sort)}
            options={SORTS}
          />
          <SelectField
            label="Order"
            value={order}
            onChange={(e) => setOrder(e.target.value as Order)}
            options={ORDERS}
          />
        </div>

        <p className="count" aria-live="polite">
          {total === null ? "Loading…" : `${total} tasks`}
        </p>

        <ul className="tasks" aria-label="Tasks">
          {tasks.map((task) =>
            editing === task.id ? (
              <li key={task.id} className="task">
                <form onSubmit={(event) => saveTask(event, task)} className="stack grow">
                  <TaskFields task={task} />
                  <div className="row">
                    <button type="submit">Save</button>
                    <button type="button" className="secondary" onClick={() => setEditing(null)}>
                      Cancel
                    </button>
                  </div>
                </form>
              </li>
            ) : (
              <li key={task.id} className={task.completed ? "task done" : "task"}>
                <input
                  type="checkbox"
                  aria-label={task.title}
                  checked={task.completed}
                  onChange={() =>
                    change(() =>
                      api(`${tasksPath}/${task.id}/complete`, {
                        method: "PATCH",
                        body: JSON.stringify({ completed: !task.completed }),
                      }),
                    )
                  }
                />
                <div className="grow">
                  <span className="title">{task.title}</span>
                  {task.description && <p className="description">{task.description}</p>}
                  <p className="meta">
                    <span className={`priority ${task.priority}`}>{task.priority}</span>
                    {task.due_date && <span>due {task.due_date.slice(0, 10)}</span>}
                  </p>
                </div>
                <button type="button" className="secondary" onClick={() => setEditing(task.id)}>
                  Edit
                </button>
                <button
                  type="button"
                  className="danger"
                  onClick={() => change(() => api(`${tasksPath}/${task.id}`, { method: "DELETE" }))}
                >
                  Delete
                </button>
              </li>
            ),
          )}
        </ul>
      </section>
    </>
  );
}
