-- One index on a user's tasks instead of two. Every new task was an entry in both
-- `tasks_user_created` and `tasks_user_completed_created`; as they are ordered by user, each
-- entry lands on a page of its own, so the two indexes were about two thirds of the pages a
-- commit of new tasks writes to the WAL (and later to the database file).
--
-- With `completed` at the end of the key, this one index serves both lists, read in order:
-- - "this user's tasks, newest first" is a backward walk of the user's entries that stops at
--   the limit (id breaks ties between tasks created in the same microsecond);
-- - the list filtered by status walks the same entries and skips the other status from the
--   index itself, reading only the matching rows;
-- - the counts, with or without a status, read the index alone.
drop index tasks_user_completed_created;
drop index tasks_user_created;
create index tasks_user_created on tasks (user_id, created_at, id, completed);
