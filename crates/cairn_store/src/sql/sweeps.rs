//! Sweeps over [`Db`]: a sweep's configuration and state, and its trials, each the run an agent
//! was handed with its parameters. The controller is this module's `next_trial`: it runs in one
//! transaction with the sweep's row locked (`FOR UPDATE` on PostgreSQL, the single writer on
//! SQLite), so any number of agents on any number of servers never get the same grid point
//! twice. A trial's state is its run's; a trial handed out whose run never started within
//! [`LOST_AFTER_MICROS`] is lost, and a crashed or lost grid point is handed out again.

use cairn_types::Timestamp;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::sweep::{BestTrial, Goal, Method, NextTrial, SweepConfig, SweepInfo, SweepState, TrialInfo};
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
    /// Neither crashed nor lost: its point is taken.
    live: bool,
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
        let live = !matches!(state.as_str(), "crashed" | "lost");
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
            live,
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
    let goal = sweep.parsed.metric.as_ref()?.goal;
    trials
        .iter()
        .filter(|t| t.info.state == "finished")
        .filter_map(|t| t.info.metric.filter(|v| v.is_finite()).map(|v| (t, v)))
        .min_by(|(_, a), (_, b)| if goal == Goal::Minimize { a.total_cmp(b) } else { b.total_cmp(a) })
        .map(|(t, v)| BestTrial { run_id: t.info.run_id.clone(), value: v })
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
        crashed: count(&|t| !t.live),
        grid_size: (sweep.parsed.method == Method::Grid).then(|| sweep.parsed.grid_size()),
        best: best(sweep, trials),
    }
}

fn set_state(db: &dyn Db, sweep: &mut SweepRow, state: SweepState) -> Result<()> {
    db.execute("UPDATE sweeps SET state = ?2 WHERE sweep_pk = ?1", args![sweep.pk, state.as_str()])?;
    sweep.state = state;
    Ok(())
}

/// The controller: the next trial for `agent`, decided under the sweep's lock.
fn next(db: &dyn Db, entity: &str, project: &str, sweep_id: &str, agent: &str, now: Timestamp) -> Result<NextTrial> {
    let mut sweep = load(db, entity, project, sweep_id, true)?;
    let all = trials(db, &sweep, now)?;
    let active = all.iter().filter(|t| matches!(t.info.state.as_str(), "running" | "pending")).count();
    let wait = |reason: String| Ok(NextTrial::Wait { reason, retry_secs: RETRY_SECS });
    match sweep.state {
        SweepState::Paused => return wait("the sweep is paused".into()),
        SweepState::Running => {}
        over => return Ok(NextTrial::Stop { reason: format!("the sweep is {}", over.as_str()) }),
    }
    // The metric's target, reached by a finished trial, ends the sweep.
    if let (Some(metric), Some(best)) = (sweep.parsed.metric.clone(), best(&sweep, &all))
        && let Some(target) = metric.target
    {
        let reached = if metric.goal == Goal::Minimize { best.value <= target } else { best.value >= target };
        if reached {
            set_state(db, &mut sweep, SweepState::Finished)?;
            return Ok(NextTrial::Stop { reason: format!("trial {} reached the target {} = {target}", best.run_id, metric.name) });
        }
    }
    let live = all.iter().filter(|t| t.live).count() as u64;
    if sweep.parsed.run_cap.is_some_and(|cap| live >= cap) {
        if active > 0 {
            return wait(format!("the run cap of {live} is reached; {active} trials still run"));
        }
        set_state(db, &mut sweep, SweepState::Finished)?;
        return Ok(NextTrial::Stop { reason: format!("the run cap of {live} trials is reached") });
    }
    let seq = all.iter().map(|t| t.info.seq + 1).max().unwrap_or(0);
    let (grid_index, config) = match sweep.parsed.method {
        Method::Grid => {
            // The first point no live trial holds: a crashed or lost trial's point comes back.
            let taken: std::collections::HashSet<u64> = all.iter().filter(|t| t.live).filter_map(|t| t.info.grid_index).collect();
            match (0..sweep.parsed.grid_size()).find(|i| !taken.contains(i)) {
                Some(i) => (Some(i), sweep.parsed.grid_point(i)),
                None if active > 0 => return wait(format!("every grid point is taken; {active} trials still run")),
                None => {
                    set_state(db, &mut sweep, SweepState::Finished)?;
                    return Ok(NextTrial::Stop { reason: format!("every one of the {} grid points ran", sweep.parsed.grid_size()) });
                }
            }
        }
        Method::Random | Method::Bayes => {
            // Seeded by the sweep and the trial's number: the same draws on every server.
            let seed = sweep.pk as u64 ^ sweep.created_at as u64 ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut rng = fastrand::Rng::with_seed(seed);
            (None, sweep.parsed.sample(&mut rng))
        }
    };
    let run_id = cairn_types::ids::generate_run_id();
    db.execute(
        "INSERT INTO sweep_trials (sweep_pk, seq, run_id, grid_index, params, agent, assigned_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![sweep.pk, seq as i64, run_id, grid_index.map(|i| i as i64), config.to_string(), agent, now.micros()],
    )?;
    Ok(NextTrial::Run { run_id, seq, config })
}

impl crate::SweepStore for SqlStore {
    fn create_sweep(&self, entity: &str, project: &str, config: &Json, now: Timestamp) -> Result<SweepInfo> {
        let parsed = SweepConfig::parse(config).map_err(|e| CodedError::new(ErrorCode::InvalidSweep, e))?;
        if parsed.method == Method::Bayes {
            return Err(CodedError::new(ErrorCode::InvalidSweep, "method bayes is not available in this version of cairn yet; use grid or random"));
        }
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
            let to_stop = if state == SweepState::Canceled {
                all.iter().filter(|t| t.info.state == "running").map(|t| t.info.run_id.clone()).collect()
            } else {
                Vec::new()
            };
            Ok((info(&entity, &project, &sweep, &all), to_stop))
        })
    }

    fn next_trial(&self, entity: &str, project: &str, sweep_id: &str, agent: &str, now: Timestamp) -> Result<NextTrial> {
        let (entity, project, sweep_id, agent) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned(), agent.to_owned());
        self.write(move |db| next(db, &entity, &project, &sweep_id, &agent, now))
    }

    fn sweep_trials(&self, entity: &str, project: &str, sweep_id: &str, now: Timestamp) -> Result<Vec<TrialInfo>> {
        let (entity, project, sweep_id) = (entity.to_owned(), project.to_owned(), sweep_id.to_owned());
        self.read(move |db| {
            let sweep = load(db, &entity, &project, &sweep_id, false)?;
            Ok(trials(db, &sweep, now)?.into_iter().map(|t| t.info).collect())
        })
    }

    fn sweep_of_run(&self, entity: &str, project: &str, run_id: &str) -> Result<Option<String>> {
        let (entity, project, run_id) = (entity.to_owned(), project.to_owned(), run_id.to_owned());
        self.read(move |db| {
            let pk = super::query::project_pk(db, &entity, &project)?;
            db.opt_row(
                "SELECT s.sweep_id FROM sweep_trials t JOIN sweeps s ON s.sweep_pk = t.sweep_pk WHERE s.project_pk = ?1 AND t.run_id = ?2",
                args![pk, run_id],
            )?
            .map(|r| r.string(0))
            .transpose()
        })
    }
}
