//! Artifacts that the official client logs (`run.log_artifact`), made cairn's artifacts.
//!
//! wandb-core saves one in steps: `CreateArtifact` (a draft), `CreateArtifactManifest`,
//! `CreateArtifactFiles` (an upload URL per file), a PUT of each file, the manifest again with an
//! upload URL for it, a PUT of the manifest (`wandb_manifest.json`: each path with its MD5 and
//! size, or a reference), and `CommitArtifact`. cairn keeps no draft table: the draft's id is
//! the draft itself (the run, type, name, aliases, description and metadata), signed with the
//! server's secret, and the files go to the run's files under a staging folder of the draft. The
//! commit reads the manifest from there, names each entry by the content that arrived for it,
//! commits the version through the same service as cairn's own clients, and removes the staging
//! files.

use cairn_types::RunPath;
use cairn_types::artifacts::{ArtifactInfo, ArtifactRef, CommitArtifact, ManifestEntry};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::{Map, Value};
use serde_json::{Value as Json, json};
use sha2::Digest as _;

use super::graphql::{entity_of, text};
use crate::AppState;
use crate::auth::{Caller, Need};
use crate::service::blocking;

/// Where a draft's files wait for its commit, in its run's files.
const STAGING: &str = ".wandb-artifacts";
const MANIFEST: &str = "wandb_manifest.json";

/// The arguments: wandb-core sends some mutations' variables whole, others as one `input`.
fn args(vars: &Json) -> &Json {
    vars.get("input").filter(|v| v.is_object()).unwrap_or(vars)
}

fn bad(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidValue, message)
}

/// What `CreateArtifact` was asked for, carried in the draft's id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    entity: String,
    project: String,
    run: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    aliases: Vec<String>,
    description: Option<String>,
    metadata: Map,
}

impl Draft {
    fn run_path(&self) -> RunPath {
        RunPath::new(self.entity.as_str(), self.project.as_str(), self.run.as_str())
    }
}

/// The staging folder of a draft id: short, and the same for the same id.
fn staging(id: &str) -> String {
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{STAGING}/{hex}/")
}

async fn draft_of(state: &AppState, id: &str) -> Result<Draft, CodedError> {
    let payload = super::uploads::verify(state, id).await?.ok_or_else(|| bad(format!("artifact {id:?} is not a draft this server made")))?;
    serde_json::from_slice(&payload).map_err(|_| bad(format!("artifact {id:?} is not a draft this server made")))
}

/// What a lookup by name found: the version, or which part of its name is not there.
enum Found {
    Version(Box<ArtifactInfo>),
    NoArtifact,
    NoProject,
}

/// The version that `vars` name (`entity`/`project` under the names given, and `name:version`,
/// or `name` and `version` apart), once the caller may read it.
async fn named_version(state: &AppState, caller: &Caller, vars: &Json, [entity, project]: [&str; 2], name_and_version: Option<[&str; 2]>) -> Result<Found, CodedError> {
    let entity = entity_of(state, caller, text(vars, entity));
    let project = text(vars, project).unwrap_or("uncategorized").to_owned();
    let (name, version) = match name_and_version {
        Some([n, v]) => (text(vars, n).ok_or_else(|| bad(format!("the request needs ${n}")))?.to_owned(), text(vars, v).unwrap_or("latest").to_owned()),
        None => {
            let full = text(vars, "name").unwrap_or_default();
            let (n, v) = full.rsplit_once(':').unwrap_or((full, "latest"));
            (n.to_owned(), v.to_owned())
        }
    };
    state.authorize(caller, &entity, Some(&project), Need::Read).await?;
    let store = state.store.clone();
    match blocking(move || store.get_artifact(&entity, &project, &name, &version)).await {
        Ok(info) => Ok(Found::Version(Box::new(info))),
        Err(e) if matches!(e.code, ErrorCode::ArtifactNotFound) => Ok(Found::NoArtifact),
        Err(e) if matches!(e.code, ErrorCode::ProjectNotFound | ErrorCode::EntityNotFound) => Ok(Found::NoProject),
        Err(e) => Err(e),
    }
}

