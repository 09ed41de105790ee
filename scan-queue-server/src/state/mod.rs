//! The server's durable state: the core's queue and what the server keeps beside it (scan
//! configuration documents, result records). It changes only through [`Record`]s — the
//! core's events and the server's own [`Fact`]s — and the live path applies each record with
//! the same code recovery replays it with. Pure: no I/O, no clock, no lock.

pub(crate) mod console;
mod results;
mod webhooks;

pub(crate) use console::Console;
pub(crate) use results::Results;
pub use results::Retention;
pub(crate) use webhooks::{Attempt, Delivery, Outbox};

use crate::wire::ScanConfigObject;
use scan_queue::{
    ApplicationId, Config, Event, KeySource, Queue, ScanConfigId, Snapshot, TaskId, TaskStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// One durable change, in log order.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Record {
    /// A change of the core's queue (older journals hold only these).
    Event(Event),
    /// A change of what the server keeps beside the queue.
    Fact(Fact),
}

/// A change the server makes beside the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Fact {
    /// A scan configuration document was stored; it becomes its pair's current one.
    ScanConfigStored(Arc<ScanConfigDoc>),
    /// Retention deleted these tasks' results (their files go once this is durable).
    ResultsDeleted {
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Webhook deliveries of terminal transitions were queued.
    WebhooksQueued {
        /// The deliveries, with consecutive ids.
        deliveries: Vec<Delivery>,
    },
    /// A webhook delivery was attempted.
    WebhookAttempted {
        /// The delivery.
        id: u64,
        /// How it ended.
        attempt: Attempt,
    },
    /// A task was completed with this result file: one record, so that a crash can never
    /// keep the completion without its result or the reverse.
    Completed {
        /// The core's `TaskCompleted` event.
        event: Event,
        /// The result.
        result: Arc<ResultRecord>,
    },
    /// An operator retried task `from`: the task queued just before this record, `to`, runs
    /// the same scan again.
    Retried {
        /// The task retried.
        from: TaskId,
        /// The new task.
        to: TaskId,
    },
}

impl Record {
    /// Decodes a record's JSON: a [`Fact`] when it is one (its JSON starts with a fact's
    /// tag), else a core [`Event`], so that every error message is the precise one.
    pub(crate) fn from_json(payload: &[u8]) -> Result<Record, serde_json::Error> {
        let is_fact = [
            &b"{\"ScanConfigStored\""[..],
            b"{\"Completed\"",
            b"{\"ResultsDeleted\"",
            b"{\"WebhooksQueued\"",
            b"{\"WebhookAttempted\"",
            b"{\"Retried\"",
        ]
        .iter()
        .any(|tag| payload.starts_with(tag));
        if is_fact {
            serde_json::from_slice(payload).map(Record::Fact)
        } else {
            serde_json::from_slice(payload).map(Record::Event)
        }
    }
}

/// A scan agent configuration document (`setTaskConfig`). Immutable once stored: a task
/// refers to it by id, and it is kept while any task or its pair's "current" refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScanConfigDoc {
    /// The application it is for.
    pub(crate) application: ApplicationId,
    /// The scanner's display name it is for.
    pub(crate) scanner: String,
    /// What ThreadFix shows of it.
    pub(crate) object: ScanConfigObject,
    /// The document, as uploaded.
    #[serde(with = "base64_bytes")]
    pub(crate) bytes: Vec<u8>,
}

/// A completed task's result file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResultRecord {
    /// The task it completed.
    pub(crate) task: TaskId,
    /// The task's application.
    pub(crate) application: ApplicationId,
    /// The task's scanner (display name).
    pub(crate) scanner: String,
    /// Where the storage keeps it (a file name under `results/`).
    pub(crate) file: String,
    /// The name the agent uploaded it as, if any.
    pub(crate) file_name: Option<String>,
    /// The content type the agent sent, if any.
    pub(crate) content_type: Option<String>,
    /// Bytes.
    pub(crate) size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub(crate) sha256: String,
    /// When it was received, epoch milliseconds.
    pub(crate) received_ms: u64,
    /// The scanner report it is, when recognised (e.g. `zap-xml`).
    #[serde(default)]
    pub(crate) report: Option<String>,
    /// Its findings per severity, for a report of a known kind.
    #[serde(default)]
    pub(crate) findings: Option<crate::report::Findings>,
}

