//! The service layer: what the server does for a request, whatever transport it came by. It holds
//! the store (with its blobs and leases) and the event hub, runs store work off the async threads,
//! publishes the events a change makes, and claims uploads across servers. The REST handlers
//! (`api`) parse and answer HTTP around these calls; other endpoints (GraphQL, file_stream) reuse
//! them as they are.

use std::sync::Arc;

use cairn_store::Store;
use cairn_types::api::{FileInfo, FinishRequest, HeartbeatReply, IngestAck, RunInfo, RunPatch, UpsertRunRequest};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::wire::IngestBatch;
use cairn_types::{RunPath, Timestamp};

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::events::{publish, publish_run};

pub type ServiceResult<T> = Result<T, CodedError>;

/// Runs store work on the blocking pool.
pub async fn blocking<R: Send + 'static>(work: impl FnOnce() -> ServiceResult<R> + Send + 'static) -> ServiceResult<R> {
    tokio::task::spawn_blocking(work).await.map_err(|_| CodedError::new(ErrorCode::Internal, "internal error while handling the request (a bug)"))?
}

impl AppState {
    fn store_ref(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Notes who did what in the audit log. A failure is logged, not returned: what was done
    /// is done.
    fn audit(&self, caller: &Caller, action: &'static str, target: String, detail: String) -> impl Future<Output = ()> + use<> {
        let (store, actor) = (self.store_ref(), caller.actor().to_owned());
        async move {
            let what = format!("{action} {target}");
            if let Err(e) = blocking(move || store.record_audit(&actor, action, &target, &detail, Timestamp::now())).await {
                tracing::warn!("the audit log missed {what}: {}", e.message);
            }
        }
    }

    /// Creates or resumes a run. A run that names no entity goes to the caller's own.
    pub async fn upsert_run(&self, caller: &Caller, mut request: UpsertRunRequest) -> ServiceResult<RunInfo> {
        if request.entity.is_none()
            && let Some(p) = caller.principal()
        {
            request.entity = Some(p.user.clone());
        }
        let entity = request.entity.clone().unwrap_or_else(|| self.config.default_entity.clone());
        self.authorize(caller, &entity, None, Need::Write).await?;
        let store = self.store_ref();
        let run = blocking(move || store.upsert_run(request, Timestamp::now())).await?;
        publish_run(self, "started", &run);
        Ok(run)
    }

    pub async fn update_run(&self, path: RunPath, patch: RunPatch) -> ServiceResult<RunInfo> {
        let store = self.store_ref();
        let run = blocking(move || store.update_run(&path, patch)).await?;
        publish_run(self, "updated", &run);
        Ok(run)
    }

    pub async fn delete_run(&self, caller: &Caller, path: RunPath) -> ServiceResult<()> {
        let (store, deleted) = (self.store_ref(), path.clone());
        blocking(move || store.delete_run(&path)).await?;
        publish(self, "deleted", &deleted, None, None);
        self.audit(caller, "run.delete", deleted.to_string(), String::new()).await;
        Ok(())
    }

    /// Removes a run for good, then the contents nothing names any more.
    pub async fn purge_run(&self, caller: &Caller, path: RunPath) -> ServiceResult<()> {
        let (store, purged) = (self.store_ref(), path.clone());
        blocking(move || purge(store.as_ref(), &path)).await?;
        publish(self, "deleted", &purged, None, None);
        self.audit(caller, "run.purge", purged.to_string(), String::new()).await;
        Ok(())
    }

    /// Moves runs, all or none. The caller writes to the target; within an entity they write
    /// to the sources, and out of one they administer it: a run taken elsewhere is out of its
    /// team's hands (a member could otherwise move a team's runs to their own entity and purge
    /// them there).
    pub async fn move_runs(&self, caller: &Caller, paths: Vec<RunPath>, entity: String, project: String) -> ServiceResult<Vec<RunPath>> {
        self.authorize(caller, &entity, None, Need::Write).await?;
        for path in &paths {
            let need = if path.entity == entity { Need::Write } else { Need::Admin };
            self.authorize(caller, &path.entity, None, need).await?;
        }
        let (store, sources, target) = (self.store_ref(), paths.clone(), format!("{entity}/{project}"));
        let moved = blocking(move || store.move_runs(&paths, &entity, &project, Timestamp::now())).await?;
        for (from, to) in sources.iter().zip(&moved) {
            publish(self, "deleted", from, None, None);
            publish(self, "created", to, None, None);
            self.audit(caller, "run.move", from.to_string(), format!("to {target}")).await;
        }
        Ok(moved)
    }

    /// Makes an API key for `user`.
    pub async fn create_api_key(&self, actor: &str, user: &str, request: cairn_types::accounts::CreateKey) -> ServiceResult<cairn_types::accounts::CreatedKey> {
        let (store, actor, user) = (self.store_ref(), actor.to_owned(), user.to_owned());
        blocking(move || {
            let now = Timestamp::now();
            if request.expires_days.is_some_and(|d| d == 0 || d > 36_500) {
                return Err(CodedError::new(ErrorCode::InvalidValue, "expires_days is a number of days from 1 to 36500"));
            }
            let expires = request.expires_days.map(|d| Timestamp(now.micros() + d as i64 * 86_400_000_000));
            let (key, secret) = store.create_api_key(&user, &request.name, expires, now)?;
            store.record_audit(&actor, "key.create", &user, &format!("key {} {:?} ({}...)", key.id, key.name, key.prefix), now)?;
            Ok(cairn_types::accounts::CreatedKey { key, secret })
        })
        .await
    }

    /// Revokes a key (by id or by the key itself); every server refuses it within a second.
    pub async fn revoke_api_key(&self, actor: &str, id_or_key: &str) -> ServiceResult<cairn_types::accounts::ApiKey> {
        let (store, actor, given) = (self.store_ref(), actor.to_owned(), id_or_key.to_owned());
        let key = blocking(move || {
            let key = store.revoke_api_key(&given, Timestamp::now())?;
            store.record_audit(&actor, "key.revoke", &key.user, &format!("key {} {:?} ({}...)", key.id, key.name, key.prefix), Timestamp::now())?;
            Ok(key)
        })
        .await?;
        self.credentials.forget();
        Ok(key)
    }

    /// Gives `user` a role in `team`, or takes them out of it.
    pub async fn set_role(&self, actor: &str, team: &str, user: &str, role: Option<cairn_types::accounts::Role>) -> ServiceResult<()> {
        let (store, actor, team, user) = (self.store_ref(), actor.to_owned(), team.to_owned(), user.to_owned());
        blocking(move || {
            store.set_role(&team, &user, role)?;
            let (action, detail) = match role {
                Some(role) => ("member.role", format!("{user} is {}", role.as_str())),
                None => ("member.remove", format!("{user} removed")),
            };
            store.record_audit(&actor, action, &team, &detail, Timestamp::now())
        })
        .await?;
        self.credentials.forget();
        Ok(())
    }

    /// Stores a batch; `batch` decodes it (off the async threads), given the time it arrived.
    pub async fn ingest(&self, path: RunPath, batch: impl FnOnce(Timestamp) -> ServiceResult<IngestBatch> + Send + 'static) -> ServiceResult<IngestAck> {
        let (store, event_path, now) = (self.store_ref(), path.clone(), Timestamp::now());
        let ack = blocking(move || store.ingest(&path, batch(now)?, now)).await?;
        publish(self, "logged", &event_path, None, Some(ack.offsets.history));
        Ok(ack)
    }

    pub async fn heartbeat(&self, path: RunPath) -> ServiceResult<HeartbeatReply> {
        let store = self.store_ref();
        blocking(move || store.heartbeat(&path, Timestamp::now())).await
    }

    /// Records that the run may be preempted and go silent.
    pub async fn mark_preempting(&self, path: RunPath) -> ServiceResult<RunInfo> {
        let store = self.store_ref();
        let run = blocking(move || store.mark_preempting(&path, Timestamp::now())).await?;
        publish_run(self, "updated", &run);
        Ok(run)
    }

    pub async fn finish_run(&self, path: RunPath, request: FinishRequest) -> ServiceResult<RunInfo> {
        let store = self.store_ref();
        let run = blocking(move || store.finish_run(&path, request, Timestamp::now())).await?;
        publish_run(self, "finished", &run);
        Ok(run)
    }

    /// Asks the run's client to stop.
    pub async fn stop_run(&self, path: RunPath) -> ServiceResult<RunInfo> {
        let store = self.store_ref();
        let run = blocking(move || store.request_stop(&path)).await?;
        publish_run(self, "stopped", &run);
        Ok(run)
    }

    /// Names a content uploaded before (by this run or another) as the run's file `name`. The
    /// caller must be able to read a run that names it already, or have just uploaded it whole:
    /// knowing a hash is not enough to read its content.
    pub async fn link_file(&self, caller: &Caller, path: RunPath, name: String, sha256: String) -> ServiceResult<FileInfo> {
        let store = self.store_ref();
        let (readable, actor) = (caller.readable_entities(), caller.actor().to_owned());
        blocking(move || {
            store.get_run(&path)?;
            if !may_name(store.as_ref(), &sha256, readable.as_deref(), &actor)? {
                return Err(CodedError::new(ErrorCode::Forbidden, format!("content {sha256} is in no run you can read; send its bytes (PUT the file without ?sha256=)")));
            }
            let size = store
                .content_size(&sha256)?
                .ok_or_else(|| CodedError::new(ErrorCode::FileNotFound, format!("content {sha256} is not uploaded; send it first with PUT /api/v1/uploads/{sha256}")))?;
            let info = FileInfo { path: name, size, sha256, updated_at: Timestamp::now() };
            store.put_run_file(&path, info.clone())?;
            Ok(info)
        })
        .await
    }

    /// Commits an artifact version. Its stored contents must be readable by the caller already
    /// (in a run or an artifact they read) or uploaded by them: as for a run's file, knowing a
    /// hash is not enough.
    pub async fn commit_artifact(
        &self,
        caller: &Caller,
        entity: String,
        project: String,
        request: cairn_types::artifacts::CommitArtifact,
    ) -> ServiceResult<cairn_types::artifacts::ArtifactInfo> {
        let store = self.store_ref();
        let (readable, actor) = (caller.readable_entities(), caller.actor().to_owned());
        blocking(move || {
            if let Some(readable) = &readable {
                let mut checked = std::collections::HashSet::new();
                for e in request.entries.iter().filter(|e| e.stored()) {
                    if !checked.insert(e.digest.clone()) {
                        continue;
                    }
                    if !may_name(store.as_ref(), &e.digest, Some(readable), &actor)? {
                        return Err(CodedError::new(
                            ErrorCode::Forbidden,
                            format!("{}: content {} is in nothing you can read; upload its bytes (PUT /api/v1/uploads/{})", e.path, e.digest, e.digest),
                        ));
                    }
                }
            }
            store.commit_artifact(&entity, &project, request, Timestamp::now())
        })
        .await
    }

    pub async fn set_artifact_aliases(
        &self,
        caller: &Caller,
        entity: String,
        project: String,
        name: String,
        version: String,
        aliases: Vec<String>,
    ) -> ServiceResult<cairn_types::artifacts::ArtifactInfo> {
        let store = self.store_ref();
        let info = blocking(move || store.set_artifact_aliases(&entity, &project, &name, &version, aliases)).await?;
        self.audit(caller, "artifact.aliases", info.qualified(), info.aliases.join(",")).await;
        Ok(info)
    }

    /// Deletes an artifact version, then the contents nothing names any more.
    pub async fn delete_artifact(&self, caller: &Caller, entity: String, project: String, name: String, version: String, delete_aliases: bool) -> ServiceResult<()> {
        let store = self.store_ref();
        let target = format!("{entity}/{project}/{name}:{version}");
        blocking(move || {
            let orphans = store.delete_artifact_version(&entity, &project, &name, &version, delete_aliases)?;
            if let Err(e) = store.collect_blobs(Some(&orphans)) {
                tracing::warn!("removing the contents of {entity}/{project}/{name}:{version}: {} (they are removed later)", e.message);
            }
            Ok(())
        })
        .await?;
        self.audit(caller, "artifact.delete", target, String::new()).await;
        Ok(())
    }

    /// A scratch file for a content on its way in, where the blob store wants it.
    pub async fn scratch_file(&self) -> ServiceResult<tempfile::NamedTempFile> {
        let scratch = self.store.blobs().scratch_dir();
        blocking(move || {
            match &scratch {
                Some(dir) => tempfile::NamedTempFile::new_in(dir),
                None => tempfile::NamedTempFile::new(),
            }
            .map_err(|e| crate::error::write_failed("a scratch file", e))
        })
        .await
    }

    /// Stores the content in `scratch` and names it as the run's file `name`.
    pub async fn store_file(&self, path: RunPath, name: String, scratch: tempfile::TempPath) -> ServiceResult<FileInfo> {
        let store = self.store_ref();
        blocking(move || {
            let blob = store.blobs().put_file(&scratch)?;
            drop(scratch);
            let info = FileInfo { path: name, size: blob.size, sha256: blob.sha256, updated_at: Timestamp::now() };
            store.put_run_file(&path, info.clone())?;
            Ok(info)
        })
        .await
    }

    /// Checks that the run exists (before a body is read for it).
    pub async fn require_run(&self, path: &RunPath) -> ServiceResult<()> {
        let (store, path) = (self.store_ref(), path.clone());
        blocking(move || store.get_run(&path).map(|_| ())).await
    }

    /// Claims the upload of `sha256` among every server on the store, or says another has it.
    pub async fn claim_upload(&self, sha256: &str) -> ServiceResult<Arc<UploadClaim>> {
        let (store, instance, sha256) = (self.store_ref(), self.instance.clone(), sha256.to_owned());
        Ok(Arc::new(blocking(move || UploadClaim::take(store, &instance, &sha256)).await?))
    }
}

/// Whether a caller who reads `readable` (`None`: everything: auth off, a server admin) may name
/// the content `sha256` in a run or an artifact: they can read something that names it, or
/// uploaded its bytes lately. Knowing a hash is not enough. The grant, a lookup by key, is asked
/// first.
pub(crate) fn may_name(store: &dyn Store, sha256: &str, readable: Option<&[String]>, actor: &str) -> ServiceResult<bool> {
    let Some(readable) = readable else { return Ok(true) };
    Ok(store.holds(&upload_grant(sha256, actor), actor, Timestamp::now())? || store.content_readable(sha256, Some(readable))?)
}

/// The lease that says `actor` uploaded the content `sha256` whole, lately: they may link it.
pub fn upload_grant(sha256: &str, actor: &str) -> String {
    format!("uploaded:{sha256}:{actor}")
}

/// How long an upload entitles its uploader to link the content by its hash.
pub const UPLOAD_GRANT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes a run for good, then the contents that no run names any more.
pub fn purge(store: &dyn Store, path: &RunPath) -> ServiceResult<()> {
    let orphans = store.purge_run(path)?;
    cairn_store::crash::point("purge.collect");
    // The run is gone either way; contents left behind are collected on the next pass.
    if let Err(e) = store.collect_blobs(Some(&orphans)) {
        tracing::warn!("removing the files of {path}: {} (they are removed later)", e.message);
    }
    Ok(())
}

/// One upload per content at a time, across every server on the store: a second writer would
/// interleave its bytes. The claim is a lease (`upload:<sha256>`) that the request renews while
/// its body streams; when its server dies, the lease lapses (15 s) and the client's retry, on any
/// server, takes over.
pub struct UploadClaim {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    /// Whether the lease is this request's, to release when it ends.
    held: bool,
}

/// How long an upload's claim lasts without renewal, and how often it is renewed.
const UPLOAD_LEASE: std::time::Duration = std::time::Duration::from_secs(15);
pub const UPLOAD_RENEW: std::time::Duration = std::time::Duration::from_secs(5);

impl UploadClaim {
    fn take(store: Arc<dyn Store>, instance: &str, sha256: &str) -> ServiceResult<UploadClaim> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let holder = format!("{instance}/{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut claim = UploadClaim { store, name: format!("upload:{sha256}"), holder, held: false };
        claim.held = claim.renew()?;
        if !claim.held {
            return Err(CodedError::new(ErrorCode::UploadInProgress, format!("content {sha256} is being uploaded by another request; retry")));
        }
        Ok(claim)
    }

    /// Renews the lease; false when it lapsed and another request took it.
    pub fn renew(&self) -> ServiceResult<bool> {
        self.store.try_lease(&self.name, &self.holder, Timestamp::now(), UPLOAD_LEASE)
    }
}

impl Drop for UploadClaim {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (store, name, holder) = (self.store.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.holder));
        let release = move || {
            if let Err(e) = store.release(&name, &holder) {
                tracing::warn!("releasing {name}: {} (it lapses by itself)", e.message);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}
