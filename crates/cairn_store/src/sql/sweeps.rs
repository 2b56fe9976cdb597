//! Sweeps over [`Db`]: a sweep's configuration and state, and its trials, each the run an agent
//! was handed with its parameters. The controller is this module's `next_trial`: it runs in one
//! transaction with the sweep's row locked (`FOR UPDATE` on PostgreSQL, the single writer on
//! SQLite), so any number of agents on any number of servers never get the same grid point
//! twice. A trial's state is its run's; a trial handed out whose run never started within
//! [`LOST_AFTER_MICROS`] is lost, and a crashed or lost grid point is handed out again.

use cairn_types::RunPath;
use cairn_types::Timestamp;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::sweep::{
    BestTrial, BracketDecision, ImportTrial, Iterations, Method, NextTrial, NextTrialRequest, Step, SweepConfig, SweepInfo, SweepState, TrialInfo, TrialView, best_trial, next_step,
};
use serde_json::Value as Json;

use super::{Db, Dialect, Row, SqlStore, args};
use crate::Result;

/// A trial handed out whose run has not started after this long is lost (its agent died first).
pub const LOST_AFTER_MICROS: i64 = 10 * 60 * 1_000_000;

/// How long an agent waits before it asks again, while a sweep is paused or its last trials run.
const RETRY_SECS: f64 = 2.0;

fn not_found(entity: &str, project: &str, sweep_id: &str) -> CodedError {
    CodedError::new(ErrorCode::SweepNotFound, format!("sweep {entity}/{project}/{sweep_id} not found"))
}

struct SweepRow {
    pk: i64,
    sweep_id: String,
    config: Json,
    parsed: SweepConfig,
    state: SweepState,
    created_at: i64,
}

fn sweep_row(r: &Row) -> Result<SweepRow> {
    let config: Json = serde_json::from_str(&r.string(2)?).map_err(|e| CodedError::new(ErrorCode::Internal, format!("a stored sweep's config is not JSON: {e}")))?;
    let parsed = SweepConfig::parse(&config).map_err(|e| CodedError::new(ErrorCode::Internal, format!("a stored sweep's config no longer parses: {e}")))?;
    let state = SweepState::parse(&r.string(3)?).ok_or_else(|| CodedError::new(ErrorCode::Internal, "a stored sweep's state is unknown"))?;
    Ok(SweepRow { pk: r.i64(0)?, sweep_id: r.string(1)?, config, parsed, state, created_at: r.i64(4)? })
}

const SWEEP_COLUMNS: &str = "s.sweep_pk, s.sweep_id, s.config, s.state, s.created_at";

fn load(db: &dyn Db, entity: &str, project: &str, sweep_id: &str, lock: bool) -> Result<SweepRow> {
    let lock = if lock && db.dialect() == Dialect::Postgres { " FOR UPDATE OF s" } else { "" };
    let row = db
        .opt_row(
            &format!(
                "SELECT {SWEEP_COLUMNS} FROM sweeps s JOIN projects p ON p.project_pk = s.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
                 WHERE e.name = ?1 AND p.name = ?2 AND s.sweep_id = ?3{lock}"
            ),
            args![entity, project, sweep_id],
        )?
        .ok_or_else(|| not_found(entity, project, sweep_id))?;
    sweep_row(&row)
}

/// A trial as stored, with its run's state and summary.
struct Trial {
    info: TrialInfo,
}

