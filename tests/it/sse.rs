//! A Server-Sent Events reader for the tests of the live stream: events parsed as a
//! browser's `EventSource` would, with the last id kept for resuming.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) id: Option<u64>,
    pub(crate) event: String,
    pub(crate) data: Value,
}

impl Ev {
    /// Logged events carry what the board's log holds; the rest are live only or say
    /// where the stream stands.
    pub(crate) fn is_logged(&self) -> bool {
        matches!(
            self.event.as_str(),
            "message" | "comment" | "task" | "membership" | "notification"
        )
    }

    pub(crate) fn body(&self) -> &str {
        self.data["body"].as_str().unwrap_or_default()
    }
}

/// What reading a stream gave.
pub(crate) enum Read {
    Event(Ev),
    /// The stream ended (closed, or the connection died).
    Ended,
    /// Nothing came within the wait.
    Quiet,
}

/// A stream being read.
pub(crate) struct Sse {
    pub(crate) resp: reqwest::Response,
    pub(crate) buf: String,
    pub(crate) retry: Option<u64>,
    /// The last id seen, as a browser's `EventSource` keeps it.
    pub(crate) last_id: Option<u64>,
    /// Comment lines seen (keep-alives).
    pub(crate) comments: usize,
}

/// Opens `/boards/{slug}/events` with `token` (in the query string, as a browser's
/// `EventSource` must), resuming after `last` when given.
pub(crate) async fn open(
    base: &str,
    slug: &str,
    token: &str,
    last: Option<u64>,
) -> Result<Sse, (u16, Value)> {
    open_url(format!("{base}/boards/{slug}/events?access_token={token}"), last).await
}

pub(crate) async fn open_url(url: String, last: Option<u64>) -> Result<Sse, (u16, Value)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return Err((0, Value::String(e.to_string()))),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        return Err((status, resp.json().await.unwrap_or(Value::Null)));
    }
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    Ok(Sse { resp, buf: String::new(), retry: None, last_id: last, comments: 0 })
}

impl Sse {
    /// The next event; `None` when the stream ended. Panics after `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Ev> {
        match self.read(within).await {
            Read::Event(ev) => Some(ev),
            Read::Ended => None,
            Read::Quiet => panic!("no event within {within:?}; buffered: {:?}", self.buf),
        }
    }

    /// The next event, the end of the stream, or nothing within `within`.
    pub(crate) async fn read(&mut self, within: Duration) -> Read {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    }
                    if line.is_empty() || line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.parse::<u64>().expect("a numeric id")),
                        "event" => event = Some(value.to_owned()),
                        "data" => data.push_str(value),
                        "retry" => self.retry = Some(value.parse().expect("retry in ms")),
                        _ => panic!("unknown field in {block:?}"),
                    }
                }
                if id.is_some() {
                    self.last_id = id;
                }
                if let Some(event) = event {
                    let data = serde_json::from_str(&data).expect("data is JSON");
                    return Read::Event(Ev { id, event, data });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read::Quiet;
            }
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    self.buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"))
                }
                Ok(Ok(None)) | Ok(Err(_)) => return Read::Ended,
                Err(_) => return Read::Quiet,
            }
        }
    }

    /// Events until one matches `done` (included); panics after 30 s or at the end.
    pub(crate) async fn until(&mut self, what: &str, done: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(ev) = self.next(left).await else {
                panic!("the stream ended before {what}; saw {seen:#?}")
            };
            let stop = done(&ev);
            seen.push(ev);
            if stop {
                return seen;
            }
        }
    }

    /// Reads to the end of the stream; panics if it goes on for `within`.
    pub(crate) async fn until_end(&mut self, within: Duration) -> Vec<Ev> {
        let mut seen = Vec::new();
        while let Some(ev) = self.next(within).await {
            seen.push(ev);
        }
        seen
    }
}
