//! The operator's HTTP endpoint: `/metrics` (Prometheus), `/healthz` (the process serves)
//! and `/readyz` (plugins loaded and the API server reachable), on one port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Readiness, set by the operator as it starts.
#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
}

fn reply(code: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}

async fn handle(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => {
            reply(StatusCode::OK, metrics.encode(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        }
        "/healthz" => reply(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" if health.ready.load(Ordering::SeqCst) => reply(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "starting\n", "text/plain"),
        _ => reply(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    })
}

/// Bind and serve until the task is dropped. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, metrics.clone(), health.clone()));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((bound, task))
}
