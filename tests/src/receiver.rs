//! A webhook receiver on loopback, for the server's outgoing callbacks (a CIBA client's
//! notification endpoint, Keycloak's callback): it answers each request with the next status
//! of its script (the last one repeats) and records what it got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::AbortHandle;

/// One request the receiver got, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    accept: AbortHandle,
}

impl Receiver {
    /// Listens on 127.0.0.1:0 and answers with `script` in order, repeating its last status.
    pub async fn start(script: Vec<u16>) -> Self {
        assert!(!script.is_empty(), "a receiver needs at least one status to answer");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (recorded, script) = (Arc::clone(&got), Arc::new(script));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (recorded, script) = (Arc::clone(&recorded), Arc::clone(&script));
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (recorded, script) = (Arc::clone(&recorded), Arc::clone(&script));
                    async move {
                        let header = |name: hyper::header::HeaderName| {
                            request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                        };
                        let authorization = header(hyper::header::AUTHORIZATION);
                        let content_type = header(hyper::header::CONTENT_TYPE);
                        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
                        let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec());
                        let mut got = recorded.lock().unwrap();
                        let answered = script[got.len().min(script.len() - 1)];
                        got.push(Received {
                            method,
                            path,
                            authorization,
                            content_type,
                            body: body.unwrap_or_default(),
                            answered,
                        });
                        let status = StatusCode::from_u16(answered).unwrap();
                        Ok::<_, Infallible>(
                            Response::builder().status(status).body(Empty::<Bytes>::new()).unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, got, accept: accept.abort_handle() }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What it got so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