/// `ArtifactType`: the type of an artifact by `name:version`, or none (the client then takes its
/// own).
pub(crate) async fn artifact_type(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    Ok(match named_version(state, caller, vars, ["entity", "project"], None).await? {
        Found::Version(info) => json!({"project": {"artifact": {"artifactType": {"name": info.kind}}}}),
        Found::NoArtifact | Found::NoProject => json!({"project": null}),
    })
}

/// `CreateArtifact`: a draft of a version, whose id is the draft, signed.
pub(crate) async fn create(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let input = args(vars);
    let entity = entity_of(state, caller, text(input, "entityName"));
    let project = text(input, "projectName").unwrap_or("uncategorized").to_owned();
    let name = text(input, "artifactCollectionName").ok_or_else(|| bad("CreateArtifact needs artifactCollectionName"))?.to_owned();
    let kind = text(input, "artifactTypeName").ok_or_else(|| bad("CreateArtifact needs artifactTypeName"))?.to_owned();
    // An artifact made outside a run (the public API's `Artifact.save()`) has none: not taken.
    let run = text(input, "runName").ok_or_else(|| bad("artifacts logged outside a run are not taken from the wandb client; log it in a run"))?.to_owned();
    cairn_types::artifacts::validate_artifact_name(&name)?;
    state.authorize(caller, &entity, Some(&project), Need::Write).await?;
    let aliases =
        input.get("aliases").and_then(Json::as_array).map(|a| a.iter().filter_map(|x| text(x, "alias").map(str::to_owned)).filter(|a| a != "latest").collect()).unwrap_or_default();
    // The metadata comes as a JSON string.
    let metadata = match input.get("metadata") {
        Some(Json::String(s)) if !s.is_empty() => match serde_json::from_str::<Json>(s) {
            Ok(v @ Json::Object(_)) => match Value::from_json(&v) {
                Value::Map(m) => m,
                _ => Map::new(),
            },
            _ => return Err(bad("the artifact's metadata is not a JSON object")),
        },
        _ => Map::new(),
    };
    let draft = Draft { entity, project, run, kind, name, aliases, description: text(input, "description").map(str::to_owned), metadata };
    let path = draft.run_path();
    path.validate()?;
    super::graphql::get_run(state, &path).await?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, format!("run {path} not found")))?;
    let id = super::uploads::sign(state, &serde_json::to_vec(&draft).expect("a draft serializes")).await?;
    Ok(json!({"createArtifact": {"artifact": {"id": id, "state": "PENDING", "artifactSequence": {"latestArtifact": null}}}}))
}

/// `CreateArtifactManifest`: where the manifest goes (asked once without, once with an upload).
pub(crate) async fn create_manifest(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let include = vars.get("includeUpload").and_then(Json::as_bool).unwrap_or(true);
    let vars = args(vars);
    let id = text(vars, "artifactID").ok_or_else(|| bad("CreateArtifactManifest needs artifactID"))?;
    let draft = draft_of(state, id).await?;
    state.authorize(caller, &draft.entity, Some(&draft.project), Need::Write).await?;
    let url = super::uploads::upload_url(state, base, &draft.run_path(), &format!("{}{MANIFEST}", staging(id))).await?;
    let file = if include { json!({"id": format!("{id}/manifest"), "uploadUrl": url, "uploadHeaders": []}) } else { json!({"id": format!("{id}/manifest")}) };
    Ok(json!({"createArtifactManifest": {"artifactManifest": {"id": format!("{id}/manifest"), "file": file}}}))
}

