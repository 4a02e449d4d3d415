//! HTTP side: routing, request decoding (JSON / form / query, as PHP would see them), auth, the
//! response envelope and fault injection. Entity logic lives in `entities`.

use super::entities;
use super::faults::{FaultState, HTML_FATAL};
use super::store::Store;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// Larger bodies get a JSON error instead of being processed (the real server would try and then
/// run out of memory in its request logger, NOTES §9).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// PHP's max_input_vars: form variables beyond the 1000th are silently dropped (NOTES §9).
const MAX_INPUT_VARS: usize = 1000;

pub struct AppState {
    pub store: Store,
    pub login: String,
    pub apikey: String,
    pub faults: Mutex<FaultState>,
    /// The CRM's deal-number counter (`app_settings.dNum`, the "СДn" of deal titles): read and
    /// written without a lock, like the real one (throughput.md), so concurrent adds can share
    /// a number.
    pub deal_number: std::sync::atomic::AtomicI64,
    /// See [`super::Sandbox::set_fatal_on`].
    pub fatal_on: Mutex<Option<String>>,
    /// See [`super::Sandbox::lose_answers_of`]: (path ending, answers still to lose), one per
    /// path ending.
    pub lose_answers: Mutex<Vec<(String, u32)>>,
    /// Act as an older server without v3 invoice/* and deal change.step/close
    /// ([`super::SandboxConfig::no_v3_invoices`]).
    pub no_v3_invoices: bool,
    /// See [`super::emulate`].
    pub emulator: Option<super::emulate::Emulator>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// What a handler answers; turned into an HTTP response in one place.
pub enum Reply {
    Json(Value),
    /// HTTP 200 with an empty body (the real server's answer to an unknown method).
    Empty,
    /// A JSON body with a non-200 status (only for our own limits, e.g. body too large).
    Status(StatusCode, Value),
    /// A PHP fatal error page with HTTP 200 (and the JSON content type the recordings show).
    Fatal(String),
}

pub fn error(code: impl Into<Value>, text: &str) -> Value {
    json!({"result": "Error", "error": {"code": code.into(), "text": text}})
}

/// A decoded API call.
pub struct Call {
    pub version: u8,
    pub entity: String,
    pub action: String,
    pub params: Map<String, Value>,
    pub login: Option<String>,
    pub apikey: Option<String>,
    /// deal/add: the deal number read before the request waited its turn (see `deal_number`).
    pub deal_number: Option<i64>,
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(v) => json_response(StatusCode::OK, &v),
            Reply::Status(s, v) => json_response(s, &v),
            Reply::Fatal(page) => {
                let mut r = (StatusCode::OK, page).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                r
            }
            Reply::Empty => {
                let mut r = (StatusCode::OK, "").into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
        }
    }
}

impl AppState {
    /// Whether the answer to this request is to be lost ([`super::Sandbox::lose_answers_of`]).
    fn lose_answer(&self, path: &str) -> bool {
        let mut lose = self.lose_answers.lock().unwrap_or_else(|p| p.into_inner());
        let path = path.trim_end_matches('/');
        match lose
            .iter_mut()
            .find(|(end, n)| *n > 0 && path.ends_with(end.as_str()))
        {
            Some((_, n)) => {
                *n -= 1;
                true
            }
            None => false,
        }
    }
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/developer/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let decision = state
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .decide();
    if decision.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(decision.delay_ms)).await;
    }
    if let Some(code) = decision.error_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = format!(
            "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        let mut r = (status, text).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    if decision.html_fatal {
        let mut r = (StatusCode::OK, HTML_FATAL).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }

    let lose = state.lose_answer(&path);
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Reply::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                error(
                    413,
                    "Тело запроса больше 8 МБ: разбейте пакет на части (sandbox limit)",
                ),
            )
            .into_response()
        }
    };
    // deal/add reads the deal counter, does other work, then writes it back (throughput.md):
    // read it here and let other requests run before this one stores its deal.
    let deal_number = if path.trim_end_matches('/').ends_with("/v3/deal/add") {
        let n = state.deal_number.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        Some(n)
    } else {
        None
    };
    let worker = state.clone();
    let reply = match &state.emulator {
        None => {
            tokio::task::spawn_blocking(move || match decode(&path, &query, &headers, &body) {
                Ok(Some(mut call)) => {
                    call.deal_number = deal_number;
                    entities::dispatch(&worker, call)
                }
                Ok(None) => Reply::Empty,
                Err(reply) => reply,
            })
            .await
        }
        Some(emulator) => {
            // Decode first to know the rows, take the emulated server's time, then do the
            // work while still holding the emulated worker.
            match decode(&path, &query, &headers, &body) {
                Ok(Some(mut call)) => {
                    let _php_worker = emulator.serve(call_rows(&call)).await;
                    call.deal_number = deal_number;
                    tokio::task::spawn_blocking(move || entities::dispatch(&worker, call)).await
                }
                Ok(None) => Ok(Reply::Empty),
                Err(reply) => Ok(reply),
            }
        }
    }
    .unwrap_or_else(|_| {
        // A handler bug must not take the server down; its transaction was rolled back.
        Reply::Json(error(500, "Внутренняя ошибка sandbox"))
    });
    if decision.drop_after_commit || lose {
        // The rows are committed; now break the connection instead of answering, like a proxy
        // timing out after PHP finished. hyper aborts the connection when the body errors.
        let stream = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("sandbox fault: drop_after_commit"))
        });
        return Response::new(Body::from_stream(stream));
    }
    reply.into_response()
}

