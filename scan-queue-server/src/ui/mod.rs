//! The Scan Agent Tasks page (`/tasks`, and `/threadfix/tasks`): tasks newest first with
//! filters and paging, a task's status history, live counts and a queue-depth chart, and the
//! administrator's actions (queue a scan, cancel a task, revoke an agent).
//!
//! Access: a login form takes the API key (in a POST body, never a URL) and sets a session
//! cookie (`Secure; HttpOnly; SameSite=Strict`); every POST must carry the session's CSRF
//! token. Every page has a strict Content-Security-Policy; everything an agent sent is
//! rendered escaped by the templates (`view.rs`).

pub(crate) mod listing;
mod live;
mod scrape;
mod view;

pub(crate) use view::time;

use crate::app::App;
use crate::http::params::{Params, ParseLimits};
use crate::ops::{self, OpError};
use crate::sessions::{self as session, Session};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY,
    RETRY_AFTER, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use listing::{Detail, Filter, Key, Sort};
use maud::{Markup, html};
use scan_queue::{AgentId, ApplicationId, ScanConfigId, TaskId, TaskStatus};
use std::sync::Arc;
use view::Ctx;

/// The page's policy: only its own static script, style and JSON; no inline script or
/// style, no plugins, no framing, forms only to itself.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The largest form body the page accepts.
const FORM_BYTES: usize = 16 * 1024;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Adds the page's routes, under `/tasks` and `/threadfix/tasks`, and `/metrics` under
/// both prefixes.
pub(crate) fn routes(mut router: axum::Router<Arc<App>>) -> axum::Router<Arc<App>> {
    for prefix in ["", "/threadfix"] {
        router = router
            .route(&format!("{prefix}/tasks"), get(list))
            .route(
                &format!("{prefix}/tasks/login"),
                get(login_form).post(login),
            )
            .route(&format!("{prefix}/tasks/logout"), post(logout))
            .route(&format!("{prefix}/tasks/summary"), get(summary))
            .route(&format!("{prefix}/tasks/live.json"), get(live::list))
            .route(
                &format!("{prefix}/tasks/task/{{id}}/live.json"),
                get(live::task),
            )
            .route(&format!("{prefix}/tasks/task/{{id}}/retry"), post(retry))
            .route(
                &format!("{prefix}/tasks/bulk"),
                get(confirm_bulk).post(bulk),
            )
            .route(&format!("{prefix}/tasks/static/{{file}}"), get(asset))
            .route(&format!("{prefix}/tasks/queue"), post(queue_scan))
            .route(&format!("{prefix}/tasks/task/{{id}}"), get(detail))
            .route(
                &format!("{prefix}/tasks/task/{{id}}/result"),
                get(download_result),
            )
            .route(
                &format!("{prefix}/tasks/task/{{id}}/cancel"),
                get(confirm_cancel).post(cancel),
            )
            .route(
                &format!("{prefix}/tasks/agent/{{agent}}/revoke"),
                get(confirm_revoke).post(revoke),
            )
            .route(&format!("{prefix}/metrics"), get(scrape::scrape));
    }
    // The server's root leads to the page.
    for (from, to) in [
        ("/", "/tasks"),
        ("/threadfix", "/threadfix/tasks"),
        ("/threadfix/", "/threadfix/tasks"),
    ] {
        router = router.route(from, get(move || async move { redirect(to, "root") }));
    }
    router
}

/// `""` or `"/threadfix"`: where the page was reached, so its links stay there.
fn prefix(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/threadfix/") {
        "/threadfix"
    } else {
        ""
    }
}

