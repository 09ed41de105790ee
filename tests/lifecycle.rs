//! Every transition and every error path of the core, against SPEC.md §3–§5.

mod common;

use common::*;
use scan_queue::{
    ApplicationId, Bound, Config, Error, Event, Field, KEY_LEN, NewScan, ScanConfigId,
    StatusMessage, TaskId, TaskStatus, ThreadfixTime,
};

fn messages(q: &scan_queue::Queue, id: TaskId) -> Vec<String> {
    q.task(id)
        .expect("task retained")
        .history()
        .iter()
        .map(|e| e.message.to_string())
        .collect()
}

fn status(q: &scan_queue::Queue, id: TaskId) -> TaskStatus {
    q.task(id).expect("task retained").status()
}

// ---------------------------------------------------------------------------------------------
// Queue scan
// ---------------------------------------------------------------------------------------------

#[test]
fn queue_scan_creates_a_queued_task() {
    let mut q = queue();
    let now = T0 + 893;
    let scan = NewScan::new(ApplicationId(5), BURP)
        .target_url("http://targeturl/app")
        .scan_config(ScanConfigId(9));
    let t = q.queue_scan(now, scan).unwrap();
    assert_eq!(t.id(), TaskId(1));
    assert_eq!(t.application(), ApplicationId(5));
    assert_eq!(t.scanner(), BURP);
    assert_eq!(t.target_url(), Some("http://targeturl/app"));
    assert_eq!(t.scan_config(), Some(ScanConfigId(9)));
    assert_eq!(t.status(), TaskStatus::Queued);
    assert_eq!(t.create_ms(), now);
    assert_eq!(t.start_ms(), None);
    assert_eq!(t.end_ms(), None);
    assert_eq!(t.timeout_ms(), now + DEADLINE_MS);
    assert_eq!(t.attempts(), 0);
    assert!(t.assignment().is_none());
    assert!(t.is_active_flag());
    assert_eq!(t.history().len(), 1);
    assert_eq!(t.history()[0].id, 1);
    assert_eq!(t.history()[0].at_ms, now);
    assert_eq!(
        t.history()[0].message.to_string(),
        "Scan queued at: 28-09-16:20:25:893 +0000"
    );
    let events: Vec<Event> = q.drain_events().collect();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], Event::TaskQueued { task: TaskId(1), at_ms, .. } if at_ms == now));
    assert_eq!(q.stats().counters.queued, 1);
}

#[test]
fn default_deadline_is_twelve_hours() {
    let mut q = queue_with(Config::default());
    let t = q
        .queue_scan(T0, NewScan::new(ApplicationId(1), ZAP))
        .unwrap();
    assert_eq!(t.timeout_ms(), T0 + 12 * 60 * 60 * 1000);
}

#[test]
fn task_ids_count_from_one_and_are_never_reused() {
    let mut q = queue_with(Config {
        max_finished_tasks: 1,
        ..config()
    });
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = scan(&mut q, T0 + i, BURP);
        ids.push(id);
        q.cancel_task(T0 + i, id).unwrap(); // finished, and the older ones evicted
    }
    assert_eq!(ids, (1..=5).map(TaskId).collect::<Vec<_>>());
    assert_eq!(scan(&mut q, T0 + 10, BURP), TaskId(6));
    assert_eq!(q.stats().counters.evicted, 4);
}

#[test]
fn queue_scan_refuses_application_zero() {
    let mut q = queue();
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(0), BURP))
            .map(drop)
    });
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: Field::ApplicationId,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn queue_scan_refuses_malformed_scanner_names() {
    let mut q = queue();
    for name in [
        "",
        " ",
        "\t",
        " Burp",
        "Burp ",
        "Burp,Zap",
        ",",
        "Bu\nrp",
        "Bu\0rp",
        "Bu\u{7f}rp",
        "Bu\u{85}rp",
    ] {
        let err = refused(&mut q, T0, |q| {
            q.queue_scan(T0, NewScan::new(ApplicationId(1), name))
                .map(drop)
        });
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: Field::Scanner,
                    ..
                }
            ),
            "{name:?}: {err:?}"
        );
    }
    // Inner spaces and non-ASCII letters are fine.
    scan(&mut q, T0, "IBM Security AppScan Standard");
    scan(&mut q, T0, "Zäp");
}

#[test]
fn queue_scan_bounds_the_scanner_name_length() {
    let mut q = queue_with(Config {
        max_scanner_len: 10,
        ..config()
    });
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), "abcdefghijk"))
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::ScannerLen,
            limit: 10
        }
    );
    scan(&mut q, T0, "abcdefghij");
}

#[test]
fn queue_scan_refuses_bad_urls() {
    let mut q = queue();
    for url in [
        "",
        "targeturl/app",
        "/relative/path",
        "ftp://host/file",
        "javascript://alert(1)",
        "http://",
        "http:///path",
        "http://:8080/",
        "http://a b/",
        "http://host/\npath",
        " http://host/",
    ] {
        let err = refused(&mut q, T0, |q| {
            q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP).target_url(url))
                .map(drop)
        });
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: Field::TargetUrl,
                    ..
                }
            ),
            "{url:?}: {err:?}"
        );
    }
    for url in [
        "http://targeturl/app",
        "https://example.com:8443/a?b=c#d",
        "HTTP://EXAMPLE.COM",
    ] {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP).target_url(url))
            .unwrap();
    }
}

#[test]
fn queue_scan_url_of_255_bytes_is_accepted_256_refused() {
    let mut q = queue();
    let base = "http://example.com/";
    let url255 = format!("{base}{}", "a".repeat(255 - base.len()));
    let url256 = format!("{url255}a");
    assert_eq!(url255.len(), 255);
    let t = q
        .queue_scan(T0, NewScan::new(ApplicationId(1), BURP).target_url(&url255))
        .unwrap();
    assert_eq!(t.target_url(), Some(url255.as_str()));
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP).target_url(&url256))
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::UrlLen,
            limit: 255
        }
    );
    // Bytes, not characters: 254 bytes + a two-byte character is 256 bytes.
    let url_multibyte = format!("{}é", &url255[..254]);
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(
            T0,
            NewScan::new(ApplicationId(1), BURP).target_url(&url_multibyte),
        )
        .map(drop)
    });
    assert!(matches!(
        err,
        Error::BoundExceeded {
            bound: Bound::UrlLen,
            ..
        }
    ));
}

#[test]
fn queue_scan_bounds_open_tasks() {
    let mut q = queue_with(Config {
        max_open_tasks: 2,
        ..config()
    });
    let a = scan(&mut q, T0, BURP);
    scan(&mut q, T0, ZAP);
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP))
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::OpenTasks,
            limit: 2
        }
    );
    // Assigned tasks are open too.
    let (_, key) = agent(&mut q, T0);
    let held = take(&mut q, T0, &key, &[BURP]);
    assert_eq!(held.id, a);
    refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), BURP))
            .map(drop)
    });
    // A finished task frees its place.
    q.complete_task(T0 + 1, a, &key, &held.task_key).unwrap();
    assert_eq!(scan(&mut q, T0 + 2, BURP), TaskId(3));
}

#[test]
fn queue_scan_bounds_distinct_scanners() {
    let mut q = queue_with(Config {
        max_scanners: 2,
        ..config()
    });
    let burp = scan(&mut q, T0, BURP);
    scan(&mut q, T0, ZAP);
    let err = refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), "WebInspect"))
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::Scanners,
            limit: 2
        }
    );
    // A scanner already in use is fine.
    scan(&mut q, T0, BURP);
    // Once no open task uses a scanner, its slot is free.
    q.cancel_task(T0, burp).unwrap();
    refused(&mut q, T0, |q| {
        q.queue_scan(T0, NewScan::new(ApplicationId(1), "WebInspect"))
            .map(drop)
    });
    q.cancel_task(T0, TaskId(3)).unwrap();
    scan(&mut q, T0, "WebInspect");
}

