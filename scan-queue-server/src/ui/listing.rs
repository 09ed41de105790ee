//! What the page shows, copied out of the queue under its lock with bounded work: a page of
//! tasks newest first, one task with its history, the agents.

use crate::report::Findings;
use crate::state::console::{TaskNote, status_since_ms};
use crate::state::{ResultRecord, State};
use scan_queue::{AgentId, StatusMessage, Task, TaskId, TaskStatus};
use std::iter::Peekable;
use std::ops::Bound;

/// Rows on one page.
pub(crate) const PAGE_ROWS: usize = 50;
/// Tasks examined at most for one page (a scanner or application filter may skip many).
pub(crate) const EXAMINE_MAX: usize = 2_000;
/// Tasks examined at most to count a filtered selection.
pub(crate) const COUNT_MAX: usize = 10_000;
/// Tasks one bulk action changes at most (and examines at most twice as many per 10).
pub(crate) const BULK_MAX: usize = 1_000;
/// Agents listed at most.
pub(crate) const AGENT_ROWS: usize = 50;
/// Bytes of a URL or agent search text.
pub(crate) const SEARCH_BYTES: usize = 255;

/// The order of the listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Sort {
    /// Highest id (latest created) first.
    #[default]
    Newest,
    /// Lowest id first.
    Oldest,
    /// By status (in [`TaskStatus::ALL`] order), newest first within a status.
    Status,
}

impl Sort {
    /// Every order, as offered.
    pub(crate) const ALL: [Sort; 3] = [Sort::Newest, Sort::Oldest, Sort::Status];

    /// The name in a URL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Status => "status",
        }
    }

    /// What the page calls it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Sort::Newest => "Newest first (id, created)",
            Sort::Oldest => "Oldest first (id, created)",
            Sort::Status => "By status",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// A position in the listing: `(status rank, id)` (the rank is 0 unless sorted by status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) rank: usize,
    pub(crate) id: u64,
}

impl Key {
    fn of(sort: Sort, task: &Task) -> Key {
        Key {
            rank: if sort == Sort::Status {
                task.status().index()
            } else {
                0
            },
            id: task.id().0,
        }
    }

    /// `ID`, or `RANK-ID` when sorted by status.
    pub(crate) fn encode(self, sort: Sort) -> String {
        if sort == Sort::Status {
            format!("{}-{}", self.rank, self.id)
        } else {
            self.id.to_string()
        }
    }

    pub(crate) fn decode(sort: Sort, s: &str) -> Option<Key> {
        let (rank, id) = match s.split_once('-') {
            Some((r, i)) if sort == Sort::Status => (r.parse().ok()?, i.parse().ok()?),
            None => (0, s.parse().ok()?),
            Some(_) => return None,
        };
        (rank < TaskStatus::ALL.len()).then_some(Key { rank, id })
    }
}

/// The listing's filters, order and position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) status: Option<TaskStatus>,
    /// A scanner's display name.
    pub(crate) scanner: Option<String>,
    /// An application id.
    pub(crate) application: Option<u64>,
    /// A substring of the target URL (ASCII case-insensitive).
    pub(crate) url: Option<String>,
    /// A prefix of the agent's uuid, or a substring of its name or host (ASCII
    /// case-insensitive).
    pub(crate) agent: Option<String>,
    pub(crate) sort: Sort,
    /// The page starts after this position (the next page).
    pub(crate) from: Option<Key>,
    /// The page ends before this position (the previous page).
    pub(crate) to: Option<Key>,
}

impl Filter {
    /// Whether anything but the status filters rows (then counting costs a scan).
    fn filters_rows(&self) -> bool {
        self.scanner.is_some()
            || self.application.is_some()
            || self.url.is_some()
            || self.agent.is_some()
    }

    fn statuses(&self) -> Vec<TaskStatus> {
        match self.status {
            Some(s) => vec![s],
            None => TaskStatus::ALL.to_vec(),
        }
    }

