-- Replay and rerun need to know exactly which component a step attempt ran,
-- and where a rerun came from. Mirrors migrations/sqlite/0003_replay.sql.

-- `name@sha256` of the step component an attempt ran (step entries only).
ALTER TABLE journal ADD COLUMN component TEXT;

-- Why this run exists when it is not a plain submission, e.g.
-- "rerun of run_… from `pull-meta`".
ALTER TABLE runs ADD COLUMN origin TEXT;
