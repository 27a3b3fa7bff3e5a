//! A loopback HTTP proxy in front of a real server that breaks the first response under a
//! path prefix after a number of body bytes — a connection dropped mid-download — and records
//! every request line with its `Range` header. Each request gets its own upstream
//! connection (`Connection: close`), so responses need no parsing beyond their head.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A request line and its `Range` header.
pub type LoggedRequest = (String, Option<String>);

pub struct BreakingProxy {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// `(request line, Range header)` of each request, in arrival order.
    pub requests: Arc<Mutex<Vec<LoggedRequest>>>,
}

/// Reads a request head (through the blank line) and its body (`Content-Length`).
fn read_request(client: &mut TcpStream) -> Option<(Vec<String>, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let lines: Vec<String> = head
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let length = lines
        .iter()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    client.read_exact(&mut body).ok()?;
    Some((lines, body))
}

fn header(lines: &[String], name: &str) -> Option<String> {
    lines.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

impl BreakingProxy {
    /// Proxies to `upstream`; the first response for a path starting with `break_prefix`
    /// is cut after `after_body_bytes` bytes of its body.
    pub fn start(upstream: &str, break_prefix: &str, after_body_bytes: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let broken = Arc::new(AtomicBool::new(false));
        let (upstream, prefix, log) = (
            upstream.to_string(),
            break_prefix.to_string(),
            requests.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, prefix, log, broken) = (
                    upstream.clone(),
                    prefix.clone(),
                    log.clone(),
                    broken.clone(),
                );
                std::thread::spawn(move || {
                    let _ = proxy_one(client, &upstream, &prefix, after_body_bytes, &log, &broken);
                });
            }
        });
        Self { address, requests }
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    prefix: &str,
    after_body_bytes: usize,
    log: &Mutex<Vec<LoggedRequest>>,
    broken: &AtomicBool,
) -> std::io::Result<()> {
    let Some((lines, body)) = read_request(&mut client) else {
        return Ok(());
    };
    let request_line = lines[0].clone();
    log.lock()
        .unwrap()
        .push((request_line.clone(), header(&lines, "range")));
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    let break_this = path.starts_with(prefix) && !broken.swap(true, Ordering::SeqCst);
    let mut server = TcpStream::connect(upstream)?;
    let mut head = String::new();
    for line in &lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let mut head_end = None;
    loop {
        let n = server.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if head_end.is_none() {
            head_end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4);
        }
        if break_this
            && let Some(end) = head_end
            && response.len() >= end + after_body_bytes
        {
            client.write_all(&response[..end + after_body_bytes])?;
            client.flush()?;
            // The bytes arrive, then the connection dies mid-body.
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        if !break_this {
            client.write_all(&buffer[..n])?;
        }
    }
    if break_this {
        client.write_all(&response)?;
    }
    client.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}