/// A scanner's index entry is found through a slot its open tasks remember; a freed slot is
/// taken by another scanner while finished tasks of the first still name it. Every task still
/// reaches its own scanner's entry, live, replayed or restored.
#[test]
fn scanner_slots_reused_by_other_scanners() {
    let mut q = queue();
    let (_, key) = agent(&mut q, T0);
    let burp = scan(&mut q, T0, BURP);
    let zap = scan(&mut q, T0, ZAP);
    q.cancel_task(T0, burp).unwrap(); // Burp's slot is free
    let inspect = scan(&mut q, T0, "WebInspect"); // and WebInspect takes it
    let burp2 = scan(&mut q, T0, BURP); // a new slot for Burp
    q.check_invariants().unwrap();
    let keys = scan_queue::KeySource::from_seed([8; 32]);
    let mut restored = scan_queue::Queue::restore(config(), keys, q.snapshot()).unwrap();
    // Replayed: the queued events come without `queue_scan`'s slot hint.
    let mut replayed = queue_with(config());
    for event in q.drain_events().collect::<Vec<_>>() {
        replayed.apply(event).unwrap();
    }
    assert_eq!(replayed.snapshot(), q.snapshot());
    for q in [&mut q, &mut restored, &mut replayed] {
        for (id, scanner) in [(zap, ZAP), (inspect, "WebInspect"), (burp2, BURP)] {
            let held = take(q, T0 + 1, &key, &[scanner]);
            assert_eq!(held.id, id);
            q.complete_task(T0 + 2, id, &key, &held.task_key).unwrap();
            q.check_invariants().unwrap();
        }
        assert_eq!(q.stats().open_tasks(), 0);
        // The index is empty again: each scanner can be queued anew.
        for scanner in [BURP, ZAP, "WebInspect"] {
            let id = scan(q, T0 + 3, scanner);
            assert_eq!(take(q, T0 + 3, &key, &[scanner]).id, id);
        }
        q.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

#[test]
fn register_agent_mints_distinct_44_character_keys() {
    let mut q = queue();
    let a = q.register_agent(T0).unwrap();
    let b = q.register_agent(T0).unwrap();
    for k in [a.key.expose_secret(), b.key.expose_secret()] {
        assert_eq!(k.len(), KEY_LEN);
        assert_eq!(KEY_LEN, 44);
        assert!(k.bytes().all(|c| c.is_ascii_alphanumeric()), "{k}");
    }
    assert_ne!(a.key, b.key);
    assert_ne!(a.id, b.id);
    assert_eq!(q.agent_for_key(a.key.expose_secret()), Some(a.id));
    assert_eq!(q.agent_for_key(b.key.expose_secret()), Some(b.id));
    assert_eq!(q.agent_for_key(FOREIGN_KEY), None);
    assert_eq!(q.agent_for_key(&tweak(a.key.expose_secret())), None);
    assert_eq!(q.agent_registered_ms(a.id), Some(T0));
    assert_eq!(q.stats().agents, 2);
    assert_eq!(q.stats().counters.agents_registered, 2);
    assert_eq!(q.agents().count(), 2);
}

#[test]
fn register_agent_is_bounded() {
    let mut q = queue_with(Config {
        max_agents: 2,
        ..config()
    });
    let (a, _) = agent(&mut q, T0);
    agent(&mut q, T0);
    let err = refused(&mut q, T0, |q| q.register_agent(T0));
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::Agents,
            limit: 2
        }
    );
    q.revoke_agent(T0, a).unwrap();
    agent(&mut q, T0);
}

// ---------------------------------------------------------------------------------------------
// Request task
// ---------------------------------------------------------------------------------------------

#[test]
fn request_task_assigns_the_oldest_matching_task() {
    let mut q = queue();
    let z1 = scan(&mut q, T0, ZAP);
    let b2 = scan(&mut q, T0, BURP);
    let z3 = scan(&mut q, T0, ZAP);
    let b4 = scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    assert_eq!(take(&mut q, T0, &key, &[BURP]).id, b2);
    assert_eq!(take(&mut q, T0, &key, &[BURP, ZAP]).id, z1);
    assert_eq!(take(&mut q, T0, &key, &[ZAP, BURP]).id, z3);
    assert_eq!(take(&mut q, T0, &key, &[ZAP, BURP]).id, b4);
    assert!(
        q.request_task(T0, &key, &[ZAP, BURP], "")
            .unwrap()
            .is_none()
    );
}

#[test]
fn request_task_sets_status_attempts_lease_and_message() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (agent_id, key) = agent(&mut q, T0);
    let now = T0 + 640_000;
    let config = "C:\\ThreadFix\\scanagent\\scanagent.properties";
    let t = q.request_task(now, &key, &[BURP], config).unwrap().unwrap();
    assert_eq!(t.id(), id);
    assert_eq!(t.status(), TaskStatus::Assigned);
    assert_eq!(t.start_ms(), Some(now));
    assert_eq!(t.attempts(), 1);
    let a = t.assignment().unwrap();
    assert_eq!(a.agent(), agent_id);
    assert_eq!(a.lease_until_ms(), now + LEASE_MS);
    let task_key = a.task_key().expose_secret();
    assert_eq!(task_key.len(), 44);
    assert!(task_key.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(task_key, key);
    assert_eq!(
        t.last_message().unwrap().to_string(),
        "Assigning task to an agent with agentConfig:\nC:\\ThreadFix\\scanagent\\scanagent.properties"
    );
    assert!(matches!(
        t.last_message(),
        Some(StatusMessage::Assigned { .. })
    ));
    assert_eq!(t.history().len(), 2);
    assert_eq!(t.history()[1].id, 2);
    assert_eq!(
        q.agent_tasks(agent_id).unwrap().collect::<Vec<_>>(),
        vec![id]
    );
    assert_eq!(q.next_deadline_ms(), Some(now + LEASE_MS));
    assert_eq!(q.stats().counters.assignments, 1);
}

#[test]
fn request_task_matches_exactly_and_case_sensitively() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    for list in [
        &["burp suite pro"][..],
        &["Burp Suite"],
        &["Burp Suite Pro Extra"],
        &["burp"],
        &["BURP SUITE PRO"],
        &[ZAP],
    ] {
        q.advance(T0);
        let before = q.snapshot();
        assert!(
            q.request_task(T0, &key, list, "").unwrap().is_none(),
            "{list:?}"
        );
        assert_eq!(q.snapshot(), before, "no task found changes nothing");
    }
    assert_eq!(take(&mut q, T0, &key, &[BURP]).id, TaskId(1));
}

#[test]
fn request_task_trims_scanner_names_and_ignores_empty_entries() {
    // SPEC §3: "surrounding whitespace is trimmed, empty entries ignored".
    let mut q = queue();
    scan(&mut q, T0, BURP);
    scan(&mut q, T0, ZAP);
    let (_, key) = agent(&mut q, T0);
    assert_eq!(
        take(&mut q, T0, &key, &["", " Burp Suite Pro "]).id,
        TaskId(1)
    );
    assert_eq!(
        take(&mut q, T0, &key, &["\tOWASP Zed Attack Proxy\n", "  "]).id,
        TaskId(2)
    );
    let names: Vec<&str> =
        scan_queue::split_scanner_list(" OWASP Zed Attack Proxy, ,Burp Suite Pro ,,").collect();
    assert_eq!(names, [ZAP, BURP]);
}

