//! A small HTTP/1.1 server on loopback that serves one file in the Hugging Face hub's layout:
//! the repo-info API with the file's LFS sha256 and size, and `resolve/` answering with a
//! redirect to the blob (as the real hub redirects to its CDN). Counts the requests it sees.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct HubServer {
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
}

/// What the server claims and what it sends.
#[derive(Clone)]
pub struct HubFile {
    pub repo: String,
    pub file: String,
    pub bytes: Vec<u8>,
    /// The sha256 the API announces (the true one unless a test lies on purpose).
    pub announced_sha256: String,
}

impl HubServer {
    pub fn start(hub_file: HubFile) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let file = Arc::new(hub_file);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let file = file.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &file);
                });
            }
        });
        Self { endpoint, requests }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, file: &HubFile) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let info_path = format!("/api/models/{}/revision/main?blobs=true", file.repo);
    let resolve_path = format!("/{}/resolve/main/{}", file.repo, file.file);
    let blob_path = format!("/cdn/blobs/{}", file.announced_sha256);
    if path == info_path {
        let body = serde_json::json!({
            "id": file.repo,
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "siblings": [
                {"rfilename": "README.md", "size": 10},
                {"rfilename": file.file, "size": file.bytes.len(),
                 "lfs": {"sha256": file.announced_sha256, "size": file.bytes.len(), "pointerSize": 135}}
            ]
        })
        .to_string();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else if path == resolve_path {
        write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {blob_path}\r\nX-Linked-Size: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            file.bytes.len()
        )
    } else if path == blob_path {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            file.bytes.len()
        )?;
        stream.write_all(&file.bytes)
    } else {
        let body = "{\"error\":\"Repository not found\"}";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}
