//! `kwx::serve` end to end: a real server on a loopback port, driven by an HTTP client.
//!
//! Batching is provoked deterministically, not by timing: the extractor's first batch blocks on a
//! gate until the test has seen the other requests queue up behind it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwx::core::{DictionaryExtractor, Keyword, KeywordExtractor};
use kwx::data::dictionary::Dictionary;
use kwx::serve::{Batcher, ServeConfig, ServeError, serve, serve_batcher};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const EXAMPLE: &str = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.";
/// Generous: only a hang would reach it.
const PATIENCE: Duration = Duration::from_secs(60);

fn dictionary_extractor() -> DictionaryExtractor {
    DictionaryExtractor::new(Dictionary::bundled()).expect("dictionary extractor")
}

/// The dictionary extractor, recording each batch it runs, optionally sleeping per batch and
/// blocking its first batch until released.
struct Instrumented {
    inner: DictionaryExtractor,
    delay: Duration,
    calls: Mutex<Vec<usize>>,
    gate: Mutex<Option<(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

/// The test's side of an [`Instrumented`] gate.
struct Gate {
    /// Resolves when the first batch is inside the extractor (and blocked).
    entered: oneshot::Receiver<()>,
    /// Lets it go.
    release: std::sync::mpsc::Sender<()>,
}

impl Instrumented {
    fn new(delay: Duration) -> Self {
        Self {
            inner: dictionary_extractor(),
            delay,
            calls: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
        }
    }

    fn gated(delay: Duration) -> (Self, Gate) {
        let (entered_tx, entered) = oneshot::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let x = Self::new(delay);
        *x.gate.lock().expect("lock") = Some((entered_tx, release_rx));
        (x, Gate { entered, release })
    }

    fn calls(&self) -> Vec<usize> {
        self.calls.lock().expect("lock").clone()
    }
}

impl KeywordExtractor for Instrumented {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn extract(&self, text: &str) -> kwx::core::Result<Vec<Keyword>> {
        self.inner.extract(text)
    }

    fn extract_batch(&self, texts: &[&str]) -> kwx::core::Result<Vec<Vec<Keyword>>> {
        let gate = self.gate.lock().expect("lock").take();
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            // A dropped sender (a failed test) lets it go too.
            let _ = release.recv();
        }
        std::thread::sleep(self.delay);
        let out = self.inner.extract_batch(texts)?;
        self.calls.lock().expect("lock").push(texts.len());
        Ok(out)
    }
}

/// Fails every batch; panics on a batch holding the text `panic` (the test output shows that
/// panic's message: it is expected).
struct Failing;

impl KeywordExtractor for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    fn extract(&self, text: &str) -> kwx::core::Result<Vec<Keyword>> {
        if text == "panic" {
            panic!("the extractor exploded on purpose");
        }
        Err(kwx::core::Error::InvalidInput(
            "the model ran out of memory".into(),
        ))
    }
}

