-- The tasks of every user, in one table. Every query the service runs filters on user_id first,
-- so the indexes below all lead with it.
create table tasks (
    -- AUTOINCREMENT: an id is never handed out again after a delete, so a stale link or a client
    -- cache can never point at a newer task.
    id integer primary key autoincrement,
    -- Better Auth user ids are opaque strings: nothing here assumes a format or a length.
    user_id text not null,
    -- The service validates these limits (in characters, after trimming the title); the checks
    -- are a last line of defence. SQLite's length() counts characters, as the service does.
    title text not null check (length(title) between 1 and 200),
    description text check (length(description) <= 1000),
    completed boolean not null default false,
    priority text not null default 'medium' check (priority in ('low', 'medium', 'high')),
    -- SQLite has no timestamp type. Times are stored as RFC 3339 text, always in UTC
    -- ("2026-11-24T08:00:00.123456+00:00"): with a single fixed offset, text order is time order,
    -- so "order by created_at" sorts correctly without parsing.
    due_date text,
    created_at text not null,
    updated_at text not null
);

-- "This user's tasks, newest first" (the default list) is a backward walk of this index, with no
-- sort step; id breaks ties between tasks created in the same microsecond.
create index tasks_user_created on tasks (user_id, created_at, id);

-- The same list filtered by status ("pending" / "completed"), also read in order from the index.
create index tasks_user_completed_created on tasks (user_id, completed, created_at, id);