/// Headers every page response carries.
fn harden(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn tagged(mut response: Response, endpoint: &'static str, outcome: &'static str) -> Response {
    harden(&mut response);
    crate::http::tagged(response, endpoint, outcome)
}

fn page(
    status: StatusCode,
    markup: Markup,
    endpoint: &'static str,
    outcome: &'static str,
) -> Response {
    let response = (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    tagged(response, endpoint, outcome)
}

fn redirect(to: &str, endpoint: &'static str) -> Response {
    let response = (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response();
    tagged(response, endpoint, "ok")
}

/// The request's session, if its cookie names a live one.
pub(crate) fn session(app: &App, headers: &HeaderMap) -> Option<Session> {
    let cookie = headers.get(COOKIE).and_then(|v| v.to_str().ok());
    app.sessions.find(cookie, app.clock.now_ms())
}

/// The message of a refused action.
fn op_message(error: OpError) -> String {
    crate::http::Failure::from(error).message
}

/// No session: a page sends the browser to the login form; anything else is refused.
fn unauthenticated(app: &App, prefix: &str, endpoint: &'static str, to_login: bool) -> Response {
    app.metrics.record_api_key_rejection();
    if to_login {
        let response = (
            StatusCode::SEE_OTHER,
            [(LOCATION, format!("{prefix}/tasks/login"))],
        )
            .into_response();
        return tagged(response, endpoint, "unauthenticated");
    }
    let ctx = Ctx { prefix, csrf: None };
    page(
        StatusCode::UNAUTHORIZED,
        view::message(ctx, "Not logged in", "Log in with the API key first."),
        endpoint,
        "unauthenticated",
    )
}

/// Whether the browser says the request comes from another site (`Sec-Fetch-Site`), on top
/// of the CSRF token: it also protects the login form, which has no session yet.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

fn cross_site_refused(prefix: &str, endpoint: &'static str) -> Response {
    let ctx = Ctx { prefix, csrf: None };
    page(
        StatusCode::FORBIDDEN,
        view::message(
            ctx,
            "Refused",
            "This form was sent from another site (CSRF).",
        ),
        endpoint,
        "csrf_refused",
    )
}

/// A POST's form, after the session and its CSRF token are checked.
async fn checked_form(
    app: &App,
    request: Request,
    endpoint: &'static str,
) -> Result<(Session, Params, &'static str), Response> {
    let prefix = prefix(request.uri());
    if cross_site(request.headers()) {
        return Err(cross_site_refused(prefix, endpoint));
    }
    let Some(session) = session(app, request.headers()) else {
        return Err(unauthenticated(app, prefix, endpoint, false));
    };
    let params = read_form(request).await.map_err(|_| {
        let ctx = Ctx {
            prefix,
            csrf: Some(&session.csrf),
        };
        page(
            StatusCode::BAD_REQUEST,
            view::message(ctx, "Bad form", "The form could not be read."),
            endpoint,
            "refused",
        )
    })?;
    if !params.get("csrf").is_some_and(|t| session.csrf_matches(t)) {
        let ctx = Ctx {
            prefix,
            csrf: Some(&session.csrf),
        };
        return Err(page(
            StatusCode::FORBIDDEN,
            view::message(
                ctx,
                "Refused",
                "This form did not come from this page (CSRF token missing or wrong). Reload the page and try again.",
            ),
            endpoint,
            "csrf_refused",
        ));
    }
    Ok((session, params, prefix))
}

async fn read_form(request: Request) -> Result<Params, ()> {
    let bytes = axum::body::to_bytes(request.into_body(), FORM_BYTES)
        .await
        .map_err(|_| ())?;
    let mut params = Params::default();
    let limits = ParseLimits {
        field_bytes: FORM_BYTES,
        form_bytes: FORM_BYTES,
    };
    params.add_form(&bytes, limits).map_err(|_| ())?;
    Ok(params)
}

async fn login_form(uri: Uri) -> Response {
    let ctx = Ctx {
        prefix: prefix(&uri),
        csrf: None,
    };
    page(StatusCode::OK, view::login(ctx, false), "login", "ok")
}

async fn login(State(app): State<Arc<App>>, request: Request) -> Response {
    let prefix = prefix(request.uri());
    if cross_site(request.headers()) {
        return cross_site_refused(prefix, "login");
    }
    let peer = crate::edge::peer(request.extensions());
    let refused = |status, ctx: Ctx<'_>, retry_after: Option<u64>| {
        let mut response = page(status, view::login(ctx, true), "login", "unauthenticated");
        if let Some(secs) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        response
    };
    if let Err(throttled) = app.auth_blocked(peer) {
        let ctx = Ctx { prefix, csrf: None };
        return refused(throttled.status, ctx, throttled.retry_after_secs);
    }
    let params = read_form(request).await.unwrap_or_default();
    let now_ms = app.clock.now_ms();
    let key_ok = params
        .get("api_key")
        .is_some_and(|k| app.api_keys.matches(k.trim(), now_ms));
    if !key_ok {
        let failure = app.auth_failed(peer, "login");
        let status = match failure.status {
            StatusCode::OK => StatusCode::UNAUTHORIZED,
            other => other,
        };
        let ctx = Ctx { prefix, csrf: None };
        return refused(status, ctx, failure.retry_after_secs);
    }
    let Some(session) = app.sessions.create(now_ms, peer) else {
        tracing::warn!("page login refused: the server holds as many sessions as it keeps");
        let ctx = Ctx { prefix, csrf: None };
        return refused(StatusCode::SERVICE_UNAVAILABLE, ctx, Some(60));
    };
    let client = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    tracing::info!(%client, "page login");
    let mut response = redirect(&format!("{prefix}/tasks"), "login");
    if let Ok(cookie) = HeaderValue::from_str(&session.cookie()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(app): State<Arc<App>>, request: Request) -> Response {
    let (session, _, prefix) = match checked_form(&app, request, "logout").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    app.sessions.remove(&session);
    let mut response = redirect(&format!("{prefix}/tasks/login"), "logout");
    if let Ok(cookie) = HeaderValue::from_str(&session::expired_cookie()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => {
            let r = (StatusCode::NOT_FOUND, "not found").into_response();
            return tagged(r, "static", "not_found");
        }
    };
    let mut response = tagged(
        ([(CONTENT_TYPE, content_type)], body).into_response(),
        "static",
        "ok",
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Query parameters, leniently (an unknown status or scanner means "all").
fn query(uri: &Uri) -> Vec<(String, String)> {
    pairs(uri.query().unwrap_or("").as_bytes())
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .take(16)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The confirmation text for a finished action: fixed strings and numbers only, never text
/// from the request.
fn flash(q: &[(String, String)]) -> Option<String> {
    let n = query_get(q, "n").and_then(|n| n.parse::<u64>().ok());
    let id = query_get(q, "id").and_then(|n| n.parse::<u64>().ok());
    match (query_get(q, "done")?, n, id) {
        ("cancelled", _, Some(id)) => Some(format!("Task {id} cancelled.")),
        ("queued", _, Some(id)) => Some(format!("Task {id} queued.")),
        ("revoked", Some(n), _) => Some(format!(
            "Scan agent revoked; {n} task(s) it held returned to the queue."
        )),
        ("retried", _, Some(id)) => {
            let of = query_get(q, "of").and_then(|n| n.parse::<u64>().ok())?;
            Some(format!("Task {id} queued: a retry of task {of}."))
        }
        ("bulk_cancel", Some(n), _) => Some(format!("{n} task(s) cancelled.")),
        ("bulk_retry", Some(n), _) => Some(format!("{n} task(s) queued again.")),
        _ => None,
    }
}

/// The listing's filters, order and position from query (or form) parameters.
fn parse_filter(app: &App, q: &[(String, String)]) -> Filter {
    let text = |name| {
        query_get(q, name)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.chars().take(listing::SEARCH_BYTES).collect::<String>())
    };
    let sort = query_get(q, "sort")
        .and_then(Sort::parse)
        .unwrap_or_default();
    Filter {
        status: query_get(q, "status")
            .and_then(|s| TaskStatus::ALL.into_iter().find(|t| t.name() == s)),
        scanner: query_get(q, "scanner")
            .and_then(|s| app.scanners.resolve(s))
            .map(|s| s.name.clone()),
        application: query_get(q, "application")
            .and_then(|a| a.trim().parse().ok())
            .filter(|a| *a > 0),
        url: text("url"),
        agent: text("agent"),
        sort,
        from: query_get(q, "from").and_then(|k| Key::decode(sort, k)),
        to: query_get(q, "to").and_then(|k| Key::decode(sort, k)),
    }
}

async fn list(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let prefix = prefix(&uri);
    let Some(session) = session(&app, &headers) else {
        return unauthenticated(&app, prefix, "tasks_page", true);
    };
    let q = query(&uri);
    let filter = parse_filter(&app, &q);
    let now_ms = app.clock.now_ms();
    let (listing, stats, (agents, agent_total, live_agents)) = app.read(|s| {
        (
            listing::page(s, &filter),
            s.queue.stats(),
            listing::agents(s, &app.presence, now_ms),
        )
    });
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let markup = view::list(
        ctx,
        &view::ListPage {
            filter: &filter,
            listing: &listing,
            stats: &stats,
            agents: &agents,
            agent_total,
            live_agents,
            now_ms,
            scanners: &app.scanners,
            flash: flash(&q),
        },
    );
    page(StatusCode::OK, markup, "tasks_page", "ok")
}

fn parse_task_id(raw: &str) -> Option<TaskId> {
    raw.parse::<u64>().ok().filter(|&id| id > 0).map(TaskId)
}

/// The task a path segment names, with its result, copied out under a brief lock, if it
/// exists.
fn task_detail(app: &App, raw_id: &str) -> Option<Detail> {
    let id = parse_task_id(raw_id)?;
    app.read(|s| {
        s.queue
            .task(id)
            .map(|t| Detail::new(s, t, s.result(id).map(|r| &**r)))
    })
}

/// A task's result file, for a logged-in operator (the API's download, behind the session).
async fn download_result(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    if session(&app, &headers).is_none() {
        return unauthenticated(&app, prefix(request.uri()), "task_result", false);
    }
    let mut response = crate::http::serve_result(&app, request, "task_result").await;
    harden(&mut response);
    response
}

fn not_found(ctx: Ctx<'_>, endpoint: &'static str, what: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        view::message(ctx, "Not found", what),
        endpoint,
        "not_found",
    )
}

async fn detail(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let prefix = prefix(&uri);
    let Some(session) = session(&app, &headers) else {
        return unauthenticated(&app, prefix, "task_page", true);
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    match task_detail(&app, &id) {
        Some(d) => page(
            StatusCode::OK,
            view::detail(ctx, &d, app.clock.now_ms(), flash(&query(&uri))),
            "task_page",
            "ok",
        ),
        None => not_found(
            ctx,
            "task_page",
            "No such task (it may have been evicted after finishing).",
        ),
    }
}

async fn confirm_cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let prefix = prefix(&uri);
    let Some(session) = session(&app, &headers) else {
        return unauthenticated(&app, prefix, "cancel", true);
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let Some(d) = task_detail(&app, &id) else {
        return not_found(ctx, "cancel", "No such task.");
    };
    let r = &d.row;
    let details = html! {
        p { (r.scanner) " on " (r.target_url.as_deref().unwrap_or("(no target URL)")) ", " (r.status.name()) "." }
    };
    let back = format!("{prefix}/tasks/task/{}", r.id.0);
    let markup = view::confirm(
        ctx,
        &format!("Cancel task {}?", r.id.0),
        details,
        &format!("{prefix}/tasks/task/{}/cancel", r.id.0),
        &format!("Yes, cancel task {}", r.id.0),
        &back,
    );
    page(StatusCode::OK, markup, "cancel", "ok")
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>, request: Request) -> Response {
    let (session, _, prefix) = match checked_form(&app, request, "cancel").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let Some(id) = parse_task_id(&id) else {
        return not_found(ctx, "cancel", "No such task.");
    };
    match ops::cancel_task(&app, id).await {
        Ok(()) => {
            tracing::info!(task = id.0, "task cancelled from the page");
            redirect(
                &format!("{prefix}/tasks/task/{}?done=cancelled&id={}", id.0, id.0),
                "cancel",
            )
        }
        Err(e) => page(
            StatusCode::CONFLICT,
            view::message(ctx, "Not cancelled", &op_message(e)),
            "cancel",
            "refused",
        ),
    }
}

fn parse_agent(raw: &str) -> Option<AgentId> {
    raw.parse::<uuid::Uuid>().ok().map(AgentId)
}

async fn confirm_revoke(
    State(app): State<Arc<App>>,
    Path(agent): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let prefix = prefix(&uri);
    let Some(session) = session(&app, &headers) else {
        return unauthenticated(&app, prefix, "revoke", true);
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let held = parse_agent(&agent).and_then(|a| {
        app.read(|s| {
            s.queue
                .agent_tasks(a)
                .map(|t| (a, t.take(100).collect::<Vec<_>>()))
        })
    });
    let Some((agent, tasks)) = held else {
        return not_found(
            ctx,
            "revoke",
            "No such scan agent (it may have been revoked already).",
        );
    };
    let details = html! {
        p { "Its key stops working at once. Tasks it holds go back to the queue: "
            @if tasks.is_empty() { "none." }
            @for t in &tasks { (t.0) " " }
        }
    };
    let markup = view::confirm(
        ctx,
        &format!("Revoke scan agent {agent}?"),
        details,
        &format!("{prefix}/tasks/agent/{agent}/revoke"),
        "Yes, revoke this agent",
        &format!("{prefix}/tasks"),
    );
    page(StatusCode::OK, markup, "revoke", "ok")
}

async fn revoke(
    State(app): State<Arc<App>>,
    Path(agent): Path<String>,
    request: Request,
) -> Response {
    let (session, _, prefix) = match checked_form(&app, request, "revoke").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let Some(agent) = parse_agent(&agent) else {
        return not_found(ctx, "revoke", "No such scan agent.");
    };
    match ops::revoke_agent(&app, agent).await {
        Ok(requeued) => {
            tracing::info!(agent = %agent, requeued, "scan agent revoked from the page");
            redirect(
                &format!("{prefix}/tasks?done=revoked&n={requeued}"),
                "revoke",
            )
        }
        Err(e) => page(
            StatusCode::CONFLICT,
            view::message(ctx, "Not revoked", &op_message(e)),
            "revoke",
            "refused",
        ),
    }
}

async fn queue_scan(State(app): State<Arc<App>>, request: Request) -> Response {
    let (session, params, prefix) = match checked_form(&app, request, "queue_scan").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let refused = |message: String| {
        page(
            StatusCode::BAD_REQUEST,
            view::message(ctx, "Not queued", &message),
            "queue_scan",
            "refused",
        )
    };
    let application = match params.positive_int("applicationId") {
        Ok(a) => ApplicationId(a),
        Err(f) => return refused(f.message),
    };
    let scanner_type = params.optional("scannerType").unwrap_or("");
    let Some(scanner) = app.scanners.resolve(scanner_type) else {
        return refused(crate::wire::bad_scanner(false, scanner_type));
    };
    let scan_config = match params.optional_positive_int("scanConfigId") {
        Ok(id) => id.map(ScanConfigId),
        Err(f) => return refused(f.message),
    };
    let target_url = params.optional("targetURL");
    match ops::queue_scan(&app, application, scanner, target_url, scan_config).await {
        Ok(answer) => redirect(
            &format!("{prefix}/tasks?done=queued&id={}", answer.task.id().0),
            "queue_scan",
        ),
        Err(e) => refused(op_message(e)),
    }
}

/// Counts per status, registered agents, and the depth chart's points (`live.json` has
/// these and more; this stays for scripts that read it).
async fn summary(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    if session(&app, &headers).is_none() {
        return unauthenticated(&app, prefix(&uri), "summary", false);
    }
    let now_ms = app.clock.now_ms();
    let stats = app.read(|s| s.queue.stats());
    app.metrics.sample(now_ms, &stats);
    let counts: serde_json::Map<String, serde_json::Value> = TaskStatus::ALL
        .into_iter()
        .map(|s| (s.name().to_owned(), stats.count(s).into()))
        .collect();
    let body = serde_json::json!({
        "counts": counts,
        "agents": stats.agents,
        "now": now_ms,
        "depth": app.metrics.depth_history(now_ms),
    });
    let response = (
        [(CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response();
    tagged(response, "summary", "ok")
}

async fn retry(State(app): State<Arc<App>>, Path(id): Path<String>, request: Request) -> Response {
    let (session, _, prefix) = match checked_form(&app, request, "retry").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let Some(id) = parse_task_id(&id) else {
        return not_found(ctx, "retry", "No such task.");
    };
    match ops::retry_task(&app, id).await {
        Ok(new) => redirect(
            &format!(
                "{prefix}/tasks/task/{}?done=retried&id={}&of={}",
                new.0, new.0, id.0
            ),
            "retry",
        ),
        Err(e) => page(
            StatusCode::CONFLICT,
            view::message(ctx, "Not retried", &op_message(e)),
            "retry",
            "refused",
        ),
    }
}

/// A bulk action's name, and which statuses it applies to.
fn bulk_action(q: &[(String, String)]) -> Option<(bool, &'static str)> {
    match query_get(q, "action")? {
        "cancel" => Some((false, "cancel")),
        "retry" => Some((true, "retry")),
        _ => None,
    }
}

fn eligible(retry: bool) -> fn(TaskStatus) -> bool {
    if retry {
        ops::retryable
    } else {
        |s: TaskStatus| !s.is_terminal()
    }
}

/// Asks once before a bulk action over the filtered selection, saying how many tasks it
/// applies to; the form carries the filters and the newest id, so that tasks queued after
/// this page are not included.
async fn confirm_bulk(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let prefix = prefix(&uri);
    let Some(session) = session(&app, &headers) else {
        return unauthenticated(&app, prefix, "bulk", true);
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let q = query(&uri);
    let Some((retry, action)) = bulk_action(&q) else {
        return not_found(ctx, "bulk", "No such action.");
    };
    let filter = parse_filter(&app, &q);
    let (ids, cut, upto) = app.read(|s| {
        let upto = TaskStatus::ALL
            .into_iter()
            .filter_map(|st| s.queue.tasks_with_status(st).next_back())
            .map(|t| t.id().0)
            .max()
            .unwrap_or(0);
        let (ids, cut) = listing::selection(s, &filter, upto, eligible(retry));
        (ids, cut, upto)
    });
    let mut fields = filter.query();
    fields.append_pair("action", action);
    fields.append_pair("upto", &upto.to_string());
    let markup = view::confirm_bulk(
        ctx,
        &view::Bulk {
            retry,
            ids: &ids,
            cut,
            fields: &pairs(fields.finish().as_bytes()),
        },
    );
    page(StatusCode::OK, markup, "bulk", "ok")
}

async fn bulk(State(app): State<Arc<App>>, request: Request) -> Response {
    let (session, params, prefix) = match checked_form(&app, request, "bulk").await {
        Ok(ok) => ok,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        prefix,
        csrf: Some(&session.csrf),
    };
    let q: Vec<(String, String)> = [
        "status",
        "scanner",
        "application",
        "url",
        "agent",
        "action",
        "upto",
    ]
    .into_iter()
    .filter_map(|k| params.get(k).map(|v| (k.to_owned(), v.to_owned())))
    .collect();
    let Some((retry, action)) = bulk_action(&q) else {
        return not_found(ctx, "bulk", "No such action.");
    };
    let Some(upto) = query_get(&q, "upto").and_then(|u| u.parse::<u64>().ok()) else {
        return not_found(ctx, "bulk", "No selection.");
    };
    let filter = parse_filter(&app, &q);
    let (ids, _) = app.read(|s| listing::selection(s, &filter, upto, eligible(retry)));
    match ops::bulk(&app, &ids, retry).await {
        Ok(done) => {
            tracing::info!(
                action,
                selected = ids.len(),
                done = done.done,
                skipped = done.skipped,
                "bulk action from the page"
            );
            // Back to the same selection, with the outcome.
            let mut back = filter.query();
            back.append_pair("done", &format!("bulk_{action}"));
            back.append_pair("n", &done.done.to_string());
            redirect(&format!("{prefix}/tasks?{}", back.finish()), "bulk")
        }
        Err(e) => page(
            StatusCode::CONFLICT,
            view::message(ctx, "Not done", &op_message(e)),
            "bulk",
            "refused",
        ),
    }
}
