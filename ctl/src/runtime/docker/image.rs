//! Images without a registry: a root filesystem of files from this machine (our binaries and the
//! shared libraries `ldd` lists; a JRE and the Kafka jars for the broker), streamed through `tar`
//! into the engine's import (`docker import`). Every file keeps its host path inside the image,
//! so a [`crate::spec::Launch`] runs unchanged in a container. The tag is a digest of the files'
//! paths, sizes and modification times: an image is built again only when one of them changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// The files of one image and its repository name.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub repo: String,
    pub files: BTreeSet<PathBuf>,
}

impl ImageSpec {
    /// The image of the platform's binaries (`chat4all-server`, `chat4all-provider`) and the
    /// libraries they load.
    pub fn binaries(repo: &str, bins: &[&Path]) -> anyhow::Result<Self> {
        let mut files = BTreeSet::new();
        for bin in bins {
            let bin = std::fs::canonicalize(bin).with_context(|| format!("locating {}", bin.display()))?;
            files.extend(ldd(&bin)?);
            files.insert(bin);
        }
        Ok(Self { repo: repo.into(), files })
    }

    /// The broker's image: the JRE that runs `java` here (its `bin/java`, `conf`, `lib`, the
    /// libraries they load) and every jar of `libs`.
    pub fn broker(repo: &str, java: &Path, libs: &Path) -> anyhow::Result<Self> {
        let java = which(java)?;
        let home = java.parent().and_then(Path::parent).context("the JRE's home")?.to_path_buf();
        let mut files = BTreeSet::new();
        for part in ["conf", "lib", "release"] {
            walk(&home.join(part), &mut files);
        }
        let natives: Vec<PathBuf> =
            files.iter().filter(|f| f.extension().is_some_and(|e| e == "so")).cloned().collect();
        for so in natives.iter().chain([&java]) {
            // A library of an optional part (the desktop's) may need what is not installed.
            files.extend(ldd(so).unwrap_or_default());
        }
        files.insert(java);
        walk(libs, &mut files);
        Ok(Self { repo: repo.into(), files })
    }

    /// `repo:<digest>`.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            let meta = std::fs::metadata(f).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            h.update(f.to_string_lossy().as_bytes());
            h.update(format!("{:?}{:?}", meta.map(|m| m.len()), mtime).as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.repo)
    }
}

/// Every regular file under `dir`, symbolic links followed (dangling ones left out).
fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(meta) = std::fs::metadata(dir) else { return };
    if meta.is_file() {
        out.insert(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        walk(&e.path(), out);
    }
}

/// `java` as an absolute path (looked up in `PATH` when bare), its links resolved.
pub fn which(program: &Path) -> anyhow::Result<PathBuf> {
    if program.is_absolute() {
        return std::fs::canonicalize(program).with_context(|| format!("locating {}", program.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .with_context(|| format!("{} is not in PATH", program.display()))
}

/// The shared libraries `ldd` says `file` loads (the dynamic loader included).
pub fn ldd(file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(file).output().context("running ldd")?;
    if !out.status.success() {
        // A static binary: ldd says "not a dynamic executable" and fails.
        return Ok(vec![]);
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Paths from `ldd`'s lines: `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1` and unresolved ones have none.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Builds the image unless the engine has it already; returns its `repo:tag`.
pub async fn ensure(docker: &bollard::Docker, spec: &ImageSpec, scratch: &Path) -> anyhow::Result<String> {
    let tag = spec.tag();
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    tracing::info!(image = %tag, files = spec.files.len(), "building an image");
    // An empty /tmp (the JVM keeps its perf data there), from an empty directory of ours.
    let empty = scratch.join("rootfs");
    std::fs::create_dir_all(empty.join("tmp")).with_context(|| format!("creating {}", empty.display()))?;
    let mut tar = tokio::process::Command::new("tar")
        .args(["--create", "--file=-", "--dereference", "--hard-dereference", "--directory=/", "--files-from=-"])
        .arg(format!("--directory={}", empty.display()))
        .arg("tmp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let list: String =
        spec.files.iter().map(|f| format!("{}\n", f.to_string_lossy().trim_start_matches('/'))).collect();
    let mut stdin = tar.stdin.take().context("tar's stdin")?;
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let r = stdin.write_all(list.as_bytes()).await;
        drop(stdin);
        r
    });
    let stdout = tar.stdout.take().context("tar's stdout")?;
    let body = futures::stream::unfold(stdout, |mut out| async move {
        let mut buf = vec![0u8; 1 << 20];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), out))
            }
            Err(e) => Some((Err(e), out)),
        }
    });
    let (repo, version) = tag.split_once(':').expect("repo:tag");
    let opts = CreateImageOptionsBuilder::default().from_src("-").repo(repo).tag(version).build();
    let mut progress = docker.create_image(Some(opts), Some(bollard::body_try_stream(body)), None);
    while let Some(r) = progress.next().await {
        r.with_context(|| format!("importing {tag}"))?;
    }
    writer.await.context("tar's file list")?.context("writing tar's file list")?;
    let done = tar.wait_with_output().await.context("waiting for tar")?;
    if !done.status.success() {
        let err = String::from_utf8_lossy(&done.stderr);
        anyhow::bail!("tar failed building {tag}: {}", err.lines().last().unwrap_or_default());
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
                    \tlibgone.so => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }

    #[test]
    fn a_binary_brings_its_loader_and_the_tag_follows_its_files() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let spec = ImageSpec::binaries("t", &[&sh]).unwrap();
        assert!(spec.files.contains(&sh));
        assert!(spec.files.iter().any(|f| f.to_string_lossy().contains("ld-linux")), "{:?}", spec.files);
        let tag = spec.tag();
        assert!(tag.starts_with("t:") && tag.len() == 2 + 12, "{tag}");
        let mut other = spec.clone();
        other.files.insert(PathBuf::from("/etc/hostname"));
        assert_ne!(other.tag(), tag);
    }
}