    /// Whether `task` passes the filters other than status.
    pub(crate) fn matches(&self, state: &State, task: &Task) -> bool {
        if self.scanner.as_deref().is_some_and(|s| s != task.scanner())
            || self.application.is_some_and(|a| a != task.application().0)
        {
            return false;
        }
        if let Some(url) = &self.url
            && !task
                .target_url()
                .is_some_and(|u| contains_ignore_case(u, url))
        {
            return false;
        }
        if let Some(text) = &self.agent {
            let task_note = state.console().task(task.id());
            let Some(agent) = agent_of(task, task_note) else {
                return false;
            };
            let note = state.console().agent(agent);
            let hit = agent.to_string().starts_with(&text.to_ascii_lowercase())
                || note.is_some_and(|n| {
                    [&n.name, &n.host]
                        .into_iter()
                        .flatten()
                        .any(|v| contains_ignore_case(v, text))
                })
                || task_note
                    .and_then(|n| n.agent_name.as_deref())
                    .is_some_and(|v| contains_ignore_case(v, text));
            if !hit {
                return false;
            }
        }
        true
    }

    /// The query string of these filters and order (no position).
    pub(crate) fn query(&self) -> form_urlencoded::Serializer<'static, String> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = self.status {
            q.append_pair("status", s.name());
        }
        if let Some(s) = &self.scanner {
            q.append_pair("scanner", s);
        }
        if let Some(a) = self.application {
            q.append_pair("application", &a.to_string());
        }
        if let Some(u) = &self.url {
            q.append_pair("url", u);
        }
        if let Some(a) = &self.agent {
            q.append_pair("agent", a);
        }
        if self.sort != Sort::Newest {
            q.append_pair("sort", self.sort.name());
        }
        q
    }
}

/// Whether `needle` occurs in `haystack`, ASCII letters in any case (no allocation: a count
/// may run this on 10 000 tasks under the state's lock).
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// The agent holding the task, or the one of its latest attempt.
pub(crate) fn agent_of(task: &Task, note: Option<&TaskNote>) -> Option<AgentId> {
    task.assignment()
        .map(scan_queue::Assignment::agent)
        .or_else(|| note.and_then(|n| n.agent))
}

type Source<'a> = Peekable<Box<dyn Iterator<Item = &'a Task> + 'a>>;

/// Tasks in display order after `start` (`forward`), or in reverse display order before it.
fn stream<'a>(
    state: &'a State,
    statuses: &[TaskStatus],
    sort: Sort,
    start: Option<Key>,
    forward: bool,
) -> Box<dyn Iterator<Item = &'a Task> + 'a> {
    let queue = &state.queue;
    let ids_down = match sort {
        Sort::Newest | Sort::Status => forward,
        Sort::Oldest => !forward,
    };
    let range = |rank_cmp: std::cmp::Ordering| -> (Bound<TaskId>, Bound<TaskId>) {
        use std::cmp::Ordering::Equal;
        match start {
            Some(k) if rank_cmp == Equal && ids_down => {
                (Bound::Unbounded, Bound::Excluded(TaskId(k.id)))
            }
            Some(k) if rank_cmp == Equal => (Bound::Excluded(TaskId(k.id)), Bound::Unbounded),
            _ => (Bound::Unbounded, Bound::Unbounded),
        }
    };
    let source = |status: TaskStatus, bounds| -> Box<dyn Iterator<Item = &'a Task> + 'a> {
        if ids_down {
            Box::new(queue.tasks_in(status, bounds).rev())
        } else {
            Box::new(queue.tasks_in(status, bounds))
        }
    };
    if sort == Sort::Status {
        let start_rank = start.map(|k| k.rank);
        let mut ranked: Vec<TaskStatus> = statuses
            .iter()
            .copied()
            .filter(|s| {
                start_rank.is_none_or(|r| {
                    if forward {
                        s.index() >= r
                    } else {
                        s.index() <= r
                    }
                })
            })
            .collect();
        if !forward {
            ranked.reverse();
        }
        let sources: Vec<_> = ranked
            .into_iter()
            .map(|s| {
                source(
                    s,
                    range(start_rank.map_or(std::cmp::Ordering::Less, |r| s.index().cmp(&r))),
                )
            })
            .collect();
        return Box::new(sources.into_iter().flatten());
    }
    let sources: Vec<Source<'a>> = statuses
        .iter()
        .map(|s| source(*s, range(std::cmp::Ordering::Equal)).peekable())
        .collect();
    Box::new(Merge {
        sources,
        down: ids_down,
    })
}

