//! A small HTTP/1.1 server on loopback for browser tests: serves fixed files (a test page,
//! the wasm bundle, a model) and hands the body of every `POST /result` to the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct PageServer {
    pub origin: String,
    results: Mutex<Receiver<String>>,
}

/// One file: its content type and bytes.
pub struct Page {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Page {
    pub fn new(content_type: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            content_type,
            bytes: bytes.into(),
        }
    }
}

impl PageServer {
    /// Serves `pages` (path → file) until the test process ends.
    pub fn start(pages: HashMap<String, Page>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (sender, results) = channel();
        let pages = Arc::new(pages);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (pages, sender) = (pages.clone(), sender.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &pages, &sender);
                });
            }
        });
        Self {
            origin,
            results: Mutex::new(results),
        }
    }

    /// The next body posted to `/result`, waiting at most `timeout`.
    pub fn next_result(&self, timeout: Duration) -> Option<String> {
        self.results.lock().unwrap().recv_timeout(timeout).ok()
    }
}

fn serve(
    mut stream: TcpStream,
    pages: &HashMap<String, Page>,
    results: &Sender<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method == "POST" && path == "/result" {
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let _ = results.send(String::from_utf8_lossy(&body).into_owned());
        return respond(&mut stream, "204 No Content", "text/plain", &[]);
    }
    match pages.get(path.split('?').next().unwrap_or(path)) {
        Some(page) => respond(&mut stream, "200 OK", page.content_type, &page.bytes),
        None => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}
