//! Hostile input against the core: every bound at, under and over its limit, odd strings,
//! odd keys, odd ids, extreme times. Each refused call is a typed error and changes nothing.

use scan_queue::{
    ApplicationId, Bound, Config, Error, Field, KeySource, NewScan, Queue, TaskId, TaskStatus,
};

const ZAP: &str = "OWASP Zed Attack Proxy";
const T0: u64 = 1_700_000_000_000;

fn small() -> Config {
    Config {
        max_open_tasks: 4,
        max_finished_tasks: 3,
        max_agents: 2,
        max_scanners: 2,
        max_scanners_per_request: 3,
        max_scanner_len: 30,
        max_url_len: 40,
        max_message_len: 10,
        max_agent_config_len: 12,
        max_status_history: 5,
        ..Config::default()
    }
}

fn queue(config: Config) -> Queue {
    Queue::new(config, KeySource::from_seed([9; 32])).unwrap()
}

/// Runs `f` at `now` and asserts it was refused with `expected` and changed nothing.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    q: &mut Queue,
    now: u64,
    expected: Error,
    f: impl FnOnce(&mut Queue) -> Result<T, Error>,
) {
    q.advance(now);
    q.drain_events().for_each(drop);
    let before = q.snapshot();
    let got = f(q).map(|v| format!("{v:?}"));
    assert_eq!(got, Err(expected));
    assert_eq!(q.snapshot(), before, "a refused call changed the queue");
    assert_eq!(
        q.drain_events().next(),
        None,
        "a refused call produced an event"
    );
    q.check_invariants().unwrap();
}

fn bound(bound: Bound, limit: usize) -> Error {
    Error::BoundExceeded { bound, limit }
}

/// One agent holding one task; returns (agent key, task id, task key).
fn held(q: &mut Queue) -> (String, TaskId, String) {
    let id = q
        .queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
        .unwrap()
        .id();
    let key = q.register_agent(T0).unwrap().key.expose_secret().to_owned();
    let task = q.request_task(T0, &key, &[ZAP], "").unwrap().unwrap();
    let task_key = task
        .assignment()
        .unwrap()
        .task_key()
        .expose_secret()
        .to_owned();
    (key, id, task_key)
}

#[test]
fn scanner_name_at_under_and_over_its_bound() {
    let mut q = queue(small());
    for len in [29, 30] {
        let name = "s".repeat(len);
        q.queue_scan(T0, NewScan::new(ApplicationId(1), &name))
            .unwrap();
    }
    let name = "s".repeat(31);
    refused(&mut q, T0, bound(Bound::ScannerLen, 30), |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), &name))
            .map(|t| t.id())
    });
    // Lengths count bytes: 10 × "€" is 30 bytes, within the length bound, but a third distinct
    // scanner is past the scanners bound.
    let wide = "€".repeat(10);
    refused(&mut q, T0, bound(Bound::Scanners, 2), |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), &wide))
            .map(|t| t.id())
    });
}

#[test]
fn empty_and_malformed_strings_are_invalid_input() {
    let mut q = queue(small());
    for (name, reason) in [
        ("", "empty"),
        (" zap", "surrounding whitespace"),
        ("zap\n", "surrounding whitespace"),
        ("a,b", "contains a comma"),
        ("a\u{0}b", "contains a control character"),
    ] {
        refused(
            &mut q,
            T0,
            Error::InvalidInput {
                field: Field::Scanner,
                reason,
            },
            |q| {
                q.queue_scan(T0, NewScan::new(ApplicationId(1), name))
                    .map(|t| t.id())
            },
        );
    }
    refused(
        &mut q,
        T0,
        Error::InvalidInput {
            field: Field::ApplicationId,
            reason: "must be at least 1",
        },
        |q| {
            q.queue_scan(T0, NewScan::new(ApplicationId(0), ZAP))
                .map(|t| t.id())
        },
    );
    for url in [
        "",
        "http://",
        "javascript:alert(1)",
        "http://a b/",
        "http://x/\0",
    ] {
        let got = q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP).target_url(url));
        assert!(
            matches!(
                got,
                Err(Error::InvalidInput {
                    field: Field::TargetUrl,
                    ..
                })
            ),
            "{url:?}: {got:?}"
        );
    }
}

