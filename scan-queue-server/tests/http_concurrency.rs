//! Concurrency over HTTP: 8 agents polling at once take 500 tasks; every task is completed
//! exactly once and no task is given to two agents.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const TASKS: u64 = 500;
const AGENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_agents_take_500_tasks_each_exactly_once() {
    let s = Arc::new(TestServer::start().await);
    let scanners = ["Burp Suite Pro", "OWASP Zed Attack Proxy", "AppSpider"];
    for i in 0..TASKS {
        s.queue_scan(scanners[i as usize % scanners.len()]).await;
    }
    let mut agents = Vec::new();
    for n in 0..AGENTS {
        let s = Arc::clone(&s);
        agents.push(tokio::spawn(async move {
            let key = s.agent_key().await;
            // Agents list their scanners differently; together they cover all three.
            let list = if n % 2 == 0 {
                "burp, zap, appspider"
            } else {
                "AppSpider,OWASP Zed Attack Proxy,Burp Suite Pro"
            };
            let mut done = Vec::new();
            while let Some((id, task_key)) = s.request_task(&key, list).await {
                if id % 7 == 0 {
                    let r = s.update(id, "halfway", &key, &task_key).await;
                    assert_eq!(r["success"], true, "{r}");
                }
                let r = s.complete(id, &key, &task_key).await;
                assert_eq!(r["success"], true, "task {id}: {r}");
                assert_eq!(r["object"]["id"], id);
                assert_eq!(r["object"]["secureKey"], task_key.as_str());
                done.push(id);
            }
            (n, done)
        }));
    }
    let mut taken_by: BTreeMap<u64, usize> = BTreeMap::new();
    let mut busy_agents = 0;
    for agent in agents {
        let (n, done) = agent.await.unwrap();
        busy_agents += usize::from(!done.is_empty());
        for id in done {
            if let Some(first) = taken_by.insert(id, n) {
                panic!("task {id} was given to agents {first} and {n}");
            }
        }
    }
    let all: BTreeSet<u64> = (1..=TASKS).collect();
    assert_eq!(taken_by.keys().copied().collect::<BTreeSet<_>>(), all);
    assert!(busy_agents > 1, "only one agent ever got work");
    let stats = s.server.queue().stats();
    assert_eq!(stats.counters.completions, TASKS);
    assert_eq!(stats.counters.assignments, TASKS);
    assert_eq!(stats.open_tasks(), 0);
    assert_eq!(s.results().len(), TASKS as usize);
    assert!(s.incoming().is_empty());
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}
