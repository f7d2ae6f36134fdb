-- Catalog schema, version 3: the server's global settings.
--
-- One row (`id` is always 1) holding the serde_json of the model's `Settings` in `data`, like
-- every other table's `data`: settings can gain fields without touching this schema. No row
-- until settings are first stored; reading then gives the defaults.

CREATE TABLE settings (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    data TEXT    NOT NULL
);
