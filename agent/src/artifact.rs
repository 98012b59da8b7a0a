//! Programs fetched from a URL instead of found on the node: downloaded once, checked against
//! their SHA-256, unpacked (tar.gz or zip) into a directory named by that hash, and reused by
//! every instance that names the same archive. A new version is a new archive, so a new hash
//! and a new directory: versions never overwrite each other.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plum_types::Artifact;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("download of {url} failed: {error}")]
    Download { url: String, error: String },
    #[error("{url}: SHA-256 is {got}, the deployment expects {want}")]
    Mismatch { url: String, got: String, want: String },
    #[error("{0}: neither a tar.gz nor a zip archive")]
    Format(String),
    #[error("unpacking {url}: {error}")]
    Unpack { url: String, error: String },
}

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Written last into an unpacked directory: without it, the directory is a leftover of an
/// interrupted unpack and is done again.
const COMPLETE: &str = ".plum-complete";

/// The directory holding the unpacked artifact, fetching and unpacking it first if needed.
pub async fn prepare(http: &reqwest::Client, cache: &Path, artifact: &Artifact) -> Result<PathBuf, ArtifactError> {
    let want = artifact.sha256.to_ascii_lowercase();
    let dir = cache.join(&want);
    if dir.join(COMPLETE).exists() {
        return Ok(dir);
    }
    let url = artifact.url.clone();
    let download = |error: String| ArtifactError::Download { url: url.clone(), error };
    let resp = http.get(&url).timeout(DOWNLOAD_TIMEOUT).send().await.map_err(|e| download(e.to_string()))?;
    let resp = resp.error_for_status().map_err(|e| download(e.to_string()))?;
    let bytes = resp.bytes().await.map_err(|e| download(e.to_string()))?;
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got != want {
        return Err(ArtifactError::Mismatch { url, got, want });
    }
    let partial = cache.join(format!("{want}.partial"));
    let target = dir.clone();
    tokio::task::spawn_blocking(move || unpack(&bytes, &partial, &target, &url))
        .await
        .map_err(|e| ArtifactError::Unpack { url: artifact.url.clone(), error: e.to_string() })??;
    Ok(dir)
}

fn unpack(bytes: &[u8], partial: &Path, target: &Path, url: &str) -> Result<(), ArtifactError> {
    let failed = |e: &dyn std::fmt::Display| ArtifactError::Unpack { url: url.to_string(), error: e.to_string() };
    let _ = std::fs::remove_dir_all(partial);
    std::fs::create_dir_all(partial).map_err(|e| failed(&e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        tar::Archive::new(flate2::read::GzDecoder::new(bytes)).unpack(partial).map_err(|e| failed(&e))?;
    } else if bytes.starts_with(b"PK") {
        zip::ZipArchive::new(Cursor::new(bytes)).and_then(|mut z| z.extract(partial)).map_err(|e| failed(&e))?;
    } else {
        return Err(ArtifactError::Format(url.to_string()));
    }
    std::fs::write(partial.join(COMPLETE), b"").map_err(|e| failed(&e))?;
    let _ = std::fs::remove_dir_all(target);
    std::fs::rename(partial, target).map_err(|e| failed(&e))
}

/// The program to run: `command` as given when absolute, else inside the artifact.
pub fn program(dir: Option<&Path>, command: &str) -> PathBuf {
    match dir {
        Some(d) if !Path::new(command).is_absolute() => d.join(command),
        _ => PathBuf::from(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_commands_run_from_the_artifact() {
        let d = Path::new("/cache/abc");
        assert_eq!(program(Some(d), "bin/app"), PathBuf::from("/cache/abc/bin/app"));
        assert_eq!(program(Some(d), "/usr/bin/env"), PathBuf::from("/usr/bin/env"));
        assert_eq!(program(None, "/bin/true"), PathBuf::from("/bin/true"));
    }

    #[test]
    fn what_is_not_an_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(b"plain text", &dir.path().join("p"), &dir.path().join("t"), "u").unwrap_err();
        assert!(matches!(err, ArtifactError::Format(_)));
    }
}
