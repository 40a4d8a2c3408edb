//! An HTTP service around any [`KeywordExtractor`], batching concurrent requests.
//!
//! A model extracts a batch of texts for little more than the cost of one, so the service does
//! not call the extractor per request: a [`Batcher`] task collects jobs from a queue — after the
//! first arrives it waits at most [`ServeConfig::max_wait`] for more, up to
//! [`ServeConfig::max_batch`] texts — runs one [`KeywordExtractor::extract_batch`] on a blocking
//! thread, and answers every job from the result. One batch runs at a time (the model is the
//! bottleneck); requests arriving meanwhile wait in the queue and form the next batch. This is
//! the dynamic batching of inference servers (Triton's `max_queue_delay_microseconds`, TGI's
//! `--max-waiting-tokens`), reduced to one extractor.
//!
//! The HTTP side ([`router`], [`serve`]) is axum:
//!
//! | request | response |
//! |---|---|
//! | `POST /extract` `{"text": "..."}` | `{"keywords": [Keyword, ...]}` |
//! | `POST /extract` `{"texts": ["...", ...]}` | `{"results": [[Keyword, ...], ...]}` |
//! | `GET /health` | `{"status": "ok", "extractor": "dictionary"}` |
//!
//! Errors are `{"error": "..."}`: 400 for a body that is not JSON or not exactly one of `text`
//! and `texts` (the message names the field), 413 for a text longer than
//! [`ServeConfig::max_text_chars`] or more texts than [`ServeConfig::max_texts_per_request`],
//! 415 without `Content-Type: application/json`, 500 when the extractor fails, 503 when the
//! queue is full.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kwx::core::DictionaryExtractor;
//! use kwx::data::dictionary::Dictionary;
//! use kwx::serve::{ServeConfig, serve, shutdown_signal};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let extractor = Arc::new(DictionaryExtractor::new(Dictionary::bundled())?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = ServeConfig::default().max_batch(32);
//! serve(listener, extractor, config, shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//! ```text
//! curl -s localhost:8080/extract -H 'content-type: application/json' \
//!     -d '{"text": "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다."}'
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kwx_core::extract::{Keyword, KeywordExtractor};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Batching and request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The most texts one [`KeywordExtractor::extract_batch`] call receives.
    pub max_batch: usize,
    /// How long the batcher waits, after the first job of a batch arrives, for more.
    pub max_wait: Duration,
    /// The longest text accepted, in characters (Unicode scalar values).
    pub max_text_chars: usize,
    /// The most texts one request may carry.
    pub max_texts_per_request: usize,
    /// How many requests may wait for the batcher before new ones are refused (503).
    pub queue: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_wait: Duration::from_millis(5),
            max_text_chars: 20_000,
            max_texts_per_request: 64,
            queue: 1024,
        }
    }
}

impl ServeConfig {
    /// Sets [`Self::max_batch`].
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets [`Self::max_wait`].
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Sets [`Self::max_text_chars`].
    #[must_use]
    pub fn max_text_chars(mut self, max_text_chars: usize) -> Self {
        self.max_text_chars = max_text_chars;
        self
    }

    /// Sets [`Self::max_texts_per_request`].
    #[must_use]
    pub fn max_texts_per_request(mut self, max_texts_per_request: usize) -> Self {
        self.max_texts_per_request = max_texts_per_request;
        self
    }

    /// Sets [`Self::queue`].
    #[must_use]
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// Every count must be at least 1; `max_wait` may be zero (batch only what is already
    /// queued).
    pub fn validate(&self) -> Result<(), ServeError> {
        let positive = [
            ("max_batch", self.max_batch),
            ("max_text_chars", self.max_text_chars),
            ("max_texts_per_request", self.max_texts_per_request),
            ("queue", self.queue),
        ];
        match positive.into_iter().find(|&(_, value)| value == 0) {
            Some((field, _)) => Err(ServeError::Config {
                field,
                message: "must be at least 1".into(),
            }),
            None => Ok(()),
        }
    }

    /// The request body limit: every text at its longest, each character escaped as `\uXXXX`
    /// (6 bytes), plus room for the JSON around them.
    fn body_limit(&self) -> usize {
        self.max_texts_per_request
            .saturating_mul(self.max_text_chars.saturating_mul(6).saturating_add(8))
            .saturating_add(4096)
    }
}