/// `CreateArtifactFiles`: an upload URL for each file of drafts (into the draft's staging folder).
pub(crate) async fn create_files(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let vars = args(vars);
    let specs = vars.get("artifactFiles").and_then(Json::as_array).ok_or_else(|| bad("CreateArtifactFiles needs artifactFiles"))?;
    let mut edges = Vec::with_capacity(specs.len());
    let mut checked: Option<(String, Draft)> = None;
    for spec in specs {
        let id = text(spec, "artifactID").ok_or_else(|| bad("each of artifactFiles needs artifactID"))?;
        let name = text(spec, "name").ok_or_else(|| bad("each of artifactFiles needs name"))?;
        if checked.as_ref().is_none_or(|(known, _)| known != id) {
            let draft = draft_of(state, id).await?;
            state.authorize(caller, &draft.entity, Some(&draft.project), Need::Write).await?;
            checked = Some((id.to_owned(), draft));
        }
        let (_, draft) = checked.as_ref().expect("just set");
        let staged = format!("{}{name}", staging(id));
        if crate::api::validate_file_path(name).is_err() {
            return Err(bad(format!("artifact file {name:?}: a path must be relative, without '.', '..', empty segments or backslashes")));
        }
        let url = super::uploads::upload_url(state, base, &draft.run_path(), &staged).await?;
        edges.push(json!({"node": {"storagePath": staged, "uploadUrl": url, "uploadHeaders": [], "uploadMultipartUrls": null, "artifact": {"id": id}}}));
    }
    Ok(json!({"createArtifactFiles": {"files": {"edges": edges}}}))
}

/// `CommitArtifact`: the version, from the manifest and the contents that arrived.
pub(crate) async fn commit(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let vars = args(vars);
    let id = text(vars, "artifactID").ok_or_else(|| bad("CommitArtifact needs artifactID"))?;
    let draft = draft_of(state, id).await?;
    state.authorize(caller, &draft.entity, Some(&draft.project), Need::Write).await?;
    let path = draft.run_path();
    let prefix = staging(id);
    let (store, p) = (state.store.clone(), path.clone());
    let staged: std::collections::HashMap<String, (String, u64)> =
        blocking(move || store.list_run_files(&p)).await?.into_iter().filter_map(|f| f.path.strip_prefix(&prefix).map(|rest| (rest.to_owned(), (f.sha256, f.size)))).collect();
    let (manifest_sha, _) = staged.get(MANIFEST).cloned().ok_or_else(|| bad(format!("artifact {}: its manifest was not uploaded", draft.name)))?;
    let store = state.store.clone();
    let bytes = blocking(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut store.open_content(&manifest_sha)?, &mut out).map_err(|e| CodedError::new(ErrorCode::Internal, format!("reading the manifest: {e}")))?;
        Ok(out)
    })
    .await?;
    let manifest: Json = serde_json::from_slice(&bytes).map_err(|e| bad(format!("artifact {}: its manifest is not JSON: {e}", draft.name)))?;
    let contents = manifest.get("contents").and_then(Json::as_object).ok_or_else(|| bad(format!("artifact {}: its manifest has no contents", draft.name)))?;
    let mut entries = Vec::with_capacity(contents.len());
    for (entry_path, entry) in contents {
        let size = entry.get("size").and_then(Json::as_u64).unwrap_or(0);
        if let Some(reference) = text(entry, "ref") {
            entries.push(ManifestEntry { path: entry_path.clone(), digest: text(entry, "digest").unwrap_or_default().to_owned(), size, reference: Some(reference.to_owned()) });
            continue;
        }
        let (sha, stored_size) = staged.get(entry_path).cloned().ok_or_else(|| bad(format!("artifact {}: the file {entry_path} was not uploaded", draft.name)))?;
        if stored_size != size {
            return Err(bad(format!("artifact {}: {entry_path} arrived with {stored_size} bytes, the manifest says {size}", draft.name)));
        }
        entries.push(ManifestEntry { path: entry_path.clone(), digest: sha, size, reference: None });
    }
    let request = CommitArtifact {
        name: draft.name.clone(),
        kind: draft.kind.clone(),
        description: draft.description.clone(),
        metadata: draft.metadata.clone(),
        aliases: draft.aliases.clone(),
        entries,
        run_id: Some(draft.run.clone()),
    };
    let info = state.commit_artifact(caller, draft.entity.clone(), draft.project.clone(), request).await?;
    let (store, prefix) = (state.store.clone(), staging(id));
    blocking(move || store.remove_run_files(&path, &prefix)).await?;
    Ok(json!({"commitArtifact": {"artifact": {"id": id, "digest": info.digest}}}))
}

/// A committed version's id in W&B's shapes: `entity/project/name:vN`.
fn version_id(info: &ArtifactInfo) -> String {
    info.qualified()
}

