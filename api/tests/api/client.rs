//! A small HTTP client for the tests (ureq), returning status and JSON.

use serde_json::Value;

pub struct Client {
    pub base: String,
    pub token: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The error message of a 4xx/5xx (dropshot's `message`).
    pub fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Client {
    pub fn new(base: String, token: &str) -> Client {
        Client {
            base,
            token: Some(token.to_string()),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            token: None,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Client::call`], with a transport error (no HTTP status) returned
    /// rather than a panic.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let mut r = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => r.send_json(b.clone()),
            None => r.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&body))
    }

    pub fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(&body))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None)
    }

    /// A call that must succeed: its JSON body.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body.as_ref());
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        r.body
    }
}
