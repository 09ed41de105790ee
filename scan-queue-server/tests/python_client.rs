//! The published Python client's calling convention (`ThreadFixProAPI`, `_utils/_tasks.py` and
//! `API.py`): base URL `{host}/threadfix/rest/v2.8`, header `Authorization: APIKEY {key}`, every
//! parameter in the query string (`requests.request(params=…)`), files as multipart parts
//! (`files={'file': …}` / `files={'files': …}`), POST without a body when there is no file.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

struct PythonClient<'a> {
    s: &'a TestServer,
}

impl PythonClient<'_> {
    async fn request(
        &self,
        method: &str,
        url: &str,
        params: &[(&str, &str)],
        files: Option<Form>,
    ) -> Value {
        let full = format!("{}/threadfix/rest/v2.8{url}", self.s.origin);
        let builder = match method {
            "GET" => self.s.http.get(full),
            _ => self.s.http.post(full),
        }
        .header("Accept", "application/json")
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .header("User-Agent", "threadfix_pro_api/2.8")
        .query(params);
        let builder = match files {
            Some(form) => builder.multipart(form),
            None => builder,
        };
        json(builder.send().await.unwrap()).await
    }
}

fn file(name: &str, bytes: &[u8], file_name: &str) -> Form {
    Form::new().part(
        name.to_owned(),
        Part::bytes(bytes.to_vec()).file_name(file_name.to_owned()),
    )
}

#[tokio::test]
async fn the_python_clients_calls() {
    let s = TestServer::start().await;
    let py = PythonClient { s: &s };

    // get_scan_agent_scanners
    let r = py.request("GET", "/tasks/scanners", &[], None).await;
    assert_eq!(r["object"][4], "OWASP Zed Attack Proxy", "{r}");
    // set_task_config(application_id, scanner_type, file_path)
    let r = py
        .request(
            "POST",
            "/tasks/setTaskConfig",
            &[("appId", "5"), ("scannerType", "OWASP Zed Attack Proxy")],
            Some(file("file", b"zap.conf", "zap.conf")),
        )
        .await;
    assert_eq!(r["object"]["name"], "zap", "{r}");
    let config_id = r["object"]["id"].as_u64().unwrap().to_string();
    // queue_scan(application_id, scanner_name, target_url, scan_config_id)
    let r = py
        .request(
            "POST",
            "/tasks/queueScan",
            &[
                ("applicationId", "5"),
                ("scannerType", "OWASP Zed Attack Proxy"),
                ("targetURL", "https://app.example/login"),
                ("scanConfigId", &config_id),
            ],
            None,
        )
        .await;
    assert_eq!(r["object"]["statusString"], "QUEUED", "{r}");
    assert_eq!(r["object"]["scanConfig"]["id"].to_string(), config_id);
    assert_eq!(r["object"]["secureKey"], Value::Null);
    let r = py
        .request(
            "POST",
            "/tasks/queueScan",
            &[("applicationId", "5"), ("scannerType", "zap")],
            None,
        )
        .await;
    assert_eq!(r["object"]["id"], 2, "{r}");
    // request_scan_agent_key
    let r = py
        .request("GET", "/tasks/requestScanAgentKey", &[], None)
        .await;
    let agent = r["object"].as_str().unwrap().to_owned();
    assert_eq!(agent.len(), 44);
    // request_task(scanners, agent_config_path, key): the agent config as the file `files`.
    let r = py
        .request(
            "POST",
            "/tasks/requestTask",
            &[
                ("scanners", "OWASP Zed Attack Proxy,Burp Suite Pro"),
                ("scanAgentSecureKey", &agent),
            ],
            Some(file(
                "files",
                b"zap.home=/opt/zap\n",
                "scanagent.properties",
            )),
        )
        .await;
    let o = &r["object"];
    assert_eq!(o["taskId"], 1, "{r}");
    assert_eq!(o["taskType"], "OWASP Zed Attack Proxy");
    assert_eq!(o["taskConfig"]["targetUrl"], "https://app.example/login");
    assert_eq!(o["taskConfig"]["dataBlobs"]["configFile"], "emFwLmNvbmY=");
    assert_eq!(o["secureScanAgentInstanceKey"], agent.as_str());
    let task_key = o["secureTaskKey"].as_str().unwrap().to_owned();
    // update_task_status
    let r = py
        .request(
            "POST",
            "/tasks/taskStatusUpdate",
            &[
                ("scanQueueTaskId", "1"),
                ("message", "Spidering 40%"),
                ("scanAgentSecureKey", &agent),
                ("secureTaskKey", &task_key),
            ],
            None,
        )
        .await;
    assert_eq!(r["object"], "Successfully updated ScanQueueTask", "{r}");
    // complete_task(id, file_path, keys)
    let r = py
        .request(
            "POST",
            "/tasks/completeTask",
            &[
                ("scanQueueTaskId", "1"),
                ("scanAgentSecureKey", &agent),
                ("secureTaskKey", &task_key),
            ],
            Some(file("file", b"<OWASPZAPReport/>", "zap-report.xml")),
        )
        .await;
    let o = &r["object"];
    assert_eq!(o["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    let history: Vec<&str> = o["scanStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        history[1],
        "Assigning task to an agent with agentConfig:\nzap.home=/opt/zap\n"
    );
    assert_eq!(history[2], "Spidering 40%");
    assert_eq!(s.results().len(), 1);
    // fail_task on the second task; the scanner by short name in the agent's list.
    let r = py
        .request(
            "POST",
            "/tasks/requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", &agent)],
            Some(file("files", b"", "scanagent.properties")),
        )
        .await;
    let key2 = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    let r = py
        .request(
            "POST",
            "/tasks/failTask",
            &[
                ("scanQueueTaskId", "2"),
                ("message", "ZAP crashed"),
                ("scanAgentSecureKey", &agent),
                ("secureTaskKey", &key2),
            ],
            None,
        )
        .await;
    assert_eq!(
        r["object"],
        "ScanAgent reported that the scan task: 2 had failed client-side for the following reason: ZAP crashed"
    );
    s.stop().await;
}