/// Per-status id-ordered sources merged into one id order.
struct Merge<'a> {
    sources: Vec<Source<'a>>,
    down: bool,
}

impl<'a> Iterator for Merge<'a> {
    type Item = &'a Task;
    fn next(&mut self) -> Option<&'a Task> {
        let mut best: Option<(TaskId, usize)> = None;
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some(t) = s.peek() {
                let better =
                    best.is_none_or(|(b, _)| if self.down { t.id() > b } else { t.id() < b });
                if better {
                    best = Some((t.id(), i));
                }
            }
        }
        self.sources.get_mut(best?.1)?.next()
    }
}

/// One task row.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) id: TaskId,
    pub(crate) application: u64,
    pub(crate) scanner: String,
    pub(crate) target_url: Option<String>,
    pub(crate) status: TaskStatus,
    /// When it entered its status.
    pub(crate) since_ms: u64,
    pub(crate) attempts: u32,
    pub(crate) create_ms: u64,
    /// When its latest attempt started (none while queued, even after a requeue).
    pub(crate) start_ms: Option<u64>,
    pub(crate) end_ms: Option<u64>,
    /// The agent holding the task, or the one of its latest attempt: its public uuid, never
    /// its key.
    pub(crate) agent: Option<AgentId>,
    /// That agent's name (or host), when its `agentConfig` said.
    pub(crate) agent_name: Option<String>,
    /// Why it failed or timed out.
    pub(crate) reason: Option<String>,
    /// The task it retries, and the one that retries it.
    pub(crate) retry_of: Option<TaskId>,
    pub(crate) retried_as: Option<TaskId>,
    /// Its result's findings, when it has a result of a known report kind.
    pub(crate) findings: Option<Findings>,
}

/// Characters of a failure reason in a row.
const REASON_CHARS: usize = 200;

impl Row {
    pub(crate) fn new(state: &State, task: &Task) -> Row {
        let note = state.console().task(task.id());
        let agent = agent_of(task, note);
        let agent_note = agent.and_then(|a| state.console().agent(a));
        Row {
            id: task.id(),
            application: task.application().0,
            scanner: task.scanner().to_owned(),
            target_url: task.target_url().map(str::to_owned),
            status: task.status(),
            since_ms: status_since_ms(task, note),
            attempts: task.attempts(),
            create_ms: task.create_ms(),
            // A task back in the queue has no running attempt: no "Started".
            start_ms: (task.status() != TaskStatus::Queued)
                .then(|| note.and_then(|n| n.assigned_ms).or(task.start_ms()))
                .flatten(),
            end_ms: task.end_ms(),
            agent,
            agent_name: agent_note
                .and_then(|n| n.name.clone().or_else(|| n.host.clone()))
                .or_else(|| note.and_then(|n| n.agent_name.clone())),
            reason: reason(task),
            retry_of: note.and_then(|n| n.retry_of),
            retried_as: note.and_then(|n| n.retried_as),
            findings: state.result(task.id()).and_then(|r| r.findings),
        }
    }
}

/// Why a task failed or timed out, in a few words.
fn reason(task: &Task) -> Option<String> {
    let text = match task.status() {
        TaskStatus::CompleteFailed | TaskStatus::CompleteTimedOut => {
            task.history().iter().rev().find_map(|e| match &e.message {
                StatusMessage::Failed { reason, .. } => Some(reason.to_string()),
                m @ (StatusMessage::LeaseExpiredTimedOut { .. }
                | StatusMessage::DeadlinePassed { .. }) => Some(m.to_string()),
                _ => None,
            })?
        }
        TaskStatus::CompleteDeleted => "Cancelled".to_owned(),
        _ => return None,
    };
    Some(text.chars().take(REASON_CHARS).collect())
}

