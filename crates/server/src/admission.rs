//! Bounded worker pools with bounded admission: a request either gets a place at once or is
//! refused at once; accepted work is never dropped later.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::ServerMetrics;
use crate::{ApiError, ServerError};

pub struct Pool {
    name: &'static str,
    pool: Arc<rayon::ThreadPool>,
    admission: Arc<Semaphore>,
    capacity: usize,
    metrics: ServerMetrics,
}

impl Pool {
    pub fn new(name: &'static str, workers: usize, queue: usize, metrics: ServerMetrics) -> Result<Pool, ServerError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(move |i| format!("logpipe-{name}-{i}"))
            .build()
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let capacity = workers.max(1) + queue;
        Ok(Pool { name, pool: Arc::new(pool), admission: Arc::new(Semaphore::new(capacity)), capacity, metrics })
    }

    /// Takes a place in the pool, or refuses with `status` when all are taken.
    pub fn admit(&self, status: StatusCode) -> Result<Admitted, ApiError> {
        match self.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.inflight.with_label_values(&[self.name]).inc();
                Ok(Admitted { _permit: permit, metrics: self.metrics.clone(), name: self.name })
            }
            Err(_) => Err(ApiError::new(
                status,
                "overloaded",
                format!("the {} pool is full ({} requests admitted); retry later", self.name, self.capacity),
            )),
        }
    }

    /// Runs `f` on the pool and waits for it without blocking the async runtime.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            // a bug in one request must not take the process down (rayon aborts on a panic
            // in a spawned job): it becomes a 500 for that request alone
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) | Err(_) => {
                tracing::error!(pool = self.name, "request panicked in a worker");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error while serving the request",
                ))
            }
        }
    }
}

/// A place in a pool, released on drop.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    metrics: ServerMetrics,
    name: &'static str,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics.inflight.with_label_values(&[self.name]).dec();
    }
}
