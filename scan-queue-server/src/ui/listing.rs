//! What the page shows, copied out of the queue under its lock with bounded work: a page of
//! tasks newest first, one task with its history, the agents.

use crate::report::Findings;
use crate::state::{ResultRecord, State};
use scan_queue::{AgentId, Queue, Task, TaskId, TaskStatus};
use std::ops::Bound;

/// Rows on one page.
pub(crate) const PAGE_ROWS: usize = 50;
/// Tasks examined at most for one page (a scanner or application filter may skip many).
pub(crate) const EXAMINE_MAX: usize = 2_000;
/// Agents listed at most.
pub(crate) const AGENT_ROWS: usize = 50;

/// The listing's filters and position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) status: Option<TaskStatus>,
    /// A scanner's display name.
    pub(crate) scanner: Option<String>,
    /// An application id.
    pub(crate) application: Option<u64>,
    /// Only tasks with a smaller id (the next page's start).
    pub(crate) before: Option<TaskId>,
}

/// One task row.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) id: TaskId,
    pub(crate) application: u64,
    pub(crate) scanner: String,
    pub(crate) target_url: Option<String>,
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    pub(crate) create_ms: u64,
    pub(crate) start_ms: Option<u64>,
    pub(crate) end_ms: Option<u64>,
    /// The agent holding (or that last held) the task: its public uuid, never its key.
    pub(crate) agent: Option<AgentId>,
    /// Its result's findings, when it has a result of a known report kind.
    pub(crate) findings: Option<Findings>,
}

impl Row {
    pub(crate) fn new(task: &Task) -> Row {
        Row {
            id: task.id(),
            application: task.application().0,
            scanner: task.scanner().to_owned(),
            target_url: task.target_url().map(str::to_owned),
            status: task.status(),
            attempts: task.attempts(),
            create_ms: task.create_ms(),
            start_ms: task.start_ms(),
            end_ms: task.end_ms(),
            agent: task.assignment().map(|a| a.agent()),
            findings: None,
        }
    }
}

/// One page of tasks.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) rows: Vec<Row>,
    /// Where the next (older) page starts, if there may be one.
    pub(crate) older: Option<TaskId>,
    /// The page stopped after [`EXAMINE_MAX`] tasks without filling up.
    pub(crate) budget_spent: bool,
}

/// Tasks newest first (highest id first), filtered, from `filter.before` down: one walk down
/// the queue's tasks in id order, so a page costs O(log n) to start plus at most
/// [`EXAMINE_MAX`] steps, whatever the queue's size and the filters.
pub(crate) fn newest_first(state: &State, filter: &Filter) -> Listing {
    let queue = &state.queue;
    let end = filter.before.map_or(Bound::Unbounded, Bound::Excluded);
    let mut tasks = queue.tasks_by_id((Bound::Unbounded, end)).rev();
    let mut listing = Listing::default();
    let mut examined = 0usize;
    for task in tasks.by_ref() {
        examined += 1;
        let wanted = filter.status.is_none_or(|s| s == task.status())
            && filter
                .scanner
                .as_deref()
                .is_none_or(|s| s == task.scanner())
            && filter.application.is_none_or(|a| a == task.application().0);
        if wanted {
            let mut row = Row::new(task);
            row.findings = state.result(task.id()).and_then(|r| r.findings);
            listing.rows.push(row);
            if listing.rows.len() == PAGE_ROWS {
                listing.older = Some(task.id());
                break;
            }
        }
        if examined == EXAMINE_MAX {
            listing.older = Some(task.id());
            listing.budget_spent = true;
            break;
        }
    }
    // A page that stopped at the oldest task has no older page.
    if listing.older.is_some() && tasks.next().is_none() {
        listing.older = None;
        listing.budget_spent = false;
    }
    listing
}

/// A task's result, as the page shows it.
#[derive(Clone, Debug)]
pub(crate) struct ResultView {
    pub(crate) file_name: Option<String>,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) received_ms: u64,
    pub(crate) report: Option<String>,
    pub(crate) findings: Option<Findings>,
}

/// One task, with its whole retained status history as ThreadFix's texts, and its result.
#[derive(Clone, Debug)]
pub(crate) struct Detail {
    pub(crate) row: Row,
    pub(crate) result: Option<ResultView>,
    pub(crate) timeout_ms: u64,
    pub(crate) scan_config: Option<u64>,
    pub(crate) lease_until_ms: Option<u64>,
    /// `(sequence number, at_ms, message)`.
    pub(crate) history: Vec<(u64, u64, String)>,
}

