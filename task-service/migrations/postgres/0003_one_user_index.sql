-- One index on a user's tasks instead of two. Every new task was an entry in both
-- `tasks_user_created` and `tasks_user_completed_created`, each on a page of its own since both
-- are ordered by user. With `completed` at the end of the key, this one index serves both lists,
-- read in order: "this user's tasks, newest first" is a backward scan of the user's entries
-- (id breaks ties between tasks created in the same microsecond), and the list filtered by
-- status scans the same entries with the status as an index condition, fetching only the
-- matching rows.
drop index tasks_user_completed_created;
drop index tasks_user_created;
create index tasks_user_created on tasks (user_id, created_at, id, completed);
