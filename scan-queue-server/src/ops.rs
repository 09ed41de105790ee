//! The operations: one function for each ThreadFix operation and each action of the page,
//! the only place it is implemented (the API in `http/` and the page in `ui/` both call
//! these). In: typed inputs, already parsed and authenticated. Out: what happened, once it is
//! durable, or why it was refused.

use crate::app::{App, StorageFailed};
use crate::report::{Format, InspectError, Inspection, ResultCheck};
use crate::scanners::Scanner;
use crate::state::{ResultRecord, ScanConfigDoc, State};
use crate::storage::ResultSource;
use crate::storage::upload::{Kept, Upload};
use crate::wire::{self, ScanConfigObject};
use scan_queue::{
    AgentId, ApplicationId, Error, NewScan, ScanConfigId, Task, TaskId, TaskStatus,
    split_scanner_list,
};
use std::sync::Arc;

/// Why an operation did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpError {
    /// Refused, with the failure message to answer (ThreadFix's words where it had them).
    Refused(String),
    /// The change may not have been kept: the storage failed and the server is stopping.
    Unavailable,
}

impl From<StorageFailed> for OpError {
    fn from(_: StorageFailed) -> OpError {
        OpError::Unavailable
    }
}

fn refused(message: impl Into<String>) -> OpError {
    OpError::Refused(message.into())
}

/// A refusal of the core, worded as on every endpoint; `state` tells a lease that ran out on
/// the task's last attempt (it timed out) from one whose task went back to the queue.
fn core_refusal(state: &State, error: &Error) -> OpError {
    if let Error::Inconsistent(_) = error {
        tracing::error!(error = %error, "the queue reported an inconsistency");
    }
    if let Error::LeaseExpired { task } = error
        && state
            .queue
            .task(*task)
            .is_some_and(|t| t.status() == TaskStatus::CompleteTimedOut)
    {
        return refused(wire::lease_expired_timed_out(*task));
    }
    refused(wire::error_message(error))
}

/// A task as an answer shows it: with its scan configuration document's object, if any.
#[derive(Clone, Debug)]
pub(crate) struct TaskAnswer {
    pub(crate) task: Task,
    pub(crate) config: Option<ScanConfigObject>,
}

impl TaskAnswer {
    fn new(state: &State, task: &Task) -> TaskAnswer {
        let config = task
            .scan_config()
            .and_then(|id| state.config(id))
            .map(|doc| doc.object.clone());
        TaskAnswer {
            task: task.clone(),
            config,
        }
    }
}

/// `queueScan` (and the page's form): queues a scan with `scanner`. A named scan configuration document must be this application's and scanner's;
/// without one, the task takes its pair's current document, if any. Either way the task
/// keeps that document for its life.
pub(crate) async fn queue_scan(
    app: &App,
    application: ApplicationId,
    scanner: &Scanner,
    target_url: Option<&str>,
    scan_config: Option<ScanConfigId>,
) -> Result<TaskAnswer, OpError> {
    let queued = app.transact(|state, now| {
        let scan_config = match scan_config {
            Some(id) => {
                let doc = state.config(id).ok_or_else(|| {
                    refused(format!(
                        "Invalid scanConfigId: no scan config with id {id}."
                    ))
                })?;
                if doc.application != application || doc.scanner != scanner.name {
                    return Err(refused(format!(
                        "Invalid scanConfigId: scan config {id} is for application {} and {}, \
                         not application {application} and {}.",
                        doc.application, doc.scanner, scanner.name
                    )));
                }
                Some(id)
            }
            None => state.current_config(application, &scanner.name),
        };
        let mut scan = NewScan::new(application, &scanner.name);
        scan.target_url = target_url;
        scan.scan_config = scan_config;
        let task = state
            .queue
            .queue_scan(now, scan)
            .cloned()
            .map_err(|e| core_refusal(state, &e))?;
        Ok(TaskAnswer::new(state, &task))
    });
    app.ack(queued).await?
}