impl Detail {
    pub(crate) fn new(task: &Task, result: Option<&ResultRecord>) -> Detail {
        Detail {
            row: Row {
                findings: result.and_then(|r| r.findings),
                ..Row::new(task)
            },
            result: result.map(|r| ResultView {
                file_name: r.file_name.clone(),
                size: r.size,
                sha256: r.sha256.clone(),
                received_ms: r.received_ms,
                report: r.report.clone(),
                findings: r.findings,
            }),
            timeout_ms: task.timeout_ms(),
            scan_config: task.scan_config().map(|c| c.0),
            lease_until_ms: task
                .assignment()
                .filter(|_| task.status().is_active())
                .map(|a| a.lease_until_ms()),
            history: task
                .history()
                .iter()
                .map(|e| (e.id, e.at_ms, e.message.to_string()))
                .collect(),
        }
    }
}

/// One registered agent.
#[derive(Clone, Debug)]
pub(crate) struct AgentRow {
    pub(crate) id: AgentId,
    pub(crate) registered_ms: Option<u64>,
    pub(crate) tasks: Vec<TaskId>,
}

/// The first [`AGENT_ROWS`] agents (in id order) and how many there are.
pub(crate) fn agents(queue: &Queue) -> (Vec<AgentRow>, usize) {
    let rows = queue
        .agents()
        .take(AGENT_ROWS)
        .map(|id| AgentRow {
            id,
            registered_ms: queue.agent_registered_ms(id),
            tasks: queue
                .agent_tasks(id)
                .map(|t| t.take(10).collect())
                .unwrap_or_default(),
        })
        .collect();
    (rows, queue.stats().agents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::{ApplicationId, Config, KeySource, NewScan};

    fn ids(l: &Listing) -> Vec<u64> {
        l.rows.iter().map(|r| r.id.0).collect()
    }

    #[test]
    fn pages_newest_first_across_statuses_with_filters() {
        let mut q = Queue::new(Config::default(), KeySource::from_seed([3; 32])).unwrap();
        for i in 0..120u64 {
            let scanner = if i % 3 == 0 { "b" } else { "a" };
            q.queue_scan(1, NewScan::new(ApplicationId(1), scanner))
                .unwrap();
        }
        for id in [5, 50, 119] {
            q.cancel_task(2, TaskId(id)).unwrap();
        }
        let q = State::with_queue(q);
        let first = newest_first(&q, &Filter::default());
        assert_eq!(ids(&first)[..3], [120, 119, 118]);
        assert_eq!(first.rows.len(), PAGE_ROWS);
        assert_eq!(first.older, Some(TaskId(71)));
        let second = newest_first(
            &q,
            &Filter {
                before: first.older,
                ..Filter::default()
            },
        );
        assert_eq!(ids(&second)[0], 70);
        let third = newest_first(
            &q,
            &Filter {
                before: second.older,
                ..Filter::default()
            },
        );
        assert_eq!(ids(&third), (1..=20).rev().collect::<Vec<_>>());
        assert_eq!(third.older, None);
        let deleted = newest_first(
            &q,
            &Filter {
                status: Some(TaskStatus::CompleteDeleted),
                ..Filter::default()
            },
        );
        assert_eq!(ids(&deleted), [119, 50, 5]);
        let b = newest_first(
            &q,
            &Filter {
                scanner: Some("b".into()),
                ..Filter::default()
            },
        );
        assert!(b.rows.iter().all(|r| r.scanner == "b"));
        assert_eq!(b.rows.len(), 40);
        assert_eq!(b.older, None);
        let none = newest_first(
            &q,
            &Filter {
                scanner: Some("zzz".into()),
                ..Filter::default()
            },
        );
        assert!(none.rows.is_empty() && none.older.is_none());
    }

    #[test]
    fn a_scanner_filter_spends_a_bounded_budget() {
        let mut q = Queue::new(Config::default(), KeySource::from_seed([3; 32])).unwrap();
        q.queue_scan(1, NewScan::new(ApplicationId(1), "rare"))
            .unwrap();
        for _ in 0..EXAMINE_MAX + 10 {
            q.queue_scan(1, NewScan::new(ApplicationId(1), "common"))
                .unwrap();
        }
        let filter = Filter {
            scanner: Some("rare".into()),
            ..Filter::default()
        };
        let q = State::with_queue(q);
        let page = newest_first(&q, &filter);
        assert!(page.rows.is_empty());
        assert!(page.budget_spent);
        let next = newest_first(
            &q,
            &Filter {
                before: page.older,
                ..filter
            },
        );
        assert_eq!(ids(&next), [1]);
        assert!(!next.budget_spent);
    }
}