/// Rows a call carries, for the emulated cost: the longest list among its parameters (the
/// batch of an add.list), else 1.
fn call_rows(call: &Call) -> usize {
    call.params
        .values()
        .map(|v| match v {
            Value::Array(a) => a.len(),
            Value::Object(o) if o.values().all(Value::is_object) => o.len(),
            _ => 1,
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Decode path, query, headers and body the way the PHP front controller does.
/// `Ok(None)`: unknown method (empty answer).
fn decode(
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Call>, Reply> {
    let segs: Vec<&str> = path
        .trim_start_matches("/developer/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let version = match segs.first() {
        Some(&"v3") => 3,
        Some(&"v2") => 2,
        // v1: only the contract (deal) actions are served.
        Some(&"v1") if segs.get(1) == Some(&"contract") => 1,
        _ => return Ok(None),
    };
    let entity = segs.get(1).copied().unwrap_or("").to_string();
    if version != 1
        && !matches!(
            entity.as_str(),
            "client" | "person" | "history" | "task" | "deal" | "invoice" | "user"
        )
    {
        return Ok(None);
    }
    let path_action = segs.get(2).copied().unwrap_or("").to_string();

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = content_type == "application/json";
    let is_form = content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded");
    if (is_json || is_form) && std::str::from_utf8(body).is_err() {
        return Err(Reply::Json(error(
            400,
            "Тело запроса не в кодировке UTF-8 (sandbox: реальный сервер отвечает HTML fatal error)",
        )));
    }
    let mut params = Map::new();
    let mut vars = 0usize;
    parse_form(query, &mut params, &mut vars)?;
    let (login, apikey);
    if is_json {
        // Malformed JSON is treated as empty params, like PHP's json_decode returning null.
        if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in obj {
                if version == 2 && k == "persons" {
                    continue; // v2 reads batch rows from $_REQUEST only
                }
                params.insert(k, v);
            }
        }
        login = header_str(headers, "login");
        apikey = header_str(headers, "apikey");
    } else {
        if is_form {
            let text = std::str::from_utf8(body).unwrap_or("");
            parse_form(text, &mut params, &mut vars)?;
        }
        login = params
            .get("login")
            .and_then(Value::as_str)
            .map(str::to_string);
        apikey = params
            .get("apikey")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let action = match params.get("action") {
        Some(Value::String(a)) => a.clone(),
        _ => path_action,
    };
    Ok(Some(Call {
        version,
        entity,
        action,
        params,
        login,
        apikey,
        deal_number: None,
    }))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn percent_decode(s: &str) -> Result<String, Reply> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        Reply::Json(error(
            400,
            "Параметры запроса не в кодировке UTF-8 (sandbox: реальный сервер отвечает HTML fatal error)",
        ))
    })
}

/// PHP-style form decoding: `persons[0][person]=x` becomes nested objects. Stops after
/// max_input_vars variables, as PHP does.
fn parse_form(text: &str, params: &mut Map<String, Value>, vars: &mut usize) -> Result<(), Reply> {
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        if *vars >= MAX_INPUT_VARS {
            break;
        }
        *vars += 1;
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k)?;
        let value = Value::String(percent_decode(v)?);
        let (base, rest) = match key.find('[') {
            Some(i) if i > 0 => (&key[..i], &key[i..]),
            _ => (key.as_str(), ""),
        };
        let mut segs: Vec<&str> = Vec::new();
        let mut r = rest;
        while let Some(stripped) = r.strip_prefix('[') {
            match stripped.find(']') {
                Some(end) => {
                    segs.push(&stripped[..end]);
                    r = &stripped[end + 1..];
                }
                None => break,
            }
        }
        insert_path(params, base, &segs, value);
    }
    Ok(())
}

fn insert_path(map: &mut Map<String, Value>, key: &str, segs: &[&str], value: Value) {
    if segs.is_empty() {
        map.insert(key.to_string(), value);
        return;
    }
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(inner) = slot {
        let next = if segs[0].is_empty() {
            inner.len().to_string()
        } else {
            segs[0].to_string()
        };
        insert_path(inner, &next, &segs[1..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_form_decoding() {
        let mut p = Map::new();
        let mut n = 0;
        parse_form(
            "login=a%40b&action=add.list&persons%5B0%5D%5Bperson%5D=%D0%AF+x&persons[1][mail]=m",
            &mut p,
            &mut n,
        )
        .ok()
        .unwrap();
        assert_eq!(p["login"], "a@b");
        assert_eq!(p["persons"]["0"]["person"], "Я x");
        assert_eq!(p["persons"]["1"]["mail"], "m");
        assert!(percent_decode("%FF").is_err());
        assert_eq!(percent_decode("100%").ok().unwrap(), "100%");
    }

    fn json_call(path: &str, body: Value) -> Call {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        decode(path, "", &headers, body.to_string().as_bytes())
            .ok()
            .flatten()
            .expect("a known method")
    }

    /// The emulated server charges a single-record write (person/update, a read-modify-write's
    /// full body) like a one-row request, and a batch by its rows: updates are not free.
    #[test]
    fn emulated_cost_of_a_single_update_is_one_row_and_of_a_batch_its_rows() {
        let update = json_call(
            "/developer/v3/person/update",
            json!({"pid": 7, "person": "Иван Петров", "ptitle": "Директор", "tel": "+7 342 200",
                   "mail": "i@example.ru", "iduser": 1, "clid": 3}),
        );
        assert_eq!(update.action, "update");
        assert_eq!(call_rows(&update), 1);
        let rows: Vec<Value> = (0..100)
            .map(|i| json!({"person": format!("Сотрудник {i}")}))
            .collect();
        let batch = json_call("/developer/v3/person/add.list", json!({ "persons": rows }));
        assert_eq!(call_rows(&batch), 100);
    }
}
