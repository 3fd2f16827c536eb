//! TLS to PostgreSQL, through rustls: the URL's `sslmode` and `sslrootcert` with the meanings
//! libpq gives them (docs/postgresql.md "TLS"), and a refusal that names the server and why.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | if the server offers it | no |
//! | `require` | always | no; as `verify-ca` when `sslrootcert` is given (as libpq) |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` (else the system's roots) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host connected to |
//!
//! The connector offers no channel binding: SCRAM authenticates without `-PLUS`, as libpq does
//! when built without it; `verify-full` is what stops a server in the middle.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode`, less `allow` (plain first, TLS if refused), which payrecon refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow (plain first, TLS only if refused) is not supported: \
                            use prefer, require, verify-ca or verify-full"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// What the client library is told: whether TLS is tried, and whether it is required.
    pub fn wire(self) -> postgres::config::SslMode {
        match self {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Where the CAs a certificate must chain to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=PATH`: the PEM certificates in that file.
    File(String),
    /// No `sslrootcert`, or `sslrootcert=system`: the system's store.
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::File(p) => write!(f, "sslrootcert {p}"),
            Roots::System => f.write_str("the system's CA certificates"),
        }
    }
}

/// The TLS half of a ledger URL: the mode and, when certificates are checked, where the CAs are.
#[derive(Clone)]
pub struct Tls {
    pub mode: SslMode,
    pub roots: Roots,
    config: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What `check-config` shows: the mode and what it checks against.
impl fmt::Display for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            SslMode::Disable => f.write_str("sslmode=disable: never TLS"),
            SslMode::Prefer => f.write_str(
                "sslmode=prefer: TLS if the server offers it, its certificate not checked",
            ),
            SslMode::Require => {
                f.write_str("sslmode=require: always TLS, the certificate not checked")
            }
            SslMode::VerifyCa => write!(
                f,
                "sslmode=verify-ca: always TLS, the certificate signed by a CA in {}",
                self.roots
            ),
            SslMode::VerifyFull => write!(
                f,
                "sslmode=verify-full: always TLS, the certificate signed by a CA in {} and issued for the host",
                self.roots
            ),
        }
    }
}

/// Takes `sslmode`, `sslrootcert` (and refuses client-certificate options) out of a
/// `postgres://` URL's query: the URL that is left, and the TLS they ask for. The client library
/// knows neither `verify-*` nor `sslrootcert`.
pub fn split_url(url: &str) -> Result<(String, Tls), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let (mut mode, mut rootcert) = (None, None);
    let mut seen = std::collections::HashSet::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        // A key given twice: the client library takes the last, a reader the first.
        if !seen.insert(key) {
            return Err(format!(
                "{key} is given twice in the URL's query; give it once"
            ));
        }
        let value = decode(value)?;
        match key {
            // It would be shown wherever the URL is: in check-config, errors and the log.
            "password" => {
                return Err(
                    "password: a password in the URL's query would be shown wherever the URL \
                     is; give it through `[ledger] password_env` (or --password-env)"
                        .to_string(),
                );
            }
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => rootcert = Some(value),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key}: client certificates and revocation lists are not supported by this \
                     build; authenticate with a password (`[ledger] password_env`)"
                ));
            }
            _ => kept.push(part),
        }
    }
    let roots = match rootcert.as_deref() {
        None | Some("system") => Roots::System,
        Some(path) => Roots::File(path.to_string()),
    };
    let mode = match (mode, rootcert.as_deref()) {
        // libpq: `sslrootcert=system` verifies fully unless told otherwise, and refuses less.
        (None, Some("system")) => SslMode::VerifyFull,
        (Some(m), Some("system")) if m != SslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full, not {m} (as libpq)"
            ));
        }
        // libpq: `require` with a root certificate given checks the chain, as `verify-ca`.
        (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
        (Some(m), _) => m,
        (None, _) => SslMode::Prefer,
    };
    let config = match mode {
        SslMode::Disable => None,
        _ => Some(Arc::new(client_config(mode, &roots)?)),
    };
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((
        rest,
        Tls {
            mode,
            roots,
            config,
        },
    ))
}

/// A URL query value, percent-decoded.
fn decode(v: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(&format!("q:?v={v}")).map_err(|e| format!("{v:?}: {e}"))?;
    Ok(url
        .query_pairs()
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: SslMode, roots: &Roots) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let (webpki, pinned) = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let (store, pinned) = root_store(roots)?;
            (
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                        .build()
                        .map_err(|e| format!("{roots}: {e}"))?,
                ),
                pinned,
            )
        }
        _ => (None, Vec::new()),
    };
    let verifier = Arc::new(Verifier {
        mode,
        webpki,
        pinned,
        algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The store of trusted roots, and the certificates of an `sslrootcert` file themselves (any of
/// them may be the server's own self-signed certificate, pinned, as libpq accepts it).
fn root_store(
    roots: &Roots,
) -> Result<(rustls::RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut store = rustls::RootCertStore::empty();
    let mut pinned = Vec::new();
    match roots {
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {path}: no PEM certificate in it"));
            }
            for cert in certs {
                store
                    .add(cert.clone())
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                pinned.push(cert);
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificate found in the system's store{why}; name a file with \
                     sslrootcert"
                ));
            }
        }
    }
    Ok((store, pinned))
}

