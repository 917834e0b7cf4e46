//! Blob storage on local disk, addressed by SHA-256: `blobs/ab/<sha256>`. An upload is written to
//! `tmp/` while it is hashed, fsynced, then renamed into place; a cut-off or refused upload
//! leaves nothing (its temp file is removed on drop). An S3-compatible store could implement the
//! same three operations (`begin`, `commit`, `open`).

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
}

/// A temp file that is deleted unless committed.
pub struct TempBlob {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The result of writing a whole upload to its temp file (fsynced).
pub struct Written {
    pub temp: TempBlob,
    pub sha256: String,
    pub size: u64,
}

/// Feeds an upload's chunks to a writer thread that hashes and writes them.
pub struct Writer {
    tx: mpsc::Sender<Bytes>,
    done: tokio::task::JoinHandle<std::io::Result<Written>>,
}

impl Writer {
    /// Sends a chunk; false when the writer failed (its error comes from `finish`).
    pub async fn write(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Ends the upload: flushes and fsyncs the temp file.
    pub async fn finish(self) -> std::io::Result<Written> {
        drop(self.tx);
        self.done.await.map_err(std::io::Error::other)?
    }
}

impl DiskStore {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("blobs"))?;
        let tmp = root.join("tmp");
        // Leftovers of a crash mid-upload: never referenced by a metadata row.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    /// Starts an upload. Hashing and writing run on a blocking thread, pipelined with the
    /// network reads (a 1 MiB buffer turns small HTTP chunks into large writes).
    pub fn begin(&self) -> std::io::Result<Writer> {
        let path = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        let temp = TempBlob { path, committed: false };
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let done = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                out.write_all(&chunk)?;
                size += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(Written { temp, sha256: format!("{:x}", hasher.finalize()), size })
        });
        Ok(Writer { tx, done })
    }

    /// Moves a finished upload to its content address (or drops it when the blob exists).
    pub async fn commit(&self, mut written: Written) -> std::io::Result<PathBuf> {
        let dest = self.blob_path(&written.sha256);
        let from = written.temp.path.clone();
        let target = dest.clone();
        let existed = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            let dir = target.parent().expect("blob has a parent");
            std::fs::create_dir_all(dir)?;
            if target.exists() {
                return Ok(true);
            }
            std::fs::rename(&from, &target)?;
            // The rename is durable once the directory is.
            std::fs::File::open(dir)?.sync_all()?;
            Ok(false)
        })
        .await
        .map_err(std::io::Error::other)??;
        // Same bytes already stored: the temp file goes (TempBlob's drop).
        written.temp.committed = !existed;
        Ok(dest)
    }
}