struct Server {
    addr: SocketAddr,
    batcher: Batcher,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    async fn start(extractor: Arc<dyn KeywordExtractor>, config: ServeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let batcher = Batcher::new(extractor, config).expect("batcher");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_batcher(listener, batcher.clone(), async move {
            let _ = signal.await;
        }));
        Self {
            addr,
            batcher,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let served = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("graceful shutdown finishes")
            .expect("server task");
        served.expect("server result");
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, Value) {
    let response = client.post(url).json(body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("JSON response"))
}

async fn post_raw(client: &reqwest::Client, url: &str, body: &'static str) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("JSON response"))
}

fn keywords(value: &Value) -> Vec<Keyword> {
    serde_json::from_value(value.clone()).expect("a keyword list")
}

fn error_message(body: &Value) -> &str {
    body["error"].as_str().expect("an `error` string")
}

/// Korean sentences built from dictionary terms (aliases, particles, repeats), the example
/// sentence, one with no term and one with Latin and emoji before the terms (char spans).
fn corpus() -> Vec<String> {
    let terms: Vec<&str> = Dictionary::bundled()
        .entries()
        .iter()
        .map(|e| e.term.as_str())
        .collect();
    assert!(
        terms.len() > 50,
        "the bundled dictionary has {} terms",
        terms.len()
    );
    let mut texts = vec![
        EXAMPLE.to_owned(),
        "임신부에게도, 임산부에게도 파스를 붙여도 되나요?".to_owned(),
        "오늘은 날씨가 맑습니다.".to_owned(),
        "SK케미칼의 😀 파스는 노인에게도 적합합니다.".to_owned(),
    ];
    for i in 0..60 {
        let a = terms[(i * 7) % terms.len()];
        let b = terms[(i * 13 + 5) % terms.len()];
        let c = terms[(i * 29 + 11) % terms.len()];
        texts.push(match i % 3 {
            0 => format!("{a}와 {b}의 차이는 무엇인가요? {a}은 {c}에 쓰입니다."),
            1 => format!("{b}를 복용하는 {c} 환자는 의사와 상담하세요."),
            _ => format!("{a}, {b}, 그리고 {c}: 진통과 해열 효과가 있는 {a}"),
        });
    }
    texts
}

/// 64 requests from 16 concurrent clients, single and multi-text, queued behind a blocked first
/// batch: every answer equals the extractor's own, and requests were batched together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_answered_exactly() {
    let (extractor, gate) = Instrumented::gated(Duration::from_millis(20));
    let extractor = Arc::new(extractor);
    let config = ServeConfig::default()
        .max_batch(16)
        .max_wait(Duration::from_millis(5));
    let server = Server::start(extractor.clone(), config).await;
    let reference = Arc::new(dictionary_extractor());
    let corpus = Arc::new(corpus());
    let client = client();
    let url = server.url("/extract");