/// What can go wrong configuring the service or extracting through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A [`ServeConfig`] field is out of range.
    #[error("serve config `{field}`: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// [`Batcher::new`] was called outside a Tokio runtime.
    #[error("the batcher must be started inside a Tokio runtime")]
    NoRuntime,
    /// A text is longer than [`ServeConfig::max_text_chars`].
    #[error("text {index} has {chars} characters; the limit (max_text_chars) is {limit}")]
    TextTooLong {
        /// Its position in the request.
        index: usize,
        /// Its length in characters.
        chars: usize,
        /// [`ServeConfig::max_text_chars`].
        limit: usize,
    },
    /// More texts than [`ServeConfig::max_texts_per_request`].
    #[error("{count} texts in one request; the limit (max_texts_per_request) is {limit}")]
    TooManyTexts {
        /// Texts sent.
        count: usize,
        /// [`ServeConfig::max_texts_per_request`].
        limit: usize,
    },
    /// [`ServeConfig::queue`] requests are already waiting.
    #[error("the extraction queue is full ({capacity} requests waiting); retry later")]
    QueueFull {
        /// [`ServeConfig::queue`].
        capacity: usize,
    },
    /// The batcher task has ended (the runtime is shutting down).
    #[error("the batcher has stopped")]
    Stopped,
    /// The extractor failed (or panicked) on the batch holding this request.
    #[error("extraction failed: {0}")]
    Extraction(String),
    /// The server could not run.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters of a [`Batcher`], for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Successful [`KeywordExtractor::extract_batch`] calls.
    pub batches: u64,
    /// Texts those calls extracted.
    pub texts: u64,
    /// The most texts in one call (at most [`ServeConfig::max_batch`]).
    pub largest_batch: usize,
    /// Requests answered, successfully or not.
    pub requests: u64,
    /// The most requests gathered into one batch.
    pub most_requests_in_batch: usize,
    /// Batches whose extraction failed or panicked.
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    texts: AtomicU64,
    largest_batch: AtomicUsize,
    requests: AtomicU64,
    most_requests_in_batch: AtomicUsize,
    failed_batches: AtomicU64,
}

/// Texts in, and where their keywords go (or why there are none).
struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<Keyword>>, String>>,
}

/// Gathers concurrent extraction requests into batches for one extractor (see the
/// [module docs](self)). Cloning is cheap and shares the queue; the batching task ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Batcher {
    extractor: Arc<dyn KeywordExtractor>,
    config: Arc<ServeConfig>,
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Batcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("extractor", &self.extractor.name())
            .field("config", &self.config)
            .field("queued", &self.queued())
            .finish()
    }
}

