-- The keyword search (`q`) matches a substring of the title or the description. A `like` with a
-- leading wildcard cannot use a b-tree, so without this every search reads all of the user's
-- tasks. pg_trgm's GIN index answers `like '%…%'` from the trigrams of the pattern (for
-- keywords of three characters or more); the service still applies its exact `like`, so the
-- results are the same.
--
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension since PostgreSQL 13: the
-- owner of the database may create it. Where the service's role may not, an administrator runs
-- this line once beforehand.
create extension if not exists pg_trgm;

-- One index over both fields, in the form the service's query spells it: a keyword found in the
-- title or in the description is found in this text too.
--
-- fastupdate = off: by default GIN queues new entries in a pending list that every search must
-- read in full until a vacuum merges it, and the planner, counting that list, then prefers to
-- read all of the user's tasks. Tasks are written far less often than they are listed, so each
-- write pays to update the index at once instead.
create index tasks_search on tasks
    using gin (lower(title || ' ' || coalesce(description, '')) gin_trgm_ops)
    with (fastupdate = off);
