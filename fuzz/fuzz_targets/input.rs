//! The input the `operations` and `shared` targets share: a seed, a configuration choice and
//! a sequence of operations, with keys chosen among those the queue minted or arbitrary.

use arbitrary::Arbitrary;
use scan_queue::{AgentId, ApplicationId, Config, NewScan, ScanConfigId};

pub const SCANNERS: [&str; 3] = ["OWASP Zed Attack Proxy", "Burp Suite Pro", "zap"];

/// A key as the fuzzer presents it: one the queue minted (by index) or arbitrary text.
#[derive(Arbitrary, Debug)]
pub enum KeyChoice {
    Agent(u8),
    Task(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    Queue {
        app: u64,
        scanner: u8,
        raw_scanner: Option<String>,
        url: Option<String>,
        config: Option<u64>,
    },
    Register,
    Request {
        agent: KeyChoice,
        scanners: Vec<u8>,
        raw: Option<String>,
        config: String,
    },
    Update {
        task: u64,
        message: String,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Complete {
        task: u64,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Fail {
        task: u64,
        message: String,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Cancel {
        task: u64,
    },
    Revoke {
        agent: u8,
    },
    Tick {
        ms: u32,
    },
    Jump {
        now: u64,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub seed: [u8; 32],
    pub small: bool,
    pub ops: Vec<(u16, Op)>,
}

pub fn pick(
    agents: &[(scan_queue::AgentId, String)],
    task_keys: &[String],
    c: &KeyChoice,
) -> String {
    match c {
        KeyChoice::Agent(i) if !agents.is_empty() => agents[*i as usize % agents.len()].1.clone(),
        KeyChoice::Task(i) if !task_keys.is_empty() => {
            task_keys[*i as usize % task_keys.len()].clone()
        }
        KeyChoice::Raw(s) => s.clone(),
        _ => String::new(),
    }
}

/// The small configuration (bounds reached quickly) or the default one.
pub fn config(small: bool) -> Config {
    if small {
        Config {
            lease_ms: 50,
            task_deadline_ms: 400,
            max_attempts: 2,
            max_open_tasks: 8,
            max_finished_tasks: 4,
            max_agents: 3,
            max_scanners: 2,
            max_scanners_per_request: 3,
            max_scanner_len: 24,
            max_url_len: 40,
            max_message_len: 16,
            max_agent_config_len: 16,
            max_status_history: 3,
            record_events: true,
        }
    } else {
        Config::default()
    }
}

/// The scan an [`Op::Queue`] asks for.
pub fn new_scan<'a>(
    app: u64,
    scanner: u8,
    raw_scanner: &'a Option<String>,
    url: &'a Option<String>,
    config: Option<u64>,
) -> NewScan<'a> {
    NewScan {
        application: ApplicationId(app % 4),
        scanner: raw_scanner
            .as_deref()
            .unwrap_or(SCANNERS[scanner as usize % 3]),
        target_url: url.as_deref(),
        scan_config: config.map(ScanConfigId),
    }
}

/// The scanner names an [`Op::Request`] presents.
pub fn scanner_names<'a>(scanners: &[u8], raw: &'a Option<String>) -> Vec<&'a str> {
    let mut names: Vec<&str> = scanners.iter().map(|i| SCANNERS[*i as usize % 3]).collect();
    if let Some(r) = raw {
        names.push(r);
    }
    names
}

/// The agent an [`Op::Revoke`] names: a registered one, or an unknown id if there is none.
pub fn agent_id(agents: &[(AgentId, String)], i: u8) -> AgentId {
    if agents.is_empty() {
        AgentId(Default::default())
    } else {
        agents[i as usize % agents.len()].0
    }
}