#[test]
fn url_at_under_and_over_its_bound() {
    let mut q = queue(small());
    let base = "http://example.com/"; // 19 bytes
    for len in [39, 40] {
        let url = format!("{base}{}", "a".repeat(len - base.len()));
        q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP).target_url(&url))
            .unwrap();
    }
    let url = format!("{base}{}", "a".repeat(41 - base.len()));
    refused(&mut q, T0, bound(Bound::UrlLen, 40), |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP).target_url(&url))
            .map(|t| t.id())
    });
}

#[test]
fn messages_and_agent_config_at_under_and_over_their_bounds() {
    let mut q = queue(small());
    let (key, id, task_key) = held(&mut q);
    for len in [0, 9, 10] {
        q.update_status(T0, id, &"m".repeat(len), &key, &task_key)
            .unwrap();
    }
    let long = "m".repeat(11);
    refused(&mut q, T0, bound(Bound::MessageLen, 10), |q| {
        q.update_status(T0, id, &long, &key, &task_key)
            .map(|t| t.id())
    });
    refused(&mut q, T0, bound(Bound::MessageLen, 10), |q| {
        q.fail_task(T0, id, &long, &key, &task_key).map(|t| t.id())
    });
    q.fail_task(T0, id, &"m".repeat(10), &key, &task_key)
        .unwrap();

    q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
        .unwrap();
    let config = "c".repeat(13);
    refused(&mut q, T0, bound(Bound::AgentConfigLen, 12), |q| {
        q.request_task(T0, &key, &[ZAP], &config)
            .map(|t| t.map(|t| t.id()))
    });
    let got = q.request_task(T0, &key, &[ZAP], &"c".repeat(12)).unwrap();
    assert!(got.is_some());
}

#[test]
fn a_scanner_list_of_100_000_entries_is_refused() {
    let mut q = queue(Config::default());
    let key = q.register_agent(T0).unwrap().key.expose_secret().to_owned();
    let list = vec![ZAP; 100_000];
    refused(&mut q, T0, bound(Bound::ScannersPerRequest, 64), |q| {
        q.request_task(T0, &key, &list, "")
            .map(|t| t.map(|t| t.id()))
    });
    let joined = list.join(",");
    let parsed: Vec<&str> = scan_queue::split_scanner_list(&joined).collect();
    assert_eq!(parsed.len(), 100_000);
    let empty: [&str; 0] = [];
    refused(
        &mut q,
        T0,
        Error::InvalidInput {
            field: Field::Scanners,
            reason: "no scanner named",
        },
        |q| {
            q.request_task(T0, &key, &empty, "")
                .map(|t| t.map(|t| t.id()))
        },
    );
}

#[test]
fn keys_of_wrong_length_or_alphabet_are_refused() {
    let mut q = queue(small());
    let (key, id, task_key) = held(&mut q);
    let mut wrong_agent_keys = vec![
        String::new(),
        key[..43].to_owned(),
        format!("{key}A"),
        format!("{}!", &key[..43]),
        format!("{}\u{0}", &key[..43]),
        key.to_lowercase(),
        "é".repeat(22),
        "A".repeat(1_000_000),
    ];
    if key.to_lowercase() == key {
        wrong_agent_keys.remove(5);
    }
    for bad in &wrong_agent_keys {
        refused(&mut q, T0, Error::InvalidAgentKey, |q| {
            q.complete_task(T0, id, bad, &task_key).map(|t| t.id())
        });
        refused(&mut q, T0, Error::InvalidAgentKey, |q| {
            q.request_task(T0, bad, &[ZAP], "")
                .map(|t| t.map(|t| t.id()))
        });
    }
    for bad in ["", &task_key[..43], &format!("{task_key}x"), &key] {
        refused(&mut q, T0, Error::InvalidTaskKey { task: id }, |q| {
            q.complete_task(T0, id, &key, bad).map(|t| t.id())
        });
    }
    assert!(q.stats().rejected_key_checks >= 2 * wrong_agent_keys.len() as u64 + 4);
}