/// The version an id names: a committed version's (`entity/project/name:vN`), or a draft's once
/// committed (its name's latest).
async fn version_of(state: &AppState, id: &str) -> Result<ArtifactInfo, CodedError> {
    let (entity, project, name, version) = match ArtifactRef::parse(id) {
        Ok(ArtifactRef { entity: Some(e), project: Some(p), name, version }) => (e, p, name, version),
        _ => {
            let draft = draft_of(state, id).await?;
            (draft.entity, draft.project, draft.name, "latest".to_owned())
        }
    };
    let store = state.store.clone();
    blocking(move || store.get_artifact(&entity, &project, &name, &version)).await
}

/// A project as both clients' fragments read it (0.2x `entity { name }`, 0.19 `entityName`).
fn project_info(entity: &str, project: &str) -> Json {
    json!({"id": format!("{entity}/{project}"), "internalId": format!("{entity}/{project}"), "name": project, "entity": {"name": entity}, "entityName": entity})
}

/// A version as the public API's `ArtifactFragment` reads it; `manifest`, the URL of its
/// manifest, for 0.19's fragment (which asks for it in the same query).
fn artifact_fragment(info: &ArtifactInfo, manifest: Option<String>) -> Json {
    let project = project_info(&info.entity, &info.project);
    let collection = json!({"__typename": "ArtifactSequence", "name": info.name, "project": project});
    let aliases: Vec<Json> =
        info.aliases.iter().map(|a| json!({"__typename": "ArtifactAlias", "id": format!("{}:{a}", info.name), "alias": a, "artifactCollection": collection})).collect();
    json!({
        "__typename": "Artifact",
        "id": version_id(info),
        "artifactSequence": collection,
        "versionIndex": info.version_index,
        "artifactType": {"name": info.kind},
        "description": info.description,
        "metadata": Value::Map(info.metadata.clone()).to_json().to_string(),
        "ttlDurationSeconds": -2,
        "ttlIsInherited": true,
        "tags": [],
        "historyStep": null,
        "state": "COMMITTED",
        "size": info.size,
        "digest": info.digest,
        "digestAlgorithm": "MANIFEST_MD5",
        "commitHash": info.digest.get(..12),
        "fileCount": info.file_count,
        "createdAt": info.created_at.to_rfc3339(),
        "updatedAt": info.created_at.to_rfc3339(),
        "aliases": aliases,
        "currentManifest": manifest.map(|url| json!({"file": {"directUrl": url}})),
    })
}

/// `ArtifactMembershipByName` (`run.use_artifact("name:alias")`, `Api().artifact(...)`): a
/// version by name and version or alias.
pub(crate) async fn membership_by_name(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let membership = match named_version(state, caller, vars, ["entity", "project"], None).await? {
        Found::Version(info) => {
            let fragment = artifact_fragment(&info, None);
            json!({
                "__typename": "ArtifactCollectionMembership",
                "id": version_id(&info),
                "versionIndex": info.version_index,
                "createdAt": info.created_at.to_rfc3339(),
                "aliases": fragment["aliases"].as_array().map(|a| a.iter().map(|x| json!({"__typename": "ArtifactAlias", "id": x["id"], "alias": x["alias"]})).collect::<Vec<_>>()),
                "artifactCollection": fragment["artifactSequence"],
                "artifact": fragment,
            })
        }
        Found::NoArtifact => Json::Null,
        Found::NoProject => return Ok(json!({"project": null})),
    };
    Ok(json!({"project": {"artifactCollectionMembership": membership}}))
}

/// `ArtifactByName` (0.19's `use_artifact` and `Api().artifact`): a version by `name:version`.
pub(crate) async fn by_name(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    Ok(match named_version(state, caller, vars, ["entityName", "projectName"], None).await? {
        Found::Version(info) => {
            let url = format!("{}/manifest", download_base(state, base, &info).await?);
            json!({"project": {"artifact": artifact_fragment(&info, Some(url))}})
        }
        Found::NoArtifact => json!({"project": {"artifact": null}}),
        Found::NoProject => json!({"project": null}),
    })
}