/// One page of tasks.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) rows: Vec<Row>,
    /// Where the next page starts, if there may be one.
    pub(crate) next: Option<Key>,
    /// Where the previous page ends, if there may be one.
    pub(crate) prev: Option<Key>,
    /// The page stopped after [`EXAMINE_MAX`] tasks without filling up.
    pub(crate) budget_spent: bool,
    /// Tasks the filters select (counted among at most [`COUNT_MAX`] when rows are filtered).
    pub(crate) total: usize,
    /// Whether `total` is exact (else at least).
    pub(crate) total_exact: bool,
}

/// A page of tasks in the filter's order from its position: O(log n) to start plus at most
/// [`EXAMINE_MAX`] steps for the page and [`COUNT_MAX`] for the count, whatever the queue's
/// size.
pub(crate) fn page(state: &State, filter: &Filter) -> Listing {
    let statuses = filter.statuses();
    let backward = filter.to.is_some() && filter.from.is_none();
    let start = if backward { filter.to } else { filter.from };
    let mut listing = Listing::default();
    let mut examined = 0usize;
    let mut last = None;
    let mut it = stream(state, &statuses, filter.sort, start, !backward);
    for task in it.by_ref() {
        examined += 1;
        last = Some(Key::of(filter.sort, task));
        if filter.matches(state, task) {
            listing.rows.push(Row::new(state, task));
            if listing.rows.len() == PAGE_ROWS {
                break;
            }
        }
        if examined == EXAMINE_MAX {
            listing.budget_spent = true;
            break;
        }
    }
    let more = (listing.rows.len() == PAGE_ROWS || listing.budget_spent) && it.next().is_some();
    drop(it);
    let row_key = |r: &Row| Key {
        rank: if filter.sort == Sort::Status {
            r.status.index()
        } else {
            0
        },
        id: r.id.0,
    };
    if backward {
        if !more {
            // Back at the start: the first page, as it is now.
            return page(
                state,
                &Filter {
                    from: None,
                    to: None,
                    ..filter.clone()
                },
            );
        }
        listing.rows.reverse();
        listing.next = listing.rows.last().map(row_key).or(filter.to);
        listing.prev = last;
    } else {
        listing.next = if more { last } else { None };
        listing.prev = start.and(listing.rows.first().map(row_key).or(start));
    }
    if filter.filters_rows() {
        let mut n = 0;
        let mut counted = 0;
        for task in stream(state, &statuses, filter.sort, None, true).take(COUNT_MAX) {
            counted += 1;
            n += usize::from(filter.matches(state, task));
        }
        listing.total = n;
        listing.total_exact = counted < COUNT_MAX;
    } else {
        let stats = state.queue.stats();
        listing.total = statuses.iter().map(|s| stats.count(*s)).sum();
        listing.total_exact = true;
    }
    listing
}