#[test]
fn request_task_with_no_matching_task_changes_nothing() {
    let mut q = queue();
    let (_, key) = agent(&mut q, T0);
    q.drain_events().for_each(drop);
    let before = q.snapshot();
    assert!(q.request_task(T0, &key, &[BURP], "cfg").unwrap().is_none());
    assert_eq!(q.snapshot(), before);
    assert_eq!(q.drain_events().count(), 0);
    assert_eq!(q.stats().rejected_key_checks, 0);
}

#[test]
fn request_task_refuses_invalid_agent_keys() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    let short = &key[..43];
    let long = format!("{key}a");
    for bad in [
        "",
        FOREIGN_KEY,
        &tweak(&key),
        short,
        &long,
        &key.to_lowercase(),
        "aaaaaaaa",
    ] {
        if bad == key {
            continue;
        }
        let err = refused(&mut q, T0, |q| {
            q.request_task(T0, bad, &[BURP], "").map(drop)
        });
        assert_eq!(err, Error::InvalidAgentKey, "{bad:?}");
    }
    assert_eq!(
        q.stats().rejected_key_checks,
        7 - u64::from(key.to_lowercase() == key)
    );
    assert_eq!(status(&q, TaskId(1)), TaskStatus::Queued);
}

#[test]
fn request_task_bounds_its_inputs() {
    let mut q = queue_with(Config {
        max_scanners_per_request: 3,
        max_scanner_len: 20,
        max_agent_config_len: 16,
        ..config()
    });
    scan(&mut q, T0, "Burp");
    let (_, key) = agent(&mut q, T0);
    let err = refused(&mut q, T0, |q| {
        q.request_task(T0, &key, &["a", "b", "c", "Burp"], "")
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::ScannersPerRequest,
            limit: 3
        }
    );
    let err = refused(&mut q, T0, |q| {
        q.request_task(T0, &key, &["x".repeat(21), "Burp".into()], "")
            .map(drop)
    });
    assert!(
        matches!(
            err,
            Error::BoundExceeded {
                bound: Bound::ScannerLen,
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(&mut q, T0, |q| {
        q.request_task(T0, &key, &["Burp"], &"c".repeat(17))
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::AgentConfigLen,
            limit: 16
        }
    );
    let err = refused(&mut q, T0, |q| {
        q.request_task::<&str>(T0, &key, &[], "").map(drop)
    });
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: Field::Scanners,
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(&mut q, T0, |q| {
        q.request_task(T0, &key, &["", " "], "").map(drop)
    });
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: Field::Scanners,
                ..
            }
        ),
        "{err:?}"
    );
    // At the bounds exactly, accepted.
    let t = q
        .request_task(
            T0,
            &key,
            &["a", "x".repeat(20).as_str(), "Burp"],
            &"c".repeat(16),
        )
        .unwrap()
        .unwrap();
    assert_eq!(t.id(), TaskId(1));
}

#[test]
fn a_task_is_never_held_by_two_agents() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    assert_eq!(take(&mut q, T0, &a, &[BURP]).id, id);
    assert!(q.request_task(T0, &b, &[BURP], "").unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Status update, complete, fail
// ---------------------------------------------------------------------------------------------

#[test]
fn status_update_moves_to_in_progress_and_appends_verbatim() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    let h = take(&mut q, T0, &key, &[BURP]);
    let text = "  50% done\nline two\t ünïcödé, \"quoted\" <b>&amp;</b>  ";
    let t = q
        .update_status(T0 + 1_000, h.id, text, &key, &h.task_key)
        .unwrap();
    assert_eq!(t.status(), TaskStatus::InProgress);
    assert_eq!(t.status().threadfix_code(), 2);
    assert_eq!(t.last_message().unwrap().to_string(), text);
    assert_eq!(t.history().last().unwrap().at_ms, T0 + 1_000);
    assert_eq!(
        t.assignment().unwrap().lease_until_ms(),
        T0 + 1_000 + LEASE_MS
    );
    let t = q
        .update_status(T0 + 2_000, h.id, "", &key, &h.task_key)
        .unwrap();
    assert_eq!(t.status(), TaskStatus::InProgress);
    assert_eq!(t.last_message().unwrap().to_string(), "");
    assert_eq!(t.history().len(), 4);
    assert_eq!(q.stats().counters.status_updates, 2);
}

#[test]
fn heartbeats_keep_a_task_past_its_original_lease() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    let h = take(&mut q, T0, &key, &[BURP]);
    let mut now = T0;
    for _ in 0..20 {
        now += LEASE_MS - 1;
        q.update_status(
            now,
            h.id,
            "This task is still in progress",
            &key,
            &h.task_key,
        )
        .unwrap();
        assert_eq!(q.next_deadline_ms(), Some(now + LEASE_MS));
    }
    assert!(now > T0 + 10 * LEASE_MS);
    q.advance(now + LEASE_MS - 1);
    assert_eq!(status(&q, h.id), TaskStatus::InProgress);
    let t = q
        .complete_task(now + LEASE_MS - 1, h.id, &key, &h.task_key)
        .unwrap();
    assert_eq!(t.status(), TaskStatus::CompleteSuccessful);
    assert_eq!(t.attempts(), 1);
    assert_eq!(q.stats().counters.lease_expiries, 0);
}

#[test]
fn without_heartbeat_the_lease_runs_out_exactly_at_its_end() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    let h = take(&mut q, T0, &key, &[BURP]);
    q.advance(T0 + LEASE_MS - 1);
    assert_eq!(status(&q, h.id), TaskStatus::Assigned);
    q.advance(T0 + LEASE_MS);
    assert_eq!(status(&q, h.id), TaskStatus::Queued);
    let t = q.task(h.id).unwrap();
    assert!(t.assignment().is_none());
    assert_eq!(t.attempts(), 1);
    assert!(
        matches!(t.last_message(), Some(StatusMessage::LeaseExpiredRequeued { at_ms, attempts: 1 }) if *at_ms == T0 + LEASE_MS)
    );
    assert_eq!(q.stats().counters.lease_expiries, 1);
    assert_eq!(q.stats().counters.requeues, 1);
}

#[test]
fn status_update_bounds_the_message() {
    let mut q = queue_with(Config {
        max_message_len: 8,
        ..config()
    });
    scan(&mut q, T0, BURP);
    let (_, key) = agent(&mut q, T0);
    let h = take(&mut q, T0, &key, &[BURP]);
    let err = refused(&mut q, T0, |q| {
        q.update_status(T0, h.id, "123456789", &key, &h.task_key)
            .map(drop)
    });
    assert_eq!(
        err,
        Error::BoundExceeded {
            bound: Bound::MessageLen,
            limit: 8
        }
    );
    let err = refused(&mut q, T0, |q| {
        q.fail_task(T0, h.id, "123456789", &key, &h.task_key)
            .map(drop)
    });
    assert!(matches!(
        err,
        Error::BoundExceeded {
            bound: Bound::MessageLen,
            ..
        }
    ));
    q.update_status(T0, h.id, "12345678", &key, &h.task_key)
        .unwrap();
}

#[test]
fn complete_task_finishes_successfully() {
    let mut q = queue();
    let id = q
        .queue_scan(
            T0,
            NewScan::new(ApplicationId(1), BURP).target_url("http://targeturl/app"),
        )
        .unwrap()
        .id();
    let (agent_id, key) = agent(&mut q, T0);
    let h = take(&mut q, T0 + 640_000, &key, &[BURP]);
    q.update_status(
        T0 + 641_000,
        id,
        "This task is still in progress",
        &key,
        &h.task_key,
    )
    .unwrap();
    let end = T0 + 641_957;
    let t = q.complete_task(end, id, &key, &h.task_key).unwrap();
    assert_eq!(t.status(), TaskStatus::CompleteSuccessful);
    assert_eq!(t.status().threadfix_code(), 3);
    assert_eq!(t.end_ms(), Some(end));
    assert_eq!(t.start_ms(), Some(T0 + 640_000));
    assert!(t.is_active_flag());
    assert_eq!(t.assignment().unwrap().agent(), agent_id);
    assert_eq!(
        messages(&q, id),
        [
            "Scan queued at: 28-09-16:20:25:00 +0000",
            "Assigning task to an agent with agentConfig:\nscanagent.properties",
            "This task is still in progress",
            "Scan completed successfully at: 28-09-16:20:35:957 +0000",
        ]
    );
    assert_eq!(q.agent_tasks(agent_id).unwrap().count(), 0);
    assert_eq!(q.next_deadline_ms(), None);
    assert_eq!(q.stats().counters.completions, 1);
}

