//! A FAKE OpenAI-compatible chat-completions server on 127.0.0.1, for testing `lvlm_refine`'s
//! real client. It is not a model: it checks each request's shape (POST /v1/chat/completions,
//! the model id, an image data URL, the alt-text in the text part, the bearer token when it
//! wants one) and answers deterministically from the alt-text:
//! `{"long_pos": "pos: ALT", "long_neg": "neg: ALT", "short_pos": ["ALT"], "short_neg": ["not ALT"]}`.
//!
//! Words in the alt-text change what it does (per alt-text, counting tries):
//! `slow=MS` waits first; `once429` answers 429 with `Retry-After: 1` the first time;
//! `twice500` answers 500 twice; `always500` always; `hang` waits 3 s (past the client's
//! timeout) every time, `hangonce` the first time; `garbage` answers prose instead of JSON,
//! `garbageonce` the first time; `fenced` wraps the JSON in prose and a ```json fence;
//! `reject400` answers 400.
//!
//! One thread per connection, `Connection: close` on every answer: small, and enough for the
//! tests' few hundred requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The model id the fake serves.
pub const MODEL: &str = "fake-vlm";

/// How the fake behaves as a whole.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    /// Answer 401 unless the request carries `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Answer 400 to `response_format` `json_schema` (as servers without structured output do).
    pub refuse_json_schema: bool,
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub alt_text: String,
    /// The image data URL's media type (`image/png`, …).
    pub mime: String,
    /// `response_format.type`, when sent.
    pub format: Option<String>,
    pub temperature: f64,
    pub authorization: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    config: FakeConfig,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    tries: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    requests: AtomicUsize,
}

/// A running fake server (its threads end with the test process).
pub struct FakeOpenAi {
    state: Arc<State>,
    port: u16,
}

impl FakeOpenAi {
    pub fn start(config: FakeConfig) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(State {
            config,
            ..State::default()
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        FakeOpenAi { state, port }
    }

    /// The backend location to register: `http://127.0.0.1:PORT/v1?model=fake-vlm`.
    pub fn location(&self) -> String {
        format!("http://127.0.0.1:{}/v1?model={MODEL}", self.port)
    }

    /// Requests received (including refused ones).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests with a well-formed body, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// How many requests carried this alt-text.
    pub fn tries(&self, alt_text: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.alt_text == alt_text)
            .count()
    }
}

/// The valid answer for an alt-text.
pub fn answer_for(alt_text: &str) -> Value {
    json!({
        "long_pos": format!("pos: {alt_text}"),
        "long_neg": format!("neg: {alt_text}"),
        "short_pos": [alt_text],
        "short_neg": [format!("not {alt_text}")],
    })
}

struct Request {
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?, parts.next()?.to_string());
    if method != "POST" {
        return None;
    }
    let mut length = 0;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        path,
        authorization,
        body,
    })
}

/// A response: status line, extra header lines, body.
struct Reply {
    status: &'static str,
    extra: &'static str,
    body: String,
}

fn reply(status: &'static str, body: String) -> Reply {
    Reply {
        status,
        extra: "",
        body,
    }
}

fn respond(mut stream: &TcpStream, reply: &Reply) {
    let _ = write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{}\r\n{}",
        reply.status,
        reply.body.len(),
        reply.extra,
        reply.body
    );
    let _ = stream.flush();
}

fn error_body(message: &str) -> String {
    json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string()
}

fn completion(content: &str) -> String {
    json!({
        "id": "fake",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    })
    .to_string()
}

/// The alt-text inside the prompt: between `"""` lines (the built-in template) or `<<`/`>>`
/// (the tests' own template).
fn alt_text_in(prompt: &str) -> Option<String> {
    if let Some((_, rest)) = prompt.split_once("\"\"\"\n") {
        return rest.split_once("\n\"\"\"").map(|(alt, _)| alt.to_string());
    }
    let (_, rest) = prompt.split_once("<<")?;
    rest.split_once(">>").map(|(alt, _)| alt.to_string())
}