impl ResultRecord {
    /// What the file is served as: the content type recorded when it is a plain type, else
    /// bytes.
    pub(crate) fn served_content_type(&self) -> String {
        self.content_type
            .as_deref()
            .filter(|c| {
                c.len() <= 100
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/.+-; =".contains(&b))
            })
            .unwrap_or("application/octet-stream")
            .to_owned()
    }
}

/// The whole state at one point of the log, as a snapshot file holds it. Older snapshots hold
/// only the queue's [`Snapshot`] (see [`StateSnapshot::from_json`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StateSnapshot {
    /// The core's state. Serialized first: [`StateSnapshot::from_json`] relies on it.
    pub(crate) queue: Snapshot,
    /// Every scan configuration document kept.
    #[serde(default)]
    pub(crate) configs: Vec<Arc<ScanConfigDoc>>,
    /// Every result record.
    #[serde(default)]
    pub(crate) results: Vec<Arc<ResultRecord>>,
    /// Whether every result file has a record (false in snapshots from before result
    /// records: their files are adopted once, at start-up).
    #[serde(default)]
    pub(crate) results_tracked: bool,
    /// The webhook outbox.
    #[serde(default)]
    pub(crate) webhooks: Outbox,
    /// The page's notes on tasks and agents.
    #[serde(default)]
    pub(crate) console: Console,
}

impl StateSnapshot {
    /// Decodes a snapshot payload: this type when it starts with its `queue` field, else an
    /// older snapshot holding only the queue.
    pub(crate) fn from_json(payload: &[u8]) -> Result<StateSnapshot, serde_json::Error> {
        if payload.starts_with(b"{\"queue\"") {
            serde_json::from_slice(payload)
        } else {
            serde_json::from_slice(payload).map(|queue| StateSnapshot {
                queue,
                configs: Vec::new(),
                results: Vec::new(),
                results_tracked: false,
                webhooks: Outbox::default(),
                console: Console::default(),
            })
        }
    }
}

/// Why a record does not apply to the state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The core refused the event.
    #[error(transparent)]
    Core(#[from] scan_queue::Error),
    /// A fact that cannot follow the state (a log out of order or not of this state).
    #[error("{0}")]
    Fact(String),
}

/// Why a scan configuration document was not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigRefused {
    /// [`State::MAX_CONFIG_PAIRS`] pairs already have one and this pair does not.
    #[error(
        "Limit reached for scan configs: at most {} application and scanner pairs.",
        State::MAX_CONFIG_PAIRS
    )]
    Full,
}

/// The queue and what the server keeps beside it.
#[derive(Debug)]
pub(crate) struct State {
    /// The core.
    pub(crate) queue: Queue,
    /// Scan configuration documents by id.
    configs: BTreeMap<u64, Arc<ScanConfigDoc>>,
    /// The current document of each (application, scanner display name).
    current: HashMap<(ApplicationId, String), u64>,
    /// Result records.
    results: Results,
    /// Whether every result file has a record (see [`StateSnapshot::results_tracked`]).
    pub(crate) results_tracked: bool,
    /// The webhook outbox.
    webhooks: Outbox,
    /// The page's notes on tasks and agents, derived from the records.
    console: Console,
    /// Records made by the last operation, in order, not yet taken by the storage.
    outbox: Vec<Record>,
}

impl State {
    /// How many (application, scanner) pairs may have a scan configuration document.
    pub(crate) const MAX_CONFIG_PAIRS: usize = 4096;

    /// An empty state. The queue must record its events: they are what is persisted.
    pub(crate) fn new(config: Config, keys: KeySource) -> Result<State, scan_queue::Error> {
        Ok(State::with_queue(Queue::new(config, keys)?))
    }