#[test]
fn fail_task_records_threadfix_text() {
    let mut q = queue();
    for _ in 0..3 {
        scan(&mut q, T0, BURP);
    }
    let (_, key) = agent(&mut q, T0);
    q.cancel_task(T0, TaskId(1)).unwrap();
    q.cancel_task(T0, TaskId(2)).unwrap();
    let h = take(&mut q, T0, &key, &[BURP]);
    assert_eq!(h.id, TaskId(3));
    let t = q
        .fail_task(T0 + 5, h.id, "Just because", &key, &h.task_key)
        .unwrap();
    let expected = "ScanAgent reported that the scan task: 3 had failed client-side for the following reason: Just because";
    assert_eq!(t.status(), TaskStatus::CompleteFailed);
    assert_eq!(t.status().threadfix_code(), 6);
    assert_eq!(t.end_ms(), Some(T0 + 5));
    assert_eq!(t.failure_message().as_deref(), Some(expected));
    assert_eq!(t.last_message().unwrap().to_string(), expected);
    assert_eq!(q.stats().counters.failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Key checks
// ---------------------------------------------------------------------------------------------

/// Every agent call on `id`, each made with the given keys, must be refused with `expected`.
fn all_calls_refused(
    q: &mut scan_queue::Queue,
    now: u64,
    id: TaskId,
    agent_key: &str,
    task_key: &str,
    expected: &Error,
) {
    let e = refused(q, now, |q| {
        q.update_status(now, id, "x", agent_key, task_key).map(drop)
    });
    assert_eq!(&e, expected, "update");
    let e = refused(q, now, |q| {
        q.complete_task(now, id, agent_key, task_key).map(drop)
    });
    assert_eq!(&e, expected, "complete");
    let e = refused(q, now, |q| {
        q.fail_task(now, id, "x", agent_key, task_key).map(drop)
    });
    assert_eq!(&e, expected, "fail");
}

#[test]
fn another_agents_key_is_not_the_holder() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    all_calls_refused(
        &mut q,
        T0,
        h.id,
        &b,
        &h.task_key,
        &Error::NotTaskHolder { task: h.id },
    );
    assert_eq!(q.stats().rejected_key_checks, 3);
    q.complete_task(T0, h.id, &a, &h.task_key).unwrap();
}

#[test]
fn wrong_task_keys_are_refused() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h1 = take(&mut q, T0, &a, &[BURP]);
    let h2 = take(&mut q, T0, &a, &[BURP]);
    let expected = Error::InvalidTaskKey { task: h1.id };
    for bad in [
        String::new(),
        FOREIGN_KEY.into(),
        tweak(&h1.task_key),
        h2.task_key.clone(),
        a.clone(),
        h1.task_key[..43].into(),
    ] {
        all_calls_refused(&mut q, T0, h1.id, &a, &bad, &expected);
    }
    // The task key is not an agent key.
    all_calls_refused(
        &mut q,
        T0,
        h1.id,
        &h1.task_key,
        &h1.task_key,
        &Error::InvalidAgentKey,
    );
    all_calls_refused(
        &mut q,
        T0,
        h1.id,
        FOREIGN_KEY,
        &h1.task_key,
        &Error::InvalidAgentKey,
    );
    all_calls_refused(
        &mut q,
        T0,
        TaskId(99),
        &a,
        &h1.task_key,
        &Error::UnknownTask(TaskId(99)),
    );
    q.complete_task(T0, h1.id, &a, &h1.task_key).unwrap();
    q.complete_task(T0, h2.id, &a, &h2.task_key).unwrap();
}

#[test]
fn calls_on_a_queued_task_are_wrong_state() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    all_calls_refused(
        &mut q,
        T0,
        id,
        &a,
        FOREIGN_KEY,
        &Error::WrongState {
            task: id,
            status: TaskStatus::Queued,
        },
    );
}

#[test]
fn stale_key_after_lease_expiry_and_reassignment_to_another_agent() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (b_id, b) = agent(&mut q, T0);
    let old = take(&mut q, T0, &a, &[BURP]);
    // The lease ran out: A is told so, whatever it calls.
    let now = T0 + LEASE_MS;
    all_calls_refused(
        &mut q,
        now,
        old.id,
        &a,
        &old.task_key,
        &Error::LeaseExpired { task: old.id },
    );
    assert_eq!(status(&q, old.id), TaskStatus::Queued);
    // B takes it; A's old keys stay dead, and are LeaseExpired for A.
    let new = take(&mut q, now + 1, &b, &[BURP]);
    assert_eq!(new.id, old.id);
    assert_ne!(new.task_key, old.task_key);
    assert_eq!(q.task(new.id).unwrap().attempts(), 2);
    all_calls_refused(
        &mut q,
        now + 2,
        old.id,
        &a,
        &old.task_key,
        &Error::LeaseExpired { task: old.id },
    );
    all_calls_refused(
        &mut q,
        now + 2,
        old.id,
        &a,
        &new.task_key,
        &Error::LeaseExpired { task: old.id },
    );
    // B with A's stale task key: wrong key.
    all_calls_refused(
        &mut q,
        now + 2,
        old.id,
        &b,
        &old.task_key,
        &Error::InvalidTaskKey { task: old.id },
    );
    let t = q.complete_task(now + 3, new.id, &b, &new.task_key).unwrap();
    assert_eq!(t.assignment().unwrap().agent(), b_id);
    // After B finished, A's stale keys are still refused, and B's result stands.
    let e = refused(&mut q, now + 4, |q| {
        q.complete_task(now + 4, old.id, &a, &old.task_key)
            .map(drop)
    });
    assert!(
        matches!(e, Error::LeaseExpired { .. } | Error::WrongState { .. }),
        "{e:?}"
    );
    assert_eq!(status(&q, old.id), TaskStatus::CompleteSuccessful);
}

#[test]
fn stale_key_after_lease_expiry_and_reassignment_to_the_same_agent() {
    let mut q = queue();
    scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let old = take(&mut q, T0, &a, &[BURP]);
    let new = take(&mut q, T0 + LEASE_MS, &a, &[BURP]);
    assert_eq!(new.id, old.id);
    assert_ne!(new.task_key, old.task_key);
    all_calls_refused(
        &mut q,
        T0 + LEASE_MS,
        old.id,
        &a,
        &old.task_key,
        &Error::InvalidTaskKey { task: old.id },
    );
    q.update_status(T0 + LEASE_MS + 1, new.id, "ok", &a, &new.task_key)
        .unwrap();
    q.complete_task(T0 + LEASE_MS + 2, new.id, &a, &new.task_key)
        .unwrap();
    // A retry with the stale key is not the retry of the call that finished the task.
    let e = refused(&mut q, T0 + LEASE_MS + 3, |q| {
        q.complete_task(T0 + LEASE_MS + 3, old.id, &a, &old.task_key)
            .map(drop)
    });
    assert!(!matches!(e, Error::UnknownTask(_)), "{e:?}");
}

