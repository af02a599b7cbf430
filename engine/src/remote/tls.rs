//! TLS to the remote tier (https:// endpoints, as AWS S3 requires): rustls
//! with the ring provider, over the shard's own glommio socket. Trusts the
//! webpki roots, plus the PEM certificates of `--s3-ca-file` for private
//! stores with their own CA (MinIO, SeaweedFS, Ceph).

use crate::remote::RemoteError;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, RemoteError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| RemoteError::Config(format!("reading --s3-ca-file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| RemoteError::Config(format!("--s3-ca-file {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| RemoteError::Config(format!("--s3-ca-file {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(RemoteError::Config(format!("--s3-ca-file {} holds no PEM certificate", path.display())));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RemoteError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