    /// A state with this queue and nothing beside it.
    pub(crate) fn with_queue(queue: Queue) -> State {
        State {
            queue,
            configs: BTreeMap::new(),
            current: HashMap::new(),
            results: Results::default(),
            results_tracked: true,
            webhooks: Outbox::default(),
            console: Console::default(),
            outbox: Vec::new(),
        }
    }

    /// The state a snapshot holds.
    pub(crate) fn restore(
        config: Config,
        keys: KeySource,
        snapshot: StateSnapshot,
    ) -> Result<State, ApplyError> {
        let mut state = State::with_queue(Queue::restore(config, keys, snapshot.queue)?);
        for doc in snapshot.configs {
            let id = doc.object.id;
            if state
                .configs
                .keys()
                .next_back()
                .is_some_and(|last| *last >= id)
            {
                return Err(ApplyError::Fact(format!("scan config {id} out of order")));
            }
            let pair = (doc.application, doc.scanner.clone());
            state.current.insert(pair, id);
            state.configs.insert(id, doc);
        }
        state.drop_unreferenced_configs();
        for result in snapshot.results {
            state.insert_result(result)?;
        }
        state.results_tracked = snapshot.results_tracked;
        state.webhooks = snapshot.webhooks;
        state.console = snapshot.console;
        Ok(state)
    }

