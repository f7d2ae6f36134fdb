-- Catalog schema, version 2: what each account's snapshots store, kept up to date.
--
-- `snapshots.bytes_stored` copies the snapshot's `stats.bytes_stored` out of `data` (rows
-- written at version 1 are filled in here). `account_usage` holds, per account id that has
-- snapshot rows, their count and the sum of their `bytes_stored`; triggers keep it exact on
-- every insert, upsert, update and delete of a snapshot row, so usage reports and the
-- search for snapshots whose account row is gone read one row per account instead of every
-- snapshot. An account id without snapshot rows has no usage row.

ALTER TABLE snapshots ADD COLUMN bytes_stored BIGINT NOT NULL DEFAULT 0;
UPDATE snapshots
   SET bytes_stored = COALESCE(CAST(json_extract(data, '$.stats.bytes_stored') AS INTEGER), 0);

CREATE TABLE account_usage (
    account_id   TEXT   NOT NULL PRIMARY KEY,
    snapshots    BIGINT NOT NULL,
    bytes_stored BIGINT NOT NULL
);
INSERT INTO account_usage (account_id, snapshots, bytes_stored)
    SELECT account_id, COUNT(*), SUM(bytes_stored) FROM snapshots GROUP BY account_id;

CREATE TRIGGER snapshots_usage_insert AFTER INSERT ON snapshots
BEGIN
    INSERT INTO account_usage (account_id, snapshots, bytes_stored)
        VALUES (NEW.account_id, 1, NEW.bytes_stored)
        ON CONFLICT (account_id) DO UPDATE
        SET snapshots = snapshots + 1, bytes_stored = bytes_stored + excluded.bytes_stored;
END;

CREATE TRIGGER snapshots_usage_update AFTER UPDATE OF account_id, bytes_stored ON snapshots
BEGIN
    UPDATE account_usage
       SET snapshots = snapshots - 1, bytes_stored = bytes_stored - OLD.bytes_stored
     WHERE account_id = OLD.account_id;
    INSERT INTO account_usage (account_id, snapshots, bytes_stored)
        VALUES (NEW.account_id, 1, NEW.bytes_stored)
        ON CONFLICT (account_id) DO UPDATE
        SET snapshots = snapshots + 1, bytes_stored = bytes_stored + excluded.bytes_stored;
    DELETE FROM account_usage WHERE account_id = OLD.account_id AND snapshots = 0;
END;

CREATE TRIGGER snapshots_usage_delete AFTER DELETE ON snapshots
BEGIN
    UPDATE account_usage
       SET snapshots = snapshots - 1, bytes_stored = bytes_stored - OLD.bytes_stored
     WHERE account_id = OLD.account_id;
    DELETE FROM account_usage WHERE account_id = OLD.account_id AND snapshots = 0;
END;
