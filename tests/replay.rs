//! Events replay, snapshots restore, seeds reproduce; inconsistent input is refused.

mod common;

use common::*;
use scan_queue::{
    AgentId, AgentKey, ApplicationId, Config, Error, Event, KeySource, NewScan, Queue,
    SNAPSHOT_FORMAT, ScanConfigId, Snapshot, TaskId, TaskKey, TaskStatus,
};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn replay_config() -> Config {
    Config {
        max_finished_tasks: 3,
        max_attempts: 2,
        ..config()
    }
}

/// Keys of the task an agent holds, read from the queue.
fn task_key(q: &Queue, id: TaskId) -> String {
    q.task(id)
        .and_then(|t| t.assignment())
        .map(|a| a.task_key().expose_secret().to_owned())
        .unwrap_or_default()
}

/// A varied run: several agents, heartbeats, leases running out (requeue and timeout),
/// revoke, cancel, deadlines, eviction, refused calls. `step` runs after every call. Returns
/// a transcript of every answer (ids, keys, errors) for comparisons.
fn scenario(q: &mut Queue, mut step: impl FnMut(&mut Queue)) -> Vec<String> {
    let mut log = Vec::new();
    let mut t = T0;
    macro_rules! call {
        ($e:expr) => {{
            let r = $e;
            log.push(format!(
                "{:?}",
                r.as_ref().map(|_| ()).map_err(|e| e.clone())
            ));
            step(q);
            r
        }};
    }
    let scanners = [BURP, ZAP, "WebInspect"];
    let mut agents = Vec::new();
    for _ in 0..3 {
        let a = call!(
            q.register_agent(t)
                .map(|a| (a.id, a.key.expose_secret().to_owned()))
        )
        .unwrap();
        log.push(format!("{} {}", a.0, a.1));
        agents.push(a);
    }
    for i in 0..9u64 {
        t += 10;
        let scan = NewScan::new(ApplicationId(i % 3 + 1), scanners[(i % 3) as usize]);
        let scan = if i % 2 == 0 {
            scan.target_url("http://targeturl/app")
        } else {
            scan
        };
        let scan = if i % 4 == 0 {
            scan.scan_config(ScanConfigId(i))
        } else {
            scan
        };
        let id = call!(q.queue_scan(t, scan).map(|t| t.id())).unwrap();
        log.push(format!("queued {id}"));
    }
    let (a, b, c) = (agents[0].clone(), agents[1].clone(), agents[2].clone());
    let mut held = Vec::new();
    for (who, list) in [
        (&a, &[BURP, ZAP][..]),
        (&a, &[BURP]),
        (&b, &[ZAP, "WebInspect"]),
        (&b, &[ZAP]),
        (&c, &["WebInspect"]),
    ] {
        t += 5;
        let got = call!(
            q.request_task(t, &who.1, list, "agent.properties")
                .map(|t| t.map(|t| t.id()))
        )
        .unwrap();
        let id = got.expect("a task");
        log.push(format!("{id} {}", task_key(q, id)));
        held.push((who.1.clone(), id, task_key(q, id)));
    }
    // A: heartbeat, then complete one; B fails one; refused calls along the way.
    t += 100;
    let (ak, a1, ak1) = held[0].clone();
    let (_, a2, ak2) = held[1].clone();
    let (bk, b1, bk1) = held[2].clone();
    let (_, b2, bk2) = held[3].clone();
    let (ck, c1, ck1) = held[4].clone();
    call!(q.update_status(t, a1, "50%", &ak, &ak1).map(drop)).unwrap();
    call!(q.update_status(t, a2, "started", &ak, &ak2).map(drop)).unwrap();
    call!(q.complete_task(t + 1, a1, &ak, &ak1).map(drop)).unwrap();
    call!(q.complete_task(t + 2, a1, &ak, &ak1).map(drop)).unwrap(); // retry
    call!(q.fail_task(t + 3, b1, "Just because", &bk, &bk1).map(drop)).unwrap();
    call!(q.complete_task(t + 4, b2, &ak, &bk2).map(drop)).unwrap_err();
    call!(q.complete_task(t + 4, b2, &bk, &ak2).map(drop)).unwrap_err();
    call!(q.request_task(t + 4, FOREIGN_KEY, &[BURP], "").map(drop)).unwrap_err();
    // Heartbeats for A's second task while C's lease runs out.
    for _ in 0..3 {
        t += LEASE_MS / 2;
        call!(q.update_status(t, a2, "still going", &ak, &ak2).map(drop)).unwrap();
    }
    call!(q.update_status(t, c1, "late", &ck, &ck1).map(drop)).unwrap_err();
    // B is revoked: its task goes back to the queue.
    t += 1;
    call!(q.revoke_agent(t, b.0)).unwrap();
    call!(q.request_task(t, &bk, &[ZAP], "").map(drop)).unwrap_err();
    // Cancel one queued and one held task.
    let queued: Vec<TaskId> = q
        .tasks_with_status(TaskStatus::Queued)
        .map(|t| t.id())
        .collect();
    call!(q.cancel_task(t, queued[0]).map(drop)).unwrap();
    call!(q.cancel_task(t, a2).map(drop)).unwrap();
    call!(q.cancel_task(t, a2).map(drop)).unwrap();
    call!(q.update_status(t, a2, "x", &ak, &ak2).map(drop)).unwrap_err();
    // C takes tasks again and lets the leases run out: second attempt times out.
    let d = call!(
        q.register_agent(t)
            .map(|a| (a.id, a.key.expose_secret().to_owned()))
    )
    .unwrap();
    log.push(format!("{} {}", d.0, d.1));
    for _ in 0..4 {
        t += 7;
        let got = call!(
            q.request_task(t, &ck, &scanners, "again")
                .map(|t| t.map(|t| t.id()))
        )
        .unwrap();
        log.push(format!(
            "{got:?} {}",
            got.map(|id| task_key(q, id)).unwrap_or_default()
        ));
    }
    t += LEASE_MS;
    call!(Ok::<_, Error>(q.advance(t))).unwrap();
    for _ in 0..4 {
        t += 3;
        let got = call!(
            q.request_task(t, &d.1, &scanners, "d")
                .map(|t| t.map(|t| t.id()))
        )
        .unwrap();
        if let Some(id) = got {
            let k = task_key(q, id);
            log.push(format!("{id} {k}"));
            call!(q.update_status(t, id, "d working", &d.1, &k).map(drop)).unwrap();
        }
    }
    // Time goes backwards once, then jumps past every deadline.
    call!(
        q.queue_scan(t - 1_000, NewScan::new(ApplicationId(9), BURP))
            .map(|t| t.id())
    )
    .unwrap();
    t += 2 * LEASE_MS;
    call!(Ok::<_, Error>(q.advance(t))).unwrap();
    call!(
        q.queue_scan(t, NewScan::new(ApplicationId(9), ZAP))
            .map(|t| t.id())
    )
    .unwrap();
    t += DEADLINE_MS;
    call!(Ok::<_, Error>(q.advance(t))).unwrap();
    log.push(format!("{:?}", q.stats()));
    log
}

