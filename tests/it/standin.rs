//! Stand-in homeservers' plumbing: raw HTTP/1.1 on loopback, one request a connection,
//! passed on to Synapse or answered by the test.

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One HTTP/1.1 request: method, path with query, headers, body.
pub(crate) type Request = (String, String, Vec<(String, String)>, Vec<u8>);

pub(crate) async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, headers, body))
}

/// Passes a request on; `None` when Synapse cannot be reached.
pub(crate) async fn forward(
    http: &reqwest::Client,
    target: &str,
    (method, path, headers, body): &Request,
) -> Option<(u16, Vec<u8>)> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let mut req = http.request(method, format!("{target}{path}")).body(body.clone());
    for (k, v) in headers {
        if k == "authorization" || k == "content-type" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.bytes().await.ok()?.to_vec()))
}

/// Answers with `status` and a JSON `body`, and closes the connection.
pub(crate) async fn respond(sock: &mut TcpStream, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.shutdown().await;
}
