//! Uploading a sealed file to S3: one PUT for small files, multipart with
//! REMOTE_PARALLELISM parts in flight for large ones. Parts are read from
//! the local file with O_DIRECT, so memory stays bounded by
//! REMOTE_PARALLELISM x REMOTE_PART_BYTES whatever the object's size. A
//! failed multipart upload is aborted so S3 does not keep the parts.

use crate::limits::{MULTIPART_THRESHOLD_BYTES, REMOTE_PARALLELISM, REMOTE_PART_BYTES, REMOTE_SIGN_TTL};
use crate::remote::{http, parallel, RemoteError, RemoteTier};
use ::http::Method;
use bytes::Bytes;
use glommio::io::DmaFile;
use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::S3Action;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;

impl RemoteTier {
    /// Uploads the sealed file at `path` (of `file_len` bytes) as `hash`.
    pub async fn upload_file(self: &Rc<Self>, hash: u128, path: &Path, file_len: u64) -> Result<(), RemoteError> {
        let file =
            DmaFile::open(path).await.map_err(|e| RemoteError::LocalIo(format!("opening {}: {e}", path.display())))?;
        let file = Rc::new(file);
        let result = if file_len <= MULTIPART_THRESHOLD_BYTES {
            match read_part(&file, 0, file_len).await {
                Ok(body) => self.put(hash, body).await,
                Err(e) => Err(e),
            }
        } else {
            self.upload_multipart(hash, file.clone(), file_len).await
        };
        drop(file);
        result
    }

    async fn upload_multipart(
        self: &Rc<Self>,
        hash: u128,
        file: Rc<DmaFile>,
        file_len: u64,
    ) -> Result<(), RemoteError> {
        const OP: &str = "multipart upload";
        let name = self.object_name(hash);
        let url = self.bucket.create_multipart_upload(self.credentials.as_ref(), &name).sign(REMOTE_SIGN_TTL);
        let resp = self.send(OP, Method::POST, &url, &[], Bytes::new()).await?;
        let xml = self.expect_ok(OP, resp).await?;
        let created = CreateMultipartUpload::parse_response(&xml)
            .map_err(|e| RemoteError::Protocol { op: OP, what: format!("CreateMultipartUpload reply: {e}") })?;
        let upload_id: Rc<str> = created.upload_id().into();

        let parts = file_len.div_ceil(REMOTE_PART_BYTES) as usize;
        let etags: Rc<RefCell<Vec<Option<String>>>> = Rc::new(RefCell::new(vec![None; parts]));
        let (me, f, tags, id) = (self.clone(), file.clone(), etags.clone(), upload_id.clone());
        let uploaded = parallel::for_each_index(parts, REMOTE_PARALLELISM, move |i| {
            let (me, file, etags, upload_id) = (me.clone(), f.clone(), tags.clone(), id.clone());
            async move {
                let pos = i as u64 * REMOTE_PART_BYTES;
                let body = read_part(&file, pos, (file_len - pos).min(REMOTE_PART_BYTES)).await?;
                let etag = me.upload_part(hash, (i + 1) as u16, &upload_id, body).await?;
                etags.borrow_mut()[i] = Some(etag);
                Ok(())
            }
        })
        .await;
        if let Err(e) = uploaded {
            self.abort_multipart(&name, &upload_id).await;
            return Err(e);
        }
        let etags: Vec<String> = etags.borrow().iter().map(|e| e.clone().expect("every part uploaded")).collect();
        let action = self.bucket.complete_multipart_upload(
            self.credentials.as_ref(),
            &name,
            &upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(REMOTE_SIGN_TTL);
        let body = Bytes::from(action.body());
        let resp = self.send(OP, Method::POST, &url, &[], body).await?;
        let reply = self.expect_ok(OP, resp).await?;
        // S3 may answer 200 with an error document for a failed completion.
        if String::from_utf8_lossy(&reply).contains("<Error>") {
            self.abort_multipart(&name, &upload_id).await;
            return Err(RemoteError::Protocol { op: OP, what: "CompleteMultipartUpload returned an error".into() });
        }
        Ok(())
    }

    async fn upload_part(&self, hash: u128, number: u16, upload_id: &str, body: Bytes) -> Result<String, RemoteError> {
        const OP: &str = "upload part";
        let name = self.object_name(hash);
        let url = self.bucket.upload_part(self.credentials.as_ref(), &name, number, upload_id).sign(REMOTE_SIGN_TTL);
        let len = body.len() as u64;
        self.stats.remote_put_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::PUT, &url, &[], body).await?;
        if !resp.status().is_success() {
            return Err(self.fail(http::status_error(OP, resp, self.timeouts.response).await));
        }
        let etag = resp
            .headers()
            .get(::http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| RemoteError::Protocol { op: OP, what: "no ETag on an uploaded part".into() })?;
        self.expect_ok(OP, resp).await?;
        self.stats.remote_bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(etag)
    }

    async fn abort_multipart(&self, name: &str, upload_id: &str) {
        let url = self.bucket.abort_multipart_upload(self.credentials.as_ref(), name, upload_id).sign(REMOTE_SIGN_TTL);
        if let Err(e) = self.send("abort multipart upload", Method::DELETE, &url, &[], Bytes::new()).await {
            tracing::warn!(error = %e, "could not abort a failed multipart upload; S3 keeps its parts until a lifecycle rule removes them");
        }
    }
}

async fn read_part(file: &DmaFile, pos: u64, len: u64) -> Result<Bytes, RemoteError> {
    let buf = file
        .read_at_aligned(pos, len as usize)
        .await
        .map_err(|e| RemoteError::LocalIo(format!("reading part at {pos}: {e}")))?;
    if buf.len() as u64 != len {
        return Err(RemoteError::LocalIo(format!("short read at {pos}: {} of {len} bytes", buf.len())));
    }
    // One copy into an owned, Send buffer: hyper's client wants Send data.
    Ok(Bytes::copy_from_slice(&buf))
}