#[test]
fn odd_task_ids_are_unknown() {
    let mut q = queue(small());
    let (key, _, task_key) = held(&mut q);
    for id in [0, 2, u64::MAX / 2 + 1, u64::MAX] {
        let id = TaskId(id);
        refused(&mut q, T0, Error::UnknownTask(id), |q| {
            q.complete_task(T0, id, &key, &task_key).map(|t| t.id())
        });
        refused(&mut q, T0, Error::UnknownTask(id), |q| {
            q.cancel_task(T0, id).map(|t| t.id())
        });
        assert!(q.task(id).is_none());
    }
}

#[test]
fn time_at_zero_and_at_the_end_of_time() {
    let mut q = queue(small());
    // At 0 everything works and nothing expires early.
    let id = q
        .queue_scan(0, NewScan::new(ApplicationId(1), ZAP))
        .unwrap()
        .id();
    assert_eq!(q.task(id).unwrap().timeout_ms(), 12 * 3_600_000);
    let key = q.register_agent(0).unwrap().key;
    let t = q
        .request_task(0, key.expose_secret(), &[ZAP], "")
        .unwrap()
        .unwrap();
    assert_eq!(t.assignment().unwrap().lease_until_ms(), 3_600_000);
    // At u64::MAX every deadline has passed; sums saturate instead of overflowing.
    q.advance(u64::MAX);
    assert_eq!(q.task(id).unwrap().status(), TaskStatus::CompleteTimedOut);
    let late = q
        .queue_scan(u64::MAX, NewScan::new(ApplicationId(1), ZAP))
        .unwrap();
    assert_eq!(late.timeout_ms(), u64::MAX);
    assert_eq!(
        late.history()[0].message.to_string().len(),
        "Scan queued at: ".len() + "dd-MM-yy:HH:mm:SSS +0000".len()
    );
    // Time never runs backwards: an early `now` is the latest seen.
    q.advance(5);
    assert_eq!(q.clock_ms(), u64::MAX);
    q.check_invariants().unwrap();
}

#[test]
fn agents_up_to_and_past_their_bound() {
    let mut q = queue(small());
    let a = q.register_agent(T0).unwrap();
    q.register_agent(T0).unwrap();
    refused(&mut q, T0, bound(Bound::Agents, 2), |q| {
        q.register_agent(T0).map(|a| a.id)
    });
    // Revoking one frees a place.
    q.revoke_agent(T0, a.id).unwrap();
    q.register_agent(T0).unwrap();
    assert_eq!(q.stats().agents, 2);
}

#[test]
fn open_tasks_and_distinct_scanners_up_to_and_past_their_bounds() {
    let mut q = queue(small());
    for _ in 0..4 {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
            .unwrap();
    }
    refused(&mut q, T0, bound(Bound::OpenTasks, 4), |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
            .map(|t| t.id())
    });
    q.cancel_task(T0, TaskId(1)).unwrap();
    q.queue_scan(T0, NewScan::new(ApplicationId(1), "Burp Suite Pro"))
        .unwrap();
    q.cancel_task(T0, TaskId(2)).unwrap();
    refused(&mut q, T0, bound(Bound::Scanners, 2), |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), "WebInspect"))
            .map(|t| t.id())
    });
}

