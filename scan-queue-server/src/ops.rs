//! The endpoints of SPEC §7: parameters in, one core operation, ThreadFix's JSON out.

use crate::params::{Failure, FileSink, Params};
use crate::server::App;
use crate::store::ScanConfigDoc;
use crate::wire::{self, AssignmentObject, ScanConfigObject, TaskExtras, TaskObject};
use base64::Engine;
use scan_queue::{ApplicationId, NewScan, ScanConfigId, Task, TaskId, split_scanner_list};
use std::sync::Arc;

/// What a successful call answers with (the envelope's `object`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    Task(Box<TaskObject>),
    Assignment(Box<AssignmentObject>),
    Config(ScanConfigObject),
    Text(String),
    Names(Vec<String>),
}

/// One endpoint, `…/tasks/{name}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `queueScan` (POST): queue a scan.
    QueueScan,
    /// `setTaskConfig` (POST multipart): store a scan configuration document.
    SetTaskConfig,
    /// `requestScanAgentKey` (GET): mint a scan agent key.
    RequestScanAgentKey,
    /// `requestTask` (POST): take the oldest matching task.
    RequestTask,
    /// `taskStatusUpdate` (POST): report progress.
    TaskStatusUpdate,
    /// `completeTask` (POST multipart): complete with a result file.
    CompleteTask,
    /// `failTask` (POST): report failure.
    FailTask,
    /// `scanners` (GET): the scanners this server knows.
    Scanners,
}

impl Op {
    /// Every endpoint.
    pub const ALL: [Op; 8] = [
        Op::QueueScan,
        Op::SetTaskConfig,
        Op::RequestScanAgentKey,
        Op::RequestTask,
        Op::TaskStatusUpdate,
        Op::CompleteTask,
        Op::FailTask,
        Op::Scanners,
    ];

    /// The endpoint's name in the path.
    pub fn name(self) -> &'static str {
        match self {
            Op::QueueScan => "queueScan",
            Op::SetTaskConfig => "setTaskConfig",
            Op::RequestScanAgentKey => "requestScanAgentKey",
            Op::RequestTask => "requestTask",
            Op::TaskStatusUpdate => "taskStatusUpdate",
            Op::CompleteTask => "completeTask",
            Op::FailTask => "failTask",
            Op::Scanners => "scanners",
        }
    }

    /// The endpoint with this name.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether it is documented as GET (it also takes POST); the others take POST only.
    pub fn is_get(self) -> bool {
        matches!(self, Op::RequestScanAgentKey | Op::Scanners)
    }

    /// Where a multipart file part named `part` goes for this endpoint; `None`: it is a
    /// text parameter.
    pub(crate) fn file_sink(self, app: &App, part: &str) -> Option<FileSink> {
        match (self, part) {
            (Op::CompleteTask, "file") => Some(FileSink::Disk(app.max_upload_bytes)),
            (Op::SetTaskConfig, "file") => Some(FileSink::Memory(app.max_config_bytes)),
            (Op::RequestTask, "files") => Some(FileSink::Memory(app.max_agent_config_bytes)),
            _ => None,
        }
    }
}

impl App {
    /// Runs an endpoint on parsed, authenticated parameters.
    pub(crate) async fn run(&self, op: Op, params: Params) -> Result<Reply, Failure> {
        match op {
            Op::QueueScan => self.queue_scan(&params),
            Op::SetTaskConfig => self.set_task_config(params),
            Op::RequestScanAgentKey => self.request_scan_agent_key(),
            Op::RequestTask => self.request_task(&params),
            Op::TaskStatusUpdate => self.task_status_update(&params),
            Op::CompleteTask => self.complete_task(params).await,
            Op::FailTask => self.fail_task(&params),
            Op::Scanners => Ok(Reply::Names(
                self.scanners.iter().map(|s| s.name.clone()).collect(),
            )),
        }
    }

    fn queue_scan(&self, p: &Params) -> Result<Reply, Failure> {
        let application = ApplicationId(p.positive_int("applicationId")?);
        let scanner_type = p.required("scannerType")?;
        let scanner = self
            .scanners
            .resolve(scanner_type)
            .ok_or_else(|| Failure::new(wire::bad_scanner(false, scanner_type)))?;
        let target_url = p.optional("targetURL");
        let scan_config = p.optional_positive_int("scanConfigId")?.map(ScanConfigId);
        if let Some(id) = scan_config
            && self.configs.lock().get(id).is_none()
        {
            return Err(Failure::new(format!(
                "Invalid scanConfigId: no scan config with id {id}."
            )));
        }
        let task = self
            .transact(|q, now| {
                let mut scan = NewScan::new(application, &scanner.name);
                scan.target_url = target_url;
                scan.scan_config = scan_config;
                q.queue_scan(now, scan).cloned()
            })
            .map_err(|e| Failure::core(&e))?;
        Ok(self.task_value(&task, None))
    }

    fn set_task_config(&self, mut p: Params) -> Result<Reply, Failure> {
        let application = ApplicationId(p.positive_int("appId")?);
        let scanner_type = p.required("scannerType")?;
        let scanner = self
            .scanners
            .resolve(scanner_type)
            .ok_or_else(|| Failure::new(wire::bad_scanner(true, scanner_type)))?;
        let file = p
            .memory_file
            .take()
            .ok_or_else(|| Failure::new(wire::missing_parameter("file")))?;
        let now_ms = self.clock.now_ms();
        let doc = self
            .configs
            .lock()
            .set(
                application,
                &scanner.name,
                &scanner.short_name,
                file.content_type.as_deref(),
                file.bytes,
                now_ms,
            )
            .map_err(|refused| Failure::new(refused.to_string()))?;
        tracing::info!(application = application.0, scanner = %scanner.name, config = doc.object.id, "scan config stored");
        Ok(Reply::Config(doc.object.clone()))
    }