fn trials(db: &dyn Db, sweep: &SweepRow, now: Timestamp) -> Result<Vec<Trial>> {
    let metric = sweep.parsed.metric.as_ref().map(|m| m.name.clone());
    db.query(
        "SELECT t.seq, t.run_id, t.params, t.agent, t.assigned_at, t.grid_index, r.state, r.summary
         FROM sweep_trials t JOIN sweeps s ON s.sweep_pk = t.sweep_pk
         LEFT JOIN runs r ON r.project_pk = s.project_pk AND r.run_id = t.run_id AND r.deleted_at IS NULL
         WHERE t.sweep_pk = ?1 ORDER BY t.seq",
        args![sweep.pk],
    )?
    .iter()
    .map(|r| {
        let assigned_at = r.i64(4)?;
        let state = match r.opt_string(6)? {
            Some(s) => s,
            None if now.micros() - assigned_at > LOST_AFTER_MICROS => "lost".to_owned(),
            None => "pending".to_owned(),
        };
        let metric = match (&metric, r.opt_string(7)?) {
            (Some(name), Some(summary)) => serde_json::from_str::<Json>(&summary).ok().and_then(|s| summary_number(&s, name)),
            _ => None,
        };
        Ok(Trial {
            info: TrialInfo {
                seq: r.i64(0)? as u64,
                run_id: r.string(1)?,
                config: serde_json::from_str(&r.string(2)?).unwrap_or(Json::Null),
                state,
                agent: r.string(3)?,
                assigned_at: Timestamp(assigned_at),
                metric,
                grid_index: r.opt_i64(5)?.map(|i| i as u64),
            },
        })
    })
    .collect()
}

/// A number in a summary by a key that may be dotted (`val.loss`) or hold dots itself.
fn summary_number(summary: &Json, name: &str) -> Option<f64> {
    if let Some(v) = summary.get(name) {
        return v.as_f64();
    }
    let mut at = summary;
    for part in name.split('.') {
        at = at.get(part)?;
    }
    at.as_f64()
}

fn best(sweep: &SweepRow, trials: &[Trial]) -> Option<BestTrial> {
    best_trial(&sweep.parsed, &views(trials)).map(|(i, value)| BestTrial { run_id: trials[i].info.run_id.clone(), value })
}

fn info(entity: &str, project: &str, sweep: &SweepRow, trials: &[Trial]) -> SweepInfo {
    let count = |f: &dyn Fn(&Trial) -> bool| trials.iter().filter(|t| f(t)).count() as u64;
    SweepInfo {
        entity: entity.to_owned(),
        project: project.to_owned(),
        sweep_id: sweep.sweep_id.clone(),
        name: sweep.parsed.name.clone(),
        method: sweep.parsed.method.as_str().to_owned(),
        state: sweep.state,
        config: sweep.config.clone(),
        created_at: Timestamp(sweep.created_at),
        trials: trials.len() as u64,
        running: count(&|t| matches!(t.info.state.as_str(), "running" | "pending")),
        finished: count(&|t| t.info.state == "finished"),
        crashed: views(trials).iter().filter(|v| !v.live()).count() as u64,
        grid_size: (sweep.parsed.method == Method::Grid).then(|| sweep.parsed.grid_size()),
        best: best(sweep, trials),
    }
}

fn set_state(db: &dyn Db, sweep: &mut SweepRow, state: SweepState) -> Result<()> {
    db.execute("UPDATE sweeps SET state = ?2 WHERE sweep_pk = ?1", args![sweep.pk, state.as_str()])?;
    sweep.state = state;
    Ok(())
}

fn views(all: &[Trial]) -> Vec<TrialView> {
    all.iter().map(|t| TrialView { config: t.info.config.clone(), state: t.info.state.clone(), metric: t.info.metric, grid_index: t.info.grid_index }).collect()
}

