-- Version 10: hyperband's judgements of a sweep's trials, one per trial and bracket.
CREATE TABLE sweep_decisions (
    sweep_pk    BIGINT NOT NULL REFERENCES sweeps (sweep_pk),
    run_id      TEXT NOT NULL,
    bracket     BIGINT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    threshold   DOUBLE PRECISION NOT NULL,
    rank        BIGINT NOT NULL,
    reached     BIGINT NOT NULL,
    kept        BIGINT NOT NULL,
    stopped     BIGINT NOT NULL,
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (sweep_pk, run_id, bracket)
);