// ---------------------------------------------------------------------------------------------
// (a) Events replay
// ---------------------------------------------------------------------------------------------

#[test]
fn applying_the_journal_rebuilds_the_same_state() {
    let mut live = Queue::new(replay_config(), KeySource::from_seed([1; 32])).unwrap();
    let mut replica = Queue::new(replay_config(), KeySource::from_seed([99; 32])).unwrap();
    let mut journal: Vec<Event> = Vec::new();
    scenario(&mut live, |live| {
        live.check_invariants().unwrap();
        for event in live.drain_events() {
            // Through JSON, as a journal would store it.
            let json = serde_json::to_string(&event).unwrap();
            let event: Event = serde_json::from_str(&json).unwrap();
            replica
                .apply(event.clone())
                .unwrap_or_else(|e| panic!("{event:?}: {e}"));
            journal.push(event);
        }
        replica.check_invariants().unwrap();
        replica.advance(live.clock_ms());
        assert_eq!(
            replica.drain_events().count(),
            0,
            "the journal had every expiry"
        );
        assert_eq!(replica.snapshot(), live.snapshot());
    });
    let s = live.stats();
    let c = &s.counters;
    assert!(
        c.evicted > 0 && c.requeues > 0 && c.lease_expiries > 0 && c.timeouts > 0,
        "{c:?}"
    );
    assert!(
        c.cancellations > 0 && c.agents_revoked > 0 && c.failures > 0 && c.completions > 0,
        "{c:?}"
    );
    assert!(journal.iter().any(|e| matches!(
        e,
        Event::LeaseExpired {
            requeued: false,
            ..
        }
    )));
    assert!(
        journal
            .iter()
            .any(|e| matches!(e, Event::DeadlineReached { .. }))
    );
    assert!(
        journal.windows(2).all(|w| w[0].at_ms() <= w[1].at_ms()),
        "events in time order"
    );

    // A fresh queue fed the whole journal at once ends in the same state.
    let mut fresh = Queue::new(replay_config(), KeySource::from_seed([3; 32])).unwrap();
    for event in &journal {
        fresh.apply(event.clone()).unwrap();
    }
    let end = live.clock_ms() + 5 * DEADLINE_MS;
    live.advance(end);
    fresh.advance(end);
    assert_eq!(fresh.snapshot(), live.snapshot());
    assert_eq!(fresh.stats().by_status, live.stats().by_status);
    // Applied events are not re-emitted.
    assert_eq!(
        fresh.drain_events().filter(|e| journal.contains(e)).count(),
        0
    );
    // Replaying the journal again on the rebuilt queue is refused at the first event.
    let before = fresh.snapshot();
    assert!(fresh.apply(journal[0].clone()).is_err());
    assert_eq!(fresh.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// (b) Snapshot, JSON, restore
// ---------------------------------------------------------------------------------------------

/// Operations after a restore: they use existing keys and mint new ones.
fn continue_run(q: &mut Queue) -> Vec<String> {
    let mut log = Vec::new();
    let t = q.clock_ms();
    let agents: Vec<AgentId> = q.agents().collect();
    let keys: Vec<String> = q
        .snapshot()
        .agents
        .iter()
        .map(|a| a.key.expose_secret().to_owned())
        .collect();
    log.push(format!("{agents:?} {:?}", q.next_deadline_ms()));
    for (i, key) in keys.iter().enumerate() {
        let held: Vec<TaskId> = q.agent_tasks(agents[i]).unwrap().collect();
        for id in held {
            let k = task_key(q, id);
            log.push(format!(
                "{:?}",
                q.update_status(t + 1, id, "after restore", key, &k)
                    .map(|t| t.status())
            ));
            log.push(format!(
                "{:?}",
                q.complete_task(t + 2, id, key, &k).map(|t| t.end_ms())
            ));
        }
        let got = q
            .request_task(t + 3, key, &[BURP, ZAP, "WebInspect"], "restored")
            .map(|t| t.map(|t| t.id()));
        log.push(format!("{got:?}"));
    }
    let new = q.register_agent(t + 4).unwrap();
    log.push(format!("{} {}", new.id, new.key.expose_secret()));
    let id = q
        .queue_scan(t + 5, NewScan::new(ApplicationId(4), BURP))
        .unwrap()
        .id();
    let got = q
        .request_task(t + 6, new.key.expose_secret(), &[BURP], "")
        .unwrap()
        .map(|t| t.id());
    log.push(format!("{id} {got:?} {}", task_key(q, id)));
    q.advance(t + LEASE_MS * 3);
    log.push(format!("{:?}", q.stats()));
    log.extend(
        q.drain_events()
            .map(|e| format!("{e:?} {}", serde_json::to_string(&e).unwrap())),
    );
    log
}

#[test]
fn snapshot_through_json_restores_an_equivalent_queue() {
    let mut live = Queue::new(replay_config(), KeySource::from_seed([1; 32])).unwrap();
    // Stop mid-run, with tasks held, queued and finished.
    let mut snaps = Vec::new();
    scenario(&mut live, |q| snaps.push(q.snapshot()));
    let varied = snaps
        .iter()
        .filter(|s| s.tasks.iter().any(|t| t.status().is_active()) && !s.finished.is_empty())
        .cloned()
        .collect::<Vec<_>>();
    assert!(varied.len() > 5);
    for snap in varied.iter().chain([&live.snapshot()]) {
        let json = serde_json::to_string(snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, snap);
        let mut original =
            Queue::restore(replay_config(), KeySource::from_seed([5; 32]), snap.clone()).unwrap();
        let mut restored =
            Queue::restore(replay_config(), KeySource::from_seed([5; 32]), back).unwrap();
        assert_eq!(restored.snapshot(), *snap);
        assert_eq!(restored.next_deadline_ms(), original.next_deadline_ms());
        assert_eq!(restored.stats(), original.stats());
        let a = continue_run(&mut original);
        let b = continue_run(&mut restored);
        assert_eq!(a, b);
        assert_eq!(restored.snapshot(), original.snapshot());
        restored.check_invariants().unwrap();
    }
}

#[test]
fn a_restored_queue_honours_existing_keys_like_the_live_one() {
    // Compare the live queue itself with a restored copy, on calls that mint no key.
    let mut live = Queue::new(replay_config(), KeySource::from_seed([1; 32])).unwrap();
    let id1 = scan(&mut live, T0, BURP);
    let id2 = scan(&mut live, T0, ZAP);
    let (_, a) = agent(&mut live, T0);
    let (_, b) = agent(&mut live, T0);
    let h1 = take(&mut live, T0 + 1, &a, &[BURP]);
    let h2 = take(&mut live, T0 + 1, &b, &[ZAP]);
    let json = serde_json::to_vec(&live.snapshot()).unwrap();
    let mut copy = Queue::restore(
        replay_config(),
        KeySource::from_seed([2; 32]),
        serde_json::from_slice(&json).unwrap(),
    )
    .unwrap();
    let mut results: Vec<Vec<String>> = Vec::new();
    for q in [&mut live, &mut copy] {
        let mut out = Vec::new();
        q.drain_events().for_each(drop);
        out.push(format!(
            "{:?}",
            q.update_status(T0 + 2, id1, "x", &a, &h1.task_key)
                .map(|t| t.into_inner().clone())
        ));
        out.push(format!(
            "{:?}",
            q.complete_task(T0 + 3, id2, &a, &h2.task_key).map(drop)
        ));
        out.push(format!(
            "{:?}",
            q.complete_task(T0 + 3, id2, &b, &h1.task_key).map(drop)
        ));
        out.push(format!(
            "{:?}",
            q.fail_task(T0 + 4, id2, "r", &b, &h2.task_key)
                .map(|t| t.into_inner().clone())
        ));
        out.push(format!(
            "{:?}",
            q.complete_task(T0 + 5, id1, &a, &h1.task_key)
                .map(|t| t.into_inner().clone())
        ));
        out.push(format!(
            "{:?}",
            q.request_task(T0 + 6, &a, &[BURP, ZAP], "")
                .map(|t| t.map(|t| t.id()))
        ));
        out.push(format!("{:?}", q.stats()));
        out.extend(q.drain_events().map(|e| format!("{e:?}")));
        results.push(out);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(copy.snapshot(), live.snapshot());
}

// ---------------------------------------------------------------------------------------------
// (c) Determinism
// ---------------------------------------------------------------------------------------------

#[test]
fn same_seed_and_calls_give_the_same_keys_ids_and_snapshots() {
    let run = |seed: [u8; 32]| {
        let mut q = Queue::new(replay_config(), KeySource::from_seed(seed)).unwrap();
        let mut snaps = Vec::new();
        let mut events = Vec::new();
        let log = scenario(&mut q, |q| {
            snaps.push(serde_json::to_string(&q.snapshot()).unwrap());
            events.extend(q.drain_events());
        });
        (log, snaps, events)
    };
    let first = run([11; 32]);
    let second = run([11; 32]);
    assert_eq!(first.0, second.0);
    assert_eq!(first.1, second.1);
    assert_eq!(first.2, second.2);
    // Keys really come from the seed: another seed gives other keys but the same shape.
    let other = run([12; 32]);
    assert_ne!(first.0, other.0);
    let key_of = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::AgentRegistered { key, .. } => Some(key.expose_secret().to_owned()),
                Event::TaskAssigned { task_key, .. } => Some(task_key.expose_secret().to_owned()),
                _ => None,
            })
            .collect()
    };
    let (k1, k2) = (key_of(&first.2), key_of(&other.2));
    assert_eq!(k1.len(), k2.len());
    assert!(k1.iter().zip(&k2).all(|(a, b)| a != b));
    let mut unique = k1.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), k1.len(), "every minted key is distinct");
    let ids = |events: &[Event]| {
        events
            .iter()
            .map(|e| (e.task(), e.at_ms()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first.2), ids(&other.2));
}

