-- Version 12: when a run said it may be preempted (mark_preempting); NULL otherwise.
ALTER TABLE runs ADD COLUMN preempting_at BIGINT;
