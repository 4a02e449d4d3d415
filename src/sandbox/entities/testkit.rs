//! A sandbox without HTTP for the entities' unit tests: an in-memory store and the same
//! [`dispatch`](super::dispatch) the server runs, called with decoded JSON parameters.

use super::super::api::{AppState, Call, Reply};
use super::super::faults::{FaultConfig, FaultState};
use super::super::store::Store;
use super::super::users::UserSpec;
use super::super::FieldSpec;
use serde_json::Value;
use std::sync::Mutex;

pub const LOGIN: &str = "admin@test.ru";
const KEY: &str = "key";

pub struct Crm {
    state: AppState,
    key: &'static str,
}

impl Crm {
    /// A fresh store whose users are the API user (1) and manager2@test.ru (2).
    pub fn new() -> Crm {
        let store = Store::open(":memory:").expect("in-memory store");
        store
            .save_users(
                LOGIN,
                &[UserSpec::new("manager2@test.ru", "Менеджер Второй", true)],
            )
            .expect("users");
        let deal_number = store.next_deal_number();
        Crm {
            state: AppState {
                store,
                login: LOGIN.into(),
                apikey: KEY.into(),
                faults: Mutex::new(FaultState::new(FaultConfig::default())),
                deal_number: std::sync::atomic::AtomicI64::new(deal_number),
                fatal_on: Mutex::new(None),
                lose_answers: Mutex::new(Vec::new()),
                emulator: None,
                no_v3_invoices: false,
            },
            key: KEY,
        }
    }

    /// The same store acting as an older server (`--no-v3-invoices`).
    pub fn old_server(mut self) -> Crm {
        self.state.no_v3_invoices = true;
        self
    }

    /// A v1 contract call; the answer must be JSON.
    pub fn v1(&self, action: &str, params: Value) -> Value {
        match self.reply(1, "contract", action, params) {
            Reply::Json(v) => v,
            _ => panic!("v1 {action}: no JSON answer"),
        }
    }

    /// The same store, calls sent with another API key.
    pub fn with_key(self, key: &'static str) -> Crm {
        Crm { key, ..self }
    }

    pub fn fields(&self, specs: &[FieldSpec]) {
        self.state.store.save_fields(specs).expect("field settings");
    }

    /// A v3 call; the answer must be JSON.
    pub fn call(&self, entity: &str, action: &str, params: Value) -> Value {
        match self.reply(3, entity, action, params) {
            Reply::Json(v) => v,
            Reply::Fatal(page) => panic!("{entity}/{action} died: {page}"),
            Reply::Empty | Reply::Status(..) => panic!("{entity}/{action}: no JSON answer"),
        }
    }

    /// A v3 call that must die with a PHP fatal page: the page.
    pub fn fatal(&self, entity: &str, action: &str, params: Value) -> String {
        match self.reply(3, entity, action, params) {
            Reply::Fatal(page) => page,
            Reply::Json(v) => panic!("{entity}/{action} answered {v}"),
            Reply::Empty | Reply::Status(..) => panic!("{entity}/{action}: no answer"),
        }
    }

    pub fn reply(&self, version: u8, entity: &str, action: &str, params: Value) -> Reply {
        let Value::Object(params) = params else {
            panic!("parameters are an object");
        };
        super::dispatch(
            &self.state,
            Call {
                version,
                entity: entity.into(),
                action: action.into(),
                params,
                login: Some(LOGIN.into()),
                apikey: Some(self.key.into()),
                deal_number: None,
            },
        )
    }

    /// Run SQL on the store directly (setting up what the API cannot, e.g. old dates).
    pub fn sql(&self, sql: &str) {
        self.state.store.lock().execute_batch(sql).expect(sql);
    }

    /// The first column of the first row `sql` selects.
    pub fn sql_value(&self, sql: &str) -> Value {
        let conn = self.state.store.lock();
        super::rows(&conn, sql, &[])
            .expect(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().map(|(_, v)| v))
            .unwrap_or(Value::Null)
    }

    /// The id an add answered (`data`), failing the test on any other answer.
    pub fn add(&self, entity: &str, params: Value) -> i64 {
        let r = self.call(entity, "add", params);
        r["data"]
            .as_i64()
            .unwrap_or_else(|| panic!("{entity}/add answered {r}"))
    }
}
