//! The console's HTTP side: sessions, CSRF tokens, login limits, security headers and the
//! screens. Actions go through `approvals::operator`, the code the command line uses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::html::{Escaped, csrf_field, page};
use super::{Plan, Role};
use crate::approvals::{Approvals, Mode};
use crate::audit::AuditLog;
use crate::shutdown::Shutdown;
use crate::state::StateStore;

const COOKIE: &str = "palisade_session";
/// Failed logins allowed per client address and per user name within [`FAILURE_WINDOW`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// No inline script or style, nothing from elsewhere, no framing, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Session {
    operator: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

struct Console {
    plan: Plan,
    state: StateStore,
    audit: Arc<AuditLog>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Who is logged in, as a handler sees them.
struct Who {
    name: String,
    role: Role,
    csrf: String,
}

type Shared = Arc<Console>;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked mid-update leaves maps that are still valid.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Binds `plan.listen` and serves the console until `shutdown`; returns the bound address.
pub async fn serve(
    plan: Plan,
    state: StateStore,
    audit: Arc<AuditLog>,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(plan.listen).await?;
    let bound = listener.local_addr()?;
    let console = Arc::new(Console {
        plan,
        state,
        audit,
        sessions: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let app = router(console);
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await;
        if let Err(err) = served {
            tracing::error!("the console stopped: {err}");
        }
    });
    Ok(bound)
}

fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { see_other("/alerts") }))
        .route("/static/console.css", get(stylesheet))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/alerts", get(alerts))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}", post(decide))
        .route("/engine", get(engine))
        .route("/engine/mode", post(switch_mode))
        .fallback(|| async { html(StatusCode::NOT_FOUND, page("Not found", None, "")) })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn refused(status: StatusCode, who: Option<&Who>, why: &str) -> Response {
    let nav = who.map(|w| (w.name.as_str(), w.role.as_str(), w.csrf.as_str()));
    html(
        status,
        page(
            "Refused",
            nav,
            &format!("<p class=\"error\">{}</p>", Escaped(why)),
        ),
    )
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        super::html::STYLESHEET,
    )
        .into_response()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

impl Console {
    /// The session the request's cookie names, if it has not expired.
    fn who(&self, headers: &HeaderMap) -> Option<Who> {
        let token = cookie(headers)?;
        let mut sessions = locked(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.get(&token).map(|s| Who {
            name: s.operator.clone(),
            role: s.role,
            csrf: s.csrf.clone(),
        })
    }

    /// Whether `key` has failed too often lately (old failures are forgotten here).
    fn limited(&self, key: &str) -> bool {
        let mut failures = locked(&self.failures);
        let now = Instant::now();
        // Looked up, never inserted: a name tried once leaves nothing behind.
        let Some(recent) = failures.get_mut(key) else {
            return false;
        };
        recent.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
        let limited = recent.len() >= MAX_FAILURES;
        if recent.is_empty() {
            failures.remove(key);
        }
        limited
    }

    fn failed(&self, keys: &[&str]) {
        let mut failures = locked(&self.failures);
        for key in keys {
            failures
                .entry((*key).to_string())
                .or_default()
                .push(Instant::now());
        }
    }
}

/// A logged-in operator whose form carries their session's CSRF token, or the response that
/// refuses the request.
fn checked_post(
    console: &Console,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
) -> Result<Who, Box<Response>> {
    let Some(who) = console.who(headers) else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            None,
            "log in first",
        )));
    };
    let sent = fields.get("csrf").map(String::as_bytes).unwrap_or_default();
    if !super::password::constant_time_eq(sent, who.csrf.as_bytes()) {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            Some(&who),
            "the form's token is missing or wrong; reload the page and try again",
        )));
    }
    Ok(who)
}

fn login_form(message: &str) -> String {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\">{}</p>", Escaped(message))
    };
    page(
        "Log in",
        None,
        &format!(
            "{message}<form method=\"post\" action=\"/login\">\
<p><label>Name <input name=\"user\" autocomplete=\"username\" required></label></p>\
<p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
<p><button>Log in</button></p></form>"
        ),
    )
}

async fn login_page() -> Response {
    html(StatusCode::OK, login_form(""))
}