// ---------------------------------------------------------------------------------------------
// (d) Inconsistent events
// ---------------------------------------------------------------------------------------------

fn any_task_key() -> TaskKey {
    TaskKey::parse(FOREIGN_KEY).unwrap()
}

fn refuse_event(q: &mut Queue, event: Event) -> Error {
    let before = q.snapshot();
    let err = q
        .apply(event.clone())
        .expect_err(&format!("{event:?} should be refused"));
    assert_eq!(q.snapshot(), before, "{event:?} changed the state");
    assert_eq!(q.drain_events().count(), 0);
    q.check_invariants().unwrap();
    err
}

#[test]
fn apply_refuses_events_that_do_not_fit() {
    let mut q = queue();
    let t1 = scan(&mut q, T0, BURP); // queued, deadline T0 + D
    let t2 = scan(&mut q, T0, BURP);
    let t3 = scan(&mut q, T0, BURP);
    let (a_id, a) = agent(&mut q, T0);
    let h2 = take(&mut q, T0, &a, &[BURP]);
    assert_eq!(h2.id, t1);
    let h3 = take(&mut q, T0, &a, &[BURP]);
    q.complete_task(T0, h3.id, &a, &h3.task_key).unwrap();
    assert_eq!(h3.id, t2);
    q.drain_events().for_each(drop);
    let now = T0 + 1;
    q.advance(now);
    let unknown_agent: AgentId =
        serde_json::from_str("\"00000000-0000-4000-8000-000000000000\"").unwrap();
    let queued = |task: u64, at_ms: u64| Event::TaskQueued {
        task: TaskId(task),
        application: ApplicationId(1),
        scanner: BURP.into(),
        target_url: None,
        scan_config: None,
        at_ms,
        timeout_ms: at_ms + DEADLINE_MS,
    };
    let assigned = |task: TaskId, agent: AgentId| Event::TaskAssigned {
        task,
        agent,
        task_key: any_task_key(),
        agent_config: "".into(),
        at_ms: now,
        lease_until_ms: now + LEASE_MS,
    };
    // Task ids out of sequence.
    for id in [0, 1, 3, 5, u64::MAX] {
        refuse_event(&mut q, queued(id, now));
    }
    // Invalid scans.
    let mut bad = queued(4, now);
    if let Event::TaskQueued { scanner, .. } = &mut bad {
        *scanner = " Burp".into();
    }
    refuse_event(&mut q, bad);
    let mut bad = queued(4, now);
    if let Event::TaskQueued { application, .. } = &mut bad {
        *application = ApplicationId(0);
    }
    refuse_event(&mut q, bad);
    // Assigning a task that is not queued, or unknown, or to an unknown agent.
    assert!(matches!(
        refuse_event(&mut q, assigned(t1, a_id)),
        Error::WrongState { .. }
    ));
    assert!(matches!(
        refuse_event(&mut q, assigned(t2, a_id)),
        Error::WrongState { .. }
    ));
    assert!(matches!(
        refuse_event(&mut q, assigned(TaskId(9), a_id)),
        Error::UnknownTask(_)
    ));
    assert!(matches!(
        refuse_event(&mut q, assigned(t3, unknown_agent)),
        Error::UnknownAgent(_)
    ));
    // Lease expiry at another instant than the lease, or of a task not held.
    for at_ms in [T0 + LEASE_MS - 1, T0 + LEASE_MS + 1, now] {
        refuse_event(
            &mut q,
            Event::LeaseExpired {
                task: t1,
                at_ms,
                requeued: true,
            },
        );
    }
    refuse_event(
        &mut q,
        Event::LeaseExpired {
            task: t3,
            at_ms: T0 + LEASE_MS,
            requeued: true,
        },
    );
    // Deadline at another instant, or of a finished task.
    refuse_event(
        &mut q,
        Event::DeadlineReached {
            task: t3,
            at_ms: T0 + DEADLINE_MS - 1,
        },
    );
    refuse_event(
        &mut q,
        Event::DeadlineReached {
            task: t2,
            at_ms: T0 + DEADLINE_MS,
        },
    );
    // Agent calls on tasks in the wrong state.
    for event in [
        Event::StatusUpdated {
            task: t3,
            message: "x".into(),
            at_ms: now,
            lease_until_ms: now + LEASE_MS,
        },
        Event::TaskCompleted {
            task: t2,
            at_ms: now,
        },
        Event::TaskFailed {
            task: t3,
            reason: "x".into(),
            at_ms: now,
        },
        Event::TaskCancelled {
            task: t2,
            at_ms: now,
        },
        Event::TaskCompleted {
            task: TaskId(77),
            at_ms: now,
        },
    ] {
        refuse_event(&mut q, event);
    }
    // Unknown agent revoked; an agent registered twice.
    assert_eq!(
        refuse_event(
            &mut q,
            Event::AgentRevoked {
                agent: unknown_agent,
                at_ms: now
            }
        ),
        Error::UnknownAgent(unknown_agent)
    );
    refuse_event(
        &mut q,
        Event::AgentRegistered {
            agent: a_id,
            key: AgentKey::parse(FOREIGN_KEY).unwrap(),
            at_ms: now,
        },
    );
    refuse_event(
        &mut q,
        Event::AgentRegistered {
            agent: unknown_agent,
            key: AgentKey::parse(&a).unwrap(),
            at_ms: now,
        },
    );
    // The right events still apply.
    q.apply(queued(4, now)).unwrap();
    q.apply(assigned(t3, a_id)).unwrap();
    q.check_invariants().unwrap();
}