#[test]
fn time_going_backwards_counts_as_the_latest_time_seen() {
    let mut q = queue();
    scan(&mut q, T0 + 100, BURP);
    let t = q
        .queue_scan(T0, NewScan::new(ApplicationId(1), BURP))
        .unwrap();
    assert_eq!(t.create_ms(), T0 + 100);
    assert_eq!(t.timeout_ms(), T0 + 100 + DEADLINE_MS);
    assert_eq!(q.clock_ms(), T0 + 100);
    let (_, a) = agent(&mut q, 0);
    assert_eq!(
        q.agents().next().and_then(|id| q.agent_registered_ms(id)),
        Some(T0 + 100)
    );
    let h = take(&mut q, 5, &a, &[BURP]);
    let t = q.task(h.id).unwrap();
    assert_eq!(t.start_ms(), Some(T0 + 100));
    assert_eq!(
        t.assignment().unwrap().lease_until_ms(),
        T0 + 100 + LEASE_MS
    );
    // The lease ran out at T0+100+LEASE; an earlier time afterwards does not bring it back.
    q.advance(T0 + 100 + LEASE_MS);
    assert_eq!(q.advance(T0), T0 + 100 + LEASE_MS);
    let e = refused(&mut q, T0, |q| {
        q.complete_task(T0, h.id, &a, &h.task_key).map(drop)
    });
    assert_eq!(e, Error::LeaseExpired { task: h.id });
    let t = q.cancel_task(1, h.id).unwrap();
    assert_eq!(t.end_ms(), Some(T0 + 100 + LEASE_MS));
    for e in q.drain_events() {
        assert!(e.at_ms() >= T0 + 100, "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines and attempts
// ---------------------------------------------------------------------------------------------

#[test]
fn a_queued_task_times_out_at_its_deadline() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    q.advance(T0 + DEADLINE_MS - 1);
    assert_eq!(status(&q, id), TaskStatus::Queued);
    // A call at the deadline sees it applied first: nothing left to take.
    assert!(
        q.request_task(T0 + DEADLINE_MS, &a, &[BURP], "")
            .unwrap()
            .is_none()
    );
    let t = q.task(id).unwrap();
    assert_eq!(t.status(), TaskStatus::CompleteTimedOut);
    assert_eq!(t.status().threadfix_code(), 5);
    assert_eq!(t.end_ms(), Some(T0 + DEADLINE_MS));
    assert!(
        matches!(t.last_message(), Some(StatusMessage::DeadlinePassed { at_ms }) if *at_ms == T0 + DEADLINE_MS)
    );
    assert_eq!(q.next_deadline_ms(), None);
    assert_eq!(q.stats().counters.timeouts, 1);
    let events: Vec<Event> = q.drain_events().collect();
    assert!(events.contains(&Event::DeadlineReached {
        task: id,
        at_ms: T0 + DEADLINE_MS
    }));
}

#[test]
fn an_active_task_times_out_at_its_deadline() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (agent_id, a) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    // Heartbeats keep the lease alive, the deadline still ends the task.
    let mut now = T0;
    while now + LEASE_MS / 2 < T0 + DEADLINE_MS {
        now += LEASE_MS / 2;
        q.update_status(now, id, "still going", &a, &h.task_key)
            .unwrap();
    }
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    let e = refused(&mut q, T0 + DEADLINE_MS, |q| {
        q.complete_task(T0 + DEADLINE_MS, id, &a, &h.task_key)
            .map(drop)
    });
    assert_eq!(
        e,
        Error::WrongState {
            task: id,
            status: TaskStatus::CompleteTimedOut
        }
    );
    let t = q.task(id).unwrap();
    assert_eq!(t.end_ms(), Some(T0 + DEADLINE_MS));
    assert_eq!(q.agent_tasks(agent_id).unwrap().count(), 0);
    assert_eq!(q.stats().count(TaskStatus::CompleteTimedOut), 1);
}

#[test]
fn a_lease_that_would_outlast_the_deadline_ends_at_the_deadline() {
    let mut q = queue_with(Config {
        lease_ms: DEADLINE_MS * 2,
        ..config()
    });
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    take(&mut q, T0 + 1, &a, &[BURP]);
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    q.advance(T0 + DEADLINE_MS);
    assert_eq!(status(&q, id), TaskStatus::CompleteTimedOut);
    assert_eq!(q.stats().counters.lease_expiries, 0);
}

#[test]
fn the_last_attempt_times_out() {
    let mut q = queue_with(Config {
        max_attempts: 2,
        ..config()
    });
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    take(&mut q, T0, &a, &[BURP]);
    let h = take(&mut q, T0 + LEASE_MS, &b, &[BURP]);
    assert_eq!(q.task(id).unwrap().attempts(), 2);
    q.advance(T0 + 2 * LEASE_MS);
    let t = q.task(id).unwrap();
    assert_eq!(t.status(), TaskStatus::CompleteTimedOut);
    assert_eq!(t.end_ms(), Some(T0 + 2 * LEASE_MS));
    assert!(t.assignment().is_none());
    assert!(matches!(
        t.last_message(),
        Some(StatusMessage::LeaseExpiredTimedOut { attempts: 2, .. })
    ));
    assert!(
        q.request_task(T0 + 2 * LEASE_MS, &a, &[BURP], "")
            .unwrap()
            .is_none()
    );
    all_calls_refused(
        &mut q,
        T0 + 2 * LEASE_MS,
        id,
        &b,
        &h.task_key,
        &Error::LeaseExpired { task: id },
    );
    let c = &q.stats().counters;
    assert_eq!((c.lease_expiries, c.requeues, c.timeouts), (2, 1, 1));
}

// ---------------------------------------------------------------------------------------------
// Cancel and revoke
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_from_every_open_state() {
    for from in [
        TaskStatus::Queued,
        TaskStatus::Assigned,
        TaskStatus::InProgress,
    ] {
        let mut q = queue();
        let id = scan(&mut q, T0, BURP);
        let (agent_id, a) = agent(&mut q, T0);
        let mut held = None;
        if from != TaskStatus::Queued {
            held = Some(take(&mut q, T0, &a, &[BURP]));
        }
        if let (TaskStatus::InProgress, Some(h)) = (from, &held) {
            q.update_status(T0, id, "x", &a, &h.task_key).unwrap();
        }
        assert_eq!(status(&q, id), from);
        let t = q.cancel_task(T0 + 7, id).unwrap();
        assert_eq!(t.status(), TaskStatus::CompleteDeleted, "{from:?}");
        assert_eq!(t.status().threadfix_code(), 4);
        assert!(!t.is_active_flag());
        assert_eq!(t.end_ms(), Some(T0 + 7));
        assert!(matches!(
            t.last_message(),
            Some(StatusMessage::Deleted { .. })
        ));
        assert_eq!(q.next_deadline_ms(), None);
        assert_eq!(q.agent_tasks(agent_id).unwrap().count(), 0);
        assert!(q.request_task(T0 + 8, &a, &[BURP], "").unwrap().is_none());
        if let Some(h) = held {
            all_calls_refused(
                &mut q,
                T0 + 8,
                id,
                &a,
                &h.task_key,
                &Error::WrongState {
                    task: id,
                    status: TaskStatus::CompleteDeleted,
                },
            );
        }
        // Cancelling again answers the same.
        assert_eq!(q.cancel_task(T0 + 9, id).unwrap().end_ms(), Some(T0 + 7));
        assert_eq!(q.stats().counters.cancellations, 1);
        q.check_invariants().unwrap();
    }
}

#[test]
fn cancel_of_a_finished_or_unknown_task_is_refused() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    q.complete_task(T0, id, &a, &h.task_key).unwrap();
    let e = refused(&mut q, T0, |q| q.cancel_task(T0, id).map(drop));
    assert_eq!(
        e,
        Error::WrongState {
            task: id,
            status: TaskStatus::CompleteSuccessful
        }
    );
    let e = refused(&mut q, T0, |q| q.cancel_task(T0, TaskId(2)).map(drop));
    assert_eq!(e, Error::UnknownTask(TaskId(2)));
    let e = refused(&mut q, T0, |q| q.cancel_task(T0, TaskId(0)).map(drop));
    assert_eq!(e, Error::UnknownTask(TaskId(0)));
}