async fn login(
    State(console): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    let user = fields.get("user").cloned().unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    let by_address = format!("address:{}", client.ip());
    let by_user = format!("user:{user}");
    if console.limited(&by_address) || console.limited(&by_user) {
        let mut response = html(
            StatusCode::TOO_MANY_REQUESTS,
            login_form("too many failed logins; wait a quarter of an hour"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("900"));
        return response;
    }
    // An unknown name costs the same hashing as a known one, so timing does not tell names.
    let operator = console.plan.operators.get(&user).cloned();
    let credential = operator.as_ref().map(|o| o.credential.clone()).or_else(|| {
        console
            .plan
            .operators
            .values()
            .next()
            .map(|o| o.credential.clone())
    });
    let verified = match credential {
        Some(credential) => tokio::task::spawn_blocking(move || credential.verify(&password))
            .await
            .unwrap_or(false),
        None => false,
    };
    let Some(operator) = operator.clone().filter(|_| verified) else {
        // Names nobody has are not counted per name: the map stays as small as the operator
        // list plus the addresses that failed (those are limited per address anyway).
        if operator.is_some() {
            console.failed(&[&by_address, &by_user]);
        } else {
            console.failed(&[&by_address]);
        }
        tracing::warn!(client = %client.ip(), "a console login failed");
        return html(
            StatusCode::UNAUTHORIZED,
            login_form("wrong name or password"),
        );
    };
    let token = random_token();
    locked(&console.sessions).insert(
        token.clone(),
        Session {
            operator: operator.name.clone(),
            role: operator.role,
            csrf: random_token(),
            expires: Instant::now() + console.plan.session,
        },
    );
    // `Secure` is left off: this listener is plain HTTP (docs/console.md).
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        console.plan.session.as_secs()
    );
    let mut response = see_other("/alerts");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = checked_post(&console, &headers, &form(&body)) {
        return *response;
    }
    if let Some(token) = cookie(&headers) {
        locked(&console.sessions).remove(&token);
    }
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("palisade_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

fn nav(who: &Who) -> Option<(&str, &str, &str)> {
    Some((&who.name, who.role.as_str(), &who.csrf))
}

fn state_failed(who: &Who, err: &dyn std::fmt::Display) -> Response {
    tracing::error!("the console cannot read the state database: {err}");
    refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(who),
        "the state database could not be read; the engine's log says why",
    )
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AlertFilter {
    severity: String,
    rule: String,
    host: String,
    stage: String,
}

type DetectionRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
);

async fn alerts(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(filter): Query<AlertFilter>,
) -> Response {
    let Some(who) = console.who(&headers) else {
        return see_other("/login");
    };
    let rows: Result<Vec<DetectionRow>, _> = sqlx::query_as(
        "SELECT id, recorded_at, event_id, host, rule, stage, severity, title FROM detections \
WHERE (?1 = '' OR severity = ?1) AND (?2 = '' OR rule = ?2) AND (?3 = '' OR host = ?3) \
AND (?4 = '' OR stage = ?4) ORDER BY id DESC LIMIT 200",
    )
    .bind(&filter.severity)
    .bind(&filter.rule)
    .bind(&filter.host)
    .bind(&filter.stage)
    .fetch_all(console.state.pool())
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => return state_failed(&who, &err),
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/alerts\">\
<input name=\"severity\" placeholder=\"severity\" value=\"{}\"> \
<input name=\"rule\" placeholder=\"rule\" value=\"{}\"> \
<input name=\"host\" placeholder=\"host\" value=\"{}\"> \
<input name=\"stage\" placeholder=\"stage\" value=\"{}\"> <button>Filter</button></form>",
        Escaped(&filter.severity),
        Escaped(&filter.rule),
        Escaped(&filter.host),
        Escaped(&filter.stage)
    );
    if rows.is_empty() {
        body.push_str("<p class=\"note\">No detections match.</p>");
    } else {
        body.push_str("<table><thead><tr><th>#</th><th>Recorded</th><th>Severity</th><th>Rule</th><th>Title</th><th>Host</th><th>Stage</th><th>Event</th></tr></thead><tbody>");
        for (id, recorded, event, host, rule, stage, severity, title) in &rows {
            body.push_str(&format!(
                "<tr><td>{id}</td><td>{}</td><td class=\"sev-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Escaped(recorded),
                Escaped(severity),
                Escaped(severity),
                Escaped(rule),
                Escaped(title),
                Escaped(host.as_deref().unwrap_or("")),
                Escaped(stage),
                Escaped(event)
            ));
        }
        body.push_str("</tbody></table>");
    }
    html(StatusCode::OK, page("Alerts", nav(&who), &body))
}

fn countdown(ms: i64) -> String {
    if ms <= 0 {
        return "expired".into();
    }
    let secs = ms / 1000;
    format!("in {}m {:02}s", secs / 60, secs % 60)
}

