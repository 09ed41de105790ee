//! Golden tests of the wire format, without HTTP: the core driven at the seed's times, rendered
//! by `wire`, compared with the seed's sample outputs field by field.

mod common;

use common::*;
use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, TaskId};
use scan_queue_server::wire::{
    self, AssignmentObject, Envelope, ScanConfigObject, TaskExtras, TaskObject,
};
use serde_json::Value;

fn seed_queue() -> (Queue, String, String) {
    let mut q = Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
    let scan = NewScan::new(ApplicationId(1), "Burp Suite Pro").target_url("http://targeturl/app");
    let id = q.queue_scan(SEED_CREATE_MS, scan).unwrap().id();
    let agent = q.register_agent(SEED_CREATE_MS).unwrap();
    let agent_key = agent.key.expose_secret().to_owned();
    let task = q
        .request_task(
            SEED_START_MS,
            &agent_key,
            &["Burp Suite Pro"],
            SEED_AGENT_CONFIG,
        )
        .unwrap()
        .unwrap();
    let task_key = task
        .assignment()
        .unwrap()
        .task_key()
        .expose_secret()
        .to_owned();
    for at in [SEED_START_MS + 1_800_000, SEED_START_MS + 3_600_000] {
        q.update_status(
            at,
            id,
            "This task is still in progress",
            &agent_key,
            &task_key,
        )
        .unwrap();
    }
    q.complete_task(SEED_END_MS, id, &agent_key, &task_key)
        .unwrap();
    (q, agent_key, task_key)
}

fn seed_config() -> ScanConfigObject {
    ScanConfigObject {
        id: 1,
        active: true,
        name: "burp".into(),
        kind: wire::SCAN_CONFIG_TYPE.into(),
        content_type: "application/octet-stream".into(),
        uploaded_date: SEED_UPLOADED_MS,
    }
}

#[test]
fn complete_task_object_matches_the_seed_field_by_field() {
    let (q, _, _) = seed_queue();
    let task = q.task(TaskId(1)).unwrap();
    // The seed's own keys, to show that every other byte is ours.
    let keys = (
        "KVS1TiifaYeILnchqbdmU24JEyljgNy0NTOgvSLzS3Y",
        "yMFCvtcmBtAARYS5QX8x54zvMruNLIvNMzqMI44K4JG8",
    );
    let config = seed_config();
    let object = TaskObject::new(
        task,
        TaskExtras {
            scanner_short_name: Some("burp"),
            scan_config: Some(&config),
            keys: Some(keys),
        },
    );
    let pretty = pretty4(&Envelope::success(object));
    assert_matches_seed(&pretty, keys);
    // Our status times, in UTC with ThreadFix's `SS` = milliseconds.
    let ours: Value = serde_json::from_str(&pretty).unwrap();
    let statuses = ours["object"]["scanStatuses"].as_array().unwrap();
    assert_eq!(
        statuses[0]["message"],
        "Scan queued at: 28-09-16:20:25:00 +0000"
    );
    assert_eq!(
        statuses[4]["message"],
        "Scan completed successfully at: 28-09-16:21:40:957 +0000"
    );
}

#[test]
fn task_object_without_keys_or_config_has_nulls() {
    let (q, _, _) = seed_queue();
    let object = TaskObject::new(q.task(TaskId(1)).unwrap(), TaskExtras::default());
    let v = serde_json::to_value(&object).unwrap();
    for field in [
        "secureKey",
        "scanAgentInstanceSecureKey",
        "scanConfig",
        "scannerShortName",
        "version",
        "scanAgentInfo",
    ] {
        assert_eq!(v[field], Value::Null, "{field}");
    }
}

#[test]
fn fail_task_answer_is_the_seeds_byte_for_byte() {
    let seed: Value = serde_json::from_str(SEED_FAIL_OUTPUT).unwrap();
    let ours = Envelope::success(wire::fail_message(3, "Just because"));
    assert_eq!(serde_json::to_value(&ours).unwrap(), seed);
    // And the core's status message is the same text.
    let mut q = Queue::new(Config::default(), KeySource::from_seed([2; 32])).unwrap();
    for _ in 0..3 {
        q.queue_scan(0, NewScan::new(ApplicationId(1), "Burp Suite Pro"))
            .unwrap();
    }
    let agent = q.register_agent(0).unwrap();
    let k = agent.key.expose_secret();
    let mut task_key = String::new();
    for _ in 0..3 {
        let t = q
            .request_task(1, k, &["Burp Suite Pro"], "")
            .unwrap()
            .unwrap();
        task_key = t
            .assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned();
    }
    let failed = q
        .fail_task(2, TaskId(3), "Just because", k, &task_key)
        .unwrap();
    assert_eq!(failed.failure_message().as_deref(), seed["object"].as_str());
}

#[test]
fn assignment_object_has_the_documented_shape() {
    let mut q = Queue::new(Config::default(), KeySource::from_seed([3; 32])).unwrap();
    let scan = NewScan::new(ApplicationId(1), "OWASP Zed Attack Proxy").target_url("http://t/app");
    q.queue_scan(0, scan).unwrap();
    let agent = q.register_agent(0).unwrap();
    let k = agent.key.expose_secret();
    let task = q
        .request_task(1, k, &["OWASP Zed Attack Proxy"], "cfg")
        .unwrap()
        .unwrap();
    let with = AssignmentObject::new(task, k, Some("aGVsbG8=".into())).unwrap();
    let v = serde_json::to_value(&with).unwrap();
    let expected = serde_json::json!({
        "taskId": 1,
        "taskType": "OWASP Zed Attack Proxy",
        "taskConfig": {
            "targetUrl": "http://t/app",
            "targetUrlString": "http://t/app",
            "dataBlobs": {"configFile": "aGVsbG8="},
            "configParams": {}
        },
        "secureTaskKey": task.assignment().unwrap().task_key().expose_secret(),
        "secureScanAgentInstanceKey": k,
    });
    assert_eq!(v, expected);
    let pretty = pretty4(&with);
    assert_eq!(
        field_order(&pretty, 1),
        [
            "taskId",
            "taskType",
            "taskConfig",
            "secureTaskKey",
            "secureScanAgentInstanceKey"
        ]
    );
    let without = AssignmentObject::new(task, k, None).unwrap();
    assert_eq!(
        serde_json::to_value(&without).unwrap()["taskConfig"]["dataBlobs"],
        serde_json::json!({})
    );
}

#[test]
fn failure_envelope_and_thread_fix_messages() {
    let v = serde_json::to_value(Envelope::<()>::failure(wire::NO_TASK_FOUND)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"message": "No task found.", "success": false, "responseCode": -1, "object": null})
    );
    assert_eq!(
        wire::AUTH_FAILED,
        "Authentication failed, check your API Key."
    );
    assert_eq!(wire::NO_SECURE_TASK_KEY, "No secure task key found error.");
    assert_eq!(
        wire::TASK_KEY_NOT_RECOGNIZED,
        "Secure task key was not recognized."
    );
    assert_eq!(wire::UPDATE_SUCCEEDED, "Successfully updated ScanQueueTask");
}