impl Batcher {
    /// Validates `config` and starts the batching task on the current Tokio runtime (which needs
    /// its time driver, as `#[tokio::main]` runtimes have).
    pub fn new(
        extractor: Arc<dyn KeywordExtractor>,
        config: ServeConfig,
    ) -> Result<Self, ServeError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServeError::NoRuntime)?;
        let (jobs, queue) = mpsc::channel(config.queue);
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        runtime.spawn(run_batches(
            extractor.clone(),
            config.clone(),
            queue,
            counters.clone(),
        ));
        Ok(Self {
            extractor,
            config,
            jobs,
            counters,
        })
    }

    /// The keywords of each text, in order, extracted in a batch with whatever other requests
    /// are waiting. Fails at once, without queueing, when a limit is exceeded or the queue is
    /// full.
    pub async fn extract(&self, texts: Vec<String>) -> Result<Vec<Vec<Keyword>>, ServeError> {
        self.check(&texts)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { texts, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ServeError::QueueFull {
                    capacity: self.config.queue,
                },
                mpsc::error::TrySendError::Closed(_) => ServeError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| ServeError::Stopped)?
            .map_err(ServeError::Extraction)
    }

    /// [`ServeConfig::max_texts_per_request`] and [`ServeConfig::max_text_chars`].
    fn check(&self, texts: &[String]) -> Result<(), ServeError> {
        let limit = self.config.max_texts_per_request;
        if texts.len() > limit {
            return Err(ServeError::TooManyTexts {
                count: texts.len(),
                limit,
            });
        }
        let limit = self.config.max_text_chars;
        for (index, text) in texts.iter().enumerate() {
            // A text of at most `limit` bytes has at most `limit` characters.
            if text.len() > limit {
                let chars = text.chars().count();
                if chars > limit {
                    return Err(ServeError::TextTooLong {
                        index,
                        chars,
                        limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// The extractor's [`KeywordExtractor::name`].
    pub fn extractor_name(&self) -> &str {
        self.extractor.name()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// Requests waiting in the queue (not counting the batch being extracted).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            batches: c.batches.load(Ordering::Relaxed),
            texts: c.texts.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            most_requests_in_batch: c.most_requests_in_batch.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// The batching task: gather, extract, answer, until every [`Batcher`] is dropped.
async fn run_batches(
    extractor: Arc<dyn KeywordExtractor>,
    config: Arc<ServeConfig>,
    mut queue: mpsc::Receiver<Job>,
    counters: Arc<Counters>,
) {
    // A job that would have overfilled the previous batch opens the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while texts < config.max_batch {
            // `timeout_at` polls the queue before the clock, so jobs already waiting join the
            // batch even when the deadline has passed.
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(job)) if texts + job.texts.len() > config.max_batch => {
                    carried = Some(job);
                    break;
                }
                Ok(Some(job)) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Callers that went away (a closed connection) need no extraction.
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            run_batch(&extractor, config.max_batch, jobs, &counters).await;
        }
    }
    tracing::debug!("batcher stopped: every sender is gone");
}

/// Extracts the texts of `jobs` (in calls of at most `max_batch` texts, so one oversized request
/// is split) and answers every job, with its results or with the batch's error.
async fn run_batch(
    extractor: &Arc<dyn KeywordExtractor>,
    max_batch: usize,
    mut jobs: Vec<Job>,
    counters: &Arc<Counters>,
) {
    let sizes: Vec<usize> = jobs.iter().map(|job| job.texts.len()).collect();
    let texts: Vec<String> = jobs
        .iter_mut()
        .flat_map(|job| std::mem::take(&mut job.texts))
        .collect();
    counters
        .most_requests_in_batch
        .fetch_max(jobs.len(), Ordering::Relaxed);
    tracing::debug!(
        requests = jobs.len(),
        texts = texts.len(),
        "extracting a batch"
    );

    let outcome = {
        let extractor = extractor.clone();
        let counters = counters.clone();
        tokio::task::spawn_blocking(move || {
            extract_chunks(&*extractor, &texts, max_batch, &counters)
        })
        .await
    };
    let outcome = match outcome {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(format!("the extractor panicked: {}", panic_message(e))),
        Err(_) => Err("the extraction was cancelled (the server is shutting down)".into()),
    };

    counters
        .requests
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    match outcome {
        Ok(results) => {
            let mut results = results.into_iter();
            for (job, size) in jobs.into_iter().zip(sizes) {
                // The caller may have gone; nothing to do then.
                let _ = job.reply.send(Ok(results.by_ref().take(size).collect()));
            }
        }
        Err(message) => {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(requests = jobs.len(), error = %message, "batch failed");
            for job in jobs {
                let _ = job.reply.send(Err(message.clone()));
            }
        }
    }
}

fn extract_chunks(
    extractor: &dyn KeywordExtractor,
    texts: &[String],
    max_batch: usize,
    counters: &Counters,
) -> Result<Vec<Vec<Keyword>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(max_batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let results = extractor.extract_batch(&refs).map_err(|e| e.to_string())?;
        if results.len() != chunk.len() {
            return Err(format!(
                "the extractor `{}` returned {} results for {} texts",
                extractor.name(),
                results.len(),
                chunk.len()
            ));
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .texts
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        counters
            .largest_batch
            .fetch_max(chunk.len(), Ordering::Relaxed);
        out.extend(results);
    }
    Ok(out)
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// The body of `POST /extract`: exactly one of the two fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtractRequest {
    text: Option<String>,
    texts: Option<Vec<String>>,
}

#[derive(Serialize)]
struct KeywordsResponse {
    keywords: Vec<Keyword>,
}

#[derive(Serialize)]
struct ResultsResponse {
    results: Vec<Vec<Keyword>>,
}

#[derive(Serialize)]
struct HealthResponse<'a> {
    status: &'static str,
    extractor: &'a str,
}

/// An error response: `{"error": message}` with `status`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `field` is how the request named its texts (`text` or `texts`), for the message.
    fn from_serve(e: ServeError, field: &str) -> Self {
        match e {
            ServeError::TextTooLong {
                index,
                chars,
                limit,
            } => {
                let field = if field == "text" {
                    "`text`".to_owned()
                } else {
                    format!("`texts[{index}]`")
                };
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "{field} has {chars} characters; the limit (max_text_chars) is {limit}"
                    ),
                )
            }
            ServeError::TooManyTexts { count, limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("`texts` has {count} texts; the limit (max_texts_per_request) is {limit}"),
            ),
            ServeError::QueueFull { .. } | ServeError::Stopped => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            // A well-formed body of the wrong shape is the client's mistake like a malformed one;
            // axum says 422, the API says 400 for both.
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                StatusCode::BAD_REQUEST
            }
            ref other => other.status(),
        };
        Self::new(status, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

async fn extract(
    State(batcher): State<Batcher>,
    body: Result<Json<ExtractRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    match (request.text, request.texts) {
        (Some(text), None) => {
            let mut results = batcher
                .extract(vec![text])
                .await
                .map_err(|e| ApiError::from_serve(e, "text"))?;
            let keywords = results.pop().unwrap_or_default();
            Ok(Json(KeywordsResponse { keywords }).into_response())
        }
        (None, Some(texts)) => {
            let results = batcher
                .extract(texts)
                .await
                .map_err(|e| ApiError::from_serve(e, "texts"))?;
            Ok(Json(ResultsResponse { results }).into_response())
        }
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "send either `text` or `texts`, not both",
        )),
        (None, None) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing field: send `text` (a string) or `texts` (an array of strings)",
        )),
    }
}

