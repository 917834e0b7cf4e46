-- A delivery row is updated three times in its life (routed, SENT, DELIVERED). The index on
-- `status` made every status change a non-HOT update (new entries in both indexes) and no query
-- used it: every lookup goes by message id. Without it, and with room left on each page, those
-- updates stay on the page (HOT) and the table and its primary key stop bloating under load.
DROP INDEX IF EXISTS deliveries_status;
ALTER TABLE deliveries SET (fillfactor = 70);
-- The outbox is a queue: every row is deleted within milliseconds. Vacuum it often, so the
-- relay's ordered scan does not wade through dead tuples.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000);
