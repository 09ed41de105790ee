//! The page's HTML, as maud templates: every interpolation is escaped, and no script is
//! inline (the page's one script is the static `app.js`; the Content-Security-Policy forbids
//! any other).

use super::listing::{AgentRow, Detail, Filter, Listing, Row};
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

fn layout(ctx: Ctx<'_>, title: &str, live: bool, body: Markup) -> Markup {
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
            body data-summary=[live.then(|| ctx.url("/summary"))] {
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
        false,
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

fn task_rows(ctx: Ctx<'_>, rows: &[Row]) -> Markup {
    html! {
        table #tasks {
            thead { tr {
                th { "Id" } th { "Application" } th { "Scanner" } th { "Target URL" } th { "Status" }
                th { "Attempts" } th { "Created" } th { "Started" } th { "Ended" } th { "Agent" }
            } }
            tbody {
                @for r in rows {
                    tr data-task-id=(r.id.0) {
                        td { a.task-link href=(ctx.url(&format!("/task/{}", r.id.0))) { (r.id.0) } }
                        td { (r.application) }
                        td.scanner { (r.scanner) }
                        td.url { (r.target_url.as_deref().unwrap_or("")) }
                        td.status {
                            span class={ "badge s-" (r.status.name()) } { (r.status.name()) }
                            @if let Some(f) = r.findings { " " (findings_badge(f)) }
                        }
                        td { (r.attempts) }
                        td { (time(r.create_ms)) }
                        td { (opt_time(r.start_ms)) }
                        td { (opt_time(r.end_ms)) }
                        td.agent { (r.agent.map(|a| a.to_string()).unwrap_or_default()) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="10" { "No tasks." } } }
            }
        }
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
fn counts(stats: &Stats) -> Markup {
    html! {
        section #counts {
            @for s in TaskStatus::ALL {
                div.count {
                    span.count-label { (s.name()) }
                    span.count-value data-count=(s.name()) { (stats.count(s)) }
                }
            }
            div.count {
                span.count-label { "LIVE AGENTS" }
                span.count-value data-count="AGENTS" { (stats.agents) }
            }
        }
        section #depth {
            h2 { "Queue depth, last hour " small #updated {} }
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
    pub(crate) scanners: &'a Scanners,
    /// A fixed text (never from the request) to confirm an action.
    pub(crate) flash: Option<String>,
}

pub(crate) fn list(ctx: Ctx<'_>, p: &ListPage<'_>) -> Markup {
    let csrf = ctx.csrf.unwrap_or_default();
    let older = p.listing.older.map(|id| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = p.filter.status {
            q.append_pair("status", s.name());
        }
        if let Some(s) = &p.filter.scanner {
            q.append_pair("scanner", s);
        }
        if let Some(a) = p.filter.application {
            q.append_pair("application", &a.to_string());
        }
        q.append_pair("before", &id.0.to_string());
        format!("{}?{}", ctx.url(""), q.finish())
    });
    layout(
        ctx,
        "Tasks",
        true,
        html! {
            @if let Some(flash) = &p.flash { p #flash.flash role="status" { (flash) } }
            (counts(p.stats))
            section #list {
                h2 { "Tasks" }
                form #filter method="get" action=(ctx.url("")) {
                    label { "Status " select name="status" { (status_options(p.filter.status)) } }
                    label { "Scanner "
                        select name="scanner" {
                            option value="" selected[p.filter.scanner.is_none()] { "All scanners" }
                            @for s in p.scanners.iter() {
                                option value=(s.name) selected[p.filter.scanner.as_deref() == Some(s.name.as_str())] { (s.name) }
                            }
                        }
                    }
                    label { "Application "
                        input type="number" name="application" min="1" placeholder="any"
                            value=[p.filter.application];
                    }
                    button type="submit" { "Filter" }
                }
                (task_rows(ctx, &p.listing.rows))
                nav.paging {
                    @if p.filter.before.is_some() { a #newest href=(ctx.url("")) { "← Newest" } " " }
                    @if p.listing.budget_spent {
                        span { "Examined " (super::listing::EXAMINE_MAX) " tasks without filling the page. " }
                    }
                    @if let Some(href) = older { a #older href=(href) { "Older →" } }
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
                h2 { "Scan agents (" (p.agent_total) ")" }
                table #agent-table {
                    thead { tr { th { "Agent" } th { "Registered" } th { "Holds" } th {} } }
                    tbody {
                        @for a in p.agents {
                            tr data-agent=(a.id) {
                                td.agent { (a.id) }
                                td { (opt_time(a.registered_ms)) }
                                td { @for t in &a.tasks { a href=(ctx.url(&format!("/task/{}", t.0))) { (t.0) } " " } }
                                td { a.revoke href=(ctx.url(&format!("/agent/{}/revoke", a.id))) { "Revoke…" } }
                            }
                        }
                        @if p.agents.is_empty() { tr { td colspan="4" { "No scan agents." } } }
                    }
                }
                @if p.agent_total > p.agents.len() { p { "Showing the first " (p.agents.len()) "." } }
            }
        },
    )
}

/// One task and its whole status history.
pub(crate) fn detail(ctx: Ctx<'_>, d: &Detail, flash: Option<String>) -> Markup {
    let r = &d.row;
    layout(
        ctx,
        &format!("Task {}", r.id.0),
        false,
        html! {
            @if let Some(flash) = flash { p #flash.flash role="status" { (flash) } }
            section #task {
                h2 { "Task " (r.id.0) " " span #task-status class={ "badge s-" (r.status.name()) } { (r.status.name()) } }
                dl {
                    dt { "Application" } dd { (r.application) }
                    dt { "Scanner" } dd #task-scanner { (r.scanner) }
                    dt { "Target URL" } dd #task-url { (r.target_url.as_deref().unwrap_or("")) }
                    dt { "Attempts" } dd { (r.attempts) }
                    dt { "Created" } dd { (time(r.create_ms)) }
                    dt { "Started" } dd { (opt_time(r.start_ms)) }
                    dt { "Ended" } dd { (opt_time(r.end_ms)) }
                    dt { "Times out" } dd { (time(d.timeout_ms)) }
                    @if let Some(lease) = d.lease_until_ms { dt { "Lease until" } dd { (time(lease)) } }
                    @if let Some(c) = d.scan_config { dt { "Scan config" } dd { (c) } }
                    dt { "Agent" } dd #task-agent { (r.agent.map(|a| a.to_string()).unwrap_or_default()) }
                }
                p.actions {
                    @if !r.status.is_terminal() {
                        a #cancel href=(ctx.url(&format!("/task/{}/cancel", r.id.0))) { "Cancel task…" } " "
                    }
                    @if let (Some(agent), true) = (r.agent, r.status.is_active()) {
                        a #revoke href=(ctx.url(&format!("/agent/{agent}/revoke"))) { "Revoke its agent…" }
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
                        @for (id, at, message) in &d.history {
                            tr { td { (id) } td { (time(*at)) } td.msg { (message) } }
                        }
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
        false,
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
        false,
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