    /// The whole state, for a snapshot file.
    pub(crate) fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            queue: self.queue.snapshot(),
            configs: self.configs.values().cloned().collect(),
            results: self.results.iter().cloned().collect(),
            results_tracked: self.results_tracked,
            webhooks: self.webhooks.clone(),
            console: self.console.clone(),
        }
    }

    /// Applies a record read back from the log (recovery, a standby).
    pub(crate) fn apply(&mut self, record: Record) -> Result<(), ApplyError> {
        match record {
            Record::Event(event) => {
                self.queue.apply(event.clone())?;
                self.console.observe(&self.queue, &event);
                Ok(())
            }
            Record::Fact(fact) => self.apply_fact(fact),
        }
    }

    /// Takes the records the operations since the last call made, in order.
    pub(crate) fn take_records(&mut self) -> Vec<Record> {
        self.flush_events();
        std::mem::take(&mut self.outbox)
    }

    /// Moves the queue's pending events to the outbox, so that a fact made next comes after
    /// them.
    fn flush_events(&mut self) {
        let start = self.outbox.len();
        self.outbox
            .extend(self.queue.drain_events().map(Record::Event));
        for record in &self.outbox[start..] {
            if let Record::Event(event) = record {
                self.console.observe(&self.queue, event);
            }
        }
    }

    /// Applies a fact made on the live path and keeps it for the storage.
    fn record(&mut self, fact: Fact) -> Result<(), ApplyError> {
        self.flush_events();
        self.apply_fact(fact.clone())?;
        self.outbox.push(Record::Fact(fact));
        Ok(())
    }

    fn apply_fact(&mut self, fact: Fact) -> Result<(), ApplyError> {
        match fact {
            Fact::ScanConfigStored(doc) => {
                let id = doc.object.id;
                if self
                    .configs
                    .keys()
                    .next_back()
                    .is_some_and(|last| *last >= id)
                {
                    return Err(ApplyError::Fact(format!(
                        "scan config {id} is not newer than every stored one"
                    )));
                }
                self.current
                    .insert((doc.application, doc.scanner.clone()), id);
                self.configs.insert(id, doc);
                self.drop_unreferenced_configs();
                Ok(())
            }
            Fact::WebhooksQueued { deliveries } => self.webhooks.queue(&deliveries),
            Fact::Retried { from, to } => {
                if self.queue.task(to).is_none() {
                    return Err(ApplyError::Fact(format!(
                        "a retry of task {from} as task {to}, which does not exist"
                    )));
                }
                self.console.link_retry(&self.queue, from, to);
                Ok(())
            }
            Fact::WebhookAttempted { id, attempt } => self.webhooks.attempted(id, attempt),
            Fact::ResultsDeleted { tasks } => {
                for task in tasks {
                    if self.results.remove(task).is_none() {
                        return Err(ApplyError::Fact(format!(
                            "no result of task {task} to delete"
                        )));
                    }
                }
                Ok(())
            }
            Fact::Completed { event, result } => {
                completion_of(&event, &result)?;
                self.queue.apply(event.clone())?;
                self.console.observe(&self.queue, &event);
                self.insert_result(result)
            }
        }
    }

    fn insert_result(&mut self, result: Arc<ResultRecord>) -> Result<(), ApplyError> {
        self.results.insert(result)
    }

    /// Drops the documents no longer current that no task refers to. Runs when a document
    /// replaces another (and at restore), so it is the same on the live path and in replay.
    fn drop_unreferenced_configs(&mut self) {
        let current: BTreeSet<u64> = self.current.values().copied().collect();
        if current.len() == self.configs.len() {
            return;
        }
        let referenced: BTreeSet<u64> = TaskStatus::ALL
            .into_iter()
            .flat_map(|s| self.queue.tasks_with_status(s))
            .filter_map(|t| t.scan_config().map(|c| c.0))
            .collect();
        self.configs
            .retain(|id, _| current.contains(id) || referenced.contains(id));
    }

    /// Stores a scan configuration document as its pair's current one, with the next id.
    pub(crate) fn store_config(
        &mut self,
        application: ApplicationId,
        scanner: &str,
        object: impl FnOnce(u64) -> ScanConfigObject,
        bytes: Vec<u8>,
    ) -> Result<Arc<ScanConfigDoc>, ConfigRefused> {
        let pair = (application, scanner.to_owned());
        if !self.current.contains_key(&pair) && self.current.len() >= Self::MAX_CONFIG_PAIRS {
            return Err(ConfigRefused::Full);
        }
        let id = self.configs.keys().next_back().map_or(1, |last| last + 1);
        let doc = Arc::new(ScanConfigDoc {
            application,
            scanner: scanner.to_owned(),
            object: object(id),
            bytes,
        });
        // Cannot fail: the id is newer than every stored one.
        let _ = self.record(Fact::ScanConfigStored(Arc::clone(&doc)));
        Ok(doc)
    }

    /// Stores a document as it was (id included): an earlier version's, at start-up.
    pub(crate) fn import_config(&mut self, doc: ScanConfigDoc) -> Result<(), ApplyError> {
        self.record(Fact::ScanConfigStored(Arc::new(doc)))
    }

    /// A scan configuration document by id.
    pub(crate) fn config(&self, id: ScanConfigId) -> Option<&Arc<ScanConfigDoc>> {
        self.configs.get(&id.0)
    }

    /// The current document of an application and scanner, if any.
    pub(crate) fn current_config(
        &self,
        application: ApplicationId,
        scanner: &str,
    ) -> Option<ScanConfigId> {
        self.current
            .get(&(application, scanner.to_owned()))
            .map(|id| ScanConfigId(*id))
    }

    /// The result record of a task, if it has one.
    pub(crate) fn result(&self, task: TaskId) -> Option<&Arc<ResultRecord>> {
        self.results.get(task)
    }

    /// Joins `result` to the completion the last core call made: the two become one
    /// [`Fact::Completed`] record.
    pub(crate) fn complete_with(&mut self, result: ResultRecord) -> Result<(), ApplyError> {
        self.flush_events();
        let result = Arc::new(result);
        let event = match self.outbox.pop() {
            Some(Record::Event(event)) if completion_of(&event, &result).is_ok() => event,
            other => {
                self.outbox.extend(other);
                return Err(ApplyError::Fact(format!(
                    "no completion of task {} to join its result to",
                    result.task
                )));
            }
        };
        self.insert_result(Arc::clone(&result))?;
        self.outbox
            .push(Record::Fact(Fact::Completed { event, result }));
        Ok(())
    }

    /// Keeps a result record for a task completed before results had records (a data
    /// directory of an earlier version), at start-up.
    pub(crate) fn adopt_result(&mut self, result: ResultRecord) -> Result<(), ApplyError> {
        let task = self.queue.task(result.task);
        if task.is_none_or(|t| t.status() != TaskStatus::CompleteSuccessful) {
            return Err(ApplyError::Fact(format!(
                "a result for task {}, which is not COMPLETE_SUCCESSFUL",
                result.task
            )));
        }
        self.insert_result(Arc::new(result))
    }

    /// The result records.
    pub(crate) fn results(&self) -> &Results {
        &self.results
    }

    /// Deletes (and records so) what retention says is due at `now_ms`, at most `max`; the
    /// deleted records, whose files are to go once that is durable.
    pub(crate) fn expire_results(
        &mut self,
        retention: Retention,
        now_ms: u64,
        max: usize,
    ) -> Vec<Arc<ResultRecord>> {
        let tasks = self.results.due(&self.queue, retention, now_ms, max);
        if tasks.is_empty() {
            return Vec::new();
        }
        let deleted = tasks
            .iter()
            .filter_map(|t| self.results.get(*t).cloned())
            .collect();
        // Cannot fail: every task has a result.
        let _ = self.record(Fact::ResultsDeleted { tasks });
        deleted
    }

    /// The page's notes on tasks and agents.
    pub(crate) fn console(&self) -> &Console {
        &self.console
    }

    /// Records that `to`, just queued, retries `from`.
    pub(crate) fn retried(&mut self, from: TaskId, to: TaskId) -> Result<(), ApplyError> {
        self.record(Fact::Retried { from, to })
    }

    /// The webhook outbox.
    pub(crate) fn webhooks(&self) -> &Outbox {
        &self.webhooks
    }

    /// Queues webhook deliveries (their ids from [`Outbox::next_id`] on).
    pub(crate) fn queue_webhooks(&mut self, deliveries: Vec<Delivery>) -> Result<(), ApplyError> {
        self.record(Fact::WebhooksQueued { deliveries })
    }

    /// Records how a delivery attempt ended.
    pub(crate) fn webhook_attempted(
        &mut self,
        id: u64,
        attempt: Attempt,
    ) -> Result<(), ApplyError> {
        self.record(Fact::WebhookAttempted { id, attempt })
    }

    /// Whether a file name under `results/` is referenced by a result record.
    pub(crate) fn result_files(&self) -> impl Iterator<Item = &str> + '_ {
        self.results.iter().map(|r| r.file.as_str())
    }
}