/// `setTaskConfig`: stores a scan configuration document as the current one of an
/// application and scanner; tasks queued with the one it replaces keep theirs.
pub(crate) async fn set_task_config(
    app: &App,
    application: ApplicationId,
    scanner: &Scanner,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> Result<ScanConfigObject, OpError> {
    let content_type = content_type
        .filter(|c| !c.is_empty() && c.len() <= 255)
        .unwrap_or("application/octet-stream");
    let stored = app.transact(|state, now| {
        let object = |id| ScanConfigObject {
            id,
            active: true,
            name: scanner.short_name.clone(),
            kind: wire::SCAN_CONFIG_TYPE.to_owned(),
            content_type: content_type.to_owned(),
            uploaded_date: now,
        };
        state
            .store_config(application, &scanner.name, object, bytes)
            .map(|doc| doc.object.clone())
            .map_err(|e| refused(e.to_string()))
    });
    app.ack(stored).await?
}

/// `requestScanAgentKey`: registers a scan agent; its key, to hand to it.
pub(crate) async fn register_agent(app: &App) -> Result<String, OpError> {
    let agent = app.transact(|state, now| {
        state
            .queue
            .register_agent(now)
            .map(|a| a.key.expose_secret().to_owned())
            .map_err(|e| core_refusal(state, &e))
    });
    app.ack(agent).await?
}

/// A task assigned by `requestTask`, with its scan configuration document.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub(crate) task: Task,
    pub(crate) config: Option<Arc<ScanConfigDoc>>,
}

/// `requestTask`: assigns the oldest queued task one of `scanners` (a comma-separated list
/// of display or short names) can run; `Ok(None)` when there is none.
pub(crate) async fn request_task(
    app: &App,
    scanners: &str,
    agent_key: &str,
    agent_config: &str,
) -> Result<Option<Assignment>, OpError> {
    let mut names: Vec<&str> = split_scanner_list(scanners)
        .filter_map(|name| app.scanners.resolve(name))
        .map(|s| s.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        let known: Vec<&str> = app.scanners.iter().map(|s| s.name.as_str()).collect();
        return Err(refused(format!(
            "No known scanner in scanners. Known scanners: {}.",
            known.join(", ")
        )));
    }
    let assigned = app.transact(|state, now| {
        app.presence.saw_key(&state.queue, agent_key, now);
        let task = match state
            .queue
            .request_task(now, agent_key, &names, agent_config)
        {
            Ok(Some(task)) => task.clone(),
            Ok(None) => return Ok(None),
            Err(e) => return Err(core_refusal(state, &e)),
        };
        let config = task.scan_config().and_then(|id| state.config(id)).cloned();
        Ok(Some(Assignment { task, config }))
    });
    app.ack(assigned).await?
}

/// The task and keys of an agent call. `Debug` shows the task only.
#[derive(Clone, Copy)]
pub(crate) struct AgentCall<'a> {
    pub(crate) task: TaskId,
    pub(crate) agent_key: &'a str,
    pub(crate) task_key: &'a str,
}

impl std::fmt::Debug for AgentCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCall")
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

/// `taskStatusUpdate`: a progress message (and a lease renewal).
pub(crate) async fn update_status(
    app: &App,
    call: AgentCall<'_>,
    message: &str,
) -> Result<(), OpError> {
    let updated = app.transact(|state, now| {
        app.presence.saw_key(&state.queue, call.agent_key, now);
        state
            .queue
            .update_status(now, call.task, message, call.agent_key, call.task_key)
            .map(|_| ())
            .map_err(|e| core_refusal(state, &e))
    });
    app.ack(updated).await?
}

/// `failTask`: the agent gives up; ThreadFix's answer, which is also the status message.
pub(crate) async fn fail_task(
    app: &App,
    call: AgentCall<'_>,
    message: &str,
) -> Result<String, OpError> {
    let failed = app.transact(|state, now| {
        app.presence.saw_key(&state.queue, call.agent_key, now);
        match state
            .queue
            .fail_task(now, call.task, message, call.agent_key, call.task_key)
        {
            Ok(task) => task
                .failure_message()
                .ok_or_else(|| refused(wire::INTERNAL_ERROR)),
            Err(e) => Err(core_refusal(state, &e)),
        }
    });
    app.ack(failed).await?
}