/// Checks a request body's shape; returns (alt-text, mime, format, temperature).
fn check_shape(body: &[u8]) -> Result<(String, String, Option<String>, f64), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if v["model"] != MODEL {
        return Err(format!("model is {}", v["model"]));
    }
    let parts = v["messages"][0]["content"]
        .as_array()
        .ok_or("messages[0].content is not a list of parts")?;
    let url = parts
        .iter()
        .find_map(|p| p["image_url"]["url"].as_str())
        .ok_or("no image_url part")?;
    let (mime, data) = url
        .strip_prefix("data:")
        .and_then(|u| u.split_once(";base64,"))
        .ok_or("the image is not a base64 data URL")?;
    let base64_ok = !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if !mime.starts_with("image/") || !base64_ok {
        return Err(format!("bad data URL {mime}"));
    }
    let prompt = parts
        .iter()
        .find_map(|p| p["text"].as_str())
        .ok_or("no text part")?;
    let alt_text = alt_text_in(prompt).ok_or("no alt-text in the prompt")?;
    let format = v["response_format"]["type"].as_str().map(str::to_string);
    let temperature = v["temperature"].as_f64().unwrap_or(-1.0);
    Ok((alt_text, mime.to_string(), format, temperature))
}

fn serve(state: &State, stream: TcpStream) {
    let Some(request) = read_request(&stream) else {
        return respond(
            &stream,
            &reply("400 Bad Request", error_body("fake: unreadable")),
        );
    };
    state.requests.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = answer(state, &request);
    // Out of flight before the client can see the answer (and send its next request).
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    respond(&stream, &reply);
}

fn answer(state: &State, request: &Request) -> Reply {
    if let Some(key) = &state.config.api_key
        && request.authorization.as_deref() != Some(&format!("Bearer {key}"))
    {
        // Real servers sometimes echo what they got; the client must not print it.
        let got = request.authorization.clone().unwrap_or_default();
        return reply(
            "401 Unauthorized",
            error_body(&format!("invalid api key: {got}")),
        );
    }
    if request.path != "/v1/chat/completions" {
        let body = error_body(&format!("fake: no route {}", request.path));
        return reply("404 Not Found", body);
    }
    let (alt_text, mime, format, temperature) = match check_shape(&request.body) {
        Ok(shape) => shape,
        Err(e) => {
            return reply("400 Bad Request", error_body(&format!("fake: {e}")));
        }
    };
    state.seen.lock().expect("lock").push(Seen {
        alt_text: alt_text.clone(),
        mime,
        format: format.clone(),
        temperature,
        authorization: request.authorization.clone(),
        at: Instant::now(),
    });
    if state.config.refuse_json_schema && format.as_deref() == Some("json_schema") {
        let body = error_body("response_format type 'json_schema' is not supported");
        return reply("400 Bad Request", body);
    }
    let try_number = {
        let mut tries = state.tries.lock().expect("lock");
        let n = tries.entry(alt_text.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let words: Vec<&str> = alt_text.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    if let Some(ms) = words.iter().find_map(|w| w.strip_prefix("slow=")) {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
    }
    if has("hang") || (has("hangonce") && try_number == 1) {
        std::thread::sleep(Duration::from_secs(3));
    }
    if has("once429") && try_number == 1 {
        return Reply {
            status: "429 Too Many Requests",
            extra: "Retry-After: 1\r\n",
            body: error_body("rate limited"),
        };
    }
    if has("always500") || (has("twice500") && try_number <= 2) {
        return reply("500 Internal Server Error", error_body("boom"));
    }
    if has("reject400") {
        return reply("400 Bad Request", error_body("image too large"));
    }
    let valid = answer_for(&alt_text).to_string();
    let content = if has("garbage") || (has("garbageonce") && try_number == 1) {
        "I am sorry, I cannot describe this image.".to_string()
    } else if has("fenced") {
        format!("Here is the JSON you asked for:\n```json\n{valid}\n```\nAnything else?")
    } else {
        valid
    };
    reply("200 OK", completion(&content))
}
