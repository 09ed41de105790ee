//! Request task (SPEC §3 "Request task"): the oldest matching queued task, to one agent.

use crate::error::{Bound, Error, Field};
use crate::event::{Event, shared};
use crate::key::TaskKey;
use crate::queue::Queue;
use crate::task::Task;

/// Splits ThreadFix's comma-separated scanner list: entries trimmed, empty ones dropped.
///
/// ```
/// let names: Vec<&str> = scan_queue::split_scanner_list(" OWASP Zed Attack Proxy, ,Burp Suite Pro ").collect();
/// assert_eq!(names, ["OWASP Zed Attack Proxy", "Burp Suite Pro"]);
/// ```
pub fn split_scanner_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Queue {
    /// An agent asks for work: the oldest (lowest id) queued task whose scanner is one of
    /// `scanners` (each trimmed, empty entries ignored; exact, case-sensitive match) is
    /// atomically assigned to it, with a fresh task key, `startTime = now`, one more attempt,
    /// and a lease until `now + lease`.
    ///
    /// Returns `Ok(None)` when no queued task matches (ThreadFix: "No task found."). The task
    /// key is in [`Task::assignment`].
    ///
    /// Errors: [`Error::InvalidAgentKey`]; [`Error::InvalidInput`] for a scanner list without
    /// a non-empty name; [`Error::BoundExceeded`] for too many scanners, a too long name or agent config.
    pub fn request_task<S: AsRef<str>>(
        &mut self,
        now_ms: u64,
        agent_key: &str,
        scanners: &[S],
        agent_config: &str,
    ) -> Result<Option<&Task>, Error> {
        let now_ms = self.advance(now_ms);
        let found = self.pick_task(agent_key, scanners, agent_config);
        let Some((task, agent)) = self.note_rejection(found)? else {
            return Ok(None);
        };
        let task_key = TaskKey::generate(self.keys.rng());
        self.commit(Event::TaskAssigned {
            task,
            agent,
            task_key,
            agent_config: shared(agent_config),
            at_ms: now_ms,
            lease_until_ms: now_ms.saturating_add(self.config.lease_ms),
        });
        Ok(self.tasks.get(&task))
    }

    fn pick_task<S: AsRef<str>>(
        &self,
        agent_key: &str,
        scanners: &[S],
        agent_config: &str,
    ) -> Result<Option<(crate::TaskId, crate::AgentId)>, Error> {
        // SPEC §3: names are trimmed and empty entries ignored, as in `split_scanner_list`.
        if scanners.iter().all(|s| s.as_ref().trim().is_empty()) {
            return Err(Error::InvalidInput {
                field: Field::Scanners,
                reason: "no scanner named",
            });
        }
        if scanners.len() > self.config.max_scanners_per_request {
            return Err(self.bound(Bound::ScannersPerRequest));
        }
        for s in scanners {
            self.check_len(s.as_ref(), self.config.max_scanner_len, Bound::ScannerLen)?;
        }
        self.check_len(
            agent_config,
            self.config.max_agent_config_len,
            Bound::AgentConfigLen,
        )?;
        let agent = self
            .agent_for_key(agent_key)
            .ok_or(Error::InvalidAgentKey)?;
        let oldest = scanners
            .iter()
            .filter_map(|s| self.scanners.get(s.as_ref().trim())?.queued.front())
            .min()
            .copied();
        Ok(oldest.map(|task| (task, agent)))
    }
}
