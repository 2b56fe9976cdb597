//! Artifacts: versioned collections of files (datasets, models) with lineage. A collection is a
//! name with a type in a project; its versions `v0, v1, …` are numbered by the server when they
//! are committed, each with a manifest (path, digest, size, and a URI for references). A version
//! is identified by its manifest's digest: logging the same content again is the same version.

use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};
use crate::time::Timestamp;
use crate::value::Map;

/// The alias that follows the newest version of a collection.
pub const LATEST: &str = "latest";

/// One file of a version: stored (its SHA-256 is `digest`) or a reference (`reference` is the
/// URI; `digest` what identifies its content there: a SHA-256, an ETag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestEntry {
    pub path: String,
    pub digest: String,
    pub size: u64,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl ManifestEntry {
    /// Whether the bytes are in the blob store (not a reference).
    pub fn stored(&self) -> bool {
        self.reference.is_none()
    }
}

/// The digest of a manifest: SHA-256 over its entries sorted by path, one line each
/// (`path \t digest \t size \t ref \n`). What the client and the server both compute.
pub fn manifest_digest(entries: &[ManifestEntry]) -> String {
    use sha2::Digest as _;
    let mut sorted: Vec<&ManifestEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = sha2::Sha256::new();
    for e in sorted {
        hasher.update(format!("{}\t{}\t{}\t{}\n", e.path, e.digest, e.size, e.reference.as_deref().unwrap_or("")).as_bytes());
    }
    crate::hex(&hasher.finalize())
}

/// Checks an artifact's name: 1 to 128 characters of letters, digits, `-`, `_` and `.`.
pub fn validate_artifact_name(name: &str) -> Result<(), CodedError> {
    let ok = !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && name != "." && name != "..";
    if !ok {
        return Err(CodedError::new(ErrorCode::InvalidName, format!("artifact name {name:?} must be 1 to 128 letters, digits, '-', '_' or '.'")));
    }
    Ok(())
}

/// Checks an alias a user gives: not empty, no `:` or `/`, and not a version (`v3`), which
/// the server assigns.
pub fn validate_alias(alias: &str) -> Result<(), CodedError> {
    if alias.is_empty() || alias.len() > 128 || alias.contains([':', '/']) || alias.chars().any(char::is_control) {
        return Err(CodedError::new(ErrorCode::InvalidName, format!("alias {alias:?} must be 1 to 128 characters without ':' or '/'")));
    }
    if version_index(alias).is_some() {
        return Err(CodedError::new(ErrorCode::InvalidName, format!("alias {alias:?} looks like a version; versions are numbered by the server")));
    }
    Ok(())
}

/// `v3` → 3.
pub fn version_index(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('v')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

/// Checks a manifest's paths: relative, `/`-separated, no `.` or `..` segments, each path once.
pub fn validate_entries(entries: &[ManifestEntry]) -> Result<(), CodedError> {
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        let bad = e.path.is_empty()
            || e.path.len() > 1024
            || e.path.starts_with('/')
            || e.path.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            || e.path.chars().any(|c| c.is_control() || c == '\\');
        if bad {
            return Err(CodedError::new(ErrorCode::InvalidValue, format!("artifact path {:?} must be relative, without '.', '..', empty segments or backslashes", e.path)));
        }
        if !seen.insert(e.path.as_str()) {
            return Err(CodedError::new(ErrorCode::InvalidValue, format!("artifact path {:?} is listed twice", e.path)));
        }
        if e.stored() && !(e.digest.len() == 64 && e.digest.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())) {
            return Err(CodedError::new(ErrorCode::InvalidValue, format!("entry {:?}: digest {:?} is not a SHA-256 in lowercase hex", e.path, e.digest)));
        }
    }
    Ok(())
}

/// A name with a version or an alias: `name:v3`, `name:latest`, `name` (latest), optionally
/// after `entity/project/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    pub entity: Option<String>,
    pub project: Option<String>,
    pub name: String,
    /// A version (`v3`) or an alias.
    pub version: String,
}