/// Checks what the mode asks: nothing of the certificate (`prefer`, `require`), its chain
/// (`verify-ca`), or its chain and name (`verify-full`). The handshake's signatures are always
/// checked: the server holds the key of the certificate it showed.
#[derive(Debug)]
struct Verifier {
    mode: SslMode,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The `sslrootcert` file's certificates: a server showing exactly one of them is trusted
    /// by it (a self-signed server certificate given as its own root, as libpq trusts it).
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // webpki checks the chain first and the name last: a name error means the chain
            // held, which is all `verify-ca` asks.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode == SslMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            // webpki refuses a CA certificate as the server's own (a self-signed one made by
            // `openssl req -x509` is a CA). Given in sslrootcert byte for byte, it is trusted
            // as libpq trusts it; `verify-full` still checks its name. Its dates are not
            // checked: it is pinned, as a key is.
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                if self.mode == SslMode::VerifyFull {
                    webpki::EndEntityCert::try_from(end_entity)
                        .and_then(|c| c.verify_is_valid_for_subject_name(server_name))
                        .map_err(|_| {
                            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                        })?;
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a certificate was refused, in words.
pub fn reason(e: &rustls::Error, tls: &Tls) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("its certificate is not signed by a CA in {}", tls.roots)
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "its certificate is not issued for {} (it names {})",
                expected.to_str(),
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    // rustls shows them as `DnsName("db.internal")`: the name alone.
                    presented
                        .iter()
                        .map(|p| {
                            p.split_once("(\"")
                                .and_then(|(_, n)| n.strip_suffix("\")"))
                                .unwrap_or(p)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            CertificateError::NotValidForName => {
                "its certificate is not issued for the host connected to".to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet".to_string()
            }
            other => format!("its certificate is refused: {other}"),
        },
        other => format!("the TLS handshake failed: {other}"),
    }
}

impl MakeTlsConnect<postgres::Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, io::Error> {
        // A Unix socket has no host name; its server never offers TLS, so no handshake needs one.
        let name = match domain {
            "" => None,
            d => Some(ServerName::try_from(d.to_string()).map_err(|_| {
                io::Error::other(format!("{d:?} is not a host name TLS can check"))
            })?),
        };
        Ok(Connect {
            // None under sslmode=disable, when no handshake is ever asked for.
            connector: self.config.clone().map(tokio_rustls::TlsConnector::from),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub struct Connect {
    connector: Option<tokio_rustls::TlsConnector>,
    name: Option<ServerName<'static>>,
}

impl TlsConnect<postgres::Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let name = self
                .name
                .ok_or_else(|| io::Error::other("TLS over a Unix socket has no host to check"))?;
            let connector = self
                .connector
                .ok_or_else(|| io::Error::other("sslmode=disable, yet TLS was started"))?;
            let stream = connector.connect(name, socket).await?;
            Ok(Stream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct Stream(tokio_rustls::client::TlsStream<postgres::Socket>);

impl postgres::tls::TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Result<(String, SslMode, Roots), String> {
        split_url(url).map(|(u, t)| (u, t.mode, t.roots))
    }

    #[test]
    fn sslmode_and_rootcert_leave_the_url_with_libpq_meanings() {
        // The verify modes against a real server: tests/it/pgtls.rs.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            mode("postgres://u@h/db").unwrap(),
            ("postgres://u@h/db".into(), SslMode::Prefer, Roots::System)
        );
        assert_eq!(
            mode("postgres://u@h/db?sslmode=disable&connect_timeout=3").unwrap(),
            (
                "postgres://u@h/db?connect_timeout=3".into(),
                SslMode::Disable,
                Roots::System
            )
        );
        assert!(
            mode("postgres://u@h/db?sslmode=allow")
                .unwrap_err()
                .contains("allow")
        );
        assert!(
            mode("postgres://u@h/db?sslmode=verify_full")
                .unwrap_err()
                .contains("verify_full")
        );
        assert!(
            mode("postgres://u@h/db?sslrootcert=system&sslmode=require")
                .unwrap_err()
                .contains("verify-full")
        );
        assert!(
            mode("postgres://u@h/db?sslcert=/c.pem")
                .unwrap_err()
                .contains("client certificates")
        );
        // A password in the query is refused, never used or shown; a key given twice is
        // refused (the client library would take the last: verify-full then disable).
        let err = mode("postgres://u@h/db?password=hunter2").unwrap_err();
        assert!(
            err.contains("password_env") && !err.contains("hunter2"),
            "{err}"
        );
        let err = mode("postgres://u@h/db?sslmode=verify-full&sslmode=disable").unwrap_err();
        assert!(err.contains("sslmode is given twice"), "{err}");
        assert!(mode("postgres://u@h/db?application_name=a&application_name=b").is_err());
        let missing = dir.path().join("none.pem");
        let err = mode(&format!(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert={}",
            missing.display()
        ))
        .unwrap_err();
        assert!(
            err.contains("sslrootcert") && err.contains("none.pem"),
            "{err}"
        );
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let err = mode(&format!(
            "postgres://u@h/db?sslmode=require&sslrootcert={}",
            missing.display()
        ))
        .unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