#[test]
fn revoke_requeues_the_agents_tasks_and_kills_its_keys() {
    let mut q = queue();
    let t1 = scan(&mut q, T0, BURP);
    let t2 = scan(&mut q, T0, ZAP);
    let t3 = scan(&mut q, T0, BURP);
    let (a_id, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    let h1 = take(&mut q, T0, &a, &[BURP]);
    let h2 = take(&mut q, T0, &a, &[ZAP]);
    q.update_status(T0, t2, "x", &a, &h2.task_key).unwrap();
    let hb = take(&mut q, T0, &b, &[BURP]);
    assert_eq!(hb.id, t3);
    assert!(q.request_task(T0, &b, &[BURP, ZAP], "").unwrap().is_none());
    let mut back = q.revoke_agent(T0 + 5, a_id).unwrap();
    back.sort();
    assert_eq!(back, vec![t1, t2]);
    for id in [t1, t2] {
        let t = q.task(id).unwrap();
        assert_eq!(t.status(), TaskStatus::Queued);
        assert!(t.assignment().is_none());
        assert!(matches!(
            t.last_message(),
            Some(StatusMessage::AgentRevoked { .. })
        ));
    }
    assert_eq!(
        status(&q, t3),
        TaskStatus::Assigned,
        "another agent's task is untouched"
    );
    assert_eq!(q.agent_for_key(&a), None);
    assert_eq!(q.agent_tasks(a_id).map(|i| i.count()), None);
    assert_eq!(q.stats().agents, 1);
    let c = &q.stats().counters;
    assert_eq!((c.agents_revoked, c.requeues), (1, 2));
    // Its key stops working everywhere; its task keys died.
    let e = refused(&mut q, T0 + 6, |q| {
        q.request_task(T0 + 6, &a, &[BURP], "").map(drop)
    });
    assert_eq!(e, Error::InvalidAgentKey);
    all_calls_refused(
        &mut q,
        T0 + 6,
        t1,
        &a,
        &h1.task_key,
        &Error::InvalidAgentKey,
    );
    // The requeued tasks go to the next agent, with new keys; the old keys stay dead.
    let n1 = take(&mut q, T0 + 7, &b, &[BURP, ZAP]);
    assert_eq!(n1.id, t1);
    assert_eq!(q.task(t1).unwrap().attempts(), 2);
    all_calls_refused(
        &mut q,
        T0 + 7,
        t1,
        &b,
        &h1.task_key,
        &Error::InvalidTaskKey { task: t1 },
    );
    let e = refused(&mut q, T0 + 7, |q| q.revoke_agent(T0 + 7, a_id).map(drop));
    assert_eq!(e, Error::UnknownAgent(a_id));
}

// ---------------------------------------------------------------------------------------------
// Terminal states are final; retries
// ---------------------------------------------------------------------------------------------

#[test]
fn repeating_complete_with_the_same_keys_answers_the_same() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    let first = q
        .complete_task(T0 + 10, id, &a, &h.task_key)
        .unwrap()
        .map(scan_queue::Task::clone);
    assert!(!first.is_repeat());
    q.drain_events().for_each(drop);
    let snap = q.snapshot();
    let again = q
        .complete_task(T0 + 20, id, &a, &h.task_key)
        .unwrap()
        .map(scan_queue::Task::clone);
    assert!(again.is_repeat());
    assert_eq!(*again, *first);
    assert_eq!(again.end_ms(), Some(T0 + 10));
    assert_eq!(q.drain_events().count(), 0);
    let mut expected = snap;
    expected.clock_ms = T0 + 20;
    assert_eq!(q.snapshot(), expected);
    assert_eq!(q.stats().counters.completions, 1);
    // Only the exact same call with the same keys is a retry.
    let e = refused(&mut q, T0 + 30, |q| {
        q.fail_task(T0 + 30, id, "x", &a, &h.task_key).map(drop)
    });
    assert_eq!(
        e,
        Error::WrongState {
            task: id,
            status: TaskStatus::CompleteSuccessful
        }
    );
    let e = refused(&mut q, T0 + 30, |q| {
        q.update_status(T0 + 30, id, "x", &a, &h.task_key).map(drop)
    });
    assert!(matches!(e, Error::WrongState { .. }), "{e:?}");
    let e = refused(&mut q, T0 + 30, |q| {
        q.complete_task(T0 + 30, id, &a, &tweak(&h.task_key))
            .map(drop)
    });
    assert!(
        matches!(e, Error::WrongState { .. } | Error::InvalidTaskKey { .. }),
        "{e:?}"
    );
    let (_, b) = agent(&mut q, T0 + 30);
    let e = refused(&mut q, T0 + 30, |q| {
        q.complete_task(T0 + 30, id, &b, &h.task_key).map(drop)
    });
    assert!(
        matches!(e, Error::WrongState { .. } | Error::NotTaskHolder { .. }),
        "{e:?}"
    );
}