/// Checks that `event` completes the task `result` is for.
fn completion_of(event: &Event, result: &ResultRecord) -> Result<(), ApplyError> {
    match event {
        Event::TaskCompleted { task, .. } if *task == result.task => Ok(()),
        _ => Err(ApplyError::Fact(format!(
            "a result for task {} joined to another event",
            result.task
        ))),
    }
}

/// Bytes as base64 in JSON.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::NewScan;

    fn state() -> State {
        State::new(Config::default(), KeySource::from_seed([3; 32])).unwrap()
    }

    fn object(id: u64) -> ScanConfigObject {
        ScanConfigObject {
            id,
            active: true,
            name: "zap".into(),
            kind: crate::wire::SCAN_CONFIG_TYPE.into(),
            content_type: "text/plain".into(),
            uploaded_date: 1,
        }
    }

    const ZAP: &str = "OWASP Zed Attack Proxy";

    #[test]
    fn a_replaced_config_is_kept_while_a_task_refers_to_it() {
        let mut s = state();
        let app = ApplicationId(7);
        let first = s.store_config(app, ZAP, object, b"one".to_vec()).unwrap();
        let mut scan = NewScan::new(app, ZAP);
        scan.scan_config = Some(ScanConfigId(first.object.id));
        s.queue.queue_scan(1, scan).unwrap();
        let second = s.store_config(app, ZAP, object, b"two".to_vec()).unwrap();
        assert_eq!(s.current_config(app, ZAP), Some(ScanConfigId(2)));
        assert_eq!(s.config(ScanConfigId(1)).unwrap().bytes, b"one");
        // A third replaces the second, which no task refers to: it goes.
        s.store_config(app, ZAP, object, b"three".to_vec()).unwrap();
        assert!(s.config(ScanConfigId(second.object.id)).is_none());
        assert!(s.config(ScanConfigId(1)).is_some());

        // Replaying the records on a fresh state gives the same documents.
        let records = s.take_records();
        let mut replayed = state();
        for r in records {
            let json = serde_json::to_vec(&r).unwrap();
            replayed.apply(Record::from_json(&json).unwrap()).unwrap();
        }
        assert_eq!(replayed.configs, s.configs);
        assert_eq!(replayed.current, s.current);
        // And so does a snapshot.
        let json = serde_json::to_vec(&s.snapshot()).unwrap();
        let restored = State::restore(
            Config::default(),
            KeySource::from_seed([4; 32]),
            StateSnapshot::from_json(&json).unwrap(),
        )
        .unwrap();
        assert_eq!(restored.configs, s.configs);
    }

    /// The page's notes made on the live path (records taken after each operation, as
    /// `App::transact` does) equal those replay rebuilds from the records, and those a
    /// snapshot keeps.
    #[test]
    fn console_notes_replay_and_snapshot_alike() {
        let config = Config {
            max_status_history: 4,
            lease_ms: 10,
            ..Config::default()
        };
        let mut live = State::new(config.clone(), KeySource::from_seed([3; 32])).unwrap();
        let mut records = Vec::new();
        let registered = live.queue.register_agent(1).unwrap();
        let agent = registered.key.expose_secret().to_owned();
        for _ in 0..3 {
            let scan = NewScan::new(ApplicationId(1), ZAP);
            live.queue.queue_scan(1, scan).unwrap();
        }
        let config_text = "name=builder-7\nhost=h";
        let t = live.queue.request_task(2, &agent, &[ZAP], config_text);
        let key = t
            .unwrap()
            .unwrap()
            .assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned();
        let one = TaskId(1);
        records.extend(live.take_records());
        for i in 0..6 {
            let message = format!("p{i}");
            live.queue
                .update_status(3 + i, one, &message, &agent, &key)
                .unwrap();
            records.extend(live.take_records());
        }
        live.queue.fail_task(10, one, "boom", &agent, &key).unwrap();
        records.extend(live.take_records());
        assert!(live.retried(one, TaskId(4)).is_err(), "no task 4 yet");
        let scan = NewScan::new(ApplicationId(1), ZAP);
        live.queue.queue_scan(11, scan).unwrap();
        live.retried(one, TaskId(4)).unwrap();
        records.extend(live.take_records());
        live.queue
            .request_task(12, &agent, &[ZAP], config_text)
            .unwrap();
        records.extend(live.take_records());
        live.queue.advance(100); // the lease runs out: back to the queue
        records.extend(live.take_records());

        let note = live.console().task(TaskId(2)).unwrap();
        assert_eq!(
            note.agent_name.as_deref(),
            Some("builder-7"),
            "kept after the lease"
        );
        assert!(live.queue.task(TaskId(2)).unwrap().assignment().is_none());
        let head = &live.console().task(one).unwrap().head;
        assert_eq!(head.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(
            live.queue.task(one).unwrap().history()[0].id > 3,
            "the core dropped them"
        );
        assert_eq!(live.console().task(TaskId(4)).unwrap().retry_of, Some(one));
        assert_eq!(
            live.console().task(one).unwrap().retried_as,
            Some(TaskId(4))
        );

        let mut replayed = State::new(config.clone(), KeySource::from_seed([9; 32])).unwrap();
        for r in records {
            let json = serde_json::to_vec(&r).unwrap();
            replayed.apply(Record::from_json(&json).unwrap()).unwrap();
        }
        assert_eq!(replayed.console, live.console);
        let json = serde_json::to_vec(&live.snapshot()).unwrap();
        let restored = State::restore(
            config,
            KeySource::from_seed([4; 32]),
            StateSnapshot::from_json(&json).unwrap(),
        )
        .unwrap();
        assert_eq!(restored.console, live.console);
    }

    /// Notes of evicted tasks do not pile up: they stay within twice the queue's tasks plus
    /// the sweep's floor.
    #[test]
    fn console_notes_of_evicted_tasks_are_swept() {
        let config = Config {
            max_finished_tasks: 10,
            ..Config::default()
        };
        let mut s = State::new(config, KeySource::from_seed([3; 32])).unwrap();
        let registered = s.queue.register_agent(1).unwrap();
        let agent = registered.key.expose_secret().to_owned();
        for i in 0..3_000u64 {
            let now = 2 + i;
            s.queue
                .queue_scan(now, NewScan::new(ApplicationId(1), ZAP))
                .unwrap();
            let task = s.queue.request_task(now, &agent, &[ZAP], "name=a").unwrap();
            let task = task.unwrap();
            let (id, key) = (
                task.id(),
                task.assignment()
                    .unwrap()
                    .task_key()
                    .expose_secret()
                    .to_owned(),
            );
            s.queue.complete_task(now, id, &agent, &key).unwrap();
            let _ = s.take_records();
            assert!(s.console.task_notes() <= 2 * 11 + 1024 + 1);
        }
        assert!(s.console.task(TaskId(3_000)).is_some());
        assert!(s.console.task(TaskId(1)).is_none(), "swept");
    }

    #[test]
    fn older_snapshots_and_records_still_decode() {
        let mut s = state();
        s.queue.register_agent(5).unwrap();
        let bare = serde_json::to_vec(&s.queue.snapshot()).unwrap();
        let decoded = StateSnapshot::from_json(&bare).unwrap();
        assert!(decoded.configs.is_empty() && decoded.results.is_empty());
        let event = s.take_records().remove(0);
        let json = serde_json::to_vec(&event).unwrap();
        assert!(
            json.starts_with(b"{\"type\":\"agent_registered\""),
            "a bare event, as older journals hold"
        );
        assert!(matches!(Record::from_json(&json), Ok(Record::Event(_))));
    }

    #[test]
    fn a_result_joins_its_completion_in_one_record() {
        let mut s = state();
        let agent = s
            .queue
            .register_agent(1)
            .unwrap()
            .key
            .expose_secret()
            .to_owned();
        s.queue
            .queue_scan(1, NewScan::new(ApplicationId(1), ZAP))
            .unwrap();
        let task = s
            .queue
            .request_task(1, &agent, &[ZAP], "")
            .unwrap()
            .unwrap();
        let key = task
            .assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned();
        s.queue.complete_task(2, TaskId(1), &agent, &key).unwrap();
        let result = ResultRecord {
            task: TaskId(1),
            application: ApplicationId(1),
            scanner: ZAP.into(),
            file: "f".into(),
            file_name: None,
            content_type: None,
            size: 3,
            sha256: "x".into(),
            received_ms: 2,
            report: None,
            findings: None,
        };
        s.complete_with(result.clone()).unwrap();
        let records = s.take_records();
        let last = serde_json::to_vec(records.last().unwrap()).unwrap();
        assert!(
            last.starts_with(b"{\"Completed\""),
            "{}",
            String::from_utf8_lossy(&last)
        );
        let mut replayed = state();
        for r in records {
            let json = serde_json::to_vec(&r).unwrap();
            replayed.apply(Record::from_json(&json).unwrap()).unwrap();
        }
        assert_eq!(replayed.result(TaskId(1)).map(|r| r.size), Some(3));
        assert_eq!(
            replayed.queue.task(TaskId(1)).unwrap().status(),
            TaskStatus::CompleteSuccessful
        );
        // No completion to join: refused, nothing recorded.
        assert!(s.complete_with(result).is_err());
        assert!(s.take_records().is_empty());
    }

    #[test]
    fn a_result_needs_a_completed_task_and_comes_once() {
        let mut s = state();
        let result = ResultRecord {
            task: TaskId(1),
            application: ApplicationId(1),
            scanner: ZAP.into(),
            file: "f".into(),
            file_name: None,
            content_type: None,
            size: 0,
            sha256: String::new(),
            received_ms: 1,
            report: None,
            findings: None,
        };
        assert!(s.adopt_result(result.clone()).is_err());
        assert!(s.take_records().is_empty(), "nothing recorded");
    }
}