#[test]
fn a_status_update_flood_keeps_history_bounded() {
    let mut q = queue(small());
    let (key, id, task_key) = held(&mut q);
    for i in 0..10_000u64 {
        q.update_status(T0 + i, id, &format!("{i}"), &key, &task_key)
            .unwrap();
    }
    let task = q.task(id).unwrap();
    assert_eq!(task.history().len(), 5);
    let ids: Vec<u64> = task.history().iter().map(|e| e.id).collect();
    // 1 queued, 2 assigned, 3..=10_002 the updates: the last five are kept, ids unchanged.
    assert_eq!(ids, [9_998, 9_999, 10_000, 10_001, 10_002]);
    assert_eq!(task.history()[4].message.to_string(), "9999");
    // Each heartbeat renewed the lease: it now runs from the last one.
    assert_eq!(
        task.assignment().unwrap().lease_until_ms(),
        T0 + 9_999 + small().lease_ms
    );
    q.check_invariants().unwrap();
}

#[test]
fn finished_tasks_past_their_bound_are_evicted_oldest_first() {
    let mut q = queue(small());
    for _ in 0..4 {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
            .unwrap();
    }
    for id in [3, 1, 4, 2] {
        q.cancel_task(T0, TaskId(id)).unwrap();
    }
    // Three retained: the oldest finished (3) went first.
    assert!(q.task(TaskId(3)).is_none());
    for id in [1, 4, 2] {
        assert!(q.task(TaskId(id)).is_some());
    }
    assert_eq!(q.stats().counters.evicted, 1);
    q.check_invariants().unwrap();
}

#[test]
fn unusable_configurations_are_refused_naming_the_setting() {
    let cases: [(Config, Field); 6] = [
        (
            Config {
                lease_ms: 0,
                ..Config::default()
            },
            Field::ConfigLease,
        ),
        (
            Config {
                max_attempts: 0,
                ..Config::default()
            },
            Field::ConfigMaxAttempts,
        ),
        (
            Config {
                max_open_tasks: 0,
                ..Config::default()
            },
            Field::ConfigBound(Bound::OpenTasks),
        ),
        (
            Config {
                max_status_history: 1,
                ..Config::default()
            },
            Field::ConfigBound(Bound::StatusHistory),
        ),
        (
            Config {
                max_url_len: scan_queue::MIN_URL_LEN - 1,
                ..Config::default()
            },
            Field::ConfigBound(Bound::UrlLen),
        ),
        (
            Config {
                max_scanners: 65_536,
                ..Config::default()
            },
            Field::ConfigBound(Bound::Scanners),
        ),
    ];
    for (config, field) in cases {
        let expected = Error::InvalidInput {
            field,
            reason: "out of range",
        };
        assert_eq!(config.validate(), Err(expected.clone()));
        let got = Queue::new(config, KeySource::from_seed([0; 32])).map(|_| ());
        assert_eq!(got, Err(expected));
    }
    let at_minimum = Config {
        max_url_len: scan_queue::MIN_URL_LEN,
        max_status_history: 2,
        ..Config::default()
    };
    assert_eq!(at_minimum.validate(), Ok(()));
    let most_scanners = Config {
        max_scanners: 65_535,
        ..Config::default()
    };
    assert_eq!(most_scanners.validate(), Ok(()));
}

#[test]
fn exhausted_task_ids_refuse_new_scans_instead_of_reusing_an_id() {
    // Reachable only from a crafted snapshot: every id up to u64::MAX - 1 given out and evicted.
    let mut snapshot = queue(small()).snapshot();
    snapshot.next_task_id = u64::MAX;
    snapshot.counters.queued = u64::MAX - 1;
    snapshot.counters.evicted = u64::MAX - 1;
    let mut q = Queue::restore(small(), KeySource::from_seed([1; 32]), snapshot).unwrap();
    refused(
        &mut q,
        T0,
        Error::Inconsistent("task ids exhausted".into()),
        |q| {
            q.queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
                .map(|t| t.id())
        },
    );
}
