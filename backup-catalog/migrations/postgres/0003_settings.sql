-- Catalog schema, version 3 (PostgreSQL): the server's global settings. The same one-row
-- table as `../sqlite/0003_settings.sql` (read it for the why).

CREATE TABLE settings (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    data TEXT    NOT NULL
);