/// `completeTask`: completes the task with `upload` as its result. The file is inspected
/// first (`--result-check`): one that is refused fails the task with the reason instead, as
/// ThreadFix did when an import failed. An accepted file is kept by the storage; the
/// completion and the record that refers to the file are then made together. The file stays
/// only if it became the task's result: a refused call, or a retried one whose first call's
/// file is already the result, leaves none behind.
pub(crate) async fn complete_task(
    app: &App,
    call: AgentCall<'_>,
    mut upload: Upload,
) -> Result<TaskAnswer, OpError> {
    let store_failed = |e: std::io::Error| {
        tracing::error!(error = %e, "could not store an upload");
        refused("Could not store the uploaded file; see the server log.")
    };
    upload.finish().await.map_err(store_failed)?;
    // Only a completion that may still happen is inspected, or the retry of one whose file
    // was refused (it is answered the same): any other call keeps no file whatever it holds.
    let scanner = app.read(|s| {
        s.queue
            .task(call.task)
            .filter(|t| t.status().is_active() || t.status() == TaskStatus::CompleteFailed)
            .map(|t| {
                app.scanners
                    .short_name(t.scanner())
                    .unwrap_or(t.scanner())
                    .to_owned()
            })
    });
    let inspection = match scanner {
        Some(scanner) => match inspect(upload.path().to_owned(), scanner, app.result_check).await {
            Ok(inspection) => Some(inspection),
            Err(InspectError::Refused(reason)) => return refuse_result(app, call, reason).await,
            Err(InspectError::Read(e)) => return Err(store_failed(e)),
        },
        None => None,
    };
    // The storage could not make the file durable: like a record it could not keep, a
    // failure to retry (503), not a refusal.
    let kept = app.storage.keep(upload, call.task).await.map_err(|e| {
        tracing::error!(error = %e, "could not keep an upload");
        OpError::Unavailable
    })?;
    let completed = app.transact(|state, now| {
        app.presence.saw_key(&state.queue, call.agent_key, now);
        let task = match state
            .queue
            .complete_task(now, call.task, call.agent_key, call.task_key)
        {
            Ok(answer) => answer.into_inner().clone(),
            Err(e) => return (Err(core_refusal(state, &e)), Some(kept)),
        };
        let unused = if state.result(call.task).is_none() {
            let record = ResultRecord {
                task: task.id(),
                application: task.application(),
                scanner: task.scanner().to_owned(),
                file: kept.file.clone(),
                file_name: kept.file_name.as_deref().map(|n| bounded(n, 255)),
                content_type: match &inspection {
                    Some(i) if i.format != Format::Other => Some(i.content_type.to_owned()),
                    _ => kept.content_type.as_deref().map(|c| bounded(c, 255)),
                },
                size: kept.size,
                sha256: kept.sha256.clone(),
                received_ms: now,
                report: inspection
                    .as_ref()
                    .and_then(|i| i.report)
                    .map(|k| k.name().to_owned()),
                findings: inspection.as_ref().and_then(|i| i.findings),
            };
            match state.complete_with(record) {
                Ok(()) => {
                    kept.referenced();
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "a result record did not apply");
                    return (Err(refused(wire::INTERNAL_ERROR)), Some(kept));
                }
            }
        } else {
            Some(kept)
        };
        (Ok(TaskAnswer::new(state, &task)), unused)
    });
    let (answer, unused): (_, Option<Kept>) = app.ack(completed).await?;
    if let Some(kept) = unused {
        app.storage.discard(kept).await;
    }
    answer
}

/// Inspects a staged file on a blocking thread.
async fn inspect(
    path: std::path::PathBuf,
    scanner_short_name: String,
    check: ResultCheck,
) -> Result<Inspection, InspectError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(InspectError::Read)?;
        crate::report::inspect(std::io::BufReader::new(file), &scanner_short_name, check)
    })
    .await
    .map_err(|e| InspectError::Read(std::io::Error::other(e)))?
}

/// A result file the inspection refused: the task fails with the reason (when the keys
/// allow it), and the call is answered with it.
/// Whether `completeTask` with these keys would be refused now: asked before its file is
/// stored, so a call with wrong keys (or on a task it can no longer complete) costs no disk.
pub(crate) fn check_completion(app: &App, call: AgentCall<'_>) -> Result<(), OpError> {
    app.read(|state| {
        state
            .queue
            .check_completion(call.task, call.agent_key, call.task_key)
            .map_err(|e| core_refusal(state, &e))
    })
}