/// The tasks a bulk action over `filter`'s selection applies to: those `eligible`, with an id
/// at most `upto` (the newest when the operator confirmed), at most [`BULK_MAX`], examining
/// at most ten times as many.
pub(crate) fn selection(
    state: &State,
    filter: &Filter,
    upto: u64,
    eligible: impl Fn(TaskStatus) -> bool,
) -> (Vec<TaskId>, bool) {
    let statuses: Vec<TaskStatus> = filter
        .statuses()
        .into_iter()
        .filter(|s| eligible(*s))
        .collect();
    let start = Key {
        rank: 0,
        id: upto.saturating_add(1),
    };
    let mut ids = Vec::new();
    let mut examined = 0;
    for task in stream(state, &statuses, Sort::Newest, Some(start), true) {
        examined += 1;
        if filter.matches(state, task) {
            ids.push(task.id());
            if ids.len() == BULK_MAX {
                return (ids, true);
            }
        }
        if examined == BULK_MAX * 10 {
            return (ids, true);
        }
    }
    (ids, false)
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

/// One task, with its status history (the first entries, the count of those the queue no
/// longer keeps, and the newest), and its result.
#[derive(Clone, Debug)]
pub(crate) struct Detail {
    pub(crate) row: Row,
    pub(crate) result: Option<ResultView>,
    pub(crate) timeout_ms: u64,
    pub(crate) scan_config: Option<u64>,
    pub(crate) lease_until_ms: Option<u64>,
    /// The first entries the queue no longer keeps: `(sequence number, at_ms, message)`.
    pub(crate) head: Vec<(u64, u64, String)>,
    /// How many entries between `head` and `history` are not kept.
    pub(crate) elided: u64,
    /// The entries the queue keeps, oldest first.
    pub(crate) history: Vec<(u64, u64, String)>,
}

impl Detail {
    pub(crate) fn new(state: &State, task: &Task, result: Option<&ResultRecord>) -> Detail {
        let entry = |e: &scan_queue::StatusEntry| (e.id, e.at_ms, e.message.to_string());
        let history: Vec<_> = task.history().iter().map(entry).collect();
        let first_kept = history.first().map_or(1, |e| e.0);
        let head: Vec<_> = state
            .console()
            .task(task.id())
            .map(|n| {
                n.head
                    .iter()
                    .filter(|e| e.id < first_kept)
                    .map(entry)
                    .collect()
            })
            .unwrap_or_default();
        let elided = first_kept.saturating_sub(head.last().map_or(0, |e| e.0) + 1);
        Detail {
            row: Row::new(state, task),
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
            head,
            elided,
            history,
        }
    }
}

/// One registered agent.
#[derive(Clone, Debug)]
pub(crate) struct AgentRow {
    pub(crate) id: AgentId,
    /// Its name, else its host, from its `agentConfig`.
    pub(crate) name: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) os: Option<String>,
    /// The first line of its `agentConfig` (e.g. the agent's program and version).
    pub(crate) config: Option<String>,
    pub(crate) registered_ms: Option<u64>,
    /// The last call with its key this process saw.
    pub(crate) last_seen_ms: Option<u64>,
    /// Seen within the lease.
    pub(crate) live: bool,
    /// The tasks it holds and since when (their attempt's start).
    pub(crate) tasks: Vec<(TaskId, u64)>,
}

