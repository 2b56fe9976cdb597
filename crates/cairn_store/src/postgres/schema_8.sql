-- Version 8: workspace layouts, per project and viewer (a user's name; '' without accounts).
CREATE TABLE workspaces (
    project_pk  BIGINT NOT NULL REFERENCES projects (project_pk),
    viewer      TEXT NOT NULL,
    layout      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (project_pk, viewer)
);
