-- The tasks of every user, in one table. Every query the service runs filters on user_id first,
-- so the indexes below all lead with it.
create table tasks (
    -- An identity column never hands out an id twice, so a stale link or a client cache can never
    -- point at a newer task.
    id bigint generated always as identity primary key,
    -- Better Auth user ids are opaque strings: nothing here assumes a format or a length.
    user_id text not null,
    -- The service validates these limits (in characters, after trimming the title); the checks
    -- are a last line of defence. char_length() counts characters, as the service does.
    title text not null check (char_length(title) between 1 and 200),
    description text check (char_length(description) <= 1000),
    completed boolean not null default false,
    priority text not null default 'medium' check (priority in ('low', 'medium', 'high')),
    -- timestamptz stores an instant, so ordering is by time whatever offset a client sent.
    due_date timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

-- "This user's tasks, newest first" (the default list) is a backward scan of this index, with no
-- sort step; id breaks ties between tasks created in the same microsecond.
create index tasks_user_created on tasks (user_id, created_at, id);

-- The same list filtered by status ("pending" / "completed"), also read in order from the index.
create index tasks_user_completed_created on tasks (user_id, completed, created_at, id);