impl ArtifactRef {
    pub fn parse(text: &str) -> Result<ArtifactRef, CodedError> {
        let (path, version) = match text.rsplit_once(':') {
            Some((path, version)) if !version.is_empty() => (path, version.to_owned()),
            Some(_) => return Err(CodedError::new(ErrorCode::InvalidName, format!("{text:?}: nothing after ':' (give name:alias or name:v3)"))),
            None => (text, LATEST.to_owned()),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (entity, project, name) = match parts.as_slice() {
            [name] => (None, None, *name),
            [project, name] => (None, Some((*project).to_owned()), *name),
            [entity, project, name] => (Some((*entity).to_owned()), Some((*project).to_owned()), *name),
            _ => return Err(CodedError::new(ErrorCode::InvalidName, format!("{text:?} is not [entity/][project/]name[:alias]"))),
        };
        validate_artifact_name(name)?;
        Ok(ArtifactRef { entity, project, name: name.to_owned(), version })
    }
}

/// `POST /api/v1/projects/{entity}/{project}/artifacts`: commits a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommitArtifact {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map,
    /// Moved to this version (`latest` moves by itself to the newest).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub entries: Vec<ManifestEntry>,
    /// The run of this project that logs it (its output), if any.
    #[serde(default)]
    pub run_id: Option<String>,
}

/// A version of an artifact, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactInfo {
    pub entity: String,
    pub project: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `v0`, `v1`, …
    pub version: String,
    pub version_index: u64,
    pub digest: String,
    /// Bytes of its files, references included.
    pub size: u64,
    pub file_count: u64,
    pub aliases: Vec<String>,
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map,
    pub created_at: Timestamp,
    /// The run that logged it (`entity/project/run_id`), if any.
    pub logged_by: Option<String>,
}

impl ArtifactInfo {
    /// `entity/project/name:vN`.
    pub fn qualified(&self) -> String {
        format!("{}/{}/{}:{}", self.entity, self.project, self.name, self.version)
    }
}

/// A collection: a name and a type, with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionInfo {
    pub entity: String,
    pub project: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version_count: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The artifacts of a run: what it used and what it logged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunArtifacts {
    pub inputs: Vec<ArtifactInfo>,
    pub outputs: Vec<ArtifactInfo>,
}

/// `PUT .../aliases`: the aliases of a version (`latest` is the server's).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetAliases {
    pub aliases: Vec<String>,
}

/// `POST /api/v1/runs/{entity}/{project}/{run_id}/artifacts/used`: a run uses a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UseArtifact {
    /// `[entity/project/]name[:alias|:vN]`; entity and project default to the run's.
    pub artifact: String,
}

/// The runs around a version: the one that logged it and those that used it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactLineage {
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub logged_by: Option<String>,
    pub used_by: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, digest: &str) -> ManifestEntry {
        ManifestEntry { path: path.into(), digest: digest.into(), size: 1, reference: None }
    }

    #[test]
    fn digests_ignore_order_and_see_every_field() {
        let (a, b) = (entry("a", &"1".repeat(64)), entry("b", &"2".repeat(64)));
        assert_eq!(manifest_digest(&[a.clone(), b.clone()]), manifest_digest(&[b.clone(), a.clone()]));
        let mut bigger = b.clone();
        bigger.size = 2;
        assert_ne!(manifest_digest(&[a.clone(), b.clone()]), manifest_digest(&[a.clone(), bigger]));
        let mut referenced = b.clone();
        referenced.reference = Some("s3://bucket/b".into());
        assert_ne!(manifest_digest(&[a.clone(), b]), manifest_digest(&[a, referenced]));
    }

    #[test]
    fn refs_names_aliases_and_paths() {
        let r = ArtifactRef::parse("lab/p/mnist:v3").unwrap();
        assert_eq!((r.entity.as_deref(), r.project.as_deref(), r.name.as_str(), r.version.as_str()), (Some("lab"), Some("p"), "mnist", "v3"));
        assert_eq!(ArtifactRef::parse("mnist").unwrap().version, "latest");
        assert!(ArtifactRef::parse("a/b/c/d:v1").is_err() && ArtifactRef::parse("bad name:v1").is_err() && ArtifactRef::parse("x:").is_err());
        assert_eq!(version_index("v12"), Some(12));
        assert_eq!(version_index("v012"), None);
        assert!(validate_alias("best").is_ok() && validate_alias("v2").is_err() && validate_alias("a:b").is_err());
        assert!(validate_entries(&[entry("a/b.txt", &"a".repeat(64))]).is_ok());
        assert!(validate_entries(&[entry("../x", &"a".repeat(64))]).is_err());
        assert!(validate_entries(&[entry("x", "nothex")]).is_err());
        assert!(validate_entries(&[entry("x", &"a".repeat(64)), entry("x", &"b".repeat(64))]).is_err());
    }
}