/// The controller: the next trial for `agent`, decided under the sweep's lock.
fn next(db: &dyn Db, entity: &str, project: &str, sweep_id: &str, request: &NextTrialRequest, now: Timestamp) -> Result<NextTrial> {
    let agent = request.agent.as_str();
    let mut sweep = load(db, entity, project, sweep_id, true)?;
    let all = trials(db, &sweep, now)?;
    match sweep.state {
        SweepState::Paused => return Ok(NextTrial::Wait { reason: "the sweep is paused".into(), retry_secs: RETRY_SECS }),
        SweepState::Running => {}
        over => return Ok(NextTrial::Stop { reason: format!("the sweep is {}", over.as_str()) }),
    }
    // An agent asks only when it is idle: a trial it was handed whose run never started (the
    // answer was lost, or its server died before replying) is handed back, not a second one.
    if !agent.is_empty()
        && let Some(t) = all.iter().find(|t| t.info.agent == agent && t.info.state == "pending" && request.last.as_deref() != Some(t.info.run_id.as_str()))
    {
        return Ok(NextTrial::Run { run_id: t.info.run_id.clone(), seq: t.info.seq, config: t.info.config.clone() });
    }
    let seq = all.iter().map(|t| t.info.seq + 1).max().unwrap_or(0);
    // Seeded by the sweep and the trial's number: the same draws on every server.
    let seed = sweep.pk as u64 ^ sweep.created_at as u64 ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let (grid_index, config) = match next_step(&sweep.parsed, &views(&all), seed) {
        Step::Run { grid_index, config } => (grid_index, config),
        Step::Wait(reason) => return Ok(NextTrial::Wait { reason, retry_secs: RETRY_SECS }),
        Step::Finished(reason) => {
            set_state(db, &mut sweep, SweepState::Finished)?;
            return Ok(NextTrial::Stop { reason });
        }
    };
    let run_id = cairn_types::ids::generate_run_id();
    db.execute(
        "INSERT INTO sweep_trials (sweep_pk, seq, run_id, grid_index, params, agent, assigned_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![sweep.pk, seq as i64, run_id, grid_index.map(|i| i as i64), config.to_string(), agent, now.micros()],
    )?;
    Ok(NextTrial::Run { run_id, seq, config })
}

/// Hyperband's judgements of a sweep's trials (of one run, or all), oldest first.
fn decisions(db: &dyn Db, sweep_pk: i64, run_id: Option<&str>) -> Result<Vec<BracketDecision>> {
    let rows = match run_id {
        Some(run_id) => db.query(
            "SELECT run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at FROM sweep_decisions WHERE sweep_pk = ?1 AND run_id = ?2 ORDER BY decided_at, bracket",
            args![sweep_pk, run_id],
        )?,
        None => db.query(
            "SELECT run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at FROM sweep_decisions WHERE sweep_pk = ?1 ORDER BY decided_at, bracket, run_id",
            args![sweep_pk],
        )?,
    };
    rows.iter()
        .map(|r| {
            Ok(BracketDecision {
                run_id: r.string(0)?,
                bracket: r.i64(1)? as u64,
                value: r.f64_or(2, f64::NAN)?,
                threshold: r.f64_or(3, f64::NAN)?,
                rank: r.i64(4)? as u64,
                reached: r.i64(5)? as u64,
                kept: r.i64(6)? as u64,
                stopped: r.bool(7)?,
                decided_at: Some(Timestamp(r.i64(8)?)),
            })
        })
        .collect()
}

impl crate::SweepStore for SqlStore {
    fn create_sweep(&self, entity: &str, project: &str, config: &Json, now: Timestamp) -> Result<SweepInfo> {
        SweepConfig::parse(config).map_err(|e| CodedError::new(ErrorCode::InvalidSweep, e))?;
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        let (entity, project, config) = (entity.to_owned(), project.to_owned(), config.clone());
        self.write(move |db| {
            let project_pk = super::runs::ensure_project(db, &entity, &project, now)?;
            let sweep_id = loop {
                let id = cairn_types::ids::generate_run_id();
                if db.opt_row("SELECT 1 FROM sweeps WHERE project_pk = ?1 AND sweep_id = ?2", args![project_pk, id])?.is_none() {
                    break id;
                }
            };
            db.execute(
                "INSERT INTO sweeps (project_pk, sweep_id, config, state, created_at) VALUES (?1, ?2, ?3, 'running', ?4)",
                args![project_pk, sweep_id, config.to_string(), now.micros()],
            )?;
            let sweep = load(db, &entity, &project, &sweep_id, false)?;
            Ok(info(&entity, &project, &sweep, &[]))
        })
    }