async fn refuse_result(
    app: &App,
    call: AgentCall<'_>,
    reason: String,
) -> Result<TaskAnswer, OpError> {
    let reason = format!("The server refused the result file: {reason}");
    let failed = app.transact(|state, now| {
        match state
            .queue
            .fail_task(now, call.task, &reason, call.agent_key, call.task_key)
        {
            Ok(_) => refused(reason.as_str()),
            Err(e) => core_refusal(state, &e),
        }
    });
    Err(app.ack(failed).await?)
}

/// Cancels a task (the page): it becomes COMPLETE_DELETED.
pub(crate) async fn cancel_task(app: &App, task: TaskId) -> Result<(), OpError> {
    let cancelled = app.transact(|state, now| {
        state
            .queue
            .cancel_task(now, task)
            .map(|_| ())
            .map_err(|e| core_refusal(state, &e))
    });
    app.ack(cancelled).await?
}

/// Revokes a scan agent (the page): its key stops working and the tasks it held go back to
/// the queue; how many.
pub(crate) async fn revoke_agent(app: &App, agent: AgentId) -> Result<usize, OpError> {
    let revoked = app.transact(|state, now| {
        state
            .queue
            .revoke_agent(now, agent)
            .map(|requeued| requeued.len())
            .map_err(|e| core_refusal(state, &e))
    });
    app.presence.forget(agent);
    app.ack(revoked).await?
}

/// Revokes the agents silent past `--agent-expiry-days` (journaled as any revocation: their
/// key is refused from then on and their tasks go back to the queue). How many.
pub(crate) async fn expire_agents(app: &App) -> usize {
    let Some(expiry_ms) = app.agent_expiry_ms else {
        return 0;
    };
    let expired = app.transact(|state, now| {
        let silent: Vec<_> = state
            .queue
            .agents()
            .filter(|a| {
                app.presence
                    .silent_since_ms(&state.queue, *a)
                    .saturating_add(expiry_ms)
                    <= now
            })
            .take(1000)
            .collect();
        let mut expired = Vec::new();
        for agent in silent {
            let silent_since = app.presence.silent_since_ms(&state.queue, agent);
            let name = state.console().agent(agent).and_then(|n| n.name.clone());
            if let Ok(requeued) = state.queue.revoke_agent(now, agent) {
                expired.push((agent, name, silent_since, requeued.len()));
            }
        }
        expired
    });
    let Ok(expired) = app.ack(expired).await else {
        return 0;
    };
    for (agent, name, silent_since, requeued) in &expired {
        app.presence.forget(*agent);
        tracing::info!(
            agent = %agent,
            name = name.as_deref().unwrap_or(""),
            silent_since = %crate::ui::time(*silent_since),
            requeued,
            "scan agent expired (silent past --agent-expiry-days); its key is refused from now on"
        );
    }
    expired.len()
}

/// At most `max` characters of a client's text kept in a record.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A task's result record and where its file is; a refusal names what is missing.
pub(crate) fn result_of(
    app: &App,
    task: TaskId,
) -> Result<(Arc<ResultRecord>, ResultSource), OpError> {
    let record = app.read(|state| match state.result(task) {
        Some(record) => Ok(Arc::clone(record)),
        None if state.queue.task(task).is_some() => Err(refused(format!(
            "Task {task} has no result (it is {}, or its result was deleted).",
            state
                .queue
                .task(task)
                .map_or("unknown", |t| t.status().status_string())
        ))),
        None => Err(refused(format!("No scan queue task with id {task}."))),
    })?;
    let source = app.storage.result_source(&record.file);
    Ok((record, source))
}

/// The most results one listing answers.
pub(crate) const MAX_RESULTS_PAGE: usize = 500;

/// An application's results, newest task first, after task `before`, at most `limit`
/// (bounded by [`MAX_RESULTS_PAGE`]); and whether more follow. An application with neither
/// results nor tasks is unknown.
pub(crate) fn results_of_application(
    app: &App,
    application: ApplicationId,
    before: Option<TaskId>,
    limit: usize,
) -> Result<(Vec<Arc<ResultRecord>>, bool), OpError> {
    let limit = limit.clamp(1, MAX_RESULTS_PAGE);
    app.read(|state| {
        let (page, more) = state.results().of_application(application, before, limit);
        let known = !page.is_empty()
            || before.is_some()
            || state
                .queue
                .tasks_by_id(..)
                .any(|t| t.application() == application);
        if known {
            Ok((page, more))
        } else {
            Err(refused(format!(
                "No scan queue task or result for application {application}."
            )))
        }
    })
}