#[test]
fn repeating_fail_answers_with_the_first_reason_and_complete_after_fail_is_refused() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    let first = q
        .fail_task(T0 + 10, id, "first", &a, &h.task_key)
        .unwrap()
        .map(scan_queue::Task::clone);
    assert!(!first.is_repeat());
    let again = q
        .fail_task(T0 + 20, id, "second", &a, &h.task_key)
        .unwrap()
        .map(scan_queue::Task::clone);
    assert!(again.is_repeat());
    assert_eq!(*again, *first);
    assert!(again.failure_message().unwrap().ends_with("reason: first"));
    assert_eq!(again.end_ms(), Some(T0 + 10));
    let e = refused(&mut q, T0 + 30, |q| {
        q.complete_task(T0 + 30, id, &a, &h.task_key).map(drop)
    });
    assert_eq!(
        e,
        Error::WrongState {
            task: id,
            status: TaskStatus::CompleteFailed
        }
    );
    assert_eq!(q.stats().counters.failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Bounds on history and finished tasks
// ---------------------------------------------------------------------------------------------

#[test]
fn status_history_stays_bounded_and_ids_keep_increasing() {
    let mut q = queue_with(Config {
        max_status_history: 5,
        ..config()
    });
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    for i in 0..100 {
        q.update_status(T0 + i, id, &format!("update {i}"), &a, &h.task_key)
            .unwrap();
        let t = q.task(id).unwrap();
        assert!(t.history().len() <= 5);
        assert!(t.history().windows(2).all(|w| w[0].id < w[1].id));
    }
    let t = q.task(id).unwrap();
    assert_eq!(t.history().len(), 5);
    assert_eq!(t.history().last().unwrap().id, 102);
    assert_eq!(t.history().first().unwrap().id, 98);
    assert_eq!(t.last_message().unwrap().to_string(), "update 99");
    let t = q.complete_task(T0 + 200, id, &a, &h.task_key).unwrap();
    assert_eq!(t.history().len(), 5);
    assert_eq!(t.history().last().unwrap().id, 103);
    q.check_invariants().unwrap();
}

#[test]
fn finished_tasks_are_evicted_oldest_finished_first() {
    let mut q = queue_with(Config {
        max_finished_tasks: 2,
        ..config()
    });
    let t1 = scan(&mut q, T0, BURP);
    let t2 = scan(&mut q, T0, BURP);
    let t3 = scan(&mut q, T0, BURP);
    let t4 = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let h1 = take(&mut q, T0, &a, &[BURP]);
    q.cancel_task(T0 + 1, t2).unwrap(); // finishes first
    q.fail_task(T0 + 2, t1, "no", &a, &h1.task_key).unwrap();
    assert!(q.task(t2).is_some());
    q.cancel_task(T0 + 3, t3).unwrap(); // t2 evicted (finished first), though t1 is older
    assert!(q.task(t2).is_none());
    assert!(q.task(t1).is_some());
    assert!(q.task(t3).is_some());
    assert_eq!(q.stats().counters.evicted, 1);
    assert_eq!(q.snapshot().finished, vec![t1, t3]);
    q.advance(T0 + DEADLINE_MS); // t4 times out: t1 evicted
    assert!(q.task(t1).is_none());
    assert_eq!(q.snapshot().finished, vec![t3, t4]);
    let s = q.stats();
    assert_eq!(s.counters.evicted, 2);
    assert_eq!(s.count(TaskStatus::CompleteFailed), 0);
    assert_eq!(s.count(TaskStatus::CompleteDeleted), 1);
    assert_eq!(s.count(TaskStatus::CompleteTimedOut), 1);
    assert_eq!(
        q.tasks_with_status(TaskStatus::CompleteDeleted)
            .map(|t| t.id())
            .collect::<Vec<_>>(),
        [t3]
    );
    // An evicted task is unknown, even to the agent that finished it.
    let e = refused(&mut q, T0 + DEADLINE_MS, |q| {
        q.fail_task(T0 + DEADLINE_MS, t1, "no", &a, &h1.task_key)
            .map(drop)
    });
    assert_eq!(e, Error::UnknownTask(t1));
    let e = refused(&mut q, T0 + DEADLINE_MS, |q| {
        q.cancel_task(T0 + DEADLINE_MS, t2).map(drop)
    });
    assert_eq!(e, Error::UnknownTask(t2));
    q.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

#[test]
fn next_deadline_is_the_earliest_lease_or_deadline() {
    let mut q = queue();
    assert_eq!(q.next_deadline_ms(), None);
    let t1 = scan(&mut q, T0, BURP);
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    scan(&mut q, T0 + 5, ZAP);
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    let (_, a) = agent(&mut q, T0 + 5);
    let h = take(&mut q, T0 + 100, &a, &[ZAP]);
    assert_eq!(q.next_deadline_ms(), Some(T0 + 100 + LEASE_MS));
    q.update_status(T0 + 200, h.id, "x", &a, &h.task_key)
        .unwrap();
    assert_eq!(q.next_deadline_ms(), Some(T0 + 200 + LEASE_MS));
    q.complete_task(T0 + 300, h.id, &a, &h.task_key).unwrap();
    assert_eq!(q.next_deadline_ms(), Some(T0 + DEADLINE_MS));
    q.cancel_task(T0 + 400, t1).unwrap();
    assert_eq!(q.next_deadline_ms(), None);
}

#[test]
fn advance_applies_expiries_in_time_order() {
    let mut q = queue_with(Config {
        max_attempts: 1,
        ..config()
    });
    let t1 = scan(&mut q, T0, BURP); // deadline T0 + D
    let t2 = scan(&mut q, T0 + 1, BURP); // deadline T0 + 1 + D
    let t3 = scan(&mut q, T0 + 2, ZAP);
    let (_, a) = agent(&mut q, T0 + 2);
    take(&mut q, T0 + 3, &a, &[ZAP]); // t3, lease T0 + 3 + L
    take(&mut q, T0 + 2 + LEASE_MS, &a, &[BURP]); // t1, lease T0 + 2 + 2L
    q.drain_events().for_each(drop);
    q.advance(u64::MAX);
    let got: Vec<Event> = q.drain_events().collect();
    assert_eq!(
        got,
        vec![
            Event::LeaseExpired {
                task: t3,
                at_ms: T0 + 3 + LEASE_MS,
                requeued: false
            },
            Event::LeaseExpired {
                task: t1,
                at_ms: T0 + 2 + 2 * LEASE_MS,
                requeued: false
            },
            Event::DeadlineReached {
                task: t2,
                at_ms: T0 + 1 + DEADLINE_MS
            },
        ],
        "the first take happened at T0+3, before t3's lease ran out at T0+3+L"
    );
    assert_eq!(q.stats().count(TaskStatus::CompleteTimedOut), 3);
    assert_eq!(q.next_deadline_ms(), None);
    assert_eq!(q.clock_ms(), u64::MAX);
}

#[test]
fn expiries_that_requeue_then_hit_the_deadline_in_one_advance() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    take(&mut q, T0 + DEADLINE_MS - LEASE_MS / 2, &a, &[BURP]);
    q.drain_events().for_each(drop);
    q.advance(T0 + 10 * DEADLINE_MS);
    let got: Vec<Event> = q.drain_events().collect();
    assert_eq!(
        got,
        vec![Event::DeadlineReached {
            task: id,
            at_ms: T0 + DEADLINE_MS
        }]
    );
    // And a lease that runs out before the deadline, then the deadline, in one call.
    let id = scan(&mut q, T0 + 10 * DEADLINE_MS, BURP);
    let now = T0 + 10 * DEADLINE_MS;
    take(&mut q, now, &a, &[BURP]);
    q.drain_events().for_each(drop);
    q.advance(now + 2 * DEADLINE_MS);
    let got: Vec<Event> = q.drain_events().collect();
    assert_eq!(
        got,
        vec![
            Event::LeaseExpired {
                task: id,
                at_ms: now + LEASE_MS,
                requeued: true
            },
            Event::DeadlineReached {
                task: id,
                at_ms: now + DEADLINE_MS
            }
        ]
    );
}

#[test]
fn time_zero_and_the_end_of_time_do_not_overflow() {
    let mut q = queue();
    let t = q
        .queue_scan(0, NewScan::new(ApplicationId(1), BURP))
        .unwrap();
    assert_eq!(
        t.last_message().unwrap().to_string(),
        "Scan queued at: 01-01-70:00:00:00 +0000"
    );
    let (_, a) = agent(&mut q, 0);
    let h = take(&mut q, 0, &a, &[BURP]);
    q.complete_task(0, h.id, &a, &h.task_key).unwrap();

    let near = u64::MAX - 5;
    let id = scan(&mut q, near, ZAP);
    assert_eq!(q.task(id).unwrap().timeout_ms(), u64::MAX);
    let h = take(&mut q, near, &a, &[ZAP]);
    assert_eq!(
        q.task(id).unwrap().assignment().unwrap().lease_until_ms(),
        u64::MAX
    );
    q.update_status(u64::MAX - 1, id, "x", &a, &h.task_key)
        .unwrap();
    assert_eq!(q.next_deadline_ms(), Some(u64::MAX));
    assert!(
        !q.task(id)
            .unwrap()
            .last_message()
            .unwrap()
            .to_string()
            .is_empty()
    );
    q.advance(u64::MAX);
    assert_eq!(status(&q, id), TaskStatus::CompleteTimedOut);
    // Everything still works at the end of time.
    let id = scan(&mut q, u64::MAX, ZAP);
    assert_eq!(q.task(id).unwrap().timeout_ms(), u64::MAX);
    assert!(
        q.request_task(u64::MAX, &a, &[ZAP], "").unwrap().is_none(),
        "deadline already due"
    );
    assert!(ThreadfixTime(u64::MAX).to_string().ends_with(" +0000"));
    q.check_invariants().unwrap();
}

#[test]
fn status_message_time_format() {
    let cases = [
        (0, "01-01-70:00:00:00 +0000"),
        (5, "01-01-70:00:00:05 +0000"),
        (59_999, "01-01-70:00:00:999 +0000"),
        (60_010, "01-01-70:00:01:10 +0000"),
        (T0 + 893, "28-09-16:20:25:893 +0000"),
        (951_868_799_007, "29-02-00:23:59:07 +0000"),
        (946_684_740_000 + 59_999, "31-12-99:23:59:999 +0000"),
        (4_107_542_340_000, "28-02-00:23:59:00 +0000"), // 2100 is not a leap year
        (4_107_542_400_000, "01-03-00:00:00:00 +0000"),
    ];
    for (ms, text) in cases {
        assert_eq!(ThreadfixTime(ms).to_string(), text, "{ms}");
    }
    let mut q = queue();
    let t = q
        .queue_scan(951_868_799_007, NewScan::new(ApplicationId(1), BURP))
        .unwrap();
    assert_eq!(
        t.last_message().unwrap().to_string(),
        "Scan queued at: 29-02-00:23:59:07 +0000"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn rejected_key_checks_counts_only_key_rejections() {
    let mut q = queue_with(Config {
        max_message_len: 4,
        ..config()
    });
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    let h = take(&mut q, T0, &a, &[BURP]);
    let rk = |q: &scan_queue::Queue| q.stats().rejected_key_checks;
    refused(&mut q, T0, |q| {
        q.complete_task(T0, id, FOREIGN_KEY, &h.task_key).map(drop)
    });
    assert_eq!(rk(&q), 1);
    refused(&mut q, T0, |q| {
        q.complete_task(T0, id, &b, &h.task_key).map(drop)
    });
    assert_eq!(rk(&q), 2);
    refused(&mut q, T0, |q| {
        q.complete_task(T0, id, &a, FOREIGN_KEY).map(drop)
    });
    assert_eq!(rk(&q), 3);
    refused(&mut q, T0, |q| {
        q.request_task(T0, FOREIGN_KEY, &[BURP], "").map(drop)
    });
    assert_eq!(rk(&q), 4);
    // Not key checks: unknown task, wrong state, bounds.
    refused(&mut q, T0, |q| {
        q.complete_task(T0, TaskId(9), &a, &h.task_key).map(drop)
    });
    refused(&mut q, T0, |q| {
        q.update_status(T0, id, "too long", &a, &h.task_key)
            .map(drop)
    });
    assert_eq!(rk(&q), 4);
    // Lease expired is a key rejection.
    refused(&mut q, T0 + LEASE_MS, |q| {
        q.complete_task(T0 + LEASE_MS, id, &a, &h.task_key)
            .map(drop)
    });
    assert_eq!(rk(&q), 5);
    // A metric, not state.
    let snap = q.snapshot();
    let restored =
        scan_queue::Queue::restore(config(), scan_queue::KeySource::from_seed([0; 32]), snap)
            .unwrap();
    assert_eq!(restored.stats().rejected_key_checks, 0);
}

#[test]
fn stats_count_tasks_per_status() {
    let mut q = queue();
    for _ in 0..8 {
        scan(&mut q, T0, BURP);
    }
    let (_, a) = agent(&mut q, T0);
    let hs: Vec<Held> = (0..6).map(|_| take(&mut q, T0, &a, &[BURP])).collect();
    q.update_status(T0, hs[1].id, "x", &a, &hs[1].task_key)
        .unwrap();
    q.complete_task(T0, hs[2].id, &a, &hs[2].task_key).unwrap();
    q.cancel_task(T0, hs[3].id).unwrap();
    q.fail_task(T0, hs[4].id, "x", &a, &hs[4].task_key).unwrap();
    q.update_status(T0, hs[5].id, "x", &a, &hs[5].task_key)
        .unwrap();
    q.update_status(T0 + LEASE_MS - 1, hs[5].id, "x", &a, &hs[5].task_key)
        .unwrap();
    // At T0+L, hs[0] goes back to the queue (first attempt).
    q.advance(T0 + LEASE_MS);
    let s = q.stats();
    assert_eq!(s.count(TaskStatus::Queued), 4, "{s:?}");
    assert_eq!(s.count(TaskStatus::Assigned), 0);
    assert_eq!(s.count(TaskStatus::InProgress), 1);
    assert_eq!(s.count(TaskStatus::CompleteSuccessful), 1);
    assert_eq!(s.count(TaskStatus::CompleteDeleted), 1);
    assert_eq!(s.count(TaskStatus::CompleteFailed), 1);
    assert_eq!(s.count(TaskStatus::CompleteTimedOut), 0);
    assert_eq!(s.open_tasks(), 5);
    assert_eq!(s.agents, 1);
    // hs[1]'s lease (renewed at T0) ran out too: requeued.
    assert_eq!(status(&q, hs[1].id), TaskStatus::Queued);
    assert_eq!(status(&q, hs[5].id), TaskStatus::InProgress);
    for st in TaskStatus::ALL {
        assert_eq!(q.tasks_with_status(st).count(), s.count(st));
        assert!(q.tasks_with_status(st).all(|t| t.status() == st));
    }
    let queued: Vec<TaskId> = q
        .tasks_with_status(TaskStatus::Queued)
        .map(|t| t.id())
        .collect();
    assert_eq!(queued, [TaskId(1), TaskId(2), TaskId(7), TaskId(8)]);
}

#[test]
fn an_agent_that_lost_a_lease_and_took_the_task_again_holds_it_normally() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    take(&mut q, T0, &a, &[BURP]);
    let again = take(&mut q, T0 + LEASE_MS, &a, &[BURP]);
    // Its new assignment is live: cancelled now, its calls are about a deleted task.
    q.cancel_task(T0 + LEASE_MS + 1, id).unwrap();
    all_calls_refused(
        &mut q,
        T0 + LEASE_MS + 2,
        id,
        &a,
        &again.task_key,
        &Error::WrongState {
            task: id,
            status: TaskStatus::CompleteDeleted,
        },
    );
}

#[test]
fn check_completion_tells_before_any_file_whether_complete_would_pass() {
    let mut q = queue();
    let id = scan(&mut q, T0, BURP);
    let (_, a) = agent(&mut q, T0);
    let (_, b) = agent(&mut q, T0);
    assert_eq!(
        q.check_completion(id, &a, "x"),
        Err(Error::WrongState {
            task: id,
            status: TaskStatus::Queued
        })
    );
    let h = take(&mut q, T0, &a, &[BURP]);
    q.drain_events().for_each(drop);
    let snap = q.snapshot();
    assert_eq!(q.check_completion(id, &a, &h.task_key), Ok(()));
    assert_eq!(
        q.check_completion(id, FOREIGN_KEY, &h.task_key),
        Err(Error::InvalidAgentKey)
    );
    assert_eq!(
        q.check_completion(id, &b, &h.task_key),
        Err(Error::NotTaskHolder { task: id })
    );
    assert_eq!(
        q.check_completion(id, &a, &tweak(&h.task_key)),
        Err(Error::InvalidTaskKey { task: id })
    );
    assert_eq!(
        q.check_completion(TaskId(99), &a, &h.task_key),
        Err(Error::UnknownTask(TaskId(99)))
    );
    assert_eq!(q.snapshot(), snap, "checking changes nothing");
    assert_eq!(q.drain_events().count(), 0);
    // The agent failed it (the embedder refusing its file): a retry by the same keys passes,
    // anyone else is still refused.
    q.fail_task(T0 + 1, id, "refused file", &a, &h.task_key)
        .unwrap();
    assert_eq!(q.check_completion(id, &a, &h.task_key), Ok(()));
    assert!(q.check_completion(id, &b, &h.task_key).is_err());
    assert!(q.check_completion(id, &a, &tweak(&h.task_key)).is_err());
    // Completed: the retry of the completion passes.
    let id2 = scan(&mut q, T0 + 2, BURP);
    let h2 = take(&mut q, T0 + 2, &a, &[BURP]);
    q.complete_task(T0 + 3, id2, &a, &h2.task_key).unwrap();
    assert_eq!(q.check_completion(id2, &a, &h2.task_key), Ok(()));
    assert!(q.check_completion(id2, &b, &h2.task_key).is_err());
}