/// `UseArtifact`: the run uses the version (an input in its lineage).
pub(crate) async fn use_artifact(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let input = args(vars);
    let id = text(input, "artifactID").ok_or_else(|| bad("UseArtifact needs artifactID"))?;
    let path = super::graphql::named_run(state, caller, input, ["entityName", "projectName"], &["runName"], Need::Write).await?;
    let info = version_of(state, id).await?;
    state.authorize(caller, &info.entity, Some(&info.project), Need::Read).await?;
    let reference = ArtifactRef { entity: Some(info.entity.clone()), project: Some(info.project.clone()), name: info.name.clone(), version: info.version.clone() };
    let store = state.store.clone();
    blocking(move || store.use_artifact(&path, &reference)).await?;
    Ok(json!({"useArtifact": {"artifact": {"id": version_id(&info)}}}))
}

/// How long a download URL of a version works.
const DOWNLOAD_FOR_SECS: i64 = 24 * 3600;

/// A signed URL prefix for downloads of `info`: `<base>/wandb-artifacts/<token>`.
async fn download_base(state: &AppState, base: &str, info: &ArtifactInfo) -> Result<String, CodedError> {
    let expires = cairn_types::Timestamp::now().as_secs_f64() as i64 + DOWNLOAD_FOR_SECS;
    let payload = format!("{}\n{}\n{}\n{}\n{expires}", info.entity, info.project, info.name, info.version);
    Ok(format!("{base}/wandb-artifacts/{}", super::uploads::sign(state, payload.as_bytes()).await?))
}

/// The version a download token names, if it is one this server signed and it has not expired.
async fn download_token(state: &AppState, token: &str) -> Result<ArtifactInfo, CodedError> {
    let refused = || CodedError::new(ErrorCode::InvalidValue, "this download URL is not one cairn made, or has expired; ask for a new one");
    let payload = super::uploads::verify(state, token).await?.ok_or_else(refused)?;
    let text = String::from_utf8(payload).map_err(|_| refused())?;
    let parts: Vec<&str> = text.split('\n').collect();
    let [entity, project, name, version, expires] = parts.as_slice() else { return Err(refused()) };
    if expires.parse::<i64>().map_or(true, |e| e < cairn_types::Timestamp::now().as_secs_f64() as i64) {
        return Err(refused());
    }
    let (store, e, p, n, v) = (state.store.clone(), entity.to_string(), project.to_string(), name.to_string(), version.to_string());
    blocking(move || store.get_artifact(&e, &p, &n, &v)).await
}

/// `FetchArtifactManifest`: where the client gets the version's manifest.
pub(crate) async fn fetch_manifest(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let id = text(vars, "id").ok_or_else(|| bad("FetchArtifactManifest needs id"))?;
    let info = version_of(state, id).await?;
    state.authorize(caller, &info.entity, Some(&info.project), Need::Read).await?;
    let url = format!("{}/manifest", download_base(state, base, &info).await?);
    Ok(json!({"artifact": {"currentManifest": {"file": {"directUrl": url}}}}))
}

/// A W&B manifest (version 1) of a version: each stored file by its MD5 (base64, which cairn
/// does not keep, so it is computed here, reading each content once) and size, each reference as
/// it was given.
#[utoipa::path(get, path = "/wandb-artifacts/{token}/manifest", tag = "wandb", operation_id = "wandb_artifact_manifest",
    params(("token" = String, Path, description = "What FetchArtifactManifest handed out: the version and an expiry, signed")),
    responses((status = 200, description = "The manifest as the wandb client reads it", body = Object),
        (status = 400, description = "The URL is forged or expired", body = cairn_types::ErrorBody), (status = 404, body = cairn_types::ErrorBody)))]