    fn request_scan_agent_key(&self) -> Result<Reply, Failure> {
        let agent = self
            .transact(|q, now| q.register_agent(now))
            .map_err(|e| Failure::core(&e))?;
        Ok(Reply::Text(agent.key.expose_secret().to_owned()))
    }

    fn request_task(&self, p: &Params) -> Result<Reply, Failure> {
        let list = p.required("scanners")?;
        let agent_key = p.required("scanAgentSecureKey")?;
        let mut scanners: Vec<&str> = split_scanner_list(list)
            .filter_map(|name| self.scanners.resolve(name))
            .map(|s| s.name.as_str())
            .collect();
        scanners.sort_unstable();
        scanners.dedup();
        if scanners.is_empty() {
            let known: Vec<&str> = self.scanners.iter().map(|s| s.name.as_str()).collect();
            return Err(Failure::new(format!(
                "No known scanner in scanners. Known scanners: {}.",
                known.join(", ")
            )));
        }
        let from_file = p
            .memory_file
            .as_ref()
            .map(|f| String::from_utf8_lossy(&f.bytes));
        let agent_config = p
            .get("agentConfig")
            .map(std::borrow::Cow::Borrowed)
            .or(from_file)
            .unwrap_or_default();
        let task = self
            .transact(|q, now| {
                q.request_task(now, agent_key, &scanners, &agent_config)
                    .map(|t| t.cloned())
            })
            .map_err(|e| Failure::core(&e))?
            .ok_or_else(|| Failure::new(wire::NO_TASK_FOUND))?;
        let config = self
            .config_for(&task)
            .map(|doc| base64::engine::general_purpose::STANDARD.encode(&doc.bytes));
        AssignmentObject::new(&task, agent_key, config)
            .map(|a| Reply::Assignment(Box::new(a)))
            .ok_or_else(|| {
                Failure::core(&scan_queue::Error::Inconsistent(
                    "assigned task without assignment".into(),
                ))
            })
    }

    /// The task id and both keys of an agent call, checked in the order ThreadFix documents
    /// them.
    fn agent_call(
        p: &Params,
        message: bool,
    ) -> Result<(TaskId, Option<&str>, &str, &str), Failure> {
        let id = TaskId(p.positive_int("scanQueueTaskId")?);
        let message = if message {
            Some(p.present("message")?)
        } else {
            None
        };
        let agent_key = p.required("scanAgentSecureKey")?;
        let task_key = p.required("secureTaskKey")?;
        Ok((id, message, agent_key, task_key))
    }

    fn task_status_update(&self, p: &Params) -> Result<Reply, Failure> {
        let (id, message, agent_key, task_key) = Self::agent_call(p, true)?;
        let message = message.unwrap_or_default();
        self.transact(|q, now| {
            q.update_status(now, id, message, agent_key, task_key)
                .map(|_| ())
        })
        .map_err(|e| Failure::core(&e))?;
        Ok(Reply::Text(wire::UPDATE_SUCCEEDED.to_owned()))
    }

    fn fail_task(&self, p: &Params) -> Result<Reply, Failure> {
        let (id, message, agent_key, task_key) = Self::agent_call(p, true)?;
        let message = message.unwrap_or_default();
        let answer = self
            .transact(|q, now| {
                q.fail_task(now, id, message, agent_key, task_key)
                    .map(|a| a.failure_message())
            })
            .map_err(|e| Failure::core(&e))?;
        Ok(Reply::Text(
            answer.unwrap_or_else(|| wire::fail_message(id.0, message)),
        ))
    }

    /// Stores the file under `results/` first, then applies the completion; the file is
    /// removed again if the completion is refused or repeats one already applied (whose own
    /// file was kept).
    async fn complete_task(&self, mut p: Params) -> Result<Reply, Failure> {
        let file = p.disk_file.take();
        let (id, _, agent_key, task_key) = Self::agent_call(&p, false)?;
        let mut file = file.ok_or_else(|| Failure::new(wire::missing_parameter("file")))?;
        let to = self.data.result_path(id, file.file_name.as_deref());
        file.move_to(to).await.map_err(|e| {
            tracing::error!(error = %e, "could not move an upload into results/");
            Failure::new("Could not store the uploaded file; see the server log.")
        })?;
        let answer = self
            .transact(|q, now| {
                q.complete_task(now, id, agent_key, task_key)
                    .map(|a| a.map(Task::clone))
            })
            .map_err(|e| Failure::core(&e))?;
        if !answer.is_repeat() {
            let bytes = file.len;
            let path = file.keep();
            tracing::info!(task = id.0, bytes, path = %path.display(), "result file stored");
        }
        Ok(self.task_value(&answer, Some((task_key, agent_key))))
    }

    /// The scan configuration document that applies to a task.
    fn config_for(&self, task: &Task) -> Option<Arc<ScanConfigDoc>> {
        self.configs
            .lock()
            .for_task(task.scan_config(), task.application(), task.scanner())
    }

    fn task_value(&self, task: &Task, keys: Option<(&str, &str)>) -> Reply {
        let doc = self.config_for(task);
        let object = TaskObject::new(
            task,
            TaskExtras {
                scanner_short_name: self.scanners.short_name(task.scanner()),
                scan_config: doc.as_ref().map(|d| &d.object),
                keys,
            },
        );
        Reply::Task(Box::new(object))
    }
}
