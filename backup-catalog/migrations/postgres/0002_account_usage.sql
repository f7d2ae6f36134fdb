-- Catalog schema, version 2 (PostgreSQL): what each account's snapshots store, kept up to
-- date. The same columns, table and behaviour as `../sqlite/0002_account_usage.sql` (read
-- it for the why); one PL/pgSQL row trigger does the bookkeeping.

ALTER TABLE snapshots ADD COLUMN bytes_stored BIGINT NOT NULL DEFAULT 0;
UPDATE snapshots
   SET bytes_stored = LEAST(COALESCE((data::jsonb #>> '{stats,bytes_stored}')::numeric, 0),
                            9223372036854775807)::bigint;

CREATE TABLE account_usage (
    account_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    snapshots    BIGINT           NOT NULL,
    bytes_stored BIGINT           NOT NULL
);
INSERT INTO account_usage (account_id, snapshots, bytes_stored)
    SELECT account_id, COUNT(*), SUM(bytes_stored) FROM snapshots GROUP BY account_id;

CREATE FUNCTION snapshots_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE account_usage
           SET snapshots = snapshots - 1, bytes_stored = bytes_stored - OLD.bytes_stored
         WHERE account_id = OLD.account_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO account_usage AS u (account_id, snapshots, bytes_stored)
            VALUES (NEW.account_id, 1, NEW.bytes_stored)
            ON CONFLICT (account_id) DO UPDATE
            SET snapshots = u.snapshots + 1, bytes_stored = u.bytes_stored + excluded.bytes_stored;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM account_usage WHERE account_id = OLD.account_id AND snapshots = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER snapshots_usage_insert_delete AFTER INSERT OR DELETE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION snapshots_usage();
CREATE TRIGGER snapshots_usage_update AFTER UPDATE OF account_id, bytes_stored ON snapshots
    FOR EACH ROW EXECUTE FUNCTION snapshots_usage();