#[test]
fn apply_refuses_events_out_of_time_order() {
    // A journal is in time order, and a call at `now` sees every expiry up to `now` first
    // (SPEC §3 "Time"), so an event that skips a pending expiry, or that goes back in time,
    // does not fit the state.
    let mut q = queue_with(Config {
        max_attempts: 1,
        ..config()
    });
    let t1 = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h = take(&mut q, T0 + 100, &a, &[BURP]);
    q.drain_events().for_each(drop);
    let lease_end = T0 + 100 + LEASE_MS;
    // A status update after the lease ran out would resurrect the assignment.
    refuse_event(
        &mut q,
        Event::StatusUpdated {
            task: h.id,
            message: "late".into(),
            at_ms: lease_end,
            lease_until_ms: lease_end + LEASE_MS,
        },
    );
    refuse_event(
        &mut q,
        Event::TaskCompleted {
            task: h.id,
            at_ms: lease_end + 5,
        },
    );
    // An event before the latest one applied.
    refuse_event(
        &mut q,
        Event::TaskCancelled {
            task: t1,
            at_ms: T0 + 50,
        },
    );
    // The last attempt's lease cannot requeue.
    refuse_event(
        &mut q,
        Event::LeaseExpired {
            task: h.id,
            at_ms: lease_end,
            requeued: true,
        },
    );
    // What the live queue does applies.
    q.apply(Event::LeaseExpired {
        task: h.id,
        at_ms: lease_end,
        requeued: false,
    })
    .unwrap();
    assert_eq!(q.task(h.id).unwrap().status(), TaskStatus::CompleteTimedOut);
    q.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------------------------
// (e) Corrupted snapshots
// ---------------------------------------------------------------------------------------------

/// A snapshot with tasks in every state, agents holding tasks and finished tasks.
fn rich_snapshot() -> Snapshot {
    let mut q = Queue::new(replay_config(), KeySource::from_seed([1; 32])).unwrap();
    let mut snaps = Vec::new();
    scenario(&mut q, |q| snaps.push(q.snapshot()));
    snaps
        .into_iter()
        .max_by_key(|s| {
            let mut statuses: Vec<TaskStatus> = s.tasks.iter().map(|t| t.status()).collect();
            statuses.sort();
            statuses.dedup();
            (statuses.len(), s.finished.len(), s.agents.len())
        })
        .unwrap()
}

fn restore_json(v: Value) -> Result<Queue, String> {
    let snap: Snapshot = serde_json::from_value(v).map_err(|e| format!("serde: {e}"))?;
    Queue::restore(replay_config(), KeySource::from_seed([0; 32]), snap).map_err(|e| e.to_string())
}

#[test]
fn restore_refuses_hand_corrupted_snapshots() {
    let snap = rich_snapshot();
    let good = serde_json::to_value(&snap).unwrap();
    restore_json(good.clone()).expect("the snapshot itself restores");
    let active = snap
        .tasks
        .iter()
        .position(|t| t.status().is_active())
        .expect("an active task");
    let queued = snap
        .tasks
        .iter()
        .position(|t| t.status() == TaskStatus::Queued)
        .expect("a queued task");
    let holder = snap.tasks[active].assignment().unwrap().agent().to_string();
    let finished = snap.finished.len();
    assert!(finished >= 2);
    type Corrupt = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        (
            "duplicate task id",
            Box::new(|v| {
                let t = v["tasks"][0].clone();
                v["tasks"].as_array_mut().unwrap().push(t);
            }),
        ),
        (
            "active task with unknown agent",
            Box::new(move |v| {
                v["agents"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|a| a["id"] != holder.as_str());
            }),
        ),
        (
            "finished order missing a task",
            Box::new(|v| {
                v["finished"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "finished order with a task twice",
            Box::new(|v| {
                let f = v["finished"].as_array_mut().unwrap();
                let last = f.last().unwrap().clone();
                f[0] = last;
            }),
        ),
        (
            "finished order naming an open task",
            Box::new(move |v| {
                let id = v["tasks"][queued]["id"].clone();
                v["finished"].as_array_mut().unwrap().push(id);
            }),
        ),
        (
            "queued counter off",
            Box::new(|v| {
                v["counters"]["queued"] = (v["counters"]["queued"].as_u64().unwrap() + 1).into();
            }),
        ),
        (
            "evicted counter off",
            Box::new(|v| {
                v["counters"]["evicted"] = (v["counters"]["evicted"].as_u64().unwrap() + 1).into();
            }),
        ),
        (
            "task id >= next_task_id",
            Box::new(|v| {
                let max = v["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_u64().unwrap())
                    .max()
                    .unwrap();
                v["next_task_id"] = max.into();
                v["counters"]["queued"] = (max - 1).into();
            }),
        ),
        (
            "task id 0",
            Box::new(|v| {
                v["tasks"][0]["id"] = 0.into();
            }),
        ),
        (
            "wrong format version",
            Box::new(|v| v["format"] = (SNAPSHOT_FORMAT + 1).into()),
        ),
        ("format 0", Box::new(|v| v["format"] = 0.into())),
        (
            "queued task with an assignment",
            Box::new(move |v| {
                let a = v["tasks"][active]["assignment"].clone();
                v["tasks"][queued]["assignment"] = a;
            }),
        ),
        (
            "active task without assignment",
            Box::new(move |v| v["tasks"][active]["assignment"] = Value::Null),
        ),
        (
            "active task with zero attempts",
            Box::new(move |v| v["tasks"][active]["attempts"] = 0.into()),
        ),
        (
            "empty status history",
            Box::new(|v| v["tasks"][0]["history"] = Value::Array(vec![])),
        ),
        (
            "status ids out of order",
            Box::new(|v| {
                let h = v["tasks"][0]["history"].as_array_mut().unwrap();
                let e = h[0].clone();
                h.push(e);
            }),
        ),
        (
            "two agents with one key",
            Box::new(|v| {
                let agents = v["agents"].as_array_mut().unwrap();
                let k = agents[0]["key"].clone();
                agents[1]["key"] = k;
            }),
        ),
        (
            "agent twice",
            Box::new(|v| {
                let a = v["agents"][0].clone();
                v["agents"].as_array_mut().unwrap().push(a);
            }),
        ),
        (
            "empty scanner",
            Box::new(|v| v["tasks"][0]["scanner"] = "".into()),
        ),
        (
            "scanner with a comma",
            Box::new(|v| v["tasks"][0]["scanner"] = "a,b".into()),
        ),
        (
            "application 0",
            Box::new(|v| v["tasks"][0]["application"] = 0.into()),
        ),
        (
            "finished task without end time",
            Box::new(|v| {
                let f = v["finished"][0].clone();
                let tasks = v["tasks"].as_array_mut().unwrap();
                let t = tasks.iter_mut().find(|t| t["id"] == f).unwrap();
                t["end_ms"] = Value::Null;
            }),
        ),
        (
            "status of an active task set to queued",
            Box::new(move |v| v["tasks"][active]["status"] = "Queued".into()),
        ),
        (
            "short key",
            Box::new(|v| v["agents"][0]["key"] = "abc".into()),
        ),
    ];
    for (name, corrupt) in cases {
        let mut v = good.clone();
        corrupt(&mut v);
        assert_ne!(v, good, "{name}: the corruption changed nothing");
        let result = catch_unwind(AssertUnwindSafe(|| restore_json(v)));
        match result {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("{name}: a corrupted snapshot was restored"),
            Err(_) => panic!("{name}: restore panicked"),
        }
    }
    // Past the bounds of the configuration it is restored under.
    let small = Config {
        max_finished_tasks: finished - 1,
        ..replay_config()
    };
    assert!(Queue::restore(small, KeySource::from_seed([0; 32]), snap.clone()).is_err());
    let small = Config {
        max_agents: 1,
        ..replay_config()
    };
    assert!(snap.agents.len() > 1);
    assert!(Queue::restore(small, KeySource::from_seed([0; 32]), snap).is_err());
}

/// Every leaf of the snapshot, replaced by odd values: restore answers Ok or Err, never
/// panics, and a queue it accepts keeps working (no panic, invariants hold) for a while.
#[test]
fn restore_of_mutated_snapshots_never_panics() {
    let snap = rich_snapshot();
    let good = serde_json::to_value(&snap).unwrap();
    let mut mutants = Vec::new();
    mutate(&good, &mut Vec::new(), &good, &mut mutants);
    assert!(mutants.len() > 500, "{}", mutants.len());
    let mut accepted = 0;
    let mut inconsistent_after = Vec::new();
    for (path, v) in mutants {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let Ok(mut q) = restore_json(v) else {
                return None;
            };
            Some(exercise(&mut q))
        }));
        match outcome {
            Ok(None) => {}
            Ok(Some(Ok(()))) => accepted += 1,
            Ok(Some(Err(e))) => inconsistent_after.push(format!("{path}: {e}")),
            Err(_) => panic!("panic with the snapshot mutated at {path}"),
        }
    }
    assert!(accepted > 0);
    // Per-task status ids saturate at u64::MAX (2^64 updates never happen in one task's
    // life); a snapshot whose last entry id is already there is the only accepted input whose
    // later operations leave the invariants.
    for what in &inconsistent_after {
        assert!(
            what.contains(".history[") && what.contains("status entry ids"),
            "{what}"
        );
    }
}

#[test]
fn task_ids_never_repeat_even_at_the_end_of_the_id_space() {
    let mut q = queue();
    let (_, a) = agent(&mut q, T0);
    scan(&mut q, T0, BURP);
    let mut v = serde_json::to_value(q.snapshot()).unwrap();
    v["next_task_id"] = (u64::MAX - 1).into();
    v["counters"]["queued"] = (u64::MAX - 2).into();
    v["counters"]["evicted"] = (u64::MAX - 3).into();
    v["tasks"][0]["id"] = 5.into();
    let mut q = Queue::restore(
        config(),
        KeySource::from_seed([0; 32]),
        serde_json::from_value(v).unwrap(),
    )
    .expect("a consistent snapshot");
    let id = scan(&mut q, T0, BURP);
    assert_eq!(id, TaskId(u64::MAX - 1));
    // u64::MAX cannot be given out: the next id would not fit.
    let e = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP))
            .map(drop)
    });
    assert!(
        matches!(e, Error::BoundExceeded { .. } | Error::Inconsistent(_)),
        "{e:?}"
    );
    assert_eq!(q.tasks_with_status(TaskStatus::Queued).count(), 2);
    let h = take(&mut q, T0, &a, &[BURP]);
    q.complete_task(T0, h.id, &a, &h.task_key).unwrap();
    q.check_invariants().unwrap();
}