    fn get_sweep(&self, entity: &str, project: &str, sweep_id: &str, now: Timestamp) -> Result<SweepInfo> {
        let (entity, project, sweep_id) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned());
        self.read(move |db| {
            let sweep = load(db, &entity, &project, &sweep_id, false)?;
            let all = trials(db, &sweep, now)?;
            Ok(info(&entity, &project, &sweep, &all))
        })
    }

    fn list_sweeps(&self, entity: &str, project: &str, now: Timestamp) -> Result<Vec<SweepInfo>> {
        let (entity, project) = (entity.to_owned(), project.to_owned());
        self.read(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            db.query(&format!("SELECT {SWEEP_COLUMNS} FROM sweeps s WHERE s.project_pk = ?1 ORDER BY s.created_at DESC, s.sweep_pk DESC"), args![pk])?
                .iter()
                .map(|r| {
                    let sweep = sweep_row(r)?;
                    let all = trials(db, &sweep, now)?;
                    Ok(info(&entity, &project, &sweep, &all))
                })
                .collect()
        })
    }

    fn set_sweep_state(&self, entity: &str, project: &str, sweep_id: &str, state: SweepState, now: Timestamp) -> Result<(SweepInfo, Vec<String>)> {
        let (entity, project, sweep_id) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned());
        self.write(move |db| {
            let mut sweep = load(db, &entity, &project, &sweep_id, true)?;
            match (sweep.state, state) {
                (from, to) if from == to => {}
                (SweepState::Finished | SweepState::Canceled, to) => {
                    return Err(CodedError::new(ErrorCode::SweepOver, format!("sweep {sweep_id} is {}: it cannot become {}", sweep.state.as_str(), to.as_str())));
                }
                (SweepState::Stopped, to) if to != SweepState::Canceled => {
                    return Err(CodedError::new(ErrorCode::SweepOver, format!("sweep {sweep_id} is stopped: it can only be canceled, not {}", to.as_str())));
                }
                (_, SweepState::Finished) => return Err(CodedError::new(ErrorCode::InvalidValue, "a sweep finishes by itself; stop or cancel it")),
                _ => set_state(db, &mut sweep, state)?,
            }
            let all = trials(db, &sweep, now)?;
            // Canceling stops the trials that run: the server asks their runs to stop.
            let to_stop = if state == SweepState::Canceled { all.iter().filter(|t| t.info.state == "running").map(|t| t.info.run_id.clone()).collect() } else { Vec::new() };
            Ok((info(&entity, &project, &sweep, &all), to_stop))
        })
    }

    fn next_trial(&self, entity: &str, project: &str, sweep_id: &str, request: &NextTrialRequest, now: Timestamp) -> Result<NextTrial> {
        let (entity, project, sweep_id, request) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned(), request.clone());
        self.write(move |db| next(db, &entity, &project, &sweep_id, &request, now))
    }

    fn sweep_trials(&self, entity: &str, project: &str, sweep_id: &str, now: Timestamp) -> Result<Vec<TrialInfo>> {
        let (entity, project, sweep_id) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned());
        self.read(move |db| {
            let sweep = load(db, &entity, &project, &sweep_id, false)?;
            Ok(trials(db, &sweep, now)?.into_iter().map(|t| t.info).collect())
        })
    }

    fn sweep_of_run(&self, entity: &str, project: &str, run_id: &str) -> Result<Option<(String, Option<String>)>> {
        let (entity, project, run_id) = (entity.to_owned(), project.to_owned(), run_id.to_owned());
        self.read(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            let Some(row) = db.opt_row(
                &format!("SELECT {SWEEP_COLUMNS} FROM sweep_trials t JOIN sweeps s ON s.sweep_pk = t.sweep_pk WHERE s.project_pk = ?1 AND t.run_id = ?2"),
                args![pk, run_id],
            )?
            else {
                return Ok(None);
            };
            let sweep = sweep_row(&row)?;
            let reason = match (&sweep.parsed.early_terminate, &sweep.parsed.metric) {
                (Some(hb), Some(metric)) => decisions(db, sweep.pk, Some(&run_id))?.iter().find(|d| d.stopped).map(|d| hb.reason(&metric.name, d)),
                _ => None,
            };
            Ok(Some((sweep.sweep_id, reason)))
        })
    }

    fn import_trial(&self, entity: &str, project: &str, sweep_id: &str, trial: &ImportTrial, now: Timestamp) -> Result<SweepInfo> {
        SweepConfig::parse(&trial.sweep_config).map_err(|e| CodedError::new(ErrorCode::InvalidSweep, e))?;
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        cairn_types::ids::validate_run_id(&trial.run_id)?;
        if sweep_id.is_empty() || sweep_id.len() > 64 || !sweep_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(CodedError::new(ErrorCode::InvalidValue, format!("sweep id {sweep_id:?} must be 1 to 64 letters, digits, - or _")));
        }
        let (entity, project, sweep_id, trial) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned(), trial.clone());
        self.write(move |db| {
            let project_pk = super::runs::ensure_project(db, &entity, &project, now)?;
            let existing = db.opt_row("SELECT 1 FROM sweeps WHERE project_pk = ?1 AND sweep_id = ?2", args![project_pk, sweep_id])?;
            match existing {
                Some(_) => {}
                None => {
                    // Two syncs at once may both make it: the second finds it made.
                    db.execute(
                        "INSERT INTO sweeps (project_pk, sweep_id, config, state, created_at) VALUES (?1, ?2, ?3, 'finished', ?4)
                         ON CONFLICT (project_pk, sweep_id) DO NOTHING",
                        args![project_pk, sweep_id, trial.sweep_config.to_string(), trial.assigned_at.micros()],
                    )?;
                }
            }
            let sweep = load(db, &entity, &project, &sweep_id, true)?;
            if sweep.config != trial.sweep_config {
                return Err(CodedError::new(
                    ErrorCode::InvalidSweep,
                    format!("sweep {entity}/{project}/{sweep_id} exists with another configuration; the trial {} is not added", trial.run_id),
                ));
            }
            // Given again: nothing changes. Another machine's trial with the same number (each
            // local agent directory counts from 0) comes after the sweep's last.
            if db.opt_row("SELECT 1 FROM sweep_trials WHERE sweep_pk = ?1 AND run_id = ?2", args![sweep.pk, trial.run_id])?.is_none() {
                let taken = db.opt_row("SELECT 1 FROM sweep_trials WHERE sweep_pk = ?1 AND seq = ?2", args![sweep.pk, trial.seq as i64])?.is_some();
                let seq = if taken { db.row("SELECT coalesce(max(seq), -1) + 1 FROM sweep_trials WHERE sweep_pk = ?1", args![sweep.pk])?.i64(0)? } else { trial.seq as i64 };
                db.execute(
                    "INSERT INTO sweep_trials (sweep_pk, seq, run_id, grid_index, params, agent, assigned_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    args![sweep.pk, seq, trial.run_id, trial.grid_index.map(|i| i as i64), trial.config.to_string(), trial.agent, trial.assigned_at.micros()],
                )?;
            }
            for d in &trial.decisions {
                // The latest judgement of a trial at a bracket wins.
                db.execute(
                    "INSERT INTO sweep_decisions (sweep_pk, run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (sweep_pk, run_id, bracket) DO UPDATE SET value = excluded.value, threshold = excluded.threshold, rank = excluded.rank,
                         reached = excluded.reached, kept = excluded.kept, stopped = excluded.stopped, decided_at = excluded.decided_at
                     WHERE excluded.decided_at >= sweep_decisions.decided_at",
                    args![
                        sweep.pk,
                        trial.run_id,
                        d.bracket as i64,
                        d.value,
                        d.threshold,
                        d.rank as i64,
                        d.reached as i64,
                        d.kept as i64,
                        d.stopped,
                        d.decided_at.unwrap_or(trial.assigned_at).micros()
                    ],
                )?;
            }
            let all = trials(db, &sweep, now)?;
            Ok(info(&entity, &project, &sweep, &all))
        })
    }

    fn sweep_decisions(&self, entity: &str, project: &str, sweep_id: &str) -> Result<Vec<BracketDecision>> {
        let (entity, project, sweep_id) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned());
        self.read(move |db| {
            let sweep = load(db, &entity, &project, &sweep_id, false)?;
            decisions(db, sweep.pk, None)
        })
    }

    fn early_terminate(&self, now: Timestamp) -> Result<Vec<RunPath>> {
        // The sweeps whose trials may still run, with early termination.
        let sweeps = self.read(|db| {
            db.query(
                &format!(
                    "SELECT {SWEEP_COLUMNS}, e.name, p.name FROM sweeps s JOIN projects p ON p.project_pk = s.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
                     WHERE s.state IN ('running', 'paused', 'stopped') AND s.config LIKE '%early_terminate%'"
                ),
                args![],
            )?
            .iter()
            .map(|r| Ok((sweep_row(r)?, r.string(5)?, r.string(6)?)))
            .collect::<Result<Vec<_>>>()
        })?;
        let mut asked = Vec::new();
        for (sweep, entity, project) in sweeps {
            // One sweep that cannot be judged (a run removed meanwhile) holds up no other.
            match self.early_terminate_one(&sweep, &entity, &project, now) {
                Ok(stopped) => asked.extend(stopped),
                Err(e) => tracing::warn!("early termination of sweep {entity}/{project}/{}: {}", sweep.sweep_id, e.message),
            }
        }
        Ok(asked)
    }
}