/// How many results one retention record deletes at most.
const SWEEP_BATCH: usize = 1000;

/// Deletes what retention says is due now: the records (journaled), then their files. How
/// many. Nobody is answered, so nothing waits but the files, which go only once their
/// records' deletion is durable.
pub(crate) async fn sweep_results(app: &App) -> usize {
    let mut deleted = 0;
    loop {
        let expired =
            app.transact(|state, now| state.expire_results(app.retention, now, SWEEP_BATCH));
        let Ok(expired) = app.ack(expired).await else {
            return deleted;
        };
        let n = expired.len();
        if n > 0 {
            tracing::info!(results = n, "results deleted by retention");
            let files = expired.iter().map(|r| r.file.clone()).collect();
            app.storage.remove_results(files).await;
        }
        deleted += n;
        if n < SWEEP_BATCH {
            return deleted;
        }
    }
}

/// Whether a task in `status` may be retried from the page.
pub(crate) fn retryable(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::CompleteFailed | TaskStatus::CompleteTimedOut | TaskStatus::CompleteDeleted
    )
}

/// Queues `task`'s scan again, under the state's lock: same application, scanner, URL and
/// scan configuration document; the two are linked (a [`crate::state::Fact::Retried`]).
fn retry_in(
    state: &mut State,
    scanners: &crate::scanners::Scanners,
    now: u64,
    task: TaskId,
) -> Result<TaskId, OpError> {
    let old = state
        .queue
        .task(task)
        .ok_or_else(|| refused(format!("No scan queue task with id {task}.")))?;
    if !retryable(old.status()) {
        return Err(refused(format!(
            "Task {task} is {}: only a failed, timed-out or deleted task can be retried.",
            old.status().name()
        )));
    }
    if let Some(again) = state.console().task(task).and_then(|n| n.retried_as) {
        return Err(refused(format!(
            "Task {task} was retried already, as task {again}."
        )));
    }
    if scanners.resolve(old.scanner()).is_none() {
        return Err(refused(format!(
            "Task {task}'s scanner, {}, is no longer configured (--scanner).",
            old.scanner()
        )));
    }
    let (application, scanner, url, config) = (
        old.application(),
        old.scanner().to_owned(),
        old.target_url().map(str::to_owned),
        old.scan_config(),
    );
    let mut scan = NewScan::new(application, &scanner);
    scan.target_url = url.as_deref();
    scan.scan_config = config.filter(|c| state.config(*c).is_some());
    let new = state
        .queue
        .queue_scan(now, scan)
        .map(Task::id)
        .map_err(|e| core_refusal(state, &e))?;
    state.retried(task, new).map_err(|e| {
        tracing::error!(error = %e, "a retry link did not apply");
        refused(wire::INTERNAL_ERROR)
    })?;
    Ok(new)
}

/// Retries a failed, timed-out or deleted task (the page): the new task's id.
pub(crate) async fn retry_task(app: &App, task: TaskId) -> Result<TaskId, OpError> {
    let retried = app.transact(|state, now| retry_in(state, &app.scanners, now, task));
    app.ack(retried).await?
}

/// What a bulk action did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bulk {
    /// Tasks changed.
    pub(crate) done: usize,
    /// Tasks selected that were refused (finished meanwhile, retried already, ...).
    pub(crate) skipped: usize,
}

/// Cancels (`retry == false`) or retries each of `tasks` in one transaction: every change is
/// its own journaled record, as if done one by one.
pub(crate) async fn bulk(app: &App, tasks: &[TaskId], retry: bool) -> Result<Bulk, OpError> {
    let done = app.transact(|state, now| {
        let mut bulk = Bulk::default();
        for &task in tasks {
            let ok = if retry {
                retry_in(state, &app.scanners, now, task).is_ok()
            } else {
                state.queue.cancel_task(now, task).is_ok()
            };
            if ok {
                bulk.done += 1;
            } else {
                bulk.skipped += 1;
            }
        }
        bulk
    });
    Ok(app.ack(done).await?)
}