pub async fn manifest(
    axum::extract::State(state): axum::extract::State<AppState>,
    crate::error::PathParams(token): crate::error::PathParams<String>,
) -> crate::error::ApiResult<axum::Json<Json>> {
    use base64::Engine as _;
    use md5::Digest as _;
    let info = download_token(&state, &token).await?;
    let store = state.store.clone();
    let contents = blocking(move || {
        let entries = store.artifact_manifest(&info.entity, &info.project, &info.name, &info.version)?;
        let mut contents = serde_json::Map::new();
        for e in entries {
            let entry = match &e.reference {
                Some(reference) => json!({"digest": e.digest, "size": e.size, "ref": reference}),
                None => {
                    let mut reader = store.open_content(&e.digest)?;
                    let mut hasher = md5::Md5::new();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = std::io::Read::read(&mut reader, &mut buf).map_err(|err| CodedError::new(ErrorCode::Internal, format!("reading {}: {err}", e.path)))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    json!({"digest": base64::engine::general_purpose::STANDARD.encode(hasher.finalize()), "size": e.size})
                }
            };
            contents.insert(e.path, entry);
        }
        Ok(contents)
    })
    .await?;
    Ok(axum::Json(json!({"version": 1, "storagePolicy": "wandb-storage-policy-v1", "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents})))
}

/// A file of a version, by its path in the version.
#[utoipa::path(get, path = "/wandb-artifacts/{token}/files/{file_path}", tag = "wandb", operation_id = "wandb_artifact_file",
    params(("token" = String, Path, description = "What the download URL queries handed out, signed"), ("file_path" = String, Path, description = "The file's path in the version, may contain /")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream"),
        (status = 400, description = "The URL is forged or expired", body = cairn_types::ErrorBody), (status = 404, body = cairn_types::ErrorBody)))]
pub async fn file(
    axum::extract::State(state): axum::extract::State<AppState>,
    crate::error::PathParams((token, file_path)): crate::error::PathParams<(String, String)>,
) -> crate::error::ApiResult<axum::response::Response> {
    let info = download_token(&state, &token).await?;
    let (store, path) = (state.store.clone(), file_path.clone());
    let entry = blocking(move || store.artifact_entry(&info.entity, &info.project, &info.name, &info.version, &path)).await?;
    if !entry.stored() {
        return Err(CodedError::new(ErrorCode::InvalidValue, format!("{file_path} is a reference to {}, not stored here", entry.reference.unwrap_or_default())).into());
    }
    crate::api::stream_blob(&state, entry.digest, entry.size, &entry.path).await
}

/// A page of a version's files with their download URLs, as the `files` connection reads it.
async fn files_page(state: &AppState, base: &str, info: &ArtifactInfo, vars: &Json) -> Result<Json, CodedError> {
    let prefix = download_base(state, base, info).await?;
    let (store, i) = (state.store.clone(), info.clone());
    let stored: Vec<ManifestEntry> =
        blocking(move || store.artifact_manifest(&i.entity, &i.project, &i.name, &i.version)).await?.into_iter().filter(ManifestEntry::stored).collect();
    let after: usize = text(vars, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let per_page = vars.get("perPage").and_then(Json::as_u64).unwrap_or(1000).clamp(1, 10_000) as usize;
    let page: Vec<Json> = stored
        .iter()
        .skip(after)
        .take(per_page)
        .map(|e| {
            let encoded: Vec<String> = e.path.split('/').map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")).collect();
            json!({"node": {"__typename": "File", "name": e.path, "directUrl": format!("{prefix}/files/{}", encoded.join("/"))}})
        })
        .collect();
    let end = after + page.len();
    Ok(json!({"pageInfo": {"__typename": "PageInfo", "hasNextPage": end < stored.len(), "endCursor": end.to_string()}, "edges": page}))
}

/// `ArtifactFileURLs` (wandb-core's downloads): a URL for each file of a version by its id.
pub(crate) async fn file_urls(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let id = text(vars, "id").ok_or_else(|| bad("ArtifactFileURLs needs id"))?;
    let info = version_of(state, id).await?;
    state.authorize(caller, &info.entity, Some(&info.project), Need::Read).await?;
    Ok(json!({"artifact": {"files": files_page(state, base, &info, vars).await?}}))
}

/// `GetArtifactMembershipFileUrls` (the Python client's downloads): the same, by collection and
/// version or alias.
pub(crate) async fn membership_file_urls(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let info = match named_version(state, caller, vars, ["entity", "project"], Some(["collection", "alias"])).await? {
        Found::Version(info) => info,
        Found::NoArtifact | Found::NoProject => return Ok(json!({"project": {"artifactCollection": null}})),
    };
    let files = files_page(state, base, &info, vars).await?;
    Ok(json!({"project": {"artifactCollection": {"__typename": "ArtifactSequence", "artifactMembership": {"files": files}}}}))
}