async fn health(State(batcher): State<Batcher>) -> Response {
    Json(HealthResponse {
        status: "ok",
        extractor: batcher.extractor_name(),
    })
    .into_response()
}

/// `POST /extract` and `GET /health` on `batcher` (see the [module docs](self)); unknown
/// paths and methods answer 404 and 405 with a JSON error.
pub fn router(batcher: Batcher) -> Router {
    let body_limit = batcher.config().body_limit();
    Router::new()
        .route("/extract", post(extract))
        .route("/health", get(health))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(batcher)
}

/// Serves `extractor` on `listener` until `shutdown` resolves, then stops accepting and returns
/// once the requests in flight are answered. Bind `127.0.0.1:0` for an ephemeral port.
pub async fn serve(
    listener: tokio::net::TcpListener,
    extractor: Arc<dyn KeywordExtractor>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let batcher = Batcher::new(extractor, config)?;
    serve_batcher(listener, batcher, shutdown).await
}

/// [`serve`] with a [`Batcher`] the caller keeps a clone of (for [`Batcher::stats`]).
pub async fn serve_batcher(
    listener: tokio::net::TcpListener,
    batcher: Batcher,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        extractor = batcher.extractor_name(),
        "serving keyword extraction"
    );
    axum::serve(listener, router(batcher))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix (what container runtimes send): a `shutdown` for
/// [`serve`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kwx_core::extract::DictionaryExtractor;
    use kwx_data::dictionary::Dictionary;

    #[test]
    fn config_validation_names_the_field() {
        assert!(ServeConfig::default().validate().is_ok());
        assert!(
            ServeConfig::default()
                .max_wait(Duration::ZERO)
                .validate()
                .is_ok()
        );
        for (config, field) in [
            (ServeConfig::default().max_batch(0), "max_batch"),
            (ServeConfig::default().max_text_chars(0), "max_text_chars"),
            (
                ServeConfig::default().max_texts_per_request(0),
                "max_texts_per_request",
            ),
            (ServeConfig::default().queue(0), "queue"),
        ] {
            match config.validate() {
                Err(ServeError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_batcher_needs_a_runtime() {
        let x = DictionaryExtractor::new(Dictionary::bundled()).expect("extractor");
        let e = Batcher::new(Arc::new(x), ServeConfig::default()).expect_err("no runtime");
        assert!(matches!(e, ServeError::NoRuntime), "{e:?}");
    }

    #[tokio::test]
    async fn limits_are_checked_before_queueing() {
        let x = DictionaryExtractor::new(Dictionary::bundled()).expect("extractor");
        let config = ServeConfig::default()
            .max_text_chars(3)
            .max_texts_per_request(2);
        let batcher = Batcher::new(Arc::new(x), config).expect("batcher");
        // 3 Hangul characters are 9 bytes: the check counts characters.
        let ok = batcher
            .extract(vec!["임산부".into()])
            .await
            .expect("3 chars");
        assert_eq!(ok[0][0].text, "임산부");
        match batcher
            .extract(vec!["노인".into(), "임산부와".into()])
            .await
        {
            Err(ServeError::TextTooLong {
                index: 1,
                chars: 4,
                limit: 3,
            }) => {}
            other => panic!("{other:?}"),
        }
        match batcher.extract(vec!["a".into(); 3]).await {
            Err(ServeError::TooManyTexts { count: 3, limit: 2 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            batcher.extract(Vec::new()).await.expect("empty"),
            Vec::<Vec<Keyword>>::new()
        );
        assert_eq!(batcher.stats().texts, 1);
    }
}