/// Operations on a restored queue; they must not panic. Returns whether the invariants
/// still hold after them.
fn exercise(q: &mut Queue) -> Result<(), Error> {
    q.check_invariants()
        .expect("a restored queue is consistent");
    let t = q.clock_ms();
    let keys: Vec<String> = q
        .snapshot()
        .agents
        .iter()
        .map(|a| a.key.expose_secret().to_owned())
        .collect();
    let held: Vec<(TaskId, String)> = q
        .snapshot()
        .tasks
        .iter()
        .filter(|t| t.status().is_active())
        .map(|t| {
            (
                t.id(),
                t.assignment()
                    .unwrap()
                    .task_key()
                    .expose_secret()
                    .to_owned(),
            )
        })
        .collect();
    for k in &keys {
        for (id, tk) in &held {
            let _ = q.update_status(t, *id, "x", k, tk);
            let _ = q.fail_task(t, *id, "x", k, tk);
            let _ = q.complete_task(t, *id, k, tk);
        }
        let _ = q.request_task(t, k, &[BURP, ZAP, "WebInspect"], "x");
    }
    let _ = q.queue_scan(t, NewScan::new(ApplicationId(1), BURP));
    let _ = q.queue_scan(t, NewScan::new(ApplicationId(1), BURP));
    let _ = q.register_agent(t);
    for id in q.agents().collect::<Vec<_>>() {
        let _ = q.revoke_agent(t, id);
    }
    for task in 0..q.snapshot().next_task_id.min(50) {
        let _ = q.cancel_task(t, TaskId(task));
    }
    q.check_invariants()?;
    let _ = q.next_deadline_ms();
    q.advance(t.saturating_add(LEASE_MS));
    q.advance(u64::MAX);
    let _ = q.queue_scan(u64::MAX, NewScan::new(ApplicationId(1), ZAP));
    for e in q.drain_events() {
        let _ = format!("{e:?}");
    }
    q.check_invariants()
}

