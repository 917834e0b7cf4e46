-- The relay's pause becomes a lease (who holds it, since when, until when: it ends by itself when
-- its holder stops renewing it), and the relay's leader is recorded with an epoch every new
-- leader bumps. A leader whose epoch is no longer current has been superseded and must not
-- publish or delete another row (fencing: the advisory lock alone does not tell a leader whose
-- session PostgreSQL has already ended that it has lost).
ALTER TABLE relay_control
    ADD COLUMN paused_by    text,
    ADD COLUMN paused_at    timestamptz,
    ADD COLUMN pause_until  timestamptz,
    ADD COLUMN leader       text,
    ADD COLUMN leader_since timestamptz,
    ADD COLUMN leader_epoch bigint NOT NULL DEFAULT 0;
-- A pause left by the old boolean becomes a one-minute lease rather than a pause forever.
UPDATE relay_control SET paused_by = 'before-0007', paused_at = now(), pause_until = now() + interval '1 minute'
 WHERE paused;
ALTER TABLE relay_control DROP COLUMN paused;
