//! The page's HTML, as maud templates: every interpolation is escaped, and no script is
//! inline (the page's one script is the static `app.js`; the Content-Security-Policy forbids
//! any other).

use super::listing::{AgentRow, Detail, Filter, Listing, Row, Sort};
use crate::scanners::Scanners;
use maud::{DOCTYPE, Markup, html};
use scan_queue::{Stats, TaskStatus};

/// Links and forms point under the prefix the page was reached by (`""` or `"/threadfix"`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) prefix: &'a str,
    /// The session's CSRF token, for forms; `None` on the login page.
    pub(crate) csrf: Option<&'a str>,
}

impl Ctx<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/tasks{path}", self.prefix)
    }
}

/// `2026-11-24 05:24:06Z` (UTC).
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn opt_time(ms: Option<u64>) -> String {
    ms.map(time).unwrap_or_default()
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `9s`: how long since `since_ms` (app.js writes the same).
pub(crate) fn duration(since_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(since_ms) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

fn layout(ctx: Ctx<'_>, title: &str, live: Option<String>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Scan Agent Tasks" }
                link rel="stylesheet" href=(ctx.url("/static/app.css"));
                script src=(ctx.url("/static/app.js")) defer {}
            }
            body data-live=[live] {
                header {
                    h1 { a href=(ctx.url("")) { "Scan Agent Tasks" } }
                    @if let Some(csrf) = ctx.csrf {
                        form.logout method="post" action=(ctx.url("/logout")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form: the API key goes in a POST body, never in a URL.
pub(crate) fn login(ctx: Ctx<'_>, failed: bool) -> Markup {
    layout(
        ctx,
        "Log in",
        None,
        html! {
            form #login.card method="post" action=(ctx.url("/login")) {
                h2 { "Log in" }
                @if failed { p.error role="alert" { "Wrong API key." } }
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        },
    )
}

fn status_options(selected: Option<TaskStatus>) -> Markup {
    html! {
        option value="" selected[selected.is_none()] { "All statuses" }
        @for s in TaskStatus::ALL {
            option value=(s.name()) selected[selected == Some(s)] { (s.name()) }
        }
    }
}

/// The task table's columns; `app.js` builds rows with the same labels.
const TASK_COLUMNS: [&str; 10] = [
    "Id",
    "Application",
    "Scanner",
    "Target URL",
    "Status",
    "Reason",
    "In status",
    "Attempts",
    "Created",
    "Agent",
];

/// The task table; its Id, Status and Created headers sort by what they name (`sort`: the
/// link for an order).
fn task_rows(
    ctx: Ctx<'_>,
    rows: &[Row],
    now_ms: u64,
    current: Sort,
    sort: &dyn Fn(Sort) -> String,
) -> Markup {
    let by_id = if current == Sort::Newest {
        Sort::Oldest
    } else {
        Sort::Newest
    };
    let header = |c: &str| match c {
        "Id" | "Created" => Some((by_id, by_id.label())),
        "Status" => Some((Sort::Status, Sort::Status.label())),
        _ => None,
    };
    html! {
        table #tasks.cards {
            thead { tr { @for c in TASK_COLUMNS {
                th {
                    @if let Some((order, label)) = header(c) {
                        a.sort href=(sort(order)) title=(label) { (c) }
                    } @else { (c) }
                }
            } } }
            tbody {
                @for r in rows {
                    tr data-task-id=(r.id.0) {
                        td data-label="Id" { a.task-link href=(ctx.url(&format!("/task/{}", r.id.0))) { (r.id.0) } }
                        td data-label="Application" { (r.application) }
                        td.scanner data-label="Scanner" { (r.scanner) }
                        td.url data-label="Target URL" { (r.target_url.as_deref().unwrap_or("")) }
                        td.status data-label="Status" {
                            span class={ "badge s-" (r.status.name()) } { (r.status.name()) }
                            @if let Some(f) = r.findings { " " (findings_badge(f)) }
                            @if let Some(t) = r.retried_as { " " span.retried { "retried as " (t.0) } }
                        }
                        td.reason data-label="Reason" { (r.reason.as_deref().unwrap_or("")) }
                        td.since data-label="In status" title=(time(r.since_ms)) { (duration(r.since_ms, now_ms)) }
                        td data-label="Attempts" { (r.attempts) }
                        td data-label="Created" { (time(r.create_ms)) }
                        td.agent data-label="Agent" title=[r.agent.map(|a| a.to_string())] {
                            (agent_label(r.agent_name.as_deref(), r.agent))
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="10" { "No tasks." } } }
            }
        }
    }
}

/// An agent's name, else its uuid.
fn agent_label(name: Option<&str>, agent: Option<scan_queue::AgentId>) -> String {
    match (name, agent) {
        (Some(n), _) => n.to_owned(),
        (None, Some(a)) => a.to_string(),
        (None, None) => String::new(),
    }
}

/// A result's findings in a few characters: `3H 1M 0L 2I`, titled in words.
fn findings_badge(f: crate::report::Findings) -> Markup {
    let title = format!(
        "Findings: {} high, {} medium, {} low, {} informational",
        f.high, f.medium, f.low, f.informational
    );
    let class = if f.high > 0 {
        "findings f-high"
    } else if f.medium > 0 {
        "findings f-medium"
    } else {
        "findings"
    };
    html! {
        span class=(class) title=(title) {
            (f.high) "H " (f.medium) "M " (f.low) "L " (f.informational) "I"
        }
    }
}

/// Counts per status and the queue-depth chart; `app.js` refreshes both.
fn counts(stats: &Stats, live_agents: usize) -> Markup {
    html! {
        section #counts {
            @for s in TaskStatus::ALL {
                div.count {
                    span.count-label { (s.name()) }
                    span.count-value data-count=(s.name()) { (stats.count(s)) }
                }
            }
            div.count title="Agents seen within the lease" {
                span.count-label { "LIVE AGENTS" }
                span.count-value data-count="AGENTS" { (live_agents) }
            }
            div.count {
                span.count-label { "REGISTERED AGENTS" }
                span.count-value data-count="REGISTERED" { (stats.agents) }
            }
        }
        section #depth {
            h2 { "Queue depth, last hour" }
            canvas #depth-chart width="720" height="140" { "Queued and running tasks per minute." }
            p.legend { span.key-queued { "■ queued" } " " span.key-running { "■ running" } }
        }
    }
}

/// The main page.
pub(crate) struct ListPage<'a> {
    pub(crate) filter: &'a Filter,
    pub(crate) listing: &'a Listing,
    pub(crate) stats: &'a Stats,
    pub(crate) agents: &'a [AgentRow],
    pub(crate) agent_total: usize,
    pub(crate) live_agents: usize,
    pub(crate) now_ms: u64,
    pub(crate) scanners: &'a Scanners,
    /// A fixed text (never from the request) to confirm an action.
    pub(crate) flash: Option<String>,
}

/// Live updates' switch and state; `app.js` drives both.
fn live_toggle() -> Markup {
    html! {
        p.live-bar {
            button #live-toggle type="button" aria-pressed="false" { "Pause live updates" }
            " " span #updated role="status" { "" }
        }
    }
}

fn agent_rows(ctx: Ctx<'_>, agents: &[AgentRow], now_ms: u64) -> Markup {
    html! {
        table #agent-table.cards {
            thead { tr { th { "Agent" } th { "Host / OS" } th { "Last seen" } th { "Holds" } th {} } }
            tbody {
                @for a in agents {
                    tr data-agent=(a.id) {
                        td.agent data-label="Agent" {
                            span.agent-name { (a.name.as_deref().unwrap_or("")) }
                            " " small.uuid { (a.id) }
                            @if let Some(c) = &a.config { br; small.config { (c) } }
                        }
                        td data-label="Host / OS" { (a.host.as_deref().unwrap_or("")) @if let Some(os) = &a.os { " (" (os) ")" } }
                        td.seen data-label="Last seen" {
                            span class=(if a.live { "badge live" } else { "badge silent" }) { (if a.live { "live" } else { "silent" }) }
                            " " (a.last_seen_ms.map(|t| format!("{} ago", duration(t, now_ms))).unwrap_or_else(|| "not since start".to_owned()))
                        }
                        td.holds data-label="Holds" {
                            @for (t, since) in &a.tasks {
                                a href=(ctx.url(&format!("/task/{}", t.0))) { (t.0) }
                                " (" (duration(*since, now_ms)) ") "
                            }
                        }
                        td { a.revoke href=(ctx.url(&format!("/agent/{}/revoke", a.id))) { "Revoke…" } }
                    }
                }
                @if agents.is_empty() { tr { td colspan="5" { "No scan agents." } } }
            }
        }
    }
}

pub(crate) fn list(ctx: Ctx<'_>, p: &ListPage<'_>) -> Markup {
    let csrf = ctx.csrf.unwrap_or_default();
    let f = p.filter;
    let base = f.query().finish();
    let link = |param: &str, key: super::listing::Key| {
        let mut q = f.query();
        q.append_pair(param, &key.encode(f.sort));
        format!("{}?{}", ctx.url(""), q.finish())
    };
    let next = p.listing.next.map(|k| link("from", k));
    let prev = p.listing.prev.map(|k| link("to", k));
    let first = format!("{}?{}", ctx.url(""), base);
    let bulk = |action: &str| {
        let mut q = f.query();
        q.append_pair("action", action);
        format!("{}?{}", ctx.url("/bulk"), q.finish())
    };
    // app.js adds the page's own query (filters and position) to it.
    let live = ctx.url("/live.json");
    layout(
        ctx,
        "Tasks",
        Some(live),
        html! {
            @if let Some(flash) = &p.flash { p #flash.flash role="status" { (flash) } }
            (live_toggle())
            (counts(p.stats, p.live_agents))
            section #list {
                h2 { "Tasks" }
                form #filter method="get" action=(ctx.url("")) {
                    label { "Status " select name="status" { (status_options(f.status)) } }
                    label { "Scanner "
                        select name="scanner" {
                            option value="" selected[f.scanner.is_none()] { "All scanners" }
                            @for s in p.scanners.iter() {
                                option value=(s.name) selected[f.scanner.as_deref() == Some(s.name.as_str())] { (s.name) }
                            }
                        }
                    }
                    label { "Application "
                        input type="number" name="application" min="1" placeholder="any"
                            value=[f.application];
                    }
                    label { "URL contains "
                        input type="search" name="url" maxlength="255" placeholder="any" value=[f.url.as_deref()];
                    }
                    label { "Agent "
                        input type="search" name="agent" maxlength="255" placeholder="name, host or uuid" value=[f.agent.as_deref()];
                    }
                    label { "Order "
                        select name="sort" {
                            @for o in Sort::ALL { option value=(o.name()) selected[o == f.sort] { (o.label()) } }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                p.total {
                    span #total { (if p.listing.total_exact { "" } else { "at least " }) (p.listing.total) }
                    " task(s) match. "
                    a #bulk-cancel href=(bulk("cancel")) { "Cancel the matching open tasks…" } " "
                    a #bulk-retry href=(bulk("retry")) { "Retry the matching failed, timed-out and deleted tasks…" }
                }
                (task_rows(ctx, &p.listing.rows, p.now_ms, f.sort, &|order| {
                    let mut by = Filter { sort: order, ..f.clone() }.query();
                    format!("{}?{}", ctx.url(""), by.finish())
                }))
                nav.paging {
                    @if f.from.is_some() || f.to.is_some() { a #first href=(first) { "⇤ First" } " " }
                    @if let Some(href) = prev { a #prev href=(href) { "← Previous" } " " }
                    @if p.listing.budget_spent {
                        span { "Examined " (super::listing::EXAMINE_MAX) " tasks without filling the page. " }
                    }
                    @if let Some(href) = next { a #next href=(href) { "Next →" } }
                }
            }
            section #queue-scan {
                h2 { "Queue a scan" }
                form #queue-form method="post" action=(ctx.url("/queue")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Application id " input type="number" name="applicationId" min="1" value="1" required; }
                    label { "Scanner "
                        select name="scannerType" {
                            @for s in p.scanners.iter() { option value=(s.name) { (s.name) } }
                        }
                    }
                    label { "Target URL " input type="url" name="targetURL" placeholder="https://app.example/"; }
                    button type="submit" { "Queue scan" }
                }
            }
            section #agents {
                h2 { "Scan agents (" span #agent-total { (p.agent_total) } ")" }
                (agent_rows(ctx, p.agents, p.now_ms))
                @if p.agent_total > p.agents.len() { p { "Showing the first " (p.agents.len()) "." } }
            }
        },
    )
}

/// A bulk action's confirmation.
pub(crate) struct Bulk<'a> {
    pub(crate) retry: bool,
    pub(crate) ids: &'a [scan_queue::TaskId],
    /// More would match than one action changes.
    pub(crate) cut: bool,
    /// The filters, the action and the newest id, as hidden fields.
    pub(crate) fields: &'a [(String, String)],
}

pub(crate) fn confirm_bulk(ctx: Ctx<'_>, b: &Bulk<'_>) -> Markup {
    let n = b.ids.len();
    let (question, button) = if b.retry {
        (
            format!("Retry {n} task(s)?"),
            format!("Yes, retry {n} task(s)"),
        )
    } else {
        (
            format!("Cancel {n} task(s)?"),
            format!("Yes, cancel {n} task(s)"),
        )
    };
    let mut back = form_urlencoded::Serializer::new(String::new());
    for (k, v) in b
        .fields
        .iter()
        .filter(|(k, _)| k != "action" && k != "upto")
    {
        back.append_pair(k, v);
    }
    layout(
        ctx,
        "Confirm",
        None,
        html! {
            form #confirm.card method="post" action=(ctx.url("/bulk")) {
                h2 { (question) }
                p { "Tasks: " @for t in b.ids.iter().take(30) { (t.0) " " } @if n > 30 { "…" } }
                @if b.cut { p { "Only the newest " (n) " of the matching tasks; repeat for the rest." } }
                @if b.retry {
                    p { "Each is queued again as a new task with the same application, scanner, URL and scan config." }
                }
                @for (k, v) in b.fields { input type="hidden" name=(k) value=(v); }
                input type="hidden" name="csrf" value=(ctx.csrf.unwrap_or_default());
                button #confirm-button.danger type="submit" disabled[n == 0] { (button) }
                " " a href=(format!("{}?{}", ctx.url(""), back.finish())) { "Back" }
            }
        },
    )
}

/// One task and its whole status history.
pub(crate) fn detail(ctx: Ctx<'_>, d: &Detail, now_ms: u64, flash: Option<String>) -> Markup {
    let r = &d.row;
    let entry = |(id, at, message): &(u64, u64, String)| {
        html! {
            tr { td { (id) } td { (time(*at)) } td.msg { (message) } }
        }
    };
    layout(
        ctx,
        &format!("Task {}", r.id.0),
        Some(ctx.url(&format!("/task/{}/live.json", r.id.0))),
        html! {
            @if let Some(flash) = flash { p #flash.flash role="status" { (flash) } }
            (live_toggle())
            section #task {
                h2 { "Task " (r.id.0) " " span #task-status class={ "badge s-" (r.status.name()) } { (r.status.name()) } }
                dl {
                    dt { "Application" } dd { (r.application) }
                    dt { "Scanner" } dd #task-scanner { (r.scanner) }
                    dt { "Target URL" } dd #task-url { (r.target_url.as_deref().unwrap_or("")) }
                    dt { "In status" } dd #task-since title=(time(r.since_ms)) { (duration(r.since_ms, now_ms)) }
                    dt { "Attempts" } dd #task-attempts { (r.attempts) }
                    dt { "Created" } dd { (time(r.create_ms)) }
                    dt { "Started" } dd #task-started { (opt_time(r.start_ms)) }
                    dt { "Ended" } dd #task-ended { (opt_time(r.end_ms)) }
                    dt { "Reason" } dd #task-reason { (r.reason.as_deref().unwrap_or("")) }
                    dt { "Times out" } dd { (time(d.timeout_ms)) }
                    @if let Some(lease) = d.lease_until_ms { dt { "Lease until" } dd { (time(lease)) } }
                    @if let Some(c) = d.scan_config { dt { "Scan config" } dd { (c) } }
                    dt { "Agent" } dd #task-agent title=[r.agent.map(|a| a.to_string())] { (agent_label(r.agent_name.as_deref(), r.agent)) }
                    @if let Some(of) = r.retry_of {
                        dt { "Retry of" } dd { a #retry-of href=(ctx.url(&format!("/task/{}", of.0))) { "task " (of.0) } }
                    }
                    @if let Some(as_) = r.retried_as {
                        dt { "Retried as" } dd { a #retried-as href=(ctx.url(&format!("/task/{}", as_.0))) { "task " (as_.0) } }
                    }
                }
                p.actions {
                    @if !r.status.is_terminal() {
                        a #cancel href=(ctx.url(&format!("/task/{}/cancel", r.id.0))) { "Cancel task…" } " "
                    }
                    @if let (Some(agent), true) = (r.agent, r.status.is_active()) {
                        a #revoke href=(ctx.url(&format!("/agent/{agent}/revoke"))) { "Revoke its agent…" }
                    }
                }
                p #task-stale.note role="status" {}
                @if crate::ops::retryable(r.status) && r.retried_as.is_none() {
                    form #retry-form method="post" action=(ctx.url(&format!("/task/{}/retry", r.id.0))) {
                        input type="hidden" name="csrf" value=(ctx.csrf.unwrap_or_default());
                        button #retry type="submit" { "Retry: queue this scan again" }
                    }
                }
            }
            @if let Some(result) = &d.result {
                section #result {
                    h2 { "Result" }
                    dl {
                        dt { "File" } dd #result-name { (result.file_name.as_deref().unwrap_or("(no name)")) }
                        dt { "Size" } dd #result-size { (result.size) " bytes" }
                        dt { "SHA-256" } dd #result-sha256 .hash { (result.sha256) }
                        dt { "Received" } dd { (time(result.received_ms)) }
                        @if let Some(kind) = &result.report { dt { "Report" } dd #result-report { (kind) } }
                        @if let Some(f) = result.findings {
                            dt { "Findings" }
                            dd #result-findings {
                                (f.high) " high, " (f.medium) " medium, " (f.low) " low, " (f.informational) " informational"
                            }
                        }
                    }
                    p.actions {
                        a #download href=(ctx.url(&format!("/task/{}/result", r.id.0))) download { "Download the result" }
                    }
                }
            }
            section #history {
                h2 { "Status messages" }
                table #messages {
                    thead { tr { th { "#" } th { "Time" } th { "Message" } } }
                    tbody {
                        @for e in &d.head { (entry(e)) }
                        @if d.elided > 0 {
                            tr.elided { td colspan="3" { "… " (d.elided) " message(s) not kept …" } }
                        }
                        @for e in &d.history { (entry(e)) }
                    }
                }
            }
        },
    )
}

/// Asks before an admin action; the POST carries the CSRF token.
pub(crate) fn confirm(
    ctx: Ctx<'_>,
    question: &str,
    details: Markup,
    action: &str,
    button: &str,
    back: &str,
) -> Markup {
    layout(
        ctx,
        "Confirm",
        None,
        html! {
            form #confirm.card method="post" action=(action) {
                h2 { (question) }
                (details)
                input type="hidden" name="csrf" value=(ctx.csrf.unwrap_or_default());
                button #confirm-button.danger type="submit" { (button) }
                " " a href=(back) { "Back" }
            }
        },
    )
}

/// A refusal or an error, with a way back.
pub(crate) fn message(ctx: Ctx<'_>, title: &str, text: &str) -> Markup {
    layout(
        ctx,
        title,
        None,
        html! {
            div.card {
                h2 { (title) }
                p #message.error { (text) }
                p { a href=(ctx.url("")) { "Back to the tasks" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_475_094_356_000), "2016-09-28 20:25:56Z");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert!(time(u64::MAX).len() > 10);
    }

    #[test]
    fn untrusted_text_is_escaped() {
        let ctx = Ctx {
            prefix: "",
            csrf: Some("t"),
        };
        let out = message(ctx, "x", "<script>alert(1)</script>\"><img onerror=x>").into_string();
        assert!(!out.contains("<script>alert"));
        assert!(!out.contains("<img"));
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img onerror=x&gt;")
        );
    }
}