    // The first request goes in alone and blocks the extractor.
    let primer = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { post(&client, &url, &json!({ "text": EXAMPLE })).await })
    };
    tokio::time::timeout(PATIENCE, gate.entered)
        .await
        .expect("the first batch reaches the extractor")
        .expect("gate");

    let mut tasks = Vec::new();
    for task in 0..16usize {
        let (client, url) = (client.clone(), url.clone());
        let (reference, corpus) = (reference.clone(), corpus.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            for request in 0..4usize {
                let k = task * 4 + request;
                let pick = |j: usize| corpus[(k * 5 + j) % corpus.len()].clone();
                if (task + request) % 3 == 0 {
                    let texts: Vec<String> = (0..1 + k % 3).map(pick).collect();
                    let (status, body) = post(&client, &url, &json!({ "texts": texts })).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let results = body["results"].as_array().expect("results");
                    assert_eq!(results.len(), texts.len());
                    for (text, got) in texts.iter().zip(results) {
                        assert_eq!(keywords(got), reference.extract(text).expect("reference"));
                    }
                    sent += texts.len();
                } else {
                    let text = pick(0);
                    let (status, body) = post(&client, &url, &json!({ "text": text })).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let got = keywords(&body["keywords"]);
                    assert_eq!(got, reference.extract(&text).expect("reference"), "{text}");
                    sent += 1;
                }
            }
            sent
        }));
    }

    // Every client's first request is queued behind the blocked batch before it is released.
    let waiting = tokio::time::timeout(PATIENCE, async {
        while server.batcher.queued() < 16 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    gate.release.send(()).expect("release the gate");
    waiting.expect("16 requests queue behind the first batch");

    let (status, body) = primer.await.expect("primer task");
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = reference.extract(EXAMPLE).expect("reference");
    assert_eq!(keywords(&body["keywords"]), expected);
    assert_eq!(
        expected.iter().map(|k| k.text.as_str()).collect::<Vec<_>>(),
        ["진통", "해열", "파스", "임산부", "노인"]
    );
    let mut texts_sent = 1;
    for task in tasks {
        texts_sent += task.await.expect("client task");
    }

    let stats = server.batcher.stats();
    let calls = extractor.calls();
    assert_eq!(stats.requests, 65, "{stats:?}");
    assert_eq!(stats.texts, texts_sent as u64, "{stats:?}");
    assert_eq!(stats.failed_batches, 0);
    assert!(
        stats.most_requests_in_batch >= 2,
        "the queued requests were not batched: {stats:?}, calls {calls:?}"
    );
    assert!(
        (2..=16).contains(&stats.largest_batch),
        "{stats:?}, calls {calls:?}"
    );
    // The counters agree with what the extractor saw.
    assert_eq!(calls.len() as u64, stats.batches);
    assert_eq!(calls.iter().sum::<usize>() as u64, stats.texts);
    assert_eq!(calls.iter().max().copied(), Some(stats.largest_batch));
    assert!(stats.batches < 65, "no batching: {calls:?}");

    server.stop().await;
}

/// One request with more texts than `max_batch` is extracted in several calls, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_max_batch_is_split() {
    let extractor = Arc::new(Instrumented::new(Duration::ZERO));
    let server = Server::start(extractor.clone(), ServeConfig::default().max_batch(4)).await;
    let reference = dictionary_extractor();
    let texts: Vec<String> = corpus().into_iter().take(10).collect();
    let (status, body) = post(
        &client(),
        &server.url("/extract"),
        &json!({ "texts": texts }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 10);
    for (text, got) in texts.iter().zip(results) {
        assert_eq!(keywords(got), reference.extract(text).expect("reference"));
    }
    assert_eq!(extractor.calls(), [4, 4, 2]);
    let stats = server.batcher.stats();
    assert_eq!(
        (stats.batches, stats.texts, stats.largest_batch),
        (3, 10, 4)
    );
    assert_eq!((stats.requests, stats.most_requests_in_batch), (1, 1));
    server.stop().await;
}

/// Bad requests get 400/413/415/404/405 with a JSON message naming the field or limit, and
/// never reach the extractor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_statuses_and_messages() {
    let config = ServeConfig::default()
        .max_text_chars(40)
        .max_texts_per_request(4);
    let server = Server::start(Arc::new(dictionary_extractor()), config).await;
    let client = client();
    let url = server.url("/extract");

    let (status, body) = post_raw(&client, &url, r#"{"text": "진통"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("JSON"), "{body}");

    let (status, body) = post(&client, &url, &json!({ "text": 5 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body).contains("text: invalid type"),
        "{body}"
    );

    let (status, body) = post(&client, &url, &json!({ "texts": "진통" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body).contains("texts: invalid type"),
        "{body}"
    );

    let (status, body) = post(&client, &url, &json!({ "txt": "진통" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(&body);
    assert!(
        message.contains("`txt`") && message.contains("`texts`"),
        "{body}"
    );

    let (status, body) = post(&client, &url, &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(&body);
    assert!(message.contains("missing field"), "{body}");
    assert!(
        message.contains("`text`") && message.contains("`texts`"),
        "{body}"
    );

    let (status, body) = post(&client, &url, &json!({ "text": "a", "texts": ["b"] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(&body);
    assert!(
        message.contains("`text`") && message.contains("`texts`"),
        "{body}"
    );

    let long = "진통".repeat(20) + "제"; // 41 characters, 123 bytes
    let (status, body) = post(&client, &url, &json!({ "text": long })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_message(&body),
        "`text` has 41 characters; the limit (max_text_chars) is 40"
    );

    let (status, body) = post(&client, &url, &json!({ "texts": ["진통", "해열", long] })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_message(&body),
        "`texts[2]` has 41 characters; the limit (max_text_chars) is 40"
    );

    let (status, body) = post(
        &client,
        &url,
        &json!({ "texts": ["a", "b", "c", "d", "e"] }),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_message(&body),
        "`texts` has 5 texts; the limit (max_texts_per_request) is 4"
    );

    let response = client
        .post(&url)
        .body(r#"{"text": "진통"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = response.json().await.expect("JSON");
    assert!(error_message(&body).contains("Content-Type"), "{body}");

    let response = client.get(&url).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["error"].is_string());

    let response = client
        .get(server.url("/nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Four texts are allowed; an empty list is answered without the extractor.
    let (status, body) = post(
        &client,
        &url,
        &json!({ "texts": ["진통", "", "해열", "x"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(4));
    assert_eq!(body["results"][1], json!([]));
    let (status, body) = post(&client, &url, &json!({ "texts": [] })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "results": [] })));

    let response = client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({ "status": "ok", "extractor": "dictionary" }));

    let stats = server.batcher.stats();
    assert_eq!((stats.requests, stats.texts), (1, 4), "{stats:?}");
    server.stop().await;
}

/// An extractor error or panic is a 500 with its message for every request of the batch, and
/// the service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extractor_failures_are_500_and_the_service_survives() {
    let server = Server::start(Arc::new(Failing), ServeConfig::default()).await;
    let client = client();
    let url = server.url("/extract");

    let (status, body) = post(&client, &url, &json!({ "text": EXAMPLE })).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        error_message(&body),
        "extraction failed: invalid input: the model ran out of memory"
    );

    let (status, body) = post(&client, &url, &json!({ "text": "panic" })).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let message = error_message(&body);
    assert!(
        message.contains("panicked") && message.contains("exploded on purpose"),
        "{body}"
    );

    // Concurrent requests, however they are batched, all get their answer.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = if i % 2 == 0 {
                json!({ "text": EXAMPLE })
            } else {
                json!({ "texts": [EXAMPLE, "노인"] })
            };
            post(&client, &url, &body).await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("client task");
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error_message(&body).contains("ran out of memory"), "{body}");
    }

    let body: Value = client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body, json!({ "status": "ok", "extractor": "failing" }));
    let stats = server.batcher.stats();
    assert_eq!((stats.requests, stats.batches, stats.texts), (10, 0, 0));
    assert!(stats.failed_batches >= 3, "{stats:?}");
    server.stop().await;
}

/// With the extractor blocked and a queue of one, a third request is refused with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503() {
    let (extractor, gate) = Instrumented::gated(Duration::ZERO);
    let server = Server::start(Arc::new(extractor), ServeConfig::default().queue(1)).await;
    let client = client();
    let url = server.url("/extract");

    let first = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { post(&client, &url, &json!({ "text": EXAMPLE })).await })
    };
    tokio::time::timeout(PATIENCE, gate.entered)
        .await
        .expect("the first batch reaches the extractor")
        .expect("gate");
    let second = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(
            async move { post(&client, &url, &json!({ "texts": ["노인", "파스"] })).await },
        )
    };
    let queued = tokio::time::timeout(PATIENCE, async {
        while server.batcher.queued() < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    if queued.is_err() {
        let _ = gate.release.send(());
        panic!("the second request never queued");
    }

    let response = client
        .post(&url)
        .json(&json!({ "text": "해열" }))
        .send()
        .await
        .expect("request");
    let _ = gate.release.send(());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: Value = response.json().await.expect("JSON");
    assert!(error_message(&body).contains("queue is full"), "{body}");

    let reference = dictionary_extractor();
    let (status, body) = first.await.expect("first");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keywords(&body["keywords"]),
        reference.extract(EXAMPLE).expect("reference")
    );
    let (status, body) = second.await.expect("second");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keywords(&body["results"][1])[0].text, "파스");
    server.stop().await;
}

/// Shutdown waits for the request in flight, answers it, then stops listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_requests_in_flight() {
    let (extractor, gate) = Instrumented::gated(Duration::ZERO);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(extractor),
        ServeConfig::default(),
        async move {
            let _ = signal.await;
        },
    ));
    let client = client();
    let url = format!("http://{addr}/extract");
    let in_flight = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { post(&client, &url, &json!({ "text": EXAMPLE })).await })
    };
    tokio::time::timeout(PATIENCE, gate.entered)
        .await
        .expect("the request reaches the extractor")
        .expect("gate");

    shutdown.send(()).expect("signal shutdown");
    // Only a wrong implementation could finish here: the request is still blocked.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !server.is_finished(),
        "stopped before answering the request in flight"
    );
    gate.release.send(()).expect("release");

    let (status, body) = in_flight.await.expect("in-flight request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keywords(&body["keywords"]),
        dictionary_extractor().extract(EXAMPLE).expect("reference")
    );
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("the server stops")
        .expect("server task")
        .expect("server result");
    assert!(
        crate::client()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_err(),
        "still listening after shutdown"
    );
}

/// A bad configuration is refused before anything starts.
#[tokio::test]
async fn serve_refuses_a_bad_config() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let result = serve(
        listener,
        Arc::new(dictionary_extractor()),
        ServeConfig::default().max_batch(0),
        std::future::pending(),
    )
    .await;
    match result {
        Err(ServeError::Config { field, .. }) => assert_eq!(field, "max_batch"),
        other => panic!("{other:?}"),
    }
}