fn replace(root: &Value, path: &[PathStep], new: Value) -> Value {
    let mut v = root.clone();
    let mut cur = &mut v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => &mut cur[k.as_str()],
            PathStep::Index(i) => &mut cur[*i],
        };
    }
    *cur = new;
    v
}

#[derive(Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn path_string(path: &[PathStep]) -> String {
    path.iter()
        .map(|s| match s {
            PathStep::Key(k) => format!(".{k}"),
            PathStep::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Collects mutants of `root`: every number replaced by edge values, every string by others,
/// every array with an element removed or duplicated, every null by a number.
fn mutate(root: &Value, path: &mut Vec<PathStep>, here: &Value, out: &mut Vec<(String, Value)>) {
    let mut push = |new: Value| out.push((path_string(path), replace(root, path, new)));
    match here {
        Value::Number(n) => {
            let n = n.as_u64().unwrap_or(0);
            for c in [
                0,
                1,
                2,
                n.wrapping_sub(1),
                n.wrapping_add(1),
                u64::MAX,
                u64::MAX - 1,
                u64::MAX / 2,
            ] {
                if c != n {
                    push(c.into());
                }
            }
        }
        Value::String(s) => {
            for c in [
                "",
                "Queued",
                "Assigned",
                "InProgress",
                "CompleteSuccessful",
                BURP,
                FOREIGN_KEY,
                "http://x/",
            ] {
                if c != s {
                    push(c.into());
                }
            }
        }
        Value::Bool(b) => push((!b).into()),
        Value::Null => {
            push(0.into());
            push(u64::MAX.into());
        }
        Value::Array(items) => {
            for i in 0..items.len() {
                let mut fewer = items.clone();
                fewer.remove(i);
                push(Value::Array(fewer));
                let mut more = items.clone();
                more.insert(i, items[i].clone());
                push(Value::Array(more));
            }
            for (i, item) in items.iter().enumerate() {
                path.push(PathStep::Index(i));
                mutate(root, path, item, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(PathStep::Key(k.clone()));
                mutate(root, path, item, out);
                path.pop();
            }
        }
    }
}

#[test]
fn a_snapshot_plus_the_journal_after_it_rebuilds_the_state() {
    // The embedder's recovery: the last snapshot, then the events journaled after it.
    let mut live = Queue::new(replay_config(), KeySource::from_seed([1; 32])).unwrap();
    let mut checkpoints: Vec<(Snapshot, Vec<Event>)> = Vec::new();
    scenario(&mut live, |live| {
        let events: Vec<Event> = live.drain_events().collect();
        for (_, journal) in &mut checkpoints {
            journal.extend(events.iter().cloned());
        }
        checkpoints.push((live.snapshot(), Vec::new()));
    });
    let end = live.clock_ms();
    assert!(checkpoints.len() > 20);
    for (i, (snap, journal)) in checkpoints.into_iter().enumerate() {
        let mut replica =
            Queue::restore(replay_config(), KeySource::from_seed([2; 32]), snap).unwrap();
        for event in &journal {
            replica
                .apply(event.clone())
                .unwrap_or_else(|e| panic!("checkpoint {i}: {event:?}: {e}"));
        }
        replica.advance(end);
        assert_eq!(replica.drain_events().count(), 0);
        assert_eq!(replica.snapshot(), live.snapshot(), "checkpoint {i}");
    }
}
