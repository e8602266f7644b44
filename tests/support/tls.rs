//! TLS for the end-to-end suite: a throwaway CA with a `localhost` server certificate (the
//! IdP and the remote-Wasm server present it, Envoy validates it), client connections the
//! test browser uses for `https://` URLs, and a tiny HTTPS server for one static file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The name on every server certificate the suite issues.
pub const SERVER_NAME: &str = "localhost";

/// A CA and one server certificate for `localhost`, written as PEM files into `dir`.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &Path, label: &str) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("wop e2e CA {label}"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");

        let key = KeyPair::generate().expect("server key");
        let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("params");
        leaf.distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("sign leaf");

        let write = |name: &str, text: &str| {
            let p = dir.join(format!("{label}-{name}"));
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        TestCa {
            ca_pem: write("ca.pem", &ca_cert.pem()),
            cert_pem: write("cert.pem", &cert.pem()),
            key_pem: write("key.pem", &key.serialize_pem()),
            ca_der: ca_cert.der().clone(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// Let the suite's HTTP client accept certificates from this CA.
    pub fn trust(&self) {
        trusted()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.ca_der.clone());
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::try_from(self.key_der.clone()).expect("server key DER");
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("server config");
        Arc::new(cfg)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn trusted() -> &'static Mutex<Vec<CertificateDer<'static>>> {
    static TRUSTED: OnceLock<Mutex<Vec<CertificateDer<'static>>>> = OnceLock::new();
    TRUSTED.get_or_init(|| Mutex::new(Vec::new()))
}

/// What the HTTP client reads from and writes to: plain TCP or TLS over it.
pub trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A TLS client connection over `tcp`, verifying `host` against the trusted test CAs.
pub fn connect(tcp: TcpStream, host: &str) -> std::io::Result<Box<dyn Conn>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        roots.add(c.clone()).map_err(std::io::Error::other)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

/// Serves one file at every path over HTTPS on 127.0.0.1 until dropped; counts requests.
pub struct FileServer {
    pub port: u16,
    pub hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    pub fn start(ca: &TestCa, body: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let cfg = ca.server_config();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let _ = serve_one(tcp, cfg.clone(), &body, &h);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FileServer { port, hits, stop }
    }
}

impl FileServer {
    /// Whether the file was requested at the path the sidecar example names.
    pub fn fetched(&self) -> bool {
        self.hits
            .lock()
            .map(|h| {
                h.iter()
                    .any(|l| l.starts_with("GET /wasm-oauth2-proxy/0.1.0/wasm_oauth2_proxy.wasm "))
            })
            .unwrap_or(false)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    body: &[u8],
    hits: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    hits.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()?;
    s.conn.send_close_notify();
    s.flush()
}
