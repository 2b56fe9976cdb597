//! Artifacts over [`Db`]: collections per project, versions numbered at commit, manifests,
//! aliases (one version each; `latest` follows the newest), and lineage as edges between runs
//! and versions. Stored entries name contents of the blob store, which count as referrers: a
//! content that an artifact names is never collected.

use cairn_types::artifacts::{
    ArtifactInfo, ArtifactLineage, ArtifactRef, CollectionInfo, CommitArtifact, LATEST, ManifestEntry, RunArtifacts, manifest_digest, validate_alias, validate_artifact_name,
    validate_entries, version_index,
};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Map;
use cairn_types::{RunPath, Timestamp, validate_name};

use super::runs::{ensure_project, lock_content, path_at, run_pk, to_json_text};
use super::{Db, Dialect, Row, SqlStore, args, query};
use crate::{ArtifactStore, Result};

const VERSION_SELECT: &str = "SELECT v.version_pk, e.name, p.name, c.name, c.kind, v.version_index, v.digest, v.size, v.file_count,
        v.description, v.metadata, v.created_at, le.name, lp.name, lr.run_id
    FROM artifact_versions v JOIN artifact_collections c ON c.collection_pk = v.collection_pk
    JOIN projects p ON p.project_pk = c.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
    LEFT JOIN runs lr ON lr.run_pk = v.logged_by
    LEFT JOIN projects lp ON lp.project_pk = lr.project_pk LEFT JOIN entities le ON le.entity_pk = lp.entity_pk";

fn version_from_row(db: &dyn Db, r: &Row) -> Result<ArtifactInfo> {
    let pk = r.i64(0)?;
    let aliases = db.column_string("SELECT alias FROM artifact_aliases WHERE version_pk = ?1 ORDER BY alias", args![pk])?;
    let metadata: Map = match serde_json::from_str::<serde_json::Value>(r.str(10)?) {
        Ok(json) => match cairn_types::Value::from_json(&json) {
            cairn_types::Value::Map(m) => m,
            _ => Map::new(),
        },
        Err(_) => Map::new(),
    };
    let index = r.i64(5)? as u64;
    let logged_by = match r.opt_string(12)? {
        Some(_) => Some(path_at(r, 12)?.to_string()),
        None => None,
    };
    Ok(ArtifactInfo {
        entity: r.string(1)?,
        project: r.string(2)?,
        name: r.string(3)?,
        kind: r.string(4)?,
        version: format!("v{index}"),
        version_index: index,
        digest: r.string(6)?,
        size: r.i64(7)? as u64,
        file_count: r.i64(8)? as u64,
        aliases,
        description: r.opt_string(9)?,
        metadata,
        created_at: Timestamp(r.i64(11)?),
        logged_by,
    })
}

fn not_found(entity: &str, project: &str, name: &str, version: &str) -> CodedError {
    CodedError::new(ErrorCode::ArtifactNotFound, format!("artifact {entity}/{project}/{name}:{version} not found"))
}

/// The version `version` (a `vN` or an alias) of a collection: its `version_pk`.
fn find_version(db: &dyn Db, entity: &str, project: &str, name: &str, version: &str) -> Result<i64> {
    validate_artifact_name(name)?;
    let join = "FROM artifact_collections c JOIN projects p ON p.project_pk = c.project_pk JOIN entities e ON e.entity_pk = p.entity_pk";
    let found = match version_index(version) {
        Some(index) => db.opt_row(
            &format!(
                "SELECT v.version_pk {join} JOIN artifact_versions v ON v.collection_pk = c.collection_pk
                WHERE e.name = ?1 AND p.name = ?2 AND c.name = ?3 AND v.version_index = ?4"
            ),
            args![entity, project, name, index as i64],
        )?,
        None => db.opt_row(
            &format!(
                "SELECT a.version_pk {join} JOIN artifact_aliases a ON a.collection_pk = c.collection_pk
                WHERE e.name = ?1 AND p.name = ?2 AND c.name = ?3 AND a.alias = ?4"
            ),
            args![entity, project, name, version],
        )?,
    };
    found.ok_or_else(|| not_found(entity, project, name, version))?.i64(0)
}

fn load_version(db: &dyn Db, pk: i64) -> Result<ArtifactInfo> {
    let row = db.row(&format!("{VERSION_SELECT} WHERE v.version_pk = ?1"), args![pk])?;
    version_from_row(db, &row)
}

/// Points `alias` of the collection at `version_pk` (taking it from the version that had it).
fn move_alias(db: &dyn Db, collection_pk: i64, alias: &str, version_pk: i64) -> Result<()> {
    db.execute(
        "INSERT INTO artifact_aliases (collection_pk, alias, version_pk) VALUES (?1, ?2, ?3)
         ON CONFLICT (collection_pk, alias) DO UPDATE SET version_pk = excluded.version_pk",
        args![collection_pk, alias, version_pk],
    )?;
    Ok(())
}