/// The first [`AGENT_ROWS`] agents (in id order), how many there are, and how many are live.
pub(crate) fn agents(
    state: &State,
    presence: &crate::presence::Presence,
    now_ms: u64,
) -> (Vec<AgentRow>, usize, usize) {
    let queue = &state.queue;
    let lease_ms = queue.config().lease_ms;
    let live = |id| {
        presence
            .last_seen_ms(id)
            .is_some_and(|t| t.saturating_add(lease_ms) >= now_ms)
    };
    let rows = queue
        .agents()
        .take(AGENT_ROWS)
        .map(|id| {
            let note = state.console().agent(id);
            AgentRow {
                id,
                name: note.and_then(|n| n.name.clone().or_else(|| n.host.clone())),
                host: note.and_then(|n| n.host.clone()),
                os: note.and_then(|n| n.os.clone()),
                config: note.and_then(|n| n.config.lines().next().map(str::to_owned)),
                registered_ms: queue.agent_registered_ms(id),
                last_seen_ms: presence.last_seen_ms(id),
                live: live(id),
                tasks: queue
                    .agent_tasks(id)
                    .map(|t| {
                        t.take(10)
                            .map(|t| {
                                let since = state
                                    .console()
                                    .task(t)
                                    .and_then(|n| n.assigned_ms)
                                    .unwrap_or(0);
                                (t, since)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let live_count = presence.live(queue, now_ms);
    (rows, queue.stats().agents, live_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue};

    fn ids(l: &Listing) -> Vec<u64> {
        l.rows.iter().map(|r| r.id.0).collect()
    }

    fn at(filter: &Filter, from: Option<Key>, to: Option<Key>) -> Filter {
        Filter {
            from,
            to,
            ..filter.clone()
        }
    }

    #[test]
    fn pages_in_each_order_forward_and_back_with_filters_and_totals() {
        let mut q = Queue::new(Config::default(), KeySource::from_seed([3; 32])).unwrap();
        for i in 0..120u64 {
            let scanner = if i % 3 == 0 { "b" } else { "a" };
            let mut scan = NewScan::new(ApplicationId(1), scanner);
            let url = format!("https://h{i}.example/");
            scan.target_url = Some(&url);
            q.queue_scan(1, scan).unwrap();
        }
        for id in [5, 50, 119] {
            q.cancel_task(2, TaskId(id)).unwrap();
        }
        let q = State::with_queue(q);
        let all = Filter::default();
        let first = page(&q, &all);
        assert_eq!(ids(&first)[..3], [120, 119, 118]);
        assert_eq!(first.rows.len(), PAGE_ROWS);
        assert_eq!((first.total, first.total_exact), (120, true));
        assert_eq!(first.next.map(|k| k.id), Some(71));
        assert_eq!(first.prev, None);
        let second = page(&q, &at(&all, first.next, None));
        assert_eq!(ids(&second)[0], 70);
        let third = page(&q, &at(&all, second.next, None));
        assert_eq!(ids(&third), (1..=20).rev().collect::<Vec<_>>());
        assert_eq!(third.next, None);
        // Back from the third page: the second again; back from the second: the first.
        let back = page(&q, &at(&all, None, third.prev));
        assert_eq!(ids(&back), ids(&second));
        let back = page(&q, &at(&all, None, back.prev));
        assert_eq!(ids(&back), ids(&first));
        assert_eq!(back.prev, None);

        let oldest = Filter {
            sort: Sort::Oldest,
            ..Filter::default()
        };
        let o = page(&q, &oldest);
        assert_eq!(ids(&o)[..3], [1, 2, 3]);
        let o2 = page(&q, &at(&oldest, o.next, None));
        assert_eq!(ids(&o2)[0], 51);

        let by_status = Filter {
            sort: Sort::Status,
            ..Filter::default()
        };
        let st = page(&q, &by_status);
        assert_eq!(ids(&st)[0], 120, "QUEUED first, newest first");
        let st3 = page(
            &q,
            &at(
                &by_status,
                page(&q, &at(&by_status, st.next, None)).next,
                None,
            ),
        );
        assert_eq!(ids(&st3)[17..], [119, 50, 5], "COMPLETE_DELETED last");
        let key = st3.next.map(|k| k.encode(Sort::Status));
        assert_eq!(key, None);
        assert_eq!(
            Key::decode(Sort::Status, "6-119"),
            Some(Key { rank: 6, id: 119 })
        );
        assert_eq!(Key::decode(Sort::Newest, "6-119"), None);
        assert_eq!(Key::decode(Sort::Status, "99-1"), None);

        let deleted = page(
            &q,
            &Filter {
                status: Some(TaskStatus::CompleteDeleted),
                ..Filter::default()
            },
        );
        assert_eq!(ids(&deleted), [119, 50, 5]);
        assert_eq!(deleted.total, 3);
        let b = page(
            &q,
            &Filter {
                scanner: Some("b".into()),
                ..Filter::default()
            },
        );
        assert!(b.rows.iter().all(|r| r.scanner == "b"));
        assert_eq!((b.rows.len(), b.total), (40, 40));
        assert_eq!(b.next, None);
        let url = page(
            &q,
            &Filter {
                url: Some("H11".into()),
                ..Filter::default()
            },
        );
        // h11 and h110..h119 (ids 12 and 111..120).
        assert_eq!(url.total, 11);
        assert_eq!(ids(&url)[0], 120);
        let none = page(
            &q,
            &Filter {
                scanner: Some("zzz".into()),
                ..Filter::default()
            },
        );
        assert!(none.rows.is_empty() && none.next.is_none() && none.total == 0);
        // A bulk selection: the eligible statuses only, up to the id confirmed.
        let (sel, cut) = selection(&q, &Filter::default(), 100, |s| !s.is_terminal());
        assert!(!cut);
        assert_eq!(sel.len(), 98);
        assert_eq!(sel[0], TaskId(100));
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
        let page1 = page(&q, &filter);
        assert!(page1.rows.is_empty());
        assert!(page1.budget_spent);
        assert_eq!(page1.total, 1);
        let next = page(&q, &at(&filter, page1.next, None));
        assert_eq!(ids(&next), [1]);
        assert!(!next.budget_spent);
    }
}