async fn approvals(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let Some(who) = console.who(&headers) else {
        return see_other("/login");
    };
    let queue = Approvals::new(&console.state);
    if let Err(err) = queue.expire().await {
        return state_failed(&who, &err);
    }
    let pending = match queue.list(Some("pending")).await {
        Ok(rows) => rows,
        Err(err) => return state_failed(&who, &err),
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let mut body = String::new();
    if pending.is_empty() {
        body.push_str("<p class=\"note\">Nothing waits for approval.</p>");
    } else {
        body.push_str("<table><thead><tr><th>#</th><th>Step</th><th>Target</th><th>Triggered by</th><th>Waits because</th><th>Expires</th><th>Decision</th></tr></thead><tbody>");
        for a in &pending {
            let decision = if who.role >= Role::Responder {
                format!(
                    "<form method=\"post\" action=\"/approvals/{}\">{}\
<input name=\"reason\" placeholder=\"reason\" required> \
<button name=\"decision\" value=\"approve\">Approve</button> \
<button name=\"decision\" value=\"reject\">Reject</button></form>",
                    a.id,
                    csrf_field(&who.csrf)
                )
            } else {
                "<span class=\"note\">viewers cannot decide</span>".into()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{} ({} / {})</td><td>{}</td><td>rule {}, event {}</td><td>{}</td><td>{}</td><td>{decision}</td></tr>",
                a.id,
                Escaped(&a.action),
                Escaped(&a.playbook),
                Escaped(&a.step),
                Escaped(&a.target),
                Escaped(&a.rule),
                Escaped(&a.event_id),
                Escaped(&a.waits_because),
                countdown(a.expires_ms - now)
            ));
        }
        body.push_str("</tbody></table>");
    }
    html(StatusCode::OK, page("Approvals", nav(&who), &body))
}

async fn decide(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    let who = match checked_post(&console, &headers, &fields) {
        Ok(who) => who,
        Err(response) => return *response,
    };
    if who.role < Role::Responder {
        return refused(
            StatusCode::FORBIDDEN,
            Some(&who),
            "a viewer cannot approve or reject steps",
        );
    }
    let approve = match fields.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("reject") => false,
        _ => return refused(StatusCode::BAD_REQUEST, Some(&who), "approve or reject?"),
    };
    let reason = fields
        .get("reason")
        .map(String::as_str)
        .unwrap_or_default()
        .trim();
    if reason.is_empty() {
        return refused(StatusCode::BAD_REQUEST, Some(&who), "give a reason");
    }
    let by = format!("operator:{}", who.name);
    match crate::approvals::operator::decide(
        &console.state,
        &console.audit,
        id,
        approve,
        &by,
        Some(reason),
    )
    .await
    {
        Ok(Ok(_)) => see_other("/approvals"),
        Ok(Err(why)) => refused(StatusCode::CONFLICT, Some(&who), &why.to_string()),
        Err(err) => state_failed(&who, &err),
    }
}

fn since(ms: i64) -> String {
    if ms == 0 {
        return "the start".into();
    }
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn engine(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let Some(who) = console.who(&headers) else {
        return see_other("/login");
    };
    let mode = match Approvals::new(&console.state).mode().await {
        Ok(mode) => mode,
        Err(err) => return state_failed(&who, &err),
    };
    let mut body = format!(
        "<p>Mode: <strong>{}</strong> since {}, set by {}: {}</p>",
        mode.mode.as_str(),
        Escaped(&since(mode.since_ms)),
        Escaped(&mode.changed_by),
        Escaped(&mode.reason)
    );
    let other = match mode.mode {
        Mode::Auto => Mode::Manual,
        Mode::Manual => Mode::Auto,
    };
    let may = match other {
        Mode::Manual => who.role >= Role::Responder,
        Mode::Auto => who.role >= Role::Admin,
    };
    if may {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/engine/mode\">{}\
<input type=\"hidden\" name=\"mode\" value=\"{}\">\
<input name=\"reason\" placeholder=\"reason\" required> <button>Switch to {}</button></form>",
            csrf_field(&who.csrf),
            other.as_str(),
            other.as_str()
        ));
    }
    html(StatusCode::OK, page("Engine", nav(&who), &body))
}

async fn switch_mode(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    let who = match checked_post(&console, &headers, &fields) {
        Ok(who) => who,
        Err(response) => return *response,
    };
    let (mode, needs) = match fields.get("mode").map(String::as_str) {
        Some("manual") => (Mode::Manual, Role::Responder),
        Some("auto") => (Mode::Auto, Role::Admin),
        _ => return refused(StatusCode::BAD_REQUEST, Some(&who), "`auto` or `manual`?"),
    };
    if who.role < needs {
        return refused(
            StatusCode::FORBIDDEN,
            Some(&who),
            &format!(
                "switching to {} needs the {} role",
                mode.as_str(),
                needs.as_str()
            ),
        );
    }
    let reason = fields
        .get("reason")
        .map(String::as_str)
        .unwrap_or_default()
        .trim();
    if reason.is_empty() {
        return refused(StatusCode::BAD_REQUEST, Some(&who), "give a reason");
    }
    let by = format!("operator:{}", who.name);
    match crate::approvals::operator::set_mode(&console.state, &console.audit, mode, &by, reason)
        .await
    {
        Ok(()) => see_other("/engine"),
        Err(err) => state_failed(&who, &err),
    }
}
