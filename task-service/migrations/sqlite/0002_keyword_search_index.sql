-- The keyword search (`q`) matches a substring of the title or the description. A `like` with a
-- leading wildcard cannot use a b-tree, so without this every search reads all of the user's
-- tasks. An FTS5 table with the trigram tokenizer (SQLite 3.34 and later) answers "which rows
-- contain this substring" from an index, case-insensitively, for keywords of three characters
-- or more; the service still applies its `like`, so results are exactly the same.
--
-- External content: the text lives only in `tasks`; this table holds the index. The triggers
-- below keep it in step with every insert, update and delete.
create virtual table tasks_search using fts5(
    title,
    description,
    content = 'tasks',
    content_rowid = 'id',
    tokenize = 'trigram'
);

-- Index the tasks that exist already.
insert into tasks_search (tasks_search) values ('rebuild');

create trigger tasks_search_after_insert after insert on tasks begin
    insert into tasks_search (rowid, title, description)
    values (new.id, new.title, new.description);
end;

-- An external-content table forgets a row by being told the text it indexed.
create trigger tasks_search_after_delete after delete on tasks begin
    insert into tasks_search (tasks_search, rowid, title, description)
    values ('delete', old.id, old.title, old.description);
end;

create trigger tasks_search_after_update after update of title, description on tasks begin
    insert into tasks_search (tasks_search, rowid, title, description)
    values ('delete', old.id, old.title, old.description);
    insert into tasks_search (rowid, title, description)
    values (new.id, new.title, new.description);
end;
