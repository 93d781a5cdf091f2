//! A real HTTP webhook receiver on 127.0.0.1 (hyper), scripted per test.
//! Also used by the webhook benchmark (`host/benches/webhooks.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 or 503 with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// 302 to this location.
    Redirect(String),
    /// Answer 200 after this long.
    Slow(Duration),
    /// Never answer.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Verify the signature with the Standard Webhooks reference crate.
    pub fn verify(&self, secret: &str) {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .unwrap_or_else(|e| panic!("signature of {} does not verify: {e}", self.id()));
    }
}

#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<Received>,
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// A receiver answering request `n` (from 0) with `script(n)`.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_at(0, script).await
    }

    /// On a chosen port (0: any free one).
    pub async fn start_at(
        port: u16,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script: Script = Arc::new(script);
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.lock().unwrap().connections += 1;
                let (s, script) = (s.clone(), script.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (s, script) = (s.clone(), script.clone());
                        async move { answer(req, &s, &script).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// Wait until `n` requests have arrived (at most 30 s), then return all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..600 {
            if self.requests().len() >= n {
                return self.requests();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} requests, got {}", self.requests().len());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: &Mutex<Seen>,
    script: &Script,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.requests.push(Received {
            headers: parts.headers,
            body,
        });
        seen.requests.len() - 1
    };
    let reply = script(n);
    let mut resp = Response::builder();
    resp = match reply {
        Reply::Status(code) => resp.status(code),
        Reply::RetryAfter(code, secs) => resp.status(code).header("retry-after", secs.to_string()),
        Reply::Redirect(to) => resp.status(302).header("location", to),
        Reply::Slow(wait) => {
            tokio::time::sleep(wait).await;
            resp.status(200)
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            resp.status(200)
        }
    };
    Ok(resp.body(Full::new(Bytes::new())).unwrap())
}