impl SqlStore {
    fn early_terminate_one(&self, sweep: &SweepRow, entity: &str, project: &str, now: Timestamp) -> Result<Vec<RunPath>> {
        let (Some(hb), Some(metric)) = (sweep.parsed.early_terminate.clone(), sweep.parsed.metric.clone()) else { return Ok(Vec::new()) };
        let (all, judged) = self.read(|db| {
            let judged = decisions(db, sweep.pk, None)?.into_iter().map(|d| ((d.run_id, d.bracket), d.stopped)).collect::<std::collections::HashMap<_, _>>();
            Ok((trials(db, sweep, now)?, judged))
        })?;
        if !all.iter().any(|t| t.info.state == "running") {
            return Ok(Vec::new());
        }
        let last = hb.brackets().last().copied().unwrap_or(1) as usize;
        // Each trial's metric, in the order it was logged, as far as the last bracket.
        let histories: Vec<(String, Vec<f64>, bool)> = all
            .iter()
            .filter(|t| !matches!(t.info.state.as_str(), "pending" | "lost"))
            .map(|t| {
                let path = RunPath::new(entity, project, t.info.run_id.as_str());
                let request = crate::HistoryRequest { keys: Some(vec![metric.name.clone()]), limit: last, require_all: true, ..Default::default() };
                let values = match crate::SeriesStore::history(self, &path, &request) {
                    Ok(data) => data.columns.first().map(|c| (0..c.values.len()).filter_map(|i| c.values.get(i).and_then(|v| v.as_f64())).collect()).unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                (t.info.run_id.clone(), values, t.info.state == "running")
            })
            .collect();
        let iterations: Vec<Iterations<'_>> = histories.iter().map(|(run_id, values, running)| Iterations { run_id, values, running: *running }).collect();
        let made = hb.judge(metric.goal, &iterations, &judged);
        if made.is_empty() {
            return Ok(Vec::new());
        }
        let (pk, e, p) = (sweep.pk, entity.to_owned(), project.to_owned());
        self.write(move |db| {
            let mut stopped = Vec::new();
            for d in &made {
                db.execute(
                    "INSERT INTO sweep_decisions (sweep_pk, run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (sweep_pk, run_id, bracket) DO UPDATE SET value = excluded.value, threshold = excluded.threshold, rank = excluded.rank,
                         reached = excluded.reached, kept = excluded.kept, stopped = excluded.stopped, decided_at = excluded.decided_at",
                    args![pk, d.run_id, d.bracket as i64, d.value, d.threshold, d.rank as i64, d.reached as i64, d.kept as i64, d.stopped, now.micros()],
                )?;
                if d.stopped {
                    let path = RunPath::new(e.as_str(), p.as_str(), d.run_id.as_str());
                    super::runs::modify_run(db, &path, |doc| {
                        if doc.state == cairn_types::api::RunState::Running {
                            doc.stop_requested = true;
                        }
                        Ok(())
                    })?;
                    stopped.push(path);
                }
            }
            Ok(stopped)
        })
    }
}