/// `latest` on the newest version of the collection that remains (none: no `latest`).
fn repoint_latest(db: &dyn Db, collection_pk: i64) -> Result<()> {
    match db.opt_row("SELECT version_pk FROM artifact_versions WHERE collection_pk = ?1 ORDER BY version_index DESC LIMIT 1", args![collection_pk])? {
        Some(r) => move_alias(db, collection_pk, LATEST, r.i64(0)?),
        None => db.execute("DELETE FROM artifact_aliases WHERE collection_pk = ?1 AND alias = ?2", args![collection_pk, LATEST]).map(|_| ()),
    }
}

fn commit(db: &dyn Db, entity: &str, project: &str, request: &CommitArtifact, blobs: &dyn crate::BlobStore, now: Timestamp) -> Result<ArtifactInfo> {
    let project_pk = ensure_project(db, entity, project, now)?;
    db.execute(
        "INSERT INTO artifact_collections (project_pk, name, kind, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (project_pk, name) DO NOTHING",
        args![project_pk, request.name, request.kind, now.micros()],
    )?;
    // The collection's row is held until the commit ends: two writers of one collection take
    // turns, so version numbers and aliases never collide.
    let lock = if db.dialect() == Dialect::Postgres { " FOR UPDATE" } else { "" };
    let c = db.row(&format!("SELECT collection_pk, kind FROM artifact_collections WHERE project_pk = ?1 AND name = ?2{lock}"), args![project_pk, request.name])?;
    let (collection_pk, kind) = (c.i64(0)?, c.string(1)?);
    if kind != request.kind {
        return Err(CodedError::new(ErrorCode::InvalidValue, format!("artifact {entity}/{project}/{} is a {kind:?}, not a {:?}", request.name, request.kind)));
    }
    let logged_by = match &request.run_id {
        Some(run_id) => Some(run_pk(db, &RunPath::new(entity, project, run_id.as_str()))?),
        None => None,
    };
    let digest = manifest_digest(&request.entries);
    let existing = db.opt_row("SELECT version_pk FROM artifact_versions WHERE collection_pk = ?1 AND digest = ?2", args![collection_pk, digest])?;
    let version_pk = match existing {
        // The same content: the same version.
        Some(r) => r.i64(0)?,
        None => {
            // Every stored content is checked (and taken off the collection list) under its lock,
            // as a run's file is: a content is named only while it is there.
            for e in request.entries.iter().filter(|e| e.stored()) {
                lock_content(db, &e.digest)?;
                db.execute("DELETE FROM blob_gc WHERE sha256 = ?1", args![e.digest])?;
                if !super::chunks::content_exists(db, blobs, &e.digest)? {
                    return Err(CodedError::new(
                        ErrorCode::FileNotFound,
                        format!("{}: content {} is not uploaded; send it first with PUT /api/v1/uploads/{}", e.path, e.digest, e.digest),
                    ));
                }
            }
            let index = db.row("SELECT coalesce(max(version_index) + 1, 0) FROM artifact_versions WHERE collection_pk = ?1", args![collection_pk])?.i64(0)?;
            let size: u64 = request.entries.iter().map(|e| e.size).sum();
            let metadata = to_json_text(&request.metadata);
            let pk = db
                .row(
                    "INSERT INTO artifact_versions (collection_pk, version_index, digest, size, file_count, description, metadata, created_at, logged_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING version_pk",
                    args![collection_pk, index, digest, size as i64, request.entries.len() as i64, request.description.clone(), metadata, now.micros(), logged_by],
                )?
                .i64(0)?;
            for e in &request.entries {
                db.execute(
                    "INSERT INTO artifact_entries (version_pk, path, digest, size, ref) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![pk, e.path, e.digest, e.size as i64, e.reference.clone()],
                )?;
            }
            db.execute("UPDATE artifact_collections SET updated_at = ?2 WHERE collection_pk = ?1", args![collection_pk, now.micros()])?;
            repoint_latest(db, collection_pk)?;
            pk
        }
    };
    for alias in &request.aliases {
        if alias != LATEST {
            move_alias(db, collection_pk, alias, version_pk)?;
        }
    }
    if let Some(run) = logged_by {
        db.execute("INSERT INTO artifact_usage (version_pk, run_pk, kind) VALUES (?1, ?2, 'output') ON CONFLICT (version_pk, run_pk, kind) DO NOTHING", args![version_pk, run])?;
    }
    load_version(db, version_pk)
}

fn check_commit(entity: &str, project: &str, request: &CommitArtifact) -> Result<()> {
    validate_name("entity", entity)?;
    validate_name("project", project)?;
    validate_artifact_name(&request.name)?;
    if request.kind.is_empty() || request.kind.len() > 64 || !request.kind.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(CodedError::new(ErrorCode::InvalidName, format!("artifact type {:?} must be 1 to 64 letters, digits, '-', '_' or '.'", request.kind)));
    }
    for alias in &request.aliases {
        validate_alias(alias)?;
    }
    validate_entries(&request.entries)
}

fn versions_of(db: &dyn Db, condition: &str, params: &[super::Param<'_>], order: &str) -> Result<Vec<ArtifactInfo>> {
    db.query(&format!("{VERSION_SELECT} WHERE {condition} ORDER BY {order}"), params)?.iter().map(|r| version_from_row(db, r)).collect()
}

impl ArtifactStore for SqlStore {
    fn commit_artifact(&self, entity: &str, project: &str, request: CommitArtifact, now: Timestamp) -> Result<ArtifactInfo> {
        check_commit(entity, project, &request)?;
        let (entity, project, blobs) = (entity.to_owned(), project.to_owned(), self.blobs.clone());
        self.write(move |db| commit(db, &entity, &project, &request, blobs.as_ref(), now))
    }

    fn get_artifact(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<ArtifactInfo> {
        self.read(|db| load_version(db, find_version(db, entity, project, name, version)?))
    }

    fn artifact_manifest(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<Vec<ManifestEntry>> {
        self.read(|db| {
            let pk = find_version(db, entity, project, name, version)?;
            db.query("SELECT path, digest, size, ref FROM artifact_entries WHERE version_pk = ?1 ORDER BY path", args![pk])?
                .iter()
                .map(|r| Ok(ManifestEntry { path: r.string(0)?, digest: r.string(1)?, size: r.i64(2)? as u64, reference: r.opt_string(3)? }))
                .collect()
        })
    }

    fn artifact_entry(&self, entity: &str, project: &str, name: &str, version: &str, path: &str) -> Result<ManifestEntry> {
        self.read(|db| {
            let pk = find_version(db, entity, project, name, version)?;
            let row = db.opt_row("SELECT path, digest, size, ref FROM artifact_entries WHERE version_pk = ?1 AND path = ?2", args![pk, path])?;
            let r = row.ok_or_else(|| CodedError::new(ErrorCode::FileNotFound, format!("{entity}/{project}/{name}:{version} has no file {path:?}")))?;
            Ok(ManifestEntry { path: r.string(0)?, digest: r.string(1)?, size: r.i64(2)? as u64, reference: r.opt_string(3)? })
        })
    }

    fn list_collections(&self, entity: &str, project: &str, kind: Option<&str>) -> Result<Vec<CollectionInfo>> {
        self.read(|db| {
            let project_pk = query::project_pk(db, entity, project)?;
            db.query(
                "SELECT c.name, c.kind, (SELECT count(*) FROM artifact_versions v WHERE v.collection_pk = c.collection_pk), c.created_at, c.updated_at
                 FROM artifact_collections c WHERE c.project_pk = ?1 AND (CAST(?2 AS TEXT) IS NULL OR c.kind = CAST(?2 AS TEXT)) ORDER BY c.kind, c.name",
                args![project_pk, kind],
            )?
            .iter()
            .map(|r| {
                Ok(CollectionInfo {
                    entity: entity.to_owned(),
                    project: project.to_owned(),
                    name: r.string(0)?,
                    kind: r.string(1)?,
                    version_count: r.i64(2)? as u64,
                    created_at: Timestamp(r.i64(3)?),
                    updated_at: Timestamp(r.i64(4)?),
                })
            })
            .collect()
        })
    }

    fn list_artifact_versions(&self, entity: &str, project: &str, name: &str) -> Result<Vec<ArtifactInfo>> {
        validate_artifact_name(name)?;
        self.read(|db| {
            let found = versions_of(db, "e.name = ?1 AND p.name = ?2 AND c.name = ?3", args![entity, project, name], "v.version_index DESC")?;
            if found.is_empty() {
                return Err(not_found(entity, project, name, "*"));
            }
            Ok(found)
        })
    }

    fn set_artifact_aliases(&self, entity: &str, project: &str, name: &str, version: &str, aliases: Vec<String>) -> Result<ArtifactInfo> {
        for alias in &aliases {
            if alias != LATEST {
                validate_alias(alias)?;
            }
        }
        let (entity, project, name, version) = (entity.to_owned(), project.to_owned(), name.to_owned(), version.to_owned());
        self.write(move |db| {
            let pk = find_version(db, &entity, &project, &name, &version)?;
            let collection_pk = db.row("SELECT collection_pk FROM artifact_versions WHERE version_pk = ?1", args![pk])?.i64(0)?;
            // The version's own aliases become exactly these (but `latest`, which is the server's).
            db.execute("DELETE FROM artifact_aliases WHERE version_pk = ?1 AND alias <> ?2", args![pk, LATEST])?;
            for alias in aliases.iter().filter(|a| *a != LATEST) {
                move_alias(db, collection_pk, alias, pk)?;
            }
            load_version(db, pk)
        })
    }

    fn delete_artifact_version(&self, entity: &str, project: &str, name: &str, version: &str, delete_aliases: bool) -> Result<Vec<String>> {
        let (entity, project, name, version) = (entity.to_owned(), project.to_owned(), name.to_owned(), version.to_owned());
        self.write(move |db| {
            let pk = find_version(db, &entity, &project, &name, &version)?;
            let collection_pk = db.row("SELECT collection_pk FROM artifact_versions WHERE version_pk = ?1", args![pk])?.i64(0)?;
            let own = db.column_string("SELECT alias FROM artifact_aliases WHERE version_pk = ?1 AND alias <> ?2", args![pk, LATEST])?;
            if !own.is_empty() && !delete_aliases {
                return Err(CodedError::new(
                    ErrorCode::InvalidValue,
                    format!("{entity}/{project}/{name}:{version} has aliases {own:?}: remove them first, or delete with delete_aliases"),
                ));
            }
            let contents = db.column_string("SELECT DISTINCT digest FROM artifact_entries WHERE version_pk = ?1 AND ref IS NULL", args![pk])?;
            db.execute("DELETE FROM artifact_aliases WHERE version_pk = ?1", args![pk])?;
            db.execute("DELETE FROM artifact_usage WHERE version_pk = ?1", args![pk])?;
            db.execute("DELETE FROM artifact_entries WHERE version_pk = ?1", args![pk])?;
            db.execute("DELETE FROM artifact_versions WHERE version_pk = ?1", args![pk])?;
            repoint_latest(db, collection_pk)?;
            // Contents nothing names now wait for collection.
            super::runs::queue_unnamed(db, contents)
        })
    }

    fn use_artifact(&self, run: &RunPath, artifact: &ArtifactRef) -> Result<ArtifactInfo> {
        run.validate()?;
        let (run, artifact) = (run.clone(), artifact.clone());
        self.write(move |db| {
            let run_pk = run_pk(db, &run)?;
            let entity = artifact.entity.clone().unwrap_or_else(|| run.entity.clone());
            let project = artifact.project.clone().unwrap_or_else(|| run.project.clone());
            let pk = find_version(db, &entity, &project, &artifact.name, &artifact.version)?;
            db.execute("INSERT INTO artifact_usage (version_pk, run_pk, kind) VALUES (?1, ?2, 'input') ON CONFLICT (version_pk, run_pk, kind) DO NOTHING", args![pk, run_pk])?;
            load_version(db, pk)
        })
    }

    fn run_artifacts(&self, run: &RunPath) -> Result<RunArtifacts> {
        run.validate()?;
        self.read(|db| {
            let pk = run_pk(db, run)?;
            let of =
                |kind: &str| versions_of(db, "v.version_pk IN (SELECT version_pk FROM artifact_usage WHERE run_pk = ?1 AND kind = ?2)", args![pk, kind], "c.name, v.version_index");
            Ok(RunArtifacts { inputs: of("input")?, outputs: of("output")? })
        })
    }

    fn artifact_lineage(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<ArtifactLineage> {
        self.read(|db| {
            let pk = find_version(db, entity, project, name, version)?;
            let logged_by = load_version(db, pk)?.logged_by;
            let used_by = db
                .query(
                    "SELECT e.name, p.name, r.run_id FROM artifact_usage u JOIN runs r ON r.run_pk = u.run_pk
                     JOIN projects p ON p.project_pk = r.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
                     WHERE u.version_pk = ?1 AND u.kind = 'input' AND r.deleted_at IS NULL ORDER BY r.created_at, r.run_id",
                    args![pk],
                )?
                .iter()
                .map(|r| path_at(r, 0).map(|p| p.to_string()))
                .collect::<Result<Vec<_>>>()?;
            Ok(ArtifactLineage { logged_by, used_by })
        })
    }

    fn artifact_types(&self, entity: &str, project: &str) -> Result<Vec<String>> {
        self.read(|db| {
            let project_pk = query::project_pk(db, entity, project)?;
            db.column_string("SELECT DISTINCT kind FROM artifact_collections WHERE project_pk = ?1 ORDER BY kind", args![project_pk])
        })
    }
}
